"""Experiment: every epinn estimator on the 1978 boarding-school influenza outbreak.

The data (BMJ 1978;1:587, via the R package *outbreaks*): boys confined to bed on days
1..14 of an outbreak in a boarding school of N = 763 boys. The usual set-up, used by all
methods here, starts an SIR model at day 0 with S = 762, I = 1, R = 0 and compares I(t) with
the in-bed counts.

Methods (each gives beta, gamma, R0 = beta/gamma and the recovery time 1/gamma):

* ``least_squares`` -- :func:`epinn.fit_parameters` with ``loss="mse"`` (Levenberg-Marquardt
  through the ODE solver), Laplace 95% intervals;
* ``negbin_mle`` -- the same with a negative-binomial likelihood (dispersion ``phi`` fitted);
* ``neural_estimator`` -- an MLP trained on simulated epidemic curves reads the parameters
  off the observed curve (amortized inference), with a Gaussian uncertainty head;
* ``pinn`` -- a physics-informed network t -> (S, I, R) with trainable beta, gamma;
* ``neural_beta`` -- SIR whose transmission rate beta(t) is a small network (a universal
  differential equation); its R0 is beta(0)/gamma;
* ``bayesian`` -- NUTS on the Stan case-study model (negative binomial, beta ~ N(2, 1),
  gamma ~ N(0.4, 0.5), 1/phi ~ Exp(5)), posterior means and 95% credible intervals.

Prints a comparison table and writes to ``--outdir`` (default ``results/boarding_school``):
``summary.json`` (``{"data": ..., "methods": {name: {"beta", "gamma", "R0",
"recovery_time", "loss", "seconds"}}}``, intervals as ``{"mean", "lo", "hi"}``) and the
figures ``fits.png`` (data and every fitted curve), ``r0.png`` (R0 per method with
intervals) and ``beta_t.png`` (the learned beta(t)). ``--quick`` is a smoke run for the
test suite; ``--methods`` picks a subset.

Runs in float32 by default; ``--x64`` enables float64 first (the fits then agree with scipy
to ~1e-6 rather than ~1e-3).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
import warnings
from pathlib import Path

import jax

# Importing epinn creates no arrays, so --x64 (set in main) still applies.
from epinn.cli import (
    ExperimentParser,
    nonnegative_int,
    output_dir,
    run_script,
)

METHODS = ("least_squares", "negbin_mle", "neural_estimator", "pinn", "neural_beta", "bayesian")


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir,
                   default="results/boarding_school", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument("--x64", action="store_true", help="run in float64")
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    args = p.parse_args(args_list)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        p.error(f"argument --methods: unknown method(s) {unknown}{hint}; choose from "
                f"{', '.join(METHODS)}")
    if not methods:
        p.error(f"argument --methods: name at least one of {', '.join(METHODS)}")
    args.methods = methods
    return args


def _entry(value, interval=None):
    if interval is None:
        return float(value)
    return {"mean": float(value), "lo": float(interval[0]), "hi": float(interval[1])}


def _result_summary(res) -> dict:
    """Point estimates (with intervals where the method gives them) of a FitResult."""
    iv = res.intervals or {}
    out = {
        "beta": _entry(res.params["beta"], iv.get("beta")),
        "gamma": _entry(res.params["gamma"], iv.get("gamma")),
        "R0": _entry(res.R0, iv.get("R0")),
    }
    if "gamma" in iv:
        lo, hi = iv["gamma"]
        out["recovery_time"] = _entry(res.recovery_time, (1.0 / hi, 1.0 / lo))
    else:
        out["recovery_time"] = float(res.recovery_time)
    out["loss"] = float(res.loss)
    return out


def run_methods(args, data, key) -> tuple[dict, dict]:
    """Run the chosen estimators; return (summaries by method, curves for the figures)."""
    import numpy as np

    import epinn
    from epinn import SIR

    ts, counts = np.asarray(data.t, float), np.asarray(data.counts, float)
    y0, N = dict(data.y0), float(data.population)
    init = {"beta": 1.0, "gamma": 0.3, "N": N}
    keys = dict(zip(METHODS, jax.random.split(key, len(METHODS))))
    verbose = 0 if args.quiet else 1
    methods, curves = {}, {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        methods[name]["seconds"] = time.perf_counter() - t
        return out

    def fit_curve(name, res):
        traj = res.trajectory  # prevalence on a fine grid, scaled by any reporting fraction
        scale = res.params.get("reporting", 1.0)
        curves[name] = (np.asarray(traj.ts), scale * np.asarray(traj["I"]))

    if "least_squares" in args.methods:
        def run():
            return epinn.fit_parameters(SIR(), ts, {"I": counts}, y0=y0, init=init, t0=0.0)

        methods["least_squares"] = {}
        res = timed("least_squares", run)
        methods["least_squares"].update(_result_summary(res))
        fit_curve("least_squares", res)

    if "negbin_mle" in args.methods:
        notes = []

        def run():
            # The counts show no overdispersion: phi runs to its (Poisson) bound, which the
            # fit reports (IdentifiabilityWarning); the experiment prints it as a note.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", epinn.IdentifiabilityWarning)
                res = epinn.fit_parameters(
                    SIR(), ts, {"I": counts}, y0=y0, init={**init, "phi": 10.0},
                    free=("beta", "gamma", "phi"), loss="negbin", t0=0.0,
                )
            notes[:] = [str(w.message) for w in caught]
            return res

        methods["negbin_mle"] = {}
        res = timed("negbin_mle", run)
        methods["negbin_mle"].update(_result_summary(res))
        methods["negbin_mle"]["notes"] = notes
        if not args.quiet:
            for note in notes:
                print(f"negbin_mle: {note}")
        methods["negbin_mle"]["phi"] = _entry(res.params["phi"], (res.intervals or {}).get("phi"))
        fit_curve("negbin_mle", res)

    if "neural_estimator" in args.methods:
        def run():
            est = epinn.examples.boarding_school.train_estimator(
                keys["neural_estimator"], quick=args.quick, verbose=verbose
            )
            with warnings.catch_warnings():
                if args.quick:  # the smoke-size network is crude by design
                    warnings.simplefilter("ignore", epinn.OutOfPriorWarning)
                return est.estimate(data.t, data.counts, data.population)

        methods["neural_estimator"] = {}
        res = timed("neural_estimator", run)
        methods["neural_estimator"].update(_result_summary(res))
        methods["neural_estimator"]["interval_level"] = 0.9
        fit_curve("neural_estimator", res)

    if "pinn" in args.methods:
        def run():
            steps = dict(steps=200, lbfgs_steps=50) if args.quick else {}
            return epinn.fit_pinn(ts, {"I": counts}, y0=y0, t0=0.0, key=keys["pinn"],
                                  verbose=verbose, warn=not args.quick, **steps)

        methods["pinn"] = {}
        res = timed("pinn", run)
        methods["pinn"].update(_result_summary(res))
        fit_curve("pinn", res)

    if "neural_beta" in args.methods:
        def run():
            steps = dict(steps=100) if args.quick else {}
            return epinn.fit_neural_beta(ts, {"I": counts}, y0=y0, t0=0.0,
                                         key=keys["neural_beta"], verbose=verbose,
                                         warn=not args.quick, **steps)

        methods["neural_beta"] = {}
        res = timed("neural_beta", run)
        methods["neural_beta"].update(_result_summary(res))
        methods["neural_beta"]["note"] = "beta is beta(t0); R0 = beta(t0) / gamma"
        fit_curve("neural_beta", res)
        curves["neural_beta_beta"] = (np.asarray(res.extras["t"]), np.asarray(res.extras["beta_t"]))

    if "bayesian" in args.methods:
        def run():
            n = (50, 50, 2) if args.quick else (500, 500, 4)
            return epinn.examples.boarding_school.bayesian_fit(keys["bayesian"], *n,
                                                               warn=not args.quick)

        methods["bayesian"] = {}
        post = timed("bayesian", run)
        methods["bayesian"].update(post)
        methods["bayesian"]["note"] = "posterior mean and 95% credible interval (NUTS)"

    return methods, curves


def print_table(methods: dict) -> None:
    def fmt(v):
        if isinstance(v, dict):
            return f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
        return f"{v:.3f}"

    cols = ("beta", "gamma", "R0", "recovery_time")
    print(f"{'method':<18}" + "".join(f"{c:>26}" for c in cols) + f"{'loss':>12}{'time/s':>9}")
    for name, m in methods.items():
        row = "".join(f"{fmt(m[c]):>26}" for c in cols)
        loss = m.get("loss")
        loss_s = f"{loss:12.4g}" if isinstance(loss, float) else f"{'-':>12}"
        print(f"{name:<18}{row}{loss_s}{m['seconds']:9.2f}")


def make_figures(outdir: Path, data, methods: dict, curves: dict, beta_t: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from epinn import plotting

    files = []
    fig = plotting.plot_epidemic_fits(
        data.t, data.counts, curves, title="Boarding-school influenza, 1978", ylabel="in bed"
    )
    fig.savefig(outdir / "fits.png", dpi=120)
    files.append("fits.png")
    fig = plotting.plot_parameter_intervals(methods, "R0", title="R0 by method")
    fig.savefig(outdir / "r0.png", dpi=120)
    files.append("r0.png")
    if beta_t:
        fig = plotting.plot_time_varying_rate(beta_t, ylabel="beta(t) per day")
        fig.savefig(outdir / "beta_t.png", dpi=120)
        files.append("beta_t.png")
    return files


def main(args_list: list[str] | None = None) -> dict:
    args = parse_args(args_list)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import epinn

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    data = epinn.load_boarding_school()
    key = jax.random.PRNGKey(args.seed)
    t_start = time.perf_counter()
    methods, curves, beta_t = *run_methods(args, data, key), {}
    for name in ("neural_beta",):
        if name in curves and f"{name}_beta" in curves:
            beta_t[name] = curves.pop(f"{name}_beta")
    summary = {
        "data": {
            "name": data.name,
            "t": [float(t) for t in data.t],
            "counts": [float(c) for c in data.counts],
            "population": data.population,
            "y0": dict(data.y0),
            "citation": data.citation,
        },
        "methods": methods,
        "settings": {"seed": args.seed, "quick": args.quick, "x64": bool(args.x64)},
    }
    summary["figures"] = make_figures(outdir, data, methods, curves, beta_t)
    summary["seconds"] = time.perf_counter() - t_start
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print_table(methods)
        print(f"wrote {outdir / 'summary.json'} and {', '.join(summary['figures'])} "
              f"in {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
