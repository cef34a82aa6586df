"""``options=SolverOptions(...)``: the solver settings as one value, beside the keywords.

Every function that integrates the ODE takes ``options``; its fields are the same settings
as the function's own keywords (``rtol``, ``atol``, ``max_steps``, ...). The reference here
is the keyword form: the same settings given either way must give the same program, so
the results are compared for exact equality (no tolerance: the compiled programs are
identical, and so are the numbers). Each function also refuses a setting given both ways
with different values, a field it does not use, and options that are not a
``SolverOptions``.
"""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
from epinn import SolverOptions
from epinn.compartmental import SIR

P = {"beta": 0.5, "gamma": 0.25, "N": 1000.0}
Y0 = {"S": 990.0, "I": 10.0, "R": 0.0}
TS = jnp.linspace(0.0, 60.0, 13)
ENSEMBLE_P = {**P, "beta": jnp.array([0.4, 0.6])}
# The boarding-school outbreak (days 1..14, one boy ill at day 0).
DAYS = np.arange(1.0, 15.0)
COUNTS = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4], float)
FIT = dict(y0={"S": 762, "I": 1, "R": 0}, init={"beta": 1.0, "gamma": 0.3, "N": 763},
           t0=0.0)
# Loose settings (not the defaults), so that options ignored would show.
LOOSE = dict(rtol=1e-4, atol=1e-6, max_steps=1000)


def _solve(**kw):
    return epinn.solve(SIR(), P, Y0, TS, **kw).ys


def _ensemble(**kw):
    return epinn.solve_ensemble(SIR(), ENSEMBLE_P, Y0, TS, **kw).ys


def _summary(**kw):
    out = epinn.ensemble_summary(SIR(), ENSEMBLE_P, Y0, TS, **kw)
    return np.concatenate([np.ravel(out.mean), np.ravel(out.std), out.peak_time])


def _fit(**kw):
    res = epinn.fit_parameters(SIR(), DAYS, {"I": COUNTS}, steps=30, warn=False, **FIT, **kw)
    return np.array([res.params["beta"], res.params["gamma"], res.loss])


def _batch(**kw):
    out = epinn.fit_parameters_batch(SIR(), DAYS, {"I": np.stack([COUNTS, 0.9 * COUNTS])},
                                     steps=30, method="stacked", **FIT, **kw)
    return np.stack([out["beta"], out["gamma"], out["loss"]])


def _neural(**kw):
    ts = jnp.arange(0.0, 21.0)
    prevalence = epinn.solve(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1.0},
                             {"S": 0.99, "I": 0.01, "R": 0.0}, ts)["I"]
    res = epinn.fit_neural_beta(ts, {"I": prevalence}, y0={"S": 0.99, "I": 0.01, "R": 0.0},
                                gamma=0.2, key=jr.PRNGKey(0), hidden=(4,), steps=4,
                                chunk_size=4, n_grid=5, n_penalty=5, warn=False, **kw)
    return np.asarray(res.extras["beta_t"])


CASES = {"solve": _solve, "solve_ensemble": _ensemble, "ensemble_summary": _summary,
         "fit_parameters": _fit, "fit_parameters_batch": _batch,
         "fit_neural_beta": _neural}
# Each of these compiles a fit (10-30 s on a busy 2-core machine): run with the slow tests.
# The default run checks the same plumbing (resolve once, pass the value down) on
# fit_parameters, and every function's refusals below.
SLOW = ("fit_parameters_batch", "fit_neural_beta")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW
                                  else n for n in CASES])
def test_options_give_the_keywords_result(name):
    run = CASES[name]
    by_keywords = run(**LOOSE)
    np.testing.assert_array_equal(run(options=SolverOptions(**LOOSE)), by_keywords)
    # A field left None keeps the keyword; the same value given both ways is accepted.
    np.testing.assert_array_equal(
        run(rtol=LOOSE["rtol"], options=SolverOptions(atol=LOOSE["atol"],
                                                      max_steps=LOOSE["max_steps"])),
        by_keywords)
    np.testing.assert_array_equal(run(**LOOSE, options=SolverOptions(**LOOSE)), by_keywords)


