"""epinn.forecast: errors per horizon step, baselines, rolling origins, uncertainty."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
from epinn.data import LogRatioScaler, sliding_windows
from epinn.forecast import (
    SeedEnsemble,
    ensemble_loss,
    ensemble_quantiles,
    forecast_errors,
    interval_coverage,
    linear_trend_forecast,
    persistence_forecast,
    pinball_loss,
    projection_forecast,
    rolling_origin_evaluation,
    seasonal_naive_forecast,
    sir_projection_forecast,
)
from epinn.models import RNNForecaster
from tests.helpers import count_compilations

# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_forecast_errors_against_loops():
    rng = np.random.default_rng(0)
    y = rng.poisson(5.0, (30, 4)).astype(float)
    y[:5, 0] = 0.0  # zero targets are skipped by MAPE
    p = y + rng.normal(0, 2, y.shape)
    err = forecast_errors(p, y)
    for k in range(4):
        e = [p[n, k] - y[n, k] for n in range(30)]
        assert err["mae"][k] == pytest.approx(sum(abs(v) for v in e) / 30, rel=1e-12)
        assert err["rmse"][k] == pytest.approx((sum(v * v for v in e) / 30) ** 0.5, rel=1e-12)
        ape = [abs(e[n]) / y[n, k] for n in range(30) if y[n, k] != 0]
        assert err["mape"][k] == pytest.approx(100 * sum(ape) / len(ape), rel=1e-12)
    assert np.isnan(forecast_errors(np.ones((2, 1)), np.zeros((2, 1)))["mape"][0])
    # Trailing axes are pooled like windows.
    err3 = forecast_errors(p.reshape(15, 2, 4).transpose(0, 2, 1),
                           y.reshape(15, 2, 4).transpose(0, 2, 1))
    np.testing.assert_allclose(err3["mae"], err["mae"], rtol=1e-12)


@pytest.mark.parametrize(
    "p, y, match",
    [
        (np.ones((3, 2)), np.ones((3, 3)), "same shape"),
        (np.ones(3), np.ones(3), "predictions"),
        (np.array([[np.nan]]), np.ones((1, 1)), "finite"),
    ],
)
def test_forecast_errors_bad_input(p, y, match):
    with pytest.raises(ValueError, match=match):
        forecast_errors(p, y)


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def test_baselines_exact_on_their_own_model_classes():
    t = np.arange(30.0)
    line = 3.0 + 2.0 * t
    x, y = sliding_windows(line, 10, 4)
    np.testing.assert_allclose(linear_trend_forecast(x, 4), y, rtol=1e-5)
    np.testing.assert_allclose(linear_trend_forecast(x, 4, fit_len=2), y, rtol=1e-5)
    np.testing.assert_allclose(persistence_forecast(x, 4), np.repeat(x[:, -1], 4, axis=1))
    weekly = np.tile([5.0, 1.0, 2.0, 8.0, 3.0, 3.0, 0.0], 5)
    x, y = sliding_windows(weekly, 14, 10)
    np.testing.assert_array_equal(seasonal_naive_forecast(x, 10, period=7), y)
    np.testing.assert_array_equal(seasonal_naive_forecast(x, 3, period=1),
                                  persistence_forecast(x, 3))
    # A falling line is clipped at zero for counts.
    down = linear_trend_forecast(np.array([[3.0, 2.0, 1.0]]), 3)
    assert down.tolist() == [[0.0, 0.0, 0.0]]
    assert linear_trend_forecast(np.array([[3.0, 2.0, 1.0]]), 2,
                                 nonnegative=False).tolist() == [[0.0, -1.0]]


def test_baselines_multivariate_and_bad_input():
    x = jnp.stack([jnp.arange(8.0), 10 * jnp.arange(8.0)], axis=-1)[None]
    assert persistence_forecast(x, 2, target_feature=1).tolist() == [[70.0, 70.0]]
    with pytest.raises(ValueError, match="horizon"):
        persistence_forecast(x, 0)
    with pytest.raises(ValueError, match="period"):
        seasonal_naive_forecast(x, 2, period=9)
    with pytest.raises(ValueError, match="fit_len"):
        linear_trend_forecast(x, 2, fit_len=1)
    with pytest.raises(ValueError, match="target_feature"):
        persistence_forecast(x, 2, target_feature=2)
    with pytest.raises(ValueError, match="inputs"):
        persistence_forecast(jnp.ones(5), 2)


def test_baselines_reject_nonfinite_windows():
    # Audit: persistence gave NaN forecasts silently. Every baseline shares one check.
    bad = jnp.ones((4, 6, 1)).at[0, -1, 0].set(jnp.nan)
    calls = [
        lambda x: persistence_forecast(x, 2),
        lambda x: linear_trend_forecast(x, 2),
        lambda x: seasonal_naive_forecast(x, 2, period=3),
        lambda x: projection_forecast(x, 2, lambda t, y: (lambda tf: np.zeros(2))),
        lambda x: sir_projection_forecast(x, 2),  # rejected before any fitting
    ]
    for f in calls:
        with pytest.raises(ValueError, match="inputs"):
            f(bad)
        with pytest.raises(ValueError, match="inputs"):
            f(np.full((2, 6), np.inf))
    # Only the column forecast is checked: a NaN in another feature is not used.
    two = jnp.ones((1, 4, 2)).at[0, 0, 1].set(jnp.nan)
    assert persistence_forecast(two, 2).tolist() == [[1.0, 1.0]]
    # Under jit the windows are tracers: no value check, the forecast goes through.
    out = jax.jit(lambda x: persistence_forecast(x, 2))(bad)
    assert bool(jnp.isnan(out[0]).all()) and out[1:].tolist() == [[1.0, 1.0]] * 3


def test_baselines_target_feature_on_2d_windows():
    # (windows, time) is one feature: target_feature must be 0, as for sliding_windows.
    x = jnp.arange(6.0).reshape(1, 6)
    assert persistence_forecast(x, 1, target_feature=0).tolist() == [[5.0]]
    for tf in (1, -1, 0.0, True):
        with pytest.raises(ValueError, match="target_feature"):
            persistence_forecast(x, 1, target_feature=tf)


def test_linear_trend_too_short_window_message():
    with pytest.raises(ValueError, match=r"inputs.*1 time step.*needs >= 2"):
        linear_trend_forecast(jnp.ones((4, 1, 1)), 2)
    with pytest.raises(ValueError, match=r"inputs.*needs >= 2"):
        linear_trend_forecast(jnp.ones((4, 1)), 2, fit_len=2)


def test_projection_forecast_hook():
    # A fitted-forecast callable: log-linear (exponential growth) least squares.
    def exp_fit(t, y):
        b, a = np.polyfit(t, np.log(y), 1)
        return lambda tf: np.exp(a + b * tf)

    s = 4.0 * np.exp(0.15 * np.arange(40.0))
    x, y = sliding_windows(s, 12, 5)
    np.testing.assert_allclose(projection_forecast(x, 5, exp_fit), y, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        projection_forecast(x, 5, lambda t, y: (lambda tf: np.ones(3)))


@pytest.mark.slow  # compiles Levenberg-Marquardt through the ODE solver (~40 s)
def test_sir_projection_beats_persistence_on_sir_data():
    from epinn.compartmental import SIR, incidence, solve

    N = 1e5
    traj = solve(SIR(), {"beta": 0.4, "gamma": 0.2, "N": N}, {"S": N - 10, "I": 10.0, "R": 0.0},
                 jnp.arange(0.0, 121.0))
    inc = np.asarray(incidence(traj))
    noisy = np.random.default_rng(0).poisson(inc).astype(float)
    origins = np.arange(30, 110, 5)
    x = np.stack([noisy[o - 28 : o] for o in origins])
    truth = np.stack([inc[o : o + 7] for o in origins])
    for pop in (N, None):
        sir = forecast_errors(sir_projection_forecast(x, 7, population=pop), truth)
        naive = forecast_errors(persistence_forecast(x, 7), truth)
        assert sir["mae"].mean() < 0.3 * naive["mae"].mean()


# --------------------------------------------------------------------------------------
# Rolling origins
# --------------------------------------------------------------------------------------


def test_rolling_origin_against_manual_loop():
    rng = np.random.default_rng(1)
    series = [rng.poisson(20, 40).astype(np.float32), rng.poisson(50, 33).astype(np.float32)]
    f = {"persistence": lambda x: persistence_forecast(x, 3),
         "trend": lambda x: linear_trend_forecast(x, 3, fit_len=4)}
    res = rolling_origin_evaluation(series, f, input_len=6, horizon=3, first_origin=10,
                                    stride=2)
    rows = [(i, o) for i, s in enumerate(series) for o in range(10, len(s) - 3 + 1, 2)]
    assert list(zip(res.series_index, res.origins)) == rows
    for name, fn in f.items():
        preds = np.concatenate([fn(series[i][None, o - 6 : o]) for i, o in rows])
        truth = np.stack([series[i][o : o + 3] for i, o in rows])
        np.testing.assert_allclose(res.predictions[name], preds, rtol=1e-6)
        np.testing.assert_allclose(res.targets, truth)
        np.testing.assert_allclose(res.errors[name]["mae"], np.abs(preds - truth).mean(0),
                                   rtol=1e-6)
    summary = res.summary()
    assert set(summary) == {"persistence", "trend"}
    assert summary["trend"]["mae_mean"] == pytest.approx(float(res.errors["trend"]["mae"].mean()))


def test_rolling_origin_bad_input():
    f = {"p": lambda x: persistence_forecast(x, 2)}
    with pytest.raises(ValueError, match="series"):
        rolling_origin_evaluation(np.arange(5.0), f, 4, 2)
    with pytest.raises(ValueError, match="first_origin"):
        rolling_origin_evaluation(np.arange(20.0), f, 4, 2, first_origin=3)
    with pytest.raises(ValueError, match="series"):
        rolling_origin_evaluation(np.r_[np.arange(20.0), np.nan], f, 4, 2)
    with pytest.raises(ValueError, match="forecasters"):
        rolling_origin_evaluation(np.arange(20.0), {}, 4, 2)
    with pytest.raises(ValueError, match="shape"):
        rolling_origin_evaluation(np.arange(20.0), {"p": lambda x: x[:, -1]}, 4, 2)
    # target_feature is checked against a 1-D series too (one feature), as in
    # sliding_windows, rather than ignored.
    with pytest.raises(ValueError, match="target_feature"):
        rolling_origin_evaluation(np.arange(20.0), f, 3, 2, target_feature=2)
    with pytest.raises(ValueError, match="target_feature"):
        rolling_origin_evaluation([np.ones((20, 2)), np.arange(20.0)], f, 3, 2,
                                  target_feature=1)
    res = rolling_origin_evaluation(np.arange(20.0), f, 3, 2, target_feature=0)
    assert res.targets.shape == (16, 2)


def test_unconvertible_arguments_are_named_before_compilation():
    """float()/asarray of user input: the error names the argument, nothing compiles."""
    f = {"p": lambda x: persistence_forecast(x, 2)}
    series, w = np.arange(20.0), np.ones((3, 5, 1))
    persistence_forecast(w, 2)  # warm up the eager ops of the window checks
    rolling_origin_evaluation(series, f, 3, 2)  # and of the rolling windows
    cases = [
        (lambda: rolling_origin_evaluation(series, f, "3", 2), TypeError, "`input_len`"),
        (lambda: rolling_origin_evaluation(series, f, 3.0, 2), TypeError, "`input_len`"),
        (lambda: rolling_origin_evaluation(series, f, 0, 2), ValueError, "`input_len`"),
        (lambda: rolling_origin_evaluation(series, f, 3, "2"), ValueError, "`horizon`"),
        (lambda: rolling_origin_evaluation(series, f, 3, 2, stride="1"), TypeError,
         "`stride`"),
        (lambda: rolling_origin_evaluation(series, f, 3, 2, first_origin=4.0), TypeError,
         "`first_origin`"),
        (lambda: rolling_origin_evaluation(["a", "b"], f, 3, 2), TypeError, "`series`"),
        (lambda: rolling_origin_evaluation(series, {"p": 3}, 3, 2), TypeError,
         r"`forecasters\['p'\]`"),
        (lambda: rolling_origin_evaluation(series, {"p": lambda x: "abc"}, 3, 2), TypeError,
         "forecaster 'p'"),
        (lambda: forecast_errors([["a"]], np.ones((1, 1))), TypeError, "`predictions`"),
        (lambda: forecast_errors(np.ones((1, 1)), [[None]]), TypeError, "`targets`"),
        (lambda: interval_coverage("lo", np.ones((1, 1)), np.ones((1, 1))), TypeError,
         "`lower`"),
        (lambda: interval_coverage(np.zeros((1, 1)), [[1, "x"]], np.ones((1, 2))), TypeError,
         "`upper`"),
        (lambda: persistence_forecast("abc", 2), TypeError, "`inputs`"),
        (lambda: ensemble_quantiles({"a": 1}), TypeError, "`member_predictions`"),
        (lambda: sir_projection_forecast(w, 2, population="1e6"), TypeError, "`population`"),
        (lambda: sir_projection_forecast(w, 2, population=np.ones(2) * 1e6), ValueError,
         "`population`.*one value per window"),
        (lambda: sir_projection_forecast(w, 2, init={"beta": "abc"}), TypeError,
         r"`init\['beta'\]`"),
        (lambda: sir_projection_forecast(w, 2, init={"betta": 0.3}), ValueError,
         "did you mean 'beta'"),
        (lambda: sir_projection_forecast(w, 2, steps=0), ValueError, "`steps`"),
        (lambda: sir_projection_forecast(w, 2, batch_size=2.5), TypeError, "`batch_size`"),
        (lambda: ensemble_loss("mse2"), ValueError, "`loss`.*did you mean 'mse'"),
        (lambda: ensemble_loss(3), TypeError, "`loss`"),
        (lambda: projection_forecast(w, "2", lambda t, y: (lambda tf: tf)), ValueError,
         "`horizon`"),
        (lambda: seasonal_naive_forecast(w, 2, period="2"), ValueError, "`period`"),
    ]
    for call, err, match in cases:
        with count_compilations() as c, pytest.raises(err, match=match):
            call()
        assert c.count == 0, match
    # numpy integers are valid counts.
    res = rolling_origin_evaluation(series, f, np.int64(3), np.int32(2), stride=np.int64(2))
    assert res.origins.tolist() == list(range(3, 19, 2))


# --------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------


def test_pinball_loss_closed_form_and_minimiser():
    taus = (0.1, 0.5, 0.9)
    loss = pinball_loss(taus)
    y = jnp.array([1.0, 3.0])
    pred = jnp.array([[0.0, 1.0, 2.0], [4.0, 3.0, 0.0]])
    # By hand: rows (y - q): [1, 0, -1] and [-1, 0, 3].
    by_hand = (0.1 * 1 + 0 + (1 - 0.9) * 1 + (1 - 0.1) * 1 + 0 + 0.9 * 3) / 6
    assert float(loss(pred, y)) == pytest.approx(by_hand, rel=1e-6)
    # The constant minimising the mean pinball loss over a sample is its tau-quantile
    # (to the grid spacing).
    sample = np.random.default_rng(0).gamma(2.0, 3.0, 2001)
    grid = np.linspace(0, 25, 2501)
    for tau in taus:
        one = pinball_loss((tau,))
        vals = jax.vmap(lambda c: one(jnp.full((sample.size, 1), c), jnp.asarray(sample)))(
            jnp.asarray(grid))
        assert grid[int(jnp.argmin(vals))] == pytest.approx(np.quantile(sample, tau), abs=0.02)
    with pytest.raises(ValueError, match="quantiles"):
        pinball_loss((0.0, 0.5))
    with pytest.raises(ValueError, match="shape"):
        loss(jnp.ones((2, 2)), y)


def test_interval_coverage():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4000, 2))
    # The exact 80% interval of N(0, 1) covers ~80% (binomial sd ~0.6%).
    cov = interval_coverage(np.full_like(y, -1.2816), np.full_like(y, 1.2816), y)
    assert cov["overall"] == pytest.approx(0.8, abs=0.02)
    assert cov["mean_width"] == pytest.approx(2.5632)
    with pytest.raises(ValueError, match="upper"):
        interval_coverage(np.ones((2, 2)), np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        interval_coverage(np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 2)))


@pytest.mark.parametrize("which", ["lower", "upper", "targets"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_interval_coverage_rejects_nonfinite(which, bad):
    # Audit: a NaN target counted as "outside" and a NaN bound gave mean_width=nan.
    args = {"lower": np.zeros((1, 2)), "upper": np.ones((1, 2)),
            "targets": np.array([[0.5, 0.5]])}
    args[which] = args[which].copy()
    args[which][0, 0] = bad
    with pytest.raises(ValueError, match=rf"`{which}` contains NaN or infinite"):
        interval_coverage(**args)


def test_ensemble_quantiles():
    p = jr.normal(jr.PRNGKey(0), (9, 3, 2))
    q = ensemble_quantiles(p, (0.1, 0.5, 0.9))
    assert q.shape == (3, 2, 3)
    np.testing.assert_allclose(q, np.moveaxis(np.quantile(np.asarray(p), [0.1, 0.5, 0.9],
                                                          axis=0), 0, -1), rtol=1e-5)


@pytest.mark.parametrize("levels", [(0.5, 1.5), (-0.5,), (0.0, 0.5), (1.0,), (), (np.nan,),
                                    ((0.1, 0.9),), 0.5, "0.5"])
def test_quantile_levels_in_open_unit_interval(levels):
    # Audit: ensemble_quantiles clipped level 1.5 to the maximum and -0.5 to the minimum.
    # Both it and pinball_loss take levels in (0, 1) through one check.
    p = jnp.arange(10.0).reshape(10, 1, 1)
    with pytest.raises(ValueError, match="levels"):
        ensemble_quantiles(p, levels)
    with pytest.raises(ValueError, match="quantiles"):
        pinball_loss(levels)


def test_ensemble_quantiles_traced_levels():
    # Traced levels carry no values to check; the quantiles still come out right
    # (0..9 with linear interpolation: the 0.5-quantile is 4.5, the 0.25-quantile 2.25).
    p = jnp.arange(10.0).reshape(10, 1, 1)
    q = jax.jit(ensemble_quantiles)(p, jnp.array([0.25, 0.5]))
    np.testing.assert_allclose(q.ravel(), [2.25, 4.5], rtol=1e-6)


def test_seed_ensemble_members_and_gradients(key):
    member = RNNForecaster(cell="gru", hidden=4, horizon=3)
    ens = SeedEnsemble(member, size=3)
    x = jr.normal(key, (5, 6, 1))
    y = jr.normal(jr.fold_in(key, 1), (5, 3))
    params = jax.jit(ens.init)(key, x)
    out = jax.jit(ens.apply)(params, x)
    assert out.shape == (3, 5, 3)
    assert not np.allclose(out[0], out[1])  # independently initialised members
    apply_member = jax.jit(member.apply)
    for e in range(3):
        pe = jax.tree_util.tree_map(lambda a: a[e], params["params"]["member"])
        np.testing.assert_allclose(out[e], apply_member({"params": pe}, x), rtol=1e-6,
                                   atol=1e-6)
    # The ensemble loss's gradient for member e is 1/E times that member's own gradient,
    # so Adam (invariant to the gradient's scale up to eps) trains members independently.
    g = jax.jit(jax.grad(lambda p: ensemble_loss("mse")(ens.apply(p, x), y)))(params)
    pe = jax.tree_util.tree_map(lambda a: a[1], params["params"]["member"])
    g1 = jax.jit(jax.grad(lambda p: epinn.mse(member.apply({"params": p}, x), y)))(pe)
    for a, b in zip(jax.tree_util.tree_leaves(g["params"]["member"]),
                    jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(a[1], b / 3, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="size"):
        SeedEnsemble(member, size=0)


# --------------------------------------------------------------------------------------
# Must hold: recurrent forecasters beat persistence on held-out noisy SIR incidence
# --------------------------------------------------------------------------------------


def _noisy_sir_incidence(rng, n, T=100):
    """Daily incidence of SIR outbreaks (Euler, 4 sub-steps a day) with negative-binomial
    noise (dispersion 20). Varied N, R0, gamma. Plain numpy: fast, and independent of the
    library's solver."""
    N = 10 ** rng.uniform(4, 5.5, n)
    gamma = rng.uniform(0.15, 0.35, n)
    beta = rng.uniform(1.5, 3.0, n) * gamma
    S, I = N - 5.0, np.full(n, 5.0)
    mu = np.empty((n, T))
    for t in range(T):
        new = np.zeros(n)
        for _ in range(4):
            f = 0.25 * beta * S * I / N
            S, I, new = S - f, I + f - 0.25 * gamma * I, new + f
        mu[:, t] = new
    return rng.negative_binomial(20.0, 20.0 / (20.0 + mu)).astype(np.float32)


