"""Optimizers by name: :data:`OPTIMIZERS`, :func:`get_optimizer`, and the cached
transformation :func:`fit` uses (equal settings share one compiled epoch)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from .._checks import _did_you_mean

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "gd": optax.sgd,
    "sgd": optax.sgd,
    "momentum": functools.partial(optax.sgd, momentum=0.9),
    "nesterov": functools.partial(optax.sgd, momentum=0.9, nesterov=True),
    "adam": optax.adam,
    "adagrad": optax.adagrad,
    "adamax": optax.adamax,
    "rmsprop": optax.rmsprop,
}
"""Optimizer factories by name, each ``factory(learning_rate, **kwargs)`` from optax.

``"gd"`` and ``"sgd"`` are both :func:`optax.sgd`: plain gradient descent, which is
full-batch gradient descent with ``batch_size=None`` and stochastic with minibatches.
``"momentum"`` and ``"nesterov"`` are :func:`optax.sgd` with ``momentum=0.9`` (override
with a keyword).
"""


def _check_learning_rate(learning_rate: Any) -> None:
    if callable(learning_rate):
        return
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.number)):
        raise TypeError(
            "`learning_rate` must be a positive float or an optax schedule (a callable "
            f"step -> rate); got {type(learning_rate).__name__}."
        )
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be positive and finite; got {learning_rate}.")


def get_optimizer(
    name_or_tx: str | optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    learning_rate: float | optax.Schedule = 1e-3,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """Resolve an optax optimizer by name, or pass one through.

    Args:
        name_or_tx: a name from :data:`OPTIMIZERS` (``"gd"``, ``"sgd"``, ``"momentum"``,
            ``"nesterov"``, ``"adam"``, ``"adagrad"``, ``"adamax"``, ``"rmsprop"``;
            case-insensitive), an ``optax.GradientTransformation`` (returned unchanged, its
            own learning rate applies and ``learning_rate`` is ignored), or an optax factory
            such as ``optax.adamw`` (called as ``factory(learning_rate, **kwargs)``).
        learning_rate: a positive float, or an optax schedule ``step -> rate`` such as
            ``optax.exponential_decay(1e-2, 100, 0.5)``.
        **kwargs: extra keyword arguments for the factory, e.g. ``momentum=0.5``.

    Returns:
        The ``optax.GradientTransformation``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a non-positive
            learning rate.
        TypeError: anything else, or a factory that does not return a transformation.

    Examples:
        >>> tx = get_optimizer("adam", 1e-2)
        >>> isinstance(tx, optax.GradientTransformation)
        True
    """
    if isinstance(name_or_tx, optax.GradientTransformation):
        return name_or_tx
    _check_learning_rate(learning_rate)
    if isinstance(name_or_tx, str):
        factory = OPTIMIZERS.get(name_or_tx.lower())
        if factory is None:
            raise ValueError(
                f"Unknown `optimizer` {name_or_tx!r}{_did_you_mean(name_or_tx, OPTIMIZERS)}; "
                f"valid names are {sorted(OPTIMIZERS)} (or pass an "
                "optax.GradientTransformation)."
            )
        for k, v in kwargs.items():  # numbers (or flags such as nesterov=True)
            if isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
                raise (TypeError if isinstance(v, str) else ValueError)(
                    f"`{k}` (an option of the {name_or_tx!r} optimizer) must be a finite "
                    f"number; got {v!r}."
                )
    elif callable(name_or_tx):
        factory = name_or_tx
    else:
        raise TypeError(
            "`optimizer` must be a name, an optax.GradientTransformation or an optax factory; "
            f"got {type(name_or_tx).__name__}."
        )
    tx = factory(learning_rate, **kwargs)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` factory {name_or_tx!r} returned {type(tx).__name__}, "
            "not an optax.GradientTransformation."
        )
    return tx


@functools.lru_cache(maxsize=64)
def _cached_optimizer(name: str, learning_rate: Any) -> optax.GradientTransformation:
    return get_optimizer(name, learning_rate)


def _fit_optimizer(optimizer: Any, learning_rate: Any) -> optax.GradientTransformation:
    # The same transformation object for the same (name, learning rate), so that fits with
    # equal settings share one compiled epoch.
    if isinstance(optimizer, str):
        _check_learning_rate(learning_rate)
        try:
            return _cached_optimizer(optimizer.lower(), learning_rate)
        except TypeError:  # an unhashable schedule
            pass
    return get_optimizer(optimizer, learning_rate)
