"""Time series: sliding windows, chronological splits, count transforms and their inverses,
and :class:`LogRatioScaler`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _asarray, _is_concrete
from ._common import _as_float, _check_fractions, _safe_scale, _split_sizes


def _check_window_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}.")
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}; got {value}.")
    return int(value)


def _check_series(series: ArrayLike, name: str = "series") -> jax.Array:
    s = _asarray(series, name)
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(jnp.result_type(float))
    if s.ndim not in (1, 2):
        raise ValueError(
            f"`{name}` must be 1-D (time,) or 2-D (time, features); got shape {s.shape}."
        )
    if _is_concrete(s) and not bool(jnp.all(jnp.isfinite(s))):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return s


def sliding_windows(
    series: ArrayLike,
    input_len: int,
    horizon: int,
    stride: int = 1,
    *,
    target_feature: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Cut a time series into (input window, the values that follow) pairs.

    Window :math:`k` starts at :math:`t_k = k \cdot \text{stride}`; its inputs are
    :math:`y_{t_k}, \dots, y_{t_k + L - 1}` and its targets the next :math:`H` values
    :math:`y_{t_k + L}, \dots, y_{t_k + L + H - 1}` (``L = input_len``, ``H = horizon``),
    for every :math:`k` with :math:`t_k + L + H \le T`, i.e.
    :math:`\lfloor (T - L - H) / \text{stride} \rfloor + 1` windows.

    Args:
        series: ``(time,)`` or ``(time, features)``, finite.
        input_len: window length :math:`L`, ``>= 1``.
        horizon: number of target steps :math:`H`, ``>= 1``.
        stride: steps between consecutive window starts, ``>= 1``.
        target_feature: for a 2-D series, the column whose future values are the targets
            (e.g. cases, with derived features as extra inputs); ``None`` keeps all columns.

    Returns:
        ``(inputs, targets)``: ``inputs`` is ``(windows, input_len, features)`` (one
        feature for a 1-D series). ``targets`` is ``(windows, horizon)`` for a 1-D series
        or with ``target_feature``, else ``(windows, horizon, features)``.

    Raises:
        ValueError: ``series`` not 1-D/2-D, containing NaN or inf, or shorter than
            ``input_len + horizon``; ``input_len``, ``horizon`` or ``stride`` below 1;
            ``target_feature`` out of range.
        TypeError: non-integer window sizes.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, y = sliding_windows(jnp.arange(6.0), input_len=3, horizon=2)
        >>> x.shape, y.shape
        ((2, 3, 1), (2, 2))
        >>> x[1, :, 0].tolist(), y[1].tolist()
        ([1.0, 2.0, 3.0], [4.0, 5.0])
    """
    input_len = _check_window_int(input_len, "input_len", 1)
    horizon = _check_window_int(horizon, "horizon", 1)
    stride = _check_window_int(stride, "stride", 1)
    s = _check_series(series)
    n_time = s.shape[0]
    if n_time < input_len + horizon:
        raise ValueError(
            f"`series` has {n_time} time steps, fewer than input_len + horizon = "
            f"{input_len} + {horizon}; shorten the windows or pass a longer series."
        )
    s2 = s[:, None] if s.ndim == 1 else s
    if target_feature is not None:
        target_feature = _check_window_int(target_feature, "target_feature", 0)
        if target_feature >= s2.shape[1]:
            raise ValueError(
                f"`target_feature` must index one of the {s2.shape[1]} features; "
                f"got {target_feature}."
            )
    starts = np.arange(0, n_time - input_len - horizon + 1, stride)
    inputs = s2[starts[:, None] + np.arange(input_len)]
    targets = s2[starts[:, None] + input_len + np.arange(horizon)]
    if s.ndim == 1:
        targets = targets[..., 0]
    elif target_feature is not None:
        targets = targets[..., target_feature]
    return inputs, targets


