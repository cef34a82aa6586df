"""The main experiment runs end to end (smoke size) and writes what it promises."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import boarding_school  # noqa: E402


def test_quick_run_writes_summary_and_figures(tmp_path):
    out = boarding_school.main(
        ["--quick", "--quiet", "--outdir", str(tmp_path), "--methods", "least_squares"]
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["methods"].keys() == out["methods"].keys() == {"least_squares"}
    ls = summary["methods"]["least_squares"]
    # float32 fit: within 0.5% of the float64 optimum (beta 1.6692, gamma 0.44345).
    assert ls["beta"]["mean"] == pytest.approx(1.6692, rel=5e-3)
    assert ls["gamma"]["lo"] < ls["gamma"]["mean"] < ls["gamma"]["hi"]
    assert summary["data"]["population"] == 763
    for f in summary["figures"]:
        assert (tmp_path / f).stat().st_size > 1000


def test_bad_method_name_is_refused(capsys):
    with pytest.raises(SystemExit):
        boarding_school.main(["--methods", "least_squares,astrology"])
    assert "astrology" in capsys.readouterr().err


@pytest.mark.slow
def test_full_quick_run_all_methods(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "boarding_school.py"), "--quick",
         "--quiet", "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["methods"]) == set(boarding_school.METHODS)
    for m in summary["methods"].values():
        r0 = m["R0"]["mean"] if isinstance(m["R0"], dict) else m["R0"]
        assert 1.5 < r0 < 8.0
