r"""Forecast evaluation: rolling origins, error per horizon step, baselines, uncertainty.

A *forecaster* is any function ``f(inputs) -> predictions`` that maps input windows
``(windows, input_len, features)`` (as made by :func:`epinn.data.sliding_windows`) to
forecasts ``(windows, horizon)`` -- a trained :class:`epinn.RNNForecaster` wrapped with its
scaling, or one of the baselines here:

* :func:`persistence_forecast` -- the last value, repeated;
* :func:`linear_trend_forecast` -- a least-squares line through the last values;
* :func:`seasonal_naive_forecast` -- the value one period earlier;
* :func:`projection_forecast` -- any fitted model projected forward (a fit-then-predict
  callable per window), and :func:`sir_projection_forecast`, the SIR least-squares fit of
  :func:`epinn.estimation.fit_parameters` projected forward.

:func:`rolling_origin_evaluation` runs forecasters from every origin of one or more series
and reports MAE, RMSE and MAPE per horizon step (:func:`forecast_errors`).

Uncertainty: a quantile head trained with :func:`pinball_loss`, or an ensemble over
seeds (:class:`SeedEnsemble`, members vmapped in one module and trained in one
:func:`epinn.fit` with :func:`ensemble_loss`); :func:`interval_coverage` gives the
empirical coverage of an interval, e.g. the 80% interval between the 10% and 90%
quantiles.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import _as_float_array, _asarray, _check_int, _did_you_mean, _is_concrete, _unknown_name
from .data import sliding_windows
from .losses import LOSSES, get_loss

__all__ = [
    "RollingOriginResult",
    "SeedEnsemble",
    "ensemble_loss",
    "ensemble_quantiles",
    "forecast_errors",
    "interval_coverage",
    "linear_trend_forecast",
    "persistence_forecast",
    "pinball_loss",
    "projection_forecast",
    "rolling_origin_evaluation",
    "seasonal_naive_forecast",
    "sir_projection_forecast",
]

Forecaster = Callable[[jax.Array], ArrayLike]

# --------------------------------------------------------------------------------------
# Errors per horizon step
# --------------------------------------------------------------------------------------


def _check_pred_target(predictions: ArrayLike, targets: ArrayLike):
    p = _as_float_array(predictions, "predictions")
    y = _as_float_array(targets, "targets")
    if p.shape != y.shape:
        raise ValueError(
            f"`predictions` and `targets` must have the same shape; got {p.shape} and "
            f"{y.shape}."
        )
    if p.ndim < 2:
        raise ValueError(
            f"`predictions` must be (windows, horizon[, ...]); got shape {p.shape}."
        )
    if p.shape[0] == 0:
        raise ValueError("`predictions` must hold at least one window.")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))):
        raise ValueError("`predictions` and `targets` must be finite.")
    return p, y


def forecast_errors(predictions: ArrayLike, targets: ArrayLike) -> dict[str, np.ndarray]:
    r"""MAE, RMSE and MAPE per horizon step.

    For windows :math:`n = 1..N` and horizon step :math:`k`,

    .. math::

        \text{MAE}_k = \frac1N \sum_n |e_{nk}|, \quad
        \text{RMSE}_k = \Big(\frac1N \sum_n e_{nk}^2\Big)^{1/2}, \quad
        \text{MAPE}_k = \frac{100}{|\mathcal{N}_k|} \sum_{n \in \mathcal{N}_k}
            \frac{|e_{nk}|}{|y_{nk}|},

    with :math:`e = \hat y - y` and :math:`\mathcal{N}_k = \{n : y_{nk} \ne 0\}` (MAPE is
    undefined for zero counts; it is NaN if every target of a step is 0). Trailing axes
    (several target series) are averaged like windows.

    Args:
        predictions: ``(windows, horizon[, ...])``.
        targets: the same shape.

    Returns:
        ``{"mae": (horizon,), "rmse": (horizon,), "mape": (horizon,)}`` as numpy float64.

    Raises:
        ValueError: shapes differ, fewer than 2 dimensions, no windows, or NaN/inf.

    Examples:
        >>> import numpy as np
        >>> err = forecast_errors(np.array([[1.0, 2.0], [3.0, 6.0]]),
        ...                       np.array([[2.0, 2.0], [3.0, 4.0]]))
        >>> err["mae"].tolist(), err["mape"].tolist()
        ([0.5, 1.0], [25.0, 25.0])
    """
    p, y = _check_pred_target(predictions, targets)
    e = np.moveaxis(p - y, 1, 0).reshape(p.shape[1], -1)
    yy = np.moveaxis(y, 1, 0).reshape(p.shape[1], -1)
    nz = yy != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.where(nz, np.abs(e) / np.where(nz, np.abs(yy), 1.0), 0.0)
        mape = 100.0 * ape.sum(axis=1) / nz.sum(axis=1)
    return {
        "mae": np.abs(e).mean(axis=1),
        "rmse": np.sqrt((e**2).mean(axis=1)),
        "mape": np.where(nz.any(axis=1), mape, np.nan),
    }


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def _target_history(inputs: ArrayLike, target_feature: int) -> jax.Array:
    x = _asarray(inputs, "inputs")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"`inputs` must be (windows, time, features) or (windows, time); got {x.shape}."
        )
    x = x if x.ndim == 3 else x[..., None]  # (windows, time) is one feature
    n_feat = x.shape[-1]
    if isinstance(target_feature, bool) or not isinstance(target_feature, (int, np.integer)) or (
        not 0 <= target_feature < n_feat
    ):
        raise ValueError(
            f"`target_feature` must be an int indexing one of the {n_feat} features; "
            f"got {target_feature!r}."
        )
    return x[..., target_feature]


def _check_history(inputs: ArrayLike, target_feature: int) -> jax.Array:
    """The target column of every window, ``(windows, time)``, checked finite.

    Shared by the baselines. The check needs values, so it runs only on concrete arrays
    (under ``jit`` the inputs are tracers and pass through unchecked).
    """
    x = _target_history(inputs, target_feature)
    if _is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(
            "`inputs` holds NaN or infinite values in the target column "
            f"(target_feature={target_feature}); a baseline forecast from them is not "
            "defined."
        )
    return x


def _check_horizon(horizon: Any) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1; got {horizon!r}.")
    return int(horizon)


def persistence_forecast(
    inputs: ArrayLike, horizon: int, *, target_feature: int = 0
) -> jax.Array:
    r"""Persistence (naive) forecast: :math:`\hat y_{L+k} = y_L` for every step :math:`k`.

    Args:
        inputs: ``(windows, time, features)`` or ``(windows, time)``.
        horizon: number of steps, ``>= 1``.
        target_feature: the column to forecast.

    Returns:
        ``(windows, horizon)``.

    Raises:
        ValueError: a bad ``horizon`` or ``target_feature``, or NaN/inf in the target
            column of concrete ``inputs``.

    Examples:
        >>> import jax.numpy as jnp
        >>> persistence_forecast(jnp.array([[1.0, 4.0]]), 3).tolist()
        [[4.0, 4.0, 4.0]]
    """
    h = _check_horizon(horizon)
    x = _check_history(inputs, target_feature)
    return jnp.repeat(x[:, -1:], h, axis=1)


def linear_trend_forecast(
    inputs: ArrayLike,
    horizon: int,
    *,
    fit_len: int | None = None,
    target_feature: int = 0,
    nonnegative: bool = True,
) -> jax.Array:
    r"""Linear-trend forecast: a least-squares line through the last ``fit_len`` values.

    With :math:`\bar t, \bar y` the means over the fitted points,
    :math:`b = \sum (t - \bar t)(y - \bar y) / \sum (t - \bar t)^2` and
    :math:`\hat y_{L+k} = \bar y + b (L + k - \bar t)` (clipped at 0 for counts when
    ``nonnegative``).

    Args:
        inputs: ``(windows, time, features)`` or ``(windows, time)``.
        horizon: number of steps, ``>= 1``.
        fit_len: number of final values in the fit, ``>= 2`` (default: the whole window).
        target_feature: the column to forecast.
        nonnegative: clip the forecast at 0.

    Returns:
        ``(windows, horizon)``.

    Raises:
        ValueError: windows shorter than 2 time steps, ``fit_len`` outside
            ``[2, time]``, a bad ``horizon`` or ``target_feature``, or NaN/inf in the
            target column of concrete ``inputs``.

    Examples:
        >>> import jax.numpy as jnp
        >>> linear_trend_forecast(jnp.array([[1.0, 3.0, 5.0]]), 2).tolist()
        [[7.0, 9.0]]
    """
    h = _check_horizon(horizon)
    x = _check_history(inputs, target_feature)
    if x.shape[1] < 2:
        raise ValueError(
            f"`inputs` windows have {x.shape[1]} time step(s); a linear trend needs >= 2 "
            "time steps per window."
        )
    n = x.shape[1] if fit_len is None else fit_len
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= x.shape[1]:
        raise ValueError(f"`fit_len` must be an int in [2, {x.shape[1]}]; got {fit_len!r}.")
    y = x[:, -n:]
    t = jnp.arange(n, dtype=y.dtype)
    tc = t - t.mean()
    # Full float32 precision: GPUs default to TF32 (~1e-3 relative) for matrix products.
    yc = y - y.mean(axis=1, keepdims=True)
    slope = jnp.matmul(yc, tc, precision="highest") / jnp.sum(tc**2)
    t_future = n - 1 + jnp.arange(1, h + 1, dtype=y.dtype) - t.mean()
    out = y.mean(axis=1, keepdims=True) + slope[:, None] * t_future
    return jnp.maximum(out, 0.0) if nonnegative else out


def seasonal_naive_forecast(
    inputs: ArrayLike, horizon: int, period: int, *, target_feature: int = 0
) -> jax.Array:
    r"""Seasonal naive forecast: the value one period earlier, :math:`\hat y_{L+k} =
    y_{L+k-p\lceil k/p \rceil}` (e.g. ``period=7`` for a weekly reporting cycle).

    Args:
        inputs: ``(windows, time, features)`` or ``(windows, time)``.
        horizon: number of steps, ``>= 1``.
        period: the season length :math:`p`, ``1 <= period <= time`` (``period=1`` is
            persistence).
        target_feature: the column to forecast.

    Returns:
        ``(windows, horizon)``.

    Raises:
        ValueError: ``period`` outside ``[1, time]``, a bad ``horizon`` or
            ``target_feature``, or NaN/inf in the target column of concrete ``inputs``.

    Examples:
        >>> import jax.numpy as jnp
        >>> seasonal_naive_forecast(jnp.array([[1.0, 2.0, 3.0]]), 4, period=2).tolist()
        [[2.0, 3.0, 2.0, 3.0]]
    """
    h = _check_horizon(horizon)
    x = _check_history(inputs, target_feature)
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or not (
        1 <= period <= x.shape[1]
    ):
        raise ValueError(f"`period` must be an int in [1, {x.shape[1]}]; got {period!r}.")
    k = np.arange(1, h + 1)
    idx = x.shape[1] - 1 + k - period * np.ceil(k / period).astype(int)
    return x[:, idx]


def projection_forecast(
    inputs: ArrayLike,
    horizon: int,
    fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], ArrayLike]],
    *,
    target_feature: int = 0,
) -> np.ndarray:
    r"""Fit a model to each window and project it forward: the generic fitted baseline.

    For each window, ``predict = fit(t, y)`` with window times ``t = 0, ..., L - 1`` and
    the window's values ``y``; the forecast is ``predict(L, ..., L + horizon - 1)``. Any
    parametric curve works: an SIR fit (see :func:`sir_projection_forecast`), an
    exponential growth fit, a Richards curve. Runs on the host, one window at a time.

    Args:
        inputs: ``(windows, time, features)`` or ``(windows, time)``.
        horizon: number of steps, ``>= 1``.
        fit: ``fit(t, y) -> predict``, ``predict(t_future) -> (horizon,)`` values.
        target_feature: the column to forecast.

    Returns:
        ``(windows, horizon)`` numpy array.

    Raises:
        ValueError: a bad ``horizon`` or ``target_feature``, NaN/inf in the target
            column of ``inputs``, or ``predict`` returning the wrong shape.

    Examples:
        >>> import numpy as np
        >>> def exp_fit(t, y):   # log-linear growth fit
        ...     b, a = np.polyfit(t, np.log(y), 1)
        ...     return lambda tf: np.exp(a + b * tf)
        >>> projection_forecast(np.array([[1.0, 2.0, 4.0]]), 2, exp_fit).round(3).tolist()
        [[8.0, 16.0]]
    """
    h = _check_horizon(horizon)
    x = np.asarray(_check_history(inputs, target_feature), dtype=float)
    t = np.arange(x.shape[1], dtype=float)
    t_future = x.shape[1] + np.arange(h, dtype=float)
    out = np.empty((x.shape[0], h))
    for n in range(x.shape[0]):
        pred = _as_float_array(fit(t, x[n])(t_future), "the output of `fit`")
        if pred.shape != (h,):
            raise ValueError(f"`fit`'s predictor returned shape {pred.shape}; expected ({h},).")
        out[n] = pred
    return out


def sir_projection_forecast(
    inputs: ArrayLike,
    horizon: int,
    *,
    population: float | ArrayLike | None = None,
    target_feature: int = 0,
    init: Mapping[str, float] | None = None,
    steps: int = 200,
    batch_size: int = 256,
) -> np.ndarray:
    r"""SIR least-squares fit to each window's incidence, projected forward.

    Each window's counts :math:`y_1, \dots, y_L` are taken as the incidence in the unit
    intervals :math:`(t-1, t]`, divided by a scale :math:`c` (``population``, or 20 times
    the window's total when not given). :func:`epinn.estimation.fit_parameters_batch`
    (Levenberg-Marquardt through the ODE solver, all windows in one vectorised call) fits
    :math:`\beta`, :math:`\gamma` and the susceptible and infectious fractions
    :math:`S_0, I_0` at the window start (population 1), starting from
    ``init`` (default :math:`\beta = 0.4`, :math:`\gamma = 0.2`, :math:`S_0 = 0.9`,
    :math:`I_0 = 10^{-3}`). The fitted SIR model is solved on to
    :math:`L + \text{horizon}` (:func:`epinn.compartmental.solve_ensemble`) and its
    incidence over the future intervals, times :math:`c`, is the forecast. (A fit may put
    :math:`S_0 + I_0 > 1`; since :math:`N` enters SIR only through :math:`\beta S I / N`,
    the projection uses :math:`N' = \max(1, S_0 + I_0)` and :math:`\beta' = \beta N'`,
    the same dynamics.) Windows whose fit does not converge, or whose projection is not
    finite, fall back to persistence.

    Args:
        inputs: ``(windows, time, features)`` or ``(windows, time)`` incidence counts.
        horizon: number of steps, ``>= 1``.
        population: the scale :math:`c` (a scalar or one per window), e.g. the population.
        target_feature: the column holding the incidence.
        init: starting values ``{"beta", "gamma", "S0", "I0"}`` (fractions for the states).
        steps: maximum Levenberg-Marquardt steps.
        batch_size: windows fitted together (memory).

    Returns:
        ``(windows, horizon)`` numpy array.

    Raises:
        ValueError: a bad ``horizon`` or ``population``, or counts that are negative or
            NaN.
    """
    from .compartmental import SIR, incidence, solve_ensemble  # noqa: PLC0415
    from .estimation import fit_parameters_batch  # noqa: PLC0415 (estimation sits on top)

    h = _check_horizon(horizon)
    pop = None if population is None else _as_float_array(population, "population")
    steps = _check_int(steps, "steps", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    start = {"beta": 0.4, "gamma": 0.2, "S0": 0.9, "I0": 1e-3}
    if init is not None and not isinstance(init, Mapping):
        raise TypeError(f"`init` must be a mapping such as {{'beta': 0.3}}; got "
                        f"{type(init).__name__}.")
    for k, v in (init or {}).items():
        if k not in start:
            raise ValueError(f"`init` has an unknown key {k!r}{_did_you_mean(k, start)}; "
                             f"valid keys are {sorted(start)}.")
        v = _as_float_array(v, f"init[{k!r}]")
        if v.ndim != 0 or not math.isfinite(float(v)):
            raise ValueError(f"`init[{k!r}]` must be one finite number; got {init[k]!r}.")
        start[k] = float(v)
    x = np.asarray(_check_history(inputs, target_feature), dtype=float)
    n_win, L = x.shape
    if np.any(x < 0):
        raise ValueError("`inputs` must hold non-negative counts.")
    if population is None:
        scale = 20.0 * np.maximum(x.sum(axis=1), 1.0)
    else:
        try:
            scale = np.broadcast_to(pop, (n_win,)).copy()
        except ValueError:
            raise ValueError(f"`population` must be a scalar or one value per window "
                             f"({n_win}); got shape {pop.shape}.") from None
        if not np.all(np.isfinite(scale) & (scale >= x.sum(axis=1))) or np.any(scale <= 0):
            raise ValueError("`population` must be positive and at least each window's total.")
    fitted = fit_parameters_batch(
        SIR(), np.arange(1.0, L + 1.0), {"incidence": x / scale[:, None]},
        y0={"S": start["S0"], "I": start["I0"], "R": 0.0},
        init={"beta": start["beta"], "gamma": start["gamma"], "N": 1.0},
        free=("beta", "gamma", "S0", "I0"), t0=0.0, steps=steps,
        batch_size=min(batch_size, n_win),
    )
    s0, i0 = fitted["S0"].astype(float), fitted["I0"].astype(float)
    n_eff = np.maximum(1.0, s0 + i0)
    ok = np.isfinite(s0) & np.isfinite(i0) & np.isfinite(fitted["beta"]) & np.isfinite(
        fitted["gamma"])
    safe = lambda v, d: np.where(ok, v, d)  # noqa: E731 (placeholders for failed fits)
    traj = solve_ensemble(
        SIR(),
        {"beta": jnp.asarray(safe(fitted["beta"] * n_eff, 0.1)),
         "gamma": jnp.asarray(safe(fitted["gamma"], 0.1)), "N": jnp.asarray(safe(n_eff, 1.0))},
        {"S": jnp.asarray(safe(s0, 0.9)), "I": jnp.asarray(safe(i0, 1e-3)),
         "R": jnp.asarray(safe(np.maximum(n_eff - s0 - i0, 0.0), 0.0))},
        jnp.arange(0.0, L + h + 1.0), throw=False,
    )
    pred = np.asarray(incidence(traj), dtype=float)[:, L : L + h] * scale[:, None]
    good = ok & np.all(np.isfinite(pred), axis=1) & np.asarray(fitted["converged"])
    return np.where(good[:, None], pred, x[:, -1:])


# --------------------------------------------------------------------------------------
# Rolling-origin evaluation
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Uncertainty: quantile head, seed ensembles, coverage
# --------------------------------------------------------------------------------------


def _check_levels(levels: Any, name: str) -> tuple[float, ...]:
    """Quantile levels as a non-empty tuple of floats, each in the open interval (0, 1)."""
    try:
        arr = np.asarray(levels, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a sequence of floats; got {levels!r}.") from err
    if isinstance(levels, str) or arr.ndim != 1 or arr.size == 0 or not np.all(
        (arr > 0.0) & (arr < 1.0)
    ):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of levels in (0, 1); got {levels!r}."
        )
    return tuple(float(q) for q in arr)


def pinball_loss(quantiles: Sequence[float]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""Pinball (quantile) loss for a head predicting several quantiles per step.

    For quantile levels :math:`\tau_q` and predictions :math:`\hat y_{\cdot q}`,

    .. math::

        \ell = \frac{1}{nQ} \sum_{i, q} \max\big(\tau_q (y_i - \hat y_{iq}),
            (\tau_q - 1)(y_i - \hat y_{iq})\big),

    minimised by the :math:`\tau_q`-quantiles of :math:`y` given the inputs
    (Koenker & Bassett 1978). Hand-written: optax has no quantile loss.

    Args:
        quantiles: levels in ``(0, 1)``, e.g. ``(0.1, 0.5, 0.9)``.

    Returns:
        ``loss(predictions, targets)`` with ``predictions`` of shape ``targets.shape +
        (len(quantiles),)``, e.g. ``(batch, horizon, Q)`` from
        ``RNNForecaster(n_outputs=Q)``; usable as ``fit(..., loss=pinball_loss(q))``.

    Raises:
        ValueError: levels outside ``(0, 1)`` or none given.

    Examples:
        >>> import jax.numpy as jnp
        >>> loss = pinball_loss((0.1, 0.9))
        >>> float(loss(jnp.array([[0.0, 0.0]]), jnp.array([1.0])))
        0.5
    """
    taus = _check_levels(quantiles, "quantiles")

    def loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
        if predictions.shape != (*targets.shape, len(taus)):
            raise ValueError(
                f"pinball_loss: predictions must have shape targets.shape + ({len(taus)},) "
                f"= {(*targets.shape, len(taus))}; got {predictions.shape}."
            )
        tau = jnp.asarray(taus, predictions.dtype)
        diff = targets[..., None] - predictions
        return jnp.mean(jnp.maximum(tau * diff, (tau - 1.0) * diff))

    loss.quantiles = taus  # type: ignore[attr-defined]
    return loss


def interval_coverage(
    lower: ArrayLike, upper: ArrayLike, targets: ArrayLike
) -> dict[str, Any]:
    r"""Empirical coverage of forecast intervals: the share of targets inside
    :math:`[\ell, u]`, per horizon step and overall, with the mean interval width.

    For a calibrated 80% interval (10% and 90% quantiles) the coverage is near 0.8.

    Args:
        lower: ``(windows, horizon)`` lower bounds.
        upper: ``(windows, horizon)`` upper bounds, ``>= lower``.
        targets: ``(windows, horizon)`` observed values.

    Returns:
        ``{"per_step": (horizon,) array, "overall": float, "mean_width": float}``.

    Raises:
        ValueError: mismatched shapes, NaN or inf in ``lower``, ``upper`` or
            ``targets`` (a NaN target is neither inside nor outside), or
            ``upper < lower``.

    Examples:
        >>> import numpy as np
        >>> cov = interval_coverage(np.zeros((2, 2)), np.ones((2, 2)),
        ...                         np.array([[0.5, 2.0], [1.0, -1.0]]))
        >>> cov["per_step"].tolist(), cov["overall"]
        ([1.0, 0.0], 0.5)
    """
    lo, hi = _as_float_array(lower, "lower"), _as_float_array(upper, "upper")
    y = _as_float_array(targets, "targets")
    if not (lo.shape == hi.shape == y.shape) or y.ndim != 2:
        raise ValueError(
            f"`lower`, `upper` and `targets` must share one (windows, horizon) shape; got "
            f"{lo.shape}, {hi.shape}, {y.shape}."
        )
    for name, a in (("lower", lo), ("upper", hi), ("targets", y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
    if np.any(hi < lo):
        raise ValueError("`upper` must be >= `lower` everywhere.")
    inside = (y >= lo) & (y <= hi)
    return {
        "per_step": inside.mean(axis=0),
        "overall": float(inside.mean()),
        "mean_width": float((hi - lo).mean()),
    }


class SeedEnsemble(nn.Module):
    r"""``size`` independently initialised copies of a module, evaluated with ``vmap``.

    The members share the input and differ only in their initial parameters (and dropout
    draws): ``init`` splits the ``params`` key per member (``flax.linen.vmap``), and the
    output has a leading member axis. Trained in one :func:`epinn.fit` with
    :func:`ensemble_loss`, each member receives the gradient of its own loss (the members
    share no parameters and Adam's update is elementwise), so this equals ``size``
    separate trainings on the same minibatches, run in one compiled program. The spread
    of the members estimates model (not observation) uncertainty.

    Attributes:
        member: the module to replicate (e.g. an :class:`epinn.RNNForecaster`).
        size: number of members, ``>= 1``.

    Examples:
        >>> import jax.random as jr, jax.numpy as jnp
        >>> from epinn.models import RNNForecaster
        >>> ens = SeedEnsemble(RNNForecaster(hidden=4, horizon=3), size=5)
        >>> params = ens.init(jr.PRNGKey(0), jnp.ones((2, 6, 1)))
        >>> ens.apply(params, jnp.ones((2, 6, 1))).shape
        (5, 2, 3)
    """

    member: nn.Module
    size: int = 5

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or (
            self.size < 1
        ):
            raise ValueError(f"`size` must be a positive int; got {self.size!r}.")
        if not isinstance(self.member, nn.Module):
            raise TypeError(f"`member` must be a Flax Linen module; got {self.member!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        stacked = nn.vmap(
            lambda mdl, x: mdl(x, train) if _has_train(mdl) else mdl(x),
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            axis_size=self.size,
        )
        return stacked(self.member, x)


def _has_train(module: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


def ensemble_loss(loss: str | Callable = "mse") -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""Mean over members of a loss, for training a :class:`SeedEnsemble` with ``fit``.

    :math:`\ell_{\text{ens}} = \frac1E \sum_e \ell(\hat y^{(e)}, y)`; predictions carry a
    leading member axis, targets do not.

    Args:
        loss: a name from :data:`epinn.LOSSES` or a callable ``loss(pred, target)``.

    Returns:
        ``loss(predictions (E, ...), targets (...)) -> scalar``.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(ensemble_loss("mse")(jnp.array([[1.0], [3.0]]), jnp.array([2.0])))
        1.0
    """
    if isinstance(loss, str) and loss.lower() not in LOSSES:
        raise _unknown_name("loss", loss, LOSSES, "loss")
    if not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"`loss` must be a loss name or a callable; got {type(loss).__name__}.")
    fn = get_loss(loss) if isinstance(loss, str) else loss
    if not callable(fn):
        raise TypeError(f"`loss` must be a name or a callable; got {loss!r}.")

    def member_mean(predictions: jax.Array, targets: jax.Array) -> jax.Array:
        return jnp.mean(jax.vmap(fn, in_axes=(0, None))(predictions, targets))

    return member_mean


def ensemble_quantiles(
    member_predictions: ArrayLike, levels: Sequence[float] = (0.1, 0.5, 0.9)
) -> jax.Array:
    """Empirical quantiles over the leading member axis, stacked last:
    ``(E, windows, horizon) -> (windows, horizon, len(levels))``.

    ``jnp.quantile`` with linear interpolation between order statistics (numpy's
    default).

    Args:
        member_predictions: ``(E, ...)``, members first (e.g. a :class:`SeedEnsemble`'s
            output).
        levels: quantile levels in ``(0, 1)``, as for :func:`pinball_loss`.

    Returns:
        ``member_predictions.shape[1:] + (len(levels),)``.

    Raises:
        ValueError: no member axis, or levels outside ``(0, 1)`` or none given.

    Examples:
        >>> import jax.numpy as jnp
        >>> ensemble_quantiles(jnp.arange(5.0).reshape(5, 1, 1), (0.5,)).tolist()
        [[[2.0]]]
    """
    p = _asarray(member_predictions, "member_predictions")
    if p.ndim < 2:
        raise ValueError(f"`member_predictions` must have a leading member axis; got {p.shape}.")
    # Traced levels (under jit/vmap) carry no values to check.
    taus = _check_levels(levels, "levels") if _is_concrete(levels) else levels
    q = jnp.quantile(p, jnp.asarray(taus, p.dtype), axis=0)
    return jnp.moveaxis(q, 0, -1)
