"""Experiment: are neural estimators calibrated on small stochastic outbreaks?

Amortised inference (:mod:`epinn.amortized`) in a population of N = 763 (the 1978
boarding school), with the prior of ``epinn.examples.boarding_school.PRIOR`` (R0 in [1.5, 8],
gamma in [0.2, 1] per day, one boy ill at day 0, reporting in [0.7, 1], negative-binomial
noise with coefficient of variation in [0.02, 0.5]), observed as prevalence on days 1..14:

1. train two estimators on the same prior draws: one on the SIR ODE
   (``simulator="ode"``, the deterministic curve of each draw) and one on stochastic
   epidemics of the same SIR definition (``simulator="exact"``: Gillespie's direct method,
   the Markov epidemic of 763 people; outbreaks that fizzle out are kept);
2. test both on held-out *stochastic* outbreaks from the prior (the truth in a small
   population) and report the coverage of their 50%, 90% and 95% intervals for beta,
   gamma and R0 with binomial standard errors sqrt(c (1 - c) / n), overall and split into
   minor outbreaks (true prevalence never above 10) and major ones; the ODE test set is
   the reference on which the ODE-trained estimator is built to be calibrated;
3. apply both to the boarding-school data and report both estimates with their intervals.

Figures: ``coverage.png`` (empirical against nominal coverage), ``posterior_boarding_school.png``
(the two estimators' approximate posteriors of beta, gamma, R0 for the data, and the data
with the ODE curve at each estimate) and ``example_curves.png`` (stochastic and ODE curves of
the same parameter draws). Writes ``summary.json``; prints a table. The default run takes a
few minutes on 2 CPU cores; ``--quick`` (smaller networks and sets) about two::

    python experiments/stochastic_coverage.py --outdir results/stochastic_coverage --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure

import epinn
from epinn import NeuralEstimator, OutOfPriorWarning, simulate_training_set
from epinn.cli import ExperimentParser, nonnegative_int, output_dir, positive_int, run_script
from epinn.examples import boarding_school

PARAMS = ("beta", "gamma", "R0")
LEVELS = (0.5, 0.9, 0.95)
TS = np.arange(1.0, 15.0)
T0 = 0.0
#: A held-out outbreak is *minor* when its true prevalence never exceeds this many people.
MINOR_PEAK = 10.0
LABELS = {"ode": "ODE-trained", "stochastic": "stochastic-trained"}


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir, default="results/stochastic_coverage",
                   help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="one seed for everything random")
    p.add_argument("--quick", action="store_true", help="small networks and sets (tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument("--n-test", type=positive_int, default=4000,
                   help="held-out outbreaks per test set")
    p.add_argument("--simulator", choices=("exact", "tau_leap", "chain_binomial"),
                   default="exact", help="the stochastic simulator (truth and training)")
    args = p.parse_args(args_list)
    if args.quick:
        args.n_test = min(args.n_test, 1000)
    return args


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(n_train=4000, n_val=400, hidden=(64, 64), epochs=40, patience=40)
    return dict(n_train=20000, n_val=2000, hidden=(128, 128), epochs=150, patience=30)


def train_both(key, args) -> dict[str, NeuralEstimator]:
    """The two estimators, trained from the same key (so on the same prior draws)."""
    common = dict(prior=boarding_school.PRIOR, t0=T0, observe="prevalence", noise="negbin",
                  verbose=0 if args.quiet else 1, **_sizes(args.quick))
    return {
        "ode": NeuralEstimator.train(key, TS, simulator="ode", **common),
        "stochastic": NeuralEstimator.train(key, TS, simulator=args.simulator, **common),
    }


def coverage_table(est: NeuralEstimator, sim, mask=None) -> dict:
    """Coverage of the 50/90/95% intervals per parameter, with binomial standard errors."""
    out = est.predict(sim.curves, sim.params["N"], check=False)
    keep = np.ones(sim.curves.shape[0], bool) if mask is None else mask
    n = int(keep.sum())
    table: dict = {"n": n}
    for name in PARAMS:
        mu = out[name]["log_mean"][keep]
        sd = out[name]["log_sd"][keep]
        truth = np.log(np.asarray(sim.params[name]))[keep]
        rows = {}
        for level in LEVELS:
            z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
            c = float(np.mean(np.abs(truth - mu) <= z * sd)) if n else float("nan")
            rows[str(level)] = {"coverage": c,
                                "se": math.sqrt(c * (1 - c) / n) if n else float("nan")}
        err = np.abs(np.exp(mu - truth) - 1.0)
        table[name] = {"levels": rows,
                       "median_relative_error": float(np.median(err)) if n else float("nan")}
    return table


def evaluate(estimators: dict, key, args) -> tuple[dict, dict]:
    """Coverage on stochastic and ODE held-out sets; returns (tables, test sets)."""
    k_sto, k_ode = jr.split(key)
    common = dict(prior=boarding_school.PRIOR, t0=T0, observe="prevalence", noise="negbin")
    sets = {
        "stochastic": simulate_training_set(k_sto, args.n_test, TS, simulator=args.simulator,
                                            **common),
        "ode": simulate_training_set(k_ode, args.n_test, TS, simulator="ode", **common),
    }
    sto = sets["stochastic"]
    true_peak = np.max(np.asarray(sto.mean) / np.asarray(sto.params["reporting"])[:, None],
                       axis=1)
    minor = true_peak <= MINOR_PEAK
    tables = {}
    for name, est in estimators.items():
        tables[name] = {
            "stochastic_truth": coverage_table(est, sto),
            "stochastic_truth_major": coverage_table(est, sto, ~minor),
            "stochastic_truth_minor": coverage_table(est, sto, minor),
            "ode_truth": coverage_table(est, sets["ode"]),
        }
    tables["minor_fraction"] = float(np.mean(minor))
    return tables, sets


def apply_to_data(estimators: dict, data) -> dict:
    """Both estimates for the boarding-school data (warnings are recorded, not raised)."""
    results = {}
    for name, est in estimators.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OutOfPriorWarning)
            res = est.estimate(data.t, data.counts, data.population)
        results[name] = {"result": res, "warnings": [str(w.message) for w in caught]}
    return results


# ---- figures -------------------------------------------------------------------------


def coverage_figure(tables: dict, n: int, simulator: str) -> Figure:
    fig = Figure(figsize=(12, 4), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    nominal = np.array(LEVELS)
    for ax, name in zip(axes, PARAMS):
        ax.plot([0.4, 1.0], [0.4, 1.0], "k--", lw=1, label="nominal")
        for i, (est, marker) in enumerate((("ode", "s"), ("stochastic", "o"))):
            for truth, fill in (("stochastic_truth", True), ("ode_truth", False)):
                rows = tables[est][truth][name]["levels"]
                c = np.array([rows[str(q)]["coverage"] for q in LEVELS])
                se = np.array([rows[str(q)]["se"] for q in LEVELS])
                label = f"{LABELS[est]}, {'stochastic' if fill else 'ODE'} truth"
                ax.errorbar(nominal + (i - 0.5) * 0.012, c, yerr=2 * se, fmt=marker,
                            color=f"C{i}", mfc=f"C{i}" if fill else "white", capsize=3,
                            ms=6, label=label, alpha=1.0 if fill else 0.7)
        ax.set_xlabel("nominal coverage")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("empirical coverage (± 2 SE)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Interval coverage on {n} held-out outbreaks in N = 763 "
                 f"(stochastic truth: {simulator})", fontsize=10)
    return fig


def _lognormal_pdf(x, mu, sd):
    return np.exp(-0.5 * ((np.log(x) - mu) / sd) ** 2) / (x * sd * math.sqrt(2 * math.pi))


def data_figure(data, results: dict) -> Figure:
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    ax_fit, *ax_par = fig.subplots(1, 4, width_ratios=[1.4, 1, 1, 1])
    ax_fit.plot(data.t, data.counts, "ko", ms=4, label="in bed (data)")
    for i, (name, r) in enumerate(results.items()):
        res = r["result"]
        traj = res.trajectory
        ax_fit.plot(np.asarray(traj.ts), res.params["reporting"] * np.asarray(traj["I"]),
                    color=f"C{i}", lw=1.6, label=f"ODE at the {LABELS[name]} estimate")
        for ax, k in zip(ax_par, PARAMS):
            mu, sd = res.extras["log_mean"][k], res.extras["log_sd"][k]
            x = np.exp(np.linspace(mu - 4 * sd, mu + 4 * sd, 300))
            ax.plot(x, _lognormal_pdf(x, mu, sd), color=f"C{i}", label=LABELS[name])
            lo, hi = res.intervals[k]
            band = (x >= lo) & (x <= hi)
            ax.fill_between(x[band], _lognormal_pdf(x[band], mu, sd), color=f"C{i}",
                            alpha=0.2)
    for ax, k in zip(ax_par, PARAMS):
        ax.set_xlabel(k)
        ax.set_yticks([])
        ax.set_title(f"{k}: approximate posterior (90% shaded)", fontsize=9)
    ax_par[0].legend(fontsize=8)
    ax_fit.set_xlabel("day")
    ax_fit.set_ylabel("boys in bed")
    ax_fit.set_title("Boarding-school influenza, 1978", fontsize=10)
    ax_fit.legend(fontsize=7)
    return fig


def curves_figure(key, simulator: str, n_show: int = 30) -> Figure:
    """ODE and stochastic curves of the same prior draws (same key: same parameters)."""
    common = dict(prior=boarding_school.PRIOR, t0=T0, observe="prevalence", noise="none")
    ode = simulate_training_set(key, n_show, TS, simulator="ode", **common)
    sto = simulate_training_set(key, n_show, TS, simulator=simulator, **common)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    a, b = fig.subplots(1, 2, sharey=True)
    for i in range(n_show):
        a.plot(TS, ode.curves[i], color="C0", alpha=0.5, lw=1)
        b.plot(TS, sto.curves[i], color="C1", alpha=0.5, lw=1)
    a.set_title("ODE (deterministic) curves", fontsize=10)
    b.set_title(f"stochastic curves ({simulator}), same parameters", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("day")
    a.set_ylabel("reported prevalence (no observation noise)")
    return fig


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


# ---- main ----------------------------------------------------------------------------


def main(args_list: list[str] | None = None) -> dict:
    """Train both estimators, test their coverage, apply them to the data; the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    k_train, k_test, k_show = jr.split(jr.PRNGKey(args.seed), 3)
    t_start = time.perf_counter()
    estimators = train_both(k_train, args)
    tables, _ = evaluate(estimators, k_test, args)
    data = epinn.load_boarding_school()
    results = apply_to_data(estimators, data)
    figures = [
        _save(coverage_figure(tables, args.n_test, args.simulator), outdir / "coverage.png"),
        _save(data_figure(data, results), outdir / "posterior_boarding_school.png"),
        _save(curves_figure(k_show, args.simulator), outdir / "example_curves.png"),
    ]
    summary = {
        "experiment": "stochastic_coverage",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "training": {k: {"epochs_run": len(e.history), "best_epoch": e.history.best_epoch,
                         "simulator": e.simulator} for k, e in estimators.items()},
        "coverage": tables,
        "boarding_school": {
            k: {**r["result"].summary(), "warnings": r["warnings"]} for k, r in results.items()
        },
        "figures": figures,
    }
    summary["verdict"] = verdict(tables)
    summary["wall_time_s"] = time.perf_counter() - t_start
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print_report(summary)
    return summary


