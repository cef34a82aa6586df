"""The Bayesian epidemic model: :func:`~epinn.epidemic_model` and :func:`~epinn.fit_epidemic`.

Private module of :mod:`epinn.bayes`: the checks that turn data, a compartmental model and
priors into an ``_EpidemicSpec``, the model body shared with the neural-beta model (initial
state, ODE solve with failures masked, count likelihood), the chains' starting points and
the NUTS fit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import ArrayLike

from .._checks import _check_flag, _check_key
from ..compartmental import R0 as _R0
from ..compartmental import SIR, CompartmentalModel, SolverOptions, solve
from ..compartmental._options import _resolve_options, _Settings
from ..observation import observe
from ._checks import (
    _as_float_array,
    _check_choice,
    _check_real,
    _check_solver_options,
    _check_thresholds,
    _is_concrete,
    _is_real,
    _suggest,
)
from ._init import _init_to_sites
from ._priors import _days_per_unit, _draw, _model_priors, _noncentred_z
from ._results import MCMCResult
from ._run import _make_mcmc, _sample

_LIKELIHOODS = ("negbin", "poisson")
_REPARAMS = ("noncentred",)

# Floor for the expected count (a compartment can be ~0 or, from round-off, slightly
# negative); far below any count that matters, it only keeps the likelihood finite.
_MEAN_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class _EpidemicSpec:
    model: CompartmentalModel
    grid: np.ndarray  # solve grid: (t0, ts...) or ts
    offset: int  # index of ts[0] in grid
    counts: Any  # numpy array, a tracer (data as jit argument) or None
    y0: dict[str, float]
    population: float
    priors: dict[str, Any]
    likelihood: str
    observed: str
    reparam: str | None = None


def _epidemic_spec(ts, counts, *, model, y0, population, t0, priors, likelihood, observed,
                   time_unit: Any = "day", reparam: Any = None,
                   neural_beta: bool = False) -> _EpidemicSpec:
    """Validate everything in plain Python (before any tracing) and normalise it."""
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be a CompartmentalModel such as SIR(); got {model!r}.")
    likelihood = _check_choice(likelihood, _LIKELIHOODS, "likelihood")
    if reparam is not None:
        _check_choice(reparam, _REPARAMS, "reparam")
    days = _days_per_unit(time_unit)
    tsa = _check_ts(ts)
    obs = _check_counts(counts, tsa, likelihood)
    t0 = float(tsa[0]) if t0 is None else _check_real(t0, "t0")
    if not math.isfinite(t0) or t0 > tsa[0]:
        raise ValueError(f"`t0` ({t0}) must be finite and not after the first time {tsa[0]}.")
    flows = model.flow_names()
    valid_obs = (*model.compartments, "incidence", "cumulative", *flows,
                 *(f"cumulative_{f}" for f in flows))
    _check_choice(observed, valid_obs, "observed")
    if observed in ("incidence", *flows) and t0 == tsa[0]:
        raise ValueError(f"`observed={observed!r}` counts events in (t_prev, t]: set `t0` "
                         "before `ts[0]` (the start of the first interval).")
    grid, offset = (tsa, 0) if t0 == tsa[0] else (np.concatenate([[t0], tsa]), 1)
    if grid.size < 2:
        raise ValueError("`ts` must contain at least 2 times when `t0` equals `ts[0]`.")
    y0f, N = _check_y0(y0, model, population)
    checked = _model_priors(priors, model, likelihood, days, neural_beta)
    return _EpidemicSpec(
        model=model, grid=grid, offset=offset, counts=obs, y0=y0f, population=N,
        priors=checked, likelihood=likelihood, observed=observed, reparam=reparam,
    )


def _check_ts(ts: Any) -> np.ndarray:
    """Observation times: a non-empty, finite, strictly increasing 1-D array."""
    tsa = _as_float_array(ts, "ts")
    if tsa.ndim != 1 or tsa.size == 0:
        raise ValueError(
            f"`ts` must be a 1-D array of observation times with at least one entry (no data "
            f"to fit otherwise); got shape {tsa.shape}."
        )
    if not np.all(np.isfinite(tsa)) or not np.all(np.diff(tsa) > 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
    return tsa


def _check_counts(counts: Any, tsa: np.ndarray, likelihood: str) -> Any:
    """``None``, a tracer of the shape of ``ts`` (data as a jit argument: shapes only), or
    whole, finite, non-negative counts at ``ts`` as a NumPy array."""
    obs = None
    if counts is not None and not _is_concrete(counts):  # traced data: shapes only
        if jnp.shape(counts) != tsa.shape:
            raise ValueError(f"`counts` has shape {jnp.shape(counts)}; expected {tsa.shape}.")
        obs = counts
    elif counts is not None:
        obs = _as_float_array(counts, "counts")
        if obs.size == 0:
            raise ValueError("`counts` is empty: there is no data to fit.")
        if obs.shape != tsa.shape:
            raise ValueError(f"`counts` has shape {obs.shape}; expected {tsa.shape} to match `ts`.")
        if not np.all(np.isfinite(obs)):
            raise ValueError("`counts` contains NaN or inf.")
        if np.any(obs < 0):
            i = int(np.flatnonzero(obs < 0)[0])
            raise ValueError(f"`counts` contains negative counts (first {obs[i]:g} at index "
                             f"{i}); counts must be >= 0.")
        fractional = np.flatnonzero(obs != np.round(obs))
        if fractional.size:  # both likelihoods are distributions over whole numbers
            i = int(fractional[0])
            raise ValueError(
                f"`counts` must be whole numbers under the count likelihood "
                f"likelihood={likelihood!r}; got {float(obs[i])!r} at index {i} ({fractional.size} "
                "non-integer values). Pass the reported counts themselves (not averages or "
                "rates); rounding changes the data."
            )
    return obs


def _check_y0(y0: Any, model: CompartmentalModel,
              population: Any) -> tuple[dict[str, float], float]:
    """``(y0 by compartment as floats, population N)``; ``N`` defaults to ``sum(y0)``."""
    if not isinstance(y0, Mapping):
        raise TypeError("`y0` must be a mapping by compartment name, e.g. {'S': 762, ...}.")
    missing = [c for c in model.compartments if c not in y0]
    unknown = [c for c in y0 if c not in model.compartments]
    if missing or unknown:
        hint = _suggest(unknown[0], missing) if unknown and missing else ""
        raise ValueError(f"`y0` must name exactly the compartments {model.compartments}; "
                         f"missing {missing}, unknown {unknown}{hint}.")
    y0f = {c: _check_real(y0[c], f"y0[{c!r}]", nonnegative=True) for c in model.compartments}
    N = (float(sum(y0f.values())) if population is None
         else _check_real(population, "population", positive=True))
    if N <= 0:
        raise ValueError(f"`population` must be a positive number; got {population!r} (the "
                         "sum of `y0`).")
    if sum(y0f.values()) > N * (1 + 1e-6):
        raise ValueError(f"`y0` sums to {sum(y0f.values())}, more than `population` {N}.")
    return y0f, N


def _init_from(init: Any, spec: _EpidemicSpec) -> dict[str, float]:
    """Initial values of the sampled sites from a mapping or a :class:`~epinn.FitResult`.

    Each value is moved inside the central 99.8% of its prior (from 4000 prior draws), so
    that an estimate on a bound (a rate of 0, a reporting fraction of 1) starts the chains
    at a finite point of the unconstrained space. With ``reparam="noncentred"`` the value
    is mapped to its standard-normal coordinate ``"<name>_z"``.
    """
    sampled = {k: v for k, v in spec.priors.items() if isinstance(v, dist.Distribution)}
    if isinstance(init, Mapping):
        values = dict(init)
        unknown = [k for k in values if k not in sampled]
        if unknown:
            raise ValueError(f"`init` names {unknown}, which are not sampled parameters; "
                             f"sampled: {tuple(sampled)}{_suggest(unknown[0], tuple(sampled))}.")
    elif hasattr(init, "params") and isinstance(getattr(init, "params"), Mapping):
        params = dict(init.params)  # a FitResult: take what the Bayesian model samples
        if "phi" in params and "phi_inv" in sampled:
            params["phi_inv"] = 1.0 / params["phi"] if params["phi"] > 0 else math.inf
        params.update({f"{c}0": v for c, v in dict(getattr(init, "y0", None) or {}).items()})
        values = {k: v for k, v in params.items() if k in sampled}
    else:
        raise TypeError(f"`init` must be a mapping {{name: value}} or a FitResult; got "
                        f"{type(init).__name__}.")
    out = {}
    for name, v in values.items():
        v = _check_real(v, f"init[{name!r}]") if not (
            _is_real(v) and math.isinf(float(v))) else float(v)
        draws = np.asarray(sampled[name].sample(jr.PRNGKey(0), (4000,)), dtype=np.float64)
        lo, hi = np.quantile(draws, (0.001, 0.999))
        v = float(np.clip(v if math.isfinite(v) else hi, lo, hi))
        z = _noncentred_z(sampled[name], v) if spec.reparam == "noncentred" else None
        out[name if z is None else f"{name}_z"] = v if z is None else z
    return out


def _ode_settings(fn, options: Any, **keywords: Any) -> _Settings:
    """``fn``'s solver keywords merged with ``options`` (one value), checked before tracing."""
    settings = _resolve_options(fn, options, **keywords)
    _check_solver_options(settings.rtol, settings.atol, settings.max_steps, settings.solver)
    return settings