def chronological_split(
    series: ArrayLike,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    *,
    context: int = 0,
) -> tuple[jax.Array, ...]:
    r"""Split a time series along time into consecutive parts, with no look-ahead.

    Part :math:`k` owns the time steps :math:`[b_k, b_{k+1})`, with the boundaries rounded
    as in :func:`train_val_test_split`. With ``context = c``, every part after the first
    also starts with the :math:`c` steps before its boundary (values known at its forecast
    origins). Windowing part :math:`k` with :func:`sliding_windows` and
    ``input_len = context`` then gives forecast origins from :math:`b_k` on, and every
    target lies in part :math:`k`'s own steps: no target of one part is an input or target
    of an earlier part's windows. (Splitting the *windows* with ``train_val_test_split
    (shuffle=False)`` instead would leak: the last training windows' targets are the
    first validation windows' targets.) Fit scalers on the first part only.

    Args:
        series: ``(time,)`` or ``(time, features)``, finite.
        fractions: the share of time steps per part, non-negative, summing to 1.
        context: steps of history prepended to each later part, ``>= 0`` (at most the
            earlier steps that exist).

    Returns:
        One array per part, in time order.

    Raises:
        ValueError: bad ``series`` (rank, NaN/inf, empty), ``fractions`` or ``context``.

    Examples:
        >>> import jax.numpy as jnp
        >>> train, test = chronological_split(jnp.arange(10.0), (0.7, 0.3), context=2)
        >>> train.tolist(), test.tolist()
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [5.0, 6.0, 7.0, 8.0, 9.0])
    """
    fr = _check_fractions(fractions)
    context = _check_window_int(context, "context", 0)
    s = _check_series(series)
    if s.shape[0] == 0:
        raise ValueError("`series` must be non-empty.")
    parts, start = [], 0
    for size in _split_sizes(s.shape[0], fr):
        parts.append(s[max(start - context, 0) : start + size])
        start += size
    return tuple(parts)


def _check_offset(offset: float) -> float:
    offset = _as_float(offset, "offset")
    if not (math.isfinite(offset) and offset >= 0):
        raise ValueError(f"`offset` must be finite and >= 0; got {offset}.")
    return offset


def _check_counts(counts: ArrayLike, offset: float, name: str = "counts") -> jax.Array:
    c = _asarray(counts, name)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(jnp.result_type(float))
    if _is_concrete(c):
        if not bool(jnp.all(jnp.isfinite(c))):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        if not bool(jnp.all(c + offset > 0)):
            raise ValueError(
                f"`{name}` + offset must be positive (counts >= 0 with offset > 0); got a "
                f"minimum of {float(jnp.min(c))} with offset {offset}."
            )
    return c


def log_transform(counts: ArrayLike, offset: float = 1.0) -> jax.Array:
    r"""Variance-stabilising log transform of counts, :math:`z = \log(c + \text{offset})`.

    ``offset=1`` is ``jnp.log1p`` (exact for small counts; zero counts map to 0).

    Args:
        counts: non-negative counts (any shape).
        offset: added before the log, ``>= 0``; ``counts + offset`` must be positive.

    Returns:
        :math:`z`, the shape of ``counts``.

    Raises:
        ValueError: NaN/inf counts, ``counts + offset <= 0``, or a bad ``offset``.

    Examples:
        >>> import jax.numpy as jnp
        >>> z = log_transform(jnp.array([0.0, 9.0, 99.0]))
        >>> [round(v, 4) for v in z.tolist()]
        [0.0, 2.3026, 4.6052]
        >>> [round(v, 3) for v in inverse_log_transform(z).tolist()]
        [0.0, 9.0, 99.0]
    """
    offset = _check_offset(offset)
    c = _check_counts(counts, offset)
    return jnp.log1p(c) if offset == 1.0 else jnp.log(c + offset)


