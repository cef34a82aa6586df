"""Tests for epinn.bayes: runners, diagnostics, BNN and Bayesian epidemic models.

References used: conjugate normal posteriors (closed form), scipy's ``solve_ivp`` and
``scipy.stats`` densities for the epidemic log density, numpy quantiles. NUTS compilation
dominates the cost of a test here (~10-30 s each on 2 shared cores), so the fast suite
runs few samplers and the statistical recovery checks are marked slow.
"""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy import stats
from scipy.integrate import solve_ivp

from epinn import MLP, NonFiniteLossError
from epinn.bayes import (
    MCMCResult,
    SVIResult,
    bnn_model,
    credible_interval,
    default_priors,
    epidemic_model,
    fit_bayesian_neural_beta,
    fit_bnn,
    fit_epidemic,
    mcmc_diagnostics,
    neural_beta_model,
    posterior_predictive,
    predictive_coverage,
    prior_predictive,
    run_nuts,
    run_svi,
)
from epinn.bayes._run import _check_final_loss
from epinn.compartmental import SEIR, SIR, solve
from epinn.estimation import ConvergenceWarning
from tests.helpers import count_compilations

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
    with pytest.raises(ValueError, match="1 output"):
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


# --------------------------------------------------------------------------------------
# Priors with jnp parameters, time units, reparameterisation (issue 21)
# --------------------------------------------------------------------------------------


def test_jnp_prior_parameters_trace_under_jit():
    # A prior written with jnp (a concrete jax Array as parameter) used to fail with
    # TracerArrayConversionError once the model was traced by the sampler: its parameter
    # check ran on a tracer. Under jit the log density equals the one with math.log.
    import math

    def lp(prior):
        model = functools.partial(epidemic_model, y0=Y0, t0=0.0, priors={"beta": prior})
        f = jax.jit(lambda b: log_density(model, (DAYS, BOARDING), {},
                                          {"beta": b, "gamma": 0.5, "phi_inv": 0.1})[0])
        return float(f(1.7))

    assert lp(dist.LogNormal(jnp.log(2.0), 1.0)) == pytest.approx(
        lp(dist.LogNormal(math.log(2.0), 1.0)), rel=1e-6)
    # The bad-parameter check still runs on jnp parameters (concretely, before tracing).
    with pytest.raises(ValueError, match=r"priors\['beta'\].*invalid parameter rate"):
        epidemic_model(DAYS, BOARDING, y0=Y0, t0=0.0,
                       priors={"beta": dist.Gamma(jnp.asarray(2.0), -jnp.ones(()),
                                                  validate_args=False)})


@pytest.fixture(scope="module")
def jnp_prior_fit():
    # A small NUTS run with priors whose parameters are jnp arrays (the example).
    return fit_epidemic(DAYS, BOARDING, key=jr.PRNGKey(5), y0=Y0, t0=0.0,
                        priors={"beta": dist.LogNormal(jnp.log(2.0), 1.0),
                                "gamma": dist.TruncatedNormal(jnp.asarray(0.4), 0.5, low=0.0)},
                        num_warmup=150, num_samples=150, num_chains=2, warn=False)


def test_jnp_prior_samples(jnp_prior_fit):
    fit = jnp_prior_fit
    beta = np.asarray(fit.samples["beta"])
    assert beta.shape == (300,) and np.all(np.isfinite(beta))
    # The data dominate the prior: the posterior sits at the case study's beta (1.73),
    # far narrower than LogNormal(log 2, 1) (sd ~3).
    assert abs(beta.mean() - 1.73) < 0.1 and beta.std() < 0.2


