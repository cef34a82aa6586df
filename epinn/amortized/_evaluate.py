r"""Held-out evaluation of a trained estimator on fresh simulations from its prior (private).

For each target :math:`\theta`: relative errors :math:`|\hat\theta - \theta| / \theta`
and the coverage of the level-:math:`q` intervals. Used by
:meth:`~epinn.NeuralEstimator.evaluate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from .._checks import _check_int, _check_key
from ._posterior import _log_posterior, _summarise, _z
from ._simulate import simulate_training_set

if TYPE_CHECKING:
    from ._estimator import NeuralEstimator


def _evaluate(est: NeuralEstimator, key: jax.Array, n: int, level: float,
              simulator: str | None, dt: float | None) -> dict[str, Any]:
    """:meth:`NeuralEstimator.evaluate`: every argument is checked before simulating."""
    key = _check_key(key)
    n = _check_int(n, "n", 1)
    _z(level)
    if simulator is None:
        simulator, dt = est.simulator, est.dt if dt is None else dt
    sim = simulate_training_set(
        key, n, est.ts, prior=est.prior, model=est.model, fixed=est.fixed,
        t0=est.t0, observe=est.observe, noise=est.noise, simulator=simulator, dt=dt,
        seed_compartment=est.seed_compartment,
    )
    mu, sd = _log_posterior(est, sim.curves, sim.params["N"])
    estimates = _summarise(est.targets, mu, sd, level)
    truth = {k: np.asarray(sim.params[k]) for k in est.targets}
    out: dict[str, Any] = {"n": n, "level": level, "simulator": simulator,
                           "median_relative_error": {},
                           "mean_relative_error": {}, "coverage": {}}
    for k in est.targets:
        rel = np.abs(estimates[k]["mean"] - truth[k]) / truth[k]
        inside = (estimates[k]["lo"] <= truth[k]) & (truth[k] <= estimates[k]["hi"])
        out["median_relative_error"][k] = float(np.median(rel))
        out["mean_relative_error"][k] = float(np.mean(rel))
        out["coverage"][k] = float(np.mean(inside))
    out["truth"] = truth
    out["estimates"] = estimates
    return out
