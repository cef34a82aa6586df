"""Experiment: a neural transmission rate beta(t) (a UDE) and a physics-informed network.

Part 1, synthetic recovery. An SIR epidemic (population fractions, :math:`I_0 = 10^{-5}`,
:math:`\\gamma = 0.2` known) whose transmission rate drops smoothly from 0.5 to 0.2 when an
intervention starts around day 30,

.. math::

    \\beta(t) = 0.2 + 0.3\\,\\sigma\\big((30 - t)/3\\big),

is observed daily (prevalence :math:`I(t)`, days 0..80, noiseless).
:func:`epinn.fit_neural_beta` learns :math:`\\beta(t)` as a softplus-MLP inside the ODE;
we report the largest relative error of :math:`\\beta(t)` on days 5..75 and the
:math:`R^2` of the fitted curve.

Part 2, the 1978 boarding-school influenza outbreak (763 boys, :math:`S_0 = 762`,
:math:`I_0 = 1` at day 0, prevalence observed on days 1..14): the neural :math:`\\beta(t)`
with :math:`\\gamma` learned, against the constant-:math:`\\beta` least-squares fit through
the ODE (:func:`epinn.fit_parameters`), and :func:`epinn.fit_pinn`, which learns
:math:`\\beta, \\gamma` with a network :math:`t \\mapsto (S, I, R)` trained on the data, the
SIR residual and the initial condition.

Writes ``summary.json`` and PNG figures (``synthetic_beta.png``, ``boarding_school_beta.png``,
``boarding_school_pinn.png``) to ``--outdir``::

    python experiments/neural_beta.py --outdir results/neural_beta --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure

import epinn
from epinn.cli import (
    ExperimentParser,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    positive_int,
    run_script,
)
from epinn import SIR, solve

GAMMA = 0.2
Y0_SYNTHETIC = {"S": 1 - 1e-5, "I": 1e-5, "R": 0.0}


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir, default="results/neural_beta", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--steps", type=positive_int,
                   default=1000, help="Adam steps of the neural beta(t)")
    p.add_argument("--smoothness", type=nonnegative_float,
                   default=1e-7, help="beta(t) penalty weight")
    p.add_argument("--pinn-steps", type=positive_int, default=2000, help="Adam steps of the PINN")
    p.add_argument("--lbfgs-steps", type=nonnegative_int,
                   default=1000, help="L-BFGS steps of the PINN")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or printout")
    args = p.parse_args(args_list)
    if args.quick:
        args.steps, args.pinn_steps, args.lbfgs_steps = 60, 60, 20
    return args


def true_beta(t: jax.Array) -> jax.Array:
    """The synthetic transmission rate: 0.5 before, 0.2 after an intervention at day 30."""
    return 0.2 + 0.3 * jax.nn.sigmoid((30.0 - t) / 3.0)


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def _fit_summary(res: epinn.FitResult, wall: float) -> dict:
    out = res.summary()
    out.update(
        r2={k: float(v) for k, v in res.extras["r2"].items()},
        n_steps=res.n_steps,
        wall_time_s=wall,
        compile_time_s=float(res.extras["history"].compile_time),
    )
    return out


def run_synthetic(args, key: jax.Array, outdir: Path) -> dict:
    ts = np.arange(0.0, 81.0)
    data = np.asarray(solve(SIR(), {"beta": true_beta, "gamma": GAMMA, "N": 1.0},
                            Y0_SYNTHETIC, ts)["I"])
    t0 = time.perf_counter()
    res = epinn.fit_neural_beta(
        ts, {"I": data}, y0=Y0_SYNTHETIC, gamma=GAMMA, steps=args.steps,
        smoothness=args.smoothness, key=key, verbose=0 if args.quiet else 1, warn=False,
    )
    wall = time.perf_counter() - t0
    interior = np.arange(5.0, 76.0)
    learned = np.asarray(res.extras["beta_fn"](interior))
    rel = np.abs(learned / np.asarray(true_beta(interior)) - 1)

    t = res.extras["t"]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_beta, ax_fit = fig.subplots(1, 2)
    epinn.plot_time_varying_rate(
        {"true": (t, np.asarray(true_beta(jnp.asarray(t)))),
         "learned (neural ODE)": (t, res.extras["beta_t"])},
        ylabel=r"$\beta(t)$", xlabel="day", ax=ax_beta)
    ax_beta.axvspan(5, 75, color="0.92", zorder=0, label="interior")
    ax_beta.set_title(f"max relative error on days 5-75: {rel.max():.1%}")
    epinn.plot_epidemic_fits(ts, data, {"neural beta(t) fit": (t, res.trajectory["I"])},
                             ylabel="I (fraction)", ax=ax_fit,
                             title=f"prevalence, $R^2$ = {res.extras['r2']['I']:.4f}")
    figure = _save(fig, outdir / "synthetic_beta.png")
    out = _fit_summary(res, wall)
    out.update(
        beta_max_rel_error_interior=float(rel.max()),
        beta_max_rel_error_day=float(interior[rel.argmax()]),
        beta_t={"day": t[::10].round(3).tolist(),
                "true": np.asarray(true_beta(jnp.asarray(t[::10]))).round(4).tolist(),
                "learned": res.extras["beta_t"][::10].round(4).tolist()},
        figure=figure,
    )
    return out


def run_boarding_school(args, key: jax.Array, outdir: Path) -> dict:
    flu = epinn.load_boarding_school()
    ts, counts, y0 = flu.t, flu.counts, dict(flu.y0)
    nb_key, pinn_key = jr.split(key)
    verbose = 0 if args.quiet else 1

    t_start = time.perf_counter()
    ls = epinn.fit_parameters(SIR(), ts, {"I": counts}, y0=y0,
                              init={"beta": 1.0, "gamma": 0.3, "N": flu.population}, t0=0.0)
    ls_wall = time.perf_counter() - t_start

    t_start = time.perf_counter()
    nb = epinn.fit_neural_beta(ts, {"I": counts}, y0=y0, t0=0.0, steps=args.steps,
                               smoothness=args.smoothness, key=nb_key, verbose=verbose,
                               warn=False)
    nb_wall = time.perf_counter() - t_start

    t_start = time.perf_counter()
    pinn = epinn.fit_pinn(ts, {"I": counts}, y0=y0, t0=0.0, steps=args.pinn_steps,
                          lbfgs_steps=args.lbfgs_steps, key=pinn_key, verbose=verbose,
                          warn=False)
    pinn_wall = time.perf_counter() - t_start

    t_ls = ls.trajectory.ts
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_beta, ax_fit = fig.subplots(1, 2)
    t_nb = nb.extras["t"]
    epinn.plot_time_varying_rate(
        {"neural beta(t)": (t_nb, nb.extras["beta_t"]),
         "least squares (constant)": (t_nb, np.full_like(t_nb, ls.params["beta"])),
         "PINN (constant)": (t_nb, np.full_like(t_nb, pinn.params["beta"]))},
        ylabel=r"$\beta(t)$ per day", xlabel="day", ax=ax_beta)
    ax_beta.set_title(rf"neural $\beta(t)$, learned $\gamma$ = {nb.params['gamma']:.3f}")
    epinn.plot_epidemic_fits(
        ts, counts,
        {"least squares": (t_ls, ls.trajectory["I"]),
         "neural beta(t)": (nb.trajectory.ts, nb.trajectory["I"]),
         "PINN (ODE with its rates)": (pinn.trajectory.ts, pinn.trajectory["I"])},
        ylabel="boys in bed", ax=ax_fit, title="boarding school, 1978")
    figures = [_save(fig, outdir / "boarding_school_beta.png")]

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_net, ax_loss = fig.subplots(1, 2)
    states = pinn.extras["network_states"]
    epinn.plot_epidemic_fits(
        ts, counts,
        {"PINN network S": (pinn.extras["t"], states[:, 0]),
         "PINN network I": (pinn.extras["t"], states[:, 1]),
         "PINN network R": (pinn.extras["t"], states[:, 2]),
         "ODE with PINN rates, I": (pinn.trajectory.ts, pinn.trajectory["I"])},
        ylabel="boys", ax=ax_net,
        title=rf"PINN: $\beta$ = {pinn.params['beta']:.3f}, $\gamma$ = "
              rf"{pinn.params['gamma']:.3f} (LS {ls.params['beta']:.3f}, "
              rf"{ls.params['gamma']:.3f})")
    h = pinn.extras["history"]
    steps = np.arange(1, len(h.train_loss) + 1)
    for name in ("total", "data", "ode", "ic"):
        values = h.train_loss if name == "total" else h.metrics[name]
        ax_loss.semilogy(steps, values, label=name, lw=1)
    ax_loss.axvline(args.pinn_steps + 0.5, color="0.5", ls=":", label="Adam | L-BFGS")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("PINN loss terms")
    ax_loss.legend(fontsize=8)
    figures.append(_save(fig, outdir / "boarding_school_pinn.png"))

    def rel(a, b):
        return abs(a / b - 1)

    pinn_summary = _fit_summary(pinn, pinn_wall)
    pinn_summary.update(
        ode_r2={k: float(v) for k, v in pinn.extras["ode_r2"].items()},
        loss_terms=pinn.extras["loss_terms"],
        residual_rms=pinn.extras["residual_rms"],
        rel_diff_to_least_squares={k: rel(pinn.params[k], ls.params[k])
                                   for k in ("beta", "gamma")},
    )
    nb_summary = _fit_summary(nb, nb_wall)
    nb_summary.update(
        beta_t={"day": t_nb[::20].round(3).tolist(),
                "beta": nb.extras["beta_t"][::20].round(4).tolist()},
        R_t_final=float(nb.extras["R_t"][-1]),
    )
    ls_summary = ls.summary()
    ls_summary.update(wall_time_s=ls_wall)
    return {
        "data": {"name": "boarding_school", "population": int(flu.population),
                 "days": ts.tolist(), "counts": counts.tolist(), "y0": y0},
        "least_squares": ls_summary,
        "neural_beta": nb_summary,
        "pinn": pinn_summary,
        "figures": figures,
    }


def main(args_list: list[str] | None = None) -> dict:
    """Run both parts and write ``summary.json``; returns the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    syn_key, bs_key = jr.split(jr.PRNGKey(args.seed))
    t0 = time.perf_counter()
    summary = {
        "experiment": "neural_beta",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "synthetic": run_synthetic(args, syn_key, outdir),
        "boarding_school": run_boarding_school(args, bs_key, outdir),
    }
    summary["wall_time_s"] = time.perf_counter() - t0
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        s, b = summary["synthetic"], summary["boarding_school"]
        print(f"synthetic: beta(t) max relative error on days 5-75 "
              f"{s['beta_max_rel_error_interior']:.1%}, R2 {s['r2']['I']:.4f}")
        for name in ("least_squares", "neural_beta", "pinn"):
            m = b[name]
            beta = m["beta"]["mean"] if isinstance(m["beta"], dict) else m["beta"]
            gamma = m["gamma"]["mean"] if isinstance(m["gamma"], dict) else m["gamma"]
            r0 = m["R0"]["mean"] if isinstance(m["R0"], dict) else m["R0"]
            print(f"boarding school {name:>13}: beta {beta:.3f}  gamma {gamma:.3f}  "
                  f"R0 {r0:.2f}  ({m['wall_time_s']:.1f} s)")
        print(f"wrote {outdir}/summary.json and "
              f"{1 + len(b['figures'])} figures in {summary['wall_time_s']:.0f} s")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
