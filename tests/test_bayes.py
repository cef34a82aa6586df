"""Tests for epinn.bayes: runners, diagnostics, BNN and Bayesian epidemic models.

References used: conjugate normal posteriors (closed form), scipy's ``solve_ivp`` and
``scipy.stats`` densities for the epidemic log density, numpy quantiles. NUTS compilation
dominates the cost of a test here (~10-30 s each on 2 shared cores), so the fast suite
runs few samplers and the statistical recovery checks are marked slow.
"""

import functools

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy import stats
from scipy.integrate import solve_ivp

from epinn import MLP
from epinn import NonFiniteLossError
from epinn.bayes import (
    MCMCResult,
    SVIResult,
    _check_final_loss,
    bnn_model,
    credible_interval,
    default_priors,
    epidemic_model,
    fit_bnn,
    fit_epidemic,
    fit_bayesian_neural_beta,
    predictive_coverage,
    mcmc_diagnostics,
    neural_beta_model,
    posterior_predictive,
    prior_predictive,
    run_nuts,
    run_svi,
)
from epinn.compartmental import SEIR, solve
from epinn.estimation import ConvergenceWarning

BOARDING = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4], float)
DAYS = np.arange(1.0, 15.0)
Y0 = {"S": 762.0, "I": 1.0, "R": 0.0}

# Conjugate normal model: mu ~ N(0, 10^2), y_i ~ N(mu, 1), n = 20.
Y_CONJ = np.asarray(jr.normal(jr.PRNGKey(42), (20,)) + 1.5)
POST_VAR = 1.0 / (1.0 / 100.0 + Y_CONJ.size)
POST_MEAN = POST_VAR * Y_CONJ.sum()


def conjugate_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


# --------------------------------------------------------------------------------------
# Diagnostics and intervals (numpy only)
# --------------------------------------------------------------------------------------


def test_diagnostics_pass_for_independent_chains():
    draws = {"a": np.asarray(jr.normal(jr.PRNGKey(0), (4, 500))),
             "b": np.asarray(jr.normal(jr.PRNGKey(1), (4, 500, 3)))}
    summary, problems = mcmc_diagnostics(draws, np.zeros((4, 500), bool))
    assert problems == ()
    # Independent draws: ESS close to the number of draws; R-hat close to 1.
    assert 1500 < float(summary["a"]["ess"]) < 2600
    assert abs(float(summary["a"]["r_hat"]) - 1.0) < 0.01
    assert summary["b"]["mean"].shape == (3,)
    # 95% equal-tailed interval of N(0, 1): +-1.96, within Monte Carlo error.
    assert abs(float(summary["a"]["lo"]) + 1.96) < 0.15
    assert abs(float(summary["a"]["hi"]) - 1.96) < 0.15


def test_diagnostics_flag_stuck_chains_and_divergences():
    x = np.array(jr.normal(jr.PRNGKey(0), (4, 200)))
    x[0] += 5.0  # one chain elsewhere
    div = np.zeros((4, 200), bool)
    div[1, 3] = True
    _, problems = mcmc_diagnostics({"x": x}, div)
    text = " ".join(problems)
    assert "R-hat" in text and "1 divergent" in text
    # Autocorrelated chain (random walk): tiny ESS.
    walk = np.cumsum(np.asarray(jr.normal(jr.PRNGKey(1), (2, 400))), axis=1)
    _, problems = mcmc_diagnostics({"w": walk}, min_ess=100)
    assert any("ESS" in p for p in problems)
    # Only the checked sites are judged.
    fine = np.asarray(jr.normal(jr.PRNGKey(2), (4, 200)))
    _, problems = mcmc_diagnostics({"x": x, "fine": fine}, sites=("fine",))
    assert problems == ()


def test_diagnostics_bad_input():
    with pytest.raises(ValueError, match="samples_by_chain"):
        mcmc_diagnostics({})
    with pytest.raises(ValueError, match="samples_by_chain"):
        mcmc_diagnostics({"x": np.zeros(10)})
    with pytest.raises(ValueError, match="max_r_hat"):
        mcmc_diagnostics({"x": np.zeros((2, 10))}, max_r_hat=0.5)
    with pytest.raises(ValueError, match="prob"):
        mcmc_diagnostics({"x": np.zeros((2, 10))}, prob=1.5)


