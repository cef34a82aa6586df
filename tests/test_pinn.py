"""Physics-informed network: parameter recovery, the boarding school, residuals, bad input."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from epinn import fit_pinn
from epinn._fitting import _init_time_mlp, _TimeMLP
from epinn.compartmental import SIR, solve
from epinn.pinn import _PINNObjective

# Boarding-school shapes (days 1..14, N = 763, one initial case): the synthetic test, the
# boarding-school test and the doctest of fit_pinn share one compilation.
TS = np.arange(1.0, 15.0)
Y0 = {"S": 762.0, "I": 1.0, "R": 0.0}
COUNTS = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4], float)
# Least-squares fit through the ODE on these data (epinn.fit_parameters and scipy agree).
LS_BETA, LS_GAMMA = 1.669, 0.443


def test_recovers_beta_gamma_from_noiseless_data():
    beta, gamma = 1.5, 0.4
    traj = solve(SIR(), {"beta": beta, "gamma": gamma, "N": 763.0}, Y0,
                 np.concatenate([[0.0], TS]))
    # Noiseless data: the loss keeps creeping down, so "converged" is not asked for.
    res = fit_pinn(TS, {"I": np.asarray(traj["I"][1:])}, y0=Y0, t0=0.0, key=jr.PRNGKey(0),
                   warn=False)
    # The brief: within 5% (measured ~0.2%).
    assert res.params["beta"] == pytest.approx(beta, rel=0.05)
    assert res.params["gamma"] == pytest.approx(gamma, rel=0.05)
    assert res.R0 == pytest.approx(res.params["beta"] / res.params["gamma"])
    assert res.extras["r2"]["I"] > 0.999 and res.extras["ode_r2"]["I"] > 0.999


def test_boarding_school_near_gradient_fit():
    res = fit_pinn(TS, {"I": COUNTS}, y0=Y0, t0=0.0, key=jr.PRNGKey(0))
    # Measured: beta 1.667, gamma 0.445 (0.1% and 0.5% from the least-squares fit); the
    # network satisfies the ODE only approximately, so allow 5%.
    assert res.params["beta"] == pytest.approx(LS_BETA, rel=0.05)
    assert res.params["gamma"] == pytest.approx(LS_GAMMA, rel=0.05)
    assert res.converged and res.method == "pinn" and res.free == ("beta", "gamma")
    # The network's curve and the ODE re-solved with its rates both fit like least
    # squares does (R^2 = 0.973).
    assert res.extras["r2"]["I"] > 0.96 and res.extras["ode_r2"]["I"] > 0.96
    assert res.extras["residual_rms"] < 0.05
    states = res.extras["network_states"]
    np.testing.assert_allclose(states.sum(axis=1), 763.0, rtol=1e-5)  # softmax: exact
    np.testing.assert_allclose(np.asarray(res.trajectory.ys).sum(axis=1), 763.0, rtol=1e-5)
    assert np.allclose(res.trajectory.ts, res.extras["t"]) and res.extras["t"][0] == 0.0
    h = res.extras["history"]
    assert len(h.train_loss) == res.loss_history.size == 3000  # 2000 Adam + 1000 L-BFGS
    assert set(h.metrics) == {"data", "ode", "ic", "beta", "gamma"}
    assert h.metrics["beta"][-1] == pytest.approx(res.params["beta"], rel=1e-3)
    assert all(len(v) == 3000 for v in h.metrics.values())


def _objective():
    net = _TimeMLP(features=(8, 8, 3))
    params = {
        "net": _init_time_mlp(net, jr.PRNGKey(1), jnp.zeros(3), out_scale=1.0),
        "log_beta": jnp.log(1.3),
        "log_gamma": jnp.log(0.4),
    }
    f = jnp.asarray
    obj = _PINNObjective(
        net=net, tau_obs=f(np.linspace(0.1, 1.0, 5)), obs={"I": f(np.arange(5.0))},
        scale={"I": f(4.0)}, tau_col=f(np.linspace(0.0, 1.0, 7)),
        x0=f([0.98, 0.02, 0.0]), weights={"data": f(1.0), "ode": f(1.0), "ic": f(1.0)},
        N=f(100.0), T=10.0,
    )
    return obj, params


def test_residuals_against_finite_differences(x64):
    obj, params = _objective()
    beta, gamma = 1.3, 0.4
    tau = np.linspace(0.0, 1.0, 7)
    eps = 1e-6

    fractions = jax.jit(lambda p, t: obj.fractions(p, t))

    def logx(t):
        return np.log(np.asarray(fractions(params, jnp.asarray(t))))

    # Central differences of log s, log i in tau (float64: error ~ eps^2 + roundoff/eps).
    dlog = (logx(tau + eps) - logx(tau - eps)) / (2 * eps)
    x = np.exp(logx(tau))
    expected = np.stack([dlog[:, 0] + obj.T * beta * x[:, 1],
                         dlog[:, 1] - obj.T * (beta * x[:, 0] - gamma)], axis=1)
    residuals = jax.jit(lambda p: obj.residuals(p))(params)
    np.testing.assert_allclose(residuals, expected, rtol=1e-6, atol=1e-6)


def test_loss_terms_by_hand(x64):
    obj, params = _objective()
    total, parts = obj(params)
    x_obs = np.asarray(obj.fractions(params, obj.tau_obs))
    data = np.mean(((100.0 * x_obs[:, 1] - np.arange(5.0)) / 4.0) ** 2)
    x_0 = np.asarray(obj.fractions(params, jnp.zeros(1)))[0]
    ic = (np.log(x_0[0]) - np.log(0.98)) ** 2 + (np.log(x_0[1]) - np.log(0.02)) ** 2
    ode = np.mean(np.asarray(obj.residuals(params)) ** 2)
    np.testing.assert_allclose([parts["data"], parts["ic"], parts["ode"]], [data, ic, ode],
                               rtol=1e-10)
    assert float(total) == pytest.approx(data + ic + ode, rel=1e-10)
    np.testing.assert_allclose(np.asarray(obj.fractions(params, obj.tau_col)).sum(1), 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(key=None), "key"),
        (dict(weights={"physics": 1.0}), "weights"),
        (dict(weights={"ode": 0.0}), "weights"),
        (dict(weights={"ic": -1.0}), "weights"),
        (dict(y0={"S": 763.0, "I": 0.0, "R": 0.0}), "y0"),
        (dict(steps=0), "steps"),
        (dict(lbfgs_steps=-1), "lbfgs_steps"),
        (dict(n_collocation=1), "n_collocation"),
        (dict(hidden=()), "hidden"),
        (dict(gamma_init=0.0), "gamma_init"),
        (dict(N=10.0), "population"),
    ],
)
def test_bad_input(kwargs, match):
    call = dict(y0=Y0, t0=0.0, key=jr.PRNGKey(0))
    call.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_pinn(TS, {"I": COUNTS}, **call)


def test_only_compartments_as_data():
    with pytest.raises(ValueError, match="data"):
        fit_pinn(TS, {"cumulative": np.cumsum(COUNTS)}, y0=Y0, t0=0.0, key=jr.PRNGKey(0))
    with pytest.raises(ValueError, match="NaN"):
        fit_pinn(TS, {"I": np.full(14, np.nan)}, y0=Y0, t0=0.0, key=jr.PRNGKey(0))


def test_unfitted_names_are_reported_first():
    # Incidence is not a PINN output: say so, not that it "sums to more than the
    # population" (the shared checks used to run first).
    with pytest.raises(ValueError, match="not fitted by the PINN"):
        fit_pinn(TS, {"incidence": COUNTS}, y0=Y0, t0=0.0, key=jr.PRNGKey(0))


@pytest.mark.parametrize("key", [0, jr.split(jr.PRNGKey(0), 2)])
def test_key_must_be_one_prng_key(key):
    with pytest.raises(TypeError, match="`key` must be one jax.random key"):
        fit_pinn(TS, {"I": COUNTS}, y0=Y0, t0=0.0, key=key)


def test_jvp_derivative_is_rowwise():
    # One batched jvp with unit tangents gives each row's own derivative (no cross terms).
    obj, params = _objective()
    tau = jnp.linspace(0.0, 1.0, 4)
    _, d = jax.jit(lambda p, t: obj.log_fractions(p, t))(params, tau)
    one = jax.jacfwd(lambda t: obj.log_fractions(params, t[None])[0][0])
    rowwise = jax.jit(jax.vmap(one))(tau)
    np.testing.assert_allclose(d, rowwise, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(weights={"data": "abc"}), TypeError, r"`weights\['data'\]`"),
        (dict(weights={"ode": [1.0, 2.0]}), TypeError, r"`weights\['ode'\]`"),
        (dict(weights={"ic": float("nan")}), ValueError, r"`weights\['ic'\]`"),
        (dict(weights={"dat": 1.0}), ValueError, "`weights`.*did you mean 'data'"),
        (dict(weights=[1.0, 1.0, 1.0]), TypeError, "`weights`"),
        (dict(activation="tahn"), ValueError, "`activation`.*did you mean 'tanh'"),
        (dict(activation=None), TypeError, "`activation`"),
        (dict(learning_rate="0.01"), TypeError, "`learning_rate`"),
        (dict(steps=10.0), TypeError, "`steps`"),
        (dict(lbfgs_steps=np.int64(-1)), ValueError, "`lbfgs_steps`"),
        (dict(n_collocation=2**40), ValueError, "`n_collocation`"),
        (dict(n_grid="201"), TypeError, "`n_grid`"),
        (dict(chunk_size=0), ValueError, "`chunk_size`"),
        (dict(beta_init="1.7"), TypeError, "`beta_init`"),
        (dict(gamma_init=float("inf")), ValueError, "`gamma_init`"),
        (dict(hidden=(32, 2.5)), TypeError, r"`hidden\[1\]`"),
        (dict(hidden=(32, -1)), ValueError, r"`hidden\[1\]`"),
        (dict(verbose="loud"), TypeError, "`verbose`"),
        (dict(warn=None), TypeError, "`warn`"),
        (dict(y0={"S": 762.0, "I": "one", "R": 0.0}), TypeError, r"`y0\['I'\]`"),
        (dict(N="763"), TypeError, "`N`"),
        (dict(t0="start"), TypeError, "`t0`"),
    ],
)
def test_bad_arguments_are_named_before_compiling(kwargs, exc, match):
    from tests.helpers import count_compilations

    call = dict(y0=Y0, t0=0.0, key=jr.PRNGKey(0))
    call.update(kwargs)
    with count_compilations() as c, pytest.raises(exc, match=match):
        fit_pinn(TS, {"I": COUNTS}, **call)
    assert c.count == 0


def test_bad_ts_and_data_are_named_and_numpy_scalars_pass():
    from tests.helpers import count_compilations

    k = jr.PRNGKey(0)
    with count_compilations() as c:
        with pytest.raises(TypeError, match="`ts`"):
            fit_pinn(["a"] * 14, {"I": COUNTS}, y0=Y0, key=k)
        with pytest.raises(TypeError, match=r"`data\['I'\]`"):
            fit_pinn(TS, {"I": "many"}, y0=Y0, t0=0.0, key=k)
        # NumPy counts and rates are valid: the first error is the missing key.
        with pytest.raises(ValueError, match="`key`"):
            fit_pinn(TS, {"I": COUNTS}, y0=Y0, t0=np.float32(0.0), steps=np.int64(10),
                     lbfgs_steps=np.int32(0), n_collocation=np.int64(16),
                     n_grid=np.int64(11), chunk_size=np.int64(5), hidden=(np.int64(4),),
                     learning_rate=np.float32(1e-2), weights={"ic": np.float64(2.0)},
                     key=None)
    assert c.count == 0


def test_unfitted_name_suggests_the_compartment():
    with pytest.raises(ValueError, match="not fitted by the PINN.*did you mean 'R'"):
        fit_pinn(TS, {"r": COUNTS}, y0=Y0, t0=0.0, key=jr.PRNGKey(0))


# --------------------------------------------------------------------------------------
# Your own model (issue 20): any unstratified closed model
# --------------------------------------------------------------------------------------


def _my_seir():
    import epinn

    return epinn.Model(
        ("S", "E", "I", "R"), ("beta", "sigma", "gamma"),
        [epinn.infection("S", "E", lambda t, y, p: p.beta * y.S * y.I / p.N),
         epinn.flow("E", "I", lambda t, y, p: p.sigma * y.E),
         epinn.flow("I", "R", lambda t, y, p: p.gamma * y.I)], name="my SEIR")


def test_custom_model_residuals_are_its_equations(x64):
    """The residual built from a user-defined SEIR's flows equals the SEIR equations
    written by hand, in logarithms: rho_c = dlog x_c/dtau - T f_c / x_c for S, E, I (R
    is determined by conservation). Same numbers up to roundoff (1e-12)."""
    net = _TimeMLP(features=(8, 4))
    params = {"net": _init_time_mlp(net, jr.PRNGKey(2), jnp.zeros(4), out_scale=1.0),
              "log_beta": jnp.log(0.9), "log_gamma": jnp.log(0.3)}
    f = jnp.asarray
    obj = _PINNObjective(
        net=net, tau_obs=f(np.linspace(0.1, 1.0, 3)), obs={"I": f(np.ones(3))},
        scale={"I": f(1.0)}, tau_col=f(np.linspace(0.0, 1.0, 5)),
        x0=f([0.97, 0.01, 0.02, 0.0]), weights={k: f(1.0) for k in ("data", "ode", "ic")},
        N=f(1000.0), T=40.0, model=_my_seir(), fixed={"sigma": f(0.5)}, t0=0.0)
    logx, dlogx = obj.log_fractions(params, obj.tau_col)
    s, e, i = (np.exp(np.asarray(logx[:, k])) for k in range(3))
    by_hand = np.stack([-0.9 * i, 0.9 * s * i / e - 0.5, 0.5 * e / i - 0.3], axis=1)
    expected = np.asarray(dlogx[:, :3]) - 40.0 * by_hand
    np.testing.assert_allclose(obj.residuals(params), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_custom_seir_recovers_rates_and_follows_the_ode():
    """A user-defined SEIR with sigma fixed: beta and gamma from noiseless I and R
    (measured within 0.1%; asserted 2%), and the network's states follow the ODE
    solution with the true rates (scipy's solve_ivp, independent of epinn) to 2% of each
    compartment's peak."""
    from scipy.integrate import solve_ivp

    model = _my_seir()
    ts = np.arange(1.0, 41.0)
    y0 = {"S": 995.0, "E": 3.0, "I": 2.0, "R": 0.0}
    traj = solve(model, {"beta": 0.9, "sigma": 0.5, "gamma": 0.3, "N": 1000.0}, y0,
                 np.concatenate([[0.0], ts]))
    data = {"I": np.asarray(traj["I"][1:]), "R": np.asarray(traj["R"][1:])}
    res = fit_pinn(ts, data, y0=y0, t0=0.0, model=model, rates={"sigma": 0.5},
                   lbfgs_steps=2000, key=jr.PRNGKey(0), warn=False)
    assert res.free == ("beta", "gamma") and res.params["sigma"] == 0.5
    assert res.params["beta"] == pytest.approx(0.9, rel=0.02)
    assert res.params["gamma"] == pytest.approx(0.3, rel=0.02)
    assert res.R0 == pytest.approx(res.params["beta"] / res.params["gamma"], rel=1e-5)

    def seir(t, y):
        s, e, i, _ = y
        return [-0.9 * s * i / 1000, 0.9 * s * i / 1000 - 0.5 * e, 0.5 * e - 0.3 * i, 0.3 * i]

    t = res.extras["t"]
    ref = solve_ivp(seir, (0.0, 40.0), list(y0.values()), t_eval=t, rtol=1e-10,
                    atol=1e-8).y.T
    states = res.extras["network_states"]
    np.testing.assert_allclose(states, ref, atol=0.02 * ref.max(axis=0).max())
    assert np.all(np.abs(states - ref).max(axis=0) <= 0.02 * ref.max(axis=0))


@pytest.mark.parametrize(
    "model, kwargs, match",
    [
        ("vital", {}, "closed population.*births"),
        ("stratified", {}, "unstratified models"),
        ("seir", {"y0": {"S": 995.0, "E": 0.0, "I": 5.0, "R": 0.0}},
         "`y0` of \\['E'\\] must be positive"),
        ("seir", {"rates": {}}, "`init` must give a start for the learned rates \\['sigma'\\]"),
        ("seir", {"rates": {"zeta": 1.0}}, "`rates` has unknown names \\['zeta'\\]"),
        ("seir", {"init": {"sigma": 0.5}}, "not learned rates"),
        ("seir", {"rates": {"beta": 1.0, "sigma": 0.5, "gamma": 0.3}}, "nothing is left"),
    ],
)
def test_models_the_pinn_refuses(model, kwargs, match):
    import epinn
    from epinn.compartmental import SIRVitalDynamics
    from tests.helpers import count_compilations

    m = {"vital": SIRVitalDynamics(), "stratified": epinn.stratify(SIR(), 2),
         "seir": _my_seir()}[model]
    call = dict(y0={"S": 995.0, "E": 3.0, "I": 2.0, "R": 0.0}, t0=0.0, key=jr.PRNGKey(0),
                rates={"sigma": 0.5})
    call.update(kwargs)
    with count_compilations() as c, pytest.raises(ValueError, match=match):
        fit_pinn(TS, {"I": COUNTS}, model=m, **call)
    assert c.count == 0