def test_print_summary_has_derived_quantities(jnp_prior_fit, capsys):
    fit = jnp_prior_fit
    fit.print_summary()
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.strip() and not line.lstrip().startswith(("mean", "Number"))}
    names = list(rows)  # the latent sites first, then the derived quantities
    assert names[:3] == list(fit.latent_sites) == ["beta", "gamma", "phi_inv"]
    assert sorted(names[3:]) == ["R0", "phi", "recovery_time"]
    assert "mean" in out.splitlines()[0] and "2.5%" in out and "97.5%" in out
    assert f"Number of divergences: {fit.num_divergences}" in out
    table = fit.table(("R0", "recovery_time"))
    for name in ("R0", "recovery_time"):
        mean, std, median, lo, hi, ess, rhat = map(float, rows[name])
        x = np.asarray(fit.samples[name], dtype=np.float64)
        assert mean == pytest.approx(table[name]["mean"], abs=0.006)
        assert std == pytest.approx(x.std(), abs=0.006)
        assert median == pytest.approx(np.median(x), abs=0.006)
        assert lo == pytest.approx(table[name]["lo"], abs=0.006)
        assert hi == pytest.approx(table[name]["hi"], abs=0.006)
        assert ess == pytest.approx(table[name]["ess"], abs=0.006)
        assert rhat == pytest.approx(table[name]["r_hat"], abs=0.006)
    # Chosen sites and another interval; vector sites print one row per element.
    fit.print_summary(("expected",), prob=0.5)
    out = capsys.readouterr().out
    assert "25%" in out and "75%" in out and "expected[13]" in out and "beta" not in out
    with pytest.raises(ValueError, match=r"names.*'R_0'.*did you mean 'R0'"):
        fit.print_summary(("R_0",))
    with pytest.raises(TypeError, match="names"):
        fit.table("R0")


def test_to_arviz_round_trips(jnp_prior_fit):
    az = pytest.importorskip("arviz", reason="ArviZ is an optional extra (epinn[arviz])")
    fit = jnp_prior_fit
    idata = fit.to_arviz(jr.PRNGKey(1))
    assert isinstance(idata, az.InferenceData)
    for group in ("posterior", "sample_stats", "observed_data", "posterior_predictive",
                  "log_likelihood"):
        assert group in idata.groups()
    for name in ("beta", "gamma", "phi_inv", "R0", "recovery_time", "expected"):
        np.testing.assert_array_equal(idata.posterior[name].values,
                                      np.asarray(fit.samples_by_chain[name]))
    np.testing.assert_array_equal(idata.observed_data["obs"].values, BOARDING)
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, fit.diverging)
    np.testing.assert_array_equal(idata.sample_stats["n_steps"].values, fit.num_steps)
    assert np.all(idata.sample_stats["lp"].values == -fit.sample_stats["potential_energy"])
    pp = idata.posterior_predictive["obs"].values
    assert pp.shape == (2, 150, 14) and np.all(pp >= 0) and np.all(pp == np.round(pp))
    # The simulated counts follow the expected counts of the same draw: their mean over
    # all draws is close to the mean of "expected" (NegBin mean mu).
    mu = idata.posterior["expected"].values
    assert np.all(np.abs(pp.mean((0, 1)) - mu.mean((0, 1))) < 5 * np.sqrt(mu.mean((0, 1))) + 2)
    # Pointwise log-likelihood: the negative binomial at each draw (scipy reference).
    ll = idata.log_likelihood["obs"].values
    phi = idata.posterior["phi"].values[..., None]
    ref = stats.nbinom.logpmf(BOARDING, phi, phi / (phi + mu))
    np.testing.assert_allclose(ll, ref, rtol=2e-4, atol=2e-4)
    # ArviZ's own summary reads it.
    assert "beta" in az.summary(idata, var_names=["beta"]).index


def test_to_arviz_without_arviz_says_how_to_install(conj_fit, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "arviz", None)  # import arviz -> ImportError
    with pytest.raises(ImportError, match=r"pip install epinn\[arviz\]"):
        conj_fit.to_arviz()


def test_default_priors_time_unit():
    # Per-week priors are the per-day priors of a rate 7 times larger: density
    # p_week(7 x) = p_day(x) / 7, for every x (scipy's truncated normal as reference).
    day, week = default_priors(), default_priors("week")
    x = np.array([0.05, 0.4, 1.7, 3.0])
    for name, (loc, scale) in {"beta": (2.0, 1.0), "gamma": (0.4, 0.5)}.items():
        ref = stats.truncnorm.logpdf(x, -loc / scale, np.inf, loc=loc, scale=scale)
        np.testing.assert_allclose(day[name].log_prob(x), ref, rtol=1e-5)
        np.testing.assert_allclose(week[name].log_prob(7 * x), ref - np.log(7), rtol=1e-5)
        np.testing.assert_allclose(default_priors(7.0)[name].log_prob(7 * x),
                                   week[name].log_prob(7 * x), rtol=1e-6)
    # The overdispersion has no time unit.
    assert float(week["phi_inv"].rate) == float(day["phi_inv"].rate) == 5.0
    for bad in ("weak", 0.0, -7.0, "7", None, True):
        with pytest.raises(ValueError, match="time_unit"):
            default_priors(bad)
    with pytest.raises(ValueError, match="did you mean 'week'"):
        default_priors("weeks")


