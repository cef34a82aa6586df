"""The Bayesian experiments run end to end (``--quick``) and write what they promise.

Marked slow: even tiny runs compile NUTS, SVI and the ODE solves, about 55-60 s each for
``bnn_regression --quick`` and ``bayesian_sir --quick`` on an idle core here (twice that on
the shared machine under load), almost all of it compilation.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_files(outdir: Path, summary: dict) -> None:
    assert json.loads((outdir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for name in summary["figures"]:
        data = (outdir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.slow
def test_bayesian_sir_quick(tmp_path):
    module = _load("bayesian_sir")
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    _check_files(tmp_path, summary)
    assert set(summary["figures"]) == {"prior_predictive.png", "posterior_predictive.png",
                                       "marginals.png", "neural_beta.png"}
    post = summary["posterior"]
    assert set(post) == {"beta", "gamma", "R0", "recovery_time"}
    for row in post.values():
        assert set(row) == {"mean", "lo", "hi", "r_hat", "ess"}
        assert row["lo"] < row["mean"] < row["hi"]
    # Even 2 x 150 draws land near the published Stan posterior (beta 1.73, gamma 0.54).
    assert abs(post["beta"]["mean"] - 1.73) < 0.08
    assert abs(post["gamma"]["mean"] - 0.54) < 0.06
    assert summary["diagnostics"]["chains"] == 2
    assert len(summary["neural_beta"]["beta_t"]["mean"]) == 15
    assert summary["posterior_predictive"]["coverage_of_data"]["95%"] >= 12 / 14


@pytest.mark.slow
def test_bnn_regression_quick(tmp_path):
    module = _load("bnn_regression")
    assert module.__doc__.startswith("Experiment: ")
    summary = module.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    _check_files(tmp_path, summary)
    methods = summary["methods"]
    assert set(methods) == {"mlp", "bnn_nuts", "bnn_svi"}
    for m in methods.values():
        assert 0.0 <= m["coverage_90"] <= 1.0 and m["rmse"] > 0
        assert set(m["width"]) == {"data", "gap", "outside"}
    # The deterministic MLP has no epistemic band; the NUTS BNN's widens off the data.
    assert methods["mlp"]["width"]["gap"] == 0.0
    nuts = methods["bnn_nuts"]["width"]
    assert nuts["gap"] > nuts["data"] and nuts["outside"] > nuts["data"]


@pytest.mark.slow
def test_bnn_regression_default_size(tmp_path):
    # Calibration at the default size: the NUTS BNN's 90% predictive interval covers 85-95%
    # of 1000 held-out points, and its mean-function band is several times wider in the gap
    # and outside the data than inside.
    summary = _load("bnn_regression").main(["--outdir", str(tmp_path), "--quiet"])
    nuts = summary["methods"]["bnn_nuts"]
    assert 0.85 <= nuts["coverage_90"] <= 0.95
    assert nuts["width"]["gap"] > 2 * nuts["width"]["data"]
    assert nuts["width"]["outside"] > 2 * nuts["width"]["data"]
