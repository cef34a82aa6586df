"""The stochastic-outbreaks experiment runs (--quick) and its numbers are right."""

import importlib.util
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "stochastic_outbreaks.py"


def _load():
    spec = importlib.util.spec_from_file_location("stochastic_outbreaks_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_writes_figures_and_a_consistent_summary(tmp_path):
    """400 outbreaks per simulator, N = 763, R0 = 3.7: each simulator's P(minor outbreak)
    lies within 4 standard errors + 0.03 of the branching-process value 1/R0 = 0.27 (the
    finite population makes it slightly larger), and the exact and adaptive tau-leaping
    major outbreaks' mean final size within 4 standard errors + 1% of N of the ODE's
    final size (the stochastic mean of major outbreaks approaches it as N grows)."""
    module = _load()
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    plt.close("all")
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(summary))
    for name in ("bands.png", "final_size.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert summary["config"]["members"] == 400
    inv_r0 = summary["inverse_R0"]
    for method, row in summary["simulators"].items():
        ext = row["extinction"]
        assert abs(ext["value"] - inv_r0) < 4 * ext["se"] + 0.03, method
        assert row["capped"] == 0
    for method in ("exact", "tau_leap"):
        fs = summary["simulators"][method]["final_size"]
        assert abs(fs["value"] - summary["ode_final_size"]) < 4 * fs["se"] + 7.63, method
    # exact: one step per event; adaptive tau-leaping: fewer steps than events
    ex, tau = summary["simulators"]["exact"], summary["simulators"]["tau_leap"]
    assert ex["mean_steps"] == ex["mean_events"]
    assert tau["mean_steps"] <= tau["mean_events"]


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _load().main(["--members", "0"])
    with pytest.raises(SystemExit):
        _load().main(["--dt", "-1"])