def test_credible_interval_matches_numpy_quantiles():
    x = np.asarray(jr.gamma(jr.PRNGKey(0), 2.0, (1000, 3)))
    mean, lo, hi = credible_interval(x, prob=0.8)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(lo, np.quantile(x, 0.1, axis=0), rtol=1e-5)
    np.testing.assert_allclose(hi, np.quantile(x, 0.9, axis=0), rtol=1e-5)
    assert predictive_coverage(x[:, 0], lo[0], hi[0]) == pytest.approx(0.8, abs=0.002)
    with pytest.raises(ValueError, match="prob"):
        credible_interval(x, prob=0.0)
    with pytest.raises(ValueError, match="draws"):
        credible_interval(x[:1])
    with pytest.raises(ValueError, match="y"):
        predictive_coverage(np.zeros(0), 0.0, 1.0)


# --------------------------------------------------------------------------------------
# NUTS and SVI on a conjugate model (closed-form posterior)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conj_fit():
    return run_nuts(conjugate_model, jr.PRNGKey(3), jnp.asarray(Y_CONJ), num_warmup=300,
                    num_samples=400, num_chains=2)


def test_nuts_recovers_conjugate_posterior(conj_fit):
    fit = conj_fit
    assert isinstance(fit, MCMCResult) and fit.ok and fit.problems == ()
    assert fit.samples["mu"].shape == (800,)
    assert fit.samples_by_chain["mu"].shape == (2, 400)
    assert fit.diverging.shape == fit.num_steps.shape == (2, 400)
    assert fit.latent_sites == ("mu",)
    row = fit.table()["mu"]
    assert set(row) == {"mean", "lo", "hi", "r_hat", "ess"}
    sd = np.sqrt(POST_VAR)
    # Monte Carlo error of the mean is sd / sqrt(ESS); allow 4 of them.
    assert abs(row["mean"] - POST_MEAN) < 4 * sd / np.sqrt(row["ess"])
    assert float(np.std(fit.samples["mu"])) == pytest.approx(sd, rel=0.12)
    assert row["lo"] == pytest.approx(POST_MEAN - 1.96 * sd, abs=0.5 * sd)
    with pytest.raises(ValueError, match="names"):
        fit.table(("nope",))


def test_nuts_same_key_same_samples_and_loud_failure(conj_fit):
    # Same key: identical draws. An impossible ESS target fails loudly (warning + flag)
    # without changing the draws.
    with pytest.warns(ConvergenceWarning, match="ESS"):
        again = run_nuts(conjugate_model, jr.PRNGKey(3), jnp.asarray(Y_CONJ), num_warmup=300,
                         num_samples=400, num_chains=2, min_ess=1e6)
    np.testing.assert_array_equal(again.samples["mu"], conj_fit.samples["mu"])
    assert not again.ok and any("ESS" in p for p in again.problems)


def test_nuts_bad_options():
    with pytest.raises(ValueError, match="num_samples"):
        run_nuts(conjugate_model, jr.PRNGKey(0), Y_CONJ, num_samples=0)
    with pytest.raises(ValueError, match="chain_method"):
        run_nuts(conjugate_model, jr.PRNGKey(0), Y_CONJ, chain_method="magic")
    with pytest.raises(TypeError, match="key"):
        run_nuts(conjugate_model, 0, Y_CONJ)
    with pytest.raises(TypeError, match="model"):
        run_nuts("model", jr.PRNGKey(0), Y_CONJ)


@pytest.mark.parametrize("guide", ["normal", "lowrank"])
def test_svi_recovers_conjugate_posterior(guide):
    fit = run_svi(conjugate_model, jr.PRNGKey(0), jnp.asarray(Y_CONJ), guide=guide,
                  num_steps=2000, learning_rate=0.02, num_samples=4000)
    assert isinstance(fit, SVIResult) and fit.latent_sites == ("mu",)
    assert fit.losses.shape == (2000,)
    # The Gaussian guide family contains the exact posterior; the optimum is exact up to
    # stochastic-gradient noise in the final iterate.
    assert float(fit.samples["mu"].mean()) == pytest.approx(POST_MEAN, abs=0.06)
    assert float(fit.samples["mu"].std()) == pytest.approx(np.sqrt(POST_VAR), rel=0.2)
    pp = posterior_predictive(fit, jr.PRNGKey(1), jnp.zeros(5))
    assert pp["y"].shape == (4000, 5)


def test_svi_bad_options():
    with pytest.raises(ValueError, match="guide"):
        run_svi(conjugate_model, jr.PRNGKey(0), Y_CONJ, guide="flow")
    with pytest.raises(ValueError, match="learning_rate"):
        run_svi(conjugate_model, jr.PRNGKey(0), Y_CONJ, learning_rate=-1.0)
    with pytest.raises(TypeError, match="result"):
        posterior_predictive({"mu": 1.0}, jr.PRNGKey(0))


