"""Experiment: a host-vector model of your own, fitted to the Zika outbreak on Yap (2007).

The model is written in the flow language (:class:`epinn.Model`), as a researcher would write
their own: hosts S-I-R, mosquitoes S-E-I with births equal to deaths,

.. math::

    \\text{host infection: } \\beta S_h I_v / N_h, \\qquad
    \\text{vector infection: } \\beta S_v I_h / N_h,

    I_h \\to R_h \\text{ at } \\gamma, \\quad E_v \\to I_v \\text{ at } \\sigma_v, \\quad
    \\text{vector deaths } \\mu_v,

with :math:`N_h` the current host total and one mosquito per host. The host's infectious
period (1/gamma = 5 days), the extrinsic incubation (1/sigma_v = 9.5 days) and the mosquito
lifespan (1/mu_v = 10 days) are fixed at typical literature values (assumptions of this
illustration, in the spirit of Funk et al. 2016); the biting-transmission rate beta and the
reporting fraction are fitted to the weekly cases by onset week (108 in a population of
7391) with a Poisson likelihood. The observation is the *host-infection flow* counted per
week: week k covers days (7k, 7(k+1)], so ``ts`` are the week ends and ``t0 = 0``. (Hosts
have no latent class here: infection marks the onset of infectiousness and symptoms.)

R0 comes from the next-generation matrix of the definition, in both conventions: per
generation (the geometric mean of the host-to-vector and vector-to-host numbers, what the
next-generation matrix gives) and host to host (its square, the Ross-Macdonald number most
of the vector-borne literature reports); the 95% interval of the latter is the square of the
former's. The fit reports, through epinn's identifiability checks, when a parameter sits on
a bound or is not identified.

Beside the least-squares (Poisson maximum-likelihood) fit, the experiment profiles the
likelihood in R0 (:func:`epinn.profile_likelihood`: beta re-optimised on a grid of R0
values, the likelihood-ratio interval beside the Laplace one) and samples the Bayesian
posterior of the same model (:func:`epinn.fit_epidemic` with ``observed="host_infection"``,
a LogNormal prior on beta, a uniform prior on the reporting fraction, the chains started at
the least-squares fit with ``init=``), with its convergence diagnostics.

Writes ``summary.json``, ``fit.png`` (the weekly cases with the fitted expectation and the
model's compartments), ``profile.png`` (the profile of R0) and ``posterior.png`` (the
posterior predictive band and the posterior of R0) to ``--outdir``::

    python experiments/zika_host_vector.py --outdir results/zika_host_vector
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import jax.random as jr
import numpy as np
import numpyro.distributions as dist
from matplotlib.figure import Figure

import epinn
from epinn.cli import ExperimentParser, nonnegative_int, output_dir, run_script
from epinn import plot_profile, profile_likelihood

FIXED = {"gamma": 1 / 5.0, "sigma_v": 1 / 9.5, "mu_v": 1 / 10.0}


def host_vector_model() -> epinn.Model:
    """Hosts S-I-R and mosquitoes S-E-I (one per host), written as flows."""

    def hosts(y):
        return y.Sh + y.Ih + y.Rh

    return epinn.Model(
        ("Sh", "Ih", "Rh", "Sv", "Ev", "Iv"), ("beta", "gamma", "sigma_v", "mu_v"),
        [epinn.infection("Sh", "Ih", lambda t, y, p: p.beta * y.Sh * y.Iv / hosts(y),
                         name="host_infection"),
         epinn.infection("Sv", "Ev", lambda t, y, p: p.beta * y.Sv * y.Ih / hosts(y),
                         name="vector_infection"),
         epinn.flow("Ih", "Rh", lambda t, y, p: p.gamma * y.Ih),
         epinn.flow("Ev", "Iv", lambda t, y, p: p.sigma_v * y.Ev),
         epinn.flow(None, "Sv", lambda t, y, p: p.mu_v * (y.Sv + y.Ev + y.Iv), name="births"),
         epinn.flow("Sv", None, lambda t, y, p: p.mu_v * y.Sv),
         epinn.flow("Ev", None, lambda t, y, p: p.mu_v * y.Ev),
         epinn.flow("Iv", None, lambda t, y, p: p.mu_v * y.Iv)],
        disease_free=lambda p: {"Sh": p.N / 2, "Sv": p.N / 2},
        name="Zika host-vector",
    )


def parse_args(argv: list[str] | None = None):
    p = ExperimentParser(prog="zika_host_vector", description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir, default="results/zika_host_vector",
                   help="where summary.json and fit.png go")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the NUTS chains")
    p.add_argument("--quick", action="store_true",
                   help="fewer optimiser steps, profile points and draws (tests)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p.parse_args(argv)


def setup(data) -> dict:
    """Times (week ends in days, from the data set's interval convention) and the fit set-up."""
    obs = data.observation_times("day")  # onset week k covers days (7k, 7(k + 1)]
    Nh = float(data.population)
    return dict(
        ts=obs.ts, t0=obs.t0, counts=obs.counts,
        y0={"Sh": Nh - 1.0, "Ih": 1.0, "Rh": 0.0, "Sv": Nh, "Ev": 0.0, "Iv": 0.0},
        init={"beta": 0.4, **FIXED, "N": 2 * Nh, "reporting": 0.05},
    )


def fit(model: epinn.Model, data, steps: int):
    s = setup(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = epinn.fit_parameters(
            model, s["ts"], {"host_infection": s["counts"]}, y0=s["y0"], init=s["init"],
            free=("beta", "reporting"), loss="poisson", t0=s["t0"], steps=steps)
    return res, s["ts"], s["y0"], [str(w.message) for w in caught]


def profile(model: epinn.Model, data, res, n_grid: int):
    """The likelihood profile of R0 (per generation): beta tied to it, reporting re-fitted."""
    s = setup(data)
    return profile_likelihood(
        model, s["ts"], {"host_infection": s["counts"]}, y0=s["y0"], init=s["init"],
        free=("beta", "reporting"), loss="poisson", t0=s["t0"], parameter="R0", fit=res,
        n_grid=n_grid)


def bayesian(model: epinn.Model, data, res, key, draws: int, chains: int):
    """NUTS on the same model: LogNormal prior on beta (per day), uniform reporting."""
    s = setup(data)
    priors = {"beta": dist.LogNormal(np.log(0.3), 1.0), "reporting": dist.Beta(1.0, 1.0),
              **FIXED}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = epinn.fit_epidemic(
            s["ts"], s["counts"], key=key, y0=s["y0"], model=model, t0=s["t0"],
            observed="host_infection", likelihood="poisson", time_unit="day", priors=priors,
            init=res, num_warmup=draws, num_samples=draws, num_chains=chains)
    return post, [str(w.message) for w in caught]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    data = epinn.load_zika_yap()
    model = host_vector_model()
    res, ts, y0, warned = fit(model, data, 40 if args.quick else 200)
    p = {k: res.params[k] for k in (*model.rate_names, "N")}
    r0 = float(epinn.R0(model, p))
    lo, hi = res.intervals.get("R0", (float("nan"), float("nan")))
    summary = {
        "data": data.name, "cases": int(np.sum(data.counts)), "population": data.population,
        "fixed": FIXED,
        "beta": {"estimate": res.params["beta"], "interval": res.intervals.get("beta")},
        "reporting": {"estimate": res.params["reporting"],
                      "interval": res.intervals.get("reporting")},
        "R0_per_generation": {"estimate": r0, "interval": [lo, hi]},
        "R0_host_to_host": {"estimate": float(epinn.R0(model, p, hops=2)),
                            "interval": [lo**2, hi**2]},
        "converged": bool(res.converged),
        "warnings": warned,
    }
    prof = profile(model, data, res, 8 if args.quick else 24)
    post, post_warned = bayesian(model, data, res, jr.PRNGKey(args.seed),
                                 150 if args.quick else 500, 2 if args.quick else 4)
    table = post.table(("beta", "reporting", "R0"))
    summary["profile_R0"] = {"interval": list(prof.interval), "one_sided": prof.one_sided}
    summary["bayes"] = {
        **{k: {"mean": v["mean"], "interval": [v["lo"], v["hi"]], "r_hat": v["r_hat"],
               "ess": v["ess"]} for k, v in table.items()},
        "divergences": post.num_divergences, "ok": post.ok, "warnings": post_warned,
    }
    traj = epinn.solve(model, p, y0, np.concatenate([[0.0], ts]))
    expected = res.params["reporting"] * np.asarray(epinn.incidence(traj, "host_infection"))
    fig = Figure(figsize=(9, 3.4))
    a, b = fig.subplots(1, 2)
    a.bar(ts - 3.5, data.counts, width=6.0, color="0.75", label="cases per onset week")
    a.plot(ts - 3.5, expected, "o-", color="C3", label="fitted expectation")
    a.set_xlabel("day (2007-02-18 = 0)")
    a.set_ylabel("cases per week")
    a.set_title(f"R0 {r0:.2f} per generation, {r0**2:.2f} host to host", fontsize=9)
    a.legend(fontsize=8)
    for c in ("Ih", "Rh", "Iv"):
        b.plot(traj.ts, traj[c] / data.population, label=c)
    b.set_xlabel("day")
    b.set_ylabel("fraction of the host population")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fit.png", dpi=110)
    fig = Figure(figsize=(4.6, 3.4))
    plot_profile(prof, ax=fig.subplots(), label="R0 per generation")
    fig.tight_layout()
    fig.savefig(out / "profile.png", dpi=110)
    fig = posterior_figure(ts, data.counts, post, table)
    fig.savefig(out / "posterior.png", dpi=110)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print(f"beta {res.params['beta']:.3f} {res.intervals.get('beta')}, reporting "
              f"{res.params['reporting']:.3f} {res.intervals.get('reporting')}")
        print(f"R0 per generation {r0:.2f} ({lo:.2f}, {hi:.2f}); host to host "
              f"{r0**2:.2f} ({lo**2:.2f}, {hi**2:.2f}); converged {res.converged}")
        for w in warned:
            print("warning:", w)
        print_table(res, prof, table, post)
    return summary


def print_table(res, prof, table, post) -> None:
    """R0 and the reporting fraction by the three methods."""
    lo, hi = res.intervals.get("R0", (float("nan"),) * 2)
    print(f"{'method':<28}{'R0 (per generation)':>28}{'reporting':>24}")
    rlo, rhi = res.intervals.get("reporting", (float("nan"),) * 2)
    print(f"{'max. likelihood (Laplace)':<28}{res.R0:>10.3f} ({lo:.3f}, {hi:.3f})"
          f"{res.params['reporting']:>10.4f} ({rlo:.4f}, {rhi:.4f})")
    plo, phi_ = prof.interval
    print(f"{'profile likelihood':<28}{prof.estimate:>10.3f} ({plo:.3f}, {phi_:.3f})")
    r, q = table["R0"], table["reporting"]
    print(f"{'Bayesian (NUTS)':<28}{r['mean']:>10.3f} ({r['lo']:.3f}, {r['hi']:.3f})"
          f"{q['mean']:>10.4f} ({q['lo']:.4f}, {q['hi']:.4f})")
    print(f"NUTS: {post.num_divergences} divergences, max R-hat "
          f"{max(v['r_hat'] for v in table.values()):.3f}, min ESS "
          f"{min(v['ess'] for v in table.values()):.0f}, ok {post.ok}")


def posterior_figure(ts, counts, post, table) -> Figure:
    """Posterior predictive 90% band of the weekly cases, and the posterior of R0."""
    sim = epinn.posterior_predictive(post, jr.PRNGKey(1), ts)["obs"]
    mean, lo, hi = (np.asarray(a) for a in epinn.credible_interval(sim, 0.9))
    fig = Figure(figsize=(9, 3.4))
    a, b = fig.subplots(1, 2)
    epinn.plot_epidemic_fits(
        ts - 3.5, counts, {"posterior predictive mean": (ts - 3.5, mean)},
        bands={"90% predictive band": (ts - 3.5, lo, hi)}, xlabel="day (2007-02-18 = 0)",
        ylabel="cases per week", ax=a)
    r0 = np.asarray(post.samples["R0"])
    b.hist(r0, bins=40, color="C2", alpha=0.8)
    b.axvline(table["R0"]["lo"], color="k", ls="--", lw=1)
    b.axvline(table["R0"]["hi"], color="k", ls="--", lw=1, label="95% credible interval")
    b.set_xlabel("R0 per generation (posterior)")
    b.set_ylabel("draws")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(run_script(main))
