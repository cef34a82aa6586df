r"""The 1978 boarding-school influenza outbreak: an amortised estimator and a Bayesian fit.

The data (:func:`epinn.load_boarding_school`): 763 boys, one ill at day 0, the number in
bed counted on days 1..14. Every set-up here models them as SIR,

.. math::

    \dot S = -\beta S I / N, \qquad \dot I = \beta S I / N - \gamma I, \qquad
    \dot R = \gamma I, \qquad (S, I, R)(0) = (762, 1, 0),\ N = 763,

observed as prevalence :math:`I(t_i)`, :math:`t_i = 1, \dots, 14`, with negative-binomial
noise. Two ways to estimate :math:`\beta`, :math:`\gamma` and
:math:`R_0 = \beta / \gamma`:

* :func:`train_estimator`: a :class:`epinn.NeuralEstimator` trained on simulations from
  :data:`PRIOR`, which then reads the parameters off any curve like this one in one
  forward pass (amortised inference);
* :func:`bayesian_fit`: the posterior of the Stan case study (Grinsztajn et al., 2021)
  by NUTS (:func:`epinn.fit_epidemic`).

Examples:
    >>> from epinn.examples import boarding_school
    >>> boarding_school.PRIOR.N, boarding_school.PRIOR.R0, boarding_school.PRIOR.gamma
    ((763.0, 763.0), (1.5, 8.0), (0.2, 1.0))
"""

from __future__ import annotations

import jax
import numpy as np

from .._checks import _check_flag, _check_key
from ..amortized import NeuralEstimator, Prior
from ..bayes import fit_epidemic
from ..datasets import load_boarding_school

__all__ = ["PRIOR", "train_estimator", "bayesian_fit"]

#: Prior for boarding-school-like outbreaks: N = 763 boys, one infected at day 0 (the
#: standard set-up of the SIR fits), R0 in [1.5, 8], an infectious period of 1 to 5 days,
#: 70-100% of the ill observed, noise CV 2-50%. The least-squares (beta 1.67, gamma 0.44)
#: and negative-binomial (1.73, 0.54) estimates lie well inside.
PRIOR = Prior(
    N=763.0, R0=(1.5, 8.0), gamma=(0.2, 1.0), I0=1.0, reporting=(0.7, 1.0),
    noise=(0.02, 0.5),
)


def train_estimator(
    key: jax.Array, *, quick: bool = False, verbose: int = 0, simulator: str = "ode"
) -> NeuralEstimator:
    r"""The estimator for the 1978 boarding-school data (and curves like it).

    SIR observed as prevalence :math:`I` on days 1..14, starting at day 0 from
    :math:`S_0 = 762`, :math:`I_0 = 1` (:math:`N = 763`), with :data:`PRIOR`
    (:math:`R_0`, :math:`\gamma`, reporting and noise level uncertain, drawn
    log-uniformly) and negative-binomial noise; 20 000 training curves, an MLP 128-128
    (the defaults of :meth:`epinn.NeuralEstimator.train`). ``quick`` trains a small
    network on few curves (a smoke test, not accurate).

    Args:
        key: PRNG key.
        quick: small and fast (seconds after compilation) instead of accurate.
        verbose: ``1`` shows a progress bar.
        simulator: ``"ode"`` (default) or a stochastic simulator of
            :func:`epinn.simulate_training_set` (``"exact"``: the Markov SIR epidemic of
            763 boys, fizzled outbreaks included).

    Returns:
        The trained :class:`epinn.NeuralEstimator`; apply it with
        ``est.estimate(data.t, data.counts, data.population)``.

    Raises:
        TypeError: ``key`` is not one jax.random key, or ``quick`` is not a bool.

    Examples:
        >>> import jax.random as jr
        >>> import epinn
        >>> from epinn.examples import boarding_school
        >>> est = boarding_school.train_estimator(jr.PRNGKey(0))  # doctest: +SKIP
        >>> data = epinn.load_boarding_school()
        >>> fit = est.estimate(data.t, data.counts, data.population)  # doctest: +SKIP
    """
    key = _check_key(key)
    quick = _check_flag(quick, "quick")
    size = dict(n_train=2000, n_val=200, hidden=(32, 32), epochs=20) if quick else {}
    return NeuralEstimator.train(
        key, np.arange(1.0, 15.0), prior=PRIOR, t0=0.0,
        observe="prevalence", noise="negbin", verbose=verbose, simulator=simulator, **size,
    )


def bayesian_fit(
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    *,
    warn: bool = True,
) -> dict[str, dict[str, float]]:
    r"""The Stan case-study posterior for the boarding-school outbreak, as a summary dict.

    SIR with :math:`S_0 = 762`, :math:`I_0 = 1` at day 0, prevalence observed at days
    1..14, :math:`y_i \sim \text{NB}(I(t_i), \phi)`, and the case study's priors
    (:func:`epinn.default_priors`: :math:`\beta \sim \mathcal N(2, 1)`,
    :math:`\gamma \sim \mathcal N(0.4, 0.5)`, both truncated to :math:`[0, \infty)`,
    :math:`\phi^{-1} \sim \text{Exponential}(5)`), sampled by NUTS
    (:func:`epinn.fit_epidemic`).

    Args:
        key: PRNG key.
        num_warmup, num_samples, num_chains: NUTS sizes.
        warn: warn when the diagnostics fail.

    Returns:
        ``{"beta", "gamma", "R0", "recovery_time"}`` each ``{"mean", "lo", "hi"}`` (posterior
        mean and equal-tailed 95% interval).

    Examples:
        >>> import jax.random as jr
        >>> from epinn.examples import boarding_school
        >>> post = boarding_school.bayesian_fit(jr.PRNGKey(0))  # doctest: +SKIP
        >>> sorted(post), sorted(post["R0"])  # doctest: +SKIP
        (['R0', 'beta', 'gamma', 'recovery_time'], ['hi', 'lo', 'mean'])
    """
    data = load_boarding_school()
    fit = fit_epidemic(
        data.t, data.counts, key=key, y0=dict(data.y0), population=float(data.population),
        t0=0.0, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        warn=warn,
    )
    table = fit.table(("beta", "gamma", "R0", "recovery_time"))
    return {k: {s: v[s] for s in ("mean", "lo", "hi")} for k, v in table.items()}