def test_options_reach_the_solver():
    """The loose settings change the solution (so the equalities above are not vacuous)."""
    assert not np.array_equal(_solve(options=SolverOptions(**LOOSE)), _solve())


@pytest.mark.slow
def test_profile_options_give_the_keywords_result():
    """Also through the full fit, which the profile runs with its settings."""
    def run(**kw):
        prof = epinn.profile_likelihood(SIR(), DAYS, {"I": COUNTS}, parameter="beta",
                                        grid=[1.6, 1.7], n_grid=4, refine=0, steps=20,
                                        **FIT, **kw)
        return np.concatenate([prof.values, prof.delta, list(prof.fit.params.values())])

    by_keywords = run(**LOOSE)
    np.testing.assert_array_equal(run(options=SolverOptions(**LOOSE)), by_keywords)


def _log_density(model, **kw):
    """The log density of a Bayesian epidemic model at one point (its ODE solved once)."""
    from numpyro.infer.util import log_density

    y0 = {"S": 762.0, "I": 1.0, "R": 0.0}
    if model is epinn.neural_beta_model:
        kw = dict(network=epinn.MLP((4, 1)), **kw)
    trace_kw = dict(y0=y0, population=763.0, t0=0.0, **kw)
    point = {"beta": 1.7, "gamma": 0.5, "phi_inv": 0.1}
    if model is epinn.neural_beta_model:
        from numpyro import handlers

        with handlers.seed(rng_seed=0):
            point = {k: v["value"] for k, v in handlers.trace(model).get_trace(
                DAYS, COUNTS, **trace_kw).items() if v["type"] == "sample"
                and not v["is_observed"]}
    return np.asarray(log_density(model, (DAYS, COUNTS), trace_kw, point)[0])


def test_bayesian_models_take_options():
    """epidemic_model and neural_beta_model: the same log density either way."""
    for model in (epinn.epidemic_model, epinn.neural_beta_model):
        by_keywords = _log_density(model, **LOOSE)
        np.testing.assert_array_equal(
            _log_density(model, options=SolverOptions(**LOOSE)), by_keywords)
    # The loose settings change the density (the comparison above is not vacuous).
    assert _log_density(epinn.epidemic_model) != _log_density(epinn.epidemic_model, **LOOSE)


def _call(name, **kw):
    """Call function ``name`` with valid inputs; only the settings are at fault."""
    if name == "fit_epidemic":
        return epinn.fit_epidemic(DAYS, COUNTS, key=jr.PRNGKey(0), y0=FIT["y0"], t0=0.0,
                                  num_warmup=5, num_samples=5, num_chains=1, **kw)
    if name == "fit_bayesian_neural_beta":
        return epinn.fit_bayesian_neural_beta(DAYS, COUNTS, key=jr.PRNGKey(0), y0=FIT["y0"],
                                              t0=0.0, num_steps=2, num_samples=2, **kw)
    if name in ("epidemic_model", "neural_beta_model"):
        return _log_density(getattr(epinn, name), **kw)
    if name == "profile_likelihood":
        return epinn.profile_likelihood(SIR(), DAYS, {"I": COUNTS}, parameter="beta",
                                        **FIT, **kw)
    if name == "fit_neural_beta":
        return epinn.fit_neural_beta(DAYS, {"I": COUNTS}, y0=FIT["y0"], key=jr.PRNGKey(0),
                                     **kw)
    return CASES[name](**kw)


ALL = [*CASES, "profile_likelihood", "epidemic_model", "neural_beta_model", "fit_epidemic",
       "fit_bayesian_neural_beta"]


@pytest.mark.parametrize("name", ALL)
def test_a_setting_given_twice_must_agree(name):
    with pytest.raises(ValueError, match=rf"{name}\(\) got `rtol` twice"):
        _call(name, rtol=3e-5, options=SolverOptions(rtol=1e-4))