def test_weekly_model_is_the_daily_model_in_other_units(x64):
    # The same epidemic, with time in weeks and time_unit="week": the solve is identical
    # at rates 7x larger, and the log density differs exactly by the Jacobian of the
    # two rates (-2 log 7), so the posterior is the same up to the change of units.
    beta, gamma, phi_inv = 1.7, 0.55, 0.2
    day = functools.partial(epidemic_model, y0=Y0, t0=0.0, rtol=1e-10, atol=1e-12)
    week = functools.partial(epidemic_model, y0=Y0, t0=0.0, time_unit="week", rtol=1e-10,
                             atol=1e-12)
    lp_day, tr_day = log_density(day, (DAYS, BOARDING), {},
                                 {"beta": beta, "gamma": gamma, "phi_inv": phi_inv})
    lp_week, tr_week = log_density(week, (DAYS / 7.0, BOARDING), {},
                                   {"beta": 7 * beta, "gamma": 7 * gamma, "phi_inv": phi_inv})
    np.testing.assert_allclose(tr_week["expected"]["value"], tr_day["expected"]["value"],
                               rtol=1e-7)
    assert float(lp_week) == pytest.approx(float(lp_day) - 2 * np.log(7.0), rel=1e-9)
    assert float(tr_week["R0"]["value"]) == pytest.approx(beta / gamma)
    assert float(tr_week["recovery_time"]["value"]) == pytest.approx(1 / (7 * gamma))
    with pytest.raises(ValueError, match="time_unit"):
        fit_epidemic(DAYS, BOARDING, key=jr.PRNGKey(0), y0=Y0, t0=0.0, time_unit="fortnight")


@pytest.mark.parametrize("prior, ref", [
    (dist.LogNormal(0.5, 0.8), stats.lognorm(0.8, scale=np.exp(0.5))),
    (dist.Exponential(5.0), stats.expon(scale=0.2)),
    (dist.TruncatedNormal(0.4, 0.5, low=0.0), stats.truncnorm(-0.8, np.inf, loc=0.4, scale=0.5)),
    (dist.TruncatedNormal(2.0, 1.0, low=0.5), stats.truncnorm(-1.5, np.inf, loc=2.0, scale=1.0)),
])
def test_noncentred_values_have_the_prior_distribution(prior, ref):
    # theta = F^-1(Phi(z)) for z ~ N(0, 1): its quantiles are the prior's at every level,
    # including the far tails (z = +-6), where Phi(z) would round to 0 or 1 in float32.
    from epinn.bayes._priors import _noncentred_value

    z = np.array([-6.0, -3.0, -1.0, 0.0, 0.5, 2.0, 4.0, 6.0])
    theta = np.asarray(_noncentred_value(prior, jnp.asarray(z, jnp.float32)))
    expected = ref.ppf(stats.norm.cdf(z))
    upper = z > 0  # upper tail: compare with the survival function (accurate there)
    expected[upper] = ref.isf(stats.norm.sf(z[upper]))
    np.testing.assert_allclose(theta, expected, rtol=2e-4, atol=1e-6)


