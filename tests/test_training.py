"""Tests for epinn.training: fit, optimizers, metrics, early stopping, history, checkpoints."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import epinn
from epinn.data import batch_indices
from epinn.training import (
    METRICS,
    OPTIMIZERS,
    EarlyStopping,
    History,
    LossDivergenceWarning,
    NonFiniteLossError,
    accuracy,
    evaluate,
    fit,
    get_optimizer,
    load_checkpoint,
    predict,
    r2_score,
    rmse,
    save_checkpoint,
)
from tests.helpers import count_compilations

XOR_X = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = jnp.array([[0.0], [1.0], [1.0], [0.0]])


def linear(p, x):
    """A plain-function model: x @ w + b."""
    return x @ p["w"] + p["b"]


def tree_equal(a, b) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(
        np.asarray(u).dtype == np.asarray(v).dtype and np.array_equal(u, v)
        for u, v in zip(la, lb)
    )


@pytest.fixture
def regression(key):
    """Standardised inputs and a linear target with a little noise (n = 64, d = 3)."""
    kx, kn = jr.split(key)
    x = jr.normal(kx, (64, 3))
    y = x @ jnp.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * jr.normal(kn, (64, 1))
    params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
    return x, y, params


# ------------------------------------------------------------------------------- XOR


def test_one_hidden_layer_mlp_solves_xor(key):
    model = epinn.MLP((8, 1), activation="tanh", output_activation="sigmoid")
    params = model.init(key, XOR_X)
    params, history = fit(model, params, XOR_X, XOR_Y, loss="binary_cross_entropy",
                          learning_rate=0.05, epochs=300, metrics=("accuracy",), verbose=0)
    assert evaluate(model, params, XOR_X, XOR_Y, metrics=("accuracy",))["accuracy"] == 1.0
    assert history.metrics["accuracy"][-1] == 1.0
    np.testing.assert_array_equal(predict(model, params, XOR_X) > 0.5, XOR_Y > 0.5)


def test_linear_model_cannot_solve_xor(key):
    model = epinn.MLP((1,), output_activation="sigmoid")
    params = model.init(key, XOR_X)
    params, history = fit(model, params, XOR_X, XOR_Y, loss="binary_cross_entropy",
                          learning_rate=0.05, epochs=300, verbose=0)
    # A linear decision boundary classifies at most 3 of the 4 XOR points correctly ...
    assert evaluate(model, params, XOR_X, XOR_Y, metrics=("accuracy",))["accuracy"] <= 0.75
    # ... and the best logistic-regression loss on XOR is log 2 (at w = 0, b = 0, by
    # symmetry and convexity); float32 rounding of the loss allows 1e-6.
    assert history.train_loss[-1] >= math.log(2) - 1e-6


# ------------------------------------------------------- batching modes vs references


def test_full_batch_gd_converges_to_least_squares(regression):
    x, y, params = regression
    params, history = fit(linear, params, x, y, optimizer="gd", learning_rate=0.1,
                          epochs=400, verbose=0)
    xa = np.hstack([np.asarray(x, np.float64), np.ones((64, 1))])
    coef = np.linalg.lstsq(xa, np.asarray(y, np.float64), rcond=None)[0]
    # GD on a well-conditioned quadratic converges geometrically; after 400 steps the
    # remaining error is below float32 resolution of the loss, ~1e-5 in the coefficients.
    np.testing.assert_allclose(params["w"], coef[:3], atol=1e-4)
    np.testing.assert_allclose(params["b"], coef[3], atol=1e-4)
    assert history.stop_reason == "completed" and len(history) == 400


def test_full_batch_epoch_is_one_gradient_step(regression):
    x, y, params = regression
    new, _ = fit(linear, params, x, y, optimizer="gd", learning_rate=0.1, epochs=1, verbose=0)
    grads = jax.grad(lambda p: jnp.mean((linear(p, x) - y) ** 2))(params)
    expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-6, atol=1e-7),
                               new, expected))


@pytest.mark.parametrize("batch_size", [1, 16, 20])
def test_minibatch_epoch_matches_hand_written_loop(regression, key, batch_size):
    """One epoch of fit == a Python loop over the documented shuffled minibatches."""
    x, y, params = regression
    new, history = fit(linear, params, x, y, optimizer="sgd", learning_rate=0.05, epochs=1,
                       batch_size=batch_size, key=key, verbose=0)
    perm_key, _ = jr.split(jr.fold_in(key, 0))
    full, rest = batch_indices(perm_key, x.shape[0], batch_size)
    batches = list(full) + ([rest] if rest.shape[0] else [])
    grad = jax.jit(jax.value_and_grad(lambda q, xb, yb: jnp.mean((linear(q, xb) - yb) ** 2)))
    p, losses = params, []
    for idx in batches:
        lval, g = grad(p, x[idx], y[idx])
        p = jax.tree_util.tree_map(lambda a, b: a - 0.05 * b, p, g)
        losses.append(float(lval) * idx.shape[0])
    # Same arithmetic, different compiled programs (fusion order): float32 rounding only.
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6), new, p))
    np.testing.assert_allclose(history.train_loss[0], sum(losses) / x.shape[0], rtol=1e-5)


def test_l2_regularizer_gives_ridge_solution(regression):
    x, y, params = regression
    lam = 0.5
    params = {"w": params["w"]}

    def model(p, x):
        return x @ p["w"]

    fitted, history = fit(model, params, x, y, optimizer="gd", learning_rate=0.1, epochs=500,
                          regularizer=lambda p: lam * jnp.sum(p["w"] ** 2), verbose=0)
    xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
    # d/dw [mean((Xw - y)^2) + lam |w|^2] = 0  <=>  (X'X/n + lam I) w = X'y/n
    ridge = np.linalg.solve(xn.T @ xn / 64 + lam * np.eye(3), xn.T @ yn / 64)
    np.testing.assert_allclose(fitted["w"], ridge, atol=1e-4)
    np.testing.assert_allclose(history.metrics["penalty"][-1], lam * np.sum(ridge**2),
                               rtol=1e-3)


# ---------------------------------------------------------------- optimizers, schedules


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_name_trains(regression, key, name):
    x, y, params = regression
    lr = 0.5 if name == "adagrad" else 0.05
    _, history = fit(linear, params, x, y, optimizer=name, learning_rate=lr, epochs=30,
                     batch_size=16, key=key, verbose=0)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]


@pytest.mark.parametrize("opt", [optax.adam(0.05), optax.adamw, optax.chain(
    optax.clip_by_global_norm(1.0), optax.sgd(0.05))])
def test_optax_transformations_and_factories(regression, opt):
    x, y, params = regression
    _, history = fit(linear, params, x, y, optimizer=opt, learning_rate=0.05, epochs=30,
                     verbose=0)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]


def test_schedules_are_used(regression):
    x, y, params = regression
    frozen, _ = fit(linear, params, x, y, optimizer="sgd",
                    learning_rate=optax.constant_schedule(0.0), epochs=3, verbose=0)
    assert tree_equal(frozen, params)  # a zero learning rate leaves params untouched
    decay = optax.exponential_decay(0.1, transition_steps=10, decay_rate=0.5)
    _, history = fit(linear, params, x, y, optimizer="sgd", learning_rate=decay, epochs=50,
                     verbose=0)
    assert history.train_loss[-1] < 0.1 * history.train_loss[0]


def test_get_optimizer_errors():
    with pytest.raises(ValueError, match="adam"):  # lists the valid names
        get_optimizer("adamm", 1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        get_optimizer("sgd", -1.0)
    with pytest.raises(TypeError, match="optimizer"):
        get_optimizer(3, 1e-3)
    with pytest.raises(TypeError, match="optimizer"):
        get_optimizer(lambda lr: "not a transformation", 1e-3)
    tx = get_optimizer("momentum", 0.1, momentum=0.5)
    assert isinstance(tx, optax.GradientTransformation)


# -------------------------------------------------------------- early stopping, history


def _overfit_setup(key):
    """Validation targets the opposite of training targets: val loss rises as it fits."""
    x = jr.normal(key, (32, 2))
    y = x[:, :1] - x[:, 1:]
    return x, y, (x, -y), {"w": jnp.zeros((2, 1)), "b": jnp.zeros((1,))}


def test_early_stopping_stops_and_restores_best(key):
    x, y, val, params = _overfit_setup(key)
    # Noisy minibatch training for a few epochs, then val loss rises.
    es = EarlyStopping(monitor="val_loss", patience=3)
    fitted, history = fit(linear, params, x, y, optimizer="sgd", learning_rate=0.05,
                          epochs=100, batch_size=8, key=key, validation_data=val,
                          early_stopping=es, verbose=0)
    assert history.stop_reason == "early_stopping"
    best = history.best_epoch
    assert best == int(np.argmin(history.val_loss)) + 1
    assert len(history) == best + 3  # stopped after `patience` epochs without improvement
    assert history.params_epoch == best
    # The returned params are exactly those after epoch `best`: rerun for `best` epochs.
    again, _ = fit(linear, params, x, y, optimizer="sgd", learning_rate=0.05, epochs=best,
                   batch_size=8, key=key, validation_data=val, verbose=0)
    assert tree_equal(fitted, again)
    val_mse = evaluate(linear, fitted, *val, metrics=("mse",))["mse"]
    np.testing.assert_allclose(val_mse, history.val_loss[best - 1], rtol=1e-6)


def test_best_params_restored_even_if_not_fired(key):
    x, y, val, params = _overfit_setup(key)
    es = EarlyStopping(monitor="val_loss", patience=1000)
    fitted, history = fit(linear, params, x, y, optimizer="sgd", learning_rate=0.05,
                          epochs=6, batch_size=8, key=key, validation_data=val,
                          early_stopping=es, verbose=0)
    assert history.stop_reason == "completed" and len(history) == 6
    assert history.best_epoch < 6 and history.params_epoch == history.best_epoch
    val_mse = evaluate(linear, fitted, *val)["mse"]
    np.testing.assert_allclose(val_mse, min(history.val_loss), rtol=1e-6)
    # restore_best=False returns the last epoch's params.
    last, h2 = fit(linear, params, x, y, optimizer="sgd", learning_rate=0.05, epochs=6,
                   batch_size=8, key=key, validation_data=val, verbose=0,
                   early_stopping=EarlyStopping(patience=1000, restore_best=False))
    assert h2.params_epoch == 6
    np.testing.assert_allclose(evaluate(linear, last, *val)["mse"], h2.val_loss[-1], rtol=1e-6)


def test_early_stopping_rule_unit():
    es = EarlyStopping(monitor="loss", patience=2, min_delta=0.1)
    values = [1.0, 0.95, 0.85, 0.9, 0.8]  # 0.95 is not 0.1 better; 0.85 is
    states = []
    for epoch, v in enumerate(values, start=1):
        es = es.update(v, epoch)
        states.append((es.best_epoch, es.wait, es.should_stop))
    assert states == [(1, 0, False), (1, 1, False), (3, 0, False), (3, 1, False),
                      (3, 2, True)]
    acc = EarlyStopping(monitor="val_accuracy", patience=0)
    assert acc.maximize
    acc = acc.update(0.5, 1).update(0.7, 2)
    assert acc.best_epoch == 2 and not acc.should_stop
    assert acc.update(0.6, 3).should_stop
    assert jax.tree_util.tree_leaves(acc)  # a PyTree with state leaves
    assert acc.reset().best_value is None


def test_early_stopping_bad_arguments(key):
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")
    x, y, val, params = _overfit_setup(key)
    with pytest.raises(ValueError, match="early_stopping"):  # no validation data
        fit(linear, params, x, y, early_stopping=EarlyStopping(), verbose=0)
    with pytest.raises(ValueError, match="early_stopping"):  # metric not recorded
        fit(linear, params, x, y, validation_data=val, verbose=0,
            early_stopping=EarlyStopping(monitor="val_mae"))


def test_history_is_complete(key):
    x, y, val, params = _overfit_setup(key)
    _, history = fit(linear, params, x, y, epochs=4, batch_size=10, key=key,
                     validation_data=val, metrics=("mae", "r2"), verbose=0,
                     regularizer=lambda p: 1e-3 * jnp.sum(p["w"] ** 2))
    assert history.epochs == [1, 2, 3, 4]
    assert len(history.train_loss) == len(history.val_loss) == len(history.epoch_time) == 4
    assert set(history.metrics) == {"mae", "r2", "val_mae", "val_r2", "penalty"}
    assert all(len(v) == 4 for v in history.metrics.values())
    assert history["loss"] is history.train_loss and history["val_mae"] is not None
    assert history.compile_time > 0 and all(t > 0 for t in history.epoch_time)
    assert history.monitor == "val_loss"
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert history.params_epoch == 4 and history.stop_reason == "completed"
    d = json.loads(json.dumps(history.to_dict()))
    assert History.from_dict(d) == history
    # The recorded train metrics are the trained model's, in evaluation mode.
    fitted, _ = fit(linear, params, x, y, epochs=1, batch_size=10, key=key, verbose=0)
    _, h1 = fit(linear, params, x, y, epochs=1, batch_size=10, key=key, verbose=0,
                metrics=("mae",))
    np.testing.assert_allclose(h1.metrics["mae"][0], evaluate(linear, fitted, x, y, ("mae",))
                               ["mae"], rtol=1e-6)


# ------------------------------------------------------------- reproducibility, dropout


def test_same_seed_bit_identical(key):
    model = epinn.MLP((16, 16, 1), dropout_rate=0.1)
    x = jr.normal(key, (50, 2))
    y = jnp.sin(x[:, :1])
    p0 = model.init(jr.PRNGKey(1), x[:1])
    runs = [fit(model, p0, x, y, epochs=3, batch_size=8, key=k, verbose=0)[0]
            for k in (jr.PRNGKey(7), jr.PRNGKey(7), jr.PRNGKey(8))]
    assert tree_equal(runs[0], runs[1])
    assert not tree_equal(runs[0], runs[2])


class _TrainFlag(nn.Module):
    """Adds 10 in training mode and needs the 'dropout' rng there."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = self.param("w", nn.initializers.zeros, (x.shape[-1], 1))
        out = x @ w
        if train:
            out = out + 10.0 + 0.0 * jr.uniform(self.make_rng("dropout"))
        return out


