"""Experiment: plague deaths in Bombay (1905-06), the series Kermack and McKendrick fitted.

An SIRD model (:class:`epinn.SIRD`) observed through its deaths per week:
week *k* covers :math:`(k-1, k]` weeks (``data.observation_times()``), so ``ts`` are the
week numbers and the solve starts at ``t0 = 0``,

.. math::

    y_k \\sim \\text{Poisson}\\big(D(t_k) - D(t_{k-1})\\big), \\qquad
    \\dot S = -\\beta S I / N,\\ \\dot I = \\beta S I / N - (\\gamma + \\mu) I,\\
    \\dot D = \\mu I,

with rates per week and a nominal population :math:`N = 10^6` (Bombay had somewhat under
a million inhabitants; the deaths inform only the product of the population at risk, the
attack rate and the case fatality :math:`\\mu / (\\gamma + \\mu)`, so :math:`N` sets the
scale of :math:`\\mu` and :math:`I_0`, not :math:`R_0 = \\beta / (\\gamma + \\mu)`).

One epidemic curve of deaths carries about three numbers (its size, width and timing),
as Kermack and McKendrick's :math:`\\operatorname{sech}^2` fit shows; the model has four
free quantities (:math:`\\beta, \\gamma, \\mu, I_0`). The experiment shows what that means:

1. the maximum-likelihood fit with all four free describes the curve, and epinn's checks
   say which parameters it does not identify (:attr:`epinn.FitResult.unidentified`);
2. with the recovery rate fixed at :math:`\\gamma` = 1 per week (an assumption: about a week
   from infection to removal), the fit is identified; its R0 is profiled
   (:func:`epinn.profile_likelihood`) beside the Laplace interval;
3. the Bayesian fit (:func:`epinn.fit_epidemic`, ``observed="deaths"``,
   ``time_unit="week"``, negative-binomial counts) puts a prior on :math:`\\gamma` instead
   of fixing it (LogNormal, median 1 per week, a factor ~2 either way), so that R0's
   credible interval carries the uncertainty the data cannot remove. The chains start at
   the least-squares fit (``init=``).

Writes ``summary.json``, ``fit.png`` (deaths with the fits), ``profile.png`` (the profile of
R0) and ``posterior.png`` (posterior predictive band, the posterior of R0 against gamma) to
``--outdir``::

    python experiments/bombay_plague.py --outdir results/bombay_plague

References:
    Kermack W.O., McKendrick A.G. (1927). A contribution to the mathematical theory of
    epidemics. Proc. R. Soc. Lond. A 115:700-721.

    Bacaer N. (2012). The model of Kermack and McKendrick for the plague epidemic in Bombay
    and the type reproduction number with seasonality. J. Math. Biol. 64:403-422.
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
from epinn import SIRD, plot_profile, profile_likelihood

N = 1.0e6  # nominal population (see the docstring)
GAMMA = 1.0  # recovery rate per week where it is fixed (an assumption)
INIT = {"beta": 1.45, "gamma": GAMMA, "mu": 0.02, "N": N}


def parse_args(argv: list[str] | None = None):
    p = ExperimentParser(prog="bombay_plague", description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir, default="results/bombay_plague",
                   help="where summary.json and the figures go")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the NUTS chains")
    p.add_argument("--quick", action="store_true",
                   help="fewer profile points and draws (tests)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p.parse_args(argv)


def setup(data) -> dict:
    obs = data.observation_times()  # week k covers (k - 1, k]; t0 = 0
    return dict(ts=obs.ts, t0=obs.t0, data={"deaths": obs.counts},
                y0={"S": N - 100.0, "I": 100.0, "R": 0.0, "D": 0.0})


def mle(data, free: tuple[str, ...]):
    """Poisson maximum likelihood; the warnings it raised (first lines), as text."""
    s = setup(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = epinn.fit_parameters(SIRD(), s["ts"], s["data"], y0=s["y0"], t0=s["t0"],
                                   init=INIT, free=free, loss="poisson", steps=400)
    return res, [str(w.message).splitlines()[0] for w in caught]


def profile(data, res, n_grid: int):
    s = setup(data)
    return profile_likelihood(SIRD(), s["ts"], s["data"], y0=s["y0"], t0=s["t0"], init=INIT,
                              free=res.free, loss="poisson", parameter="R0", fit=res,
                              n_grid=n_grid)


def bayesian(data, res, key, draws: int, chains: int):
    s = setup(data)
    priors = {"beta": dist.LogNormal(np.log(1.5), 1.0),
              "gamma": dist.LogNormal(np.log(GAMMA), 0.35),  # ~1/week, x/÷ 2 at 95%
              "mu": dist.LogNormal(np.log(0.02), 1.5),
              "I0": dist.LogNormal(np.log(100.0), 1.5)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = epinn.fit_epidemic(
            s["ts"], s["data"]["deaths"], key=key, y0=s["y0"], model=SIRD(), t0=s["t0"],
            observed="deaths", likelihood="negbin", time_unit="week", priors=priors,
            init=res, num_warmup=draws, num_samples=draws, num_chains=chains)
    return post, [str(w.message).splitlines()[0] for w in caught]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    data = epinn.load_bombay_plague()
    full, full_warned = mle(data, ("beta", "gamma", "mu", "I0"))
    fixed, fixed_warned = mle(data, ("beta", "mu", "I0"))
    prof = profile(data, fixed, 8 if args.quick else 24)
    post, post_warned = bayesian(data, fixed, jr.PRNGKey(args.seed),
                                 150 if args.quick else 500, 2 if args.quick else 4)
    table = post.table(("beta", "gamma", "mu", "R0"))
    summary = {
        "data": data.name, "deaths": int(np.sum(data.counts)), "weeks": len(data.t),
        "population_nominal": N,
        "all_free": {"params": full.params, "R0": full.R0, "converged": full.converged,
                     "unidentified": full.unidentified,
                     "at_bound": full.at_bound, "deviance_explained":
                     full.goodness.get("deviance_explained"), "warnings": full_warned},
        "gamma_fixed": {"gamma": GAMMA, "params": fixed.params, "R0": fixed.R0,
                        "R0_laplace": list(fixed.intervals.get("R0", (np.nan, np.nan))),
                        "R0_profile": list(prof.interval), "one_sided": prof.one_sided,
                        "unidentified": fixed.unidentified, "converged": fixed.converged,
                        "warnings": fixed_warned},
        "bayes": {**{k: {"mean": v["mean"], "interval": [v["lo"], v["hi"]],
                         "r_hat": v["r_hat"], "ess": v["ess"]} for k, v in table.items()},
                  "divergences": post.num_divergences, "ok": post.ok,
                  "warnings": post_warned},
    }
    figures(out, data, full, fixed, prof, post, table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if not args.quiet:
        print_table(full, fixed, prof, post, table)
    return summary


def print_table(full, fixed, prof, post, table) -> None:
    print(f"all four free: R0 {full.R0:.3f}; not identified: {', '.join(full.unidentified)}"
          f"{'; at bound: ' + ', '.join(full.at_bound) if full.at_bound else ''}")
    lo, hi = fixed.intervals.get("R0", (np.nan, np.nan))
    plo, phi_ = prof.interval
    r = table["R0"]
    print(f"{'method':<36}{'R0':>8}  95% interval")
    print(f"{'max. likelihood, gamma = 1 (Laplace)':<36}{fixed.R0:>8.3f}  ({lo:.3f}, {hi:.3f})")
    print(f"{'profile likelihood, gamma = 1':<36}{prof.estimate:>8.3f}  ({plo:.3f}, {phi_:.3f})")
    print(f"{'Bayesian, prior on gamma':<36}{r['mean']:>8.3f}  ({r['lo']:.3f}, {r['hi']:.3f})")
    print(f"NUTS: {post.num_divergences} divergences, max R-hat "
          f"{max(v['r_hat'] for v in table.values()):.3f}, min ESS "
          f"{min(v['ess'] for v in table.values()):.0f}, ok {post.ok}")


def figures(out: Path, data, full, fixed, prof, post, table) -> None:
    ts = np.asarray(data.t)
    fig = Figure(figsize=(5.2, 3.4))
    a = fig.subplots()
    a.bar(ts - 0.5, data.counts, width=0.85, color="0.75", label="deaths per week")
    a.plot(ts - 0.5, full.fitted["deaths"], "-", color="C1",
           label=f"all free: R0 {full.R0:.2f} (not identified)")
    a.plot(ts - 0.5, fixed.fitted["deaths"], "--", color="C3",
           label=f"gamma = 1/week: R0 {fixed.R0:.2f}")
    a.set_xlabel("week (Dec 1905 = 1)")
    a.set_ylabel("deaths per week")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fit.png", dpi=110)
    fig = Figure(figsize=(4.6, 3.4))
    plot_profile(prof, ax=fig.subplots(), label="R0 (gamma = 1/week)")
    fig.tight_layout()
    fig.savefig(out / "profile.png", dpi=110)
    sim = epinn.posterior_predictive(post, jr.PRNGKey(1), data.observation_times().ts)["obs"]
    mean, lo, hi = (np.asarray(v) for v in epinn.credible_interval(sim, 0.9))
    fig = Figure(figsize=(9, 3.4))
    a, b = fig.subplots(1, 2)
    epinn.plot_epidemic_fits(
        ts - 0.5, data.counts, {"posterior predictive mean": (ts - 0.5, mean)},
        bands={"90% predictive band": (ts - 0.5, lo, hi)}, xlabel="week",
        ylabel="deaths per week", ax=a)
    b.scatter(np.asarray(post.samples["gamma"]), np.asarray(post.samples["R0"]), s=3,
              alpha=0.4, color="C2")
    b.set_xlabel("gamma (per week)")
    b.set_ylabel("R0")
    b.set_title(f"R0 {table['R0']['mean']:.2f} ({table['R0']['lo']:.2f}, "
                f"{table['R0']['hi']:.2f}): set by the prior on gamma", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "posterior.png", dpi=110)


if __name__ == "__main__":
    sys.exit(run_script(main))
