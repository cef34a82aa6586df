"""Tests for epinn.results: FitResult's own methods and the warnings, on hand-made results.

The estimators' tests (test_estimation, test_profile, test_neural_beta, test_pinn,
test_amortized) check what they put in a FitResult; these check what FitResult reads back
from it, without a fit (no compilation), against the numbers written into it.
"""

import dataclasses
import json
import math

import numpy as np
import pytest

import epinn
from epinn import estimation, results
from epinn.results import ConvergenceWarning, FitResult, IdentifiabilityWarning, MisfitWarning


def _result(**changes) -> FitResult:
    base = dict(
        params={"beta": 1.6, "gamma": 0.5, "N": 763.0},
        y0={"S": 762.0, "I": 1.0, "R": 0.0},
        loss=12.5,
        loss_history=np.array([40.0, 12.5]),
        converged=True,
        free=("beta", "gamma"),
        R0=3.2,
        intervals={"beta": (1.5, 1.7), "gamma": (0.4, 0.625), "R0": (3.0, 3.4)},
    )
    return FitResult(**{**base, **changes})


def test_one_class_and_one_set_of_warnings_everywhere():
    # isinstance checks across estimators need the very same objects, whatever the path.
    for name in results.__all__:
        assert getattr(epinn, name) is getattr(results, name) is getattr(estimation, name)
    assert set(results.__all__) == {"ConvergenceWarning", "FitResult",
                                    "IdentifiabilityWarning", "MisfitWarning"}
    assert not set(results.__all__) & set(estimation.__all__)  # each name listed once
    for warning in (ConvergenceWarning, IdentifiabilityWarning, MisfitWarning):
        assert issubclass(warning, UserWarning)


def test_frozen():
    res = _result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.loss = 0.0  # type: ignore[misc]


def test_recovery_time_and_its_interval_are_the_reciprocal_of_gamma():
    s = _result().summary()
    assert s["recovery_time"] == {"mean": 2.0, "lo": 1.0 / 0.625, "hi": 1.0 / 0.4}
    assert s["beta"] == {"mean": 1.6, "lo": 1.5, "hi": 1.7}
    assert s["R0"] == {"mean": 3.2, "lo": 3.0, "hi": 3.4}
    assert s["loss"] == 12.5 and s["converged"] is True
    assert "at_bound" not in s and "goodness" not in s
    json.dumps(s)  # JSON-friendly: plain floats, lists and dicts


def test_summary_without_intervals_gives_point_estimates():
    s = _result(intervals=None).summary()
    assert s["beta"] == 1.6 and s["R0"] == 3.2 and s["recovery_time"] == 2.0
    assert _result(intervals=None).note("beta") is None


def test_notes_say_why_an_interval_is_missing():
    nan = (math.nan, math.nan)
    res = _result(at_bound=("gamma",), unidentified=("beta", "R0"),
                  intervals={"beta": nan, "gamma": nan, "R0": nan})
    assert res.note("gamma") == "at bound"
    assert res.note("recovery_time") == "at bound"  # 1 / gamma follows gamma
    assert res.note("beta") == "not identified"
    assert res.note("R0") == "depends on a parameter at its bound"
    assert res.note("N") is None
    # R0 not identified, with nothing at a bound: the plain reason.
    assert _result(unidentified=("R0",)).note("R0") == "not identified"
    s = res.summary()
    assert s["gamma"]["note"] == "at bound" and s["recovery_time"]["note"] == "at bound"
    assert s["at_bound"] == ["gamma"] and s["unidentified"] == ["beta", "R0"]


def test_free_entries_and_initial_states_are_read_from_params_and_y0():
    res = _result(params={"beta": 1.6, "gamma": 0.5, "N": 763.0,
                          "C": np.array([[1.0, 2.0], [3.0, 4.0]])},
                  free=("beta", "C[0,1]", "I0"),
                  intervals={"C[0,1]": (1.5, 2.5), "I0": (0.5, 2.0)})
    s = res.summary()
    assert s["C[0,1]"] == {"mean": 2.0, "lo": 1.5, "hi": 2.5}
    assert s["I0"] == {"mean": 1.0, "lo": 0.5, "hi": 2.0}
    assert "C" not in s  # array parameters appear by their free entries only


def test_report_rows_goodness_and_diagnostics():
    res = _result(at_bound=("gamma",), goodness={"r2": 0.987654},
                  intervals={"beta": (1.5, 1.7), "gamma": (math.nan, math.nan),
                             "R0": (3.0, 3.4)},
                  diagnostics="gamma is at its bound 0: ...\nFix one of the parameters")
    lines = res.report().splitlines()
    assert lines[0] == "least_squares: loss 12.5, converged True"
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert rows["beta"].split()[1:] == ["1.6", "(1.5,", "1.7)"]
    assert rows["gamma"].endswith("at bound") and "(" not in rows["gamma"]
    assert rows["recovery_time"].endswith("at bound")
    assert "  goodness: r2 0.988" in lines
    assert lines[-2:] == ["  gamma is at its bound 0: ...", "  Fix one of the parameters"]