def _epidemic_body(spec: _EpidemicSpec, rates: dict[str, Any], *, adjoint,
                   ode: _Settings) -> None:
    """Initial state, ODE solve, masking and likelihood (shared by both epidemic models)."""
    model, p, N = spec.model, spec.priors, spec.population
    y0 = {c: _draw(f"{c}0", p[f"{c}0"], spec.reparam) if f"{c}0" in p else spec.y0[c]
          for c in model.compartments}
    free_initial = any(f"{c}0" in p for c in model.compartments if c != "S")
    if free_initial:  # S takes up the rest of the population
        y0["S"] = N - sum(y0[c] for c in model.compartments if c != "S")
    y0v = jnp.stack([jnp.asarray(y0[c], dtype=jnp.result_type(float)) for c in model.compartments])
    # Initial draws that leave S < 0 are masked below; solve the given (valid) y0 instead.
    valid = y0v[0] >= 0
    fallback = jnp.asarray([spec.y0[c] for c in model.compartments], dtype=y0v.dtype)
    start = jnp.where(valid, y0v, fallback)
    flow = spec.observed.removeprefix("cumulative_")
    counted = (flow,) if flow in model.flow_names() and model.count_rule(flow) is None else ()
    traj = solve(model, {**rates, "N": N}, dict(zip(model.compartments, start)),
                 jnp.asarray(spec.grid), adjoint=adjoint, throw=False, counts=counted,
                 options=ode.options())
    k = spec.offset
    if spec.observed == "incidence":
        signal = jnp.diff(traj.cumulative_infections)
    elif spec.observed == "cumulative":
        signal = traj.cumulative_infections[k:]
    elif spec.observed in model.compartments:
        signal = traj[spec.observed][k:]
    elif spec.observed == flow:  # a flow's count per interval (t_prev, t]
        signal = observe(traj, flow)
    else:  # "cumulative_<flow>": its count since t0
        signal = observe(traj, spec.observed)[k:]
    mean = (_draw("reporting", p["reporting"], spec.reparam) * signal if "reporting" in p
            else signal)
    ok = traj.success & jnp.all(jnp.isfinite(mean)) & valid
    numpyro.deterministic("solver_ok", ok)
    # A failed solve is a point of zero posterior density, not an error.
    numpyro.factor("solver_failure", jnp.where(ok, 0.0, -jnp.inf))
    safe = jnp.where(ok, jnp.maximum(mean, _MEAN_FLOOR), 1.0)
    numpyro.deterministic("expected", jnp.where(ok, safe, jnp.nan))
    if spec.likelihood == "negbin":
        phi_inv = _draw("phi_inv", p["phi_inv"], spec.reparam)
        phi = numpyro.deterministic("phi", 1.0 / jnp.asarray(phi_inv))
        likelihood = dist.NegativeBinomial2(safe, phi)
    else:
        likelihood = dist.Poisson(safe)
    counts = None if spec.counts is None else jnp.asarray(spec.counts)
    with numpyro.plate("time", safe.shape[0]):
        numpyro.sample("obs", likelihood, obs=counts)