def test_train_flag_and_dropout_rng(key):
    model = _TrainFlag()
    x = jnp.ones((8, 2))
    y = jnp.zeros((8, 1))
    params = model.init(key, x)
    _, history = fit(model, params, x, y, optimizer="sgd", learning_rate=1e-9, epochs=1,
                     metrics=("mse",), verbose=0)
    np.testing.assert_allclose(history.train_loss[0], 100.0, rtol=1e-6)  # train=True
    np.testing.assert_allclose(history.metrics["mse"][0], 0.0, atol=1e-12)  # train=False


def test_dropout_model_needs_key(key):
    model = epinn.MLP((4, 1), dropout_rate=0.5)
    x = jnp.ones((8, 2))
    params = model.init(key, x)
    with pytest.raises(ValueError, match="key"):
        fit(model, params, x, jnp.zeros((8, 1)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="key"):
        fit(epinn.MLP((4, 1)), params, x, jnp.zeros((8, 1)), epochs=1, batch_size=2,
            verbose=0)


# ------------------------------------------------------------------------ non-finite


def test_diverging_loss_raises_naming_epoch():
    x = jnp.linspace(1.0, 2.0, 16)[:, None]
    params = {"w": jnp.ones((1, 1)), "b": jnp.zeros((1,))}
    with pytest.raises(FloatingPointError, match=r"epoch \d+") as err, \
            pytest.warns(LossDivergenceWarning, match="learning_rate"):
        fit(linear, params, x, 3 * x, optimizer="sgd", learning_rate=50.0, epochs=1000,
            verbose=0)
    assert isinstance(err.value, NonFiniteLossError)
    assert err.value.epoch > 1  # it diverged gradually, so earlier epochs were finite
    assert len(err.value.history) == err.value.epoch - 1
    assert all(np.isfinite(err.value.history.train_loss))


def test_nan_loss_first_epoch(regression):
    x, y, params = regression
    with pytest.raises(FloatingPointError, match="epoch 1 "):
        fit(linear, params, x, y, loss=lambda p, t: jnp.mean(jnp.log(p - p - 1.0)), verbose=0)


def test_non_finite_parameters_metrics_and_validation_raise(regression, key):
    """Not only the loss before each update: the parameters and every recorded value."""
    x, y, params = regression
    cases = [  # (keyword arguments, stop_reason, what the message names)
        (dict(optimizer="sgd", learning_rate=1e38), "non-finite parameters", "parameters"),
        (dict(optimizer="sgd", learning_rate=1e38, batch_size=16, key=key),  # 2nd step
         "non-finite loss", "training loss became"),
        (dict(optimizer="sgd", learning_rate=1e38, epochs=3), "non-finite parameters",
         "epoch 1 of 3"),
        (dict(metrics=(lambda p, t: jnp.log(-jnp.abs(jnp.mean(p)) - 1.0),)),
         "non-finite metric", "<lambda>"),
        (dict(validation_data=(x, y), metrics=("mse", lambda p, t: 1.0 / (0.0 * p).sum())),
         "non-finite metric", "<lambda>"),
        (dict(regularizer=lambda p: jnp.log(-jnp.sum(p["w"] ** 2) - 1.0)),
         "non-finite loss", "loss"),
    ]
    for kwargs, reason, match in cases:
        kwargs = {"epochs": 2, "verbose": 0, **kwargs}
        with pytest.raises(NonFiniteLossError, match=match) as err:
            fit(linear, params, x, y, **kwargs)
        assert err.value.history.stop_reason == reason, kwargs
        assert err.value.epoch == 1 and len(err.value.history) == 0
        assert "learning_rate" in str(err.value)
    # A non-finite validation loss (finite training loss and parameters).
    with pytest.raises(NonFiniteLossError, match="val_loss"):
        fit(linear, params, x, y, epochs=1, verbose=0, loss=lambda p, t: jnp.mean(p - t) ** 2
            + jnp.where(p.shape[0] == 64, 0.0, jnp.inf),
            validation_data=(x[:8], y[:8]))


def test_exploding_loss_warns_once(regression):
    x, y, params = regression
    with pytest.warns(LossDivergenceWarning, match=r"epoch 2.*learning_rate") as record:
        _, hist = fit(linear, params, x, y, optimizer="sgd", learning_rate=1e3, epochs=3,
                      verbose=0)
    assert len(record) == 1
    assert hist.train_loss[1] > epinn.training.DIVERGENCE_FACTOR * hist.train_loss[0]
    assert hist.stop_reason == "completed"
    # A validation loss that explodes warns too.
    with pytest.warns(LossDivergenceWarning, match="val_loss"):
        fit(linear, params, x, y, optimizer="sgd", learning_rate=1e3, epochs=2, verbose=0,
            validation_data=(x[:8], y[:8]))
    # A healthy fit does not warn (filterwarnings=error would fail it).
    fit(linear, params, x, y, optimizer="sgd", learning_rate=0.1, epochs=5, verbose=0)


# -------------------------------------------------------------------- bad arguments


def test_bad_inputs(regression, key):
    x, y, params = regression
    cases = [
        (dict(y=y[:-1]), ValueError, "same number of samples"),
        (dict(x=x[:0], y=y[:0]), ValueError, "non-empty"),
        (dict(x=x.at[3, 1].set(jnp.nan)), ValueError, "`x`"),
        (dict(y=y.at[0, 0].set(jnp.inf)), ValueError, "`y`"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=65), ValueError, "batch_size"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(loss="mean_squared"), ValueError, "loss.*mse"),
        (dict(optimizer="adamw2"), ValueError, "optimizer.*rmsprop"),
        (dict(metrics=("acc",)), ValueError, "metric.*accuracy"),
        (dict(learning_rate=0.0), ValueError, "learning_rate"),
        (dict(y=y[:, 0]), ValueError, "`y`"),
        (dict(validation_data=(x, y[:3])), ValueError, "same number of samples"),
        (dict(validation_data=(x[:, :2], y)), ValueError, "validation_data"),
        (dict(validation_data=x), ValueError, "validation_data"),
        (dict(regularizer=3.0), TypeError, "regularizer"),
    ]
    for kwargs, err, match in cases:
        args = {"x": x, "y": y}
        args.update({k: kwargs.pop(k) for k in ("x", "y") if k in kwargs})
        with pytest.raises(err, match=match):
            fit(linear, params, args["x"], args["y"], key=key, verbose=0, **kwargs)
    with pytest.raises(TypeError, match="model"):
        fit("mlp", params, x, y, verbose=0)
    with pytest.raises(TypeError, match="key"):
        fit(linear, params, x, y, batch_size=8, key=0, verbose=0)
    with pytest.raises(ValueError, match="x"):  # params expect 3 inputs
        fit(linear, params, x[:, :2], y, verbose=0)


