"""Recurrent forecasters (epinn.models) and the time-series utilities of epinn.data."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
from epinn.data import (
    LogRatioScaler,
    chronological_split,
    inverse_log_transform,
    inverse_ratio_transform,
    log_transform,
    ratio_transform,
    sliding_windows,
)
from epinn.models import RNNForecaster, rollout

# --------------------------------------------------------------------------------------
# Independent references: the cell equations written out in numpy (float64)
# --------------------------------------------------------------------------------------


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_lstm(p, x):
    """LSTM over ``x`` (batch, time, features) from Flax's per-gate parameters."""
    k = {n: np.asarray(v["kernel"], np.float64) for n, v in p.items()}
    b = {n: np.asarray(v["bias"], np.float64) for n, v in p.items() if "bias" in v}
    x = np.asarray(x, np.float64)
    h = c = np.zeros((x.shape[0], k["hi"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        gate = {g: x[:, t] @ k["i" + g] + h @ k["h" + g] + b["h" + g] for g in "ifgo"}
        c = _sigmoid(gate["f"]) * c + _sigmoid(gate["i"]) * np.tanh(gate["g"])
        h = _sigmoid(gate["o"]) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def numpy_gru(p, x):
    """GRU over ``x`` (batch, time, features): r, z gates, n = tanh(.. + r (W h + b))."""
    k = {n: np.asarray(v["kernel"], np.float64) for n, v in p.items()}
    b = {n: np.asarray(v["bias"], np.float64) for n, v in p.items() if "bias" in v}
    x = np.asarray(x, np.float64)
    h = np.zeros((x.shape[0], k["hr"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        r = _sigmoid(x[:, t] @ k["ir"] + b["ir"] + h @ k["hr"])
        z = _sigmoid(x[:, t] @ k["iz"] + b["iz"] + h @ k["hz"])
        n = np.tanh(x[:, t] @ k["in"] + b["in"] + r * (h @ k["hn"] + b["hn"]))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


@functools.lru_cache(maxsize=None)
def _jitted(model, train):
    # One compiled function per (module, mode): eager Flax dispatches op by op (slow), and
    # a fresh lambda per call would recompile every time.
    init = jax.jit(model.init)
    if train:
        return init, jax.jit(lambda p, x, k: model.apply(p, x, train=True, rngs={"dropout": k}))
    return init, jax.jit(model.apply)


def jit_init(model, key, x):
    return _jitted(model, False)[0](key, x)


def jit_apply(model, params, x, dropout_key=None):
    if dropout_key is None:
        return _jitted(model, False)[1](params, x)
    return _jitted(model, True)[1](params, x, dropout_key)


def perturbed(params, key, scale=0.3):
    """Random non-zero biases and weights, so every parameter matters in comparisons."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jr.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + scale * jr.normal(k, a.shape) for a, k in zip(leaves, keys)]
    )


# --------------------------------------------------------------------------------------
# RNNForecaster
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell, reference", [("lstm", numpy_lstm), ("gru", numpy_gru)])
def test_forecaster_matches_numpy_recurrence(key, cell, reference):
    # Two stacked layers and the dense head against the equations in float64 numpy;
    # float32 rounding over 7 steps of O(1) activations stays below 1e-5.
    x = jr.normal(key, (3, 7, 2))
    model = RNNForecaster(cell=cell, hidden=5, layers=2, horizon=4)
    params = perturbed(jit_init(model, key, x), jr.fold_in(key, 1))
    p = params["params"]
    h = reference(p["rnn_1"]["cell"], reference(p["rnn_0"]["cell"], x))
    expected = h[:, -1] @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(jit_apply(model, params, x), expected, rtol=1e-5, atol=1e-5)


def test_forecaster_gradient_against_finite_differences(key, x64):
    # Reverse mode through the scan against central differences (float64) for a few
    # parameters of each kind.
    x = jr.normal(key, (2, 5, 1), dtype=jnp.float64)
    y = jr.normal(jr.fold_in(key, 1), (2, 3), dtype=jnp.float64)
    model = RNNForecaster(cell="lstm", hidden=3, horizon=3, param_dtype=jnp.float64)
    params = perturbed(model.init(key, x), jr.fold_in(key, 2))
    assert all(a.dtype == jnp.float64 for a in jax.tree_util.tree_leaves(params))
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss(v):
        return jnp.mean((model.apply(unravel(v), x) - y) ** 2)

    grad = np.asarray(jax.jit(jax.grad(loss))(flat))
    f = jax.jit(loss)
    for i in np.linspace(0, flat.size - 1, 12).astype(int):
        e = np.zeros(flat.size)
        e[i] = 1e-6
        fd = (float(f(flat + e)) - float(f(flat - e))) / 2e-6
        assert grad[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, x_shape, out_shape",
    [
        ({"cell": "lstm"}, (5, 12, 1), (5, 7)),
        ({"cell": "gru", "layers": 3}, (5, 12, 1), (5, 7)),
        ({"cell": "lstm", "n_outputs": 3}, (5, 12, 3), (5, 7, 3)),
        ({"cell": "gru", "n_outputs": 1, "horizon": 1}, (2, 4, 2), (2, 1, 1)),
    ],
)
def test_forecaster_shapes(key, kwargs, x_shape, out_shape):
    model = RNNForecaster(hidden=8, **kwargs)
    x = jnp.ones(x_shape)
    params = jax.eval_shape(model.init, key, x)
    assert jax.eval_shape(model.apply, params, x).shape == out_shape


def test_forecaster_jit_and_vmap(key):
    model = RNNForecaster(cell="gru", hidden=8, horizon=4)
    x = jr.normal(key, (3, 10, 2))
    params = model.init(key, x)
    eager = model.apply(params, x)
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), eager, rtol=1e-6, atol=1e-6)
    # vmap over an ensemble of parameter sets and over an extra leading data axis.
    stacked = jax.jit(jax.vmap(model.init, in_axes=(0, None)))(jr.split(key, 4), x)
    out = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, x)
    assert out.shape == (4, 3, 4)
    first = jax.tree_util.tree_map(lambda a: a[0], stacked)
    np.testing.assert_allclose(out[0], jit_apply(model, first, x), rtol=1e-6, atol=1e-6)
    xs = jnp.stack([x, 2 * x])
    out2 = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(params, xs)
    np.testing.assert_allclose(out2[0], eager, rtol=1e-6, atol=1e-6)


def test_forecaster_dropout(key):
    model = RNNForecaster(hidden=16, layers=2, horizon=3, dropout_rate=0.5)
    x = jr.normal(key, (4, 8, 1))
    params = jit_init(model, key, x)
    a = jit_apply(model, params, x)
    np.testing.assert_array_equal(a, jit_apply(model, params, x))  # evaluation: deterministic
    t1 = jit_apply(model, params, x, dropout_key=jr.PRNGKey(1))
    t2 = jit_apply(model, params, x, dropout_key=jr.PRNGKey(2))
    assert not np.allclose(t1, t2) and not np.allclose(t1, a)
    with pytest.raises(Exception, match="dropout"):
        model.apply(params, x, train=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell": "rnn"}, "cell"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.5}, "horizon"),
        ({"hidden": 0}, "hidden"),
        ({"layers": 0}, "layers"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"n_outputs": 0}, "n_outputs"),
        ({"unroll": 0}, "unroll"),
    ],
)
def test_forecaster_bad_attributes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RNNForecaster(**kwargs)


@pytest.mark.parametrize("shape", [(12, 1), (2, 3, 12, 1), (12,)])
def test_forecaster_wrong_rank(key, shape):
    with pytest.raises(ValueError, match="`x`"):
        jax.eval_shape(RNNForecaster(hidden=4).init, key, jnp.ones(shape))


@pytest.mark.slow  # ~20 s on 2 busy cores; tests/test_forecast.py trains through fit too
def test_forecaster_trains_with_fit(key):
    # A noiseless sinusoid: one epoch-scan of fit must reduce the loss clearly.
    t = jnp.arange(200.0)
    x, y = sliding_windows(jnp.sin(0.3 * t), 12, 3)
    model = RNNForecaster(hidden=16, horizon=3)
    params = model.init(key, x[:1])
    _, hist = epinn.fit(model, params, x, y, epochs=20, batch_size=32, learning_rate=1e-2,
                        key=key, verbose=0)
    assert hist.train_loss[-1] < 0.1 * hist.train_loss[0]


# --------------------------------------------------------------------------------------
# rollout
# --------------------------------------------------------------------------------------


def test_rollout_one_block_is_direct_forecast(key):
    model = RNNForecaster(hidden=8, horizon=4)
    x = jr.normal(key, (3, 10, 1))
    params = jit_init(model, key, x)
    np.testing.assert_allclose(rollout(model, params, x, 4), jit_apply(model, params, x),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("horizon, steps", [(1, 4), (3, 5)])
def test_rollout_matches_python_loop(key, horizon, steps):
    model = RNNForecaster(cell="gru", hidden=8, horizon=horizon)
    x = jr.normal(key, (2, 6, 1))
    params = jit_init(model, key, x)
    window, preds = x, []
    while sum(p.shape[1] for p in preds) < steps:
        y = jit_apply(model, params, window)
        preds.append(y)
        window = jnp.concatenate([window, y[..., None]], axis=1)[:, -6:]
    expected = jnp.concatenate(preds, axis=1)[:, :steps]
    out = jax.jit(rollout, static_argnums=(0, 3))(model, params, x, steps)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_rollout_multivariate(key):
    model = RNNForecaster(hidden=8, horizon=2, n_outputs=3)
    x = jr.normal(key, (2, 5, 3))
    params = jit_init(model, key, x)
    out = rollout(model, params, x, 5)
    assert out.shape == (2, 5, 3)
    np.testing.assert_allclose(out[:, :2], jit_apply(model, params, x), rtol=1e-6, atol=1e-6)


def test_rollout_bad_input(key):
    model = RNNForecaster(hidden=4, horizon=2)
    x = jnp.ones((2, 5, 1))
    params = jax.eval_shape(model.init, key, x)
    with pytest.raises(ValueError, match="steps"):
        rollout(model, params, x, 0)
    with pytest.raises(ValueError, match="`x`"):
        rollout(model, params, jnp.ones((5, 1)), 3)
    two = RNNForecaster(hidden=4, horizon=2)
    p2 = jax.eval_shape(two.init, key, jnp.ones((2, 5, 2)))
    with pytest.raises(ValueError, match="feature"):
        rollout(two, p2, jnp.ones((2, 5, 2)), 3)
    with pytest.raises(TypeError, match="model"):
        rollout(epinn.MLP((3, 1)), params, x, 3)


# --------------------------------------------------------------------------------------
# Data: sliding windows, chronological splits, count transforms
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 3])
def test_sliding_windows_against_loop(stride):
    s = (np.arange(40.0).reshape(20, 2) ** 1.5).astype(np.float32)
    x, y = sliding_windows(s, 5, 3, stride)
    starts = range(0, 20 - 5 - 3 + 1, stride)
    np.testing.assert_array_equal(x, np.stack([s[i : i + 5] for i in starts]))
    np.testing.assert_array_equal(y, np.stack([s[i + 5 : i + 8] for i in starts]))
    assert x.shape[0] == (20 - 5 - 3) // stride + 1
    _, y1 = sliding_windows(s, 5, 3, stride, target_feature=1)
    np.testing.assert_array_equal(y1, y[..., 1])


def test_sliding_windows_univariate_shapes():
    x, y = sliding_windows(np.arange(10), 4, 2)  # integer counts become floats
    assert x.shape == (5, 4, 1) and y.shape == (5, 2)
    assert jnp.issubdtype(x.dtype, jnp.floating)
    x, y = sliding_windows(np.arange(6.0), 4, 2)  # exactly input_len + horizon long
    assert x.shape == (1, 4, 1)


@pytest.mark.parametrize(
    "series, kwargs, match",
    [
        (np.arange(5.0), {"input_len": 4, "horizon": 2}, "series"),
        (np.arange(10.0), {"input_len": 4, "horizon": 0}, "horizon"),
        (np.arange(10.0), {"input_len": 0, "horizon": 2}, "input_len"),
        (np.arange(10.0), {"input_len": 4, "horizon": 2, "stride": 0}, "stride"),
        (np.array([1.0, np.nan, 2, 3, 4, 5, 6]), {"input_len": 3, "horizon": 1}, "series"),
        (np.ones((2, 10, 1)), {"input_len": 3, "horizon": 1}, "series"),
        (np.ones((10, 2)), {"input_len": 3, "horizon": 1, "target_feature": 2},
         "target_feature"),
    ],
)
def test_sliding_windows_bad_input(series, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_windows(series, **kwargs)


def test_sliding_windows_type_errors():
    with pytest.raises(TypeError, match="input_len"):
        sliding_windows(np.arange(10.0), 3.0, 2)


def test_sliding_windows_under_jit():
    f = jax.jit(sliding_windows, static_argnums=(1, 2))
    x, y = f(jnp.arange(8.0), 3, 2)
    assert x.shape == (4, 3, 1) and y[-1].tolist() == [6.0, 7.0]


def test_chronological_split_no_leakage():
    # Use time indices as the series: every value names its own time step.
    t = np.arange(100.0)
    train, val, test = chronological_split(t, (0.6, 0.2, 0.2), context=10)
    assert train.tolist() == list(range(60))
    assert val[0] == 50 and val[-1] == 79 and test[0] == 70 and test[-1] == 99
    # Windowed with input_len = context: targets stay within each part's own steps.
    _, y_tr = sliding_windows(train, 10, 5)
    _, y_va = sliding_windows(val, 10, 5)
    x_te, y_te = sliding_windows(test, 10, 5)
    assert y_tr.max() < 60 and y_va.min() >= 60 and y_va.max() < 80 and y_te.min() >= 80
    assert set(np.ravel(y_tr)).isdisjoint(np.ravel(y_va))
    assert x_te[0, -1, 0] == 79  # the first test origin is the first test step
    # The first part never gets context; context is capped by the available history.
    (a, b) = chronological_split(np.arange(10.0), (0.2, 0.8), context=5)
    assert a.tolist() == [0.0, 1.0] and b.tolist() == list(np.arange(10.0))


def test_chronological_split_bad_input():
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(np.arange(10.0), (0.5, 0.6))
    with pytest.raises(ValueError, match="context"):
        chronological_split(np.arange(10.0), context=-1)
    with pytest.raises(ValueError, match="series"):
        chronological_split(np.array([1.0, np.inf]))


def test_log_and_ratio_transforms_round_trip():
    c = np.array([0.0, 1.0, 5.0, 20.0, 3.0])
    np.testing.assert_allclose(log_transform(c), np.log1p(c), rtol=1e-6)
    np.testing.assert_allclose(log_transform(c, offset=0.5), np.log(c + 0.5), rtol=1e-6)
    for off in (1.0, 0.5):
        np.testing.assert_allclose(inverse_log_transform(log_transform(c, off), off), c,
                                   rtol=1e-5, atol=1e-5)
    r = ratio_transform(c)
    np.testing.assert_allclose(r, (c[1:] + 1) / (c[:-1] + 1), rtol=1e-6)
    np.testing.assert_allclose(inverse_ratio_transform(r, c[0]), c[1:], rtol=1e-5)
    c2 = np.stack([c, 2 * c], axis=1)  # time along axis 0 of a (time, series) array
    r2 = ratio_transform(c2.T, axis=1)
    np.testing.assert_allclose(inverse_ratio_transform(r2, c2[0], axis=1), c2[1:].T,
                               rtol=1e-5)


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (log_transform, (np.array([1.0, -2.0]),), "counts"),
        (log_transform, (np.array([0.0, 1.0]), 0.0), "counts"),
        (log_transform, (np.array([1.0, np.nan]),), "counts"),
        (log_transform, (np.array([1.0]), -1.0), "offset"),
        (ratio_transform, (np.array([1.0]),), "counts"),
    ],
)
def test_count_transforms_bad_input(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_log_ratio_scaler(key):
    s = 100 * jnp.exp(0.1 * jnp.arange(40.0)) + jr.uniform(key, (40,)) * 10
    x, y = sliding_windows(s, 8, 3)
    sc = LogRatioScaler.fit(x, y)
    u, v = sc.transform(x, y)
    np.testing.assert_allclose(sc.inverse_transform(v, x), y, rtol=1e-4)
    # The last input step is the anchor: 0 after scaling; persistence is v = 0.
    np.testing.assert_allclose(u[:, -1], 0.0, atol=1e-6)
    np.testing.assert_allclose(sc.inverse_transform(jnp.zeros_like(v), x),
                               np.repeat(np.asarray(x[:, -1]), 3, axis=1), rtol=1e-5)
    # Fitted scales standardise the training targets; a trailing (quantile) axis works.
    assert float(jnp.std(v)) == pytest.approx(1.0, rel=1e-4)
    q = jnp.stack([v - 1, v, v + 1], axis=-1)
    out = sc.inverse_transform(q, x)
    assert out.shape == (*y.shape, 3) and bool(jnp.all(out[..., 0] < out[..., 2]))
    # Scale-free with offset 0: multiplying a window's counts by 1000 changes nothing.
    sc0 = LogRatioScaler.fit(x, y, offset=0.0)
    u1, v1 = sc0.transform(x, y)
    u2, v2 = sc0.transform(1000 * x, 1000 * y)
    np.testing.assert_allclose(u1, u2, atol=1e-4)
    np.testing.assert_allclose(v1, v2, atol=1e-4)


def test_log_ratio_scaler_bad_input():
    x, y = sliding_windows(np.arange(1.0, 20.0), 5, 2)
    with pytest.raises(ValueError, match="targets"):
        LogRatioScaler.fit(x, y[:, :, None])
    with pytest.raises(ValueError, match="inputs"):
        LogRatioScaler.fit(-x, y)
    with pytest.raises(ValueError, match="target_feature"):
        LogRatioScaler.fit(x, y, target_feature=1)
