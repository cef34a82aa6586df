r"""Bayesian inference with numpyro: Bayesian neural networks and Bayesian epidemic models.

Every Bayesian model here is a plain numpyro model function with named sample sites, so
numpyro's samplers, autoguides and :class:`numpyro.infer.Predictive` apply unchanged. Thin
runners add what the course needs on top: several chains at once, convergence diagnostics
that warn loudly, posterior predictive draws and credible intervals.

**Bayesian neural network** (:func:`bnn_model`). The weights :math:`w` of epinn's Flax
:class:`~epinn.models.MLP` get a Gaussian prior through
:func:`numpyro.contrib.module.random_flax_module`,

.. math::

    w_j \sim \mathcal N(0, s^2), \qquad
    y_i \mid x_i, w, \sigma \sim \mathcal N\big(f_w(x_i), \sigma(x_i)^2\big),

with a fixed prior scale :math:`s` or a hierarchical one (:math:`s \sim
\text{HalfNormal}`, non-centred with :class:`~numpyro.infer.reparam.LocScaleReparam`), and a
learned noise: one :math:`\sigma \sim \text{HalfNormal}` or, heteroscedastic, a second
network output :math:`\sigma(x) = \operatorname{softplus}(f_w(x)_2)`.

**Bayesian epidemic model** (:func:`epidemic_model`). Priors on the rates of any model from
:mod:`epinn.compartmental` (and optionally on initial compartments, a reporting fraction
:math:`\rho` and the negative-binomial overdispersion), the ODE solved inside the model by
:func:`epinn.compartmental.solve`, and a count likelihood

.. math::

    y_i \sim \text{NegBin}\big(\mu_i,\ \phi\big) \ \text{or}\ \text{Poisson}(\mu_i), \qquad
    \mu_i = \rho\, h\big(x(t_i; \beta, \gamma, \ldots)\big), \qquad
    \operatorname{Var} y_i = \mu_i + \mu_i^2/\phi,

where :math:`h` picks a compartment (prevalence), the incidence or cumulative infections.
Solver failures during warm-up are data, not crashes: the solve runs with ``throw=False`` and
a failed solve adds :math:`-\infty` to the log density, so the sampler rejects that point.
:func:`neural_beta_model` replaces the constant :math:`\beta` by a Bayesian network
:math:`\beta(t) = \operatorname{softplus}(f_w(t/t_s))` with Gaussian weight priors; fit it
with SVI (:func:`fit_bayesian_neural_beta`) for a credible band of the transmission rate.

**Speed.** NUTS needs the gradient of the log density. With a handful of parameters
entering the ODE, forward-mode differentiation (numpyro's
``forward_mode_differentiation=True`` with diffrax's :class:`~diffrax.ForwardMode`) costs
little more than one solve carrying a few tangents and avoids the checkpointed backward
pass, so :func:`fit_epidemic` uses forward mode by default; the neural :math:`\beta(t)`
(hundreds of weights) uses reverse mode. The measured times are on the benchmarks page
(``benchmarks/bench_bayes.py``).

The ODE tolerances default to ``rtol=1e-5, atol=1e-7`` (on population fractions): on the
boarding-school outbreak the prevalence then differs from a 1e-12 reference solve by at
most 0.0025 people (3e-5 relative), four orders of magnitude below the count noise. Pass
other settings as keywords or as one :class:`~epinn.SolverOptions` (``options=``).

Diagnostics use :func:`numpyro.diagnostics.split_gelman_rubin` (classic split
:math:`\hat R`, not the rank-normalised version of Vehtari et al.) and
:func:`numpyro.diagnostics.effective_sample_size`; the thresholds follow Vehtari et al.
Intervals are equal-tailed quantiles (as in Stan's tables), not HPD intervals.

**Layout.** One concept per private module, everything public re-exported here:
``_results`` (:class:`MCMCResult`, :class:`SVIResult`), ``_run`` (:func:`run_nuts`,
:func:`run_svi`, :func:`mcmc_diagnostics`), ``_predictive`` (:func:`prior_predictive`,
:func:`posterior_predictive`, :func:`credible_interval`, :func:`predictive_coverage`),
``_bnn`` (:func:`bnn_model`, :func:`fit_bnn`), ``_priors`` (:func:`default_priors`, the
checks of priors and the non-centred draws), ``_epidemic`` (:func:`epidemic_model`,
:func:`fit_epidemic`), ``_neural_beta`` (:func:`neural_beta_model`,
:func:`fit_bayesian_neural_beta`); below them ``_checks`` (input checks), ``_sites`` (a model's sites, from one seeded trace) and
``_init`` (where the samplers start). The boarding-school set-up that was
``bayesian_boarding_school`` is :func:`epinn.examples.boarding_school.bayesian_fit` (the old
name still works, with a :class:`DeprecationWarning`).

References:
    Grinsztajn, Semenova, Margossian, Riou (2021). Bayesian workflow for disease
    transmission modeling in Stan. *Statistics in Medicine* 40(27), 6209-6234.

    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization, folding, and
    localization: an improved R-hat for assessing convergence of MCMC. *Bayesian
    Analysis* 16(2), 667-718.
"""

# The implementation modules are private; the public API is stated once, here.
from .._deprecated import _moved_names
from ._bnn import bnn_model as bnn_model
from ._bnn import fit_bnn as fit_bnn
from ._epidemic import epidemic_model as epidemic_model
from ._epidemic import fit_epidemic as fit_epidemic
from ._neural_beta import fit_bayesian_neural_beta as fit_bayesian_neural_beta
from ._neural_beta import neural_beta_model as neural_beta_model
from ._predictive import credible_interval as credible_interval
from ._predictive import posterior_predictive as posterior_predictive
from ._predictive import predictive_coverage as predictive_coverage
from ._predictive import prior_predictive as prior_predictive
from ._priors import default_priors as default_priors
from ._results import MCMCResult as MCMCResult
from ._results import SVIResult as SVIResult
from ._run import mcmc_diagnostics as mcmc_diagnostics
from ._run import run_nuts as run_nuts
from ._run import run_svi as run_svi

__all__ = [
    "MCMCResult",
    "SVIResult",
    "run_nuts",
    "run_svi",
    "mcmc_diagnostics",
    "prior_predictive",
    "posterior_predictive",
    "credible_interval",
    "predictive_coverage",
    "bnn_model",
    "fit_bnn",
    "default_priors",
    "epidemic_model",
    "fit_epidemic",
    "neural_beta_model",
    "fit_bayesian_neural_beta",
]

# Moved to epinn.examples (issue #23); read by name when used, so that this package never
# imports the examples that sit on top of it.
__getattr__ = _moved_names(__name__, {
    "bayesian_boarding_school": "epinn.examples.boarding_school.bayesian_fit",
}, why="The boarding-school recipe moved to epinn.examples (issue #23).")