# --------------------------------------------------------------------------------------
# Bayesian epidemic model
# --------------------------------------------------------------------------------------


def _scipy_prevalence(beta, gamma, ts, y0=(762.0, 1.0, 0.0), N=763.0):
    def f(t, y):
        inf = beta * y[0] * y[1] / N
        return [-inf, inf - gamma * y[1], gamma * y[1]]

    sol = solve_ivp(f, (0.0, ts[-1]), y0, t_eval=ts, rtol=1e-11, atol=1e-9)
    return sol.y[1]


def test_epidemic_log_density_matches_scipy(x64):
    # Independent reference: scipy ODE solution, truncated-normal / exponential priors and
    # the negative-binomial pmf from scipy.stats. Tolerance: both ODE solutions are good to
    # ~1e-9 relative and mu * dlogL/dmu is O(10) per day, so the log densities agree to
    # ~1e-7 relative.
    beta, gamma, phi_inv = 1.7, 0.55, 0.2
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0, rtol=1e-10, atol=1e-12)
    lp, _ = log_density(model, (DAYS, BOARDING), {},
                        {"beta": beta, "gamma": gamma, "phi_inv": phi_inv})
    mu = _scipy_prevalence(beta, gamma, np.arange(0.0, 15.0))[1:]
    phi = 1.0 / phi_inv
    ref = (stats.truncnorm.logpdf(beta, -2.0, np.inf, loc=2.0, scale=1.0)
           + stats.truncnorm.logpdf(gamma, -0.8, np.inf, loc=0.4, scale=0.5)
           + stats.expon.logpdf(phi_inv, scale=0.2)
           + stats.nbinom.logpmf(BOARDING, phi, phi / (phi + mu)).sum())
    assert float(lp) == pytest.approx(ref, rel=1e-7)
    # Poisson likelihood, incidence observation, SEIR with a reporting fraction: the
    # expected counts equal rho times the incidence of an independent epinn solve.
    seir = functools.partial(
        epidemic_model, y0={"S": 999.0, "E": 0.0, "I": 1.0, "R": 0.0}, t0=0.0,
        model=SEIR(), likelihood="poisson", observed="incidence",
        priors={"sigma": 0.5, "reporting": dist.Beta(2.0, 2.0)}, rtol=1e-10, atol=1e-12,
    )
    ts = np.arange(1.0, 11.0)
    y = np.arange(10.0)
    params = {"beta": 0.9, "gamma": 0.3, "reporting": 0.4}
    lp, trace = log_density(seir, (ts, y), {}, params)
    traj = solve(SEIR(), {"beta": 0.9, "sigma": 0.5, "gamma": 0.3, "N": 1000.0},
                 {"S": 999.0, "E": 0.0, "I": 1.0, "R": 0.0}, np.arange(0.0, 11.0),
                 rtol=1e-10, atol=1e-12)
    mu = 0.4 * np.diff(np.asarray(traj.cumulative_infections))
    np.testing.assert_allclose(trace["expected"]["value"], mu, rtol=1e-9)
    ref = (stats.truncnorm.logpdf(0.9, -2.0, np.inf, loc=2.0, scale=1.0)
           + stats.truncnorm.logpdf(0.3, -0.8, np.inf, loc=0.4, scale=0.5)
           + stats.beta.logpdf(0.4, 2.0, 2.0) + stats.poisson.logpmf(y, mu).sum())
    assert float(lp) == pytest.approx(ref, rel=1e-7)
    assert float(trace["R0"]["value"]) == pytest.approx(3.0)


def test_epidemic_solver_failure_is_masked_not_raised():
    # max_steps too small for the outbreak: the solve fails and the log density is -inf
    # (NUTS rejects such points); a slow epidemic still solves within the budget.
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0, max_steps=12)
    bad, trace = log_density(model, (DAYS, BOARDING), {},
                             {"beta": 6.0, "gamma": 0.5, "phi_inv": 0.1})
    assert float(bad) == -np.inf
    assert not bool(trace["solver_ok"]["value"])
    assert np.all(np.isnan(trace["expected"]["value"]))
    good, trace = log_density(model, (DAYS, BOARDING), {},
                              {"beta": 0.3, "gamma": 0.2, "phi_inv": 0.1})
    assert np.isfinite(float(good)) and bool(trace["solver_ok"]["value"])


