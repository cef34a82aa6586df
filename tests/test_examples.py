"""The worked set-ups of :mod:`epinn.examples` and the deprecated names they replace.

Issue #23 moved the boarding-school recipe out of the core namespace: ``PRIOR``,
``train_estimator`` and ``bayesian_fit`` live in :mod:`epinn.examples.boarding_school`;
the old names (``epinn.BOARDING_SCHOOL_PRIOR``, ``epinn.train_boarding_school_estimator``,
``epinn.bayesian_boarding_school`` and the first two in ``epinn.amortized``) keep working
with a :class:`DeprecationWarning` naming the new place.
"""

import importlib
import os
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
import epinn.amortized
from epinn._deprecated import _moved_names
from epinn.examples import boarding_school
from tests.helpers import tree_allclose

ROOT = Path(__file__).resolve().parents[1]

#: (module, old name, new name in epinn.examples.boarding_school)
MOVED = [
    ("epinn", "BOARDING_SCHOOL_PRIOR", "PRIOR"),
    ("epinn", "train_boarding_school_estimator", "train_estimator"),
    ("epinn", "bayesian_boarding_school", "bayesian_fit"),
    ("epinn.amortized", "BOARDING_SCHOOL_PRIOR", "PRIOR"),
    ("epinn.amortized", "train_boarding_school_estimator", "train_estimator"),
    ("epinn.bayes", "bayesian_boarding_school", "bayesian_fit"),
]


# ---- the new names -------------------------------------------------------------------


def test_prior_is_the_boarding_school_prior():
    # The values BOARDING_SCHOOL_PRIOR had before the move (epinn/amortized/_boarding_school.py).
    old = epinn.Prior(N=763.0, R0=(1.5, 8.0), gamma=(0.2, 1.0), I0=1.0, reporting=(0.7, 1.0),
                      noise=(0.02, 0.5))
    assert boarding_school.PRIOR == old
    assert boarding_school.PRIOR.N == (763.0, 763.0) and boarding_school.PRIOR.is_fixed("I0")
    data = epinn.load_boarding_school()  # the prior is the data's set-up
    assert boarding_school.PRIOR.N[0] == data.population
    assert boarding_school.PRIOR.I0[0] == data.y0["I"]


@pytest.mark.parametrize("bad", [0, jnp.zeros(3, jnp.uint32), jr.split(jr.PRNGKey(0), 2)])
def test_train_estimator_names_a_bad_key(bad):
    # The same message as every epinn entry point that takes a key (tests/test_amortized.py).
    with pytest.raises(TypeError, match="`key` must be one jax.random key"):
        boarding_school.train_estimator(bad, quick=True)


def test_train_estimator_checks_quick():
    # Checked before anything is simulated: "yes" would otherwise train the full network.
    with pytest.raises(TypeError, match="`quick` must be True or False"):
        boarding_school.train_estimator(jr.PRNGKey(0), quick="yes")


def test_examples_is_a_namespace_of_epinn():
    # Loaded by `import epinn` and kept out of `epinn.__all__`, as `epinn.stochastic` is.
    assert epinn.examples.boarding_school is boarding_school
    assert "examples" in dir(epinn) and "examples" not in epinn.__all__
    assert "stochastic" not in epinn.__all__
    assert epinn.examples.__all__ == ["boarding_school"]
    assert boarding_school.__all__ == ["PRIOR", "train_estimator", "bayesian_fit"]
    assert not set(boarding_school.__all__) & set(epinn.__all__)  # not re-exported on top


def test_examples_get_an_api_page(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "ext"))
    try:
        api_pages = importlib.import_module("api_pages")
    finally:
        sys.path.remove(str(ROOT / "docs" / "ext"))
    modules = api_pages.write_api_pages(ROOT / "epinn", tmp_path)
    assert modules[-1] == "examples"  # the top floor comes last
    page = (tmp_path / "examples.rst").read_text()
    assert ".. automodule:: epinn.examples\n" in page
    assert ".. automodule:: epinn.examples.boarding_school\n" in page
    assert ".. currentmodule:: epinn.examples.boarding_school\n" in page
    for name in boarding_school.__all__:
        assert f"   {name}\n" in page
    amortized = (tmp_path / "amortized.rst").read_text()
    assert "BOARDING_SCHOOL_PRIOR" not in amortized and "train_boarding" not in amortized


