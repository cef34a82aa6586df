"""Experiment: LSTM and GRU forecasters against baselines on simulated and real epidemic curves.

Part (a), simulated: noisy daily incidence of SIR and SEIR outbreaks with varied parameters
(:func:`epinn.simulate_training_set`: log-uniform R0, recovery rate, initial
infected, population, reporting fraction and negative-binomial noise). The series are split
*by outbreak* into training, validation and held-out test series; every window of the
training series is a training sample. Part (b), real: a bundled series
(``--dataset``, default the Philadelphia 1918 influenza deaths), split chronologically with
:func:`epinn.chronological_split` (the test part's windows look back into the
validation part but no target is ever seen in training).

Every window is scaled by :class:`epinn.LogRatioScaler` (log counts relative to the
window's last value, standardised with training statistics), so one network serves
outbreaks of any size -- and a network trained on simulations can be applied to the real
series as it is ("sim" models in part (b)).

Forecasters, each predicting the next ``--horizon`` days from ``--input-len`` days:

* ``lstm``, ``gru`` -- :class:`epinn.RNNForecaster` (direct multi-step head), MSE;
* ``lstm_quantile`` -- the LSTM with a 10/50/90% quantile head (:func:`epinn.forecast.
  pinball_loss`); its median is the point forecast and 10-90% the 80% interval;
* ``lstm_ensemble`` -- ``--ensemble`` LSTMs from different seeds, vmapped in one module
  (:class:`epinn.SeedEnsemble`) and trained in one :func:`epinn.fit`; the mean is
  the point forecast and the members' 10-90% quantiles the interval;
* baselines: ``persistence``, ``linear_trend`` (least squares through the last 7 days),
  ``seasonal_naive`` (the value 7 days earlier) and ``sir_projection`` (an SIR
  least-squares fit to each window, :func:`epinn.sir_projection_forecast`,
  skipped with ``--no-sir`` and in ``--quick``).

All are trained by :func:`epinn.fit` (early stopping on the validation loss) and evaluated
by :func:`epinn.rolling_origin_evaluation` from every forecast origin of the test
series: MAE, RMSE and MAPE per horizon step, and the empirical coverage of the 80%
intervals.

Writes to ``--outdir`` (default ``results/rnn_forecast``): ``summary.json`` (``{"simulated":
{"errors": {model: {"mae": [per step], "mae_mean", "rmse", ..., "mape", ...}}, "coverage_80":
..., "training": ...}, "real": {...}}``) and the figures ``forecast_fans.png`` (forecast
fans against the truth), ``error_per_horizon.png`` and ``learning_curves.png``.
``--quick`` is a smoke run for the test suite.
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
from epinn import Prior, simulate_training_set
from epinn.cli import (
    ExperimentParser,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_script,
)
from epinn import SEIR, LogRatioScaler, chronological_split, sliding_windows
from epinn import (
    SeedEnsemble,
    ensemble_loss,
    ensemble_quantiles,
    interval_coverage,
    linear_trend_forecast,
    persistence_forecast,
    pinball_loss,
    rolling_origin_evaluation,
    seasonal_naive_forecast,
    sir_projection_forecast,
)
from epinn import plot_learning_curves

DATASETS = ("philadelphia_1918", "ebola_kikwit", "bombay_plague")
QUANTILES = (0.1, 0.5, 0.9)
PRIOR = Prior(N=(2e4, 5e5), R0=(1.3, 3.5), gamma=(0.1, 0.35), I0=(1.0, 20.0),
              reporting=(0.3, 1.0), noise=(0.05, 0.3))


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir,
                   default="results/rnn_forecast", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument("--n-series", type=positive_int, default=200,
                   help="simulated outbreaks (half SIR, half SEIR)")
    p.add_argument("--days", type=positive_int, default=140, help="length of each simulated series")
    p.add_argument("--input-len", type=positive_int, default=21)
    p.add_argument("--horizon", type=positive_int, default=7)
    p.add_argument("--stride", type=positive_int, default=2, help="steps between training windows")
    p.add_argument("--hidden", type=positive_int, default=32)
    p.add_argument("--layers", type=positive_int, default=1)
    p.add_argument("--epochs", type=positive_int, default=40)
    p.add_argument("--patience", type=nonnegative_int, default=6)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--ensemble", type=positive_int, default=5, help="members of the seed ensemble")
    p.add_argument("--dataset", default="philadelphia_1918", choices=DATASETS)
    p.add_argument("--no-sir", action="store_true", help="skip the SIR-projection baseline")
    args = p.parse_args(args_list)
    if args.quick:
        args.n_series, args.days, args.epochs, args.ensemble = 24, 100, 2, 2
        args.hidden, args.stride, args.no_sir = 8, 4, True
    if args.n_series < 8:
        p.error("--n-series must be at least 8")
    if args.days < 2 * (args.input_len + args.horizon):
        p.error("--days must be at least twice input-len + horizon")
    return args


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def simulate(args, key) -> tuple[np.ndarray, list[str]]:
    """Noisy daily incidence, ``(n_series, days)``, and each series' model name."""
    ts = np.arange(1.0, args.days + 1.0)
    n_seir = 0 if args.quick else args.n_series // 2
    n_sir = args.n_series - n_seir
    k_sir, k_seir = jr.split(key)
    parts = [simulate_training_set(k_sir, n_sir, ts, prior=PRIOR, observe="incidence",
                                   noise="negbin", block_size=n_sir).curves]
    names = ["SIR"] * n_sir
    if n_seir:
        parts.append(simulate_training_set(k_seir, n_seir, ts, prior=PRIOR, model=SEIR(),
                                           fixed={"sigma": 0.25}, observe="incidence",
                                           noise="negbin", block_size=n_seir).curves)
        names += ["SEIR"] * n_seir
    return np.asarray(jnp.concatenate(parts), dtype=np.float32), names