def test_epidemic_free_initial_state():
    # I0 with a prior: S0 = N - I0. An I0 above N is a zero-density point, not an error.
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0,
                              priors={"I0": dist.Exponential(0.5)}, rtol=1e-8, atol=1e-10)
    lp, trace = log_density(model, (DAYS, BOARDING), {},
                            {"beta": 1.7, "gamma": 0.5, "phi_inv": 0.1, "I0": 3.0})
    ref = _scipy_prevalence(1.7, 0.5, np.arange(0.0, 15.0), y0=(760.0, 3.0, 0.0))[1:]
    np.testing.assert_allclose(trace["expected"]["value"], ref, rtol=1e-4)
    assert np.isfinite(float(lp))
    lp, _ = log_density(model, (DAYS, BOARDING), {},
                        {"beta": 1.7, "gamma": 0.5, "phi_inv": 0.1, "I0": 800.0})
    assert float(lp) == -np.inf


def test_epidemic_prior_predictive_matches_solve():
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0)
    draws = prior_predictive(model, jr.PRNGKey(0), 200, DAYS)
    assert draws["obs"].shape == draws["expected"].shape == (200, 14)
    assert "solver_failure" not in draws
    ok = np.asarray(draws["solver_ok"])
    assert ok.mean() > 0.9
    obs = np.asarray(draws["obs"])
    assert np.all(obs >= 0) and np.all(obs == np.round(obs))
    np.testing.assert_allclose(draws["R0"], draws["beta"] / draws["gamma"], rtol=1e-6)
    np.testing.assert_allclose(draws["recovery_time"], 1.0 / draws["gamma"], rtol=1e-6)
    # The expected counts are the prevalence of an independent solve at the drawn rates
    # (float32; tolerance from rtol 1e-5 on fractions, plus the 1e-6 floor).
    for i in np.flatnonzero(ok)[:3]:
        ref = _scipy_prevalence(float(draws["beta"][i]), float(draws["gamma"][i]),
                                np.arange(0.0, 15.0))[1:]
        np.testing.assert_allclose(draws["expected"][i], np.maximum(ref, 1e-6),
                                   rtol=2e-3, atol=1e-2)


def test_epidemic_bad_input():
    fit = functools.partial(fit_epidemic, key=jr.PRNGKey(0), y0=Y0, t0=0.0)
    with pytest.raises(ValueError, match="counts"):
        fit(DAYS, None)
    with pytest.raises(ValueError, match="ts"):
        fit([], [])
    with pytest.raises(ValueError, match="counts"):
        fit(DAYS, BOARDING[:5])
    with pytest.raises(ValueError, match="negative"):
        fit(DAYS, -BOARDING)
    with pytest.raises(ValueError, match="NaN"):
        fit(DAYS, np.where(DAYS > 3, BOARDING, np.nan))
    with pytest.raises(ValueError, match="ts"):
        fit(DAYS[::-1], BOARDING)
    # Priors: wrong support, invalid parameters, unknown names, missing rates, bad numbers.
    with pytest.raises(ValueError, match=r"priors\['beta'\].*support"):
        fit(DAYS, BOARDING, priors={"beta": dist.Normal(2.0, 1.0)})
    with pytest.raises(ValueError, match=r"priors\[.gamma.\].*invalid parameter rate"):
        fit(DAYS, BOARDING, priors={"gamma": dist.Gamma(2.0, -1.0, validate_args=False)})
    with pytest.raises(ValueError, match=r"priors\['reporting'\]"):
        fit(DAYS, BOARDING, priors={"reporting": dist.Exponential(1.0)})
    with pytest.raises(ValueError, match="unknown names"):
        fit(DAYS, BOARDING, priors={"sigma": 0.2})
    with pytest.raises(ValueError, match="sigma"):
        fit(DAYS, BOARDING, model=SEIR(), y0={"S": 762.0, "E": 0.0, "I": 1.0, "R": 0.0})
    with pytest.raises(ValueError, match=r"priors\['gamma'\]"):
        fit(DAYS, BOARDING, priors={"gamma": -0.5})
    with pytest.raises(TypeError, match=r"priors\['gamma'\]"):
        fit(DAYS, BOARDING, priors={"gamma": "0.5"})
    with pytest.raises(ValueError, match="phi_inv"):
        fit(DAYS, BOARDING, likelihood="poisson", priors={"phi_inv": 0.1})
    with pytest.raises(ValueError, match="likelihood"):
        fit(DAYS, BOARDING, likelihood="gaussian")
    with pytest.raises(ValueError, match="observed"):
        fit(DAYS, BOARDING, observed="deaths")
    with pytest.raises(ValueError, match="t0"):
        fit(DAYS, BOARDING, observed="incidence", t0=1.0)
    with pytest.raises(ValueError, match="t0"):
        fit(DAYS, BOARDING, t0=5.0)
    with pytest.raises(ValueError, match="y0"):
        fit(DAYS, BOARDING, y0={"S": 762.0, "I": 1.0})
    with pytest.raises(ValueError, match="population"):
        fit(DAYS, BOARDING, population=100.0)
    with pytest.raises(TypeError, match="model"):
        fit(DAYS, BOARDING, model="SIR")
    with pytest.raises(ValueError, match="data sets"):
        fit(DAYS, np.zeros((0, 14)))
    assert sorted(default_priors()) == ["beta", "gamma", "phi_inv"]


