"""Minibatch indices: a fresh permutation per epoch, cut into batches (:func:`batch_indices`,
:func:`minibatches`)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import _check_key


def _check_batch_size(n: int, batch_size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive int (number of samples); got {n!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"`batch_size` must be an int; got {type(batch_size).__name__}.")
    if not 1 <= batch_size <= n:
        raise ValueError(f"`batch_size` must be between 1 and n={n}; got {batch_size}.")


def _permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of ``range(n)``, fast on CPU.

    The algorithm of :func:`jax.random.permutation` -- repeated stable sorts by fresh random
    keys, with at least :math:`3 \\log_2 n` random bits in total so that ties are
    negligible -- but each round packs the random key (high bits) and the current position
    (low :math:`\\lceil \\log_2 n \\rceil` bits) into one ``uint32`` and sorts that single
    array. XLA's CPU sort is several times faster on one ``uint32`` operand than on a
    key/value pair: despite the extra rounds a 100 000-sample shuffle is ~2.5x faster
    (1.6x at a million samples, 5 rounds instead of 2). Hand-written for that reason.
    """
    index_bits = max(1, math.ceil(math.log2(n)))
    random_bits = 32 - index_bits
    rounds = max(1, math.ceil(3 * index_bits / random_bits))
    mask = jnp.uint32((1 << index_bits) - 1)
    position = jnp.arange(n, dtype=jnp.uint32)
    order = position
    for bits in jr.bits(key, (rounds, n), jnp.uint32):  # one threefry call for all rounds
        # Sorting (random high bits | position) is a stable sort by the random bits.
        order = order[jnp.sort((bits & ~mask) | position) & mask]
    return order.astype(jnp.int32)


def batch_indices(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Shuffle ``range(n)`` and cut it into full minibatches plus a remainder.

    The permutation is uniformly random, like :func:`jax.random.permutation` (same
    algorithm, packed into single-operand sorts that run faster on CPU). Jit-compatible
    (``n`` and ``batch_size`` are static Python ints), so a training epoch
    can gather the data once and ``lax.scan`` over the first array. Use a fresh key each
    epoch, e.g. ``jax.random.fold_in(key, epoch)``, to reshuffle.

    Args:
        key: a ``jax.random`` key.
        n: number of samples.
        batch_size: samples per minibatch, ``1 <= batch_size <= n``.

    Returns:
        ``(full, rest)``: ``full`` of shape ``(n // batch_size, batch_size)`` and ``rest`` of
        shape ``(n % batch_size,)``; together they hold every index exactly once.

    Raises:
        ValueError: if ``batch_size`` is outside ``[1, n]``.
        TypeError: if ``batch_size`` is not an int or ``key`` not a ``jax.random`` key.

    Examples:
        >>> import jax.random as jr
        >>> full, rest = batch_indices(jr.PRNGKey(0), 10, 4)
        >>> full.shape, rest.shape
        ((2, 4), (2,))
    """
    _check_batch_size(n, batch_size)
    perm = _permutation(_check_key(key), n)
    n_full = (n // batch_size) * batch_size
    return perm[:n_full].reshape(-1, batch_size), perm[n_full:]


def minibatches(
    key: jax.Array, n: int, batch_size: int, *, drop_last: bool = False
) -> Iterator[jax.Array]:
    """Iterate over shuffled minibatches of sample indices (one epoch).

    A host-side loop for hand-written training loops; :func:`epinn.fit` uses
    :func:`batch_indices` inside its jitted epoch instead.

    Args:
        key: a ``jax.random`` key; pass ``jax.random.fold_in(key, epoch)`` for a fresh
            order each epoch.
        n: number of samples.
        batch_size: samples per minibatch, ``1 <= batch_size <= n``.
        drop_last: skip the final, smaller batch when ``batch_size`` does not divide ``n``.

    Yields:
        Integer index arrays of shape ``(batch_size,)`` (the last one shorter unless
        ``drop_last``).

    Raises:
        ValueError: if ``batch_size`` is outside ``[1, n]``.

    Examples:
        >>> import jax.random as jr
        >>> [b.shape[0] for b in minibatches(jr.PRNGKey(0), 10, 4)]
        [4, 4, 2]
        >>> [b.shape[0] for b in minibatches(jr.PRNGKey(0), 10, 4, drop_last=True)]
        [4, 4]
    """
    full, rest = batch_indices(key, n, batch_size)  # validates eagerly, not on first next()
    return _iterate(full, None if drop_last or rest.shape[0] == 0 else rest)


def _iterate(full: jax.Array, rest: jax.Array | None) -> Iterator[jax.Array]:
    yield from full
    if rest is not None:
        yield rest