def test_bad_arguments_named_before_any_compilation(regression, key):
    """Each bad argument is named (type and message) before anything is compiled."""
    x, y, params = regression
    jnp.zeros(1) + 1  # warm up eager ops
    cases = [
        (dict(learning_rate="0.01"), TypeError, "`learning_rate`"),
        (dict(learning_rate=float("nan")), ValueError, "`learning_rate`"),
        (dict(epochs=50.0), TypeError, "`epochs`"),
        (dict(epochs="5"), TypeError, "`epochs`"),
        (dict(epochs=np.int64(0)), ValueError, "`epochs`"),
        (dict(batch_size="8"), TypeError, "`batch_size`"),
        (dict(optimizer="rmsprp"), ValueError, "`optimizer`.*did you mean 'rmsprop'"),
        (dict(loss="gausian_nll"), ValueError, "`loss`.*did you mean 'gaussian_nll'"),
        (dict(metrics=("acuracy",)), ValueError, "metrics.*did you mean 'accuracy'"),
        (dict(metrics=(3,)), TypeError, "metrics"),
        (dict(verbose="yes"), TypeError, "`verbose`"),
        (dict(early_stopping=EarlyStopping(monitor="val_los")), ValueError,
         "early_stopping.*did you mean 'val_loss'"),
        (dict(early_stopping="yes"), TypeError, "early_stopping"),
        (dict(validation_data=(x, [["a"]] * 64)), TypeError, r"validation_data\[1\]"),
    ]
    bad_params = {"w": np.array([[1.0], [np.nan], [0.0]], np.float32), "b": np.zeros(1)}
    with count_compilations() as c, pytest.raises(ValueError, match=r"`params`.*\['w'\]"):
        fit(linear, bad_params, x, y, verbose=0)
    assert c.count == 0
    for kwargs, err, match in cases:
        kwargs = {"verbose": 0, "epochs": 1, "validation_data": (x, y), **kwargs}
        with count_compilations() as c, pytest.raises(err, match=match):
            fit(linear, params, x, y, key=key, **kwargs)
        assert c.count == 0, kwargs
    for call, err, match in [
        (lambda: fit(linear, params, "abc", y, verbose=0), TypeError, "`x`"),
        (lambda: fit(linear, params, x, None, verbose=0), TypeError, "`y`"),
        (lambda: EarlyStopping(min_delta="0.1"), TypeError, "`min_delta`"),
        (lambda: EarlyStopping(patience=2.0), TypeError, "`patience`"),
        (lambda: EarlyStopping(mode=None), ValueError, "`mode`"),
        (lambda: EarlyStopping(restore_best="no"), TypeError, "`restore_best`"),
        (lambda: get_optimizer("sgd", "1e-2"), TypeError, "`learning_rate`"),
        (lambda: predict(linear, params, x, batch_size=0), ValueError, "`batch_size`"),
        (lambda: predict(linear, params, x, batch_size="2"), TypeError, "`batch_size`"),
        (lambda: evaluate(linear, params, x, y, metrics=("rsme",)), ValueError,
         "did you mean 'rmse'"),
        (lambda: r2_score("abc", y), TypeError, "`predictions`"),
        (lambda: rmse(y, {"a": 1}), TypeError, "`targets`"),
        (lambda: accuracy(y, [["x"]]), TypeError, "`targets`"),
    ]:
        with count_compilations() as c, pytest.raises(err, match=match):
            call()
        assert c.count == 0, match
    # NumPy integer counts are valid counts.
    _, hist = fit(linear, params, x, y, epochs=np.int64(2), batch_size=np.int32(16), key=key,
                  verbose=0)
    assert len(hist) == 2