def test_neural_beta_model_sites_and_errors():
    net = MLP((8, 1), activation="tanh")
    model = functools.partial(neural_beta_model, y0=Y0, t0=0.0, network=net)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(DAYS)
    assert tr["beta_t"]["value"].shape == (15,)
    assert np.all(np.asarray(tr["beta_t"]["value"]) > 0)
    assert tr["obs"]["value"].shape == (14,)
    assert any(k.startswith("beta_net/") for k in tr)
    np.testing.assert_allclose(tr["R0_t"]["value"],
                               tr["beta_t"]["value"] / tr["gamma"]["value"], rtol=1e-6)
    with pytest.raises(ValueError, match="beta"):
        model(DAYS, priors={"beta": dist.Exponential(1.0)})
    with pytest.raises(ValueError, match="one output"):
        neural_beta_model(DAYS, y0=Y0, t0=0.0, network=MLP((8, 2)))
    with pytest.raises(ValueError, match="counts"):
        fit_bayesian_neural_beta(DAYS, None, key=jr.PRNGKey(0), y0=Y0)


# --------------------------------------------------------------------------------------
# Bayesian neural network
# --------------------------------------------------------------------------------------


def _trace(model, *args, **kwargs):
    return numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(
        *args, **kwargs)


def test_bnn_model_sites():
    x = jnp.linspace(-1.0, 1.0, 7)[:, None]
    tr = _trace(bnn_model, x, jnp.zeros(7), network=MLP((5, 1), activation="tanh"))
    assert tr["mean"]["value"].shape == (7,) and "sigma" in tr
    weights = [k for k in tr if k.startswith("net/")]
    assert len(weights) == 4  # two kernels and two biases
    # The weights go through the network: mean = MLP.apply(weights).
    params = {"params": {"Dense_0": {"kernel": tr["net/Dense_0.kernel"]["value"],
                                     "bias": tr["net/Dense_0.bias"]["value"]},
                         "Dense_1": {"kernel": tr["net/Dense_1.kernel"]["value"],
                                     "bias": tr["net/Dense_1.bias"]["value"]}}}
    ref = MLP((5, 1), activation="tanh").apply(params, x)[:, 0]
    np.testing.assert_allclose(tr["mean"]["value"], ref, rtol=1e-6)
    # Heteroscedastic: noise from the second output; hierarchical: non-centred weights.
    tr = _trace(bnn_model, x, None, network=MLP((5, 2)), heteroscedastic=True,
                hierarchical=True)
    assert tr["noise"]["value"].shape == (7,) and np.all(np.asarray(tr["noise"]["value"]) > 0)
    assert "weight_scale" in tr
    assert any(k.endswith("Dense_0.kernel_decentered") for k in tr)
    assert tr["obs"]["value"].shape == (7,)


def test_bnn_bad_input():
    x = jnp.zeros((4, 1))
    with pytest.raises(ValueError, match="output"):
        _trace(bnn_model, x, jnp.zeros(4), network=MLP((5, 2)))
    with pytest.raises(ValueError, match="output"):
        _trace(bnn_model, x, jnp.zeros(4), network=MLP((5, 1)), heteroscedastic=True)
    with pytest.raises(ValueError, match="y"):
        _trace(bnn_model, x, jnp.zeros(3), network=MLP((5, 1)))
    with pytest.raises(ValueError, match="x"):
        _trace(bnn_model, jnp.zeros((0, 1)), None, network=MLP((5, 1)))
    with pytest.raises(ValueError, match="prior_scale"):
        _trace(bnn_model, x, None, network=MLP((5, 1)), prior_scale=-1.0)
    with pytest.raises(ValueError, match="method"):
        fit_bnn(x, jnp.zeros(4), key=jr.PRNGKey(0), network=MLP((5, 1)), method="mcmc")
    with pytest.raises(ValueError, match="y"):
        fit_bnn(x, None, key=jr.PRNGKey(0), network=MLP((5, 1)))