def test_noncentred_model_same_prior():
    # reparam="noncentred": sites "<name>_z" are latent, the parameters deterministic, and
    # prior draws of the parameters follow their priors (Kolmogorov-Smirnov against scipy).
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0, reparam="noncentred",
                              priors={"I0": dist.Exponential(1.0),
                                      "reporting": dist.Beta(2.0, 2.0)})
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(DAYS)
    latent = {k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    latent.discard("obs")  # simulated here (no counts)
    assert latent == {"beta_z", "gamma_z", "phi_inv_z", "I0_z", "reporting"}  # Beta as is
    assert tr["beta"]["type"] == tr["I0"]["type"] == "deterministic"
    draws = prior_predictive(model, jr.PRNGKey(1), 2000, DAYS)
    refs = {"beta": stats.truncnorm(-2.0, np.inf, loc=2.0, scale=1.0),
            "gamma": stats.truncnorm(-0.8, np.inf, loc=0.4, scale=0.5),
            "phi_inv": stats.expon(scale=0.2), "I0": stats.expon(scale=1.0),
            "reporting": stats.beta(2.0, 2.0)}
    for name, ref in refs.items():
        assert stats.kstest(np.asarray(draws[name]), ref.cdf).pvalue > 0.001, name
    with pytest.raises(ValueError, match="did you mean 'noncentred'"):
        model(DAYS, reparam="noncentered")


# --------------------------------------------------------------------------------------
# Bad input is refused by name, before anything compiles (issue 22)
# --------------------------------------------------------------------------------------


def _refused(fn, exc, match):
    with count_compilations() as c, pytest.raises(exc, match=match):
        fn()
    assert c.count == 0, f"{c.count} compilations before the error ({match})"


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"rtol": "1e-5"}, ValueError, "rtol"),
    ({"atol": 0.0}, ValueError, "atol"),
    ({"max_steps": 2**40}, ValueError, "max_steps.*<= 2147483647"),
    ({"max_steps": 0}, ValueError, "max_steps"),
    ({"max_steps": 100.0}, ValueError, "max_steps"),
    ({"solver": "tsit5"}, TypeError, "solver"),
    ({"forward_mode": "yes"}, TypeError, "forward_mode"),
    ({"dense_mass": 1}, TypeError, "dense_mass"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_warmup": -1}, ValueError, "num_warmup"),
    ({"num_chains": 2.0}, ValueError, "num_chains"),
    ({"target_accept_prob": 1.5}, ValueError, "target_accept_prob"),
    ({"chain_method": "vectorised"}, ValueError, "chain_method.*did you mean 'vectorized'"),
    ({"max_r_hat": 0.5}, ValueError, "max_r_hat"),
    ({"min_ess": -1}, ValueError, "min_ess"),
    ({"warn": "no"}, TypeError, "warn"),
    ({"likelihood": "poison"}, ValueError, "likelihood.*did you mean 'poisson'"),
    ({"observed": "incidense"}, ValueError, "observed.*did you mean 'incidence'"),
    ({"priors": {"gama": 0.5}}, ValueError, r"unknown names \['gama'\].*did you mean 'gamma'"),
    ({"reparam": "noncentered"}, ValueError, "reparam.*did you mean 'noncentred'"),
    ({"time_unit": "weeks"}, ValueError, "time_unit.*did you mean 'week'"),
    ({"y0": {"S": "abc", "I": 1.0, "R": 0.0}}, ValueError, r"y0\['S'\]"),
    ({"y0": {"S": 762.0, "I": -1.0, "R": 0.0}}, ValueError, r"y0\['I'\]"),
    ({"y0": {"S": 762.0, "i": 1.0, "R": 0.0}}, ValueError, "y0.*did you mean 'I'"),
    ({"y0": {"S": 762.0, "In": 1.0, "R": 0.0}}, ValueError, "y0.*did you mean 'I'"),
    ({"t0": "abc"}, ValueError, "t0"),
    ({"population": "abc"}, ValueError, "population"),
    ({"population": np.nan}, ValueError, "population"),
])
def test_fit_epidemic_refuses_bad_options_before_compiling(kwargs, exc, match):
    cfg = {"key": jr.PRNGKey(0), "y0": Y0, "t0": 0.0, **kwargs}
    _refused(lambda: fit_epidemic(DAYS, BOARDING, **cfg), exc, match)


