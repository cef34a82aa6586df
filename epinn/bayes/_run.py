"""The generic numpyro runners: NUTS on several chains and SVI with an autoguide (private).

:func:`run_nuts` wraps :class:`numpyro.infer.NUTS` and :class:`numpyro.infer.MCMC` and checks
convergence with :func:`mcmc_diagnostics`; :func:`run_svi` fits an autoguide with Adam and
refuses a fit whose ELBO loss ended non-finite. Every model of :mod:`epinn.bayes` is fitted
through them (or through ``_make_mcmc`` and ``_sample``, which :func:`~epinn.fit_epidemic`
uses to reuse one sampler for several data sets).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.random as jr
import numpy as np
import numpyro
import optax
from jaxtyping import Array, ArrayLike
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, autoguide
from numpyro.infer.initialization import init_to_median

from .._checks import _check_flag, _check_key
from ..results import ConvergenceWarning
from ..training import History, NonFiniteLossError
from ._checks import (
    _as_float_array,
    _check_choice,
    _check_positive_int,
    _check_prob,
    _check_real,
    _check_thresholds,
    _suggest,
)
from ._results import MCMCResult, SVIResult
from ._sites import _check_init_params, _check_site_names, _latent, _model_sites, _model_trace

_CHAIN_METHODS = ("vectorized", "sequential", "parallel")
_GUIDES = ("normal", "lowrank")
_EXTRA_FIELDS = ("diverging", "num_steps", "potential_energy", "energy", "accept_prob")


def mcmc_diagnostics(
    samples_by_chain: Mapping[str, ArrayLike],
    diverging: ArrayLike | None = None,
    *,
    sites: tuple[str, ...] | None = None,
    max_r_hat: float = 1.05,
    min_ess: float = 100.0,
    prob: float = 0.95,
) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]]:
    r"""Posterior summaries and convergence checks for draws grouped by chain.

    For each site: mean, standard deviation, median, the equal-tailed ``prob`` interval
    ``lo``-``hi``, split :math:`\hat R` (:func:`numpyro.diagnostics.split_gelman_rubin`) and
    the effective sample size (:func:`numpyro.diagnostics.effective_sample_size`). A run is
    flagged when a checked site has :math:`\hat R >` ``max_r_hat`` or ESS < ``min_ess``, or
    when any transition diverged.

    Args:
        samples_by_chain: ``{site: array (chains, draws, ...)}``.
        diverging: divergence indicators ``(chains, draws)``, or ``None``.
        sites: the sites to check (default all), keys of ``samples_by_chain``; all sites
            are summarised.
        max_r_hat: largest acceptable :math:`\hat R` (1.01 is the strict modern choice,
            1.05 a common one for few draws).
        min_ess: smallest acceptable effective sample size (Vehtari et al. suggest 100 per
            chain).
        prob: probability mass of the interval.

    Returns:
        ``(summary, problems)``: the per-site summary and a tuple of messages (empty when
        everything passed).

    Raises:
        ValueError: empty samples, too few draws, bad thresholds or unknown ``sites``.
        TypeError: ``sites`` is a string or not iterable.

    Examples:
        >>> draws = {"x": jr.normal(jr.PRNGKey(0), (4, 500))}
        >>> summary, problems = mcmc_diagnostics(draws)
        >>> problems, abs(float(summary["x"]["mean"])) < 0.1
        ((), True)
    """
    if not isinstance(samples_by_chain, Mapping) or not samples_by_chain:
        raise ValueError("`samples_by_chain` must be a non-empty mapping {site: array}.")
    prob = _check_prob(prob)
    _check_thresholds(max_r_hat, min_ess)
    sites = tuple(samples_by_chain) if sites is None else _check_site_names(
        sites, tuple(samples_by_chain), "sites")
    if diverging is not None:
        div = np.asarray(diverging)
        first = np.shape(next(iter(samples_by_chain.values())))[:2]
        if div.shape != first or not (div.dtype == bool or np.issubdtype(div.dtype, np.number)):
            raise ValueError(f"`diverging` must be a boolean array of shape (chains, draws) = "
                             f"{first}; got shape {div.shape} and dtype {div.dtype}.")
    summary: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    q = (0.5 * (1 - prob), 0.5, 0.5 * (1 + prob))
    for name, value in samples_by_chain.items():
        x = _as_float_array(value, f"samples_by_chain[{name!r}]")
        if x.ndim < 2 or x.shape[1] < 4:
            raise ValueError(
                f"`samples_by_chain[{name!r}]` must have shape (chains, draws >= 4, ...); "
                f"got {x.shape}."
            )
        flat = x.reshape(-1, *x.shape[2:])
        lo, med, hi = np.quantile(flat, q, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):  # constant sites give NaN
            r_hat = np.asarray(split_gelman_rubin(x))
            ess = np.asarray(effective_sample_size(x))
        summary[name] = {
            "mean": flat.mean(0), "std": flat.std(0), "median": med, "lo": lo, "hi": hi,
            "r_hat": r_hat, "ess": ess,
        }
        if name not in sites:
            continue
        worst_r, worst_e = np.nanmax(r_hat), np.nanmin(ess)
        if not np.isfinite(worst_r) or worst_r > max_r_hat:
            problems.append(f"{name}: R-hat {worst_r:.3f} > {max_r_hat}")
        if not np.isfinite(worst_e) or worst_e < min_ess:
            problems.append(f"{name}: ESS {worst_e:.0f} < {min_ess:g}")
    if diverging is not None:
        n_div = int(np.sum(div))
        if n_div:
            problems.append(f"{n_div} divergent transitions")
    return summary, tuple(problems)


def run_nuts(
    model: Callable[..., Any],
    key: jax.Array,
    *model_args: Any,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    forward_mode_differentiation: bool = False,
    init_strategy: Callable[..., Any] | None = None,
    init_params: dict[str, Array] | None = None,
    check_sites: tuple[str, ...] | None = None,
    max_r_hat: float = 1.05,
    min_ess: float = 100.0,
    warn: bool = True,
    progress_bar: bool = False,
    **model_kwargs: Any,
) -> MCMCResult:
    r"""Sample a numpyro model with NUTS on several chains and check convergence.

    Wraps :class:`numpyro.infer.NUTS` and :class:`numpyro.infer.MCMC`. With
    ``chain_method="vectorized"`` (default) the chains run in one ``vmap`` on one device,
    which works with diffrax solves inside the model (``"parallel"`` needs one device per
    chain and, with diffrax, ``DirectAdjoint``; see the project's STACK notes). After
    sampling it computes :func:`mcmc_diagnostics`; if R-hat, ESS or divergences are bad it
    sets ``ok=False`` and, unless ``warn=False``, issues a
    :class:`~epinn.ConvergenceWarning`.

    Args:
        model: a numpyro model function.
        key: PRNG key; the same key gives the same draws.
        *model_args: positional arguments of ``model`` (pass observed data positionally so
            :func:`posterior_predictive` can replace it).
        num_warmup, num_samples, num_chains: sizes of the run.
        chain_method: ``"vectorized"``, ``"sequential"`` or ``"parallel"``.
        target_accept_prob: NUTS step-size adaptation target.
        max_tree_depth: NUTS maximum tree depth.
        dense_mass: adapt a dense mass matrix.
        forward_mode_differentiation: differentiate the log density in forward mode (needs
            forward-differentiable code, e.g. diffrax ``ForwardMode``; fast for few
            parameters).
        init_strategy: numpyro init strategy; default ``init_to_median``.
        init_params: initial values in numpyro's unconstrained space for every latent
            site, ``{site: (num_chains, ...)}`` (overrides ``init_strategy``); with one chain
            the leading axis may be left out.
        check_sites: sites whose R-hat/ESS are checked (default: all latent sites); latent
            or deterministic sites of ``model``.
        max_r_hat, min_ess: thresholds of :func:`mcmc_diagnostics`.
        warn: warn when the diagnostics fail.
        progress_bar: numpyro's progress bar (slower: one dispatch per iteration).
        **model_kwargs: keyword arguments of ``model``.

    Returns:
        :class:`MCMCResult`.

    Raises:
        ValueError: bad sizes or options; ``check_sites`` or ``init_params`` naming sites
            that are not latent (or deterministic, for ``check_sites``) sites of ``model``,
            or ``init_params`` of the wrong shape.
        TypeError: a non-callable model or a bad key.

    Warns:
        ConvergenceWarning: R-hat too large, ESS too small or divergent transitions.

    Examples:
        >>> import numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(1.0, 2.0))
        >>> fit = run_nuts(model, jr.PRNGKey(0), num_warmup=200, num_samples=200,
        ...                num_chains=2, min_ess=50)
        >>> fit.ok, fit.samples["x"].shape, abs(fit.table()["x"]["mean"] - 1.0) < 0.5
        (True, (400,), True)
    """
    _check_key(key)
    _check_thresholds(max_r_hat, min_ess)
    _check_flag(warn, "warn")
    mcmc = _make_mcmc(
        model, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method=chain_method, target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth, dense_mass=dense_mass,
        forward_mode_differentiation=forward_mode_differentiation,
        init_strategy=init_strategy, progress_bar=progress_bar,
    )
    if init_params is not None or check_sites is not None:  # site names need one trace
        trace = _model_trace(model, model_args, model_kwargs)
        if init_params is not None:
            init_params = _check_init_params(init_params, trace, mcmc.num_chains)
        if check_sites is not None:
            valid = tuple(k for k, v in trace.items() if v["type"] == "deterministic")
            check_sites = _check_site_names(check_sites, _latent(trace) + valid, "check_sites")
    return _sample(
        mcmc, key, model_args, model_kwargs, init_params=init_params, model=model,
        check_sites=check_sites, max_r_hat=max_r_hat, min_ess=min_ess, warn=warn,
    )


def _check_sizes(num_warmup: Any, num_samples: Any, num_chains: Any) -> tuple[int, int, int]:
    """The sizes of a NUTS run: warm-up >= 0, draws >= 4 (split R-hat), chains >= 1."""
    return (_check_positive_int(num_warmup, "num_warmup", 0),
            _check_positive_int(num_samples, "num_samples", 4),
            _check_positive_int(num_chains, "num_chains"))


def _make_mcmc(model, *, num_warmup, num_samples, num_chains, chain_method,
               target_accept_prob, max_tree_depth, dense_mass, forward_mode_differentiation,
               init_strategy, progress_bar, jit_model_args=False) -> MCMC:
    """Validated numpyro NUTS + MCMC objects (nothing is compiled yet)."""
    if not callable(model):
        raise TypeError(f"`model` must be a numpyro model function; got {type(model)}.")
    num_warmup, num_samples, num_chains = _check_sizes(num_warmup, num_samples, num_chains)
    _check_choice(chain_method, _CHAIN_METHODS, "chain_method")
    if init_strategy is not None and not callable(init_strategy):
        raise TypeError(f"`init_strategy` must be a numpyro init strategy (callable); got "
                        f"{init_strategy!r}.")
    kernel = NUTS(
        model,
        target_accept_prob=_check_prob(target_accept_prob, "target_accept_prob"),
        max_tree_depth=_check_positive_int(max_tree_depth, "max_tree_depth"),
        dense_mass=_check_flag(dense_mass, "dense_mass"),
        forward_mode_differentiation=_check_flag(forward_mode_differentiation,
                                                 "forward_mode_differentiation"),
        init_strategy=init_to_median if init_strategy is None else init_strategy,
    )
    with warnings.catch_warnings():
        # numpyro warns when fewer devices than chains exist for "parallel"; it then draws
        # the chains sequentially, which is the sensible fallback on one CPU.
        warnings.filterwarnings("ignore", message="There are not enough devices")
        return MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, chain_method=chain_method,
                    progress_bar=progress_bar, jit_model_args=jit_model_args)


def _sample(mcmc: MCMC, key, run_args, run_kwargs, *, init_params=None, model, model_args=None,
            model_kwargs=None, check_sites=None, max_r_hat=1.05, min_ess=100.0,
            warn=True) -> MCMCResult:
    """Run ``mcmc`` and collect draws and diagnostics into an :class:`MCMCResult`.

    ``model``/``model_args``/``model_kwargs`` are recorded for :func:`posterior_predictive`
    (default: the run's own arguments).
    """
    t0 = time.perf_counter()
    mcmc.run(key, *run_args, init_params=init_params, extra_fields=_EXTRA_FIELDS,
             **run_kwargs)
    by_chain = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - t0
    chains, draws = mcmc.num_chains, mcmc.num_samples
    latent = tuple(k for k in by_chain if k in mcmc.last_state.z)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    diverging = np.asarray(extra["diverging"]).reshape(chains, draws)
    summary, problems = mcmc_diagnostics(
        by_chain, diverging, sites=latent if check_sites is None else tuple(check_sites),
        max_r_hat=max_r_hat, min_ess=min_ess,
    )
    if problems and warn:
        warnings.warn(
            "NUTS diagnostics failed (" + "; ".join(problems) + "). Run longer chains, "
            "reparameterise or raise target_accept_prob.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return MCMCResult(
        samples={k: v.reshape(-1, *v.shape[2:]) for k, v in by_chain.items()},
        samples_by_chain=by_chain,
        latent_sites=latent,
        summary=summary,
        diverging=diverging,
        num_divergences=int(diverging.sum()),
        num_steps=np.asarray(extra["num_steps"]).reshape(chains, draws),
        ok=not problems,
        problems=problems,
        num_chains=chains,
        num_warmup=mcmc.num_warmup,
        num_samples=draws,
        wall_time_s=wall,
        model=model,
        model_args=tuple(run_args) if model_args is None else tuple(model_args),
        model_kwargs=dict(run_kwargs) if model_kwargs is None else dict(model_kwargs),
        mcmc=mcmc,
        sample_stats={k: np.asarray(extra[k]).reshape(chains, draws)
                      for k in ("potential_energy", "energy", "accept_prob")},
    )


def _make_guide(model, guide, init_loc_fn, rank):
    if isinstance(guide, autoguide.AutoGuide):
        return guide
    if not isinstance(guide, str) or guide not in _GUIDES:
        raise ValueError(
            f"`guide` must be one of {_GUIDES} or a numpyro AutoGuide; got {guide!r}"
            f"{_suggest(guide, _GUIDES)}."
        )
    if guide == "normal":
        return autoguide.AutoNormal(model, init_loc_fn=init_loc_fn, init_scale=0.01)
    return autoguide.AutoLowRankMultivariateNormal(
        model, init_loc_fn=init_loc_fn, init_scale=0.01, rank=rank
    )


def _check_svi_options(guide: Any, num_steps: Any, num_samples: Any,
                       learning_rate: Any) -> None:
    """The options the ``fit_*`` helpers pass to :func:`run_svi`, checked before they compile
    anything of their own (a network's initialisation)."""
    if not isinstance(guide, autoguide.AutoGuide):
        _check_choice(guide, _GUIDES, "guide")
    _check_positive_int(num_steps, "num_steps")
    _check_positive_int(num_samples, "num_samples")
    _check_real(learning_rate, "learning_rate", positive=True)


def run_svi(
    model: Callable[..., Any],
    key: jax.Array,
    *model_args: Any,
    guide: str | autoguide.AutoGuide = "normal",
    num_steps: int = 2000,
    learning_rate: float = 1e-2,
    num_samples: int = 1000,
    num_particles: int = 1,
    rank: int | None = None,
    init_strategy: Callable[..., Any] | None = None,
    **model_kwargs: Any,
) -> SVIResult:
    r"""Fit a numpyro model by stochastic variational inference with an autoguide.

    Maximises the ELBO :math:`\mathbb E_q[\log p(y, z) - \log q(z)]` with Adam (optax,
    gradients clipped to global norm 10) over ``num_steps`` steps run in one compiled loop
    (``SVI.run`` with ``stable_update=True``: a step with a non-finite loss or update is
    skipped), then draws ``num_samples`` posterior samples from the guide (and the model's
    deterministic sites through :class:`~numpyro.infer.Predictive`). The losses are checked
    after the loop: if the last one is not finite the fit has broken down and
    :class:`~epinn.training.NonFiniteLossError` is raised.

    Args:
        model: a numpyro model function.
        key: PRNG key (split for the fit and the draws).
        *model_args: positional arguments of ``model``.
        guide: ``"normal"`` (:class:`~numpyro.infer.autoguide.AutoNormal`, mean field),
            ``"lowrank"`` (:class:`~numpyro.infer.autoguide.AutoLowRankMultivariateNormal`)
            or an AutoGuide instance.
        num_steps: optimisation steps.
        learning_rate: Adam learning rate.
        num_samples: posterior draws returned.
        num_particles: Monte Carlo samples per ELBO estimate.
        rank: rank of the low-rank guide, an int >= 1 (default numpyro's, about the square
            root of the number of latent dimensions); only with ``guide="lowrank"``.
        init_strategy: initial guide locations; default ``init_to_median``.
        **model_kwargs: keyword arguments of ``model``.

    Returns:
        :class:`SVIResult`.

    Raises:
        ValueError: bad options (e.g. ``rank`` < 1 or given without the low-rank guide).
        TypeError: a non-callable model or a bad key.
        NonFiniteLossError: (a ``FloatingPointError``) the ELBO loss was still NaN or
            infinite at the last step; the message names the step where it became so.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> def model(y):
        ...     m = numpyro.sample("m", dist.Normal(0.0, 10.0))
        ...     numpyro.sample("y", dist.Normal(m, 1.0), obs=y)
        >>> fit = run_svi(model, jr.PRNGKey(0), jnp.array([2.0]), num_steps=2000,
        ...               learning_rate=0.02, num_samples=2000)
        >>> m = fit.samples["m"]  # the exact posterior is N(1.98, 0.995^2)
        >>> abs(float(m.mean()) - 1.98) < 0.15, abs(float(m.std()) - 0.995) < 0.1
        (True, True)
    """
    if not callable(model):
        raise TypeError(f"`model` must be a numpyro model function; got {type(model)}.")
    _check_key(key)
    num_steps = _check_positive_int(num_steps, "num_steps")
    num_samples = _check_positive_int(num_samples, "num_samples")
    num_particles = _check_positive_int(num_particles, "num_particles")
    _check_real(learning_rate, "learning_rate", positive=True)
    if rank is not None:
        if guide != "lowrank":
            raise ValueError(f"`rank` is only used with guide='lowrank'; got guide={guide!r}.")
        rank = _check_positive_int(rank, "rank")
    if init_strategy is not None and not callable(init_strategy):
        raise TypeError(f"`init_strategy` must be a numpyro init strategy (callable); got "
                        f"{init_strategy!r}.")
    init_loc_fn = init_to_median if init_strategy is None else init_strategy
    g = _make_guide(model, guide, init_loc_fn, rank)
    optimizer = numpyro.optim.optax_to_numpyro(
        optax.chain(optax.clip_by_global_norm(10.0), optax.adam(learning_rate))
    )
    svi = SVI(model, g, optimizer, Trace_ELBO(num_particles=num_particles))
    fit_key, draw_key, det_key = jr.split(key, 3)
    t0 = time.perf_counter()
    res = svi.run(fit_key, num_steps, *model_args, progress_bar=False, stable_update=True,
                  **model_kwargs)
    losses = np.asarray(jax.block_until_ready(res.losses))
    wall = time.perf_counter() - t0
    _check_final_loss(losses)
    latent, det = _model_sites(model, model_args, model_kwargs)
    draws = g.sample_posterior(draw_key, res.params, sample_shape=(num_samples,))
    draws = {k: v for k, v in draws.items() if k in latent}
    if det:
        extra = Predictive(model, posterior_samples=draws, return_sites=list(det))(
            det_key, *model_args, **model_kwargs
        )
        draws = {**draws, **extra}
    return SVIResult(
        samples=draws,
        latent_sites=latent,
        params=res.params,
        losses=losses,
        guide=g,
        wall_time_s=wall,
        model=model,
        model_args=model_args,
        model_kwargs=dict(model_kwargs),
    )


def _check_final_loss(losses: np.ndarray) -> None:
    """Raise :class:`~epinn.training.NonFiniteLossError` when the run ends non-finite.

    ``SVI.run(..., stable_update=True)`` skips a step whose loss or update is not finite,
    so an isolated infinite loss (e.g. a failed ODE solve at one guide draw) is harmless;
    a loss that stays non-finite up to the last step means the guide itself broke down.
    The error names the step (1-based) from which the loss stayed non-finite.
    """
    bad = ~np.isfinite(losses)
    if not bad[-1]:
        return
    finite = np.flatnonzero(~bad)
    step = int(finite[-1]) + 2 if finite.size else 1
    history = History(train_loss=[float(v) for v in losses[: step - 1]],
                      stop_reason="non-finite loss")
    raise NonFiniteLossError(
        f"The ELBO loss became {losses[step - 1]} at step {step} of {losses.size} and stayed "
        "non-finite to the end; try a smaller `learning_rate`, or check the model and data "
        "(the error's `history` holds the losses before).",
        epoch=step,
        history=history,
    )