def _adjoint(forward_mode: bool):
    return diffrax.ForwardMode() if forward_mode else diffrax.RecursiveCheckpointAdjoint()


def epidemic_model(
    ts: ArrayLike,
    counts: ArrayLike | None = None,
    *,
    y0: Mapping[str, float],
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    likelihood: str = "negbin",
    observed: str = "I",
    time_unit: str | float = "day",
    reparam: str | None = None,
    forward_mode: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_steps: int = 4096,
    solver: diffrax.AbstractSolver | None = None,
    options: SolverOptions | None = None,
) -> None:
    r"""numpyro model of counts observed from a compartmental ODE with uncertain rates.

    Each rate :math:`\theta_k` of ``model`` has a prior (or a fixed value); optionally the
    initial compartments (``"I0"``, ``"E0"``, ... as counts; S takes the rest of the
    population), a reporting fraction :math:`\rho` (``"reporting"``) and, for the negative
    binomial, the inverse overdispersion :math:`\phi^{-1}` (``"phi_inv"``). The ODE is
    solved from ``t0`` with :func:`epinn.compartmental.solve` (``throw=False``) and

    .. math::

        y_i \sim \text{NegBin}(\mu_i, \phi) \ \text{or}\ \text{Poisson}(\mu_i), \qquad
        \mu_i = \rho\, h(t_i),

    where :math:`h` is the ``observed`` compartment (prevalence), the incidence in
    :math:`(t_{i-1}, t_i]`, the cumulative infections since ``t0``, a flow's count in
    :math:`(t_{i-1}, t_i]` (e.g. ``"deaths"`` of :class:`~epinn.compartmental.SIRD`) or its
    count since ``t0`` (``"cumulative_deaths"``), as in :func:`epinn.observe`. Counts per
    interval need ``t0`` before ``ts[0]``: ``ts`` are the interval ends and ``t0`` the start
    of the first (:meth:`epinn.OutbreakData.observation_times` builds them). A failed solve adds
    :math:`-\infty` to the log density (site ``"solver_failure"``), so NUTS rejects the point
    instead of crashing.

    Sites: the rates, ``"<C>0"``, ``"reporting"``, ``"phi_inv"`` (latent, when given
    priors); deterministic ``"R0"``, ``"recovery_time"`` (:math:`1/\gamma`, the mean time to
    recovery), ``"phi"``, ``"expected"`` (:math:`\mu`, NaN where the solve failed) and
    ``"solver_ok"``; the observations ``"obs"``.

    **Time unit.** Rates are per unit of ``ts``. The default priors are the case study's
    per-day priors, rescaled to ``time_unit`` (:func:`default_priors`): pass
    ``time_unit="week"`` with weekly times (e.g. ``data.time_unit`` of a bundled data set)
    and :math:`\beta, \gamma` are then per week. Priors you give in ``priors`` are taken
    as they are, per unit of ``ts``; ``"recovery_time"`` is in units of ``ts`` too.

    **Reparameterisation.** ``reparam="noncentred"`` samples each parameter whose prior is
    a ``LogNormal``, an ``Exponential`` or a ``TruncatedNormal`` bounded below only as a
    standard normal ``"<name>_z"`` and maps it through the prior's quantile function,
    :math:`\theta = F^{-1}(\Phi(z))` (``"<name>"`` becomes a deterministic site). The
    prior and the posterior are exactly the same; only the coordinates NUTS moves in
    change, to ones in which every direction the data do not inform is a unit normal.
    Other priors (e.g. ``Beta``) are sampled as they are.

    Args:
        ts: observation times (strictly increasing).
        counts: observed counts at ``ts`` (non-negative), or ``None`` to simulate.
        y0: the initial state by compartment at ``t0`` (entries with a prior are replaced
            by their draw).
        model: the compartmental model; default :class:`~epinn.compartmental.SIR`.
        population: :math:`N`; default ``sum(y0)``.
        t0: start of the solve; default ``ts[0]``.
        priors: ``{name: numpyro distribution or fixed number}`` over the rates,
            ``"reporting"``, ``"phi_inv"`` and ``"<C>0"``; merged over
            :func:`default_priors` (beta, gamma, phi_inv). Distributions must have
            non-negative support (``reporting`` inside [0, 1]).
        likelihood: ``"negbin"`` or ``"poisson"``; both need whole-number counts.
        observed: a compartment name, ``"incidence"``, ``"cumulative"``, a flow name
            (``"deaths"``, ``"I->R"``) or ``"cumulative_<flow>"``.
        time_unit: the unit of ``ts``: ``"day"`` (default), ``"week"`` or days per unit;
            sets the unit of the default rate priors.
        reparam: ``None`` or ``"noncentred"`` (see above).
        forward_mode: solve with diffrax ``ForwardMode`` (for NUTS with
            ``forward_mode_differentiation=True``); ``False`` uses the reverse-mode
            ``RecursiveCheckpointAdjoint`` (SVI, reverse-mode NUTS).
        rtol, atol, max_steps, solver: shorthand for the fields of ``options``.
        options: the solver settings as one :class:`~epinn.SolverOptions` (its ``rtol``,
            ``atol``, ``max_steps`` and ``solver``; the adjoint follows ``forward_mode`` and a
            failed solve never raises, so ``adjoint``, ``throw`` and ``dt0`` are refused).

    Raises:
        ValueError: no data, bad shapes, negative, non-integer or non-finite counts,
            unknown names, priors with invalid parameters or support, bad solver options.
        TypeError: a prior that is neither a distribution nor a number.
    """
    model = SIR() if model is None else model
    spec = _epidemic_spec(ts, counts, model=model, y0=y0, population=population, t0=t0,
                          priors=priors, likelihood=likelihood, observed=observed,
                          time_unit=time_unit, reparam=reparam)
    _check_flag(forward_mode, "forward_mode")
    ode = _ode_settings(epidemic_model, options, rtol=rtol, atol=atol, max_steps=max_steps,
                        solver=solver)
    rates = {r: _draw(r, spec.priors[r], spec.reparam) for r in model.rate_names}
    numpyro.deterministic("R0", _R0(model, {**rates, "N": spec.population}))
    if "gamma" in rates:
        numpyro.deterministic("recovery_time", 1.0 / jnp.asarray(rates["gamma"]))
    _epidemic_body(spec, rates, adjoint=_adjoint(forward_mode), ode=ode)