def _regression_data(key, n):
    """y = sin(2x) + 0.3x + N(0, 0.2^2) with x in [-2, -0.5] U [0.5, 2] (a gap at 0)."""
    k1, k2, k3 = jr.split(key, 3)
    x = jr.uniform(k1, (n,), minval=0.5, maxval=2.0) * jnp.where(
        jr.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
    return x[:, None], jnp.sin(2 * x) + 0.3 * x + 0.2 * jr.normal(k3, (n,))


@pytest.mark.slow  # ~30 s (compilation); the BNN experiment test runs SVI too
def test_bnn_svi_runs_and_predicts():
    x, y = _regression_data(jr.PRNGKey(0), 40)
    fit = fit_bnn(x, y, key=jr.PRNGKey(1), network=MLP((8, 1), activation="tanh"),
                  method="svi", num_steps=1500, num_samples=300)
    assert fit.losses[-100:].mean() < fit.losses[:100].mean()
    pp = posterior_predictive(fit, jr.PRNGKey(2), jnp.linspace(-3, 3, 11)[:, None])
    assert pp["obs"].shape == pp["mean"].shape == (300, 11)
    assert np.all(np.isfinite(np.asarray(pp["obs"])))


# --------------------------------------------------------------------------------------
# Slow statistical checks
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bnn_nuts_calibrated_and_wider_away_from_data():
    # 90% predictive intervals on held-out data from the training distribution cover
    # 85-95% of it (1000 points: binomial sd of the coverage ~0.01), and the band of the
    # mean function is wider in the gap and outside the data than inside.
    x, y = _regression_data(jr.PRNGKey(0), 80)
    xt, yt = _regression_data(jr.PRNGKey(7), 1000)
    fit = fit_bnn(x, y, key=jr.PRNGKey(1), network=MLP((8, 1), activation="tanh"),
                  num_warmup=300, num_samples=300, num_chains=4)
    assert fit.num_divergences < 10
    _, lo, hi = credible_interval(posterior_predictive(fit, jr.PRNGKey(2), xt)["obs"], 0.9)
    assert 0.85 <= predictive_coverage(yt, lo, hi) <= 0.95
    grid = jnp.array([[-1.25], [1.25], [0.0], [3.0]])
    _, lo, hi = credible_interval(posterior_predictive(fit, jr.PRNGKey(3), grid)["mean"], 0.9)
    width = np.asarray(hi - lo)
    assert width[2] > 2 * max(width[:2]) and width[3] > 2 * max(width[:2])


@pytest.mark.slow
def test_boarding_school_posterior_matches_stan():
    # Published Stan posterior (Grinsztajn et al. 2021): beta 1.73 (1.58-1.89), gamma 0.54
    # (0.47-0.61), R0 3.2 (2.8-3.7), recovery time 1.85 (1.6-2.1). Tolerances: Monte Carlo
    # error of the means is ~0.002 (ESS > 1000); the published values are rounded.
    fit = fit_epidemic(DAYS, BOARDING, key=jr.PRNGKey(0), y0=Y0, t0=0.0, num_warmup=500,
                       num_samples=500)
    assert fit.ok and fit.num_divergences == 0
    t = fit.table(("beta", "gamma", "R0", "recovery_time"))
    assert t["beta"]["mean"] == pytest.approx(1.73, abs=0.02)
    assert t["gamma"]["mean"] == pytest.approx(0.54, abs=0.02)
    assert t["R0"]["mean"] == pytest.approx(3.2, abs=0.1)
    assert t["recovery_time"]["mean"] == pytest.approx(1.85, abs=0.06)
    again = fit_epidemic(DAYS, BOARDING, key=jr.PRNGKey(0), y0=Y0, t0=0.0, num_warmup=500,
                         num_samples=500)
    np.testing.assert_array_equal(again.samples["beta"], fit.samples["beta"])
    # Posterior predictive: the data lie inside the 95% predictive band on most days.
    pp = posterior_predictive(fit, jr.PRNGKey(1), DAYS)
    _, lo, hi = credible_interval(pp["obs"], 0.95)
    assert predictive_coverage(BOARDING, lo, hi) >= 12 / 14


@pytest.mark.slow  # ~9 min: 20 NUTS runs, each recompiled by numpyro
def test_recovers_known_rates_from_simulated_outbreaks():
    # 20 outbreaks simulated from SIR (beta 1.6, gamma 0.5, N 763, I0 1) with
    # negative-binomial noise (phi = 10) on days 1..14, fitted with the Stan priors: the 95%
    # intervals must cover the truth in at least 17 of 20 (expected 19; P(<= 16) < 2%).
    beta, gamma, phi = 1.6, 0.5, 10.0
    mu = _scipy_prevalence(beta, gamma, np.arange(0.0, 15.0))[1:]
    rng = np.random.default_rng(0)
    data = rng.negative_binomial(phi, phi / (phi + mu), size=(20, 14)).astype(float)
    fits = fit_epidemic(DAYS, data, key=jr.PRNGKey(1), y0=Y0, t0=0.0, num_warmup=300,
                        num_samples=300, warn=False)
    assert len(fits) == 20
    cover_b = sum(f.table()["beta"]["lo"] <= beta <= f.table()["beta"]["hi"] for f in fits)
    cover_g = sum(f.table()["gamma"]["lo"] <= gamma <= f.table()["gamma"]["hi"] for f in fits)
    assert cover_b >= 17 and cover_g >= 17
    assert sum(f.ok for f in fits) >= 18


@pytest.mark.slow
def test_nuts_survives_solver_failures_in_warmup():
    # With max_steps = 40 the solve fails for fast epidemics (large beta, visited early in
    # warm-up from the broad prior); the run must complete and still find the posterior.
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0, max_steps=40)
    draws = prior_predictive(model, jr.PRNGKey(0), 500, DAYS)
    assert 0 < np.mean(~np.asarray(draws["solver_ok"]))  # failures do occur in the prior
    fit = fit_epidemic(DAYS, BOARDING, key=jr.PRNGKey(2), y0=Y0, t0=0.0, max_steps=40,
                       num_warmup=300, num_samples=300)
    assert np.all(np.asarray(fit.samples["solver_ok"]))
    assert fit.table()["beta"]["mean"] == pytest.approx(1.73, abs=0.03)


