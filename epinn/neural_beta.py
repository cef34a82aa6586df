r"""Neural transmission rate :math:`\beta(t)`: a universal differential equation (UDE).

A compartmental model whose transmission rate is a small neural network of time,

.. math::

    \beta(t) = \operatorname{softplus}\big(f_\theta(2\tau - 1)\big), \qquad
    \tau = \frac{t - t_0}{T}, \quad T = t_\text{last} - t_0,

sits inside the diffrax vector field (through :class:`epinn.compartmental.NetworkRate`), and
the network weights :math:`\theta` -- and, optionally, the recovery rate :math:`\gamma` -- are
trained end to end with Adam through :func:`epinn.compartmental.solve` (reverse-mode
gradients through the solver, diffrax's default ``RecursiveCheckpointAdjoint``). The
network sees time mapped to :math:`[-1, 1]` over the observed window, which lets a tanh MLP
represent a change of :math:`\beta` within a few days after a few hundred steps. Adam's
learning rate rises linearly over the first tenth of the steps and then decays (cosine) to
a tenth: without the warm-up the first steps can overshoot to a :math:`\beta` so low that
no epidemic happens in the window, where the misfit is flat and training stalls.

The objective is a data misfit plus a smoothness penalty on :math:`\log\beta`,

.. math::

    L(\theta, \gamma) = \underbrace{\frac1n \sum_{k}\sum_i
        \ell_k\big(\hat y_k(t_i), y_{k,i}\big)}_{\text{data}}
      + \lambda\, \underbrace{\frac{1}{m - p} \sum_{j}
        \Big(\frac{\Delta^p \log\beta(\tau_j)}{h^p}\Big)^2}_{\text{penalty}},

with :math:`\ell_k(\mu, y) = ((\mu - y)/s_k)^2` (``loss="mse"``: residuals scaled by
:math:`s_k = \max_i y_{k,i}`, the peak of series :math:`k`, so the misfit is dimensionless)
or the scaled Poisson deviance :math:`\ell_k = 2[y \log(y/\mu) - (y - \mu)]/s_k`
(``loss="poisson"``, for counts; it is :math:`\approx (\mu - y)^2/(\mu s_k)`, on the scale
of the ``mse`` misfit near the peak). The penalty is the mean square of the :math:`p`-th
finite difference of :math:`\log\beta` on :math:`m` equally spaced points
:math:`\tau_j \in [0, 1]` (spacing :math:`h`), i.e. of :math:`d^p\log\beta/d\tau^p` up to
:math:`O(h^2)`; a difference on a grid compiles much faster than nested autodiff. In
:math:`\log\beta` and normalised time it is
dimensionless and does not depend on the time unit or the level of :math:`\beta`. Order
:math:`p = 1` pulls :math:`\beta(t)` towards a constant (the ordinary SIR model is the limit
:math:`\lambda \to \infty`); :math:`p = 2` (default) pulls it towards
:math:`\log\beta` linear in time and leaves steps and trends less damped.

**Identifiability.** From prevalence :math:`I(t)` alone a free :math:`\beta(t)` and
:math:`\gamma` are not separately identifiable: for any :math:`\gamma`,
:math:`\beta(t) = (\dot I/I + \gamma) N / S(t)` with :math:`S` from :math:`R = \gamma\int I`
reproduces :math:`I(t)` exactly. With ``gamma=None`` the smoothness penalty picks
:math:`\gamma`; fix ``gamma`` when it is known (e.g. from the infectious period) to read
:math:`\beta(t)` off the data.

A failed solve during training (e.g. a step-size collapse) gives a large finite data loss
and its non-finite gradient is skipped (``optax.apply_if_finite``) instead of crashing the
fit. The training loop (:func:`_minimise`, shared with :mod:`epinn.pinn`) compiles one
``lax.scan`` over a chunk of steps and calls it once per chunk (one host sync and progress
bar update per chunk).
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
from jax.scipy.special import xlogy
from jaxtyping import Array

from ._checks import (
    _check_choice,
    _check_flag,
    _check_int,
    _check_positive,
    _check_verbose,
    _show,
    _suggest,
)
from ._fitting import (
    _MAX_SOLVER_STEPS,
    _as_float_array,
    _check_activation,
    _check_common,
    _check_hidden,
    _check_nonnegative,
    _full_precision,
    _guess_beta,
    _init_time_mlp,
    _inverse_softplus,
    _merge_grids,
    _minimise,
    _plateaued,
    _r2,
    _require_key,
    _shifted_grid,
    _TimeMLP,
)
from .compartmental import R0 as _R0
from .compartmental import (
    SIR,
    CompartmentalModel,
    NetworkRate,
    SolverOptions,
    Trajectory,
    effective_reproduction_number,
    solve,
)
from .compartmental._options import _resolve_options, _Settings
from .results import ConvergenceWarning, FitResult
from .training import NonFiniteLossError

__all__ = ["fit_neural_beta"]

_LOSSES = ("mse", "poisson")
# A failed solve scores this data loss (the misfit of a sensible fit is O(1) or below).
_FAILED_LOSS = 1e3


def _observables(model, traj: Trajectory, names: tuple[str, ...], offset: int) -> dict:
    out = {}
    for name in names:
        if name in model.compartments:
            y = traj[name]  # (T,), or (G, T) by group: the sum over the groups is observed
            out[name] = (y if model.groups is None else jnp.sum(y, axis=0))[offset:]
        elif name == "incidence":
            out[name] = jnp.diff(traj.cumulative_infections)
        elif name == "cumulative":
            out[name] = traj.cumulative_infections[offset:]
        elif name == "deaths":
            out[name] = traj["D"][offset:]
        else:  # new_deaths
            out[name] = jnp.diff(traj["D"])
    return out


# --------------------------------------------------------------------------------------
# The UDE objective
# --------------------------------------------------------------------------------------


class _UDEObjective(eqx.Module):
    """Data misfit + smoothness penalty as a pytree (data as leaves, settings static)."""

    model: CompartmentalModel
    net: _TimeMLP = eqx.field(static=True)
    y0: Array
    grid: Array
    obs: dict[str, Array]
    scale: dict[str, Array]
    fixed: dict[str, Array]
    pen_tau: Array
    smoothness: Array
    T: float = eqx.field(static=True)
    order: int = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    offset: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    rate_name: str = eqx.field(static=True, default="beta")

    def rate(self, params) -> NetworkRate:
        """The network's rate (:math:`\\beta` by default) as a function of time since
        ``t0``."""
        return NetworkRate(self.net, params["net"], t_scale=self.T)

    def model_params(self, params) -> dict[str, Any]:
        p = dict(self.fixed)
        p[self.rate_name] = self.rate(params)
        if "log_gamma" in params:
            p["gamma"] = jnp.exp(params["log_gamma"])
        return p

    def solve(self, params, grid) -> Trajectory:
        return solve(self.model, self.model_params(params), self.y0, grid, rtol=self.rtol,
                     atol=self.atol, max_steps=self.max_steps, throw=False)

    def predict(self, params) -> tuple[dict[str, Array], Array]:
        traj = self.solve(params, self.grid)
        return _observables(self.model, traj, tuple(self.obs), self.offset), traj.success

    def data_loss(self, params) -> Array:
        return self.misfit(*self.predict(params))

    def misfit(self, pred: dict[str, Array], ok: Array) -> Array:
        """The data term for predictions ``pred`` at the observation times."""
        terms = []
        for name, y in self.obs.items():
            mu = jnp.where(ok, pred[name], y)  # masked: no inf enters the misfit
            if self.loss == "mse":
                terms.append(((mu - y) / self.scale[name]) ** 2)
            else:
                mu = jnp.maximum(mu, 1e-8 * self.scale[name])
                dev = 2.0 * (xlogy(y, y) - xlogy(y, mu) - (y - mu))
                terms.append(dev / self.scale[name])
        value = jnp.mean(jnp.concatenate(terms))
        return jnp.where(ok & jnp.isfinite(value), value, _FAILED_LOSS)

    def penalty(self, params) -> Array:
        log_beta = jnp.log(jax.vmap(self.rate(params))(self.pen_tau * self.T))
        h = self.pen_tau[1] - self.pen_tau[0]
        return jnp.mean((jnp.diff(log_beta, n=self.order) / h**self.order) ** 2)

    def __call__(self, params) -> tuple[Array, dict[str, Array]]:
        d, p = self.data_loss(params), self.penalty(params)
        return d + self.smoothness * p, {"data": d, "penalty": p}


@eqx.filter_jit
def _evaluate(objective: _UDEObjective, params, both: Array, i_fine: Array, i_obs: Array):
    """Everything at the estimate, from one solve on the merged fine + observation grid."""
    mp = objective.model_params(params)
    sol = objective.solve(params, both)
    traj = eqx.tree_at(lambda tr: (tr.ts, tr.ys, tr.cumulative_infections), sol,
                       (sol.ts[i_fine], sol.ys[i_fine], sol.cumulative_infections[i_fine]))
    at_obs = eqx.tree_at(lambda tr: (tr.ts, tr.ys, tr.cumulative_infections), sol,
                         (sol.ts[i_obs], sol.ys[i_obs], sol.cumulative_infections[i_obs]))
    pred = _observables(objective.model, at_obs, tuple(objective.obs), objective.offset)
    beta = jax.vmap(objective.rate(params))(traj.ts)
    r_t = effective_reproduction_number(objective.model, mp, traj)
    return traj, beta, r_t, pred, sol.success, objective.misfit(pred, sol.success), \
        objective.penalty(params)


def _check_rate_value(model, name: str, value: Any) -> float | np.ndarray:
    """A fixed rate's value: a positive number, or (declared-shape parameters, such as a
    contact matrix) a non-negative array of that shape."""
    shape = model.param_shapes.get(name, ())
    if shape == () or np.ndim(value) == 0:
        return _check_positive(value, f"rates[{name!r}]")
    a = _as_float_array(value, f"rates[{name!r}]")
    if a.shape != shape or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"`rates[{name!r}]` must be a number or a non-negative array of the "
                         f"declared shape {shape}; got {a.tolist()}.")
    return a


def _check_network_rate(model, rate: Any) -> str:
    """The declared scalar rate that the network replaces (an error names the others)."""
    if not isinstance(rate, str):
        raise TypeError(f"`rate` must be the name of a rate of the model; got {_show(rate)}.")
    scalars = tuple(k for k in model.rate_names if model.param_shapes[k] == ())
    if rate not in model.rate_names:
        raise ValueError(f"`rate` {rate!r} is not a rate of {model.name}; its rates are "
                         f"{model.rate_names}{_suggest(rate, model.rate_names)}.")
    if rate not in scalars:
        raise ValueError(
            f"`rate` {rate!r} of {model.name} has the declared shape "
            f"{model.param_shapes[rate]}; the network gives one value per time, so it can "
            f"replace a scalar rate only ({scalars})."
        )
    return rate


# --------------------------------------------------------------------------------------
# fit_neural_beta
# --------------------------------------------------------------------------------------


@_full_precision
def fit_neural_beta(
    ts: Any,
    data: Mapping[str, Any],
    *,
    y0: Mapping[str, float],
    model: CompartmentalModel | None = None,
    N: float | None = None,
    gamma: float | None = None,
    gamma_init: float = 0.3,
    rates: Mapping[str, float] | None = None,
    rate: str = "beta",
    beta_init: float | None = None,
    hidden: Sequence[int] = (16, 16),
    activation: str = "tanh",
    smoothness: float = 1e-7,
    smoothness_order: int = 2,
    loss: str = "mse",
    steps: int = 1000,
    learning_rate: float = 5e-2,
    key: jax.Array | None = None,
    t0: float | None = None,
    n_grid: int = 201,
    n_penalty: int = 101,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 2048,
    chunk_size: int = 100,
    verbose: int = 0,
    warn: bool = True,
    options: SolverOptions | None = None,
) -> FitResult:
    r"""Fit a compartmental model with a neural transmission rate :math:`\beta(t)`.

    :math:`\beta(t) = \operatorname{softplus}(\text{MLP}(2(t - t_0)/T - 1))` inside the
    ODE, trained with Adam (warm-up, then cosine decay) through the solver on the
    objective in the module docstring: scaled data misfit plus ``smoothness`` times the
    mean squared ``smoothness_order``-th derivative of :math:`\log\beta` in normalised
    time. The network starts at the constant ``beta_init``. Fits with the same data shapes
    and settings share one compilation (``steps`` and ``learning_rate`` included).

    Args:
        ts: observation times, strictly increasing (any unit).
        data: ``{name: observed series at ts}``; names are compartments (``"I"``, ...),
            ``"incidence"``, ``"cumulative"``, ``"deaths"`` or ``"new_deaths"`` as in
            :func:`epinn.estimation.fit_parameters` (no reporting fraction).
        y0: initial state at ``t0`` by compartment name.
        model: any model (default ``SIR()``), built in or your own :class:`epinn.Model`;
            its rates other than ``rate`` (and a learned ``gamma``) are fixed by
            ``rates``. With groups, ``y0`` and ``N`` are given by group and the data are
            summed over the groups.
        N: population (default ``sum(y0)``); counts or fractions (``N = 1``) both work.
        gamma: the recovery rate if known (then fixed); ``None`` learns it
            (log-parametrised, starting at ``gamma_init``) when the model has a rate
            ``gamma`` other than ``rate``.
        gamma_init: start for a learned ``gamma`` (per unit of ``ts``).
        rates: values of the model's other rates, e.g. ``{"sigma": 0.2}`` for SEIR (an
            array of its declared shape for an array parameter, e.g. a contact matrix).
        rate: the declared scalar rate that the network replaces (default ``"beta"``),
            e.g. ``"nu"`` for a vaccination rate :math:`\nu(t)`: the model's rate
            functions receive the network's value at ``t`` as ``p.nu``. Everything this
            docstring says of :math:`\beta(t)` then holds for it.
        beta_init: the constant value of ``rate`` the network starts at (required when
            ``rate`` is not ``"beta"``); for :math:`\beta` the default is
            :math:`(\gamma + r) N/S_0` with :math:`r = \log(I_\text{peak}/I_0)/(t_\text{peak}
            - t_0)` from observed ``I`` (else :math:`2\gamma N/S_0`).
        hidden: hidden layer sizes of the MLP (one output is appended).
        activation: hidden activation (a smooth one such as ``"tanh"``).
        smoothness: the penalty weight :math:`\lambda \ge 0`.
        smoothness_order: 1 (towards constant :math:`\beta`) or 2 (towards
            :math:`\log\beta` linear in time).
        loss: ``"mse"`` (residuals scaled by each series' peak) or ``"poisson"`` (deviance
            of counts, scaled likewise).
        steps: Adam steps.
        learning_rate: Adam's peak learning rate (after the warm-up over the first tenth
            of the steps; cosine decay to a tenth of it by the end).
        key: ``jax.random`` key for the network's initial weights (required).
        t0: time of ``y0`` (default ``ts[0]``), e.g. 0 for the boarding school.
        n_grid: points of the fine grid from ``t0`` to ``ts[-1]`` for the returned
            :math:`\beta(t)` and trajectory.
        n_penalty: points at which the penalty is evaluated.
        rtol, atol, max_steps: shorthand for the fields of ``options`` (see
            :class:`~epinn.SolverOptions`), used in training and evaluation; a solve that
            needs more than ``max_steps`` (at most :math:`2^{24}`) counts as failed.
        chunk_size: optimiser steps per compiled chunk (one progress update each).
        verbose: 1 shows a progress bar, 0 is silent.
        warn: warn (:class:`epinn.ConvergenceWarning`) if the fit has not converged.
        options: the ODE settings as one :class:`~epinn.SolverOptions`; its fields left
            ``None`` keep the keywords above (a setting given both ways must agree). The
            fit uses ``rtol``, ``atol`` and ``max_steps`` only and refuses the other fields.

    Returns:
        :class:`epinn.FitResult` with ``method="neural_beta"``. ``params[rate]`` is its
        value at :math:`t_0` and ``R0`` is :math:`R_0` with the rates at :math:`t_0`
        (:math:`\beta(t_0)/\gamma` for SIR); ``free`` is ``(rate, "gamma")`` or
        ``(rate,)``; ``loss`` is the objective;
        ``converged`` means a successful final solve and an objective that improved by less
        than 10% over the last tenth of the steps; ``fitted`` the model at ``ts``;
        ``trajectory`` the solution on the fine grid. ``extras`` holds ``"t"`` (the fine
        grid), ``"beta_t"`` (the network's rate on it; also ``"rate_t"``, with its name in
        ``"rate"`` and ``"rate_fn"`` the same as ``"beta_fn"``), ``"R_t"`` (effective reproduction
        number), ``"beta_fn"`` (a jax-traceable, vectorised function ``t -> beta(t)``),
        ``"network"``/``"network_params"`` (the Flax module, input :math:`\tau =
        (t - t_0)/T`, and its trained variables), ``"data_loss"``, ``"penalty"``, ``"r2"``
        (per observed series), ``"history"`` (an :class:`epinn.History`, one entry per
        step), ``"beta_init"``, ``"t0"``, ``"T"`` and ``"wall_time"``.

    Raises:
        ValueError: bad data (NaN, negative, wrong length, unknown names), ``y0`` (also one
            with every infected compartment at zero: the epidemic would never start) or
            ``N``, a ``rate`` that is not a scalar rate of the model, data by group,
            ``gamma`` for a model without a separate ``gamma``, missing ``rates``, non-positive
            ``gamma``, bad settings or a missing ``key``.
        TypeError: wrong kinds of arguments (e.g. a ``key`` that is not one
            ``jax.random`` key).
        NonFiniteLossError: the objective became NaN (the message names the step), or the
            fit ended with non-finite parameters or :math:`\beta(t)`.

    Examples:
        A transmission rate that drops from 0.5 to 0.2 around day 30, read off prevalence:

        >>> import jax, jax.numpy as jnp, jax.random as jr
        >>> from epinn.compartmental import SIR, solve
        >>> ts = jnp.arange(0.0, 81.0)
        >>> y0 = {"S": 1 - 1e-5, "I": 1e-5, "R": 0.0}
        >>> true_beta = lambda t: 0.2 + 0.3 * jax.nn.sigmoid((30.0 - t) / 3.0)
        >>> I = solve(SIR(), {"beta": true_beta, "gamma": 0.2, "N": 1.0}, y0, ts)["I"]
        >>> res = fit_neural_beta(ts, {"I": I}, y0=y0, gamma=0.2, key=jr.PRNGKey(0))
        >>> print(jnp.round(res.extras["beta_fn"](jnp.array([10.0, 60.0])), 1))
        [0.5 0.2]
    """
    wall = time.perf_counter()
    opts = _resolve_options(fit_neural_beta, options, rtol=rtol, atol=atol,
                            max_steps=max_steps)
    model = SIR() if model is None else model
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be a CompartmentalModel such as SIR(); got {_show(model)}.")
    rate, learn_gamma, rates = _check_ude_rates(model, rate, gamma, beta_init, rates)
    loss = _check_choice(loss, "loss", _LOSSES)
    if gamma is not None:
        gamma = _check_positive(gamma, "gamma")
    gamma_init = _check_positive(gamma_init, "gamma_init")
    if beta_init is not None:
        beta_init = _check_positive(beta_init, "beta_init")
    hidden = _check_hidden(hidden)
    activation = _check_activation(activation)
    smoothness = _check_nonnegative(smoothness, "smoothness")
    smoothness_order = _check_int(smoothness_order, "smoothness_order", 1, 2)
    steps = _check_int(steps, "steps", 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    n_grid = _check_int(n_grid, "n_grid", 2)
    n_penalty = _check_int(n_penalty, "n_penalty", 2)
    learning_rate = _check_positive(learning_rate, "learning_rate")
    ode = _Settings(rtol=_check_positive(opts.rtol, "rtol"),
                    atol=_check_positive(opts.atol, "atol"),
                    max_steps=_check_int(opts.max_steps, "max_steps", 1, _MAX_SOLVER_STEPS))
    verbose = _check_verbose(verbose)
    warn = _check_flag(warn, "warn")
    key = _require_key(key)
    ts, t0, obs, N, y0 = _check_common(model, ts, data, y0, N, rates, t0)
    g0 = gamma if gamma is not None else gamma_init
    beta0 = _guess_beta(model, ts, obs, y0, t0, N, g0) if beta_init is None else beta_init

    net = _TimeMLP(features=(*hidden, 1), activation=activation)
    params = {"net": _init_time_mlp(net, key, _inverse_softplus(beta0))}
    if gamma is None and learn_gamma:
        params["log_gamma"] = jnp.asarray(math.log(gamma_init))
    objective = _ude_objective(
        model, net, ts, t0, obs, N, y0, rates, gamma, rate=rate, smoothness=smoothness,
        order=smoothness_order, loss=loss, n_penalty=n_penalty, ode=ode)
    params, history = _minimise(objective, params, method="adam", steps=steps,
                                learning_rate=learning_rate, chunk_size=chunk_size,
                                verbose=verbose, desc="neural beta(t)")
    return _ude_result(objective, params, history, ts=ts, t0=t0, obs=obs, N=N, y0=y0,
                       rates=rates, gamma=gamma, learn_gamma=learn_gamma, beta0=beta0,
                       smoothness=smoothness, n_grid=n_grid, steps=steps, warn=warn,
                       wall=wall)


def _check_ude_rates(model, rate, gamma, beta_init, rates):
    """``(rate, learn_gamma, rates)``: the network's rate, whether ``gamma`` is another
    scalar rate (learned, or fixed by ``gamma``) and the checked values of the other rates."""
    rate = _check_network_rate(model, rate)
    # gamma is learned (or given as `gamma`) when it is another scalar rate of the model
    learn_gamma = (rate != "gamma" and "gamma" in model.rate_names
                   and model.param_shapes["gamma"] == ())
    if gamma is not None and not learn_gamma:
        raise ValueError(f"`gamma` is given, but {model.name} has no scalar rate 'gamma' "
                         f"besides the network's {rate!r}; give its value in `rates`.")
    if beta_init is None and rate != "beta":
        raise ValueError(f"`beta_init` is required with rate={rate!r}: the constant value "
                         f"of {rate} the network starts at.")
    if rates is not None and not isinstance(rates, Mapping):
        raise TypeError(f"`rates` must be a mapping like {{'sigma': 0.2}}; got {_show(rates)}.")
    rates = {} if rates is None else dict(rates)
    need = [k for k in model.rate_names if k != rate and not (learn_gamma and k == "gamma")]
    missing = [k for k in need if k not in rates]
    unknown = [k for k in rates if k not in need]
    if missing or unknown:
        raise ValueError(
            f"`rates` must give the model's other rates {need}; missing {missing}, "
            f"unknown {unknown}."
        )
    return rate, learn_gamma, {k: _check_rate_value(model, k, v) for k, v in rates.items()}


def _ude_objective(model, net, ts, t0, obs, N, y0, rates, gamma, *, rate, smoothness, order,
                   loss, n_penalty, ode) -> _UDEObjective:
    """The objective of the module docstring on the checked inputs (data as float leaves)."""
    grid, offset = _shifted_grid(ts, t0)
    fixed = {k: jnp.asarray(v) for k, v in rates.items()}
    fixed["N"] = jnp.asarray(N)
    if gamma is not None:
        fixed["gamma"] = jnp.asarray(gamma)
    return _UDEObjective(
        model=model,
        net=net,
        y0={c: _leaf(y0[c]) for c in model.compartments},
        grid=_leaf(grid),
        obs={k: _leaf(v) for k, v in obs.items()},
        scale={k: _leaf(max(float(v.max()), 1e-12 * float(np.sum(N)))) for k, v in obs.items()},
        fixed=fixed,
        pen_tau=_leaf(np.linspace(0.0, 1.0, n_penalty)),
        smoothness=_leaf(smoothness),
        T=float(ts[-1] - t0),
        order=order,
        loss=loss,
        offset=offset,
        rtol=ode.rtol,
        atol=ode.atol,
        max_steps=ode.max_steps,
        rate_name=rate,
    )


def _leaf(a: Any) -> Array:
    """``a`` as a jax array of the default float dtype."""
    return jnp.asarray(np.asarray(a, dtype=float))


def _ude_result(objective: _UDEObjective, params, history, *, ts, t0, obs, N, y0, rates, gamma,
                learn_gamma, beta0, smoothness, n_grid, steps, warn, wall) -> FitResult:
    """Evaluate the trained network on the fine grid and pack the :class:`FitResult` (an
    error for a non-finite result, a warning when not converged)."""
    model, rate, T = objective.model, objective.rate_name, objective.T
    grid, _ = _shifted_grid(ts, t0)
    fine = np.linspace(0.0, T, n_grid)
    both, i_fine, i_obs = _merge_grids(fine, grid)
    traj, beta_t, r_t, pred, ok, d_loss, pen = _evaluate(
        objective, params, _leaf(both), jnp.asarray(i_fine), jnp.asarray(i_obs)
    )
    traj = eqx.tree_at(lambda tr: tr.ts, traj, traj.ts + t0)
    total = float(d_loss) + smoothness * float(pen)
    if not (math.isfinite(total) and np.all(np.isfinite(np.asarray(beta_t)))):
        history.stop_reason = "non-finite result"
        raise NonFiniteLossError(
            f"fit_neural_beta ended with a non-finite objective ({total}) or beta(t); try a "
            "smaller `learning_rate` or a larger `smoothness`.",
            epoch=steps,
            history=history,
        )
    out_params = {rate: float(beta_t[0]), **rates, "N": N}
    if learn_gamma:
        out_params["gamma"] = float(jnp.exp(params["log_gamma"])) if gamma is None else gamma
    r0 = float(_R0(model, out_params))
    converged = bool(ok) and math.isfinite(total) and _plateaued(history.train_loss)
    if not converged and warn:
        warnings.warn(
            f"fit_neural_beta has not converged after {steps} steps (objective {total:.4g}, "
            f"solve ok: {bool(ok)}); increase `steps` or adjust `learning_rate`.",
            ConvergenceWarning,
            stacklevel=3,
        )
    network_rate = objective.rate(params)

    def rate_fn(t):
        return jnp.vectorize(network_rate)(jnp.asarray(t) - t0)

    fitted = {k: np.asarray(v) for k, v in pred.items()}
    return FitResult(
        params=out_params,
        y0={c: y0[c] for c in model.compartments},
        loss=total,
        loss_history=np.asarray(history.train_loss),
        converged=converged,
        free=(rate,) if "log_gamma" not in params else (rate, "gamma"),
        R0=r0,
        ts=ts,
        fitted=fitted,
        trajectory=traj,
        method="neural_beta",
        n_steps=steps,
        extras={
            "t": fine + t0,
            "beta_t": np.asarray(beta_t),
            "R_t": np.asarray(r_t),
            "beta_fn": rate_fn,
            "rate": rate,
            "rate_t": np.asarray(beta_t),
            "rate_fn": rate_fn,
            "network": objective.net,
            "network_params": params["net"],
            "data_loss": float(d_loss),
            "penalty": float(pen),
            "r2": {k: _r2(fitted[k], obs[k]) for k in obs},
            "history": history,
            "beta_init": float(beta0),
            "t0": t0,
            "T": T,
            "wall_time": time.perf_counter() - wall,
        },
    )
