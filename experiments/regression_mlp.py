"""Experiment: the first practical end to end -- an MLP for regression and for classification.

Regression. Inputs :math:`x \\in [-2, 2]^4` drawn uniformly, target

.. math::

    y = \\sin(2 x_1) + \\tfrac12 x_2^2 - 0.3\\, x_1 x_3 + 0.1\\, \\varepsilon,
    \\qquad \\varepsilon \\sim \\mathcal N(0, 1)

(:math:`x_4` is irrelevant). The steps of the practical: split 0.8 / 0.1 / 0.1; fit a
``Standardizer`` on the training inputs and targets only and apply it to every split; an
MLP 4-64-64-1 (ReLU, linear output); Adam, MSE loss, metrics MAE and R^2, learning rate,
batch size and early stopping on the validation loss (best weights restored); learning
curves; test metrics in the original units, against a linear least-squares baseline; and
predictions for new inputs (a slice through the input space, against the true function).

Classification. Three interleaved spirals in the plane (1/3 of the points per class), an MLP
2-64-64-3 with a softmax output and categorical cross-entropy on integer labels, accuracy
as the metric, the same split, scaling and stopping rule; decision regions on a grid.

Writes ``summary.json`` and PNG figures (learning curves for both runs, predictions against
truth, decision regions) to ``--outdir``. Small defaults run in well under a minute on a
laptop CPU (``--quick``: a smoke run of a few seconds)::

    python experiments/regression_mlp.py --outdir results/regression_mlp --seed 0
"""

from __future__ import annotations

import argparse
import functools
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
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_script,
)


def parse_args(args_list: list[str] | None = None) -> argparse.Namespace:
    p = ExperimentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=output_dir,
                   default="results/regression_mlp", help="output folder")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for everything random")
    p.add_argument("--epochs", type=positive_int, default=300, help="maximum epochs per run")
    p.add_argument("--samples", type=positive_int, default=2000, help="samples per data set")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--learning-rate", type=positive_float, default=3e-3)
    p.add_argument("--hidden", type=positive_int, default=64, help="units per hidden layer")
    p.add_argument("--patience", type=nonnegative_int, default=20, help="early-stopping patience")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 5 epochs, 150 samples, 8 hidden units")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(args_list)
    if args.quick:
        args.epochs, args.samples, args.hidden = min(args.epochs, 5), 150, 8
    if args.samples < 30:
        p.error(f"argument --samples: must be at least 30 (10 per split and class); "
                f"got {args.samples}")
    return args


def true_function(x: jax.Array) -> jax.Array:
    """The regression target without noise, ``(n, 4) -> (n, 1)``."""
    return (jnp.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - 0.3 * x[:, 0] * x[:, 2])[:, None]