def verdict(tables: dict) -> dict:
    """Which estimator's intervals reach their nominal level on stochastic truth: every
    level and parameter within 2 standard errors (or 0.02) below nominal."""
    out = {}
    for est in ("ode", "stochastic"):
        worst = min(
            (row["coverage"] + max(2 * row["se"], 0.02) - float(q), name, q)
            for name in PARAMS
            for q, row in tables[est]["stochastic_truth"][name]["levels"].items()
        )
        out[est] = {"nominal": worst[0] >= 0, "worst_shortfall": -min(worst[0], 0.0),
                    "worst_at": f"{worst[1]} {float(worst[2]):.0%}"}
    return out


def print_report(summary: dict) -> None:
    cov = summary["coverage"]
    n = cov["ode"]["stochastic_truth"]["n"]
    print(f"\nInterval coverage (± 1 binomial SE) on {n} held-out outbreaks in N = 763; "
          f"{cov['minor_fraction']:.1%} of the stochastic ones are minor (peak <= "
          f"{MINOR_PEAK:g}).")
    head = "".join(f"{f'{q:.0%}':>16}" for q in LEVELS)
    for truth in ("stochastic_truth", "stochastic_truth_major", "stochastic_truth_minor",
                  "ode_truth"):
        print(f"\n{truth.replace('_', ' ')} (n = {cov['ode'][truth]['n']})")
        print(f"{'estimator':20}{'param':7}{head}{'med. rel. err':>15}")
        for est in ("ode", "stochastic"):
            for name in PARAMS:
                row = cov[est][truth][name]
                cells = "".join(
                    f"{row['levels'][str(q)]['coverage']:>9.3f} ±{row['levels'][str(q)]['se']:.3f}"
                    for q in LEVELS)
                print(f"{LABELS[est]:20}{name:7}{cells}{row['median_relative_error']:>15.3f}")
    print("\nBoarding school, 1978 (90% intervals):")
    for est, row in summary["boarding_school"].items():
        cells = "   ".join(f"{k} {row[k]['mean']:.3f} [{row[k]['lo']:.3f}, {row[k]['hi']:.3f}]"
                           for k in PARAMS)
        print(f"  {LABELS[est]:20}{cells}")
        for w in row["warnings"]:
            print(f"    warning: {w}")
    for est, v in summary["verdict"].items():
        state = "reach" if v["nominal"] else "do NOT reach"
        print(f"{LABELS[est]} intervals {state} nominal coverage on stochastic truth "
              f"(worst shortfall {v['worst_shortfall']:.3f} at {v['worst_at']}).")
    print(f"\nwrote {len(summary['figures'])} figures and summary.json in "
          f"{summary['wall_time_s']:.1f} s")


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
