"""Worked set-ups for the bundled data sets: a prior, a trained estimator, a posterior.

A *set-up* is the choices one data set needs on top of the library's general functions:
its time grid, initial state, prior ranges, likelihood and network size. The library
ships the general functions (:class:`epinn.NeuralEstimator`, :func:`epinn.fit_epidemic`,
...); the set-ups live here, one module per data set, written only with epinn's public
API (and its shared input checks), as numpyro keeps its models and priors in its
``examples/`` rather than in the core namespace. Read them as recipes to copy and adapt
for your own outbreak.

* :mod:`epinn.examples.boarding_school`: the 1978 influenza outbreak in a boarding school
  (:func:`epinn.load_boarding_school`): the prior of its amortised estimator
  (:data:`~epinn.examples.boarding_school.PRIOR`), that estimator trained
  (:func:`~epinn.examples.boarding_school.train_estimator`) and the Stan case study's
  Bayesian fit (:func:`~epinn.examples.boarding_school.bayesian_fit`).

``import epinn`` loads this namespace (``epinn.examples.boarding_school.PRIOR``); its names
are not re-exported at the top level.

Examples:
    >>> import epinn
    >>> epinn.examples.boarding_school.PRIOR.R0
    (1.5, 8.0)
"""

from . import boarding_school as boarding_school

__all__ = ["boarding_school"]
