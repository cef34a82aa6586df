r"""Physics-informed neural network (PINN) for the SIR model with unknown :math:`\beta, \gamma`.

A network of normalised time, :math:`\tau = (t - t_0)/T \in [0, 1]` with
:math:`T = t_\text{last} - t_0` (fed as :math:`2\tau - 1`), outputs three logits whose
softmax are the population fractions

.. math::

    \big(s(\tau), i(\tau), r(\tau)\big) = \operatorname{softmax}\big(f_\theta(2\tau - 1)\big),

so the states are positive and :math:`s + i + r = 1` holds exactly. The SIR equations are
imposed as residuals of the logarithmic derivatives (computed exactly by forward-mode
autodiff in :math:`\tau`, ``jax.jvp``), in normalised time:

.. math::

    \rho_S = \frac{d \log s}{d\tau} + T \beta i, \qquad
    \rho_I = \frac{d \log i}{d\tau} - T(\beta s - \gamma).

With :math:`s + i + r = 1` these two imply :math:`dr/d\tau = T\gamma i`. In logarithms the
residuals are dimensionless and equally sensitive early, when :math:`i` is tiny and grows
exponentially, and at the peak. The loss is

.. math::

    L = w_\text{data} \frac1n \sum_{k,i} \Big(\frac{N x_k(\tau_i) - y_{k,i}}{s_k}\Big)^2
      + w_\text{ode} \frac{1}{2m} \sum_{j=1}^{m} \big(\rho_S(\tau_j)^2 + \rho_I(\tau_j)^2\big)
      + w_\text{ic} \Big[\big(\log s(0) - \log s_0\big)^2 + \big(\log i(0) - \log i_0\big)^2\Big],

where the data misfit compares the network's counts with each observed series
(:math:`k \in \{S, I, R\}`) scaled by its peak :math:`s_k`, the ODE residual is averaged over
:math:`m` equally spaced collocation points :math:`\tau_j \in [0, 1]` (fixed, so the loss is
deterministic and L-BFGS applies), and the initial condition is matched in logarithms
(:math:`i_0 = I_0/N` is often ~1e-3). :math:`\beta = e^{u}`, :math:`\gamma = e^{v}` are
trained with the network. Default weights ``{"data": 1, "ode": 1, "ic": 1}``: with the data
scaled by their peak and the residuals dimensionless, all three terms are O(1) when wrong.

Training: Adam (warm-up, then cosine decay) for ``steps``, then ``lbfgs_steps`` of
``optax.lbfgs`` (zoom line search) to polish, both through the loop of
:mod:`epinn.neural_beta`.

Because the network only approximately satisfies the ODE, the PINN's estimates differ from
the least-squares fit through the solver (:func:`epinn.estimation.fit_parameters`) by the
weight the data term gets relative to the residual; the returned ``trajectory`` re-solves
the ODE with the estimated :math:`\beta, \gamma` so the two can be compared.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import (
    _as_float,
    _check_flag,
    _check_int,
    _check_positive,
    _check_verbose,
    _suggest,
)
from ._fitting import (
    _check_activation,
    _check_common,
    _check_hidden,
    _full_precision,
    _guess_beta,
    _init_time_mlp,
    _merge_grids,
    _minimise,
    _r2,
    _require_key,
    _shifted_grid,
    _TimeMLP,
)
from .compartmental import SIR, solve
from .estimation import ConvergenceWarning, FitResult
from .training import NonFiniteLossError

__all__ = ["fit_pinn", "DEFAULT_WEIGHTS"]

#: Default loss weights of :func:`fit_pinn`.
DEFAULT_WEIGHTS = {"data": 1.0, "ode": 1.0, "ic": 1.0}
_COMPARTMENTS = ("S", "I", "R")
# A fit counts as converged when beta and gamma each moved by less than this (relative)
# over the last tenth of the final optimiser's steps.
_PARAM_RTOL = 1e-3


class _PINNObjective(eqx.Module):
    """The PINN loss as a pytree (data as leaves, settings static)."""

    net: _TimeMLP = eqx.field(static=True)
    tau_obs: Array
    obs: dict[str, Array]
    scale: dict[str, Array]
    tau_col: Array
    x0: Array
    weights: dict[str, Array]
    N: Array
    T: float = eqx.field(static=True)

    def log_fractions(self, params, tau: Array) -> tuple[Array, Array]:
        r""":math:`\log(s, i, r)` and its derivative in :math:`\tau`, ``(len(tau), 3)`` each.

        One batched ``jax.jvp`` with unit tangents: each output row depends only on its own
        ``tau``, so the tangent output is the row-wise derivative.
        """
        f = lambda t: jax.nn.log_softmax(self.net.apply(params["net"], t[:, None]))  # noqa: E731
        return jax.jvp(f, (tau,), (jnp.ones_like(tau),))

    def fractions(self, params, tau: Array) -> Array:
        """``(len(tau), 3)`` fractions at a 1-D array of ``tau``."""
        return jnp.exp(self.log_fractions(params, tau)[0])

    def rates(self, params) -> tuple[Array, Array]:
        return jnp.exp(params["log_beta"]), jnp.exp(params["log_gamma"])

    def _residuals(self, params, logx: Array, dlogx: Array) -> Array:
        beta, gamma = self.rates(params)
        s, i = jnp.exp(logx[:, 0]), jnp.exp(logx[:, 1])
        return jnp.stack([dlogx[:, 0] + self.T * beta * i,
                          dlogx[:, 1] - self.T * (beta * s - gamma)], axis=1)

    def residuals(self, params) -> Array:
        r"""``(m, 2)`` residuals :math:`(\rho_S, \rho_I)` at the collocation points."""
        return self._residuals(params, *self.log_fractions(params, self.tau_col))

    def terms(self, params) -> dict[str, Array]:
        """The three loss terms from one evaluation of the network at every point."""
        m, n = self.tau_col.shape[0], self.tau_obs.shape[0]
        tau = jnp.concatenate([self.tau_col, self.tau_obs, jnp.zeros((1,), self.tau_obs.dtype)])
        logx, dlogx = self.log_fractions(params, tau)
        rho = self._residuals(params, logx[:m], dlogx[:m])
        x_obs = jnp.exp(logx[m:m + n])
        misfit = [((self.N * x_obs[:, _COMPARTMENTS.index(k)] - y) / self.scale[k]) ** 2
                  for k, y in self.obs.items()]
        ic = logx[m + n, :2] - jnp.log(self.x0[:2])
        return {
            "data": jnp.mean(jnp.concatenate(misfit)),
            "ode": jnp.mean(rho**2),
            "ic": jnp.sum(ic**2),
        }

    def __call__(self, params) -> tuple[Array, dict[str, Array]]:
        parts = self.terms(params)
        total = sum(self.weights[k] * v for k, v in parts.items())
        beta, gamma = self.rates(params)
        return total, {**parts, "beta": beta, "gamma": gamma}


def _settled(values: Sequence[float]) -> bool:
    """The value moved by less than ``_PARAM_RTOL`` (relative) over the last tenth."""
    v = np.asarray(values, dtype=float)
    k = max(1, v.size // 10)
    if v.size < 2 or not np.all(np.isfinite(v[-k - 1:])):
        return False
    return bool(np.max(np.abs(v[-k - 1:] / v[-1] - 1)) < _PARAM_RTOL)


def _check_weights(weights: Any) -> dict[str, float]:
    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    if not isinstance(weights, Mapping):
        raise TypeError(f"`weights` must be a mapping like {DEFAULT_WEIGHTS}; got {weights!r}.")
    unknown = [k for k in weights if k not in DEFAULT_WEIGHTS]
    if unknown:
        first = unknown[0]
        hint = _suggest(first, tuple(DEFAULT_WEIGHTS)) if isinstance(first, str) else ""
        raise ValueError(
            f"`weights` has unknown names {unknown}{hint}; valid: {tuple(DEFAULT_WEIGHTS)}."
        )
    out = dict(DEFAULT_WEIGHTS)
    for k, v in weights.items():
        x = _as_float(v, f"weights[{k!r}]")
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"`weights[{k!r}]` must be >= 0 and finite; got {v!r}.")
        out[k] = x
    if out["data"] == 0 or out["ode"] == 0:
        raise ValueError("`weights['data']` and `weights['ode']` must be positive.")
    return out


@eqx.filter_jit
def _evaluate(objective: _PINNObjective, params, tau_fine: Array):
    total, aux = objective(params)
    parts = {k: aux[k] for k in ("data", "ode", "ic")}
    x = objective.fractions(params, tau_fine)
    pred = objective.fractions(params, objective.tau_obs)
    rms = jnp.sqrt(jnp.mean(objective.residuals(params) ** 2))
    return total, parts, x * objective.N, pred * objective.N, rms


@_full_precision
def fit_pinn(
    ts: Any,
    data: Mapping[str, Any],
    *,
    y0: Mapping[str, float],
    N: float | None = None,
    beta_init: float | None = None,
    gamma_init: float = 0.3,
    hidden: Sequence[int] = (32, 32, 32),
    activation: str = "tanh",
    weights: Mapping[str, float] | None = None,
    n_collocation: int = 256,
    steps: int = 2000,
    learning_rate: float = 1e-2,
    lbfgs_steps: int = 1000,
    key: jax.Array | None = None,
    t0: float | None = None,
    n_grid: int = 201,
    chunk_size: int = 500,
    verbose: int = 0,
    warn: bool = True,
) -> FitResult:
    r"""Fit SIR :math:`\beta, \gamma` with a physics-informed network.

    Minimises the loss in the module docstring (data misfit + ODE residual at collocation
    points + initial condition) over the network weights and :math:`\log\beta,
    \log\gamma`: Adam for ``steps`` (linear warm-up over a tenth of them, cosine decay to a
    tenth of ``learning_rate``), then L-BFGS for ``lbfgs_steps``.

    Args:
        ts: observation times, strictly increasing (any unit).
        data: ``{name: counts at ts}`` with names among ``"S"``, ``"I"``, ``"R"``.
        y0: initial state at ``t0``: ``{"S": ..., "I": ..., "R": ...}`` with
            ``S, I > 0``.
        N: population (default ``sum(y0)``).
        beta_init: start for :math:`\beta`; default as :func:`epinn.fit_neural_beta`
            (:math:`(\gamma_0 + r) N / S_0` from the observed growth of ``I``).
        gamma_init: start for :math:`\gamma` (per unit of ``ts``).
        hidden: hidden layer sizes of the network (3 outputs are appended).
        activation: hidden activation (smooth, e.g. ``"tanh"``: the residual
            differentiates the network).
        weights: loss weights ``{"data", "ode", "ic"}``; missing names keep the defaults
            :data:`DEFAULT_WEIGHTS`.
        n_collocation: collocation points on :math:`[t_0, t_\text{last}]`.
        steps: Adam steps.
        learning_rate: Adam's peak learning rate.
        lbfgs_steps: L-BFGS steps after Adam (0 skips them).
        key: ``jax.random`` key for the network's initial weights (required).
        t0: time of ``y0`` (default ``ts[0]``).
        n_grid: points of the fine output grid from ``t0`` to ``ts[-1]``.
        chunk_size: optimiser steps per compiled chunk (one progress update each).
        verbose: 1 shows progress bars, 0 is silent.
        warn: warn (:class:`epinn.ConvergenceWarning`) if the fit has not converged.

    Returns:
        :class:`epinn.FitResult` with ``method="pinn"``, ``params`` ``{"beta", "gamma",
        "N"}``, ``R0`` :math:`= \beta/\gamma`, ``fitted`` the network's counts at ``ts``
        for the observed names, ``trajectory`` the ODE solved with the estimated rates on
        the fine grid, ``loss`` the final total loss, ``loss_history`` per step (Adam then
        L-BFGS) and ``converged`` when :math:`\beta` and :math:`\gamma` each moved by less
        than 0.1% over the last tenth of the L-BFGS steps (of the Adam steps without
        L-BFGS), with a successful re-solve. ``extras``:
        ``"t"`` (fine grid), ``"network_states"`` (``(n_grid, 3)`` counts S, I, R from the
        network), ``"loss_terms"`` (data, ode, ic at the end), ``"residual_rms"``,
        ``"weights"``, ``"r2"`` (network vs data), ``"ode_r2"`` (re-solved ODE vs data),
        ``"history"`` (:class:`epinn.History`, one entry per step; ``metrics`` holds the
        loss terms and the path of ``beta`` and ``gamma``), ``"network"``,
        ``"network_params"``, ``"beta_init"``, ``"gamma_init"`` and ``"wall_time"``.

    Raises:
        ValueError: bad data, names other than S/I/R (checked first), ``y0`` with ``S``
            or ``I`` zero, bad weights or settings, or a missing ``key``.
        TypeError: wrong kinds of arguments (e.g. a ``key`` that is not one
            ``jax.random`` key).
        NonFiniteLossError: the loss became NaN (the message names the step), or the fit
            ended with non-finite parameters or loss.

    Examples:
        The 1978 boarding-school influenza outbreak (the least-squares fit through the
        ODE gives :math:`\beta = 1.669`, :math:`\gamma = 0.443`):

        >>> import jax.random as jr
        >>> from epinn.datasets import load_boarding_school
        >>> flu = load_boarding_school()
        >>> res = fit_pinn(flu.t, {"I": flu.counts}, y0=flu.y0, t0=0.0, key=jr.PRNGKey(0))
        >>> print(round(res.params["beta"], 1), round(res.params["gamma"], 1))
        1.7 0.4
    """
    wall = time.perf_counter()
    model = SIR()
    weights = _check_weights(weights)
    hidden = _check_hidden(hidden)
    activation = _check_activation(activation)
    steps = _check_int(steps, "steps", 1)
    lbfgs_steps = _check_int(lbfgs_steps, "lbfgs_steps", 0)
    n_collocation = _check_int(n_collocation, "n_collocation", 2)
    n_grid = _check_int(n_grid, "n_grid", 2)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    learning_rate = _check_positive(learning_rate, "learning_rate")
    gamma_init = _check_positive(gamma_init, "gamma_init")
    if beta_init is not None:
        beta_init = _check_positive(beta_init, "beta_init")
    verbose = _check_verbose(verbose)
    warn = _check_flag(warn, "warn")
    key = _require_key(key)
    # Names first: the shared checks would judge e.g. incidence by rules the PINN never uses.
    bad = [k for k in data if k not in _COMPARTMENTS] if isinstance(data, Mapping) else []
    if bad:
        hint = _suggest(bad[0], _COMPARTMENTS) if isinstance(bad[0], str) else ""
        raise ValueError(
            f"`data` names {bad} are not fitted by the PINN{hint}; use 'S', 'I', 'R'."
        )
    ts, t0, obs, N, y0 = _check_common(model, ts, data, y0, N, {}, t0)
    if y0["S"] <= 0 or y0["I"] <= 0:
        raise ValueError("`y0['S']` and `y0['I']` must be positive for the PINN (log-scale "
                         "initial condition).")
    beta0 = _guess_beta(model, ts, obs, y0, t0, N, gamma_init) if beta_init is None else beta_init

    T = float(ts[-1] - t0)
    net = _TimeMLP(features=(*hidden, 3), activation=activation)
    x0 = np.array([float(y0[c]) for c in _COMPARTMENTS]) / N
    # Start near the initial state (bias = log fractions, floored for R = 0).
    bias = np.log(np.maximum(x0, 1e-6))
    params = {
        "net": _init_time_mlp(net, key, jnp.asarray(bias)),
        "log_beta": jnp.asarray(math.log(beta0)),
        "log_gamma": jnp.asarray(math.log(gamma_init)),
    }
    f = lambda a: jnp.asarray(np.asarray(a, dtype=float))  # noqa: E731
    objective = _PINNObjective(
        net=net,
        tau_obs=f((ts - t0) / T),
        obs={k: f(v) for k, v in obs.items()},
        scale={k: f(max(float(v.max()), 1e-12 * N)) for k, v in obs.items()},
        tau_col=f(np.linspace(0.0, 1.0, n_collocation)),
        x0=f(x0),
        weights={k: f(v) for k, v in weights.items()},
        N=f(N),
        T=T,
    )
    params, history = _minimise(objective, params, method="adam", steps=steps,
                                learning_rate=learning_rate, chunk_size=chunk_size,
                                verbose=verbose, desc="PINN (Adam)")
    n_last = steps
    if lbfgs_steps:
        params, h2 = _minimise(objective, params, method="lbfgs", steps=lbfgs_steps,
                               chunk_size=chunk_size, verbose=verbose, desc="PINN (L-BFGS)",
                               first_step=steps + 1)
        for k, v in h2.metrics.items():
            history.metrics[k].extend(v)
        history.train_loss.extend(h2.train_loss)
        history.epoch_time.extend(h2.epoch_time)
        history.compile_time += h2.compile_time
        n_last = lbfgs_steps
    best = int(np.nanargmin(history.train_loss))
    history.best_epoch = history.params_epoch = best + 1

    fine = np.linspace(0.0, T, n_grid)
    total, parts, states, pred, rms = _evaluate(objective, params, f(fine / T))
    beta, gamma = (float(v) for v in objective.rates(params))
    if not all(math.isfinite(v) for v in (float(total), beta, gamma)):
        history.stop_reason = "non-finite result"
        raise NonFiniteLossError(
            f"fit_pinn ended with a non-finite loss ({float(total)}) or rates (beta {beta}, "
            f"gamma {gamma}); try a smaller `learning_rate` or other `weights`.",
            epoch=len(history.train_loss),
            history=history,
        )
    out_params = {"beta": beta, "gamma": gamma, "N": N}
    # One solve on the fine grid and the observation times together (one compilation).
    grid, offset = _shifted_grid(ts, t0)
    both, i_fine, i_obs = _merge_grids(fine, grid)
    sol = solve(model, out_params, {c: float(y0[c]) for c in _COMPARTMENTS}, both + t0,
                throw=False)
    traj = eqx.tree_at(lambda tr: (tr.ts, tr.ys, tr.cumulative_infections), sol,
                       (sol.ts[i_fine], sol.ys[i_fine], sol.cumulative_infections[i_fine]))
    at_ts = np.asarray(sol.ys)[i_obs][offset:]
    fitted = {k: np.asarray(pred[:, _COMPARTMENTS.index(k)]) for k in obs}
    ode_at_ts = {k: at_ts[:, _COMPARTMENTS.index(k)] for k in obs}
    total = float(total)
    converged = all(_settled(history.metrics[k][-n_last:]) for k in ("beta", "gamma"))
    converged = converged and math.isfinite(total) and bool(traj.success)
    if not converged and warn:
        warnings.warn(
            f"fit_pinn has not converged (loss {total:.4g}); increase `steps` or "
            "`lbfgs_steps`.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return FitResult(
        params=out_params,
        y0={c: float(y0[c]) for c in _COMPARTMENTS},
        loss=total,
        loss_history=np.asarray(history.train_loss),
        converged=converged,
        free=("beta", "gamma"),
        R0=beta / gamma,
        ts=ts,
        fitted=fitted,
        trajectory=traj,
        method="pinn",
        n_steps=steps + lbfgs_steps,
        extras={
            "t": fine + t0,
            "network_states": np.asarray(states),
            "loss_terms": {k: float(v) for k, v in parts.items()},
            "residual_rms": float(rms),
            "weights": weights,
            "r2": {k: _r2(fitted[k], obs[k]) for k in obs},
            "ode_r2": {k: _r2(ode_at_ts[k], obs[k]) for k in obs},
            "history": history,
            "network": net,
            "network_params": params["net"],
            "beta_init": float(beta0),
            "gamma_init": gamma_init,
            "wall_time": time.perf_counter() - wall,
        },
    )