def inverse_log_transform(z: ArrayLike, offset: float = 1.0) -> jax.Array:
    r"""Undo :func:`log_transform`: :math:`c = e^{z} - \text{offset}` (``expm1`` for 1)."""
    offset = _check_offset(offset)
    z = _asarray(z, "z")
    return jnp.expm1(z) if offset == 1.0 else jnp.exp(z) - offset


def ratio_transform(counts: ArrayLike, offset: float = 1.0, axis: int = 0) -> jax.Array:
    r"""Growth ratios of counts, :math:`r_t = (c_t + o) / (c_{t-1} + o)`, along ``axis``.

    :math:`r_t > 1` while the counts grow; the offset :math:`o` keeps zero counts finite.
    The result is one step shorter than ``counts`` along ``axis``.

    Args:
        counts: non-negative counts, time along ``axis``.
        offset: :math:`o \ge 0`; ``counts + offset`` must be positive.
        axis: the time axis.

    Returns:
        :math:`r`, ``counts.shape`` with ``axis`` one shorter.

    Raises:
        ValueError: NaN/inf counts, ``counts + offset <= 0``, a bad ``offset``, or fewer
            than 2 time steps.

    Examples:
        >>> import jax.numpy as jnp
        >>> r = ratio_transform(jnp.array([1.0, 3.0, 7.0]))
        >>> r.tolist()
        [2.0, 2.0]
        >>> inverse_ratio_transform(r, initial=1.0).tolist()
        [3.0, 7.0]
    """
    offset = _check_offset(offset)
    axis = _check_window_int(axis, "axis", -(2**31))  # the type now, the range below
    c = _check_counts(counts, offset)
    if c.ndim == 0 or not -c.ndim <= axis < c.ndim or c.shape[axis] < 2:
        raise ValueError(f"`counts` needs at least 2 steps along axis {axis}; got {c.shape}.")
    c = jnp.moveaxis(c, axis, 0) + offset
    return jnp.moveaxis(c[1:] / c[:-1], 0, axis)


def inverse_ratio_transform(
    ratios: ArrayLike, initial: ArrayLike, offset: float = 1.0, axis: int = 0
) -> jax.Array:
    r"""Undo :func:`ratio_transform`: :math:`c_t = (c_0 + o) \prod_{s \le t} r_s - o`.

    Args:
        ratios: growth ratios, time along ``axis``.
        initial: :math:`c_0`, the count before the first ratio (broadcast against
            ``ratios`` without its time axis).
        offset: the :math:`o` used by :func:`ratio_transform`.
        axis: the time axis.

    Returns:
        The counts after ``initial``, the shape of ``ratios``.
    """
    offset = _check_offset(offset)
    axis = _check_window_int(axis, "axis", -(2**31))
    r = _asarray(ratios, "ratios")
    if not -r.ndim <= axis < r.ndim:
        raise ValueError(f"`axis` {axis} is not a time axis of `ratios` of shape {r.shape}.")
    c0 = _asarray(initial, "initial")
    r = jnp.moveaxis(r, axis, 0)
    c = (c0 + offset) * jnp.cumprod(r, axis=0) - offset
    return jnp.moveaxis(c, 0, axis)