def test_lstm_and_gru_beat_persistence_on_held_out_sir_series():
    rng = np.random.default_rng(0)
    train, test = _noisy_sir_incidence(rng, 40), _noisy_sir_incidence(rng, 15)
    L, H = 21, 7
    xs, ys = zip(*(sliding_windows(s, L, H, stride=3) for s in train))
    x, y = np.concatenate(xs), np.concatenate(ys)
    scaler = LogRatioScaler.fit(x, y)  # fitted on the training series only
    u, v = scaler.transform(x, y)
    forecasters = {"persistence": lambda w: persistence_forecast(w, H)}
    for cell in ("lstm", "gru"):
        model = RNNForecaster(cell=cell, hidden=24, horizon=H)
        params = model.init(jr.PRNGKey(0), u[:1])
        params, _ = epinn.fit(model, params, u, v, epochs=12, batch_size=64,
                              learning_rate=3e-3, key=jr.PRNGKey(1), verbose=0)
        forecasters[cell] = (lambda m, p: lambda w: scaler.inverse_transform(
            epinn.predict(m, p, scaler.transform(w)), w))(model, params)
    res = rolling_origin_evaluation(list(test), forecasters, L, H)
    mae = {k: float(e["mae"].mean()) for k, e in res.errors.items()}
    # Measured: persistence ~440, LSTM ~300, GRU ~320 (3x the margin needed): the networks
    # learn the growth and the turn of the curve that persistence ignores.
    assert mae["lstm"] < 0.9 * mae["persistence"], mae
    assert mae["gru"] < 0.9 * mae["persistence"], mae
