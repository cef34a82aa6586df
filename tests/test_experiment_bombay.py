"""The Bombay plague experiment runs end to end (deaths per week: ML fits, profile, NUTS)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import bombay_plague  # noqa: E402


@pytest.mark.slow
def test_bombay_plague_quick(tmp_path):
    summary = bombay_plague.main(["--outdir", str(tmp_path), "--quick", "--quiet"])
    for name in ("fit.png", "profile.png", "posterior.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["deaths"] == 9043
    # All four free: the curve is described (deviance explained > 0.9) but not every
    # parameter is identified, and the fit says which.
    free = summary["all_free"]
    assert free["deviance_explained"] > 0.9
    assert free["unidentified"] or free["at_bound"]
    # gamma fixed: identified; the profile interval of R0 contains the estimate and is
    # close to the Laplace one (a well-identified fit; a loose check, 25%).
    fixed = summary["gamma_fixed"]
    assert fixed["converged"] and not fixed["unidentified"]
    lo, hi = fixed["R0_profile"]
    assert lo < fixed["R0"] < hi and fixed["one_sided"] is None
    llo, lhi = fixed["R0_laplace"]
    assert abs((hi - lo) / (lhi - llo) - 1.0) < 0.25
    # Bayesian: R0 above 1 and its interval wider than with gamma fixed (the prior on gamma
    # carries the uncertainty the deaths cannot remove).
    r0 = summary["bayes"]["R0"]
    assert 1.0 < r0["interval"][0] < r0["mean"] < r0["interval"][1]
    assert r0["interval"][1] - r0["interval"][0] > hi - lo
