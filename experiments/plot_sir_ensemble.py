"""Experiment: a 100 000-member SIR scenario ensemble for the boarding-school outbreak.

How uncertain is an epidemic curve when the transmission and recovery rates are only known
to a range? This experiment draws ``--members`` pairs (beta, gamma) uniformly from the range
that epinn's estimators give for the 1978 boarding-school influenza (beta in [1.5, 1.9],
gamma in [0.40, 0.60] per day; see ``boarding_school.py``), solves every member from
S0 = 762, I0 = 1 at day 0 with :func:`epinn.ensemble_summary` (one compiled call, chunked,
spread over all devices; only summary statistics are kept) and plots

* the mean number in bed with bands of one standard deviation and of the whole range over
  members, against the observed counts;
* the distributions of the peak day and of the attack rate (infected by day 14 / N).

It runs in seconds (``--quick``: 2 000 members), so the documentation's gallery executes
it. Writes ``ensemble.png`` and ``summary.json`` to ``--outdir``::

    python experiments/plot_sir_ensemble.py --outdir results/plot_sir_ensemble --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import matplotlib

if __name__ == "__main__":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import epinn  # noqa: E402
from epinn.cli import (  # noqa: E402
    ExperimentParser,
    nonnegative_int,
    output_dir,
    positive_int,
    run_script,
)

BETA, GAMMA = (1.5, 1.9), (0.40, 0.60)


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    # Not __doc__: sphinx-gallery executes the script without its docstring.
    p = ExperimentParser(description="A SIR scenario ensemble for the boarding school.")
    p.add_argument("--outdir", type=output_dir,
                   default="results/plot_sir_ensemble", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="the random key's seed")
    p.add_argument("--members", type=positive_int, default=100_000, help="ensemble size")
    p.add_argument("--quick", action="store_true", help="2 000 members (a smoke run)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(args_list)
    if args.members < 1:
        p.error(f"--members must be at least 1; got {args.members}")
    return args


def main(args_list: list[str] | None = None) -> dict:
    args = parse_args(args_list)
    members = 2_000 if args.quick else args.members
    data = epinn.load_boarding_school()
    kb, kg = jr.split(jr.PRNGKey(args.seed))
    beta = jr.uniform(kb, (members,), minval=BETA[0], maxval=BETA[1])
    gamma = jr.uniform(kg, (members,), minval=GAMMA[0], maxval=GAMMA[1])
    ts = jnp.linspace(0.0, 14.0, 141)
    out = epinn.ensemble_summary(epinn.SIR(), {"beta": beta, "gamma": gamma, "N": data.population},
                                 {"S": 762.0, "I": 1.0, "R": 0.0}, ts)
    if not bool(np.all(np.asarray(out.success))):
        raise RuntimeError("some ensemble members failed to solve")
    j = out.compartments.index("I")
    mean, std = np.asarray(out.mean[:, j]), np.asarray(out.std[:, j])
    lo, hi = np.asarray(out.min[:, j]), np.asarray(out.max[:, j])
    t = np.asarray(ts)
    peak_day = np.asarray(out.peak_time)
    attack = np.asarray(out.cumulative_infections) / data.population

    fig, (ax, ax_peak, ax_attack) = plt.subplots(
        1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2, 1, 1]})
    ax.fill_between(t, lo, hi, color="C0", alpha=0.15, label="range over members")
    ax.fill_between(t, mean - std, mean + std, color="C0", alpha=0.35, label="mean ± 1 sd")
    ax.plot(t, mean, color="C0", label="mean")
    ax.plot(data.t, data.counts, "ko", ms=4, label="observed")
    ax.set(xlabel="day", ylabel="boys in bed", title=f"{members:,} SIR members")
    ax.legend(fontsize=8)
    ax_peak.hist(peak_day, bins=40, color="C1")
    ax_peak.set(xlabel="peak day", ylabel="members")
    ax_attack.hist(attack, bins=40, color="C2")
    ax_attack.set(xlabel="attack rate by day 14")
    fig.tight_layout()

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fig.savefig(outdir / "ensemble.png", dpi=110)
    summary = {
        "config": {"members": members, "seed": args.seed, "quick": args.quick,
                   "beta_range": BETA, "gamma_range": GAMMA},
        "peak_day": {"mean": float(peak_day.mean()),
                     "q05": float(np.quantile(peak_day, 0.05)),
                     "q95": float(np.quantile(peak_day, 0.95))},
        "peak_size": {"mean": float(np.asarray(out.peak_size).mean())},
        "attack_rate": {"mean": float(attack.mean()), "q05": float(np.quantile(attack, 0.05)),
                        "q95": float(np.quantile(attack, 0.95))},
        "max_in_bed_mean_curve": float(mean.max()),
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print(f"{members} members: peak day {summary['peak_day']['mean']:.2f} "
              f"[{summary['peak_day']['q05']:.2f}, {summary['peak_day']['q95']:.2f}], "
              f"attack rate {summary['attack_rate']['mean']:.3f} "
              f"[{summary['attack_rate']['q05']:.3f}, {summary['attack_rate']['q95']:.3f}]; "
              f"wrote {outdir}/ensemble.png and summary.json")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
