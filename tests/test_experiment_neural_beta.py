"""The neural beta(t) / PINN experiment runs end to end (quick, and full size if slow)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "neural_beta.py"
FIGURES = {"synthetic_beta.png", "boarding_school_beta.png", "boarding_school_pinn.png"}


def _load():
    spec = importlib.util.spec_from_file_location("neural_beta_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_outputs(outdir: Path, summary: dict) -> None:
    on_disk = json.loads((outdir / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for name in FIGURES:
        path = outdir / name
        assert path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    syn, bs = summary["synthetic"], summary["boarding_school"]
    assert {syn["figure"], *bs["figures"]} == FIGURES
    assert math.isfinite(syn["beta_max_rel_error_interior"])
    assert len(syn["beta_t"]["true"]) == len(syn["beta_t"]["learned"])
    assert bs["data"]["counts"][:3] == [3.0, 8.0, 26.0] and bs["data"]["population"] == 763
    for name in ("least_squares", "neural_beta", "pinn"):
        for key in ("beta", "gamma", "R0", "loss", "converged"):
            assert key in bs[name], (name, key)
    assert bs["least_squares"]["beta"]["mean"] == pytest.approx(1.669, rel=1e-2)
    assert set(bs["pinn"]["rel_diff_to_least_squares"]) == {"beta", "gamma"}


def test_experiment_quick(tmp_path):
    module = _load()
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    _check_outputs(tmp_path, summary)
    assert summary["config"]["seed"] == 0 and summary["config"]["quick"]
    assert summary["synthetic"]["n_steps"] == 60
    assert summary["boarding_school"]["pinn"]["n_steps"] == 80  # 60 Adam + 20 L-BFGS


@pytest.mark.slow
def test_experiment_default_size(tmp_path):
    summary = _load().main(["--outdir", str(tmp_path), "--quiet"])
    _check_outputs(tmp_path, summary)
    syn, bs = summary["synthetic"], summary["boarding_school"]
    # The brief: beta(t) within 10% on days 5..75 and the fitted curve matches the data.
    assert syn["beta_max_rel_error_interior"] < 0.10 and syn["r2"]["I"] > 0.99
    # The PINN lands near the least-squares fit through the ODE (measured < 1%).
    assert max(bs["pinn"]["rel_diff_to_least_squares"].values()) < 0.05
    # The neural beta(t) fits the boarding school at least as well as a constant beta.
    assert bs["neural_beta"]["r2"]["I"] > 0.97
