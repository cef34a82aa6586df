"""Tests for epinn.profile: profile likelihoods against an independent scipy profile."""

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, least_squares, minimize_scalar

from epinn.compartmental import SIR
from epinn.datasets import load_boarding_school, load_zika_yap
from epinn.estimation import fit_parameters
from epinn.profile import Profile, plot_profile, profile_likelihood

BS = load_boarding_school()
KW = dict(y0={"S": 762.0, "I": 1.0, "R": 0.0}, init={"beta": 1.0, "gamma": 0.3, "N": 763.0},
          t0=0.0)


def _residuals(b, g):
    def f(t, y):
        inf = b * y[0] * y[1] / 763.0
        return [-inf, inf - g * y[1], g * y[1]]

    sol = solve_ivp(f, (0, 14), [762, 1, 0], t_eval=np.arange(0, 15.0), rtol=1e-11,
                    atol=1e-11)
    return sol.y[1, 1:] - BS.counts


def _rss(b, g):
    return float(np.sum(_residuals(b, g) ** 2))


def _scipy_interval(which):
    """The 95% profile interval of beta or gamma: scipy only (solve_ivp, float64).

    Gaussian likelihood with the noise variance fixed at RSS/(n - p), as epinn documents.
    """
    full = least_squares(lambda th: _residuals(*np.exp(th)), np.log([1.67, 0.44]),
                         xtol=1e-14, ftol=1e-14)
    rss_min = _rss(*np.exp(full.x))
    b_hat, g_hat = np.exp(full.x)
    n, p = BS.counts.size, 2

    def delta(v):
        if which == "beta":
            prof = minimize_scalar(lambda lg: _rss(v, np.exp(lg)), bracket=(np.log(g_hat) - 0.1,
                                   np.log(g_hat)), tol=1e-12)
        else:
            prof = minimize_scalar(lambda lb: _rss(np.exp(lb), v), bracket=(np.log(b_hat) - 0.1,
                                   np.log(b_hat)), tol=1e-12)
        return (n - p) / 2 * (prof.fun / rss_min - 1.0) - 1.92072941

    hat = b_hat if which == "beta" else g_hat
    return (brentq(delta, hat * 0.8, hat, xtol=1e-10), brentq(delta, hat, hat * 1.25,
                                                               xtol=1e-10))


@pytest.fixture(scope="module")
def bs_fit():
    with jax.enable_x64(True):
        return fit_parameters(SIR(), BS.t, {"I": BS.counts}, **KW)


@pytest.mark.parametrize("which", ["beta", "gamma"])
def test_boarding_school_profile_matches_scipy(which, bs_fit):
    with jax.enable_x64(True):
        prof = profile_likelihood(SIR(), BS.t, {"I": BS.counts}, parameter=which, fit=bs_fit,
                                  **KW)
    ref = _scipy_interval(which)
    assert isinstance(prof, Profile) and prof.one_sided is None
    np.testing.assert_allclose(prof.interval, ref, rtol=1e-3)
    assert prof.converged.all()
    assert np.nanmin(prof.delta) == pytest.approx(0.0, abs=1e-8)
    # Well identified: the likelihood-ratio interval is close to the Laplace interval.
    np.testing.assert_allclose(prof.interval, bs_fit.intervals[which], rtol=0.03)


def test_r0_profile_and_plot(bs_fit):
    with jax.enable_x64(True):
        prof = profile_likelihood(SIR(), BS.t, {"I": BS.counts}, parameter="R0", fit=bs_fit,
                                  **KW)
    # Along the profile of R0, beta is tied to R0 * gamma.
    lo, hi = prof.interval
    assert lo < bs_fit.R0 < hi and prof.one_sided is None
    np.testing.assert_allclose(prof.interval, bs_fit.intervals["R0"], rtol=0.03)
    ax = plot_profile(prof)
    assert ax.get_xlabel() == "R0" and len(ax.lines) >= 2


@pytest.mark.slow
def test_zika_poisson_profile_of_gamma_is_one_sided(x64):
    # The Poisson fit puts gamma at its lower bound 0: the profile does not rise below the
    # estimate, so the interval is one-sided, from 0.
    data = load_zika_yap()
    N = float(data.population)
    kw = dict(y0={"S": N - 1, "I": 1.0, "R": 0.0},
              init={"beta": 2.0, "gamma": 1.0, "N": N, "reporting": 0.1},
              free=("beta", "gamma", "reporting"), t0=0.0, loss="poisson")
    fit = fit_parameters(SIR(), data.t + 1.0, {"incidence": data.counts}, warn=False, **kw)
    assert "gamma" in fit.at_bound
    prof = profile_likelihood(SIR(), data.t + 1.0, {"incidence": data.counts},
                              parameter="gamma", fit=fit, **kw)
    assert prof.one_sided == "lower"
    lo, hi = prof.interval
    assert lo == 0.0 and 0 < hi < np.inf
    assert prof.delta[prof.values < 1e-6].max() < 0.1  # flat down to the bound
    assert prof.delta.max() > prof.threshold  # and it does rise on the other side


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"parameter": "mu"}, "parameter"),
        ({"parameter": 3}, "parameter"),
        ({"parameter": "R0", "free": ("gamma",)}, "beta"),
        ({"level": 1.5}, "level"),
        ({"n_grid": 2}, "n_grid"),
        ({"n_grid": 0}, "n_grid"),
        ({"grid": [-1.0, 2.0]}, "grid"),
        ({"refine": -1}, "refine"),
        ({"steps": 0}, "steps"),
        ({"init": {"beta": "abc", "gamma": 0.3, "N": 763.0}}, "init\\['beta'\\]"),
    ],
)
def test_bad_input_before_compilation(kwargs, match):
    from tests.helpers import count_compilations

    args = {**KW, "parameter": "beta", **kwargs}
    model = SIR()
    with count_compilations() as c, pytest.raises((ValueError, TypeError), match=match):
        profile_likelihood(model, BS.t, {"I": BS.counts}, **args)
    assert c.count == 0


@pytest.mark.slow
def test_profile_of_a_contact_matrix_entry(x64):
    """An entry of an array parameter ("C[0,1]" of a 2-group SIR) is profiled like a
    scalar: at each grid value the other free numbers are re-fitted. Checked against
    fit_parameters with C[0,1] held at that value (an independent re-fit): the same
    likelihood drop to 1e-6; the interval brackets the estimate."""
    from tests.test_estimation import GROUP_DAYS, GROUP_INIT, GROUP_Y0, _group_data
    from tests.test_estimation import _two_group_sir as model

    data = {"I": _group_data()}
    kw = dict(y0=GROUP_Y0, init=GROUP_INIT, t0=0.0)
    prof = profile_likelihood(model(), GROUP_DAYS, data, parameter="C[0, 1]",
                              free=("beta", "gamma[1]", "C[0,1]"), n_grid=4, refine=0, **kw)
    c_hat = prof.estimate
    assert prof.name == "C[0,1]" and prof.one_sided is None
    assert prof.interval[0] < c_hat < prof.interval[1]
    v = float(prof.values[np.argmax(prof.delta)])
    held = {**GROUP_INIT, "C": GROUP_INIT["C"].copy()}
    held["C"][0, 1] = v
    refit = fit_parameters(model(), GROUP_DAYS, data, y0=GROUP_Y0, init=held, t0=0.0,
                           free=("beta", "gamma[1]"), warn=False)
    n, p = data["I"].size, 3
    drop = (n - p) / 2 * (refit.loss / prof.fit.loss - 1.0)
    assert float(np.max(prof.delta)) == pytest.approx(drop, rel=1e-6, abs=1e-6)