@functools.partial(jax.jit, static_argnums=1)
def make_regression(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    kx, ke = jr.split(key)
    x = jr.uniform(kx, (n, 4), minval=-2.0, maxval=2.0)
    return x, true_function(x) + 0.1 * jr.normal(ke, (n, 1))


@functools.partial(jax.jit, static_argnums=(1, 2))
def make_spirals(key: jax.Array, n: int, classes: int = 3) -> tuple[jax.Array, jax.Array]:
    """``classes`` interleaved spiral arms in the plane with integer labels."""
    per = n // classes
    r = jnp.tile(jnp.linspace(0.05, 1.0, per), classes)
    labels = jnp.repeat(jnp.arange(classes), per)
    theta = 6.0 * r + labels * 2 * jnp.pi / classes + 0.3 * jr.normal(key, r.shape)
    return jnp.stack([r * jnp.cos(theta), r * jnp.sin(theta)], axis=1), labels


@functools.partial(jax.jit, static_argnums=3)
def _split_and_scale(key, x, y, scale_y):
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = epinn.train_val_test_split(
        x, y, fractions=(0.8, 0.1, 0.1), key=key
    )
    sx = epinn.Standardizer.fit(x_tr)  # statistics of the training split only
    sy = epinn.Standardizer.fit(y_tr) if scale_y else None
    ty = sy.transform if scale_y else (lambda v: v)
    data = {
        "train": (sx.transform(x_tr), ty(y_tr)),
        "val": (sx.transform(x_va), ty(y_va)),
        "test": (sx.transform(x_te), ty(y_te)),
        "raw_test": (x_te, y_te),
        "raw_train": (x_tr, y_tr),
    }
    return data, sx, sy


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return path.name


def run_regression(args, key: jax.Array, outdir: Path) -> dict:
    data_key, split_key, init_key, fit_key = jr.split(key, 4)
    x, y = make_regression(data_key, args.samples)
    data, sx, sy = _split_and_scale(split_key, x, y, scale_y=True)
    model = epinn.MLP((args.hidden, args.hidden, 1), activation="relu")
    params = jax.jit(model.init)(init_key, data["train"][0][:1])
    params, history = epinn.fit(
        model, params, *data["train"],
        loss="mse", optimizer="adam", learning_rate=args.learning_rate,
        epochs=args.epochs, batch_size=min(args.batch_size, data["train"][0].shape[0]),
        validation_data=data["val"], metrics=("mae", "r2"),
        early_stopping=epinn.EarlyStopping(monitor="val_loss", patience=args.patience),
        key=fit_key, verbose=0 if args.quiet else 1,
    )
    # Test metrics in the original units of y.
    x_te, y_te = data["raw_test"]
    pred_te = sy.inverse_transform(epinn.predict(model, params, sx.transform(x_te)))
    test = {name: float(epinn.METRICS[name](pred_te, y_te)) for name in ("mse", "mae", "rmse",
                                                                         "r2")}
    # Baseline: linear least squares on the same training data (float64, numpy).
    x_tr, y_tr = (np.asarray(a, np.float64) for a in data["raw_train"])
    design = lambda a: np.hstack([np.asarray(a, np.float64), np.ones((len(a), 1))])  # noqa: E731
    coef = np.linalg.lstsq(design(x_tr), y_tr, rcond=None)[0]
    linear_r2 = float(epinn.r2_score(design(x_te) @ coef, np.asarray(y_te, np.float64)))
    # New inputs: a slice x1 in [-2, 2] with x2 = x3 = x4 = 0, where y = sin(2 x1).
    x_new = jnp.zeros((41, 4)).at[:, 0].set(jnp.linspace(-2.0, 2.0, 41))
    y_new = sy.inverse_transform(epinn.predict(model, params, sx.transform(x_new)))
    truth_new = true_function(x_new)

    figures = [_save(epinn.plot_learning_curves(history, log_loss=True),
                     outdir / "regression_learning_curves.png")]
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax_parity, ax_slice = fig.subplots(1, 2)
    epinn.plot_predictions(y_te, pred_te, ax=ax_parity)
    ax_parity.set_title(f"test set: R$^2$ = {test['r2']:.3f}")
    ax_slice.plot(x_new[:, 0], truth_new[:, 0], "k-", label="truth")
    ax_slice.plot(x_new[:, 0], y_new[:, 0], "C1--", label="MLP prediction")
    ax_slice.set_xlabel("$x_1$ (other inputs 0)")
    ax_slice.set_ylabel("y")
    ax_slice.set_title("new inputs")
    ax_slice.legend(frameon=False)
    figures.append(_save(fig, outdir / "regression_predictions.png"))

    return {
        "n": {k: int(data[k][0].shape[0]) for k in ("train", "val", "test")},
        "model": {"features": [args.hidden, args.hidden, 1], "activation": "relu"},
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason,
        "compile_time_s": history.compile_time,
        "train_time_s": float(sum(history.epoch_time)),
        "final_val_loss_scaled": history.val_loss[history.best_epoch - 1],
        "test": test,
        "linear_baseline_test_r2": linear_r2,
        "new_inputs": {
            "x1": np.asarray(x_new[:, 0]).round(3).tolist(),
            "prediction": np.asarray(y_new[:, 0]).round(4).tolist(),
            "truth": np.asarray(truth_new[:, 0]).round(4).tolist(),
            "max_abs_error": float(jnp.max(jnp.abs(y_new - truth_new))),
        },
        "figures": figures,
    }


def run_classification(args, key: jax.Array, outdir: Path) -> dict:
    data_key, split_key, init_key, fit_key = jr.split(key, 4)
    x, labels = make_spirals(data_key, args.samples)
    data, sx, _ = _split_and_scale(split_key, x, labels, scale_y=False)
    model = epinn.MLP((args.hidden, args.hidden, 3), activation="relu",
                      output_activation="softmax")
    params = jax.jit(model.init)(init_key, data["train"][0][:1])
    params, history = epinn.fit(
        model, params, *data["train"],
        loss="categorical_cross_entropy", optimizer="adam", learning_rate=args.learning_rate,
        epochs=args.epochs, batch_size=min(args.batch_size, data["train"][0].shape[0]),
        validation_data=data["val"], metrics=("accuracy",),
        early_stopping=epinn.EarlyStopping(monitor="val_loss", patience=args.patience),
        key=fit_key, verbose=0 if args.quiet else 1,
    )
    test = epinn.evaluate(model, params, *data["test"],
                          metrics=("accuracy", "categorical_cross_entropy"))
    # Decision regions on a grid in the original coordinates.
    g = np.linspace(-1.3, 1.3, 150)
    gx, gy = np.meshgrid(g, g)
    grid = sx.transform(jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), jnp.float32))
    grid_labels = np.asarray(jnp.argmax(epinn.predict(model, params, grid), axis=-1))
    x_te, y_te = data["raw_test"]
    figures = [_save(epinn.plot_learning_curves(history), outdir /
                     "classification_learning_curves.png")]
    fig = epinn.plot_decision_regions(gx, gy, grid_labels.reshape(gx.shape), x_te, y_te)
    fig.axes[0].set_title(f"spirals, test accuracy {test['accuracy']:.3f}")
    figures.append(_save(fig, outdir / "classification_decision_regions.png"))
    return {
        "n": {k: int(data[k][0].shape[0]) for k in ("train", "val", "test")},
        "model": {"features": [args.hidden, args.hidden, 3], "activation": "relu",
                  "output_activation": "softmax"},
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason,
        "compile_time_s": history.compile_time,
        "train_time_s": float(sum(history.epoch_time)),
        "test": test,
        "figures": figures,
    }


