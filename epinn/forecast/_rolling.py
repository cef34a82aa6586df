r"""Rolling-origin evaluation: forecasters run from every origin of one or more series."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _as_float_array, _asarray, _check_int
from ..data import sliding_windows
from ._common import _check_horizon
from ._errors import forecast_errors

Forecaster = Callable[[jax.Array], ArrayLike]


class RollingOriginResult(NamedTuple):
    """What :func:`rolling_origin_evaluation` returns.

    Attributes:
        origins: the time index of each window's first target (the forecast origin).
        series_index: which series each window comes from.
        inputs: the input windows ``(windows, input_len, features)``.
        targets: the observed values ``(windows, horizon)``.
        predictions: ``{name: (windows, horizon)}`` per forecaster.
        errors: ``{name: {"mae", "rmse", "mape": (horizon,)}}`` per forecaster.
    """

    origins: np.ndarray
    series_index: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    predictions: dict[str, np.ndarray]
    errors: dict[str, dict[str, np.ndarray]]

    def summary(self) -> dict[str, dict[str, Any]]:
        """JSON-friendly errors: per forecaster, per metric, the list per step and its mean
        (NaN as ``None``)."""

        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        out = {}
        for name, errs in self.errors.items():
            out[name] = {}
            for metric, per_step in errs.items():
                finite = per_step[np.isfinite(per_step)]
                out[name][metric] = [clean(v) for v in per_step]
                out[name][metric + "_mean"] = clean(finite.mean()) if finite.size else None
        return out


def rolling_origin_evaluation(
    series: ArrayLike | Sequence[ArrayLike],
    forecasters: Mapping[str, Forecaster],
    input_len: int,
    horizon: int,
    *,
    first_origin: int | None = None,
    stride: int = 1,
    target_feature: int = 0,
) -> RollingOriginResult:
    r"""Evaluate forecasters from every forecast origin of one or more series.

    For each series :math:`y_{0:T}` and each origin :math:`o = o_0, o_0 + s, \dots \le
    T - H`, every forecaster receives the window :math:`y_{o-L:o}` (all features) and
    forecasts :math:`y_{o:o+H}` of ``target_feature``. The errors
    (:func:`forecast_errors`) pool all windows of all series, per horizon step.

    Args:
        series: one series ``(time,)`` / ``(time, features)``, or a sequence of them
            (e.g. held-out simulated outbreaks), each at least ``first_origin + horizon``
            long.
        forecasters: ``{name: f}`` with ``f(inputs) -> (windows, horizon)`` for
            ``inputs`` of shape ``(windows, input_len, features)``.
        input_len: window length :math:`L`.
        horizon: forecast steps :math:`H`.
        first_origin: :math:`o_0 \ge L`, the first origin (default :math:`L`); e.g. the
            start of the test part of a series.
        stride: steps :math:`s` between origins.
        target_feature: the column forecast (for multivariate series; ``0`` for a 1-D
            series).

    Returns:
        :class:`RollingOriginResult`.

    Raises:
        ValueError: a series too short, ``first_origin < input_len``, bad window sizes,
            NaN in a series, ``target_feature`` not a column of every series, or a
            forecaster returning the wrong shape.

    Examples:
        >>> import numpy as np
        >>> from epinn import persistence_forecast
        >>> res = rolling_origin_evaluation(
        ...     np.arange(10.0), {"last": lambda x: persistence_forecast(x, 2)},
        ...     input_len=3, horizon=2)
        >>> res.origins.tolist(), res.errors["last"]["mae"].tolist()
        ([3, 4, 5, 6, 7, 8], [1.0, 2.0])
    """
    if not isinstance(forecasters, Mapping) or not forecasters:
        raise ValueError("`forecasters` must be a non-empty mapping {name: callable}.")
    for fname, f in forecasters.items():
        if not callable(f):
            raise TypeError(f"`forecasters[{fname!r}]` must be callable; got "
                            f"{type(f).__name__}.")
    h = _check_horizon(horizon)
    # A list of arrays is several series; a list of numbers is one.
    many = isinstance(series, (list, tuple)) and all(np.ndim(s) >= 1 for s in series)
    all_series = list(series) if many else [series]
    if not all_series:
        raise ValueError("`series` must hold at least one series.")
    input_len = _check_int(input_len, "input_len", 1)
    stride = _check_int(stride, "stride", 1)
    target_feature = _check_int(target_feature, "target_feature", 0)
    o0 = input_len if first_origin is None else first_origin
    if isinstance(o0, bool) or not isinstance(o0, (int, np.integer)):
        raise TypeError(f"`first_origin` must be an int; got {type(o0).__name__} {o0!r}.")
    if o0 < input_len:
        raise ValueError(
            f"`first_origin` must be an int >= input_len = {input_len}; got {first_origin!r}."
        )
    o0 = int(o0)
    xs, ys, origins, index = [], [], [], []
    for i, s in enumerate(all_series):
        name = f"series[{i}]" if many else "series"
        s = _asarray(s, name)
        if s.ndim not in (1, 2) or s.shape[0] < o0 + h:
            raise ValueError(
                f"`{name}` must be (time,) or (time, features) with at least first_origin "
                f"+ horizon = {o0 + h} steps; got shape {s.shape}."
            )
        # A 1-D series is one feature, so only target_feature=0 fits (sliding_windows
        # checks it the same way for 1-D and 2-D series).
        x, y = sliding_windows(s[o0 - input_len :], input_len, h, stride,
                               target_feature=target_feature)
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        origins.append(o0 + stride * np.arange(x.shape[0]))
        index.append(np.full(x.shape[0], i))
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    predictions, errors = {}, {}
    for fname, f in forecasters.items():
        pred = _as_float_array(f(jnp.asarray(x_all)), f"the output of forecaster {fname!r}")
        if pred.shape != y_all.shape:
            raise ValueError(
                f"Forecaster {fname!r} returned shape {pred.shape}; expected {y_all.shape} "
                "(windows, horizon)."
            )
        predictions[fname] = pred
        errors[fname] = forecast_errors(pred, y_all)
    return RollingOriginResult(
        origins=np.concatenate(origins), series_index=np.concatenate(index),
        inputs=x_all, targets=y_all, predictions=predictions, errors=errors,
    )
