"""The results of :func:`~epinn.run_nuts` and :func:`~epinn.run_svi` (private module).

:class:`MCMCResult` holds the draws by chain with their diagnostics and reads them out as
a table, a printed summary or an ArviZ ``InferenceData``; :class:`SVIResult` holds a
variational fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array
from numpyro.infer import Predictive

from .._checks import _check_flag, _check_key
from ._checks import _check_prob, _suggest
from ._sites import _check_site_names, _model_trace


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
            >>> from epinn.bayes import run_nuts
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
        _check_flag(posterior_predictive, "posterior_predictive")
        _check_flag(log_likelihood, "log_likelihood")
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