@pytest.mark.slow
def test_neural_beta_band_covers_constant_truth():
    # Data from a constant beta = 1.6: the 90% band of beta(t) covers it over the outbreak
    # (days 2-10, where the data inform beta) and R0(t) is near 3.2.
    mu = _scipy_prevalence(1.6, 0.5, np.arange(0.0, 15.0))[1:]
    counts = np.random.default_rng(1).poisson(mu).astype(float)
    fit = fit_bayesian_neural_beta(DAYS, counts, key=jr.PRNGKey(0), y0=Y0, t0=0.0,
                          likelihood="poisson", num_steps=3000)
    _, lo, hi = credible_interval(fit.samples["beta_t"], 0.9)
    inside = (np.asarray(lo) <= 1.6) & (1.6 <= np.asarray(hi))
    assert inside[2:11].mean() >= 0.8


# --------------------------------------------------------------------------------------
# Bad input and edge cases found by the input audit
# --------------------------------------------------------------------------------------


def _x_and_double():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.deterministic("d", 2.0 * x)


@pytest.mark.slow  # ~17 s; the cause is covered fast by the init_params test below
def test_fit_bnn_single_chain():
    # numpyro wants init_params without a chain axis for one chain; fit_bnn stacks one
    # initialisation per chain, so run_nuts must drop the axis (was a Flax shape error).
    x = jnp.linspace(-1.0, 1.0, 8)[:, None]
    fit = fit_bnn(x, jnp.sin(3 * x[:, 0]), key=jr.PRNGKey(0), network=MLP((4, 1)),
                  num_warmup=5, num_samples=5, num_chains=1)
    assert fit.num_chains == 1
    shapes = {k: v.shape for k, v in fit.samples.items()}
    assert shapes == {"net/Dense_0.kernel": (5, 1, 4), "net/Dense_0.bias": (5, 4),
                      "net/Dense_1.kernel": (5, 4, 1), "net/Dense_1.bias": (5, 1),
                      "sigma": (5,), "mean": (5, 8)}
    assert fit.samples_by_chain["net/Dense_0.kernel"].shape == (1, 5, 1, 4)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in fit.samples.values())


def test_nuts_init_params_single_chain_with_or_without_chain_axis():
    # The documented (num_chains, ...) layout and numpyro's own single-chain layout give
    # the same draws; another start gives other draws (so init_params is really used).
    run = functools.partial(run_nuts, _x_and_double, jr.PRNGKey(0), num_warmup=5,
                            num_samples=5, num_chains=1, warn=False, check_sites=("d",))
    with_axis = run(init_params={"x": jnp.array([0.3])})
    without = run(init_params={"x": jnp.array(0.3)})
    other = run(init_params={"x": jnp.array([3.0])})
    np.testing.assert_array_equal(with_axis.samples["x"], without.samples["x"])
    assert not np.array_equal(with_axis.samples["x"], other.samples["x"])
    np.testing.assert_allclose(with_axis.samples["d"], 2 * with_axis.samples["x"], rtol=1e-6)


