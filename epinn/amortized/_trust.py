r"""Where a trained estimator can be trusted: the out-of-prior checks and their warning (private).

A curve is flagged (:class:`OutOfPriorWarning`) when its population lies outside the
prior's :math:`N`, a feature (peak fraction, a shape value) or the peak time lies outside
the training curves' range, an estimate leaves the prior box, or (for one outbreak) the
model curve at the estimate misses the data by more than the prior's noise allows
(:func:`_misfit`). See :mod:`epinn.amortized`.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._features import normalize_curve

if TYPE_CHECKING:
    from ._estimator import NeuralEstimator

# Relative slack (of each training range's width) before a feature counts as outside.
_FEATURE_SLACK = 0.05
# estimate() warns when the Pearson misfit exceeds this many times the number of points.
_MISFIT_FACTOR = 4


class OutOfPriorWarning(UserWarning):
    """A curve, population or estimate lies outside what the estimator was trained on."""


def _outside(est: NeuralEstimator, curves: Array, population: Array, mu: Array
             ) -> list[list[str]]:
    """For each curve, the reasons it lies outside the training range (maybe none)."""
    x = np.asarray(normalize_curve(curves, population))
    lo, hi = (np.asarray(a) for a in est.feature_range)
    slack = _FEATURE_SLACK * (hi - lo)
    bad_feat = (x < lo - slack) | (x > hi + slack)
    peaks = np.asarray(jnp.argmax(curves, axis=-1))
    pop = np.asarray(population)
    n_lo, n_hi = est.prior.N
    llo, lhi = (np.asarray(a) for a in est.log_range)
    box = est.box
    est_box = np.asarray(mu)[:, [est.targets.index(k) for k in box]]
    margin = 0.02 * (lhi - llo)
    reasons: list[list[str]] = []
    T = len(est.ts)
    for i in range(x.shape[0]):
        r = []
        if not (n_lo * (1 - 1e-6) <= pop[i] <= n_hi * (1 + 1e-6)):
            r.append(f"population {pop[i]:g} outside the prior's N {est.prior.N}")
        if bad_feat[i, T]:
            r.append(f"peak fraction {math.exp(x[i, T]):.3g} of N outside the training "
                     f"range [{math.exp(lo[T]):.3g}, {math.exp(hi[T]):.3g}]")
        if bad_feat[i, :T].any():
            j = int(np.argmax(bad_feat[i, :T]))
            r.append(f"curve shape at t={est.ts[j]:g} outside the training curves")
        a, b = est.peak_range
        if not a <= peaks[i] <= b:
            r.append(f"peak at t={est.ts[peaks[i]]:g} outside the training peaks "
                     f"t in [{est.ts[a]:g}, {est.ts[b]:g}]")
        for j, k in enumerate(box):
            if not llo[j] - margin[j] <= est_box[i, j] <= lhi[j] + margin[j]:
                r.append(f"estimate {k}={math.exp(est_box[i, j]):.3g} outside the prior box "
                         f"[{math.exp(llo[j]):.3g}, {math.exp(lhi[j]):.3g}]")
        reasons.append(r)
    return reasons


def _warn(reasons: list[list[str]], stacklevel: int) -> None:
    """One :class:`OutOfPriorWarning` naming how many curves are outside, and why the
    first is; ``stacklevel`` as :func:`warnings.warn`'s, counted from the caller."""
    bad = [i for i, r in enumerate(reasons) if r]
    if bad:
        first = "; ".join(reasons[bad[0]])
        warnings.warn(
            f"{len(bad)} of {len(reasons)} curve(s) lie outside the estimator's training "
            f"prior (curve {bad[0]}: {first}); its estimates and intervals there are "
            "extrapolations and cannot be trusted.",
            OutOfPriorWarning,
            stacklevel=stacklevel + 1,
        )


def _misfit(est: NeuralEstimator, obs: np.ndarray, fitted: np.ndarray) -> float:
    r"""Pearson :math:`X^2 = \sum_i (c_i - f_i)^2 / (f_i + \nu_{max}^2 f_i^2 + 1)`, with
    the prior's largest noise level :math:`\nu_{max}` (0 unless the noise is ``negbin``)."""
    nu = est.prior.noise[1] if est.noise == "negbin" else 0.0
    f = np.maximum(fitted, 0.0)
    return float(np.sum((obs - f) ** 2 / (f + nu**2 * f**2 + 1.0)))


def _misfit_reason(x2: float, n_points: int) -> list[str]:
    """The reason to warn when the misfit :math:`X^2` exceeds ``_MISFIT_FACTOR`` points."""
    if x2 > _MISFIT_FACTOR * n_points:
        return [f"the fitted curve misses the data (Pearson X^2 = {x2:.3g} > {_MISFIT_FACTOR} "
                f"x {n_points} points): no simulation in the prior looks like this curve"]
    return []
