"""The Zika host-vector experiment runs end to end (a user-defined flow model fitted to data)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import zika_host_vector  # noqa: E402


@pytest.mark.slow
def test_zika_host_vector_quick(tmp_path):
    summary = zika_host_vector.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["cases"] == 108
    gen, h2h = summary["R0_per_generation"], summary["R0_host_to_host"]
    np.testing.assert_allclose(h2h["estimate"], gen["estimate"] ** 2, rtol=1e-5)
    np.testing.assert_allclose(h2h["interval"], np.square(gen["interval"]), rtol=1e-5)
    assert 1.0 < gen["estimate"] < 5.0 and gen["interval"][0] < gen["estimate"]
    assert 0.0 < summary["reporting"]["estimate"] < 0.2  # 108 cases in 7391 people
    assert summary["converged"]
    for name in ("profile.png", "posterior.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    # The profile interval of R0 contains the estimate; the Bayesian posterior (chains
    # started at the fit) covers the same region and reports its diagnostics.
    lo, hi = summary["profile_R0"]["interval"]
    assert lo < gen["estimate"] < hi
    bayes = summary["bayes"]
    assert bayes["R0"]["interval"][0] < gen["estimate"] < bayes["R0"]["interval"][1]
    assert 0.0 < bayes["reporting"]["mean"] < 0.2
    assert isinstance(bayes["divergences"], int) and bayes["divergences"] >= 0
