"""Experiment: stochastic outbreaks in a boarding school of 763, three simulators beside the ODE.

The 1978 boarding-school influenza outbreak began with one boy among 763. The SIR ODE
gives one curve; the same model read as a stochastic process (every infection and
recovery an event) gives a distribution: with probability about 1/R0 the first cases
recover before the infection takes hold, and the outbreaks that do take off peak on
different days. This experiment simulates ``--members`` outbreaks (beta = 1.67,
gamma = 0.45 per day, R0 = 3.7, the values the boarding-school fits give) with each of
epinn's stochastic simulators, all from the same :class:`epinn.SIR` definition:

* ``exact``: Gillespie's direct method, event by event;
* ``tau_leap``: adaptive tau-leaping (Cao, Gillespie & Petzold's step, epsilon = 0.03;
  in a school of 763 fewer than 10 events are expected in nearly every such step, so it
  takes exact steps almost throughout: its steps are close to its events);
* ``chain_binomial``: the discrete-time chain binomial with a step of ``--dt`` days;

and plots the quantile bands of the number infected beside the ODE solution and the
observed counts (``bands.png``; top row all members, bottom row the major outbreaks), and
the final-size and extinction distributions (``final_size.png``). It prints a table of
the extinction probability, the mean final size, peak day and peak size of the major
outbreaks (with Monte Carlo standard errors), the simulation steps and the time per
simulator, and writes ``summary.json``::

    python experiments/stochastic_outbreaks.py --outdir results/stochastic_outbreaks

``--quick`` runs 400 members per simulator (seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib

if __name__ == "__main__":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import epinn  # noqa: E402
from epinn import stochastic  # noqa: E402
from epinn.cli import (  # noqa: E402
    ExperimentParser,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_script,
)

N = 763
PARAMS = {"beta": 1.67, "gamma": 0.45, "N": float(N)}
THRESHOLD = 50  # final sizes below this are minor outbreaks (the modes are ~1-10 and ~740)
METHODS = ("exact", "tau_leap", "chain_binomial")
LABELS = {"exact": "exact (Gillespie)", "tau_leap": "adaptive tau-leaping",
          "chain_binomial": "chain binomial"}


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    # Not __doc__: sphinx-gallery executes the script without its docstring.
    p = ExperimentParser(description="Stochastic boarding-school outbreaks, three simulators.")
    p.add_argument("--outdir", type=output_dir, default="results/stochastic_outbreaks",
                   help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="the random key's seed")
    p.add_argument("--members", type=positive_int, default=20_000,
                   help="outbreaks per simulator")
    p.add_argument("--dt", type=positive_float, default=0.1,
                   help="step of the chain binomial (days)")
    p.add_argument("--quick", action="store_true", help="400 members (a smoke run)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p.parse_args(args_list)


def simulate_all(members: int, dt: float, seed: int, ts: jax.Array) -> dict:
    """``{method: (trajectory, seconds of a second, warm call)}`` for the three simulators."""
    out = {}
    for i, method in enumerate(METHODS):
        kw = {"dt": dt} if method == "chain_binomial" else {}
        key = jr.fold_in(jr.key(seed), i)

        def run(k, method=method, kw=kw):
            return stochastic.simulate(epinn.SIR(), PARAMS, {"S": N - 1, "I": 1, "R": 0}, ts,
                                       key=k, n=members, method=method, **kw)

        jax.block_until_ready(run(jr.fold_in(key, 1)).ys)  # compile
        t0 = time.perf_counter()
        sim = run(key)
        jax.block_until_ready(sim.ys)
        out[method] = (sim, time.perf_counter() - t0)
    return out


def major_only(sim: stochastic.StochasticTrajectory) -> stochastic.StochasticTrajectory:
    """The members whose final size reaches :data:`THRESHOLD`."""
    keep = np.asarray(stochastic.final_sizes(sim)) >= THRESHOLD
    return dataclasses.replace(sim, ys=sim.ys[keep], counts=sim.counts[keep],
                               events=sim.events[keep], capped=sim.capped[keep],
                               steps=sim.steps[keep])


def plot_bands(sims: dict, ode, data, path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4), sharex=True, sharey=True)
    for j, method in enumerate(METHODS):
        sim = sims[method][0]
        for row, s in enumerate((sim, major_only(sim))):
            ax = axes[row, j]
            stochastic.plot_ensemble(ax, s, "I", deterministic=ode, color=f"C{j}",
                                     label=method)
            ax.plot(data.t, data.counts, "ko", ms=3, label="observed (in bed)")
            ax.set(xlabel="day" if row else "", ylabel="infected" if j == 0 else "")
            what = "all members" if row == 0 else f"major outbreaks ({s.n_members})"
            ax.set_title(f"{LABELS[method]}: {what}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_final_sizes(sims: dict, rows: dict, deterministic: float, path: Path) -> None:
    fig, (ax_minor, ax_major, ax_ext) = plt.subplots(
        1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.4, 1]})
    for j, method in enumerate(METHODS):
        d = stochastic.final_size_distribution(sims[method][0], length=N)
        sizes, p = np.asarray(d.sizes), np.asarray(d.probability)
        ax_minor.step(sizes[:THRESHOLD], p[:THRESHOLD], where="mid", color=f"C{j}",
                      label=LABELS[method])
        major = sizes >= THRESHOLD
        bins = np.arange(700, N + 4, 3)
        hist = np.histogram(sizes[major], bins, weights=p[major])[0]
        ax_major.step(bins[:-1], hist, where="post", color=f"C{j}", label=LABELS[method])
        ext = rows[method]["extinction"]
        ax_ext.errorbar([j], [ext["value"]], yerr=[2 * ext["se"]], fmt="o", color=f"C{j}",
                        capsize=4)
    ax_minor.set(xlabel="final size (minor outbreaks)", ylabel="probability",
                 yscale="log", title="fizzled out", xlim=(-0.5, 15.5))
    ax_major.axvline(deterministic, color="k", ls="--", label="ODE final size")
    ax_major.set(xlabel="final size (major outbreaks)", ylabel="probability per 3 boys",
                 title="took off")
    ax_major.legend(fontsize=7)
    r0 = PARAMS["beta"] / PARAMS["gamma"]
    ax_ext.axhline(1 / r0, color="k", ls=":", label="1/R0 (branching process)")
    ax_ext.set(xticks=range(3), xticklabels=[m.replace("_", " ") for m in METHODS],
               ylabel="P(minor outbreak) ± 2 se", title="extinction")
    ax_ext.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summarize(sim, seconds: float) -> dict:
    s = stochastic.outbreak_summary(sim, threshold=THRESHOLD)

    def est(e):
        return {"value": float(e.value), "se": float(e.se)}

    return {"extinction": est(s.extinction), "final_size": est(s.final_size),
            "peak_day": est(s.peak_time), "peak_size": est(s.peak_size),
            "mean_steps": float(np.asarray(sim.steps).mean()),
            "mean_events": float(np.asarray(sim.events).mean()), "seconds": seconds,
            "capped": int(np.asarray(sim.capped).sum())}


def main(args_list: list[str] | None = None) -> dict:
    args = parse_args(args_list)
    members = 400 if args.quick else args.members
    data = epinn.load_boarding_school()
    ts = jnp.linspace(0.0, 30.0, 121)  # every 6 hours: the peaks are resolved
    sims = simulate_all(members, args.dt, args.seed, ts)
    ode = epinn.solve(epinn.SIR(), PARAMS, {"S": N - 1.0, "I": 1.0, "R": 0.0}, ts)
    fs = epinn.final_size(epinn.SIR(), PARAMS, {"S": N - 1.0, "I": 1.0, "R": 0.0})
    deterministic = float(np.asarray(fs.attack_rate)) * N - 1  # new infections, as here
    rows = {m: summarize(*sims[m]) for m in METHODS}

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plot_bands(sims, ode, data, outdir / "bands.png")
    plot_final_sizes(sims, rows, deterministic, outdir / "final_size.png")
    summary = {"config": {"members": members, "seed": args.seed, "quick": args.quick,
                          "dt_chain_binomial": args.dt, "params": PARAMS,
                          "threshold": THRESHOLD},
               "inverse_R0": PARAMS["gamma"] / PARAMS["beta"],
               "ode_final_size": deterministic, "ode_peak_day": float(
                   np.asarray(ts)[int(np.argmax(np.asarray(ode["I"])))]),
               "simulators": rows}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print(f"{members} outbreaks per simulator, N = {N}, R0 = "
              f"{PARAMS['beta'] / PARAMS['gamma']:.2f}; ODE: final size "
              f"{deterministic:.1f}, peak day {summary['ode_peak_day']:.2f}")
        print(f"{'simulator':<16}{'P(minor)':>16}{'final size':>18}{'peak day':>16}"
              f"{'peak size':>16}{'steps':>9}{'seconds':>9}")
        for m, r in rows.items():
            cell = lambda e, f: f"{e['value']:{f}} ± {e['se']:.2g}"  # noqa: E731
            print(f"{m:<16}{cell(r['extinction'], '.3f'):>16}{cell(r['final_size'], '.1f'):>18}"
                  f"{cell(r['peak_day'], '.2f'):>16}{cell(r['peak_size'], '.1f'):>16}"
                  f"{r['mean_steps']:>9.0f}{r['seconds']:>9.3f}")
        print(f"1/R0 = {summary['inverse_R0']:.3f}; wrote {outdir}/bands.png, "
              "final_size.png and summary.json")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