@pytest.mark.parametrize("likelihood", ["negbin", "poisson"])
def test_fit_epidemic_refuses_bad_counts_before_compiling(likelihood):
    fit = functools.partial(fit_epidemic, key=jr.PRNGKey(0), y0=Y0, t0=0.0,
                            likelihood=likelihood)
    # Non-integer counts under a count likelihood (numpyro failed after ~24 s with
    # "Cannot find valid initial parameters").
    _refused(lambda: fit(DAYS, BOARDING + 0.5), ValueError,
             rf"counts.*whole numbers.*likelihood='{likelihood}'.*3.5 at index 0")
    _refused(lambda: fit(DAYS, np.where(DAYS == 4, -2.0, BOARDING)), ValueError,
             "counts.*negative.*-2 at index 3")
    _refused(lambda: fit(DAYS, BOARDING[:-1]), ValueError, r"counts.*\(13,\).*\(14,\)")
    _refused(lambda: fit(DAYS[:-1], BOARDING), ValueError, "counts.*ts")
    _refused(lambda: fit(DAYS, np.stack([BOARDING[:-1]] * 2)), ValueError,
             r"counts.*\(data sets, T\)")
    _refused(lambda: fit(DAYS, ["a"] * 14), ValueError, "counts.*numbers")
    _refused(lambda: fit("abc", BOARDING), ValueError, "ts.*numbers")
    _refused(lambda: fit(DAYS, np.stack([BOARDING, BOARDING + 0.25])), ValueError,
             "counts.*whole numbers")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_warmup": -5}, ValueError, "num_warmup"),
    ({"num_chains": 0}, ValueError, "num_chains"),
    ({"method": "nust"}, ValueError, "method.*did you mean 'nuts'"),
    ({"prior_scale": -1.0}, ValueError, "prior_scale"),
    ({"noise_scale": 0.0}, ValueError, "noise_scale"),
    ({"network": MLP((4, 2))}, ValueError, "network.*1 output"),
    ({"heteroscedastic": True}, ValueError, "network.*2 output"),
    ({"hierarchical": "yes"}, TypeError, "hierarchical"),
    ({"method": "svi", "num_steps": 0}, ValueError, "num_steps"),
    ({"method": "svi", "learning_rate": "0.01"}, ValueError, "learning_rate"),
    ({"method": "svi", "guide": "flow"}, ValueError, "guide"),
    ({"method": "svi", "num_samples": 0}, ValueError, "num_samples"),
])
def test_fit_bnn_refuses_bad_options_before_compiling(kwargs, exc, match):
    x, y = np.linspace(-1.0, 1.0, 8)[:, None], np.zeros(8)
    cfg = {"key": jr.PRNGKey(0), "network": MLP((4, 1)), **kwargs}
    _refused(lambda: fit_bnn(x, y, **cfg), exc, match)


def test_fit_bnn_refuses_bad_data_before_compiling():
    net = MLP((4, 1))
    x = np.linspace(-1.0, 1.0, 8)[:, None]
    _refused(lambda: fit_bnn(x, np.zeros(7), key=jr.PRNGKey(0), network=net), ValueError,
             r"y.*\(8,\)")
    _refused(lambda: fit_bnn([["a"]] * 8, np.zeros(8), key=jr.PRNGKey(0), network=net),
             ValueError, "x.*numbers")
    _refused(lambda: fit_bnn(x, ["b"] * 8, key=jr.PRNGKey(0), network=net), ValueError,
             "y.*numbers")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"num_steps": 0}, ValueError, "num_steps"),
    ({"guide": "flow"}, ValueError, "guide"),
    ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"t_scale": -1.0}, ValueError, "t_scale"),
    ({"prior_scale": 0.0}, ValueError, "prior_scale"),
    ({"rtol": 0.0}, ValueError, "rtol"),
    ({"network": MLP((4, 2))}, ValueError, "network.*1 output"),
    ({"priors": {"beta": dist.Exponential(1.0)}}, ValueError, "beta"),
    ({"time_unit": 0}, ValueError, "time_unit"),
])
def test_fit_bayesian_neural_beta_refuses_bad_options_before_compiling(kwargs, exc, match):
    cfg = {"key": jr.PRNGKey(0), "y0": Y0, "t0": 0.0, **kwargs}
    _refused(lambda: fit_bayesian_neural_beta(DAYS, BOARDING, **cfg), exc, match)


