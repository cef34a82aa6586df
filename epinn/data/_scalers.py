"""Feature scalers fitted on the training split: :class:`Standardizer`, :class:`MinMaxScaler`."""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _asarray
from ._common import _safe_scale


def _check_axes(axis: Any) -> tuple[int, ...]:
    try:
        if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            return (operator.index(axis),)
        return tuple(operator.index(a) for a in axis)
    except TypeError:
        raise TypeError(f"`axis` must be 0 or a tuple of leading axes; got {axis!r}.") from None


def _check_fit_input(x: ArrayLike, axis: int | tuple[int, ...]) -> tuple[jax.Array, tuple]:
    x = _asarray(x, "x")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    axes = _check_axes(axis)
    if x.ndim == 0:
        raise ValueError("`x` must have at least one (sample) axis; got a scalar.")
    if axes != tuple(range(len(axes))) or len(axes) > x.ndim or len(axes) == 0:
        raise ValueError(
            f"`axis` must be 0 or a tuple of leading axes (0, 1, ...) of `x` "
            f"(ndim {x.ndim}); got {axis!r}."
        )
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"`x` must be non-empty along the fitted axes; got shape {x.shape}.")
    # Values are checked on the host (no compilation per shape); under jit, where the values
    # are not known yet, this check is skipped and NaNs would propagate into the statistics.
    if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
        raise ValueError("`x` contains NaN or infinite values.")
    return x, axes


def _fitted_shape(x: ArrayLike, stat: jax.Array, name: str) -> jax.Array:
    """``x`` as an array whose trailing axes match the fitted statistics' shape."""
    x = _asarray(x, name)
    k = stat.ndim
    if x.ndim < k or x.shape[x.ndim - k:] != stat.shape:
        raise ValueError(
            f"`{name}` must end with the fitted per-feature shape {stat.shape}; "
            f"got shape {x.shape}."
        )
    return x


@functools.partial(jax.jit, static_argnums=1)
def _standardizer_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(x, axis=axes)
    return mean, _safe_scale(jnp.std(x, axis=axes), mean)


@functools.partial(jax.jit, static_argnums=1)
def _minmax_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    lo, hi = jnp.min(x, axis=axes), jnp.max(x, axis=axes)
    return lo, _safe_scale(hi - lo, jnp.maximum(jnp.abs(lo), jnp.abs(hi)))


class Standardizer(NamedTuple):
    r"""Per-feature standardisation :math:`z = (x - \mu) / \sigma`, an immutable PyTree.

    :math:`\mu` and :math:`\sigma` (the population standard deviation, ``ddof=0``) are
    computed over the sample axis (or leading axes) by :meth:`fit`. A constant feature,
    whose :math:`\sigma` is zero up to rounding (:math:`\sigma \le 100\,\epsilon|\mu|`),
    gets :math:`\sigma = 1`, so it maps to zero rather than dividing by zero.

    Attributes:
        mean: :math:`\mu`, shape of ``x`` without the fitted axes.
        scale: :math:`\sigma` (1 for constant features), same shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0, 5.0], [3.0, 5.0]])
        >>> s = Standardizer.fit(x)
        >>> s.transform(x).tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
        >>> s.inverse_transform(s.transform(x)).tolist()
        [[1.0, 5.0], [3.0, 5.0]]
    """

    mean: jax.Array
    scale: jax.Array

    @classmethod
    def fit(cls, x: ArrayLike, axis: int | tuple[int, ...] = 0) -> Standardizer:
        """Fit the mean and standard deviation of ``x`` over ``axis``.

        Args:
            x: data, samples along axis 0 (or along the leading axes given by ``axis``).
            axis: ``0``, or a tuple of leading axes such as ``(0, 1)`` for
                ``(samples, time, features)`` data.

        Returns:
            The fitted :class:`Standardizer`.

        Raises:
            ValueError: if ``x`` is empty or non-finite (values are not checked under
                ``jit``), or ``axis`` is not leading.
        """
        x, axes = _check_fit_input(x, axis)
        return cls(*_standardizer_stats(x, axes))

    def transform(self, x: ArrayLike) -> jax.Array:
        """Return :math:`(x - \\mu) / \\sigma`."""
        return (_fitted_shape(x, self.mean, "x") - self.mean) / self.scale

    def inverse_transform(self, z: ArrayLike) -> jax.Array:
        """Return :math:`z \\sigma + \\mu`, undoing :meth:`transform`."""
        return _fitted_shape(z, self.mean, "z") * self.scale + self.mean


class MinMaxScaler(NamedTuple):
    r"""Per-feature rescaling to ``feature_range``, an immutable PyTree.

    .. math::

        z = \mathrm{low} + (\mathrm{high} - \mathrm{low})
            \frac{x - x_{\min}}{x_{\max} - x_{\min}}.

    A constant feature (range zero up to rounding) gets range 1, so it maps to ``low``.

    Attributes:
        data_min: :math:`x_{\min}` per feature.
        data_range: :math:`x_{\max} - x_{\min}` per feature (1 for constant features).
        low: lower end of the target range.
        high: upper end of the target range.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[0.0, 2.0], [5.0, 2.0], [10.0, 2.0]])
        >>> s = MinMaxScaler.fit(x)
        >>> s.transform(x).tolist()
        [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]
        >>> MinMaxScaler.fit(x, feature_range=(-1, 1)).transform(x)[:, 0].tolist()
        [-1.0, 0.0, 1.0]
    """

    data_min: jax.Array
    data_range: jax.Array
    low: jax.Array
    high: jax.Array

    @classmethod
    def fit(
        cls,
        x: ArrayLike,
        feature_range: tuple[float, float] = (0.0, 1.0),
        axis: int | tuple[int, ...] = 0,
    ) -> MinMaxScaler:
        """Fit the per-feature minimum and range of ``x`` over ``axis``.

        Args:
            x: data, samples along axis 0 (or along the leading axes given by ``axis``).
            feature_range: ``(low, high)`` with ``low < high``.
            axis: ``0``, or a tuple of leading axes.

        Returns:
            The fitted :class:`MinMaxScaler`.

        Raises:
            ValueError: if ``x`` is empty or non-finite (values are not checked under
                ``jit``), ``axis`` is not leading, or
                ``feature_range`` is not an increasing finite pair.
        """
        try:
            low, high = (float(v) for v in feature_range)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`feature_range` must be a pair (low, high); got {feature_range!r}."
            ) from err
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"`feature_range` must be finite with low < high; got {feature_range!r}."
            )
        x, axes = _check_fit_input(x, axis)
        lo, rng = _minmax_stats(x, axes)
        return cls(data_min=lo, data_range=rng, low=jnp.asarray(low, x.dtype),
                   high=jnp.asarray(high, x.dtype))

    def transform(self, x: ArrayLike) -> jax.Array:
        """Map ``x`` to ``feature_range``."""
        unit = (_fitted_shape(x, self.data_min, "x") - self.data_min) / self.data_range
        return self.low + (self.high - self.low) * unit

    def inverse_transform(self, z: ArrayLike) -> jax.Array:
        """Map scaled values back to the original units, undoing :meth:`transform`."""
        unit = (_fitted_shape(z, self.data_min, "z") - self.low) / (self.high - self.low)
        return unit * self.data_range + self.data_min
