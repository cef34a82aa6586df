r"""Bayesian inference with numpyro: Bayesian neural networks and Bayesian epidemic models.

Every Bayesian model here is a plain numpyro model function with named sample sites, so
numpyro's samplers, autoguides and :class:`numpyro.infer.Predictive` apply unchanged. Thin
runners add what the course needs on top: several chains at once, convergence diagnostics
that warn loudly, posterior predictive draws and credible intervals.

**Bayesian neural network** (:func:`bnn_model`). The weights :math:`w` of epinn's Flax
:class:`~epinn.models.MLP` get a Gaussian prior through
:func:`numpyro.contrib.module.random_flax_module`,

.. math::

    w_j \sim \mathcal N(0, s^2), \qquad
    y_i \mid x_i, w, \sigma \sim \mathcal N\big(f_w(x_i), \sigma(x_i)^2\big),

with a fixed prior scale :math:`s` or a hierarchical one (:math:`s \sim
\text{HalfNormal}`, non-centred with :class:`~numpyro.infer.reparam.LocScaleReparam`), and a
learned noise: one :math:`\sigma \sim \text{HalfNormal}` or, heteroscedastic, a second
network output :math:`\sigma(x) = \operatorname{softplus}(f_w(x)_2)`.

**Bayesian epidemic model** (:func:`epidemic_model`). Priors on the rates of any model from
:mod:`epinn.compartmental` (and optionally on initial compartments, a reporting fraction
:math:`\rho` and the negative-binomial overdispersion), the ODE solved inside the model by
:func:`epinn.compartmental.solve`, and a count likelihood

.. math::

    y_i \sim \text{NegBin}\big(\mu_i,\ \phi\big) \ \text{or}\ \text{Poisson}(\mu_i), \qquad
    \mu_i = \rho\, h\big(x(t_i; \beta, \gamma, \ldots)\big), \qquad
    \operatorname{Var} y_i = \mu_i + \mu_i^2/\phi,

where :math:`h` picks a compartment (prevalence), the incidence or cumulative infections.
Solver failures during warm-up are data, not crashes: the solve runs with ``throw=False`` and
a failed solve adds :math:`-\infty` to the log density, so the sampler rejects that point.
:func:`neural_beta_model` replaces the constant :math:`\beta` by a Bayesian network
:math:`\beta(t) = \operatorname{softplus}(f_w(t/t_s))` with Gaussian weight priors; fit it
with SVI (:func:`fit_bayesian_neural_beta`) for a credible band of the transmission rate.

**Speed.** NUTS needs the gradient of the log density. With a handful of parameters
entering the ODE, forward-mode differentiation (numpyro's
``forward_mode_differentiation=True`` with diffrax's :class:`~diffrax.ForwardMode`) costs
little more than one solve carrying a few tangents and avoids the checkpointed backward
pass. On the boarding-school model (4 chains x 2000 iterations, 2 shared CPU cores) a whole
cold run took 86 s in reverse mode, 39 s in forward mode and 36 s in forward mode at the
default tolerances below, most of it compilation (``benchmarks/bench_bayes.py``).
:func:`fit_epidemic` uses forward mode by default; the neural :math:`\beta(t)` (hundreds of
weights) uses reverse mode.

The ODE tolerances default to ``rtol=1e-5, atol=1e-7`` (on population fractions): on the
boarding-school outbreak the prevalence then differs from a 1e-12 reference solve by at
most 0.0025 people (3e-5 relative), four orders of magnitude below the count noise, and
the solve takes about 30% fewer steps than at ``rtol=1e-6``.

Diagnostics use :func:`numpyro.diagnostics.split_gelman_rubin` (classic split
:math:`\hat R`, not the rank-normalised version of Vehtari et al.) and
:func:`numpyro.diagnostics.effective_sample_size`; the thresholds follow Vehtari et al.
Intervals are equal-tailed quantiles (as in Stan's tables), not HPD intervals.

References:
    Grinsztajn, Semenova, Margossian, Riou (2021). Bayesian workflow for disease
    transmission modeling in Stan. *Statistics in Medicine* 40(27), 6209-6234.

    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization, folding, and
    localization: an improved R-hat for assessing convergence of MCMC. *Bayesian
    Analysis* 16(2), 667-718.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jaxtyping import Array, ArrayLike
from numpyro.contrib.module import random_flax_module
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, autoguide
from numpyro.infer.initialization import init_to_median
from numpyro.infer.reparam import LocScaleReparam
from numpyro.infer.util import initialize_model

from .._checks import _check_key
from ..compartmental import R0 as _R0
from ..compartmental import SIR, CompartmentalModel, NetworkRate, solve
from ..estimation import ConvergenceWarning
from ..observation import observe
from ..training import History, NonFiniteLossError

__all__ = [
    "MCMCResult",
    "SVIResult",
    "run_nuts",
    "run_svi",
    "mcmc_diagnostics",
    "prior_predictive",
    "posterior_predictive",
    "credible_interval",
    "predictive_coverage",
    "bnn_model",
    "fit_bnn",
    "default_priors",
    "epidemic_model",
    "fit_epidemic",
    "neural_beta_model",
    "fit_bayesian_neural_beta",
    "bayesian_boarding_school",
]

_CHAIN_METHODS = ("vectorized", "sequential", "parallel")
_LIKELIHOODS = ("negbin", "poisson")
_GUIDES = ("normal", "lowrank")
_REPARAMS = ("noncentred",)
_EXTRA_FIELDS = ("diverging", "num_steps", "potential_energy", "energy", "accept_prob")
# Floor for the expected count (a compartment can be ~0 or, from round-off, slightly
# negative); far below any count that matters, it only keeps the likelihood finite.
_MEAN_FLOOR = 1e-6


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MCMCResult:
    """Posterior draws from :func:`run_nuts` with their diagnostics.

    Attributes:
        samples: every latent and deterministic site, chains concatenated:
            shape ``(num_chains * num_samples, ...)``.
        samples_by_chain: the same, shape ``(num_chains, num_samples, ...)``.
        latent_sites: names of the sampled (latent) sites.
        summary: per site ``{"mean", "std", "median", "lo", "hi", "r_hat", "ess"}`` (equal
            tailed 95% interval ``lo``-``hi``; arrays for non-scalar sites).
        diverging: divergent transitions, shape ``(num_chains, num_samples)``.
        num_divergences: their total.
        num_steps: leapfrog steps per draw, ``(num_chains, num_samples)``.
        ok: ``True`` when every checked site has R-hat below the threshold, ESS above it
            and there was no divergence.
        problems: human-readable reasons when ``ok`` is ``False``.
        num_chains, num_warmup, num_samples: the run's sizes.
        wall_time_s: wall-clock time of the run (compilation included).
        model, model_args, model_kwargs: what was sampled (for :func:`posterior_predictive`).
        mcmc: the numpyro :class:`~numpyro.infer.MCMC` object.
        sample_stats: per-draw sampler statistics ``(num_chains, num_samples)``:
            ``"potential_energy"`` (minus the log density), ``"energy"`` (the Hamiltonian)
            and ``"accept_prob"``.

    Read it with :meth:`print_summary` (a numpyro-style table of every latent site and
    derived quantity, e.g. :math:`R_0` and the recovery time), :meth:`table` (a dict) or
    :meth:`to_arviz` (an ArviZ ``InferenceData``).
    """

    samples: dict[str, Array]
    samples_by_chain: dict[str, Array]
    latent_sites: tuple[str, ...]
    summary: dict[str, dict[str, Any]]
    diverging: np.ndarray
    num_divergences: int
    num_steps: np.ndarray
    ok: bool
    problems: tuple[str, ...]
    num_chains: int
    num_warmup: int
    num_samples: int
    wall_time_s: float
    model: Callable[..., Any] = dataclasses.field(repr=False)
    model_args: tuple = dataclasses.field(repr=False, default=())
    model_kwargs: dict[str, Any] = dataclasses.field(repr=False, default_factory=dict)
    mcmc: Any = dataclasses.field(repr=False, default=None)
    sample_stats: dict[str, np.ndarray] = dataclasses.field(repr=False, default_factory=dict)

    def table(self, names: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
        """JSON-friendly ``{name: {"mean", "lo", "hi", "r_hat", "ess"}}`` for scalar sites.

        Args:
            names: sites to include; default every scalar site.

        Raises:
            ValueError: an unknown or non-scalar site name.
            TypeError: ``names`` is a string or not iterable.
        """
        if names is not None and (isinstance(names, str) or not hasattr(names, "__iter__")):
            raise TypeError(f"`names` must be a tuple of site names; got {names!r}.")
        names = tuple(k for k, v in self.summary.items() if np.ndim(v["mean"]) == 0) \
            if names is None else tuple(names)
        out = {}
        for name in names:
            if name not in self.summary or np.ndim(self.summary[name]["mean"]) != 0:
                scalar = [k for k, v in self.summary.items() if np.ndim(v["mean"]) == 0]
                raise ValueError(f"`names` entry {name!r} is not a scalar site of the posterior"
                                 f"{_suggest(name, scalar)}; scalar sites: {tuple(scalar)}.")
            s = self.summary[name]
            out[name] = {k: float(s[k]) for k in ("mean", "lo", "hi", "r_hat", "ess")}
        return out

    def _default_summary_sites(self) -> tuple[str, ...]:
        """Latent sites, then scalar numeric deterministic sites (R0, recovery_time, ...)."""
        derived = tuple(
            k for k, v in self.samples.items()
            if k not in self.latent_sites and jnp.ndim(v) == 1
            and jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
        )
        return self.latent_sites + derived

    def summary_text(self, names: tuple[str, ...] | None = None, *, prob: float = 0.95) -> str:
        """The table of :meth:`print_summary` as a string."""
        prob = _check_prob(prob)
        names = (self._default_summary_sites() if names is None
                 else _check_site_names(names, tuple(self.samples), "names"))
        pct = (f"{50 * (1 - prob):g}%", f"{50 * (1 + prob):g}%")
        head = ("", "mean", "std", "median", *pct, "n_eff", "r_hat")
        rows = []
        for name in names:
            x = np.asarray(self.samples[name], dtype=np.float64)
            lo, med, hi = np.quantile(x, (0.5 * (1 - prob), 0.5, 0.5 * (1 + prob)), axis=0)
            stats = {"mean": x.mean(0), "std": x.std(0), "median": med, "lo": lo, "hi": hi,
                     "ess": self.summary[name]["ess"], "r_hat": self.summary[name]["r_hat"]}
            for idx in np.ndindex(np.shape(stats["mean"])):
                label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
                rows.append((label, *(float(np.asarray(stats[k])[idx]) for k in
                                      ("mean", "std", "median", "lo", "hi", "ess", "r_hat"))))
        width = max([len(r[0]) for r in rows] + [4])
        lines = [f"{head[0]:>{width}}" + "".join(f"{h:>10}" for h in head[1:])]
        lines += [f"{r[0]:>{width}}" + "".join(f" {_cell(v):>9}" for v in r[1:]) for r in rows]
        lines.append("")
        lines.append(f"Number of divergences: {self.num_divergences}")
        return "\n".join(lines)

    def print_summary(self, names: tuple[str, ...] | None = None, *, prob: float = 0.95,
                      file: Any = None) -> None:
        r"""Print a numpyro-style posterior table: one row per site (or site element).

        Columns: mean, standard deviation, median, the equal-tailed ``prob`` interval, the
        effective sample size and split :math:`\hat R` (as :meth:`table`), then the number
        of divergent transitions. By default the rows are the latent sites followed by the
        scalar derived quantities (for :func:`fit_epidemic`: ``R0``, ``recovery_time``
        :math:`1/\gamma` and ``phi``). Vector sites get one row per element,
        ``name[i]``.

        Args:
            names: the sites to print (latent or deterministic), in this order.
            prob: probability mass of the interval.
            file: where to print (default ``sys.stdout``).

        Raises:
            ValueError: an unknown site name or ``prob`` outside (0, 1).
            TypeError: ``names`` is a string or not iterable.

        Examples:
            >>> def model():
            ...     x = numpyro.sample("x", dist.Normal(1.0, 2.0))
            ...     numpyro.deterministic("twice", 2.0 * x)
            >>> fit = run_nuts(model, jr.PRNGKey(0), num_warmup=200, num_samples=200,
            ...                num_chains=2, min_ess=50)
            >>> fit.print_summary()  # doctest: +ELLIPSIS
                       mean       std    median      2.5%     97.5%     n_eff     r_hat
                x      ...
            twice      ...
            <BLANKLINE>
            Number of divergences: 0
        """
        print(self.summary_text(names, prob=prob), file=file)

    def to_arviz(self, key: jax.Array | None = None, *, posterior_predictive: bool = True,
                 log_likelihood: bool = True) -> Any:
        """The draws as an ArviZ ``InferenceData`` (needs ``pip install epinn[arviz]``).

        Groups: ``posterior`` (every latent and deterministic site, dims ``(chain,
        draw, ...)``, the same values as :attr:`samples_by_chain`), ``sample_stats``
        (``diverging``, ``n_steps``, ``lp`` = minus the potential energy,
        ``acceptance_rate``, ``energy``), ``observed_data`` (the observed sites, e.g.
        ``"obs"``), ``posterior_predictive`` (the observed sites simulated once at every
        draw, with the fit's own inputs) and ``log_likelihood`` (pointwise, for
        ``az.loo``/``az.waic``). This builds the groups from the result itself rather than
        from ``az.from_numpyro(result.mcmc)``, so it is also right for each result of a
        batched :func:`fit_epidemic` (which share one ``MCMC`` object).

        Args:
            key: PRNG key for the posterior predictive draws; default ``PRNGKey(0)``.
            posterior_predictive: include the ``posterior_predictive`` group.
            log_likelihood: include the ``log_likelihood`` group.

        Returns:
            ``arviz.InferenceData``.

        Raises:
            ImportError: ArviZ is not installed (the message says how to install it).
        """
        try:
            import arviz as az
        except ImportError:
            raise ImportError(
                "MCMCResult.to_arviz() needs ArviZ, which is an optional dependency: "
                "pip install epinn[arviz]  (or: pip install 'arviz<1' on Python 3.11)."
            ) from None
        key = jr.PRNGKey(0) if key is None else _check_key(key)
        _check_bool(posterior_predictive, "posterior_predictive")
        _check_bool(log_likelihood, "log_likelihood")
        shape = (self.num_chains, self.num_samples)
        groups: dict[str, Any] = {
            "posterior": {k: np.asarray(v) for k, v in self.samples_by_chain.items()},
            "sample_stats": _arviz_sample_stats(self),
        }
        trace = _model_trace(self.model, self.model_args, self.model_kwargs)
        observed = [k for k, v in trace.items() if v["type"] == "sample" and v["is_observed"]
                    and not isinstance(v["fn"], dist.Unit)]
        if observed:
            groups["observed_data"] = {k: np.asarray(trace[k]["value"]) for k in observed}
        latent = {k: self.samples[k] for k in self.latent_sites}
        if observed and posterior_predictive:
            sim = Predictive(numpyro.handlers.uncondition(self.model), posterior_samples=latent,
                             return_sites=observed)(key, *self.model_args, **self.model_kwargs)
            groups["posterior_predictive"] = {
                k: np.asarray(sim[k]).reshape(shape + np.shape(sim[k])[1:]) for k in observed}
        if observed and log_likelihood:
            ll = numpyro.infer.log_likelihood(self.model, latent, *self.model_args,
                                              **self.model_kwargs)
            groups["log_likelihood"] = {
                k: np.asarray(ll[k]).reshape(shape + np.shape(ll[k])[1:]) for k in observed}
        return az.from_dict(**groups)


def _cell(v: float) -> str:
    """A table number: two decimals, or three significant digits when that is too wide."""
    text = f"{v:.2f}"
    return text if len(text) <= 9 else f"{v:.3g}"


def _arviz_sample_stats(result: MCMCResult) -> dict[str, np.ndarray]:
    """``sample_stats`` under ArviZ's names (as ``az.from_numpyro`` uses them)."""
    out = {"diverging": np.asarray(result.diverging), "n_steps": np.asarray(result.num_steps)}
    names = {"potential_energy": "lp", "accept_prob": "acceptance_rate", "energy": "energy"}
    for k, v in result.sample_stats.items():
        out[names.get(k, k)] = -np.asarray(v) if k == "potential_energy" else np.asarray(v)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class SVIResult:
    """A variational fit from :func:`run_svi`.

    Attributes:
        samples: draws of every latent and deterministic site from the fitted guide, shape
            ``(num_samples, ...)``.
        latent_sites: names of the latent sites.
        params: the fitted variational parameters.
        losses: ELBO loss (negative ELBO) per step.
        guide: the numpyro autoguide.
        wall_time_s: wall-clock time of the optimisation (compilation included).
        model, model_args, model_kwargs: what was fitted (for :func:`posterior_predictive`).
    """

    samples: dict[str, Array]
    latent_sites: tuple[str, ...]
    params: dict[str, Array] = dataclasses.field(repr=False)
    losses: np.ndarray = dataclasses.field(repr=False)
    guide: Any = dataclasses.field(repr=False)
    wall_time_s: float = 0.0
    model: Callable[..., Any] = dataclasses.field(repr=False, default=None)
    model_args: tuple = dataclasses.field(repr=False, default=())
    model_kwargs: dict[str, Any] = dataclasses.field(repr=False, default_factory=dict)