def windows(series: list[np.ndarray], args, stride: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = [sliding_windows(s, args.input_len, args.horizon, stride) for s in series]
    return (np.concatenate([np.asarray(x) for x, _ in pairs]),
            np.concatenate([np.asarray(y) for _, y in pairs]))


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def train(model, loss, train_data, val_data, key, args):
    k_init, k_fit = jr.split(key)
    params = jax.jit(model.init)(k_init, train_data[0][:1])
    t0 = time.perf_counter()
    params, hist = epinn.fit(
        model, params, *train_data, loss=loss, learning_rate=args.lr, epochs=args.epochs,
        batch_size=min(args.batch_size, train_data[0].shape[0]), validation_data=val_data,
        early_stopping=epinn.EarlyStopping(patience=args.patience), key=k_fit,
        verbose=0 if args.quiet else 1,
    )
    info = {"epochs_run": len(hist), "best_epoch": hist.best_epoch,
            "stop_reason": hist.stop_reason, "seconds": time.perf_counter() - t0,
            "compile_s": hist.compile_time}
    return params, hist, info


def fit_models(train_data, val_data, args, key) -> dict:
    """Train every network on scaled windows; returns {name: (model, params, hist, info)}."""
    rnn = dict(hidden=args.hidden, layers=args.layers, horizon=args.horizon)
    specs = {
        "lstm": (epinn.RNNForecaster(cell="lstm", **rnn), "mse"),
        "gru": (epinn.RNNForecaster(cell="gru", **rnn), "mse"),
        "lstm_quantile": (epinn.RNNForecaster(cell="lstm", n_outputs=len(QUANTILES), **rnn),
                          pinball_loss(QUANTILES)),
        "lstm_ensemble": (SeedEnsemble(epinn.RNNForecaster(cell="lstm", **rnn),
                                       size=args.ensemble), ensemble_loss("mse")),
    }
    out = {}
    for (name, (model, loss)), k in zip(specs.items(), jr.split(key, len(specs))):
        out[name] = (model, *train(model, loss, train_data, val_data, k, args))
    return out


def forecasters(models: dict, scaler: LogRatioScaler, horizon: int, prefix: str = ""):
    """Counts-in, counts-out forecasters for rolling-origin evaluation, and the intervals.

    Returns ``(point, bands)``: ``point[name](windows) -> (windows, horizon)``;
    ``bands[name](windows) -> (windows, horizon, 3)`` 10/50/90% quantiles.
    """
    point, bands = {}, {}

    def scaled(model, params):
        return lambda w: epinn.predict(model, params, scaler.transform(w))

    for name, (model, params, _, _) in models.items():
        f = scaled(model, params)
        if name == "lstm_quantile":
            # Sorting the quantiles fixes any crossing and never increases the pinball loss
            # (monotone rearrangement, Chernozhukov, Fernandez-Val & Galichon 2010).
            bands[prefix + name] = (lambda f: lambda w: scaler.inverse_transform(
                jnp.sort(f(w), axis=-1), w))(f)
            point[prefix + name] = (lambda b: lambda w: b(w)[..., 1])(bands[prefix + name])
        elif name == "lstm_ensemble":
            members = (lambda f: lambda w: jax.vmap(
                lambda z: scaler.inverse_transform(z, w))(f(w)))(f)
            point[prefix + name] = (lambda m: lambda w: m(w).mean(axis=0))(members)
            bands[prefix + name] = (lambda m: lambda w: ensemble_quantiles(m(w), QUANTILES))(
                members)
        else:
            point[prefix + name] = (lambda f: lambda w: scaler.inverse_transform(f(w), w))(f)
    return point, bands


def baselines(horizon: int, sir: bool) -> dict:
    out = {
        "persistence": lambda w: persistence_forecast(w, horizon),
        "linear_trend": lambda w: linear_trend_forecast(w, horizon, fit_len=7),
        "seasonal_naive": lambda w: seasonal_naive_forecast(w, horizon, period=7),
    }
    if sir:
        out["sir_projection"] = lambda w: sir_projection_forecast(w, horizon)
    return out


def coverage(bands: dict, res) -> dict:
    out = {}
    for name, f in bands.items():
        q = np.asarray(f(jnp.asarray(res.inputs)))
        cov = interval_coverage(q[..., 0], q[..., 2], res.targets)
        out[name] = {"per_step": cov["per_step"].tolist(), "overall": cov["overall"],
                     "mean_width": cov["mean_width"]}
    return out


# --------------------------------------------------------------------------------------
# Parts (a) and (b)
# --------------------------------------------------------------------------------------


def run_simulated(args, key):
    k_sim, k_split, k_fit = jr.split(key, 3)
    curves, names = simulate(args, k_sim)
    order = np.asarray(jr.permutation(k_split, curves.shape[0]))
    n_tr, n_va = int(0.7 * len(order)), int(0.15 * len(order))
    idx = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
    parts = {k: [curves[i] for i in v] for k, v in idx.items()}
    x_tr, y_tr = windows(parts["train"], args, args.stride)
    x_va, y_va = windows(parts["val"], args, args.stride)
    scaler = LogRatioScaler.fit(x_tr, y_tr)  # training series only
    models = fit_models(scaler.transform(x_tr, y_tr), scaler.transform(x_va, y_va), args, k_fit)
    point, bands = forecasters(models, scaler, args.horizon)
    res = rolling_origin_evaluation(parts["test"], {**baselines(args.horizon, not args.no_sir),
                                                    **point}, args.input_len, args.horizon)
    summary = {
        "n_series": {k: len(v) for k, v in idx.items()},
        "models_per_split": {k: sorted({names[i] for i in v}) for k, v in idx.items()},
        "n_windows": {"train": int(x_tr.shape[0]), "val": int(x_va.shape[0]),
                      "test": int(res.targets.shape[0])},
        "errors": res.summary(),
        "coverage_80": coverage(bands, res),
        "training": {k: v[3] for k, v in models.items()},
    }
    return summary, {"models": models, "scaler": scaler, "res": res, "bands": bands,
                     "test": parts["test"]}


def run_real(args, key, sim_models, sim_scaler):
    data = epinn.load_dataset(args.dataset)
    series = np.asarray(data.counts, dtype=np.float32)
    L, H = args.input_len, args.horizon
    train_s, val_s, test_s = chronological_split(series, (0.6, 0.2, 0.2), context=L)
    first_origin = len(series) - (len(test_s) - L)
    x_tr, y_tr = sliding_windows(train_s, L, H)
    x_va, y_va = sliding_windows(val_s, L, H)
    scaler = LogRatioScaler.fit(x_tr, y_tr)
    small = argparse.Namespace(**{**vars(args), "batch_size": min(args.batch_size, 32)})
    lstm = epinn.RNNForecaster(cell="lstm", hidden=args.hidden, layers=args.layers, horizon=H)
    params, hist, info = train(lstm, "mse", scaler.transform(x_tr, y_tr),
                               scaler.transform(x_va, y_va), key, small)
    own, _ = forecasters({"lstm": (lstm, params, hist, info)}, scaler, H, prefix="real_")
    sim_point, sim_bands = forecasters(sim_models, sim_scaler, H, prefix="sim_")
    base = baselines(H, not args.no_sir)
    res = rolling_origin_evaluation(series, {**base, **own, **sim_point}, L, H,
                                    first_origin=first_origin)
    # The simulation-trained networks never saw this series: every origin is out of sample.
    res_all = rolling_origin_evaluation(series, {**base, **sim_point}, L, H)
    summary = {
        "dataset": data.name, "title": data.title, "observed": data.observed,
        "time_unit": data.time_unit, "length": len(series),
        "split": {"train": len(train_s), "val": len(val_s) - L, "test": len(test_s) - L,
                  "first_test_origin": first_origin},
        "n_windows": {"train": int(x_tr.shape[0]), "val": int(x_va.shape[0]),
                      "test": int(res.targets.shape[0])},
        "errors": res.summary(),
        "coverage_80": coverage(sim_bands, res),
        "errors_all_origins": res_all.summary(),
        "coverage_80_all_origins": coverage(sim_bands, res_all),
        "n_windows_all_origins": int(res_all.targets.shape[0]),
        "training": {"real_lstm": info},
    }
    return summary, {"series": series, "res": res, "bands": sim_bands, "hist": hist,
                     "first_origin": first_origin, "title": data.title}


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _fan(ax, series, first_origin, every, band, point, args, title):
    ax.plot(np.arange(len(series)), series, ".", color="0.3", markersize=3, label="observed")
    L, H = args.input_len, args.horizon
    origins = np.arange(max(first_origin, L), len(series) - H + 1, every)
    if origins.size:
        w = jnp.asarray(np.stack([series[o - L : o] for o in origins])[..., None])
        q, p = np.asarray(band(w)), np.asarray(point(w))
        for i, o in enumerate(origins):
            t = o + np.arange(H)
            ax.fill_between(t, q[i, :, 0], q[i, :, 2], color="C0", alpha=0.3, linewidth=0,
                            label="80% interval (quantile LSTM)" if i == 0 else None)
            ax.plot(t, q[i, :, 1], color="C0", linewidth=1.2,
                    label="median (quantile LSTM)" if i == 0 else None)
            ax.plot(t, p[i], "--", color="C3", linewidth=1, label="LSTM" if i == 0 else None)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("day")


def figure_fans(sim, real, args, path):
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, 3)
    test = sim["test"]
    picks = np.argsort([s.max() for s in test])[[-1, len(test) // 2, 0]]
    point = lambda w: sim["scaler"].inverse_transform(  # noqa: E731
        epinn.predict(sim["models"]["lstm"][0], sim["models"]["lstm"][1],
                      sim["scaler"].transform(w)), w)
    for ax, i in zip(axes[0], picks):
        _fan(ax, test[i], args.input_len, 14, sim["bands"]["lstm_quantile"], point, args,
             f"simulated test outbreak {i}")
    axes[0, 0].set_ylabel("daily incidence")
    gs = axes[1, 0].get_gridspec()
    for a in axes[1]:
        a.remove()
    ax = fig.add_subplot(gs[1, :])
    _fan(ax, real["series"], args.input_len, args.horizon,
         real["bands"]["sim_lstm_quantile"], point, args,
         f"{real['title']}: networks trained on simulations only, every {args.horizon}th origin")
    ax.axvline(real["first_origin"], color="0.5", linestyle=":",
               label="test part (chronological split)")
    ax.set_ylabel("count")
    ax.legend(frameon=False, fontsize="small", loc="upper right")
    fig.savefig(path, dpi=110)


def figure_errors(summary, path):
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [("simulated", "errors", "simulated held-out outbreaks"),
              ("real", "errors_all_origins", f"{summary['real']['title']}, all origins"),
              ("real", "errors", f"{summary['real']['title']}, test part")]
    names = sorted({n.removeprefix("sim_") for p, k, _ in panels for n in summary[p][k]})
    color = {n: f"C{j % 10}" for j, n in enumerate(names)}  # one colour per model
    for ax, (part, key, title) in zip(axes, panels):
        errs = summary[part][key]
        for name, e in sorted(errs.items()):
            style = "-" if ("lstm" in name or "gru" in name) else "--"
            ax.plot(np.arange(1, len(e["mae"]) + 1), e["mae"], style, marker="o",
                    markersize=3, color=color[name.removeprefix("sim_")],
                    label=f"{name} ({e['mae_mean']:.3g})")
        ax.set_xlabel("horizon step (days ahead)")
        ax.set_ylabel("MAE")
        ax.set_title(f"{title}: MAE per step (mean)", fontsize="medium")
        ax.legend(frameon=False, fontsize="x-small")
    fig.savefig(path, dpi=110)


def figure_learning(sim, real, path):
    hists = {k: v[2] for k, v in sim["models"].items()}
    hists["real_lstm"] = real["hist"]
    fig = Figure(figsize=(3.3 * len(hists), 3.2), layout="constrained")
    axes = fig.subplots(1, len(hists))
    for ax, (name, h) in zip(axes, hists.items()):
        plot_learning_curves(h, metrics=(), ax=ax)
        ax.set_title(name)
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _print_table(summary):
    parts = [("simulated", "errors", "coverage_80", "held-out simulated outbreaks"),
             ("real", "errors_all_origins", "coverage_80_all_origins",
              f"{summary['real']['dataset']}, all origins"),
             ("real", "errors", "coverage_80", f"{summary['real']['dataset']}, test part")]
    for part, key, cov, title in parts:
        print(f"\n{title}: MAE per horizon step (mean over steps first)")
        errs = summary[part][key]
        for name in sorted(errs, key=lambda k: errs[k]["mae_mean"]):
            steps = " ".join(f"{v:8.3g}" for v in errs[name]["mae"])
            print(f"  {name:22s} {errs[name]['mae_mean']:9.4g} | {steps}")
        for name, c in summary[part][cov].items():
            print(f"  80% interval coverage {name}: {c['overall']:.3f}")


def main(args_list: list[str] | None = None) -> dict:
    """Run both parts, write ``summary.json`` and the figures; returns the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    k_sim, k_real = jr.split(jr.PRNGKey(args.seed))
    t0 = time.perf_counter()
    sim_summary, sim = run_simulated(args, k_sim)
    real_summary, real = run_real(args, k_real, sim["models"], sim["scaler"])
    figures = ["forecast_fans.png", "error_per_horizon.png", "learning_curves.png"]
    summary = {
        "experiment": "rnn_forecast",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "simulated": sim_summary,
        "real": real_summary,
        "figures": figures,
    }
    figure_fans(sim, real, args, outdir / figures[0])
    figure_errors(summary, outdir / figures[1])
    figure_learning(sim, real, outdir / figures[2])
    summary["wall_time_s"] = time.perf_counter() - t0
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        _print_table(summary)
        print(f"\nwrote {outdir}/summary.json and {len(figures)} figures "
              f"({summary['wall_time_s']:.0f} s)")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
