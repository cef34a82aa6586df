"""Experiment: Bayesian SIR for the 1978 boarding-school outbreak, in the Stan case-study set-up.

The model of Grinsztajn, Semenova, Margossian and Riou, "Bayesian workflow for disease
transmission modeling in Stan" (Statistics in Medicine, 2021): SIR with N = 763,
S0 = 762, I0 = 1 at day 0, the number of boys in bed observed on days 1..14 and

.. math::

    \\beta \\sim \\mathcal N(2, 1)_{+}, \\quad \\gamma \\sim \\mathcal N(0.4, 0.5)_{+}, \\quad
    \\phi^{-1} \\sim \\text{Exp}(5), \\quad
    y_t \\sim \\text{NegBin}\\big(I(t), \\phi\\big).

The workflow: a prior predictive check (what the priors say about the outbreak), NUTS with
four chains (:func:`epinn.fit_epidemic`) with R-hat, ESS and divergences, the
posterior of beta, gamma, R0 = beta/gamma and the recovery time 1/gamma beside the published
Stan table, a posterior predictive check (bands over the data, coverage, a p-value of the
peak) and, last, a Bayesian neural transmission rate beta(t) (an MLP 1-16-16-1 with
N(0, 1) weights, Poisson likelihood) fitted by mean-field SVI
(:func:`epinn.fit_bayesian_neural_beta`), whose credible band shows how well the data
pin down a time-varying rate (mean-field bands are known to be too narrow).

Writes ``summary.json`` (``{"posterior": {"beta": {"mean", "lo", "hi", "r_hat", "ess"},
"gamma", "R0", "recovery_time"}, "stan_reference", "diagnostics", "prior_predictive",
"posterior_predictive", "neural_beta", ...}``) and the figures ``prior_predictive.png``,
``posterior_predictive.png``, ``marginals.png`` and ``neural_beta.png`` to ``--outdir``::

    python experiments/bayesian_sir.py --outdir results/bayesian_sir --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure

import epinn
from epinn import bayes
from epinn.cli import ExperimentParser, nonnegative_int, output_dir, positive_int, run_script

# Reference posterior: the case study's Stan program (Grinsztajn et al. 2021, negative
# binomial SIR) run with rstan, 4 chains x 1000 post-warm-up draws: mean and 95% interval.
# The case study prints this table without stored numbers; these are from an independent
# re-run (pw598.github.io, 2024-11-11), which a second re-run (rstan 2.21.2, 2020-12-03)
# matches to +-0.02. Means agree with the case study's text (beta 1.73, gamma 0.54,
# R0 3.2, recovery 1.85 days).
STAN = {
    "beta": {"mean": 1.73, "lo": 1.64, "hi": 1.85},
    "gamma": {"mean": 0.54, "lo": 0.46, "hi": 0.64},
    "R0": {"mean": 3.21, "lo": 2.73, "hi": 3.83},
    "recovery_time": {"mean": 1.85, "lo": 1.56, "hi": 2.18},
}
NAMES = ("beta", "gamma", "R0", "recovery_time")


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir,
                   default="results/bayesian_sir", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--warmup", type=nonnegative_int, default=1000, help="NUTS warm-up per chain")
    p.add_argument("--samples", type=positive_int, default=1000, help="NUTS draws per chain")
    p.add_argument("--chains", type=positive_int, default=4, help="NUTS chains (vectorised)")
    p.add_argument("--prior-draws", type=positive_int, default=1000, help="prior predictive draws")
    p.add_argument("--svi-steps", type=positive_int,
                   default=3000, help="SVI steps for neural beta(t)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(args_list)
    if args.quick:
        args.warmup, args.samples, args.chains = 150, 150, 2
        args.prior_draws, args.svi_steps = 100, 300
    return args


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def _band(ax, t, draws, color, label, probs=(0.5, 0.9)):
    for p, alpha in zip(probs, (0.45, 0.2)):
        _, lo, hi = bayes.credible_interval(draws, p)
        ax.fill_between(t, lo, hi, color=color, alpha=alpha, lw=0,
                        label=f"{label} {int(p * 100)}%")


def prior_check(args, key, data, fine) -> tuple[dict, Figure]:
    model = bayes.epidemic_model
    draws = bayes.prior_predictive(
        lambda ts: model(ts, y0=dict(data.y0), t0=0.0), key, args.prior_draws, fine
    )
    ok = np.asarray(draws["solver_ok"])
    obs = np.asarray(draws["obs"])[ok]
    peak = obs.max(axis=1)
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    _band(ax, fine, obs, "C0", "prior predictive")
    ax.plot(data.t, data.counts, "ko", ms=4, label="data")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("day")
    ax.set_ylabel("boys in bed")
    ax.set_title("prior predictive check")
    ax.legend(frameon=False, fontsize=8)
    summary = {
        "draws": int(args.prior_draws),
        "solver_failures": int((~ok).sum()),
        "peak_quantiles_5_50_95": np.quantile(peak, [0.05, 0.5, 0.95]).round(1).tolist(),
        "fraction_peak_above_population": float(np.mean(peak > data.population)),
        "R0_quantiles_5_50_95": np.quantile(np.asarray(draws["R0"]), [0.05, 0.5, 0.95])
        .round(2).tolist(),
    }
    return summary, fig


def posterior_check(fit, key, data, fine) -> tuple[dict, Figure]:
    # One predictive run on the fine grid; the data days lie on it. Given the parameters
    # the counts of different days are independent, so the draws at the data days are
    # draws of the predictive distribution of the data.
    curve = bayes.posterior_predictive(fit, key, fine)
    days = np.searchsorted(fine, data.t)
    assert np.allclose(fine[days], data.t)
    obs = np.asarray(curve["obs"])[:, days]
    cover = {}
    for p in (0.5, 0.9, 0.95):
        _, lo, hi = bayes.credible_interval(obs, p)
        cover[f"{int(p * 100)}%"] = bayes.predictive_coverage(data.counts, lo, hi)
    p_peak = float(np.mean(obs.max(axis=1) >= data.counts.max()))
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    _band(ax, fine, np.asarray(curve["obs"]), "C1", "predictive")
    _, lo, hi = bayes.credible_interval(np.asarray(curve["expected"]), 0.95)
    ax.plot(fine, np.median(np.asarray(curve["expected"]), axis=0), "C3-", lw=1.5,
            label="median I(t)")
    ax.fill_between(fine, lo, hi, color="C3", alpha=0.3, lw=0, label="I(t) 95%")
    ax.plot(data.t, data.counts, "ko", ms=4, label="data")
    ax.set_xlabel("day")
    ax.set_ylabel("boys in bed")
    ax.set_title("posterior predictive check")
    ax.legend(frameon=False, fontsize=8)
    return {"coverage_of_data": cover, "p_value_peak": p_peak}, fig


def marginals_figure(fit) -> Figure:
    fig = Figure(figsize=(9.0, 2.6), layout="constrained")
    axes = fig.subplots(1, 4)
    labels = {"beta": r"$\beta$", "gamma": r"$\gamma$", "R0": r"$R_0$",
              "recovery_time": r"$1/\gamma$ (days)"}
    for ax, name in zip(axes, NAMES):
        x = np.asarray(fit.samples[name])
        ax.hist(x, bins=40, density=True, color="C0", alpha=0.7, label="epinn (NUTS)")
        ref = STAN[name]
        ax.axvline(ref["mean"], color="k", lw=1.2, label="Stan mean")
        ax.axvspan(ref["lo"], ref["hi"], color="k", alpha=0.08, label="Stan 95%")
        ax.set_xlabel(labels[name])
        ax.set_yticks([])
    axes[0].legend(frameon=False, fontsize=7)
    return fig


def neural_beta_part(args, key, data) -> tuple[dict, Figure]:
    # Poisson likelihood: with the negative binomial, mean-field SVI prefers to explain the
    # data as overdispersion (1/phi -> 0.6, weights left at their prior) over paying the KL
    # cost of pinning down ~300 weights, and the band of beta(t) is then the prior's.
    fit = bayes.fit_bayesian_neural_beta(
        data.t, data.counts, key=key, y0=dict(data.y0), t0=0.0,
        network=epinn.MLP((16, 16, 1), activation="tanh"), likelihood="poisson",
        num_steps=args.svi_steps, learning_rate=1e-2, num_samples=500,
    )
    grid = np.concatenate([[0.0], data.t])
    beta_t = np.asarray(fit.samples["beta_t"])
    mean, lo, hi = (np.asarray(a) for a in bayes.credible_interval(beta_t, 0.9))
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax_b, ax_i = fig.subplots(1, 2)
    ax_b.fill_between(grid, lo, hi, color="C2", alpha=0.3, lw=0, label="90% band")
    ax_b.plot(grid, mean, "C2-", label=r"posterior mean $\beta(t)$")
    ax_b.axhspan(STAN["beta"]["lo"], STAN["beta"]["hi"], color="k", alpha=0.08,
                 label=r"constant $\beta$, Stan 95%")
    ax_b.set_xlabel("day")
    ax_b.set_ylabel(r"$\beta(t)$ per day")
    ax_b.legend(frameon=False, fontsize=8)
    ax_b.set_title(r"Bayesian neural $\beta(t)$ (SVI)")
    _, elo, ehi = bayes.credible_interval(np.asarray(fit.samples["expected"]), 0.9)
    ax_i.fill_between(data.t, elo, ehi, color="C2", alpha=0.3, lw=0, label="I(t) 90%")
    ax_i.plot(data.t, data.counts, "ko", ms=4, label="data")
    ax_i.set_xlabel("day")
    ax_i.set_ylabel("boys in bed")
    ax_i.legend(frameon=False, fontsize=8)
    summary = {
        "svi_steps": int(args.svi_steps),
        "final_loss": float(np.mean(fit.losses[-100:])),
        "t": grid.tolist(),
        "beta_t": {"mean": mean.round(4).tolist(), "lo": lo.round(4).tolist(),
                   "hi": hi.round(4).tolist()},
        "gamma_mean": float(np.mean(np.asarray(fit.samples["gamma"]))),
        "wall_time_s": fit.wall_time_s,
    }
    return summary, fig


def main(args_list: list[str] | None = None) -> dict:
    """Run the workflow and write ``summary.json`` and the figures; returns the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    prior_key, fit_key, pp_key, nb_key = jr.split(jr.PRNGKey(args.seed), 4)
    data = epinn.load_boarding_school()
    fine = np.linspace(0.25, 14.0, 56)
    t_start = time.perf_counter()

    prior, fig = prior_check(args, prior_key, data, fine)
    figures = [_save(fig, outdir / "prior_predictive.png")]

    fit = bayes.fit_epidemic(
        data.t, data.counts, key=fit_key, y0=dict(data.y0), population=float(data.population),
        t0=0.0, num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
        warn=not args.quick,
    )
    table = fit.table(NAMES)
    post, fig = posterior_check(fit, pp_key, data, fine)
    figures.append(_save(fig, outdir / "posterior_predictive.png"))
    figures.append(_save(marginals_figure(fit), outdir / "marginals.png"))
    neural, fig = neural_beta_part(args, nb_key, data)
    figures.append(_save(fig, outdir / "neural_beta.png"))

    summary = {
        "experiment": "bayesian_sir",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "data": {"name": data.name, "t": data.t.tolist(), "counts": data.counts.tolist(),
                 "population": data.population, "y0": dict(data.y0)},
        "posterior": table,
        "phi_inv": fit.table(("phi_inv",))["phi_inv"],
        "stan_reference": STAN,
        "diagnostics": {
            "ok": fit.ok, "problems": list(fit.problems), "divergences": fit.num_divergences,
            "chains": fit.num_chains, "warmup": fit.num_warmup, "samples": fit.num_samples,
            "mean_leapfrog_steps": float(np.mean(fit.num_steps)),
            "nuts_wall_time_s": fit.wall_time_s,
        },
        "prior_predictive": prior,
        "posterior_predictive": post,
        "neural_beta": neural,
        "figures": figures,
    }
    summary["wall_time_s"] = time.perf_counter() - t_start
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print(f"NUTS: {fit.num_chains} chains x ({fit.num_warmup} warm-up + {fit.num_samples}"
              f" draws) in {fit.wall_time_s:.1f} s, {fit.num_divergences} divergences,"
              f" diagnostics {'ok' if fit.ok else 'FAILED: ' + '; '.join(fit.problems)}")
        print(f"{'':>14} {'mean':>7} {'2.5%':>7} {'97.5%':>7} {'R-hat':>6} {'ESS':>6}"
              f"   Stan: mean (95%)")
        for name in NAMES:
            r, s = table[name], STAN[name]
            print(f"{name:>14} {r['mean']:7.3f} {r['lo']:7.3f} {r['hi']:7.3f} "
                  f"{r['r_hat']:6.3f} {r['ess']:6.0f}   {s['mean']:.2f} "
                  f"({s['lo']:.2f}-{s['hi']:.2f})")
        print(f"posterior predictive: data inside the 95% band on "
              f"{post['coverage_of_data']['95%']:.0%} of days; p-value of the peak "
              f"{post['p_value_peak']:.2f}")
        nb = neural["beta_t"]
        print(f"neural beta(t): 90% band at day 0 [{nb['lo'][0]:.2f}, {nb['hi'][0]:.2f}], "
              f"day 7 [{nb['lo'][7]:.2f}, {nb['hi'][7]:.2f}], day 14 [{nb['lo'][-1]:.2f}, "
              f"{nb['hi'][-1]:.2f}]")
        print(f"wrote {outdir}/summary.json and {len(figures)} figures "
              f"({summary['wall_time_s']:.0f} s)")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
