"""The regression/classification experiment runs end to end (tiny, and full size if slow)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "regression_mlp.py"
FIGURES = {
    "regression_learning_curves.png",
    "regression_predictions.png",
    "classification_learning_curves.png",
    "classification_decision_regions.png",
}


def _load():
    spec = importlib.util.spec_from_file_location("regression_mlp", SCRIPT)
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
    reg, cls = summary["regression"], summary["classification"]
    assert set(reg["figures"]) | set(cls["figures"]) == FIGURES
    assert set(reg["test"]) == {"mse", "mae", "rmse", "r2"}
    assert set(cls["test"]) == {"accuracy", "categorical_cross_entropy"}
    for part in (reg, cls):
        assert set(part["n"]) == {"train", "val", "test"}
        assert 1 <= part["best_epoch"] <= part["epochs_run"]
        assert part["stop_reason"] in ("completed", "early_stopping")
    assert math.isclose(reg["test"]["rmse"] ** 2, reg["test"]["mse"], rel_tol=1e-5)
    assert len(reg["new_inputs"]["prediction"]) == len(reg["new_inputs"]["truth"]) == 41
    assert 0.0 <= cls["test"]["accuracy"] <= 1.0


def test_experiment_tiny(tmp_path):
    module = _load()
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--epochs", "3", "--samples", "150",
                           "--hidden", "8", "--quiet"])
    _check_outputs(tmp_path, summary)
    assert summary["config"]["seed"] == 0 and summary["regression"]["epochs_run"] <= 3
    assert summary["regression"]["n"] == {"train": 120, "val": 15, "test": 15}


@pytest.mark.slow
def test_experiment_default_size(tmp_path):
    summary = _load().main(["--outdir", str(tmp_path), "--quiet"])
    _check_outputs(tmp_path, summary)
    reg, cls = summary["regression"], summary["classification"]
    # The MLP captures the nonlinear target (noise variance 0.01 of a variance ~1 target);
    # a linear model cannot.
    assert reg["test"]["r2"] > 0.95 > 0.5 > reg["linear_baseline_test_r2"]
    assert reg["new_inputs"]["max_abs_error"] < 0.3
    assert cls["test"]["accuracy"] > 0.9


def test_documented_quick_command(tmp_path, monkeypatch, capsys):
    """`epinn run regression_mlp --quick` (README, docs/cli.md) runs the smoke size."""
    from epinn import cli

    monkeypatch.delenv(cli.ENV_VAR, raising=False)
    assert cli.main(["run", "regression_mlp", "--quick", "--quiet", "--outdir",
                     str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    _check_outputs(tmp_path, summary)
    assert summary["config"]["quick"] and summary["regression"]["epochs_run"] <= 5
    assert summary["regression"]["n"] == {"train": 120, "val": 15, "test": 15}


def test_bad_options_refused_before_any_work(tmp_path, capsys):
    module = _load()
    for argv in (["--epochs", "0"], ["--samples", "10"], ["--learning-rate", "-1"],
                 ["--batch-size", "0"], ["--hidden", "2.5"], ["--patience", "-1"],
                 ["--outdir", str(SCRIPT)]):
        with pytest.raises(SystemExit) as exit_info:
            module.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and argv[0] in err[0], (argv, err)
