r"""Neural (amortised) parameter estimation: an MLP reads epidemic parameters off a curve.

Instead of fitting every new outbreak by optimisation, simulate many outbreaks once, with
parameters drawn from a prior, and train a network to map a curve to its parameters. The
trained :class:`NeuralEstimator` then estimates parameters for any new curve on the same time
grid in one forward pass ("amortised" inference; the course's *fully connected network
estimates parameters*).

**Training set** (:func:`simulate_training_set`). The model is any unstratified
:class:`~epinn.Model` with scalar parameters (default ``SIR()``, or your own from
:func:`epinn.flow` / :func:`epinn.infection`). Every member draws, log-uniformly and
independently within the box given by a :class:`Prior`,

* any of the model's parameters given a range in ``Prior(params=...)``; the others take
  the values in ``fixed``. Instead of a range for :math:`\beta`, the prior may draw the
  basic reproduction number :math:`R_0` (the SIR-type default, with :math:`\gamma`): the
  transmission rate follows as :math:`\beta = R_0 / R_0|_{\beta = 1}` (:math:`\beta = R_0
  \gamma` for SIR), which keeps every simulated curve an epidemic (:math:`R_0 > 1` on the
  whole box). Otherwise :math:`R_0` is computed for each member from the next-generation
  matrix (:func:`epinn.R0`);
* the initially infected :math:`I_0` at time ``t0`` (in the compartment ``I``, the rest
  of :math:`N` in the compartment infections come from), the population :math:`N`, a
  reporting fraction :math:`\rho` and a noise level :math:`\nu`.

All members are integrated by :func:`epinn.compartmental.solve_ensemble` (blocks of fixed
size, so any number of members reuses one compilation), or, with ``simulator="exact"``,
``"tau_leap"`` or ``"chain_binomial"``, simulated as stochastic epidemics of the same
flows by :func:`epinn.stochastic.simulate` (whole people; outbreaks that fizzle out are
kept): the estimator then learns the demographic noise of small outbreaks, which an
ODE-trained estimator mistakes for information (``experiments/stochastic_coverage.py``).
The observed counts are drawn with :mod:`epinn.observation`'s noise models:
:math:`y_i \sim \text{NB}(\mu_i, \text{Var} = \mu_i + \nu^2 \mu_i^2)`
(:class:`~epinn.observation.NegativeBinomial` with dispersion :math:`\phi = 1/\nu^2`, as
``phi`` in :func:`epinn.fit_parameters`; :math:`\nu` is the coefficient of variation at
large counts), Poisson, or noiseless, capped at :math:`N` (nobody can be counted twice),
with mean :math:`\mu_i = \rho I(t_i)` (prevalence) or :math:`\rho \times` the new
infections in :math:`(t_{i-1}, t_i]` (incidence).

**Normalisation** (:func:`normalize_curve`). A curve :math:`c` of counts in a population
:math:`N` becomes

.. math::

    x = \Big(\sqrt{c_1 / m}, \dots, \sqrt{c_T / m},\ \log(m / N)\Big), \qquad
    m = \max(\max_i c_i, 1):

its *shape* (scale-free; the square root, a variance-stabilising transform for counts,
spreads out the early exponential phase) plus the *peak size as a fraction of the
population*. Both are invariant when counts and population are scaled together, so one
network serves any population (within the prior's range of :math:`I_0 / N` and
:math:`N`, which set the timing and the noise).

**Network and loss.** An MLP (:class:`epinn.MLP`) maps the standardised features to the
mean and log-variance of the standardised logs of the targets: the model's parameters
that the prior draws (and does not fix) or derives, :math:`(\log\beta, \log\gamma)` for
SIR, then :math:`\log R_0` (and :math:`\log I_0`, :math:`\log\rho` when their prior range
is not a single value), trained with :func:`epinn.fit` on :func:`epinn.gaussian_nll`.
Minimising the expected Gaussian NLL over the simulated joint distribution makes the mean
head the posterior mean :math:`\mathbb E[\log\theta \mid x]` and the variance head the
posterior variance (within the Gaussian family), so the network's intervals are
approximate posterior intervals under the prior. :math:`\log R_0` has its own head
because the posterior of :math:`(\log\beta, \log\gamma)` is strongly correlated
(prevalence data pin down the growth and decline rates better than either rate), which
a diagonal Gaussian cannot express; its mean agrees with :math:`R_0` at the other
estimates up to the network's approximation error (reported in
:meth:`NeuralEstimator.estimate`'s ``extras``). Point estimates are
:math:`\exp(\mathbb E[\log\theta\mid x])` (the median of the log-normal) and a
level-:math:`q` interval is :math:`\exp(\mu \pm z_{(1+q)/2}\,\sigma)`.

**Where it can be trusted.** Only inside the prior, and only for data like the
simulations: the same time grid, observation type and noise family, and an outbreak that
the model describes. The network never saw curves from parameters outside the box and
extrapolates arbitrarily there, its intervals included; its intervals are calibrated
(about 90% of 90% intervals cover the truth, :meth:`NeuralEstimator.evaluate`) only for
curves drawn from the prior. :meth:`NeuralEstimator.predict` and
:meth:`~NeuralEstimator.estimate` therefore warn (:class:`OutOfPriorWarning`) when

* the population lies outside the prior's :math:`N`;
* the peak fraction :math:`m/N`, a shape value :math:`\sqrt{c_i/m}` or the peak time lies
  outside the range of the training curves;
* an estimate of a model parameter or of :math:`R_0` leaves the prior box;
* (:meth:`~NeuralEstimator.estimate` only) the model curve at the estimate misses the
  data by more than the prior's largest noise level allows.

The feature ranges are wide (any shape value in [0, 1] occurs somewhere in training), so
for one curve the misfit check of :meth:`~NeuralEstimator.estimate` is the sharper test
of shape. (A nearest-neighbour distance to the training curves was tried and rejected:
small noisy outbreaks make its tail too heavy to separate odd curves from legitimate
ones.) A wide prior makes the estimator apply
to more curves but less precisely; a narrow one is precise but warns more often.

**Layout.** One concept per private module, everything public re-exported here:
``_prior`` (:class:`Prior`), ``_setup`` (the checks that turn a prior and a model into
simulation settings), ``_simulate`` (:func:`simulate_training_set`), ``_features``
(:func:`normalize_curve`), ``_estimator`` (:class:`NeuralEstimator`, whose methods
delegate to ``_train``, ``_posterior``, ``_trust``, ``_estimate``, ``_evaluate`` and
``_io``). The 1978 boarding-school set-up (its prior and a trained estimator) is a recipe,
not part of the estimator: it lives in :mod:`epinn.examples.boarding_school`.
"""

from .._deprecated import _moved_names
from ._estimator import NeuralEstimator
from ._features import normalize_curve
from ._prior import Prior
from ._setup import SIMULATORS
from ._simulate import SimulatedSet, simulate_training_set
from ._trust import OutOfPriorWarning

__all__ = [
    "Prior",
    "SimulatedSet",
    "NeuralEstimator",
    "OutOfPriorWarning",
    "simulate_training_set",
    "normalize_curve",
    "SIMULATORS",
]

# Moved to epinn.examples (issue #23); read by name when used, so that this package never
# imports the examples that sit on top of it.
__getattr__ = _moved_names(__name__, {
    "BOARDING_SCHOOL_PRIOR": "epinn.examples.boarding_school.PRIOR",
    "train_boarding_school_estimator": "epinn.examples.boarding_school.train_estimator",
}, why="The boarding-school recipe moved to epinn.examples (issue #23).")