# --------------------------------------------------------------------------------------
# Generic runners
# --------------------------------------------------------------------------------------


# int32 step counters: larger budgets overflow inside the solver's while loop.
_MAX_STEPS_LIMIT = 2**31 - 1


def _suggest(value: Any, valid: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    if not isinstance(value, str):
        return ""
    names = [str(v) for v in valid]
    same_case = [v for v in names if v.lower() == value.lower()]
    close = same_case or difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_choice(value: Any, valid: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``valid``; else a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"`{name}` must be one of {valid}; got {value!r}{_suggest(value, valid)}."
        )
    return value


def _check_positive_int(value: Any, name: str, minimum: int = 1,
                        maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be an int <= {maximum}; got {value!r}.")
    return int(value)


def _is_real(value: Any) -> bool:
    """A plain real number (Python or NumPy scalar, or a 0-d array), not a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0
            and not isinstance(value, jax.core.Tracer)
            and np.issubdtype(np.asarray(value).dtype, np.number)
            and not np.issubdtype(np.asarray(value).dtype, np.bool_))


def _check_real(value: Any, name: str, *, positive: bool = False,
                nonnegative: bool = False) -> float:
    """``value`` as a finite float; else a ValueError naming ``name``."""
    what = "a positive" if positive else ("a non-negative" if nonnegative else "a")
    ok = _is_real(value) and math.isfinite(float(value))
    ok = ok and not (positive and float(value) <= 0) and not (nonnegative and float(value) < 0)
    if not ok:
        raise ValueError(f"`{name}` must be {what} finite number; got {value!r}.")
    return float(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r}.")
    return bool(value)


def _check_prob(prob: Any, name: str = "prob") -> float:
    if not _is_real(prob) or not 0.0 < float(prob) < 1.0:
        raise ValueError(f"`{name}` must be a number in (0, 1); got {prob!r}.")
    return float(prob)


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value, float64)`` with a ValueError naming ``name`` on failure."""
    if value is None:
        raise ValueError(f"`{name}` must be an array of numbers; got None.")
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be an array of numbers; got {value!r} ({err}).") \
            from None
    return out


def _check_thresholds(max_r_hat: Any, min_ess: Any) -> None:
    if not (_is_real(max_r_hat) and float(max_r_hat) >= 1.0):
        raise ValueError(f"`max_r_hat` must be a number >= 1; got {max_r_hat!r}.")
    _check_real(min_ess, "min_ess", nonnegative=True)


def _check_solver_options(rtol: Any, atol: Any, max_steps: Any, solver: Any = None) -> None:
    """ODE options of the epidemic models, checked in plain Python (before any tracing)."""
    _check_real(rtol, "rtol", positive=True)
    _check_real(atol, "atol", positive=True)
    _check_positive_int(max_steps, "max_steps", 1, _MAX_STEPS_LIMIT)
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(
            f"`solver` must be a diffrax solver such as diffrax.Tsit5() or None; got {solver!r}."
        )


def _model_trace(model, args, kwargs) -> dict[str, Any]:
    """One seeded trace of ``model`` (plain Python; the model runs once, eagerly)."""
    return numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(
        *args, **kwargs
    )


def _latent(trace: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(k for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"])


def _model_sites(model, args, kwargs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(latent sample sites, deterministic sites) of one seeded trace of ``model``."""
    tr = _model_trace(model, args, kwargs)
    det = tuple(k for k, s in tr.items() if s["type"] == "deterministic")
    return _latent(tr), det


def _check_site_names(names: Any, valid: tuple[str, ...], argname: str) -> tuple[str, ...]:
    """``names`` as a tuple, every entry one of ``valid``; else a ValueError naming ``argname``."""
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"`{argname}` must be a tuple of site names; got {names!r}.")
    names = tuple(names)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"`{argname}` has unknown sites {unknown}{_suggest(unknown[0], valid)}; "
                         f"valid sites: {valid}.")
    return names


def _check_init_params(init_params: Any, trace: Mapping[str, Any], num_chains: int
                       ) -> dict[str, Array]:
    """Validate ``{latent site: (num_chains, *unconstrained shape)}`` initial values.

    Returns them as numpyro's ``MCMC.run`` expects: with a leading chain axis for several
    chains and without one for a single chain (where a site's own shape is accepted too).
    """
    if not isinstance(init_params, Mapping):
        raise TypeError(
            f"`init_params` must be a mapping {{site: array}}; got {type(init_params).__name__}."
        )
    latent = _latent(trace)
    unknown = [k for k in init_params if k not in latent]
    missing = [k for k in latent if k not in init_params]
    if unknown or missing:
        raise ValueError(
            f"`init_params` must give exactly the latent sites {latent}; unknown "
            f"{unknown}, missing {missing}."
        )
    out = {}
    for name in latent:
        site = trace[name]
        shape = tuple(biject_to(site["fn"].support).inverse_shape(jnp.shape(site["value"])))
        value = jnp.asarray(init_params[name])
        if value.shape == (num_chains, *shape):
            value = value[0] if num_chains == 1 else value
        elif not (num_chains == 1 and value.shape == shape):
            raise ValueError(
                f"`init_params[{name!r}]` must have shape {(num_chains, *shape)} "
                f"(num_chains, unconstrained site shape); got {value.shape}."
            )
        if _is_concrete(value) and not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"`init_params[{name!r}]` contains NaN or inf.")
        out[name] = value
    return out


def _predictive_sites(model, args, kwargs) -> list[str]:
    """Sample and deterministic sites, without ``numpyro.factor`` terms."""
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(
        *args, **kwargs
    )
    return [k for k, s in tr.items()
            if s["type"] == "deterministic"
            or (s["type"] == "sample" and not isinstance(s["fn"], dist.Unit))]


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
    :class:`~epinn.estimation.ConvergenceWarning`.

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
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(1.0, 2.0))
        >>> fit = run_nuts(model, jr.PRNGKey(0), num_warmup=200, num_samples=200,
        ...                num_chains=2, min_ess=50)
        >>> fit.ok, fit.samples["x"].shape, abs(fit.table()["x"]["mean"] - 1.0) < 0.5
        (True, (400,), True)
    """
    _check_key(key)
    _check_thresholds(max_r_hat, min_ess)
    _check_bool(warn, "warn")
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


def _make_mcmc(model, *, num_warmup, num_samples, num_chains, chain_method,
               target_accept_prob, max_tree_depth, dense_mass, forward_mode_differentiation,
               init_strategy, progress_bar, jit_model_args=False) -> MCMC:
    """Validated numpyro NUTS + MCMC objects (nothing is compiled yet)."""
    if not callable(model):
        raise TypeError(f"`model` must be a numpyro model function; got {type(model)}.")
    num_warmup = _check_positive_int(num_warmup, "num_warmup", 0)
    num_samples = _check_positive_int(num_samples, "num_samples", 4)
    num_chains = _check_positive_int(num_chains, "num_chains")
    _check_choice(chain_method, _CHAIN_METHODS, "chain_method")
    if init_strategy is not None and not callable(init_strategy):
        raise TypeError(f"`init_strategy` must be a numpyro init strategy (callable); got "
                        f"{init_strategy!r}.")
    kernel = NUTS(
        model,
        target_accept_prob=_check_prob(target_accept_prob, "target_accept_prob"),
        max_tree_depth=_check_positive_int(max_tree_depth, "max_tree_depth"),
        dense_mass=_check_bool(dense_mass, "dense_mass"),
        forward_mode_differentiation=_check_bool(forward_mode_differentiation,
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


def prior_predictive(
    model: Callable[..., Any], key: jax.Array, num_samples: int, *model_args: Any,
    **model_kwargs: Any,
) -> dict[str, Array]:
    """Draws of every site of ``model`` under the prior (:class:`~numpyro.infer.Predictive`).

    Pass ``None`` (or omit) the observed data so the observation sites are simulated.

    Args:
        model: a numpyro model function.
        key: PRNG key.
        num_samples: number of draws.
        model_args, model_kwargs: positional and keyword arguments of ``model``.

    Returns:
        ``{site: array (num_samples, ...)}``.

    Examples:
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0))
        >>> prior_predictive(model, jr.PRNGKey(0), 3)["x"].shape
        (3,)
    """
    if not callable(model):
        raise TypeError(f"`model` must be a numpyro model function; got {type(model)}.")
    _check_key(key)
    n = _check_positive_int(num_samples, "num_samples")
    sites = _predictive_sites(model, model_args, model_kwargs)
    return dict(Predictive(model, num_samples=n, return_sites=sites)(
        key, *model_args, **model_kwargs))


def posterior_predictive(
    result: MCMCResult | SVIResult,
    key: jax.Array,
    *model_args: Any,
    num_samples: int | None = None,
    **model_kwargs: Any,
) -> dict[str, Array]:
    """Posterior predictive draws: the model re-run at each posterior draw.

    Uses :class:`~numpyro.infer.Predictive` with the latent draws of ``result``;
    deterministic sites are recomputed and observation sites simulated (pass new inputs
    without observed data, e.g. ``posterior_predictive(fit, key, x_new)``).

    Args:
        result: a fit from :func:`run_nuts`, :func:`run_svi` or the ``fit_*`` helpers.
        key: PRNG key.
        *model_args: positional arguments for the model, without the observed data (the
            fit's own arguments are not reused: they contain the data).
        num_samples: use only the first this many draws (default all).
        **model_kwargs: keyword arguments overriding those of the fit.

    Returns:
        ``{site: array (draws, ...)}`` for every sample and deterministic site.

    Raises:
        TypeError: ``result`` is not a fit.
    """
    if not isinstance(result, (MCMCResult, SVIResult)):
        raise TypeError(f"`result` must be an MCMCResult or SVIResult; got {type(result)}.")
    _check_key(key)
    draws = {k: result.samples[k] for k in result.latent_sites}
    if num_samples is not None:
        n = _check_positive_int(num_samples, "num_samples")
        draws = {k: v[:n] for k, v in draws.items()}
    kwargs = {**result.model_kwargs, **model_kwargs}
    sites = _predictive_sites(result.model, model_args, kwargs)
    return dict(Predictive(result.model, posterior_samples=draws, return_sites=sites)(
        key, *model_args, **kwargs))


def credible_interval(
    draws: ArrayLike, prob: float = 0.9, axis: int = 0
) -> tuple[Array, Array, Array]:
    r"""Mean and equal-tailed credible interval of draws.

    The interval is :math:`[q_{(1-p)/2},\ q_{(1+p)/2}]` of the draws along ``axis``.

    Args:
        draws: samples, drawn along ``axis``.
        prob: probability mass :math:`p` of the interval.
        axis: the draws axis.

    Returns:
        ``(mean, lo, hi)``.

    Examples:
        >>> mean, lo, hi = credible_interval(jnp.arange(101.0), prob=0.9)
        >>> float(mean), float(lo), float(hi)
        (50.0, 5.0, 95.0)
    """
    prob = _check_prob(prob)
    x = draws if isinstance(draws, jax.Array) else _as_float_array(draws, "draws")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ValueError(f"`axis` must be an int indexing `draws` of shape {x.shape}; got "
                         f"{axis!r}.")
    if x.ndim == 0 or x.shape[axis] < 2:
        raise ValueError(f"`draws` needs at least 2 draws along axis {axis}; got {x.shape}.")
    x = jnp.asarray(x)
    lo, hi = jnp.quantile(x, jnp.array([0.5 * (1 - prob), 0.5 * (1 + prob)]), axis=axis)
    return jnp.mean(x, axis=axis), lo, hi


def predictive_coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Fraction of the values ``y`` inside ``[lo, hi]`` (empirical coverage).

    Examples:
        >>> predictive_coverage(jnp.array([0.0, 1.0, 5.0]), jnp.zeros(3), jnp.full(3, 2.0))
        0.6666666666666666
    """
    y, lo, hi = (_as_float_array(a, n) for a, n in ((y, "y"), (lo, "lo"), (hi, "hi")))
    if y.size == 0:
        raise ValueError("`y` must not be empty.")
    for name, a in (("lo", lo), ("hi", hi)):
        try:
            np.broadcast_shapes(y.shape, a.shape)
        except ValueError:
            raise ValueError(f"`{name}` of shape {a.shape} does not match `y` of shape "
                             f"{y.shape}.") from None
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` contains NaN or inf.")
    return float(np.mean((y >= lo) & (y <= hi)))


# --------------------------------------------------------------------------------------
# Bayesian neural network
# --------------------------------------------------------------------------------------


def _regression_array(value: Any, name: str) -> Any:
    """A tracer as is; anything else as a NumPy array (checked without compiling)."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, jax.Array):
        return np.asarray(value)
    return _as_float_array(value, name)


def _check_regression_data(x: Any, y: Any) -> tuple[Any, Any]:
    """``(x (n, features), y (n,) or None)``, checked; NumPy arrays (or tracers as given)."""
    xa = _regression_array(x, "x")
    if xa.ndim == 1:
        xa = xa.reshape(-1, 1)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise ValueError(f"`x` must have shape (n, features) with n >= 1; got {np.shape(x)}.")
    if isinstance(xa, np.ndarray) and not np.all(np.isfinite(xa)):
        raise ValueError("`x` contains NaN or inf.")
    if y is None:
        return xa, None
    ya = _regression_array(y, "y")
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya.reshape(-1)
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"`y` must have shape ({xa.shape[0]},) to match `x`; got {np.shape(y)}.")
    if isinstance(ya, np.ndarray) and not np.all(np.isfinite(ya)):
        raise ValueError("`y` contains NaN or inf.")
    return xa, ya


def _check_network(network: Any, outputs: int | None = None, what: str = "") -> None:
    """A Flax Linen module; with ``outputs``, one whose ``features`` (if any) end there."""
    if not isinstance(network, nn.Module):
        raise TypeError(
            "`network` must be a Flax Linen module such as epinn.MLP((16, 1), "
            f"activation='tanh'); got {type(network).__name__}."
        )
    features = getattr(network, "features", None)
    if outputs is not None and features is not None and features[-1] != outputs:
        raise ValueError(f"`network` must have {outputs} output(s) {what}; its features end "
                         f"in {features[-1]}.")


def _check_scale(value: Any, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not (_is_real(value) and math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")


def bnn_model(
    x: ArrayLike,
    y: ArrayLike | None = None,
    *,
    network: Any,
    prior_scale: float = 1.0,
    hierarchical: bool = False,
    heteroscedastic: bool = False,
    noise_scale: float = 1.0,
) -> None:
    r"""numpyro model of a Bayesian neural network for regression.

    .. math::

        w \sim \mathcal N(0, s^2 I), \qquad
        y_i \sim \mathcal N\big(f_w(x_i)_1,\ \sigma_i^2\big),

    with :math:`\sigma_i = \sigma \sim \text{HalfNormal}(\text{noise\_scale})` or, when
    ``heteroscedastic``, :math:`\sigma_i = \operatorname{softplus}(f_w(x_i)_2) + 10^{-6}`.
    With ``hierarchical=True`` the prior scale is itself unknown,
    :math:`s \sim \text{HalfNormal}(\text{prior\_scale})` (site ``"weight_scale"``), and the
    weights are non-centred (:class:`~numpyro.infer.reparam.LocScaleReparam`) so NUTS does
    not meet the funnel.

    Sites: the weights ``"net/<layer>.kernel"``/``"net/<layer>.bias"`` (via
    :func:`~numpyro.contrib.module.random_flax_module`), ``"sigma"`` (homoscedastic),
    deterministic ``"mean"`` :math:`f_w(x)_1` (and ``"noise"`` :math:`\sigma_i`), and the
    observations ``"obs"``.

    Args:
        x: inputs ``(n, features)`` (or ``(n,)`` for one feature).
        y: targets ``(n,)`` or ``None`` to simulate them.
        network: a Flax Linen module, normally :class:`~epinn.models.MLP`, with one output
            (two when ``heteroscedastic``).
        prior_scale: the weight prior's standard deviation :math:`s` (or the scale of its
            HalfNormal prior when hierarchical).
        hierarchical: learn the prior scale.
        heteroscedastic: learn an input-dependent noise from a second output.
        noise_scale: scale of the HalfNormal prior on :math:`\sigma`.

    Raises:
        ValueError: bad shapes, scales or number of network outputs.
    """
    xa, ya = _check_regression_data(x, y)
    _check_scale(prior_scale, "prior_scale")
    _check_scale(noise_scale, "noise_scale")
    _check_network(network)
    n_out = 2 if heteroscedastic else 1
    features = getattr(network, "features", None)
    if features is not None and features[-1] != n_out:
        raise ValueError(
            f"`network` must have {n_out} output(s) (heteroscedastic={heteroscedastic}); its "
            f"features end in {features[-1]}."
        )
    if hierarchical:
        scale = numpyro.sample("weight_scale", dist.HalfNormal(prior_scale))
        with numpyro.handlers.reparam(config=_non_centred_weights):
            net = random_flax_module("net", network, dist.Normal(0.0, scale),
                                     input_shape=(1, xa.shape[1]))
    else:
        net = random_flax_module("net", network, dist.Normal(0.0, prior_scale),
                                 input_shape=(1, xa.shape[1]))
    out = net(xa)
    if out.shape[-1] != n_out:
        raise ValueError(f"`network` must have {n_out} output(s); got {out.shape[-1]}.")
    mean = numpyro.deterministic("mean", out[:, 0])
    if heteroscedastic:
        sigma = numpyro.deterministic("noise", jax.nn.softplus(out[:, 1]) + 1e-6)
    else:
        sigma = numpyro.sample("sigma", dist.HalfNormal(noise_scale))
    with numpyro.plate("data", xa.shape[0]):
        numpyro.sample("obs", dist.Normal(mean, sigma), obs=ya)


def _non_centred_weights(site: dict) -> LocScaleReparam | None:
    """Reparameterise the weight sites ``net/...`` (not the ``_decentered`` ones it adds)."""
    name = site["name"]
    if name.startswith("net/") and not name.endswith("_decentered"):
        return LocScaleReparam(0.0)
    return None


def _network_init(network: Any, key: jax.Array, n_in: int) -> dict[str, Array]:
    """``{"Dense_0.kernel": array, ...}`` from the network's own initialiser."""
    params = jax.jit(network.init)(key, jnp.ones((1, n_in)))["params"]
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {".".join(str(p.key) for p in path): v for path, v in flat}


def _init_values(site=None, values=None, prefix="", decentered_scale=1.0,
                 fallback=init_to_median):
    if site is None:
        return functools.partial(_init_values, values=values, prefix=prefix,
                                 decentered_scale=decentered_scale, fallback=fallback)
    name = site["name"]
    # Weight sites are "<prefix>/<layer>.<kind>" (numpyro's scope); the non-centred ones
    # carry a "_decentered" suffix (and numpyro currently repeats the scope prefix).
    decentered = name.endswith("_decentered")
    path = name.removesuffix("_decentered").rsplit("/", 1)[-1]
    if name.startswith(prefix + "/") and path in values:
        return values[path] / decentered_scale if decentered else values[path]
    return fallback(site)


def _init_to_values(values: Mapping[str, Array], prefix: str, decentered_scale: float = 1.0,
                    fallback=init_to_median):
    """numpyro init strategy: the network weights under ``prefix`` from ``values``,
    ``fallback`` elsewhere (a ``functools.partial``, as numpyro's ``initialize_model``
    expects)."""
    return functools.partial(_init_values, values=dict(values), prefix=prefix,
                             decentered_scale=decentered_scale, fallback=fallback)


def _init_sites(site=None, values=None):
    if site is None:
        return functools.partial(_init_sites, values=values)
    if site["name"] in values:
        return jnp.asarray(values[site["name"]], dtype=jnp.result_type(float))
    return init_to_median(site)


def _init_to_sites(values: Mapping[str, float]):
    """numpyro init strategy: ``values`` by site name, the prior median elsewhere."""
    return functools.partial(_init_sites, values=dict(values))


def fit_bnn(
    x: ArrayLike,
    y: ArrayLike,
    *,
    key: jax.Array,
    network: Any,
    method: str = "nuts",
    prior_scale: float = 1.0,
    hierarchical: bool = False,
    heteroscedastic: bool = False,
    noise_scale: float = 1.0,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    guide: str | autoguide.AutoGuide = "normal",
    num_steps: int = 5000,
    learning_rate: float = 1e-2,
    warn: bool = False,
) -> MCMCResult | SVIResult:
    r"""Fit :func:`bnn_model` by NUTS (small networks) or SVI (larger ones).

    Chains (and the guide) start from the network's own initialiser (LeCun normal) rather
    than numpyro's uniform draws, which suits the layer sizes. Weight-space R-hat of a BNN
    is large by nature (hidden units can be permuted and chains settle in different
    modes), so ``warn`` defaults to ``False`` here; judge the fit by its predictions.

    Args:
        x, y: training inputs ``(n, features)`` and targets ``(n,)``.
        key: PRNG key.
        network: the Flax network (e.g. ``MLP((16, 16, 1), activation="tanh")``).
        method: ``"nuts"`` or ``"svi"``.
        prior_scale, hierarchical, heteroscedastic, noise_scale: as :func:`bnn_model`.
        num_warmup, num_samples, num_chains: NUTS sizes (``num_samples`` is also the number
            of SVI draws).
        guide, num_steps, learning_rate: SVI options (see :func:`run_svi`).
        warn: warn on failed NUTS diagnostics.

    Returns:
        :class:`MCMCResult` or :class:`SVIResult`; predict with
        ``posterior_predictive(fit, key, x_new)``.

    Raises:
        ValueError: bad data (including NaN or inf in ``x`` or ``y``), options or network
            outputs.
        TypeError: ``network`` is not a Flax Linen module, or a bad key.
        NonFiniteLossError: ``method="svi"`` and the ELBO loss ended non-finite (see
            :func:`run_svi`).
    """
    _check_key(key)
    hierarchical = _check_bool(hierarchical, "hierarchical")
    heteroscedastic = _check_bool(heteroscedastic, "heteroscedastic")
    _check_network(network, outputs=2 if heteroscedastic else 1,
                   what=f"(heteroscedastic={heteroscedastic})")
    _check_choice(method, ("nuts", "svi"), "method")
    xa, ya = _check_regression_data(x, y)
    if ya is None:
        raise ValueError("`y` must be given to fit a BNN.")
    # Every option is checked here, before the network's initialisation compiles.
    _check_scale(prior_scale, "prior_scale")
    _check_scale(noise_scale, "noise_scale")
    _check_bool(warn, "warn")
    if method == "nuts":
        _check_positive_int(num_warmup, "num_warmup", 0)
        _check_positive_int(num_samples, "num_samples", 4)
        _check_positive_int(num_chains, "num_chains")
    else:
        if not isinstance(guide, autoguide.AutoGuide):
            _check_choice(guide, _GUIDES, "guide")
        _check_positive_int(num_steps, "num_steps")
        _check_positive_int(num_samples, "num_samples")
        _check_real(learning_rate, "learning_rate", positive=True)
    xa, ya = jnp.asarray(xa), jnp.asarray(ya)
    model = functools.partial(
        bnn_model, network=network, prior_scale=prior_scale, hierarchical=hierarchical,
        heteroscedastic=heteroscedastic, noise_scale=noise_scale,
    )
    init_key, run_key = jr.split(key)
    n_in = xa.shape[1]
    # Non-centred weights (hierarchical) are weight / scale; start them at weight / s.
    strategy = functools.partial(_init_to_values, prefix="net",
                                 decentered_scale=prior_scale if hierarchical else 1.0)
    if method == "nuts":
        chains = _check_positive_int(num_chains, "num_chains")
        # One network initialisation per chain, so the chains start apart (stacked on a
        # chain axis, which run_nuts drops for a single chain as numpyro expects).
        inits = [strategy(_network_init(network, k, n_in)) for k in jr.split(init_key, chains)]
        return run_nuts(
            model, run_key, xa, ya, num_warmup=num_warmup, num_samples=num_samples,
            num_chains=chains, init_params=_unconstrained_inits(model, (xa, ya), inits),
            warn=warn,
        )
    return run_svi(
        model, run_key, xa, ya, guide=guide, num_steps=num_steps,
        learning_rate=learning_rate, num_samples=_check_positive_int(num_samples, "num_samples"),
        init_strategy=strategy(_network_init(network, init_key, n_in)),
    )


def _unconstrained_inits(model, args, strategies) -> dict[str, Array]:
    """One initial point per init strategy, stacked on a leading chain axis, in the
    unconstrained space of NUTS."""
    per_chain = [
        initialize_model(jr.PRNGKey(0), model, model_args=args, init_strategy=st)[0].z
        for st in strategies
    ]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *per_chain)


# --------------------------------------------------------------------------------------
# Bayesian epidemic models
# --------------------------------------------------------------------------------------


_TIME_UNITS = {"day": 1.0, "week": 7.0}


def _days_per_unit(time_unit: Any) -> float:
    """Days in one unit of time: ``"day"`` 1, ``"week"`` 7, or a positive number."""
    if isinstance(time_unit, str):
        if time_unit not in _TIME_UNITS:
            raise ValueError(
                f"`time_unit` must be one of {tuple(_TIME_UNITS)} or the number of days in one "
                f"unit of `ts`; got {time_unit!r}{_suggest(time_unit, _TIME_UNITS)}."
            )
        return _TIME_UNITS[time_unit]
    if not (_is_real(time_unit) and math.isfinite(float(time_unit)) and float(time_unit) > 0):
        raise ValueError(
            f"`time_unit` must be one of {tuple(_TIME_UNITS)} or the number of days in one unit "
            f"of `ts` (a positive number); got {time_unit!r}."
        )
    return float(time_unit)


def default_priors(time_unit: str | float = "day") -> dict[str, dist.Distribution]:
    r"""The priors of the Stan boarding-school case study (Grinsztajn et al., 2021).

    The case study's rates are **per day**:

    .. math::

        eta \sim \mathcal N(2, 1)_{[0,\infty)}, \quad
        \gamma \sim \mathcal N(0.4, 0.5)_{[0,\infty)}, \quad
        \phi^{-1} \sim 	ext{Exponential}(5)

    (truncated normals on :math:`[0, \infty)`; :math:`\phi^{-1}` has no time unit). For
    data on another time scale the rate priors are rescaled exactly: a rate per unit of
    :math:`u` days is :math:`u` times the rate per day, so with ``time_unit="week"``
    :math:`eta \sim \mathcal N(14, 7)_{[0,\infty)}` and
    :math:`\gamma \sim \mathcal N(2.8, 3.5)_{[0,\infty)}` (per week), the same beliefs
    about the same epidemic. :math:`R_0 = eta/\gamma` does not change.

    Args:
        time_unit: the unit of the observation times: ``"day"`` (default), ``"week"``, or
            the number of days in one unit (e.g. ``7.0``, or ``1 / 24`` for hours).

    Returns:
        ``{"beta", "gamma", "phi_inv"}`` as numpyro distributions, rates per ``time_unit``.

    Raises:
        ValueError: an unknown ``time_unit`` or a non-positive number.

    Examples:
        >>> sorted(default_priors())
        ['beta', 'gamma', 'phi_inv']
        >>> weekly = default_priors("week")
        >>> float(weekly["beta"].mean / default_priors()["beta"].mean)
        7.0
    """
    u = _days_per_unit(time_unit)
    return {
        "beta": dist.TruncatedNormal(2.0 * u, 1.0 * u, low=0.0),
        "gamma": dist.TruncatedNormal(0.4 * u, 0.5 * u, low=0.0),
        "phi_inv": dist.Exponential(5.0),
    }


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


def _is_concrete(x: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check_distribution_args(name: str, d: dist.Distribution) -> None:
    """Check a prior's parameters against its ``arg_constraints`` (when concrete).

    Runs under :func:`jax.ensure_compile_time_eval` (see :func:`_check_prior`): a parameter
    computed with ``jnp`` (``LogNormal(jnp.log(2.0), 1.0)``) is a concrete array, and the
    check must not turn it into a tracer when the model is traced by a sampler.
    """
    for param, constraint in getattr(d, "arg_constraints", {}).items():
        if not hasattr(d, param) or isinstance(constraint, type(dist.constraints.dependent)):
            continue
        value = getattr(d, param)
        if _is_concrete(value) and not bool(np.all(np.asarray(constraint(value)))):
            raise ValueError(
                f"`priors[{name!r}]` ({type(d).__name__}) has an invalid parameter "
                f"{param}={np.asarray(value)}: it must satisfy {constraint}."
            )
    if hasattr(d, "base_dist"):
        _check_distribution_args(name, d.base_dist)


def _check_prior(name: str, value: Any, *, upper: float | None = None,
                 allow_zero: bool = False) -> Any:
    """A prior is a numpyro distribution on (0, upper] or a fixed number there."""
    what = f"(0, {upper}]" if upper is not None else ("[0, inf)" if allow_zero else "(0, inf)")
    if isinstance(value, dist.Distribution):
        with jax.ensure_compile_time_eval():
            return _check_prior_distribution(name, value, upper, what)
    if not _is_real(value):
        raise TypeError(
            f"`priors[{name!r}]` must be a numpyro distribution or a fixed number; got "
            f"{type(value).__name__}."
        )
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0) and (upper is None or v <= upper)
    if not ok:
        raise ValueError(f"`priors[{name!r}]` as a fixed value must lie in {what}; got {v}.")
    return v


def _check_prior_distribution(name: str, value: dist.Distribution, upper: float | None,
                              what: str) -> dist.Distribution:
    """Parameters, shape and support of one prior distribution (see :func:`_check_prior`)."""
    _check_distribution_args(name, value)
    if value.batch_shape or value.event_shape:
        raise ValueError(
            f"`priors[{name!r}]` must be a scalar distribution; got batch shape "
            f"{value.batch_shape} and event shape {value.event_shape}."
        )
    support = value.support
    lo, hi = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    lo_ok = lo is not None and _is_concrete(lo) and float(np.asarray(lo)) >= 0
    hi_ok = upper is None or (
        hi is not None and _is_concrete(hi) and float(np.asarray(hi)) <= upper
    )
    if not (lo_ok and hi_ok):
        raise ValueError(
            f"`priors[{name!r}]` must have support inside {what} (e.g. "
            f"TruncatedNormal(..., low=0), LogNormal, Exponential"
            f"{', Beta' if upper else ''}); {type(value).__name__} has support {support}."
        )
    return value


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
    tsa = _as_float_array(ts, "ts")
    if tsa.ndim != 1 or tsa.size == 0:
        raise ValueError(
            f"`ts` must be a 1-D array of observation times with at least one entry (no data "
            f"to fit otherwise); got shape {tsa.shape}."
        )
    if not np.all(np.isfinite(tsa)) or not np.all(np.diff(tsa) > 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
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
    # Priors: defaults for beta, gamma, phi_inv; user entries override.
    user = {} if priors is None else priors
    if not isinstance(user, Mapping):
        raise TypeError(f"`priors` must be a mapping {{name: distribution or number}}; "
                        f"got {type(user).__name__}.")
    defaults = {k: v for k, v in default_priors(days).items()
                if k in model.rate_names or (k == "phi_inv" and likelihood == "negbin")}
    merged = {**defaults, **dict(user)}
    initial = tuple(f"{c}0" for c in model.compartments if c != "S")
    allowed = (*model.rate_names, "reporting", "phi_inv", *initial)
    bad = [k for k in merged if k not in allowed]
    if bad:
        raise ValueError(f"`priors` has unknown names {bad}{_suggest(bad[0], allowed)}; "
                         f"allowed for {type(model).__name__}: {allowed}.")
    if "phi_inv" in user and likelihood != "negbin":
        raise ValueError("`priors['phi_inv']` is only used with likelihood='negbin'.")
    if neural_beta:
        if "beta" not in model.rate_names:
            raise ValueError(f"`model` {type(model).__name__} has no rate 'beta'.")
        if "beta" in user:
            raise ValueError("`priors['beta']` is not used: beta(t) is the Bayesian network.")
        merged.pop("beta", None)
    need = [r for r in model.rate_names if r not in merged and not (neural_beta and r == "beta")]
    if need:
        raise ValueError(f"`priors` must give a distribution or fixed value for the rates {need} "
                         f"of {type(model).__name__}.")
    checked = {}
    for k, v in merged.items():
        if k == "reporting":
            checked[k] = _check_prior(k, v, upper=1.0)
        else:
            checked[k] = _check_prior(k, v, allow_zero=k in initial)
    return _EpidemicSpec(
        model=model, grid=grid, offset=offset, counts=obs, y0=y0f, population=N,
        priors=checked, likelihood=likelihood, observed=observed, reparam=reparam,
    )


def _draw(name: str, prior: Any, reparam: str | None = None) -> Any:
    """A sample site for a distribution; a fixed value as is.

    With ``reparam="noncentred"`` a prior that :func:`_noncentred_value` knows is sampled
    as ``"<name>_z"`` ~ N(0, 1) and ``name`` becomes a deterministic site of the same
    prior distribution.
    """
    if not isinstance(prior, dist.Distribution):
        return prior
    if reparam == "noncentred" and _noncentred_value(prior, 0.0) is not None:
        z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0))
        return numpyro.deterministic(name, _noncentred_value(prior, z))
    return numpyro.sample(name, prior)


def _noncentred_value(prior: dist.Distribution, z: Any) -> Any:
    r"""The value :math:`F^{-1}(\Phi(z))` of ``prior`` at a standard-normal ``z``, or ``None``.

    For :math:`z \sim \mathcal N(0, 1)` the result has exactly the distribution ``prior``.
    Written per family so that both tails stay accurate in float32 (no :math:`\Phi(z)`
    that rounds to 1):

    * ``LogNormal(m, s)``: :math:`e^{m + s z}`;
    * ``Exponential(r)``: :math:`-\log \Phi(-z) / r` (``log_ndtr``);
    * ``TruncatedNormal(m, s, low=a)`` without upper bound: with
      :math:`q = 1 - \Phi((a - m)/s)`, :math:`m - s\,\Phi^{-1}\big(q\,\Phi(-z)\big)`.

    Other families return ``None`` (they are sampled as they are).
    """
    from jax.scipy.special import log_ndtr, ndtr, ndtri

    if isinstance(prior, dist.LogNormal):
        return jnp.exp(prior.base_dist.loc + prior.base_dist.scale * z)
    if isinstance(prior, dist.Exponential):
        return -log_ndtr(-jnp.asarray(z, dtype=jnp.result_type(float))) / prior.rate
    if isinstance(prior, dist.LeftTruncatedDistribution) and isinstance(
            prior.base_dist, dist.Normal):
        m, sd = prior.base_dist.loc, prior.base_dist.scale
        q = 1.0 - ndtr((prior.low - m) / sd)
        return m - sd * ndtri(q * ndtr(-jnp.asarray(z, dtype=jnp.result_type(float))))
    return None


def _noncentred_z(prior: dist.Distribution, theta: float) -> float | None:
    r"""The inverse of :func:`_noncentred_value`: :math:`z = \Phi^{-1}(F(\theta))`."""
    from scipy.special import ndtr, ndtri

    if isinstance(prior, dist.LogNormal):
        m, sd = float(prior.base_dist.loc), float(prior.base_dist.scale)
        return (math.log(theta) - m) / sd
    if isinstance(prior, dist.Exponential):
        return float(-ndtri(math.exp(-float(prior.rate) * theta)))
    if isinstance(prior, dist.LeftTruncatedDistribution) and isinstance(
            prior.base_dist, dist.Normal):
        m, sd = float(prior.base_dist.loc), float(prior.base_dist.scale)
        q = 1.0 - ndtr((float(prior.low) - m) / sd)
        return float(-ndtri(ndtr((m - theta) / sd) / q))
    return None


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


def _epidemic_body(spec: _EpidemicSpec, rates: dict[str, Any], *, adjoint, rtol, atol,
                   max_steps, solver) -> None:
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
                 jnp.asarray(spec.grid), rtol=rtol, atol=atol, max_steps=max_steps,
                 adjoint=adjoint, throw=False, solver=solver, counts=counted)
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
        rtol, atol, max_steps, solver: options of :func:`~epinn.compartmental.solve`.

    Raises:
        ValueError: no data, bad shapes, negative, non-integer or non-finite counts,
            unknown names, priors with invalid parameters or support, bad solver options.
        TypeError: a prior that is neither a distribution nor a number.
    """
    model = SIR() if model is None else model
    spec = _epidemic_spec(ts, counts, model=model, y0=y0, population=population, t0=t0,
                          priors=priors, likelihood=likelihood, observed=observed,
                          time_unit=time_unit, reparam=reparam)
    _check_bool(forward_mode, "forward_mode")
    _check_solver_options(rtol, atol, max_steps, solver)
    rates = {r: _draw(r, spec.priors[r], spec.reparam) for r in model.rate_names}
    numpyro.deterministic("R0", _R0(model, {**rates, "N": spec.population}))
    if "gamma" in rates:
        numpyro.deterministic("recovery_time", 1.0 / jnp.asarray(rates["gamma"]))
    _epidemic_body(spec, rates, adjoint=_adjoint(forward_mode), rtol=rtol, atol=atol,
                   max_steps=max_steps, solver=solver)


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
            sampler for each run, ~20-30 s per data set here) and a list is returned.
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
        rtol, atol, max_steps, solver: ODE solver options.
        max_r_hat, min_ess, warn: diagnostics thresholds and warning switch.

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
    _check_bool(forward_mode, "forward_mode")
    _check_solver_options(rtol, atol, max_steps, solver)
    checks = dict(max_r_hat=max_r_hat, min_ess=min_ess, warn=_check_bool(warn, "warn"))
    _check_thresholds(max_r_hat, min_ess)
    fn = functools.partial(epidemic_model, **cfg, forward_mode=forward_mode, rtol=rtol,
                           atol=atol, max_steps=max_steps, solver=solver)
    strategy = None
    if init is not None:
        spec = _epidemic_spec(ts_a, None, **cfg)
        strategy = _init_to_sites(_init_from(init, spec))
    options = dict(
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method=chain_method, target_accept_prob=target_accept_prob,
        max_tree_depth=10, dense_mass=dense_mass, forward_mode_differentiation=forward_mode,
        init_strategy=strategy, progress_bar=False,
    )
    _make_mcmc(fn, **options)  # validates the sampler options
    for c in counts_a if batched else (counts_a,):
        _epidemic_spec(ts_a, c, **cfg)
    if not batched:
        return _sample(_make_mcmc(fn, **options), key, (ts_a, counts_a), {}, model=fn,
                       **checks)
    # Several data sets: one MCMC object, the counts a jit argument (see the docstring).
    mcmc = _make_mcmc(functools.partial(fn, ts_a), jit_model_args=True, **options)
    return [
        _sample(mcmc, k, (), {"counts": jnp.asarray(c)}, model=fn, model_args=(ts_a, c),
                model_kwargs={}, **checks)
        for k, c in zip(jr.split(key, counts_a.shape[0]), counts_a)
    ]


def neural_beta_model(
    ts: ArrayLike,
    counts: ArrayLike | None = None,
    *,
    y0: Mapping[str, float],
    network: Any,
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    prior_scale: float = 1.0,
    t_scale: float | None = None,
    likelihood: str = "poisson",
    observed: str = "I",
    time_unit: str | float = "day",
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_steps: int = 4096,
) -> None:
    r"""numpyro model with a Bayesian neural transmission rate :math:`\beta(t)`.

    .. math::

        \beta(t) = \operatorname{softplus}\big(f_w(t / t_s)\big), \qquad
        w \sim \mathcal N(0, s^2 I),

    where :math:`f_w` is ``network`` (one input, one output) with weights registered by
    :func:`~numpyro.contrib.module.random_flax_module` (sites ``"beta_net/..."``). The
    other rates, initial states, reporting and overdispersion are as in
    :func:`epidemic_model`. Deterministic ``"beta_t"`` and ``"R0_t"``
    (:math:`\beta(t)/\gamma` for SIR) hold the rate on the solve grid (``t0`` then ``ts``).
    Gradients are reverse mode (many weights), so fit with SVI
    (:func:`fit_bayesian_neural_beta`). The likelihood defaults to Poisson: with the
    negative binomial, mean-field SVI tends to explain the data by overdispersion rather
    than pay the KL cost of pinning down the weights (on the boarding school, 1/phi went to
    0.6 and the band of beta(t) stayed at the prior's).

    Args:
        ts, counts, y0, model, population, t0, priors, likelihood, observed, time_unit:
            as :func:`epidemic_model` (``priors`` must not contain ``"beta"``).
        network: a Flax Linen module with one input and one output, e.g.
            ``MLP((16, 16, 1), activation="tanh")``.
        prior_scale: standard deviation :math:`s` of the weight prior.
        t_scale: time is divided by this before entering the network; default the span
            ``ts[-1] - t0``.
        rtol, atol, max_steps: ODE solver options.

    Raises:
        ValueError: as :func:`epidemic_model`, plus a bad network or scale.
    """
    model = SIR() if model is None else model
    spec = _epidemic_spec(ts, counts, model=model, y0=y0, population=population, t0=t0,
                          priors=priors, likelihood=likelihood, observed=observed,
                          time_unit=time_unit, neural_beta=True)
    _check_solver_options(rtol, atol, max_steps)
    _check_scale(prior_scale, "prior_scale")
    scale = float(spec.grid[-1] - spec.grid[0]) if t_scale is None else t_scale
    _check_scale(scale, "t_scale")
    _check_network(network, outputs=1, what="for beta(t)")
    net = random_flax_module("beta_net", network, dist.Normal(0.0, prior_scale),
                             input_shape=(1,))
    beta = NetworkRate(network, _sampled_variables(net), transform=jax.nn.softplus,
                       t_scale=scale)
    rates = {r: beta if r == "beta" else _draw(r, spec.priors[r], spec.reparam)
             for r in model.rate_names}
    grid = jnp.asarray(spec.grid)
    numpyro.deterministic("beta_t", jax.vmap(beta)(grid))
    numpyro.deterministic("R0_t", _R0(model, {**rates, "N": spec.population}, t=grid))
    if "gamma" in rates:
        numpyro.deterministic("recovery_time", 1.0 / jnp.asarray(rates["gamma"]))
    _epidemic_body(spec, rates, adjoint=_adjoint(False), rtol=rtol, atol=atol,
                   max_steps=max_steps, solver=None)


def _sampled_variables(net: Any) -> dict[str, Any]:
    """The Flax variables ``{"params": ...}`` bound in ``random_flax_module``'s result.

    numpyro returns ``functools.partial(apply_fn, params)``; taking the bound weights lets
    :class:`~epinn.compartmental.NetworkRate` carry them as pytree leaves, so the compiled
    solve is reused across model traces (a closure would recompile it each time).
    """
    if isinstance(net, functools.partial) and net.args and isinstance(net.args[0], Mapping):
        return {"params": net.args[0]}
    raise RuntimeError(  # pragma: no cover - guards against a change in numpyro
        "numpyro.contrib.module.random_flax_module no longer returns functools.partial("
        "apply_fn, params); update epinn.bayes._sampled_variables."
    )


def fit_bayesian_neural_beta(
    ts: ArrayLike,
    counts: ArrayLike,
    *,
    key: jax.Array,
    y0: Mapping[str, float],
    network: Any = None,
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    prior_scale: float = 1.0,
    t_scale: float | None = None,
    likelihood: str = "poisson",
    observed: str = "I",
    time_unit: str | float = "day",
    guide: str | autoguide.AutoGuide = "normal",
    num_steps: int = 3000,
    learning_rate: float = 1e-2,
    num_samples: int = 500,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> SVIResult:
    r"""Variational posterior of a neural :math:`\beta(t)` (:func:`neural_beta_model`).

    SVI with an autoguide (:func:`run_svi`); the guide starts at the network's own
    initialisation (LeCun normal) and at the prior medians of the other parameters. The
    draws of ``"beta_t"`` give a credible band for the transmission rate, e.g.
    ``credible_interval(fit.samples["beta_t"], 0.9)``.

    Args:
        ts, counts, key, y0, model, population, t0: as :func:`fit_epidemic`.
        priors, likelihood, observed, time_unit: as :func:`fit_epidemic`.
        network: the Flax network; default ``MLP((16, 16, 1), activation="tanh")``.
        prior_scale, t_scale: as :func:`neural_beta_model`.
        guide, num_steps, learning_rate, num_samples: as :func:`run_svi`.
        rtol, atol: ODE tolerances.

    Returns:
        :class:`SVIResult` with ``samples["beta_t"]`` of shape ``(num_samples, len(grid))``.

    Raises:
        ValueError: bad data, priors or options.
        TypeError: ``network`` is not a Flax Linen module, or a bad key.
        NonFiniteLossError: the ELBO loss ended non-finite (see :func:`run_svi`).
    """
    from ..models import MLP

    model = SIR() if model is None else model
    network = MLP((16, 16, 1), activation="tanh") if network is None else network
    _check_network(network, outputs=1, what="for beta(t)")
    _check_key(key)
    if counts is None:
        raise ValueError("`counts` must be given: there is no data to fit.")
    cfg = dict(y0=y0, model=model, population=population, t0=t0, priors=priors,
               likelihood=likelihood, observed=observed, time_unit=time_unit)
    _epidemic_spec(ts, counts, **cfg, neural_beta=True)
    # Everything run_svi and the model check, before the network's initialisation compiles.
    _check_solver_options(rtol, atol, 4096)
    _check_scale(prior_scale, "prior_scale")
    if t_scale is not None:
        _check_scale(t_scale, "t_scale")
    if not isinstance(guide, autoguide.AutoGuide):
        _check_choice(guide, _GUIDES, "guide")
    _check_positive_int(num_steps, "num_steps")
    _check_positive_int(num_samples, "num_samples")
    _check_real(learning_rate, "learning_rate", positive=True)
    fn = functools.partial(neural_beta_model, **cfg, network=network, prior_scale=prior_scale,
                           t_scale=t_scale, rtol=rtol, atol=atol)
    init_key, run_key = jr.split(key)
    values = _network_init(network, init_key, 1)
    return run_svi(
        fn, run_key, np.asarray(ts, dtype=np.float64), np.asarray(counts, dtype=np.float64),
        guide=guide, num_steps=num_steps, learning_rate=learning_rate,
        num_samples=num_samples, init_strategy=_init_to_values(values, "beta_net"),
    )


def bayesian_boarding_school(
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    *,
    warn: bool = True,
) -> dict[str, dict[str, float]]:
    r"""The Stan case-study posterior for the boarding-school outbreak, as a summary dict.

    SIR with :math:`S_0 = 762`, :math:`I_0 = 1` at day 0, prevalence observed at days
    1..14, the priors of :func:`default_priors` and a negative-binomial likelihood, sampled
    by :func:`fit_epidemic`.

    Args:
        key: PRNG key.
        num_warmup, num_samples, num_chains: NUTS sizes.
        warn: warn when the diagnostics fail.

    Returns:
        ``{"beta", "gamma", "R0", "recovery_time"}`` each ``{"mean", "lo", "hi"}`` (posterior
        mean and equal-tailed 95% interval).
    """
    from ..datasets import load_boarding_school

    data = load_boarding_school()
    fit = fit_epidemic(
        data.t, data.counts, key=key, y0=dict(data.y0), population=float(data.population),
        t0=0.0, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        warn=warn,
    )
    table = fit.table(("beta", "gamma", "R0", "recovery_time"))
    return {k: {s: v[s] for s in ("mean", "lo", "hi")} for k, v in table.items()}
