"""Splits of arrays that share a leading sample axis: :func:`train_val_test_split`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.random as jr
import numpy as np
from jax.typing import ArrayLike

from .._checks import _asarray, _check_key
from ._common import _check_fractions, _split_sizes


def _check_same_length(arrays: Sequence[ArrayLike], name: str = "arrays") -> int:
    if len(arrays) == 0:
        raise ValueError(f"`{name}`: at least one array is required.")
    lengths = []
    for i, a in enumerate(arrays):
        shape = np.shape(a)
        if len(shape) == 0:
            raise ValueError(f"`{name}[{i}]` must have a leading sample axis; got a scalar.")
        lengths.append(shape[0])
    if len(set(lengths)) != 1:
        raise ValueError(
            f"`{name}` must all have the same length along axis 0; got lengths {lengths}."
        )
    if lengths[0] == 0:
        raise ValueError(f"`{name}` must be non-empty; got 0 samples.")
    return lengths[0]


def train_val_test_split(
    *arrays: ArrayLike,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    key: jax.Array | None = None,
    shuffle: bool = True,
) -> tuple[tuple[jax.Array, ...], ...]:
    r"""Split arrays that share a leading sample axis into consecutive parts.

    With ``shuffle=True`` the samples are permuted by ``key`` first (i.i.d. data); with
    ``shuffle=False`` the order is kept, so the first part is the earliest stretch of a time
    series and the last the latest (a chronological split, no look-ahead).

    Split :math:`k` receives :math:`\operatorname{round}(n \sum_{j \le k} f_j) -
    \operatorname{round}(n \sum_{j < k} f_j)` samples, so the sizes always add up to
    :math:`n`.

    Args:
        *arrays: one or more arrays with the same length ``n`` along axis 0 (e.g. ``x, y``).
        fractions: the share of samples for each part, non-negative and summing to 1, e.g.
            ``(0.8, 0.1, 0.1)`` or ``(0.6, 0.2, 0.2)``; any number of parts is allowed.
        key: a ``jax.random`` key; required when ``shuffle=True``.
        shuffle: permute the samples before splitting (``False`` for time series).

    Returns:
        One tuple per part, holding that part of every input array in input order:
        ``((x_train, y_train), (x_val, y_val), (x_test, y_test))``.

    Raises:
        ValueError: if ``fractions`` are negative, non-finite or do not sum to 1, if the
            arrays are empty or differ in length, or if ``key`` is missing while shuffling.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, y = jnp.arange(10.0), 2 * jnp.arange(10.0)
        >>> (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = train_val_test_split(
        ...     x, y, fractions=(0.6, 0.2, 0.2), shuffle=False)
        >>> x_tr.tolist(), x_va.tolist(), y_te.tolist()
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0], [16.0, 18.0])
    """
    fr = _check_fractions(fractions)
    n = _check_same_length(arrays)
    arrays = tuple(_asarray(a, f"arrays[{i}]") for i, a in enumerate(arrays))
    if shuffle:
        if key is None:
            raise ValueError(
                "`key` is required when shuffle=True (pass a jax.random key, "
                "or shuffle=False for a chronological split)."
            )
        order = jr.permutation(_check_key(key), n)
    else:
        order = None
    parts = []
    start = 0
    for size in _split_sizes(n, fr):
        if order is None:
            parts.append(tuple(a[start : start + size] for a in arrays))
        else:
            idx = order[start : start + size]
            parts.append(tuple(a[idx] for a in arrays))
        start += size
    return tuple(parts)