def test_runners_and_helpers_refuse_bad_input_by_name():
    run = functools.partial(run_nuts, conjugate_model, jr.PRNGKey(0), Y_CONJ)
    _refused(lambda: run(init_strategy="median"), TypeError, "init_strategy")
    _refused(lambda: run(max_r_hat=0.9), ValueError, "max_r_hat")
    _refused(lambda: run(min_ess="100"), ValueError, "min_ess")
    _refused(lambda: run(dense_mass="no"), TypeError, "dense_mass")
    _refused(lambda: run(target_accept_prob=np.float32(2.0)), ValueError, "target_accept_prob")
    svi = functools.partial(run_svi, conjugate_model, jr.PRNGKey(0), Y_CONJ)
    _refused(lambda: svi(learning_rate="0.01"), ValueError, "learning_rate")
    _refused(lambda: svi(guide="lowrnk"), ValueError, "guide.*did you mean 'lowrank'")
    _refused(lambda: svi(init_strategy=3), TypeError, "init_strategy")
    _refused(lambda: prior_predictive("model", jr.PRNGKey(0), 3), TypeError, "model")
    _refused(lambda: credible_interval(np.zeros((10, 2)), axis=2), ValueError, "axis")
    _refused(lambda: credible_interval([["a", "b"]] * 3), ValueError, "draws")
    _refused(lambda: credible_interval(np.zeros(10), prob=np.float64(1.0)), ValueError, "prob")
    _refused(lambda: predictive_coverage(np.zeros(3), np.zeros(4), np.ones(3)), ValueError,
             "lo")
    _refused(lambda: predictive_coverage(np.array([0.0, np.nan]), 0.0, 1.0), ValueError, "y")
    _refused(lambda: mcmc_diagnostics({"x": np.zeros((2, 10))}, np.zeros((2, 9), bool)),
             ValueError, "diverging")
    _refused(lambda: mcmc_diagnostics({"x": [["a"] * 10] * 2}), ValueError,
             r"samples_by_chain\['x'\]")


def test_valid_numpy_scalars_are_accepted():
    # NumPy scalars are valid numbers and counts (np.int64(50) used to be refused by some
    # checks, np.float32 probabilities by others).
    mean, lo, hi = credible_interval(np.arange(101.0), prob=np.float32(0.9))
    assert float(lo) == pytest.approx(5.0) and float(hi) == pytest.approx(95.0)
    summary, problems = mcmc_diagnostics({"x": np.asarray(jr.normal(jr.PRNGKey(0), (2, 50)))},
                                         max_r_hat=np.float32(1.1), min_ess=np.int64(10))
    assert "x" in summary
    priors = default_priors(np.float64(7.0))
    assert float(priors["beta"].base_dist.loc) == pytest.approx(14.0)


def test_summary_text_matches_numpy_and_keeps_columns_apart():
    # A result built from known draws (no sampler): every number of the table is numpy's,
    # vector sites get a row per element, and huge values do not run into each other.
    rng = np.random.default_rng(0)
    by_chain = {"a": rng.normal(size=(2, 100)), "v": rng.gamma(2.0, size=(2, 100, 2)),
                "big": 1e7 + rng.normal(size=(2, 100))}
    diverging = np.zeros((2, 100), bool)
    summary, problems = mcmc_diagnostics(by_chain, diverging)
    fit = MCMCResult(
        samples={k: v.reshape(200, *v.shape[2:]) for k, v in by_chain.items()},
        samples_by_chain=by_chain, latent_sites=("a", "v"), summary=summary,
        diverging=diverging, num_divergences=0, num_steps=np.ones((2, 100)), ok=True,
        problems=problems, num_chains=2, num_warmup=0, num_samples=100, wall_time_s=0.0,
        model=conjugate_model)
    text = fit.summary_text(prob=0.9)
    lines = text.splitlines()
    assert lines[0].split() == ["mean", "std", "median", "5%", "95%", "n_eff", "r_hat"]
    rows = {ln.split()[0]: [float(t) for t in ln.split()[1:]] for ln in lines[1:] if ln.strip()
            and not ln.startswith("Number")}
    assert list(rows) == ["a", "v[0]", "v[1]", "big"]  # latent sites, then scalar derived
    x = fit.samples["v"][:, 1]
    ref = [x.mean(), x.std(), np.median(x), np.quantile(x, 0.05), np.quantile(x, 0.95),
           float(summary["v"]["ess"][1]), float(summary["v"]["r_hat"][1])]
    np.testing.assert_allclose(rows["v[1]"], ref, atol=0.006)
    assert len(rows["big"]) == 7 and rows["big"][0] == pytest.approx(1e7, rel=1e-3)
    assert lines[-1] == "Number of divergences: 0"