# ---- the old names -------------------------------------------------------------------


@pytest.mark.parametrize(("module", "old", "new"), MOVED, ids=[f"{m}.{o}" for m, o, _ in MOVED])
def test_old_names_warn_and_return_the_new_objects(module, old, new):
    mod = importlib.import_module(module)
    place = f"epinn.examples.boarding_school.{new}"
    with pytest.warns(DeprecationWarning, match=rf"`{module}\.{old}` is deprecated: use `{place}`"):
        value = getattr(mod, old)
    assert value is getattr(boarding_school, new)
    namespace = {}
    with pytest.warns(DeprecationWarning, match=place) as caught:
        exec(f"from {module} import {old}", namespace)
    assert namespace[old] is value
    # Attributed to the line that imports (not to the import machinery), so the default
    # filters show it to the script that uses the old name, once.
    assert {w.filename for w in caught} == {"<string>"}


@pytest.mark.parametrize("module", ["epinn", "epinn.amortized"])
def test_old_names_are_not_listed(module):
    mod = importlib.import_module(module)
    olds = {old for m, old, _ in MOVED if m == module}
    assert not olds & set(mod.__all__)
    assert not olds & set(dir(mod))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not hasattr(mod, "no_such_name")  # other names still fail as before
        with pytest.raises(AttributeError, match=f"module '{module}' has no attribute 'nope'"):
            mod.nope  # noqa: B018


def test_moved_names_checks_its_table():
    with pytest.raises(ValueError, match="dotted path"):
        _moved_names("m", {"old": "new"})
    getattr_ = _moved_names("m", {"old": "os.sep"}, why="(moved)")
    message = r"^`m\.old` is deprecated: use `os\.sep`\. \(moved\)$"
    with pytest.warns(DeprecationWarning, match=message):
        assert getattr_("old") is os.sep


# ---- the recipes run as documented (slow) ----------------------------------------------


@pytest.mark.slow
def test_train_estimator_is_the_documented_set_up():
    # The recipe is NeuralEstimator.train with the set-up its docstring spells out: the
    # same key gives the same network, weight for weight.
    key = jr.PRNGKey(1)
    est = boarding_school.train_estimator(key, quick=True)
    direct = epinn.NeuralEstimator.train(
        key, np.arange(1.0, 15.0), prior=boarding_school.PRIOR, t0=0.0, observe="prevalence",
        noise="negbin", n_train=2000, n_val=200, hidden=(32, 32), epochs=20)
    assert est.ts == tuple(np.arange(1.0, 15.0)) and est.observe == "prevalence"
    assert est.noise == "negbin" and est.hidden == (32, 32)
    assert tree_allclose(est.net_params, direct.net_params, rtol=0, atol=0)


@pytest.mark.slow
def test_bayesian_fit_finds_the_case_study_posterior():
    # Grinsztajn et al. (2021), Stan's boarding-school case study: posterior means about
    # beta 1.73, gamma 0.54, R0 3.2 (docs/guide/bayesian.md: 1.74, 0.54, 3.22 with 2 x 300
    # draws). One short chain is noisy: 10% on the means is about twice its Monte Carlo
    # error here; the intervals must hold the means.
    post = boarding_school.bayesian_fit(jr.PRNGKey(0), 150, 150, 1, warn=False)
    assert set(post) == {"beta", "gamma", "R0", "recovery_time"}
    for name, ref in {"beta": 1.73, "gamma": 0.54, "R0": 3.2, "recovery_time": 1.85}.items():
        row = post[name]
        assert set(row) == {"mean", "lo", "hi"}
        assert row["lo"] < row["mean"] < row["hi"]
        assert abs(row["mean"] - ref) < 0.1 * ref, (name, row)