def fit_epidemic(
    ts: ArrayLike,
    counts: ArrayLike,
    *,
    key: jax.Array,
    y0: Mapping[str, float],
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    likelihood: str = "negbin",
    observed: str = "I",
    time_unit: str | float = "day",
    reparam: str | None = None,
    init: Any = None,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    forward_mode: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_steps: int = 4096,
    solver: diffrax.AbstractSolver | None = None,
    max_r_hat: float = 1.05,
    min_ess: float = 100.0,
    warn: bool = True,
    options: SolverOptions | None = None,
) -> MCMCResult | list[MCMCResult]:
    r"""Posterior of an epidemic model's parameters by NUTS (:func:`epidemic_model`).

    Inputs are validated in plain Python first; then :func:`run_nuts` samples
    ``num_chains`` chains (vectorised), differentiating in forward mode through the ODE
    unless ``forward_mode=False``. The posterior of :math:`R_0` and the recovery time
    :math:`1/\gamma` are deterministic sites of the draws. Check ``result.ok`` (and the
    warning) before using the draws.

    Args:
        ts, counts: observation times ``(T,)`` and counts ``(T,)``, or several data sets
            ``(D, T)`` on the same times: then each is fitted in turn (one MCMC object,
            the counts passed as a jit argument; numpyro still recompiles the vectorised
            sampler for each run, a compilation per data set) and a list is returned.
        key: PRNG key; the same key gives the same draws (split over data sets).
        y0, model, population, t0, priors, likelihood, observed: as :func:`epidemic_model`.
        time_unit: the unit of ``ts`` (``"day"``, ``"week"`` or days per unit); the default
            priors are per day and are rescaled to it (see :func:`default_priors`); priors
            given in ``priors`` are per unit of ``ts``.
        reparam: ``"noncentred"`` samples the parameters in standard-normal coordinates
            (see :func:`epidemic_model`); try it when the fit reports divergences.
        init: where the chains start: a mapping ``{name: value}`` of sampled parameters
            or a :class:`~epinn.FitResult` of :func:`epinn.fit_parameters` on the same data
            (its estimates of the sampled parameters and initial states ``"<C>0"``;
            ``phi`` becomes ``phi_inv``). Values
            are moved inside the central 99.8% of their prior (an estimate on a bound
            starts just inside it); the other sites start at their prior median, the
            default for every site. Starting at the least-squares optimum spares the
            warm-up the search from a prior median that may lie far from the data.
        num_warmup, num_samples, num_chains, chain_method, target_accept_prob, dense_mass:
            as :func:`run_nuts`.
        forward_mode: forward-mode gradients (fast for a few parameters).
        rtol, atol, max_steps, solver: shorthand for the fields of ``options``.
        max_r_hat, min_ess, warn: diagnostics thresholds and warning switch.
        options: the solver settings as one :class:`~epinn.SolverOptions`, as in
            :func:`epidemic_model`.

    Returns:
        :class:`MCMCResult` (a list of them for several data sets);
        ``result.print_summary()`` prints the posterior table (with ``R0`` and
        ``recovery_time``), ``result.table(("beta", "gamma", "R0", "recovery_time"))``
        returns it as a dict and ``result.to_arviz()`` converts it for ArviZ.

    Raises:
        ValueError: bad data, priors or options (see :func:`epidemic_model`); every check
            runs before anything is compiled.
        TypeError: a bad key, model, solver or prior type.

    Warns:
        ConvergenceWarning: R-hat too large, ESS too small or divergent transitions.
    """
    model = SIR() if model is None else model
    _check_key(key)
    cfg = dict(y0=y0, model=model, population=population, t0=t0, priors=priors,
               likelihood=likelihood, observed=observed, time_unit=time_unit, reparam=reparam)
    if counts is None:
        raise ValueError("`counts` must be given: there is no data to fit.")
    ts_a = _as_float_array(ts, "ts")
    counts_a = _as_float_array(counts, "counts")
    batched = counts_a.ndim == 2 and ts_a.ndim == 1
    if batched and counts_a.shape[1:] != ts_a.shape:
        raise ValueError(f"`counts` of shape {counts_a.shape} must be (T,) or (data sets, T) "
                         f"with T = len(ts) = {ts_a.size}.")
    if batched and counts_a.shape[0] == 0:
        raise ValueError("`counts` holds no data sets.")
    # Every check runs here, in plain Python, before anything is traced or compiled.
    _check_flag(forward_mode, "forward_mode")
    ode = _ode_settings(fit_epidemic, options, rtol=rtol, atol=atol, max_steps=max_steps,
                        solver=solver)
    checks = dict(max_r_hat=max_r_hat, min_ess=min_ess, warn=_check_flag(warn, "warn"))
    _check_thresholds(max_r_hat, min_ess)
    fn = functools.partial(epidemic_model, **cfg, forward_mode=forward_mode,
                           options=ode.options())
    strategy = None
    if init is not None:
        spec = _epidemic_spec(ts_a, None, **cfg)
        strategy = _init_to_sites(_init_from(init, spec))
    sampler = dict(
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method=chain_method, target_accept_prob=target_accept_prob,
        max_tree_depth=10, dense_mass=dense_mass, forward_mode_differentiation=forward_mode,
        init_strategy=strategy, progress_bar=False,
    )
    _make_mcmc(fn, **sampler)  # validates the sampler options
    for c in counts_a if batched else (counts_a,):
        _epidemic_spec(ts_a, c, **cfg)
    if not batched:
        return _sample(_make_mcmc(fn, **sampler), key, (ts_a, counts_a), {}, model=fn,
                       **checks)
    # Several data sets: one MCMC object, the counts a jit argument (see the docstring).
    mcmc = _make_mcmc(functools.partial(fn, ts_a), jit_model_args=True, **sampler)
    return [
        _sample(mcmc, k, (), {"counts": jnp.asarray(c)}, model=fn, model_args=(ts_a, c),
                model_kwargs={}, **checks)
        for k, c in zip(jr.split(key, counts_a.shape[0]), counts_a)
    ]
