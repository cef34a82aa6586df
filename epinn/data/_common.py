"""Helpers shared by the data modules: a real-number check, the split fractions and their
sizes, and the scale that keeps constant features finite."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _as_float(value: Any, name: str) -> float:
    """``float(value)`` for a real number (not a string or bool), naming ``name`` if not."""
    if isinstance(value, (str, bytes, bool)) or not isinstance(
        value, (int, float, np.number, np.ndarray, jax.Array)
    ) or np.ndim(value) != 0:
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__} {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a real number; got {value!r}.") from err


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Iterable):
        raise TypeError(
            f"`fractions` must be a sequence of numbers; got {type(fractions).__name__}."
        )
    try:
        fr = tuple(_as_float(f, "fractions") for f in fractions)
    except TypeError as err:
        raise TypeError(
            f"`fractions` must be a sequence of numbers; got {type(fractions).__name__}."
        ) from err
    if len(fr) == 0:
        raise ValueError("`fractions` must contain at least one fraction; got ().")
    if not all(math.isfinite(f) for f in fr):
        raise ValueError(f"`fractions` must be finite; got {fr}.")
    if any(f < 0 for f in fr):
        raise ValueError(f"`fractions` must be non-negative; got {fr}.")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must sum to 1 (within 1e-6); got {fr}, sum {sum(fr)!r}.")
    return fr


def _split_sizes(n: int, fractions: tuple[float, ...]) -> list[int]:
    # Round the cumulative boundaries, so the sizes always add up to n exactly.
    bounds = [0] + [round(c * n) for c in np.cumsum(fractions)]
    bounds[-1] = n
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def _safe_scale(spread: jax.Array, centre: jax.Array) -> jax.Array:
    # A column whose spread is at rounding level relative to its magnitude is constant:
    # use scale 1 there (no division by zero; the column maps to a constant).
    eps = jnp.finfo(spread.dtype).eps
    tiny = jnp.finfo(spread.dtype).tiny
    constant = spread <= 100 * eps * jnp.abs(centre) + tiny
    return jnp.where(constant, jnp.ones_like(spread), spread)
