r"""Baseline forecasters: persistence, linear trend, seasonal naive, fitted projections.

* :func:`persistence_forecast` -- the last value, repeated;
* :func:`linear_trend_forecast` -- a least-squares line through the last values;
* :func:`seasonal_naive_forecast` -- the value one period earlier;
* :func:`projection_forecast` -- any fitted model projected forward (a fit-then-predict
  callable per window), and :func:`sir_projection_forecast`, the SIR least-squares fit of
  :func:`epinn.estimation.fit_parameters` projected forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _as_float_array, _asarray, _check_int, _did_you_mean, _is_concrete
from ._common import _check_horizon


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
    from ..compartmental import SIR, incidence, solve_ensemble  # noqa: PLC0415
    from ..estimation import fit_parameters_batch  # noqa: PLC0415 (estimation sits on top)

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