class LogRatioScaler(NamedTuple):
    r"""Window scaling for counts: log ratios to the last input value, standardised.

    For an input window :math:`x_{1:L}` (features :math:`j`) and the target series' last
    input value :math:`a = x_{L, j^*}`,

    .. math::

        u_{t j} = \frac{\log(x_{t j} + o) - \log(x_{L j} + o)}{s_j}, \qquad
        v_k = \frac{\log(y_k + o) - \log(a + o)}{s_y},

    so every window is expressed relative to its own last observation (log growth since
    the forecast origin): scale-free, the same for a village outbreak and a city's, and
    persistence is :math:`v = 0`. The scales :math:`s_j` and :math:`s_y` are standard
    deviations over the training windows (:meth:`fit`; 1 where constant).
    :meth:`inverse_transform` maps :math:`v` back to counts,
    :math:`y = (a + o)\, e^{s_y v} - o`.

    Attributes:
        input_scale: :math:`s_j`, shape ``(features,)``.
        target_scale: :math:`s_y`, a scalar.
        offset: :math:`o`.
        target_feature: :math:`j^*`, the input column that holds the target series.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, y = sliding_windows(jnp.array([1.0, 3.0, 7.0, 15.0, 31.0, 63.0]), 3, 2)
        >>> sc = LogRatioScaler.fit(x, y)
        >>> u, v = sc.transform(x, y)
        >>> [[round(c, 3) for c in row] for row in sc.inverse_transform(v, x).tolist()]
        [[15.0, 31.0], [31.0, 63.0]]
    """

    input_scale: jax.Array
    target_scale: jax.Array
    offset: float = 1.0
    target_feature: int = 0

    @classmethod
    def fit(
        cls, inputs: ArrayLike, targets: ArrayLike, offset: float = 1.0,
        target_feature: int = 0,
    ) -> LogRatioScaler:
        """Fit the scales on training windows.

        Args:
            inputs: ``(windows, time, features)`` non-negative counts.
            targets: ``(windows, horizon)``, the future of column ``target_feature``.
            offset: :math:`o`, ``> 0`` for zero counts.
            target_feature: the input column the targets continue.

        Returns:
            The fitted :class:`LogRatioScaler`.

        Raises:
            ValueError: bad shapes, NaN, or ``counts + offset <= 0``.
        """
        offset = _check_offset(offset)
        x, y = _check_window_pair(inputs, targets, offset, target_feature)
        base = cls(jnp.ones(x.shape[-1], x.dtype), jnp.ones((), x.dtype), offset,
                   target_feature)
        u, v = base.transform(x, y)
        su, sv = jnp.std(u[:, :-1], axis=(0, 1)), jnp.std(v)  # the last step is always 0
        return base._replace(input_scale=_safe_scale(su, jnp.ones_like(su)),
                             target_scale=_safe_scale(sv, jnp.ones_like(sv)))

    def _anchor(self, inputs: jax.Array) -> jax.Array:
        return jnp.log(inputs[:, -1, self.target_feature] + self.offset)

    def transform(
        self, inputs: ArrayLike, targets: ArrayLike | None = None
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Scaled inputs ``u`` (and targets ``v`` when given)."""
        x = _check_counts(inputs, self.offset, "inputs")
        if x.ndim != 3:
            raise ValueError(f"`inputs` must be (windows, time, features); got {x.shape}.")
        lx = jnp.log(x + self.offset)
        u = (lx - lx[:, -1:, :]) / self.input_scale
        if targets is None:
            return u
        y = _check_counts(targets, self.offset, "targets")
        v = (jnp.log(y + self.offset) - self._anchor(x)[:, None]) / self.target_scale
        return u, v

    def inverse_transform(self, v: ArrayLike, inputs: ArrayLike) -> jax.Array:
        """Counts from scaled targets ``v`` of shape ``(windows, horizon, ...)``."""
        v = _asarray(v, "v")
        x = _asarray(inputs, "inputs")
        a = self._anchor(x).reshape(x.shape[0], *([1] * (v.ndim - 1)))
        return jnp.exp(v * self.target_scale + a) - self.offset


def _check_window_pair(inputs, targets, offset, target_feature):
    target_feature = _check_window_int(target_feature, "target_feature", 0)
    x = _check_counts(inputs, offset, "inputs")
    y = _check_counts(targets, offset, "targets")
    if x.ndim != 3:
        raise ValueError(f"`inputs` must be (windows, time, features); got {x.shape}.")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`targets` must be (windows, horizon) with {x.shape[0]} windows; got {y.shape}."
        )
    if not 0 <= target_feature < x.shape[-1]:
        raise ValueError(
            f"`target_feature` must index one of the {x.shape[-1]} features; "
            f"got {target_feature}."
        )
    return x, y
