"""The scenario-ensemble experiment (executed by the docs gallery) runs and is right."""

import importlib.util
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import epinn

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "plot_sir_ensemble.py"


def _load():
    spec = importlib.util.spec_from_file_location("plot_sir_ensemble_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_a_consistent_summary(tmp_path):
    module = _load()
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    plt.close("all")  # the script leaves its figure open for the docs gallery to capture
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(summary))
    png = (tmp_path / "ensemble.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert summary["config"]["members"] == 2000
    # Independent check of the attack rates: by day 14 each member is close to its final
    # size (solution of the final-size equation), never above it.
    b, g = np.meshgrid(np.linspace(*module.BETA, 3), np.linspace(*module.GAMMA, 3))
    fs = np.asarray(epinn.final_size(epinn.SIR(), {"beta": b.ravel(), "gamma": g.ravel(),
                                                   "N": 763.0},
                                     {"S": 762.0, "I": 1.0, "R": 0.0}).attack_rate)
    a = summary["attack_rate"]
    assert fs.min() - 0.05 < a["q05"] <= a["mean"] <= a["q95"] <= fs.max() + 1e-3
    # The observed peak (day 6) lies inside the ensemble's peak-day range.
    assert summary["peak_day"]["q05"] < 6.0 < summary["peak_day"]["q95"]


def test_bad_member_count_is_refused():
    with pytest.raises(SystemExit):
        _load().main(["--members", "0"])
