"""The boarding-school set-up: its prior and a trained estimator for it (private).

The 1978 influenza outbreak in a boarding school (:func:`epinn.load_boarding_school`): 763
boys, one infected at day 0, prevalence observed on days 1..14.
"""

from __future__ import annotations

import jax
import numpy as np

from .._checks import _check_flag, _check_key
from ._estimator import NeuralEstimator
from ._prior import Prior

#: Prior for boarding-school-like outbreaks: N = 763 boys, one infected at day 0 (the
#: standard set-up of the SIR fits), R0 in [1.5, 8], an infectious period of 1 to 5 days,
#: 70-100% of the ill observed, noise CV 2-50%. The least-squares (beta 1.67, gamma 0.44)
#: and negative-binomial (1.73, 0.54) estimates lie well inside.
BOARDING_SCHOOL_PRIOR = Prior(
    N=763.0, R0=(1.5, 8.0), gamma=(0.2, 1.0), I0=1.0, reporting=(0.7, 1.0),
    noise=(0.02, 0.5),
)


def train_boarding_school_estimator(
    key: jax.Array, *, quick: bool = False, verbose: int = 0, simulator: str = "ode"
) -> NeuralEstimator:
    """The estimator for the 1978 boarding-school data (and curves like it).

    SIR observed as prevalence :math:`I` on days 1..14, starting at day 0 from
    :math:`S_0 = 762`, :math:`I_0 = 1` (:math:`N = 763`), with
    :data:`BOARDING_SCHOOL_PRIOR` (:math:`R_0`, :math:`\\gamma`, reporting and noise
    level uncertain) and negative-binomial noise; 20 000 training curves, an MLP 128-128.
    ``quick`` trains a small network on few curves (a smoke test, not accurate).

    Args:
        key: PRNG key.
        quick: small and fast (seconds after compilation) instead of accurate.
        verbose: ``1`` shows a progress bar.
        simulator: ``"ode"`` (default) or a stochastic simulator of
            :func:`simulate_training_set` (``"exact"``: the Markov SIR epidemic of 763
            boys, fizzled outbreaks included).

    Returns:
        The trained :class:`NeuralEstimator`; apply it with
        ``est.estimate(data.t, data.counts, data.population)``.
    """
    key = _check_key(key)
    quick = _check_flag(quick, "quick")
    size = dict(n_train=2000, n_val=200, hidden=(32, 32), epochs=20) if quick else {}
    return NeuralEstimator.train(
        key, np.arange(1.0, 15.0), prior=BOARDING_SCHOOL_PRIOR, t0=0.0,
        observe="prevalence", noise="negbin", verbose=verbose, simulator=simulator, **size,
    )
