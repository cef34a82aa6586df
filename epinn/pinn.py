r"""Physics-informed neural network (PINN) for a closed compartmental model with unknown rates.

A network of normalised time, :math:`\tau = (t - t_0)/T \in [0, 1]` with
:math:`T = t_\text{last} - t_0` (fed as :math:`2\tau - 1`), outputs one logit per
compartment whose softmax are the population fractions,

.. math::

    x(\tau) = \operatorname{softmax}\big(f_\theta(2\tau - 1)\big),

so the states are positive and sum to one exactly. The model's equations
:math:`\dot y = F(t, y; \kappa)` (its vector field, built from its flows) are imposed as
residuals of the logarithmic derivatives (computed exactly by forward-mode autodiff in
:math:`\tau`, ``jax.jvp``), in normalised time, for every compartment :math:`c` except the
one the conservation law determines (``R`` in SIR):

.. math::

    \rho_c = \frac{d \log x_c}{d\tau} - T\,\frac{F_c(t_0 + \tau T, N x; \kappa)}{N x_c}.

For SIR these are :math:`\rho_S = d\log s/d\tau + T\beta i` and
:math:`\rho_I = d\log i/d\tau - T(\beta s - \gamma)`. In logarithms the residuals are
dimensionless and equally sensitive early, when :math:`i` is tiny and grows
exponentially, and at the peak. The loss is

.. math::

    L = w_\text{data} \frac1n \sum_{k,i} \Big(\frac{N x_k(\tau_i) - y_{k,i}}{s_k}\Big)^2
      + w_\text{ode} \frac{1}{m(C-1)} \sum_{j=1}^{m} \sum_c \rho_c(\tau_j)^2
      + w_\text{ic} \sum_c \big(\log x_c(0) - \log x_{c,0}\big)^2,

where the data misfit compares the network's counts with each observed compartment
scaled by its peak :math:`s_k`, the ODE residual is averaged over :math:`m` equally spaced
collocation points :math:`\tau_j \in [0, 1]` (fixed, so the loss is deterministic and
L-BFGS applies), and the initial condition is matched in logarithms (:math:`i_0 = I_0/N`
is often ~1e-3). The learned rates are :math:`\kappa = e^{u}`, trained with the network.
Default weights ``{"data": 1, "ode": 1, "ic": 1}``: with the data scaled by their peak and
the residuals dimensionless, all three terms are O(1) when wrong.

**Which models.** Any unstratified, closed model (every flow between two compartments, so
the total is conserved and the softmax represents it): SIR, SEIR, SIRS and your own
:class:`epinn.Model` of that kind; the rates given in ``rates`` are fixed, the others
learned. Stratified models and models with births, deaths or imports are refused with
the reason.

Training: Adam (warm-up, then cosine decay) for ``steps``, then ``lbfgs_steps`` of
``optax.lbfgs`` (zoom line search) to polish, both through the loop of
:mod:`epinn.neural_beta`.

Because the network only approximately satisfies the ODE, the PINN's estimates differ from
the least-squares fit through the solver (:func:`epinn.estimation.fit_parameters`) by the
weight the data term gets relative to the residual; the returned ``trajectory`` re-solves
the ODE with the estimated rates so the two can be compared.
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
from .compartmental import R0 as _R0
from .compartmental import SIR, CompartmentalModel, solve
from .results import ConvergenceWarning, FitResult
from .training import NonFiniteLossError

__all__ = ["fit_pinn", "DEFAULT_WEIGHTS"]

#: Default loss weights of :func:`fit_pinn`.
DEFAULT_WEIGHTS = {"data": 1.0, "ode": 1.0, "ic": 1.0}
# A fit counts as converged when beta and gamma each moved by less than this (relative)
# over the last tenth of the final optimiser's steps.
_PARAM_RTOL = 1e-3


class _PINNObjective(eqx.Module):
    """The PINN loss as a pytree (data as leaves, settings static).

    ``model`` gives the residual through its vector field; ``learned`` names the rates
    trained as ``params["log_<rate>"]``, ``fixed`` holds the others' values.
    """

    net: _TimeMLP = eqx.field(static=True)
    tau_obs: Array
    obs: dict[str, Array]
    scale: dict[str, Array]
    tau_col: Array
    x0: Array
    weights: dict[str, Array]
    N: Array
    T: float = eqx.field(static=True)
    model: CompartmentalModel = eqx.field(default_factory=SIR)
    fixed: dict[str, Array] = eqx.field(default_factory=dict)
    learned: tuple[str, ...] = eqx.field(static=True, default=("beta", "gamma"))
    t0: float = eqx.field(static=True, default=0.0)

    @property
    def keep(self) -> tuple[int, ...]:
        """The compartments whose residual and initial value are imposed: all but the one
        the conservation law determines (``R`` in SIR)."""
        derived = self.model.structure.derived
        return tuple(i for i, c in enumerate(self.model.compartments) if c != derived)

    def log_fractions(self, params, tau: Array) -> tuple[Array, Array]:
        r""":math:`\log x` and its derivative in :math:`\tau`, ``(len(tau), C)`` each.

        One batched ``jax.jvp`` with unit tangents: each output row depends only on its own
        ``tau``, so the tangent output is the row-wise derivative.
        """
        f = lambda t: jax.nn.log_softmax(self.net.apply(params["net"], t[:, None]))  # noqa: E731
        return jax.jvp(f, (tau,), (jnp.ones_like(tau),))

    def fractions(self, params, tau: Array) -> Array:
        """``(len(tau), C)`` fractions at a 1-D array of ``tau``."""
        return jnp.exp(self.log_fractions(params, tau)[0])

    def rates(self, params) -> dict[str, Array]:
        """The learned rates, ``exp(params["log_<rate>"])``."""
        return {k: jnp.exp(params[f"log_{k}"]) for k in self.learned}

    def _residuals(self, params, tau: Array, logx: Array, dlogx: Array) -> Array:
        args = {**self.fixed, **self.rates(params), "N": self.N}
        keep = np.asarray(self.keep)

        def field(t, lx):  # dy/dt of the model at counts N x, time t0 + tau T
            return self.model.vector_field(self.t0 + t * self.T, self.N * jnp.exp(lx), args)

        dy = jax.vmap(field)(tau, logx)
        return dlogx[:, keep] - self.T * dy[:, keep] / (self.N * jnp.exp(logx[:, keep]))

    def residuals(self, params) -> Array:
        r"""``(m, C - 1)`` residuals :math:`\rho_c` at the collocation points."""
        return self._residuals(params, self.tau_col, *self.log_fractions(params, self.tau_col))

    def terms(self, params) -> dict[str, Array]:
        """The three loss terms from one evaluation of the network at every point."""
        m, n = self.tau_col.shape[0], self.tau_obs.shape[0]
        tau = jnp.concatenate([self.tau_col, self.tau_obs, jnp.zeros((1,), self.tau_obs.dtype)])
        logx, dlogx = self.log_fractions(params, tau)
        rho = self._residuals(params, self.tau_col, logx[:m], dlogx[:m])
        x_obs = jnp.exp(logx[m:m + n])
        names = self.model.compartments
        misfit = [((self.N * x_obs[:, names.index(k)] - y) / self.scale[k]) ** 2
                  for k, y in self.obs.items()]
        keep = np.asarray(self.keep)
        ic = logx[m + n, keep] - jnp.log(self.x0[keep])
        return {
            "data": jnp.mean(jnp.concatenate(misfit)),
            "ode": jnp.mean(rho**2),
            "ic": jnp.sum(ic**2),
        }

    def __call__(self, params) -> tuple[Array, dict[str, Array]]:
        parts = self.terms(params)
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, {**parts, **self.rates(params)}


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


def _check_pinn_model(model: Any) -> CompartmentalModel:
    """A model the PINN applies to: unstratified and closed, or an error saying why not."""
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be an epinn.Model such as SIR(); got {model!r}.")
    if model.groups is not None:
        raise ValueError(
            f"fit_pinn fits unstratified models; {model.name} has groups {model.groups}. The "
            "network's state is one softmax over the compartments of one population."
        )
    if not model.conserved:
        outside = [f.name for f in model.flows if f.source is None or f.target is None]
        raise ValueError(
            f"fit_pinn needs a closed population, but {model.name} has flows from or to "
            f"outside ({', '.join(outside)}): the network's state is a softmax of fractions "
            "that sum to one, which cannot represent a changing total. Use fit_parameters "
            "or fit_neural_beta for this model."
        )
    return model


def _check_pinn_rates(model, rates) -> tuple[dict[str, float], tuple[str, ...]]:
    """``(fixed values, learned names)``: the rates not given in ``rates`` are learned
    (log-parametrised), and must be scalars."""
    if rates is not None and not isinstance(rates, Mapping):
        raise TypeError(f"`rates` must be a mapping like {{'sigma': 0.2}}; got {rates!r}.")
    rates = {} if rates is None else dict(rates)
    unknown = [k for k in rates if k not in model.rate_names]
    if unknown:
        raise ValueError(f"`rates` has unknown names {unknown}; {model.name}'s rates are "
                         f"{model.rate_names}.")
    fixed = {k: _check_positive(v, f"rates[{k!r}]") for k, v in rates.items()}
    learned = tuple(k for k in model.rate_names if k not in fixed)
    arrays = [k for k in learned if model.param_shapes[k] != ()]
    if arrays:
        raise ValueError(f"fit_pinn learns scalar rates; {arrays} have declared shapes: give "
                         "their values in `rates`.")
    if not learned:
        raise ValueError("`rates` fixes every rate of the model: nothing is left to fit.")
    return fixed, learned


def _pinn_starts(model, learned, init, beta_init, gamma_init, guess) -> dict[str, float]:
    """Starting values of the learned rates: ``init``, then ``beta_init`` / ``gamma_init``
    (``beta``'s default from the growth of ``I``, :func:`guess`)."""
    if init is not None and not isinstance(init, Mapping):
        raise TypeError(f"`init` must be a mapping like {{'sigma': 0.2}}; got {init!r}.")
    init = {} if init is None else dict(init)
    unknown = [k for k in init if k not in learned]
    if unknown:
        raise ValueError(f"`init` has names {unknown} that are not learned rates {learned}.")
    starts = {k: _check_positive(v, f"init[{k!r}]") for k, v in init.items()}
    if "gamma" in learned:
        starts.setdefault("gamma", gamma_init)
    if "beta" in learned and "beta" not in starts:
        starts["beta"] = beta_init if beta_init is not None else guess()
    missing = [k for k in learned if k not in starts]
    if missing:
        raise ValueError(f"`init` must give a start for the learned rates {missing} of "
                         f"{model.name} (or fix them in `rates`).")
    return {k: starts[k] for k in learned}


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
    model: CompartmentalModel | None = None,
    N: float | None = None,
    rates: Mapping[str, float] | None = None,
    init: Mapping[str, float] | None = None,
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
    r"""Fit the rates of a closed model (default SIR) with a physics-informed network.

    Minimises the loss in the module docstring (data misfit + ODE residual at collocation
    points + initial condition) over the network weights and the logarithms of the
    learned rates (SIR: :math:`\log\beta, \log\gamma`): Adam for ``steps`` (linear
    warm-up over a tenth of them, cosine decay to a tenth of ``learning_rate``), then
    L-BFGS for ``lbfgs_steps``.

    Args:
        ts: observation times, strictly increasing (any unit).
        data: ``{name: counts at ts}`` with names among the model's compartments.
        y0: initial state at ``t0`` by compartment, positive except (possibly) the
            compartment the conservation law determines (``R`` in SIR and SEIR).
        model: an unstratified, closed :class:`epinn.Model` (default ``SIR()``): see
            "Which models" in :mod:`epinn.pinn`.
        N: population (default ``sum(y0)``).
        rates: values of rates held fixed, e.g. ``{"sigma": 0.5}``; the model's other
            rates are learned (scalar rates only).
        init: starting values of learned rates; ``beta`` and ``gamma`` default to
            ``beta_init`` and ``gamma_init``, any other learned rate needs one here.
        beta_init: start for :math:`\beta`; default as :func:`epinn.fit_neural_beta`
            (:math:`(\gamma_0 + r) N / S_0` from the observed growth of ``I``).
        gamma_init: start for :math:`\gamma` (per unit of ``ts``).
        hidden: hidden layer sizes of the network (one output per compartment is
            appended).
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
        :class:`epinn.FitResult` with ``method="pinn"``, ``params`` every rate (learned
        and fixed) and ``N``, ``free`` the learned rates, ``R0`` by the next-generation
        matrix at the estimate (:math:`\beta/\gamma` for SIR), ``fitted`` the network's
        counts at ``ts`` for the observed names, ``trajectory`` the ODE solved with the
        estimated rates on the fine grid, ``loss`` the final total loss, ``loss_history``
        per step (Adam then L-BFGS) and ``converged`` when every learned rate moved by less
        than 0.1% over the last tenth of the L-BFGS steps (of the Adam steps without
        L-BFGS), with a successful re-solve. ``extras``:
        ``"t"`` (fine grid), ``"network_states"`` (``(n_grid, C)`` counts by compartment
        from the network), ``"loss_terms"`` (data, ode, ic at the end), ``"residual_rms"``,
        ``"weights"``, ``"r2"`` (network vs data), ``"ode_r2"`` (re-solved ODE vs data),
        ``"history"`` (:class:`epinn.History`, one entry per step; ``metrics`` holds the
        loss terms and the path of every learned rate), ``"network"``,
        ``"network_params"``, ``"init"`` (the learned rates' starts; ``"beta_init"`` and
        ``"gamma_init"`` too, NaN when not learned) and ``"wall_time"``.

    Raises:
        ValueError: bad data, names other than the compartments (checked first), a
            stratified model or one that is not closed (with the reason), ``y0`` zero
            where it must be positive, unknown or array-valued rates, a learned rate
            without a start, bad weights or settings, or a missing ``key``.
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
    model = _check_pinn_model(SIR() if model is None else model)
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
    _check_pinn_data_names(model, data)
    fixed, learned = _check_pinn_rates(model, rates)
    ts, t0, obs, N, y0 = _check_common(model, ts, data, y0, N, fixed, t0)
    _check_pinn_y0(model, y0)
    starts = _pinn_starts(model, learned, init, beta_init, gamma_init,
                          lambda: _guess_beta(model, ts, obs, y0, t0, N, gamma_init))

    net = _TimeMLP(features=(*hidden, len(model.compartments)), activation=activation)
    objective, params = _pinn_objective(model, net, key, ts, t0, obs, N, y0, fixed, learned,
                                        starts, weights, n_collocation)
    params, history = _minimise(objective, params, method="adam", steps=steps,
                                learning_rate=learning_rate, chunk_size=chunk_size,
                                verbose=verbose, desc="PINN (Adam)")
    n_last = steps
    if lbfgs_steps:
        params, h2 = _minimise(objective, params, method="lbfgs", steps=lbfgs_steps,
                               chunk_size=chunk_size, verbose=verbose, desc="PINN (L-BFGS)",
                               first_step=steps + 1)
        _extend_history(history, h2)
        n_last = lbfgs_steps
    best = int(np.nanargmin(history.train_loss))
    history.best_epoch = history.params_epoch = best + 1
    return _pinn_result(objective, params, history, ts=ts, t0=t0, obs=obs, N=N, y0=y0,
                        fixed=fixed, starts=starts, weights=weights, n_grid=n_grid,
                        n_steps=steps + lbfgs_steps, n_last=n_last, warn=warn, wall=wall)


def _check_pinn_data_names(model, data) -> None:
    """``data`` names only compartments of ``model``."""
    names = model.compartments
    # Names first: the shared checks would judge e.g. incidence by rules the PINN never uses.
    bad = [k for k in data if k not in names] if isinstance(data, Mapping) else []
    if bad:
        hint = _suggest(bad[0], names) if isinstance(bad[0], str) else ""
        raise ValueError(
            f"`data` names {bad} are not fitted by the PINN{hint}; use compartments of "
            f"{model.name}: {names}."
        )


def _check_pinn_y0(model, y0) -> None:
    """Every compartment but the derived one starts positive (the PINN works in logs)."""
    derived = model.structure.derived
    zero = [c for c in model.compartments if c != derived and y0[c] <= 0]
    if zero:
        raise ValueError(
            f"`y0` of {zero} must be positive for the PINN: it matches the initial state "
            "and the equations in logarithms (give a small positive count, e.g. 1e-3 of "
            f"the infected{'' if derived is None else f'; {derived!r} may be 0'})."
        )


def _pinn_objective(model, net, key, ts, t0, obs, N, y0, fixed, learned, starts, weights,
                    n_collocation) -> tuple[_PINNObjective, dict[str, Any]]:
    """The objective on the checked inputs and the starting parameters: the network's
    output bias at the log fractions of ``y0`` (floored for R = 0), the rates at
    ``starts``."""
    names = model.compartments
    T = float(ts[-1] - t0)
    x0 = np.array([float(y0[c]) for c in names]) / N
    # Start near the initial state (bias = log fractions, floored for R = 0).
    bias = np.log(np.maximum(x0, 1e-6))
    params = {"net": _init_time_mlp(net, key, jnp.asarray(bias))}
    params.update({f"log_{k}": jnp.asarray(math.log(v)) for k, v in starts.items()})
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
        model=model,
        fixed={k: f(v) for k, v in fixed.items()},
        learned=learned,
        t0=float(t0),
    )
    return objective, params


def _extend_history(history, more) -> None:
    """Append the entries of ``more`` (a later optimiser's :class:`History`) to ``history``."""
    for k, v in more.metrics.items():
        history.metrics[k].extend(v)
    history.train_loss.extend(more.train_loss)
    history.epoch_time.extend(more.epoch_time)
    history.compile_time += more.compile_time


def _pinn_result(objective: _PINNObjective, params, history, *, ts, t0, obs, N, y0, fixed,
                 starts, weights, n_grid, n_steps, n_last, warn, wall) -> FitResult:
    """Evaluate the trained network, re-solve the ODE with the estimated rates and pack
    the :class:`FitResult` (an error for a non-finite result, a warning when not
    converged)."""
    model, T, learned = objective.model, objective.T, objective.learned
    names = model.compartments
    fine = np.linspace(0.0, T, n_grid)
    total, parts, states, pred, rms = _evaluate(
        objective, params, jnp.asarray(np.asarray(fine / T, dtype=float)))
    fitted_rates = {k: float(v) for k, v in objective.rates(params).items()}
    if not all(math.isfinite(v) for v in (float(total), *fitted_rates.values())):
        history.stop_reason = "non-finite result"
        raise NonFiniteLossError(
            f"fit_pinn ended with a non-finite loss ({float(total)}) or rates "
            f"({fitted_rates}); try a smaller `learning_rate` or other `weights`.",
            epoch=len(history.train_loss),
            history=history,
        )
    out_params = {**fitted_rates, **fixed, "N": N}
    # One solve on the fine grid and the observation times together (one compilation).
    grid, offset = _shifted_grid(ts, t0)
    both, i_fine, i_obs = _merge_grids(fine, grid)
    sol = solve(model, out_params, {c: float(y0[c]) for c in names}, both + t0, throw=False)
    traj = eqx.tree_at(lambda tr: (tr.ts, tr.ys, tr.cumulative_infections), sol,
                       (sol.ts[i_fine], sol.ys[i_fine], sol.cumulative_infections[i_fine]))
    at_ts = np.asarray(sol.ys)[i_obs][offset:]
    fitted = {k: np.asarray(pred[:, names.index(k)]) for k in obs}
    ode_at_ts = {k: at_ts[:, names.index(k)] for k in obs}
    total = float(total)
    converged = all(_settled(history.metrics[k][-n_last:]) for k in learned)
    converged = converged and math.isfinite(total) and bool(traj.success)
    if not converged and warn:
        warnings.warn(
            f"fit_pinn has not converged (loss {total:.4g}); increase `steps` or "
            "`lbfgs_steps`.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return FitResult(
        params=out_params,
        y0={c: float(y0[c]) for c in names},
        loss=total,
        loss_history=np.asarray(history.train_loss),
        converged=converged,
        free=learned,
        R0=float(_R0(model, out_params)),
        ts=ts,
        fitted=fitted,
        trajectory=traj,
        method="pinn",
        n_steps=n_steps,
        extras={
            "t": fine + t0,
            "network_states": np.asarray(states),
            "loss_terms": {k: float(v) for k, v in parts.items()},
            "residual_rms": float(rms),
            "weights": weights,
            "r2": {k: _r2(fitted[k], obs[k]) for k in obs},
            "ode_r2": {k: _r2(ode_at_ts[k], obs[k]) for k in obs},
            "history": history,
            "network": objective.net,
            "network_params": params["net"],
            "beta_init": float(starts.get("beta", math.nan)),
            "gamma_init": float(starts.get("gamma", math.nan)),
            "init": starts,
            "wall_time": time.perf_counter() - wall,
        },
    )
