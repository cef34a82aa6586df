"""The estimator's input features: population-free shape and peak size of a curve (private)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def normalize_curve(curves: ArrayLike, population: ArrayLike) -> Array:
    r"""Population-free features of count curves: scaled shape and peak fraction.

    .. math::

        x = \big(\sqrt{c_1/m}, \dots, \sqrt{c_T/m},\ \log(m/N)\big), \qquad
        m = \max(\max_i c_i, 1).

    Unchanged when ``curves`` and ``population`` are multiplied by the same factor (as
    long as the peak is at least 1).

    Args:
        curves: counts, ``(..., T)``.
        population: :math:`N`, broadcastable to ``curves.shape[:-1]``.

    Returns:
        features ``(..., T + 1)``.

    Examples:
        >>> x = normalize_curve(jnp.array([1.0, 4.0, 2.0]), 40.0)
        >>> [round(float(v), 4) for v in x]
        [0.5, 1.0, 0.7071, -2.3026]
    """
    c = jnp.asarray(curves)
    m = jnp.maximum(jnp.max(c, axis=-1, keepdims=True), 1.0)
    shape = jnp.sqrt(jnp.maximum(c, 0.0) / m)
    frac = jnp.log(m[..., 0] / jnp.asarray(population, c.dtype))
    frac = jnp.log(m[..., 0] / jnp.asarray(population, c.dtype))
    return jnp.concatenate([shape, frac[..., None]], axis=-1)