def main(args_list: list[str] | None = None) -> dict:
    """Run both parts and write ``summary.json``; returns the summary."""
    args = parse_args(args_list)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    reg_key, cls_key = jr.split(jr.PRNGKey(args.seed))
    t0 = time.perf_counter()
    summary = {
        "experiment": "regression_mlp",
        "config": vars(args),
        "versions": {"epinn": epinn.__version__, "jax": jax.__version__},
        "regression": run_regression(args, reg_key, outdir),
        "classification": run_classification(args, cls_key, outdir),
    }
    summary["wall_time_s"] = time.perf_counter() - t0
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.quiet:
        r, c = summary["regression"], summary["classification"]
        print(f"regression: test R2 {r['test']['r2']:.3f} "
              f"(linear {r['linear_baseline_test_r2']:.3f}), RMSE {r['test']['rmse']:.3f}, "
              f"best epoch {r['best_epoch']}/{r['epochs_run']}")
        print(f"classification: test accuracy {c['test']['accuracy']:.3f}, "
              f"best epoch {c['best_epoch']}/{c['epochs_run']}")
        print(f"wrote {outdir}/summary.json and {len(r['figures']) + len(c['figures'])} figures")
    return summary


if __name__ == "__main__":
    status = run_script(main)  # one line on stderr on failure, no traceback
    if status:
        sys.exit(status)