@pytest.mark.parametrize(("name", "field", "value"), [
    ("ensemble_summary", "adjoint", diffrax.ForwardMode()),
    ("fit_parameters", "dt0", 0.1),
    ("fit_parameters_batch", "solver", diffrax.Tsit5()),
    ("profile_likelihood", "throw", False),
    ("fit_neural_beta", "adjoint", diffrax.ForwardMode()),
    ("epidemic_model", "adjoint", diffrax.ForwardMode()),
    ("fit_epidemic", "throw", True),
    ("neural_beta_model", "solver", diffrax.Tsit5()),
    ("fit_bayesian_neural_beta", "dt0", 0.1),
])
def test_a_field_the_function_does_not_use_is_refused(name, field, value):
    with pytest.raises(ValueError, match=rf"{name}\(\) does not use the solver setting "
                                         rf"`{field}`"):
        _call(name, options=SolverOptions(**{field: value}))


@pytest.mark.parametrize("name", ALL)
def test_options_of_the_wrong_type(name):
    with pytest.raises(TypeError, match=rf"`options` of {name}\(\) must be an "
                                        "epinn.SolverOptions"):
        _call(name, options={"rtol": 1e-6})


def test_keyword_values_are_still_checked_by_each_function():
    """The keywords keep their own checks and messages (options do not bypass them)."""
    with pytest.raises(ValueError, match="rtol"):
        epinn.fit_parameters(SIR(), DAYS, {"I": COUNTS}, rtol=-1.0, **FIT)
    with pytest.raises(TypeError, match="max_steps"):
        epinn.fit_parameters(SIR(), DAYS, {"I": COUNTS}, max_steps=10.0, **FIT)


@pytest.mark.parametrize(("fields", "error", "match"), [
    ({"rtol": -1e-6}, ValueError, "`rtol` must be positive"),
    ({"atol": 0.0}, ValueError, "`atol` must be positive"),
    ({"dt0": float("nan")}, ValueError, "`dt0` must be positive"),
    ({"rtol": "1e-6"}, TypeError, "`rtol` must be a positive number"),
    ({"rtol": jnp.ones(2)}, TypeError, "`rtol` must be a positive number"),
    ({"max_steps": 100.0}, TypeError, "`max_steps` must be a positive int"),
    ({"max_steps": True}, TypeError, "`max_steps` must be a positive int"),
    ({"max_steps": 0}, ValueError, "`max_steps` must be a positive int"),
    ({"throw": 1}, TypeError, "`throw` must be True or False"),
    ({"solver": "tsit5"}, TypeError, "`solver` must be a diffrax solver"),
    ({"adjoint": diffrax.Tsit5()}, TypeError, "`adjoint` must be a diffrax adjoint"),
])
def test_solver_options_validate_their_fields(fields, error, match):
    with pytest.raises(error, match=match):
        SolverOptions(**fields)


def test_solver_options_normalise_and_replace():
    opts = SolverOptions(rtol=1e-6, max_steps=np.int64(100))
    assert type(opts.max_steps) is int and opts.max_steps == 100
    assert opts.replace(atol=1e-9) == SolverOptions(rtol=1e-6, atol=1e-9, max_steps=100)
    assert opts.replace(atol=1e-9).rtol == 1e-6 and opts.atol is None


def test_defaults_come_from_the_function_not_its_displayed_signature():
    """Sphinx's ``autodoc_preserve_defaults`` replaces ``__signature__`` with the defaults as
    source text ("1e-6"); the merge must still compare against the values Python passes, or
    every internal call that leaves ``rtol`` at its default would be refused (it was, in the
    docs build)."""
    import functools
    import inspect

    from epinn.compartmental._options import _defaults, _resolve_options

    def fn(*, rtol=1e-6, max_steps=100, options=None):
        return _resolve_options(fn, options, rtol=rtol, max_steps=max_steps)

    sig = inspect.signature(fn)
    fn.__signature__ = sig.replace(parameters=[
        p.replace(default=repr(p.default)) for p in sig.parameters.values()])
    wrapped = functools.wraps(fn)(lambda **kw: fn(**kw))
    assert _defaults(wrapped) == {"rtol": 1e-6, "max_steps": 100}
    settings = fn(options=SolverOptions(rtol=1e-9))
    assert (settings.rtol, settings.max_steps) == (1e-9, 100)