def test_nuts_check_sites_and_init_params_validated():
    run = functools.partial(run_nuts, conjugate_model, jr.PRNGKey(0), Y_CONJ, num_warmup=5,
                            num_samples=5, num_chains=2)
    # "y" is observed, not a latent site: the diagnostics used to pass vacuously.
    with pytest.raises(ValueError, match=r"check_sites.*'y'.*valid sites: \('mu',\)"):
        run(check_sites=("y",))
    with pytest.raises(TypeError, match="check_sites"):
        run(check_sites="mu")
    with pytest.raises(ValueError, match=r"init_params.*unknown \['y'\]"):
        run(init_params={"y": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"init_params.*missing \['mu'\]"):
        run(init_params={})
    with pytest.raises(ValueError, match=r"init_params\['mu'\].*shape \(2,\)"):
        run(init_params={"mu": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"init_params\['mu'\].*NaN"):
        run(init_params={"mu": jnp.array([0.0, jnp.nan])})
    with pytest.raises(TypeError, match="init_params"):
        run(init_params=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"init_params.*unknown \['y'\]"):
        run(num_chains=1, init_params={"y": jnp.zeros(1)})
    with pytest.raises(ValueError, match=r"sites.*'nope'"):
        mcmc_diagnostics({"x": np.zeros((2, 10))}, sites=("nope",))


def test_keys_checked():
    # A float array or a batch of keys is not one key (no bayes function takes a batch).
    for bad in (jnp.array([1.0, 2.0]), jr.split(jr.PRNGKey(0), 2), 0):
        with pytest.raises(TypeError, match="key"):
            run_nuts(conjugate_model, bad, Y_CONJ)
        with pytest.raises(TypeError, match="key"):
            run_svi(conjugate_model, bad, Y_CONJ)
        with pytest.raises(TypeError, match="key"):
            prior_predictive(conjugate_model, bad, 3, Y_CONJ)
        with pytest.raises(TypeError, match="key"):
            fit_bnn(jnp.zeros((4, 1)), jnp.zeros(4), key=bad, network=MLP((5, 1)))


def test_fit_bnn_bad_network_and_x():
    x, y = jnp.linspace(-1.0, 1.0, 8)[:, None], jnp.zeros(8)
    with pytest.raises(TypeError, match="`network` must be a Flax Linen module"):
        fit_bnn(x, y, key=jr.PRNGKey(0), network=None)
    with pytest.raises(TypeError, match="network"):
        fit_bayesian_neural_beta(DAYS, BOARDING, key=jr.PRNGKey(0), y0=Y0, network="mlp")
    for bad in (jnp.nan, jnp.inf):
        with pytest.raises(ValueError, match="`x` contains NaN or inf"):
            fit_bnn(x.at[0].set(bad), y, key=jr.PRNGKey(0), network=MLP((4, 1)))
        with pytest.raises(ValueError, match="`x` contains NaN or inf"):
            fit_bnn(x.at[0].set(bad), y, key=jr.PRNGKey(0), network=MLP((4, 1)), method="svi")


def test_svi_rank_validated():
    for rank in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="rank"):
            run_svi(conjugate_model, jr.PRNGKey(0), Y_CONJ, guide="lowrank", rank=rank)
    with pytest.raises(ValueError, match="rank.*lowrank"):
        run_svi(conjugate_model, jr.PRNGKey(0), Y_CONJ, guide="normal", rank=1)


def test_svi_divergence_raises_non_finite_loss_error():
    # lr = 1e8 drives the guide scale to 0 and the loss to NaN (numpyro then failed with
    # "invalid scale" when drawing from the guide).
    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(NonFiniteLossError, match=r"at step \d+ of 50.*learning_rate") as err:
        run_svi(model, jr.PRNGKey(0), num_steps=50, num_samples=5, learning_rate=1e8)
    step, history = err.value.epoch, err.value.history
    assert 1 <= step <= 50 and len(history.train_loss) == step - 1
    assert history.stop_reason == "non-finite loss"


def test_final_loss_rule():
    # A non-finite loss skipped mid-run (stable_update) is tolerated; one that lasts to the
    # end raises and names the first step of that last non-finite stretch (1-based).
    _check_final_loss(np.array([3.0, np.inf, 2.0, np.nan, 1.0]))
    with pytest.raises(NonFiniteLossError, match="became nan at step 4 of 5") as err:
        _check_final_loss(np.array([3.0, np.inf, 2.0, np.nan, np.nan]))
    assert err.value.epoch == 4 and err.value.history.train_loss == [3.0, np.inf, 2.0]
    with pytest.raises(NonFiniteLossError, match="became inf at step 1 of 2") as err:
        _check_final_loss(np.array([np.inf, np.nan]))
    assert err.value.history.train_loss == []
