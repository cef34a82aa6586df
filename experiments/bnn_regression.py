"""Experiment: a Bayesian neural network against a deterministic MLP on data with a gap.

Data: :math:`y = \\sin(2x) + 0.3x + \\varepsilon`, :math:`\\varepsilon \\sim \\mathcal N(0,
0.2^2)`, with :math:`x` uniform on :math:`[-2, -0.5] \\cup [0.5, 2]`: no data in the gap
around 0 or beyond :math:`|x| = 2`. Held-out test points come from the same distribution.

Three fits of the same network (one hidden layer of ``--hidden`` tanh units):

* ``mlp`` -- a deterministic MLP (:func:`epinn.fit`, Adam, MSE) with a homoscedastic 90%
  band :math:`\\hat f(x) \\pm 1.645\\,\\hat\\sigma` from the training residuals;
* ``bnn_nuts`` -- :func:`epinn.fit_bnn` with NUTS (4 vectorised chains), weights
  :math:`\\sim \\mathcal N(0, 1)`, noise :math:`\\sigma \\sim \\text{HalfNormal}(1)`;
* ``bnn_svi`` -- the same model fitted by SVI with a mean-field normal guide.

For each: RMSE and the empirical coverage of the 90% predictive interval on the held-out
data (calibration: close to 0.90), and the mean width of the 90% band of the *mean
function* inside the data, in the gap and outside the data (epistemic uncertainty: it
should grow away from the data; the MLP has none). Writes ``summary.json``
(``{"methods": {name: {"rmse", "coverage_90", "width": {"data", "gap", "outside"}}}}``) and
``bands.png`` to ``--outdir``::

    python experiments/bnn_regression.py --outdir results/bnn_regression --seed 0
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
from epinn import bayes
from epinn.cli import ExperimentParser, nonnegative_int, output_dir, positive_int, run_script

NOISE = 0.2
Z90 = 1.6448536269514722


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir,
                   default="results/bnn_regression", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--train", type=positive_int, default=80, help="training points")
    p.add_argument("--test", type=positive_int, default=1000, help="held-out points")
    p.add_argument("--hidden", type=positive_int, default=10, help="hidden tanh units")
    p.add_argument("--warmup", type=nonnegative_int, default=500, help="NUTS warm-up per chain")
    p.add_argument("--samples", type=positive_int, default=500, help="NUTS draws per chain")
    p.add_argument("--chains", type=positive_int, default=4, help="NUTS chains")
    p.add_argument("--svi-steps", type=positive_int, default=5000, help="SVI steps")
    p.add_argument("--epochs", type=positive_int, default=3000, help="MLP epochs (full batch)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(args_list)
    if args.quick:
        args.train, args.test, args.hidden = 40, 200, 5
        args.warmup, args.samples, args.chains = 100, 100, 2
        args.svi_steps, args.epochs = 300, 200
    return args


def true_function(x):
    return jnp.sin(2 * x) + 0.3 * x


def make_data(key, n):
    """``n`` points with x uniform on [-2, -0.5] U [0.5, 2]; returns x (n, 1) and y (n,)."""
    k1, k2, k3 = jr.split(key, 3)
    x = jr.uniform(k1, (n,), minval=0.5, maxval=2.0) * jnp.where(
        jr.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
    return x[:, None], true_function(x) + NOISE * jr.normal(k3, (n,))


REGIONS = {  # where the band widths are averaged
    "data": lambda g: (np.abs(g) >= 0.6) & (np.abs(g) <= 1.9),
    "gap": lambda g: np.abs(g) <= 0.3,
    "outside": lambda g: (np.abs(g) >= 2.6) & (np.abs(g) <= 3.0),
}


def _metrics(pred_test, lo_test, hi_test, y_test, grid, f_lo, f_hi) -> dict:
    width = np.asarray(f_hi - f_lo)
    return {
        "rmse": float(np.sqrt(np.mean((np.asarray(pred_test) - np.asarray(y_test)) ** 2))),
        "coverage_90": bayes.predictive_coverage(y_test, lo_test, hi_test),
        "width": {name: float(width[mask(grid)].mean()) for name, mask in REGIONS.items()},
    }


def run_mlp(args, key, x, y, xt, yt, grid):
    model = epinn.MLP((args.hidden, 1), activation="tanh")
    init_key, fit_key = jr.split(key)
    params = jax.jit(model.init)(init_key, x[:1])
    params, history = epinn.fit(model, params, x, y[:, None], loss="mse", optimizer="adam",
                                learning_rate=1e-2, epochs=args.epochs, key=fit_key,
                                verbose=0)
    resid_sd = float(jnp.std(epinn.predict(model, params, x)[:, 0] - y))
    pt = epinn.predict(model, params, xt)[:, 0]
    pg = np.asarray(epinn.predict(model, params, grid[:, None])[:, 0])
    m = _metrics(pt, pt - Z90 * resid_sd, pt + Z90 * resid_sd, yt, grid, pg, pg)
    m["residual_sd"] = resid_sd
    band = {"mean": pg, "f_lo": pg, "f_hi": pg, "y_lo": pg - Z90 * resid_sd,
            "y_hi": pg + Z90 * resid_sd}
    return m, band


def run_bnn(args, key, method, x, y, xt, yt, grid):
    fit_key, k_test, k_grid = jr.split(key, 3)
    network = epinn.MLP((args.hidden, 1), activation="tanh")
    if method == "nuts":
        fit = bayes.fit_bnn(x, y, key=fit_key, network=network, num_warmup=args.warmup,
                            num_samples=args.samples, num_chains=args.chains)
    else:
        fit = bayes.fit_bnn(x, y, key=fit_key, network=network, method="svi",
                            num_steps=args.svi_steps, num_samples=1000)
    # One predictive run over test points and grid together.
    xs = jnp.concatenate([xt, jnp.asarray(grid)[:, None]])
    pp = bayes.posterior_predictive(fit, k_test, xs)
    n = xt.shape[0]
    mean, lo, hi = bayes.credible_interval(pp["obs"][:, :n], 0.9)
    f_mean, f_lo, f_hi = bayes.credible_interval(pp["mean"][:, n:], 0.9)
    _, y_lo, y_hi = bayes.credible_interval(pp["obs"][:, n:], 0.9)
    m = _metrics(mean, lo, hi, yt, grid, f_lo, f_hi)
    m["sigma_mean"] = float(np.mean(np.asarray(fit.samples["sigma"])))
    m["wall_time_s"] = fit.wall_time_s
    if method == "nuts":
        m["divergences"] = fit.num_divergences
        m["sigma_r_hat"] = float(fit.summary["sigma"]["r_hat"])
    band = {k: np.asarray(v) for k, v in
            {"mean": f_mean, "f_lo": f_lo, "f_hi": f_hi, "y_lo": y_lo, "y_hi": y_hi}.items()}
    return m, band


def figure(grid, bands, metrics, x, y) -> Figure:
    fig = Figure(figsize=(11.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    titles = {"mlp": "MLP + residual band", "bnn_nuts": "BNN (NUTS)", "bnn_svi": "BNN (SVI)"}
    truth = np.asarray(true_function(jnp.asarray(grid)))
    for ax, (name, b) in zip(axes, bands.items()):
        ax.fill_between(grid, b["y_lo"], b["y_hi"], color="C0", alpha=0.15, lw=0,
                        label="90% predictive")
        ax.fill_between(grid, b["f_lo"], b["f_hi"], color="C0", alpha=0.4, lw=0,
                        label="90% mean function")
        ax.plot(grid, b["mean"], "C0-", lw=1.2, label="mean")
        ax.plot(grid, truth, "k--", lw=1, label="truth")
        ax.plot(np.asarray(x[:, 0]), np.asarray(y), "k.", ms=3)
        ax.set_title(f"{titles[name]}: coverage {metrics[name]['coverage_90']:.2f}")
        ax.set_xlabel("x")
        ax.set_ylim(-3, 3)
    axes[0].set_ylabel("y")
    axes[0].legend(frameon=False, fontsize=7, loc="lower right")
    return fig


def main(args_list: list[str] | None = None) -> dict:
    """Fit the three models and write ``summary.json`` and ``bands.png``; returns the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    k_train, k_test, k_mlp, k_nuts, k_svi = jr.split(jr.PRNGKey(args.seed), 5)
    x, y = make_data(k_train, args.train)
    xt, yt = make_data(k_test, args.test)
    grid = np.linspace(-3.0, 3.0, 121)
    t0 = time.perf_counter()
    metrics, bands = {}, {}
    metrics["mlp"], bands["mlp"] = run_mlp(args, k_mlp, x, y, xt, yt, grid)
    metrics["bnn_nuts"], bands["bnn_nuts"] = run_bnn(args, k_nuts, "nuts", x, y, xt, yt, grid)
    metrics["bnn_svi"], bands["bnn_svi"] = run_bnn(args, k_svi, "svi", x, y, xt, yt, grid)
    fig = figure(grid, bands, metrics, x, y)
    fig.savefig(outdir / "bands.png", dpi=110)
    summary = {
        "experiment": "bnn_regression",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "data": {"train": args.train, "test": args.test, "noise_sd": NOISE,
                 "regions": {"data": "0.6 <= |x| <= 1.9", "gap": "|x| <= 0.3",
                             "outside": "2.6 <= |x| <= 3"}},
        "methods": metrics,
        "figures": ["bands.png"],
        "wall_time_s": time.perf_counter() - t0,
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        print(f"{'':>9} {'RMSE':>6} {'cover90':>8} {'width: data':>12} {'gap':>6} {'outside':>8}")
        for name, m in metrics.items():
            w = m["width"]
            print(f"{name:>9} {m['rmse']:6.3f} {m['coverage_90']:8.3f} {w['data']:12.3f} "
                  f"{w['gap']:6.3f} {w['outside']:8.3f}")
        print(f"(noise sd {NOISE}; widths of the 90% band of the mean function)")
        print(f"wrote {outdir}/summary.json and bands.png ({summary['wall_time_s']:.0f} s)")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
