"""One observed outbreak through a trained estimator, as a :class:`~epinn.FitResult` (private).

The network's estimates become every parameter of the model (estimated, fixed by the
prior or given in ``fixed``) and an initial state; the model is solved once at the
estimate for the fitted curve and the misfit check. Used by
:meth:`~epinn.NeuralEstimator.estimate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import _as_float_array
from ..compartmental import R0 as _R0
from ..compartmental import solve
from ..results import FitResult
from ._posterior import _check_curves, _log_posterior, _summarise, _z
from ._trust import _misfit, _misfit_reason, _outside, _warn

if TYPE_CHECKING:
    from ._estimator import NeuralEstimator


def _estimate(est: NeuralEstimator, ts: Any, counts: Any, population: Any, level: float,
              stacklevel: int) -> FitResult:
    """:meth:`NeuralEstimator.estimate`; warnings point ``stacklevel`` frames up."""
    a = _as_float_array(ts, "ts")
    if a.shape != (len(est.ts),) or not np.allclose(a, est.ts, rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"`ts` must be the estimator's training grid {est.ts} (an amortised "
            f"estimator reads curves on that grid only); got {a.tolist()}."
        )
    _z(level)
    curves, pop = _check_curves(est, counts, population, "counts")
    mu, sd = _log_posterior(est, curves, pop)
    reasons = _outside(est, curves, pop, mu)[0]
    s = _summarise(est.targets, mu, sd, level)
    val = {k: float(v["mean"][0]) for k, v in s.items()}
    params, y0 = _point(est, val, float(pop[0]))
    fitted, traj = _fitted(est, params, y0)
    rates = {k: params[k] for k in (*est.model.rate_names, "N")}
    obs = np.asarray(curves[0])
    x2 = _misfit(est, obs, fitted)
    reasons += _misfit_reason(x2, obs.size)
    _warn([reasons], stacklevel + 1)
    ratio = {"beta_over_gamma": val["beta"] / val["gamma"]} if {"beta", "gamma"} <= set(
        val) else {}
    return FitResult(
        params=params,
        y0=y0,
        loss=float(np.mean((fitted - obs) ** 2)),
        loss_history=np.zeros(0),
        converged=True,
        free=tuple(k for k in est.targets if k != "R0"),
        R0=val["R0"],
        stderr={k: val[k] * float(s[k]["log_sd"][0]) for k in est.targets},
        intervals={k: (float(v["lo"][0]), float(v["hi"][0])) for k, v in s.items()},
        ts=np.asarray(est.ts),
        fitted={"I" if est.observe == "prevalence" else "incidence": fitted},
        trajectory=traj,
        method="neural_estimator",
        n_steps=0,
        extras={
            "level": level,
            "log_mean": {k: float(v["log_mean"][0]) for k, v in s.items()},
            "log_sd": {k: float(v["log_sd"][0]) for k, v in s.items()},
            **ratio,
            "R0_at_estimate": float(_R0(est.model, rates)),
            "misfit_X2": x2,
            "out_of_prior": reasons,
        },
    )


def _point(est: NeuralEstimator, val: dict[str, float], N: float
           ) -> tuple[dict[str, float], dict[str, float]]:
    """Every model parameter (estimated, else fixed by the prior, else given in
    ``fixed``; ``N`` and ``reporting`` too) and the initial state, at the estimate."""
    spec = est._spec
    I0 = val.get("I0", est.prior.I0[0])
    reporting = val.get("reporting", est.prior.reporting[0])
    params = {k: val[k] if k in val else est.fixed[k] if k in est.fixed
              else est.prior.range(k)[0] for k in est.model.rate_names}
    params.update(N=N, reporting=reporting)
    y0 = {c: 0.0 for c in est.model.compartments}
    y0.update({spec.susceptible: N - I0, spec.seed: I0})
    return params, y0


def _fitted(est: NeuralEstimator, params: dict[str, float], y0: dict[str, float]
            ) -> tuple[np.ndarray, Any]:
    """Model curve at ``ts`` (times reporting) and the trajectory on a fine grid."""
    ts = np.asarray(est.ts)
    grid = np.concatenate([[est.t0], ts]) if est.t0 < ts[0] else ts
    # Ten steps per interval, the grid's own times included exactly (a uniform fine
    # grid merged with an uneven one could hold times that coincide in float32).
    both = np.concatenate(
        [np.linspace(a, b, 10, endpoint=False) for a, b in zip(grid[:-1], grid[1:])]
        + [grid[-1:]])
    rates = {k: params[k] for k in (*est.model.rate_names, "N")}
    traj = solve(est.model, rates, y0, both)
    where = 10 * np.arange(len(grid))
    if est.observe == "prevalence":
        series = np.asarray(traj["I"])[where]
    else:
        series = np.diff(np.asarray(traj.cumulative_infections)[where], prepend=0.0)
    return params["reporting"] * series[-len(ts):], traj