# ------------------------------------------------------------------- predict, metrics


def test_predict_batched_matches_full(key):
    model = epinn.MLP((8, 2))
    x = jr.normal(key, (23, 3))
    params = model.init(key, x)
    full = predict(model, params, x)
    np.testing.assert_allclose(predict(model, params, x, batch_size=5), full, rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(full, model.apply(params, x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, params, x, batch_size=0)


def test_metrics_against_numpy(key):
    k1, k2 = jr.split(key)
    y = np.asarray(jr.normal(k1, (40, 2)))
    p = y + 0.3 * np.asarray(jr.normal(k2, (40, 2)))
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2_score(p, y), np.mean(1 - ss_res / ss_tot), rtol=1e-5)
    np.testing.assert_allclose(rmse(p, y), np.sqrt(np.mean((y - p) ** 2)), rtol=1e-6)
    assert float(r2_score(y, y)) == 1.0
    const = np.ones((5, 1))
    assert float(r2_score(const, const)) == 1.0 and float(r2_score(const + 1, const)) == 0.0
    out = evaluate(lambda q, x: x, None, p, y, metrics=("mse", "mae", "rmse", "r2"))
    np.testing.assert_allclose(out["mae"], np.mean(np.abs(y - p)), rtol=1e-6)
    np.testing.assert_allclose(out["rmse"] ** 2, out["mse"], rtol=1e-6)


def test_accuracy_forms():
    probs = jnp.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.5, 0.2, 0.3]])
    labels = jnp.array([1, 0, 1, 0])  # 3 of 4 right
    assert float(accuracy(probs, labels)) == 0.75
    assert float(accuracy(probs, labels[:, None])) == 0.75
    assert float(accuracy(probs, jax.nn.one_hot(labels, 3))) == 0.75
    binary = jnp.array([[0.9], [0.4], [0.6], [0.2]])
    assert float(accuracy(binary, jnp.array([[1.0], [0.0], [0.0], [0.0]]))) == 0.75
    assert float(accuracy(binary[:, 0], jnp.array([1, 0, 1, 0]))) == 1.0
    with pytest.raises(ValueError, match="targets"):
        accuracy(probs, jnp.zeros((4, 2)))


