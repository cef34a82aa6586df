"""Tests for epinn.observation against numpy, scipy.stats and sample moments.

Trajectories are built by hand (no ODE solve), so the observables are checked against
plain numpy differences of known arrays.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import stats

from epinn.compartmental import SIR, Trajectory, solve
from epinn.observation import (
    OBSERVABLES,
    Gaussian,
    NegativeBinomial,
    Poisson,
    observe,
    simulate_observations,
)


def _trajectory(compartments=("S", "I", "R", "D"), members=None, seed=0):
    """A hand-made trajectory with increasing cumulative infections and deaths."""
    rng = np.random.default_rng(seed)
    T, C = 6, len(compartments)
    lead = () if members is None else (members,)
    ys = rng.uniform(1.0, 100.0, (*lead, T, C))
    ys[..., compartments.index("R")] = np.cumsum(rng.uniform(0, 5, (*lead, T)), -1)
    if "D" in compartments:
        ys[..., compartments.index("D")] = np.cumsum(rng.uniform(0, 5, (*lead, T)), -1)
    cum = np.cumsum(rng.uniform(0, 10, (*lead, T)), -1)
    cum -= cum[..., :1]
    return Trajectory(
        ts=jnp.arange(float(T)),
        ys=jnp.asarray(ys),
        cumulative_infections=jnp.asarray(cum),
        success=jnp.ones(lead, bool),
        num_steps=jnp.zeros(lead, jnp.int32),
        compartments=compartments,
    )


@pytest.mark.parametrize("members", [None, 3])
def test_observe_series(members):
    traj = _trajectory(members=members)
    ys, cum = np.asarray(traj.ys), np.asarray(traj.cumulative_infections)
    want = {
        "prevalence": ys[..., 1],
        "incidence": np.diff(cum, axis=-1),
        "cumulative": cum,
        "deaths": np.diff(ys[..., 3], axis=-1),
        "cumulative_deaths": ys[..., 3] - ys[..., :1, 3],
    }
    assert set(want) == set(OBSERVABLES)
    for what, series in want.items():
        np.testing.assert_allclose(observe(traj, what), series, rtol=1e-6, err_msg=what)
        np.testing.assert_allclose(observe(traj, what, 0.3), 0.3 * series, rtol=1e-6)
    # An array reporting fraction broadcasts along time.
    rho = jnp.linspace(0.2, 1.0, 6)
    np.testing.assert_allclose(observe(traj, "prevalence", rho), rho * ys[..., 1], rtol=1e-6)


def test_observe_errors():
    traj = _trajectory()
    with pytest.raises(ValueError, match="what"):
        observe(traj, "hospitalisations")
    no_deaths = _trajectory(("S", "I", "R"))
    with pytest.raises(ValueError, match="'D'"):
        observe(no_deaths, "deaths")
    for bad in (0.0, 1.5, -0.2, np.nan):
        with pytest.raises(ValueError, match="reporting"):
            observe(traj, "incidence", bad)
    with pytest.raises(TypeError, match="traj"):
        observe(np.ones((3, 3)), "prevalence")
    with pytest.raises(TypeError, match="noise"):
        simulate_observations(jr.PRNGKey(0), traj, "incidence", noise="poisson")


def test_log_likelihoods_match_scipy(x64):
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.5, 80.0, 40)
    counts = rng.poisson(mu).astype(float)
    y = rng.normal(mu, 3.0)
    np.testing.assert_allclose(
        Gaussian(3.0).log_likelihood(mu, y), stats.norm.logpdf(y, mu, 3.0).sum(), rtol=1e-12
    )
    np.testing.assert_allclose(
        Poisson().log_likelihood(mu, counts), stats.poisson.logpmf(counts, mu).sum(), rtol=1e-12
    )
    for phi in (0.5, 4.0, 100.0):
        want = stats.nbinom.logpmf(counts, phi, phi / (phi + mu)).sum()
        # numpyro's log-beta form (lgamma differences) keeps ~8 digits, not 16.
        np.testing.assert_allclose(
            NegativeBinomial(phi).log_likelihood(mu, counts), want, rtol=1e-7
        )
    # A mask leaves out missing observations (NaN allowed there).
    mask = np.arange(40) % 3 != 0
    with_nan = np.where(mask, counts, np.nan)
    np.testing.assert_allclose(
        NegativeBinomial(4.0).log_likelihood(mu, with_nan, mask=mask),
        stats.nbinom.logpmf(counts[mask], 4.0, 4.0 / (4.0 + mu[mask])).sum(),
        rtol=1e-7,
    )


def test_log_likelihood_gradients_are_fitting_losses(x64):
    mu = jnp.array([2.0, 5.0, 9.0])
    y = jnp.array([1.0, 7.0, 9.0])
    # d/dmu sum(y log mu - mu) = y / mu - 1
    g = jax.grad(lambda m: Poisson().log_likelihood(m, y))(mu)
    np.testing.assert_allclose(g, y / mu - 1.0, rtol=1e-12)
    # d/dphi of the NB log-likelihood, against scipy by central differences.
    phi = 3.0
    g_phi = jax.grad(lambda p: NegativeBinomial(p).log_likelihood(mu, y))(phi)

    def scipy_ll(p):
        return stats.nbinom.logpmf(np.asarray(y), p, p / (p + np.asarray(mu))).sum()

    np.testing.assert_allclose(g_phi, (scipy_ll(phi + 1e-6) - scipy_ll(phi - 1e-6)) / 2e-6,
                               rtol=1e-6)
    # Zero or roundoff-negative predicted counts give finite values (mean floor).
    for m in (0.0, -1e-12):
        assert np.isfinite(float(Poisson().log_likelihood(m, 0.0)))
        assert np.isfinite(float(NegativeBinomial(2.0).log_likelihood(m, 0.0)))


@pytest.mark.parametrize(
    "noise, mean, var",
    [
        (Gaussian(2.0), 30.0, 4.0),
        (Poisson(), 30.0, 30.0),
        (NegativeBinomial(5.0), 30.0, 30.0 + 30.0**2 / 5.0),
    ],
)
def test_sample_moments(noise, mean, var, key):
    n = 40_000
    draws = np.asarray(noise.sample(key, jnp.full((n,), mean)), dtype=np.float64)
    # Sample mean within 4 standard errors; sample variance within 5% (its standard error
    # is below 1.5% for these distributions at n = 40 000).
    assert abs(draws.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(draws.var() / var - 1.0) < 0.05
    again = noise.sample(key, jnp.full((n,), mean))
    np.testing.assert_array_equal(again, draws.astype(np.asarray(again).dtype))
    other = np.asarray(noise.sample(jr.fold_in(key, 1), jnp.full((n,), mean)))
    assert not np.array_equal(other, np.asarray(again))
    assert noise.sample(key, jnp.ones(3), sample_shape=(5,)).shape == (5, 3)


def test_simulate_observations(key):
    traj = _trajectory(members=2)
    data = simulate_observations(key, traj, "incidence", NegativeBinomial(10.0), 0.5)
    assert data.shape == (2, 5)
    np.testing.assert_array_equal(
        data, simulate_observations(key, traj, "incidence", NegativeBinomial(10.0), 0.5)
    )
    # The reporting fraction scales the mean: with means ~1e5 one Poisson draw lies within
    # 5 standard deviations (sqrt of the mean) of reporting x cumulative cases.
    big = Trajectory(traj.ts, traj.ys, traj.cumulative_infections * 1e4, traj.success,
                     traj.num_steps, traj.compartments)
    draws = np.asarray(simulate_observations(key, big, "cumulative", Poisson(), 0.25))
    mean = 0.25 * np.asarray(big.cumulative_infections)
    assert np.all(np.abs(draws - mean) <= 5 * np.sqrt(mean))
    assert np.all(draws[:, 0] == 0) and np.all(draws[:, 1:] > 0.5 * mean[:, 1:])


def test_noise_validation():
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="sigma"):
            Gaussian(bad)
        with pytest.raises(ValueError, match="phi"):
            NegativeBinomial(bad)
    for noise in (Poisson(), NegativeBinomial(2.0)):
        for data in ([1.0, -1.0], [1.0, 2.5], [np.nan, 1.0]):
            with pytest.raises(ValueError, match="data"):
                noise.log_likelihood(jnp.ones(2), jnp.asarray(data))
    with pytest.raises(ValueError, match="data"):
        Gaussian(1.0).log_likelihood(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="data"):
        Gaussian(1.0).log_likelihood(jnp.ones(3), jnp.array([1.0, np.nan, 2.0]))
    # Under jit only shapes can be checked; values are the caller's responsibility.
    ll = jax.jit(lambda d: Poisson().log_likelihood(jnp.ones(2), d))(jnp.array([1.0, 2.0]))
    assert np.isfinite(float(ll))


def test_bad_reporting_noise_parameters_means_and_keys_are_named():
    tr = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1000.0}, jnp.array([990.0, 10.0, 0.0]),
               jnp.arange(8.0))
    with pytest.raises(ValueError, match="`reporting` of shape \\(8,\\)"):
        observe(tr, "incidence", reporting=jnp.full(8, 0.5))  # incidence has T - 1 = 7
    assert observe(tr, "incidence", reporting=jnp.full(7, 0.5)).shape == (7,)
    with pytest.raises(TypeError, match="reporting"):
        observe(tr, "prevalence", reporting="0.5")
    with pytest.raises(TypeError, match="phi"):
        NegativeBinomial("x")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="min_mean"):
            Poisson(min_mean=bad)
    with pytest.raises(ValueError, match="`mean` must be finite"):
        Poisson().log_likelihood(jnp.array([1.0, jnp.nan]), jnp.array([1.0, 2.0]))
    # A left-out entry may have a NaN mean: the log-likelihood is that of the others.
    masked = Poisson().log_likelihood(jnp.array([1.0, jnp.nan]), jnp.array([1.0, 2.0]),
                                      mask=jnp.array([True, False]))
    np.testing.assert_allclose(masked, stats.poisson.logpmf(1, 1.0), rtol=1e-6)
    with pytest.raises(TypeError, match="key"):
        simulate_observations(0, tr)
