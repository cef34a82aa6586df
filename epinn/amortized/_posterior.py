r"""The trained network's approximate posterior: curves in, log-normal estimates out (private).

For each curve the network gives the mean :math:`\mu` and standard deviation
:math:`\sigma` of the log of every target; the point estimate is :math:`e^{\mu}` (the
log-normal median) and a level-:math:`q` interval is :math:`e^{\mu \pm z_{(1+q)/2}\sigma}`.
Used by :meth:`~epinn.NeuralEstimator.predict`, ``estimate`` and ``evaluate``.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import _as_float, _as_float_array
from ..training import predict
from ._features import normalize_curve

if TYPE_CHECKING:
    from ._estimator import NeuralEstimator


def _z(level: float) -> float:
    """The normal quantile of a two-sided ``level`` interval; checks ``level``."""
    x = _as_float(level, "level")
    if not 0.0 < x < 1.0:
        raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
    return statistics.NormalDist().inv_cdf(0.5 + x / 2.0)


def _check_curves(est: NeuralEstimator, curves: Any, population: Any, name: str
                  ) -> tuple[Array, Array]:
    """``curves`` as ``(n, T)`` on the estimator's grid and ``population`` as ``(n,)``:
    finite, non-negative counts, a positive population at least each curve's peak
    (default the prior's ``N`` when fixed); plain Python, before anything compiles."""
    c = _as_float_array(curves, name)
    T = len(est.ts)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2 or c.shape[-1] != T:
        raise ValueError(
            f"`{name}` must have shape ({T},) or (n, {T}) to match the estimator's "
            f"{T} observation times `ts`; got shape {np.shape(curves)}."
        )
    if not np.all(np.isfinite(c)):
        raise ValueError(f"`{name}` contains NaN or inf.")
    if np.any(c < 0):
        raise ValueError(f"`{name}` contains negative counts.")
    if population is None:
        if not est.prior.is_fixed("N"):
            raise ValueError("`population` is required (the prior's N is not fixed).")
        population = est.prior.N[0]
    pop = _as_float_array(population, "population")
    if pop.ndim > 1 or (pop.ndim == 1 and pop.shape[0] != c.shape[0]):
        raise ValueError(
            f"`population` must be a number or have shape ({c.shape[0]},); got {pop.shape}."
        )
    if not np.all(np.isfinite(pop)) or np.any(pop <= 0):
        raise ValueError(f"`population` must be positive and finite; got {pop}.")
    pop = np.broadcast_to(pop, (c.shape[0],))
    over = np.flatnonzero(c.max(axis=-1) > pop)
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"`population` ({pop[i]:g}) is smaller than the largest observed count "
            f"({c[i].max():g}) of curve {i}."
        )
    dtype = jnp.asarray(1.0).dtype
    return jnp.asarray(c, dtype), jnp.asarray(pop, dtype)


def _log_posterior(est: NeuralEstimator, curves: Array, population: Array
                   ) -> tuple[Array, Array]:
    """Mean and standard deviation of the log-targets, each ``(n, len(targets))``."""
    xs = est.x_scaler.transform(normalize_curve(curves, population))
    out = predict(est.network, est.net_params, xs, batch_size=4096)
    mu_s, logvar_s = jnp.split(out, 2, axis=-1)
    mu = est.y_scaler.inverse_transform(mu_s)
    sd = jnp.exp(0.5 * logvar_s) * est.y_scaler.scale
    return mu, sd


def _summarise(targets: tuple[str, ...], mu: Array, sd: Array, level: float
               ) -> dict[str, dict[str, np.ndarray]]:
    """``{name: {"mean", "lo", "hi", "log_mean", "log_sd"}}``, each ``(n,)``."""
    z = _z(level)
    out = {}
    for i, name in enumerate(targets):
        m, s = np.asarray(mu[:, i]), np.asarray(sd[:, i])
        out[name] = {"mean": np.exp(m), "lo": np.exp(m - z * s), "hi": np.exp(m + z * s),
                     "log_mean": m, "log_sd": s}
    return out