def test_metric_registry_and_errors(key):
    assert {"mse", "mae", "rmse", "r2", "accuracy", "binary_cross_entropy",
            "categorical_cross_entropy"} <= set(METRICS)
    x = jnp.ones((4, 1))
    with pytest.raises(ValueError, match="accuracy"):
        evaluate(lambda p, x: x, None, x, x, metrics=("acuracy",))
    with pytest.raises(ValueError, match="same number of samples"):
        evaluate(lambda p, x: x, None, x, x[:2])


# ---------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_exact(tmp_path, key):
    model = epinn.MLP((8, 1))
    x = jr.normal(key, (20, 3))
    params = model.init(key, x)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
    _, opt_state = tx.update(grads, opt_state, params)  # non-trivial moments and count
    history = History(train_loss=[1.0, 0.5], val_loss=[1.1, 0.7], metrics={"mae": [0.9, 0.6]},
                      epoch_time=[0.1, 0.1], best_epoch=2, params_epoch=2,
                      stop_reason="completed")
    path = tmp_path / "model.msgpack"
    save_checkpoint(path, params, opt_state, history, config={"features": [8, 1]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.msgpack", "model.msgpack.json"]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    ck = load_checkpoint(path, zeros, opt_state_template=tx.init(zeros))
    assert tree_equal(ck.params, params)
    assert tree_equal(ck.opt_state, opt_state)
    assert ck.history == history and ck.config == {"features": [8, 1]}
    assert ck.metadata["versions"]["jax"] == jax.__version__
    assert load_checkpoint(path, zeros).opt_state is None


def test_checkpoint_mismatched_template(tmp_path, key):
    x = jnp.ones((2, 3))
    params = epinn.MLP((8, 1)).init(key, x)
    path = tmp_path / "ck.msgpack"
    save_checkpoint(path, params)
    with pytest.raises(ValueError, match="shape"):  # same keys, other sizes
        load_checkpoint(path, epinn.MLP((4, 1)).init(key, x))
    with pytest.raises(ValueError, match="params"):  # other layers
        load_checkpoint(path, epinn.MLP((8, 8, 1)).init(key, x))
    with pytest.raises(ValueError, match="dtype"):
        load_checkpoint(path, jax.tree_util.tree_map(lambda a: a.astype(jnp.int32), params))
    with pytest.raises(ValueError, match="opt_state"):
        load_checkpoint(path, params, opt_state_template=optax.adam(1e-3).init(params))
    with pytest.raises(TypeError, match="config"):
        save_checkpoint(tmp_path / "bad.msgpack", params, config={"f": object()})
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.msgpack", params)


def test_verbose_progress_bar(regression, capsys):
    x, y, params = regression
    fit(linear, params, x, y, epochs=2, verbose=1)
    assert "2/2" in capsys.readouterr().err
    fit(linear, params, x, y, epochs=2, verbose=0)
    assert capsys.readouterr().err == ""


def test_exported_from_epinn():
    for name in ("fit", "predict", "evaluate", "EarlyStopping", "History", "get_optimizer",
                 "save_checkpoint", "load_checkpoint"):
        assert getattr(epinn, name) is getattr(epinn.training, name)


def test_bad_targets_keys_options_and_files_are_named(tmp_path):
    model, x = epinn.MLP((4, 3)), jnp.ones((8, 1))
    params = model.init(jr.PRNGKey(0), x)
    def fit(y, **kw):
        return epinn.fit(model, params, x, y, epochs=1, **{"verbose": 0, **kw})

    # Class labels outside [0, 3) used to train quietly (-1 wraps) or end in a NaN loss.
    for labels in (-1, 3):
        with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
            fit(jnp.full((8,), labels), loss="cce")
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
        fit(jnp.full((8,), 1), loss="cce", validation_data=(x, jnp.full((8,), 5)))
    one = epinn.MLP((4, 1))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        epinn.fit(one, one.init(jr.PRNGKey(0), x), x, jnp.full((8, 1), 2.0), loss="bce",
                  epochs=1, verbose=0)
    assert len(fit(jnp.full((8,), 2), loss="cce", verbose=False)[1].train_loss) == 1
    with pytest.raises(TypeError, match="verbose"):
        fit(jnp.full((8,), 2), loss="cce", verbose="yes")
    with pytest.raises(TypeError, match="key"):  # a float array is not a key
        fit(jnp.full((8,), 2), loss="cce", batch_size=4, key=jnp.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="x` must hold real numbers"):
        epinn.fit(model, params, x + 0j, jnp.full((8,), 2), loss="cce", verbose=0)
    with pytest.raises(ValueError, match="x` must be a rectangular array"):
        epinn.fit(model, params, [[1.0], [2.0, 3.0]], jnp.full((2,), 2), verbose=0)
    with pytest.raises(ValueError, match="per-sample shape \\(3,\\)"):
        epinn.predict(model, params, jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="momentum"):
        epinn.get_optimizer("sgd", 0.01, momentum="x")
    with pytest.raises(ValueError, match="momentum"):
        epinn.get_optimizer("sgd", 0.01, momentum=float("nan"))
    assert isinstance(epinn.get_optimizer("sgd", 0.01, momentum=0.9, nesterov=True),
                      optax.GradientTransformation)
    bad = tmp_path / "broken.msgpack"
    bad.write_bytes(b"x\x93 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable msgpack checkpoint"):
        epinn.load_checkpoint(bad, params)


def test_checkpoint_integrity_and_file_errors(tmp_path, key):
    """One flipped byte, a broken sidecar, directories, None: clear errors naming the file."""
    params = epinn.MLP((8, 1)).init(key, jnp.ones((2, 3)))
    path = save_checkpoint(tmp_path / "m.msgpack", params)
    meta = json.loads((tmp_path / "m.msgpack.json").read_text())
    assert len(meta["sha256"]) == 64 and meta["format_version"] == 2
    data = bytearray(path.read_bytes())
    assert tree_equal(load_checkpoint(path, params).params, params)
    # One flipped byte anywhere in the array data (last bytes: inside a kernel's floats).
    for where in (len(data) - 1, len(data) // 2, 10):
        bad = bytearray(data)
        bad[where] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match=r"m\.msgpack.*corrupt or was altered"):
            load_checkpoint(path, params)
    path.write_bytes(bytes(data))
    # A corrupt sidecar, or one that is not an object.
    sidecar = tmp_path / "m.msgpack.json"
    good_meta = sidecar.read_text()
    for text in ('{"format": "epinn-checkpoint", ', "[1, 2]", "\xff\xfe"):
        sidecar.write_text(text, encoding="latin-1")
        with pytest.raises(ValueError, match=r"sidecar .*m\.msgpack\.json"):
            load_checkpoint(path, params)
    sidecar.write_text(good_meta)
    # Paths: None, a number, a directory, a missing file, a missing folder.
    for bad_path, err, match in [
        (None, TypeError, "`path` must be a str or os.PathLike; got NoneType"),
        (3, TypeError, "`path`.*int"),
        (tmp_path, IsADirectoryError, "is a directory"),
        (tmp_path / "missing.msgpack", FileNotFoundError, "missing.msgpack"),
    ]:
        with pytest.raises(err, match=match):
            load_checkpoint(bad_path, params)
    for bad_path, err, match in [
        (None, TypeError, "`path`.*NoneType"),
        (tmp_path, IsADirectoryError, "is a directory"),
        (tmp_path / "no" / "m.msgpack", ValueError, "does not exist"),
    ]:
        with pytest.raises(err, match=match):
            save_checkpoint(bad_path, params)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "c.msgpack", params, config={"f": {1, 2}})
    assert not (tmp_path / "c.msgpack").exists()  # nothing half-written
    with pytest.raises(TypeError, match="`params`.*arrays"):
        save_checkpoint(tmp_path / "d.msgpack", {"w": object()})
    assert not (tmp_path / "d.msgpack").exists()
    for template in (None, 3, [1, 2]):
        with pytest.raises(ValueError, match="`template`"):
            load_checkpoint(path, template)
    with pytest.raises(ValueError, match="`opt_state_template`"):
        save_checkpoint(path, params, opt_state={"count": jnp.zeros(())})
        load_checkpoint(path, params, opt_state_template=[1, 2])


def test_checkpoint_without_hash_loads_with_a_warning(tmp_path, key):
    """Format 1 (no SHA-256 in the sidecar) and a lone msgpack file still load, with a word."""
    params = {"w": jnp.arange(4.0)}
    path = save_checkpoint(tmp_path / "old.msgpack", params, config={"a": 1})
    sidecar = tmp_path / "old.msgpack.json"
    meta = json.loads(sidecar.read_text())
    del meta["sha256"]
    meta["format_version"] = 1
    sidecar.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no SHA-256.*unverified"):
        ck = load_checkpoint(path, params)
    assert tree_equal(ck.params, params) and ck.config == {"a": 1}
    sidecar.unlink()
    with pytest.warns(UserWarning, match="old.msgpack"):
        assert tree_equal(load_checkpoint(path, params).params, params)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_checkpoint_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            save_checkpoint(folder / "m.msgpack", {"w": jnp.ones(2)})
    finally:
        folder.chmod(0o700)