def test_epidemic_model_observes_deaths_per_interval(x64):
    # SIRD deaths per week (t_prev, t] and cumulative deaths, against scipy's solve_ivp of
    # the SIRD equations (independent). Tolerance: both solves are good to ~1e-9 relative.
    from epinn.compartmental import SIRD

    beta, gamma, mu, N = 2.1, 1.0, 0.4, 5000.0  # per week
    y0 = {"S": N - 2.0, "I": 2.0, "R": 0.0, "D": 0.0}

    def rhs(t, y):
        s, i = y[0], y[1]
        return [-beta * s * i / N, beta * s * i / N - (gamma + mu) * i, gamma * i, mu * i]

    grid = np.arange(0.0, 13.0)
    D = solve_ivp(rhs, (0.0, 12.0), list(y0.values()), t_eval=grid, rtol=1e-12,
                  atol=1e-10).y[3]
    params = {"beta": beta, "gamma": gamma, "mu": mu}
    for observed, ref in (("deaths", np.diff(D)), ("cumulative_deaths", D[1:])):
        model = functools.partial(
            epidemic_model, y0=y0, t0=0.0, model=SIRD(), likelihood="poisson",
            observed=observed, time_unit="week", priors={"mu": dist.LogNormal(-1.0, 1.0)},
            rtol=1e-10, atol=1e-12)
        _, trace = log_density(model, (grid[1:], np.zeros(12)), {}, params)
        np.testing.assert_allclose(trace["expected"]["value"], np.maximum(ref, 1e-6),
                                   rtol=1e-7)
    with pytest.raises(ValueError, match="t0"):
        epidemic_model(grid[1:], y0=y0, model=SIRD(), observed="deaths", priors={"mu": 0.4})


@pytest.mark.parametrize("prior", [
    dist.LogNormal(0.3, 0.7),
    dist.Exponential(2.0),
    dist.TruncatedNormal(2.8, 3.5, low=0.0),
])
def test_noncentred_z_inverts_the_quantile_map(prior, x64):
    # _noncentred_z is the inverse of _noncentred_value (z -> F^{-1}(Phi(z))) on the bulk
    # and the tails; checked through the forward map. Tolerance: float64 round trip.
    from epinn.bayes._priors import _noncentred_value, _noncentred_z

    for theta in (1e-3, 0.2, 1.0, 4.0):
        z = _noncentred_z(prior, theta)
        assert float(_noncentred_value(prior, jnp.float64(z))) == pytest.approx(theta, rel=1e-8)
    assert _noncentred_z(dist.Beta(2.0, 2.0), 0.5) is None


def test_init_from_a_least_squares_fit():
    # `init` takes a FitResult's estimates of the sampled sites (phi -> phi_inv), moves a
    # value on a bound inside the prior, maps to "<name>_z" when non-centred, and the
    # strategy starts numpyro's chains exactly there.
    from types import SimpleNamespace

    from numpyro.infer.util import initialize_model

    from epinn.bayes._epidemic import _epidemic_spec, _init_from
    from epinn.bayes._init import _init_to_sites

    cfg = dict(model=SIR(), y0=Y0, population=None, t0=0.0, likelihood="negbin",
               observed="I", time_unit="day")
    spec = _epidemic_spec(DAYS, BOARDING, priors=None, reparam=None, **cfg)
    fit = SimpleNamespace(params={"beta": 1.7, "gamma": 0.0, "phi": 4.0, "N": 763.0},
                          y0={"S": 761.0, "I": 2.0, "R": 0.0})
    values = _init_from(fit, spec)
    assert set(values) == {"beta", "gamma", "phi_inv"}  # I0 is not sampled here
    with_i0 = _epidemic_spec(DAYS, BOARDING, priors={"I0": dist.Exponential(1.0)},
                             reparam=None, **cfg)
    assert _init_from(fit, with_i0)["I0"] == 2.0
    assert values["beta"] == 1.7 and values["phi_inv"] == 0.25
    assert 0.0 < values["gamma"] < 0.01  # moved off the bound, inside the prior's bulk
    model = functools.partial(epidemic_model, y0=Y0, t0=0.0)
    z = initialize_model(jr.PRNGKey(0), model, model_args=(DAYS, BOARDING),
                         init_strategy=_init_to_sites(values),
                         forward_mode_differentiation=True)[0].z
    np.testing.assert_allclose(np.exp(z["beta"]), 1.7, rtol=1e-6)
    nc = _epidemic_spec(DAYS, BOARDING, priors=None, reparam="noncentred", **cfg)
    assert set(_init_from({"beta": 1.7}, nc)) == {"beta_z"}
    with pytest.raises(ValueError, match="init.*'sigma'"):
        _init_from({"sigma": 1.0}, spec)
    with pytest.raises(TypeError, match="init"):
        _init_from([1.7], spec)
