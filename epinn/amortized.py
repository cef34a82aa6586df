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
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import statistics
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike

from . import compartmental as _compartmental
from . import stochastic as _stochastic
from ._checks import (
    _MAX_INT,
    _as_float,
    _as_float_array,
    _check_choice,
    _check_flag,
    _check_int,
    _check_key,
    _check_positive,
    _check_verbose,
    _did_you_mean,
    _show,
)
from .compartmental import R0 as _R0
from .compartmental import SIR, CompartmentalModel, solve, solve_ensemble
from .data import Standardizer
from .estimation import FitResult
from .losses import gaussian_nll
from .models import MLP
from .neural_beta import _check_activation, _check_finite_params, _check_hidden
from .observation import NegativeBinomial, Poisson
from .sharding import resolve_mesh, shard_map_batch
from .training import (
    EarlyStopping,
    History,
    NonFiniteLossError,
    fit,
    load_checkpoint,
    predict,
    save_checkpoint,
)

__all__ = [
    "Prior",
    "SimulatedSet",
    "NeuralEstimator",
    "OutOfPriorWarning",
    "simulate_training_set",
    "normalize_curve",
    "train_boarding_school_estimator",
    "BOARDING_SCHOOL_PRIOR",
    "SIMULATORS",
]

_PRIOR_NAMES = ("N", "R0", "gamma", "I0", "reporting", "noise")
#: Prior names that are not parameters of the model (the observation and initial state).
_OBSERVATION_NAMES = ("N", "I0", "reporting", "noise")
_OBSERVE = ("prevalence", "incidence")
_NOISE = ("negbin", "poisson", "none")
#: The simulators of :func:`simulate_training_set`: the ODE or a stochastic simulator of
#: :func:`epinn.stochastic.simulate`.
SIMULATORS = ("ode", "exact", "tau_leap", "chain_binomial")
# Relative slack (of each training range's width) before a feature counts as outside.
_FEATURE_SLACK = 0.05
# estimate() warns when the Pearson misfit exceeds this many times the number of points.
_MISFIT_FACTOR = 4


class OutOfPriorWarning(UserWarning):
    """A curve, population or estimate lies outside what the estimator was trained on."""


# --------------------------------------------------------------------------------------
# Prior
# --------------------------------------------------------------------------------------


def _check_range(value: Any, name: str) -> tuple[float, float]:
    """A number or a pair ``(lo, hi)`` with ``0 < lo <= hi`` (finite), as two floats."""
    try:
        pair = (value, value) if np.ndim(value) == 0 else tuple(value)
        if len(pair) != 2 or any(isinstance(v, (bool, np.bool_, str, bytes)) for v in pair):
            raise ValueError
        lo, hi = (_as_float(v, name) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(
            f"Prior `{name}` must be a number or a pair (lo, hi) of numbers; got "
            f"{_show(value)}."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"Prior `{name}` must satisfy 0 < lo <= hi (finite); got {value!r}.")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class Prior:
    r"""Independent log-uniform priors, one ``(lo, hi)`` range per quantity.

    A draw is :math:`\theta = \exp(u)`, :math:`u \sim \mathcal U(\log lo, \log hi)`. A
    single number, or a range with ``lo == hi``, fixes the value.

    **Any parameter of any model.** ``params`` gives a range to any declared scalar
    parameter of the model being simulated (``{"beta": (0.5, 3), "nu": (0.001, 0.05)}``
    for your own :class:`~epinn.Model`); every parameter of the model must then have a
    range here or a value in ``fixed`` (:func:`simulate_training_set` names any that has
    neither, and any range for a name the model does not declare). ``R0`` is the
    alternative to a range for ``beta``: the model's ``beta`` then follows from the drawn
    :math:`R_0` (:math:`R_0` is proportional to :math:`\beta`; checked), which keeps every
    curve an epidemic. Without ``params`` (the SIR-type set-up) the defaults
    ``R0=(1.5, 8)`` and ``gamma=(0.2, 1)`` apply; with ``params`` only the ranges given are
    drawn. ``gamma`` may be given either way.

    The box these ranges span is the estimator's domain of trust: see the module
    docstring.

    Attributes:
        N: population size (required; usually fixed, e.g. ``763``).
        R0: basic reproduction number (``lo > 1``: every curve is an epidemic); ``beta``
            follows from it. ``None`` when not drawn.
        gamma: recovery rate (per time unit of ``ts``); ``None`` when not drawn.
        I0: initially infected people at ``t0``, in the seed compartment (``I`` by
            default); the rest of ``N`` is susceptible.
        reporting: fraction of the true counts that is observed, in ``(0, 1]``.
        noise: coefficient of variation :math:`\nu` of the negative-binomial noise
            (:math:`\text{Var} = \mu + \nu^2\mu^2`); unused for Poisson or no noise.
        params: ``{name: (lo, hi)}`` for the model's parameters (``gamma`` included when it
            is drawn; ``R0`` is kept in its own attribute).

    Raises:
        ValueError: a range that is not one or two positive finite numbers with
            ``lo <= hi``, ``R0`` not above 1, ``reporting`` above 1, ``I0`` not below
            ``N``, a name given twice (``gamma`` and ``params["gamma"]``, or ``R0`` and
            ``beta``), or a ``params`` name that is an observation setting (``N``, ``I0``,
            ``reporting``, ``noise``).
        TypeError: ``params`` not a mapping of names.

    Examples:
        >>> p = Prior(N=1000, R0=(2.0, 4.0), I0=1)
        >>> p.R0, p.N, p.is_fixed("N"), p.is_fixed("R0")
        ((2.0, 4.0), (1000.0, 1000.0), True, False)
        >>> q = Prior(N=763, I0=1, params={"beta": (0.5, 3.0), "gamma": (0.2, 1.0),
        ...                                "nu": (0.005, 0.05)})
        >>> q.R0, q.gamma, sorted(q.params)
        (None, (0.2, 1.0), ['beta', 'gamma', 'nu'])
    """

    N: tuple[float, float]
    R0: tuple[float, float] | None = None
    gamma: tuple[float, float] | None = None
    I0: tuple[float, float] = (0.5, 3.0)
    reporting: tuple[float, float] = (0.7, 1.0)
    noise: tuple[float, float] = (0.02, 0.5)
    params: Mapping[str, Any] | None = None

    def __post_init__(self):
        params = _check_prior_params(self.params)
        if not params:  # the SIR-type set-up and its defaults
            R0 = (1.5, 8.0) if self.R0 is None else self.R0
            gamma = (0.2, 1.0) if self.gamma is None else self.gamma
        else:
            R0, gamma = self.R0, self.gamma
            # Given twice is fine only with one value (as dataclasses.replace does).
            for name in ("R0", "gamma"):
                field = R0 if name == "R0" else gamma
                if name in params and field is not None and _check_range(
                        field, name) != _check_range(params[name], name):
                    raise ValueError(f"Prior `{name}` is given twice, differently (as "
                                     f"`{name}` and in `params`).")
            R0 = params.pop("R0", R0)
            gamma = params.pop("gamma", gamma)
        if R0 is not None and "beta" in params:
            raise ValueError(
                "Prior `R0` and `params['beta']` both given: beta follows from R0 (give one)."
            )
        for name in ("N", "I0", "reporting", "noise"):
            object.__setattr__(self, name, _check_range(getattr(self, name), name))
        R0 = None if R0 is None else _check_range(R0, "R0")
        gamma = None if gamma is None else _check_range(gamma, "gamma")
        ranges = {k: _check_range(v, k) for k, v in sorted(params.items())}
        if gamma is not None:
            ranges = {"gamma": gamma, **ranges}
        object.__setattr__(self, "R0", R0)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "params", ranges)
        if R0 is not None and R0[0] <= 1.0:
            raise ValueError(f"Prior `R0` must lie above 1 (epidemics only); got {R0}.")
        if self.reporting[1] > 1.0:
            raise ValueError(f"Prior `reporting` must lie in (0, 1]; got {self.reporting}.")
        if self.I0[1] >= self.N[0]:
            raise ValueError(
                f"Prior `I0` {self.I0} must stay below the population `N` {self.N}."
            )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def names(self) -> tuple[str, ...]:
        """Every quantity with a range: the observation settings, ``R0`` and ``params``."""
        r0 = ("R0",) if self.R0 is not None else ()
        return ("N", *r0, *self.params, "I0", "reporting", "noise")

    def range(self, name: str) -> tuple[float, float]:
        """The ``(lo, hi)`` range of ``name`` (an observation setting, ``R0`` or a param)."""
        if name in self.params:
            return self.params[name]
        value = getattr(self, name, None) if name in _PRIOR_NAMES else None
        if value is None:
            raise KeyError(
                f"The prior has no range for {name!r}{_did_you_mean(name, self.names)}; "
                f"its names are {self.names}."
            )
        return value

    def is_fixed(self, name: str) -> bool:
        """Whether the range of ``name`` is a single value."""
        lo, hi = self.range(name)
        return lo == hi

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{name: [lo, hi]}`` (the model's other ranges under ``"params"``)."""
        d: dict[str, Any] = {"N": list(self.N)}
        if self.R0 is not None:
            d["R0"] = list(self.R0)
        if self.gamma is not None:
            d["gamma"] = list(self.gamma)
        d.update({k: list(getattr(self, k)) for k in ("I0", "reporting", "noise")})
        rest = {k: list(v) for k, v in self.params.items() if k != "gamma"}
        if rest:
            d["params"] = rest
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`.

        Raises:
            TypeError: ``d`` is not a mapping.
            ValueError: unknown names, no ``N``, or a bad range (as the constructor).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"`d` must be a mapping {{name: [lo, hi]}}; got {_show(d)}.")
        valid = (*_PRIOR_NAMES, "params")
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ValueError(
                f"Unknown prior names {unknown}; valid names are {valid} (ranges of other "
                "model parameters go under 'params')."
            )
        if "N" not in d:
            raise ValueError("The prior needs `N`, the population size.")
        return cls(**dict(d))

    def sample(self, key: jax.Array, n: int) -> dict[str, Array]:
        """``n`` independent log-uniform draws of every quantity, ``{name: (n,)}``."""
        key = _check_key(key)
        return jax.jit(_draw, static_argnums=2)(key, self._ranges(),
                                                _check_positive_int(n, "n"))

    def _ranges(self) -> dict[str, Array]:
        """``{name: array([lo, hi])}`` for every name in :attr:`names`."""
        return {k: jnp.asarray(self.range(k)) for k in self.names}


def _check_prior_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(
            f"Prior `params` must be a mapping {{name: (lo, hi)}}; got {_show(params)}."
        )
    out = {}
    for k, v in params.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise TypeError(f"Prior `params` names must be parameter names; got {k!r}.")
        if k in _OBSERVATION_NAMES:
            raise ValueError(
                f"Prior `params[{k!r}]`: {k!r} is an observation setting; give it as "
                f"`Prior({k}=...)`."
            )
        out[k] = v
    return out


#: Prior for boarding-school-like outbreaks: N = 763 boys, one infected at day 0 (the
#: standard set-up of the SIR fits), R0 in [1.5, 8], an infectious period of 1 to 5 days,
#: 70-100% of the ill observed, noise CV 2-50%. The least-squares (beta 1.67, gamma 0.44)
#: and negative-binomial (1.73, 0.54) estimates lie well inside.
BOARDING_SCHOOL_PRIOR = Prior(
    N=763.0, R0=(1.5, 8.0), gamma=(0.2, 1.0), I0=1.0, reporting=(0.7, 1.0),
    noise=(0.02, 0.5),
)


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


class SimulatedSet(NamedTuple):
    """Simulated training data: observed curves and the parameters that made them.

    Attributes:
        curves: observed counts, ``(n, T)``.
        params: ``{name: (n,)}``: the model's drawn and derived parameters (``beta``,
            ``gamma`` for SIR), ``R0``, ``I0``, ``reporting``, ``noise`` and ``N``.
        mean: the noiseless observation mean (:math:`\\rho I` or :math:`\\rho\\times`
            incidence), ``(n, T)``.
    """

    curves: Array
    params: dict[str, Array]
    mean: Array

    def log_params(self, names: Sequence[str] = ("beta", "gamma", "R0")) -> Array:
        """``(n, len(names))`` array of the log of the named parameters."""
        return jnp.stack([jnp.log(self.params[k]) for k in names], axis=-1)


def _check_ts(ts: Any, t0: float | None, observe: str) -> tuple[np.ndarray, float]:
    a = _as_float_array(ts, "ts")
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"`ts` must be 1-D with at least 2 times; got shape {a.shape}.")
    if not np.all(np.isfinite(a)) or not np.all(np.diff(a) > 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
    t0 = float(a[0] - (a[1] - a[0])) if t0 is None else _as_float(t0, "t0")
    if not math.isfinite(t0) or t0 > a[0]:
        raise ValueError(f"`t0` ({t0}) must be finite and not after `ts[0]` ({a[0]}).")
    if observe == "incidence" and t0 == a[0]:
        raise ValueError("`t0` must be before `ts[0]` for incidence (the first interval).")
    return a, t0


class _Spec(NamedTuple):
    """How the prior's draws become one member of a model (resolved in plain Python).

    Attributes:
        drawn: the model's parameters drawn from ``prior.params``, in declared order.
        derived: ``"beta"`` when it follows from a drawn :math:`R_0`, else ``None``.
        fixed: ``((name, value), ...)``, the model's other parameters.
        susceptible: the compartment infections come from (holds ``N - I0`` at ``t0``).
        seed: the compartment that holds the ``I0`` initially infected.
        observed: the compartment read by ``observe="prevalence"``.
    """

    rates: tuple[str, ...]
    drawn: tuple[str, ...]
    derived: str | None
    fixed: tuple[tuple[str, float], ...]
    susceptible: str
    seed: str
    observed: str

    def rate_targets(self, prior: Prior) -> tuple[str, ...]:
        """The estimated model parameters, in declared order: those drawn (and not fixed
        by the prior) and the one derived from :math:`R_0`."""
        return tuple(k for k in self.rates if k == self.derived
                     or (k in self.drawn and not prior.is_fixed(k)))


def _model_name(model: CompartmentalModel) -> str:
    return getattr(model, "name", type(model).__name__)


def _check_fixed(fixed: Any) -> dict[str, float]:
    if fixed is not None and not isinstance(fixed, Mapping):
        raise TypeError(f"`fixed` must be a mapping like {{'sigma': 0.5}}; got {_show(fixed)}.")
    out = {}
    for k, v in dict(fixed or {}).items():
        x = _as_float(v, f"fixed[{k!r}]")
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"`fixed[{k!r}]` must be a non-negative number; got {v!r}.")
        out[k] = x
    return out


def _check_model(model: Any) -> CompartmentalModel:
    """An unstratified model with scalar parameters whose infections leave one compartment."""
    if not isinstance(model, CompartmentalModel):
        raise TypeError(
            f"`model` must be an epinn.Model (SIR(), or your own from epinn.flow / "
            f"epinn.infection); got {_show(model)}."
        )
    name = _model_name(model)
    if model.groups is not None:
        raise ValueError(
            f"`model` {name} is stratified (groups {model.groups}); the amortised estimator "
            "reads one curve of an unstratified model."
        )
    arrays = [k for k, s in model.param_shapes.items() if k != "N" and s != ()]
    if arrays:
        raise ValueError(
            f"`model` {name} declares array parameters {arrays}; the amortised estimator "
            "takes scalar parameters only."
        )
    sources = sorted({f.source for f in model.flows if f.infection})
    if len(sources) != 1:
        raise ValueError(
            f"`model` {name} must have infection flows (epinn.infection) out of exactly one "
            f"compartment, the susceptibles; got sources {sources}."
        )
    return model


def _resolve(model: Any, prior: Prior, fixed: Any, seed_compartment: Any,
             observe: str) -> tuple[CompartmentalModel, _Spec]:
    """Check that every parameter of ``model`` has one source (a prior range, a fixed
    value, or ``R0`` for ``beta``) and where the initial infected sit; plain Python."""
    model = _check_model(SIR() if model is None else model)
    fixed = _check_fixed(fixed)
    name, rates = _model_name(model), model.rate_names
    for what, names in (("`prior.params`", list(prior.params)), ("`fixed`", list(fixed))):
        unknown = [k for k in names if k not in rates]
        if unknown:
            k = unknown[0]
            raise ValueError(
                f"{what} names {k!r}, which is not a parameter of {name}"
                f"{_did_you_mean(k, rates)}; its parameters are {rates}."
            )
    both = [k for k in prior.params if k in fixed]
    if both:
        raise ValueError(f"{both} have both a prior range and a value in `fixed`; give one.")
    derived = None
    if prior.R0 is not None:
        if "beta" not in rates:
            raise ValueError(
                f"The prior draws `R0`, from which `beta` follows, but {name} has no "
                f"parameter `beta` (its parameters are {rates}); give ranges in "
                "`Prior(params=...)` instead."
            )
        if "beta" in fixed:
            raise ValueError("`fixed['beta']` contradicts the prior's `R0` (beta follows "
                             "from R0); give one.")
        derived = "beta"
    missing = [k for k in rates if k not in prior.params and k not in fixed and k != derived]
    if missing:
        raise ValueError(
            f"The parameter(s) {missing} of {name} have neither a prior range nor a fixed "
            f"value: give each a range in `Prior(params=...)` or a value in `fixed` (e.g. "
            f"`fixed={{{missing[0]!r}: ...}}`)."
        )
    susceptible = next(f.source for f in model.flows if f.infection)
    targets = [f.target for f in model.flows if f.infection]
    default = "I" if "I" in model.compartments else targets[0]
    seed = default if seed_compartment is None else seed_compartment
    if seed not in model.compartments or seed == susceptible:
        raise ValueError(
            f"`seed_compartment` must be a compartment of {name} other than the "
            f"susceptibles {susceptible!r}{_did_you_mean(str(seed), model.compartments)}; "
            f"got {seed!r} (compartments {model.compartments})."
        )
    if observe == "prevalence" and "I" not in model.compartments:
        raise ValueError(
            f"`observe='prevalence'` reads the compartment I, which {name} does not have "
            f"(compartments {model.compartments}); observe 'incidence'."
        )
    drawn = tuple(k for k in rates if k in prior.params)
    spec = _Spec(rates, drawn, derived, tuple(sorted(fixed.items())), susceptible, seed, "I")
    if derived and not _is_builtin(model):
        _check_r0_proportional(model, prior, spec)
    return model, spec


def _is_builtin(model: CompartmentalModel) -> bool:
    cls = type(model)
    return cls is not CompartmentalModel and getattr(_compartmental, cls.__name__, None) is cls


def _check_r0_proportional(model: CompartmentalModel, prior: Prior, spec: _Spec) -> None:
    """``beta`` follows from ``R0`` only where :math:`R_0 \\propto \\beta` (any model of
    frequency- or density-dependent transmission): checked at the prior's centre."""
    mid = {k: math.sqrt(lo * hi) for k, (lo, hi) in prior.params.items()}
    p = {**mid, **dict(spec.fixed), "N": math.sqrt(prior.N[0] * prior.N[1])}
    r1, r2 = (float(_R0(model, {**p, "beta": b})) for b in (1.0, 2.0))
    if not (math.isfinite(r1) and r1 > 0 and abs(r2 / r1 - 2.0) < 1e-4):
        raise ValueError(
            f"The prior draws `R0` and derives `beta`, but R0 of {_model_name(model)} is not "
            f"proportional to beta (R0 = {r1:.4g} at beta = 1, {r2:.4g} at beta = 2): give "
            "`beta` a range in `Prior(params=...)` instead."
        )


def _check_positive_int(value: Any, name: str) -> int:
    """An int >= 1 (Python or NumPy); TypeError for other kinds, ValueError out of range."""
    return _check_int(value, name, 1)


def _draw(key, prior_arrays, n):
    """Log-uniform draws from ``{name: (lo, hi)}`` arrays.

    The six SIR-type names draw from ``jax.random.split(key, 6)`` in the order of
    ``_PRIOR_NAMES`` (whichever of them the prior has); other names from
    ``jax.random.split(fold_in(key, 6), k)`` in sorted order.
    """
    legacy = jr.split(key, len(_PRIOR_NAMES))
    keys = {name: k for name, k in zip(_PRIOR_NAMES, legacy)}
    extra = sorted(k for k in prior_arrays if k not in keys)
    if extra:
        keys.update(zip(extra, jr.split(jr.fold_in(key, len(_PRIOR_NAMES)), len(extra))))
    out = {}
    for name in prior_arrays:
        lo, hi = prior_arrays[name]
        u = jr.uniform(keys[name], (n,), minval=jnp.log(lo), maxval=jnp.log(hi))
        out[name] = jnp.where(lo == hi, lo, jnp.exp(u))  # a fixed value stays exact
    return out


def _add_noise(key, mean, nu, noise):
    r"""Counts around ``mean`` with :mod:`epinn.observation`'s noise models.

    ``"negbin"``: :class:`~epinn.observation.NegativeBinomial` with dispersion
    :math:`\phi = 1/\nu^2` per member (coefficient of variation :math:`\nu` at large
    counts); ``"poisson"``: :class:`~epinn.observation.Poisson`; ``"none"``: the mean.
    """
    if noise == "none":
        return mean
    if noise == "poisson":
        model = Poisson()
    else:
        model = NegativeBinomial(phi=1.0 / jnp.square(nu)[:, None])
    return model.sample(key, jnp.maximum(mean, 0.0)).astype(mean.dtype)


def _beta_per_R0(model: CompartmentalModel, rates: Mapping[str, Any], N: Array) -> Array:
    """:math:`\\beta / R_0`, the inverse of :math:`R_0` at :math:`\\beta = 1`."""
    one = jnp.ones_like(N)
    return 1.0 / _R0(model, {**rates, "beta": one, "N": N})


def simulate_training_set(
    key: jax.Array,
    n: int,
    ts: ArrayLike,
    *,
    prior: Prior,
    model: CompartmentalModel | None = None,
    fixed: Mapping[str, float] | None = None,
    t0: float | None = None,
    observe: str = "prevalence",
    noise: str = "negbin",
    block_size: int = 2048,
    mesh: Mesh | None | bool = None,
    simulator: str = "ode",
    dt: float | None = None,
    seed_compartment: str | None = None,
) -> SimulatedSet:
    r"""Simulate ``n`` observed epidemic curves with parameters drawn from ``prior``.

    See the module docstring for the generative model. Every member draws the model's
    parameters from ``prior`` (``beta`` from :math:`R_0` when the prior draws
    :math:`R_0`), takes ``fixed`` for the others, and starts at ``t0`` with ``I0`` people
    in the seed compartment and ``N - I0`` in the compartment infections come from.

    ``simulator`` chooses the epidemic: ``"ode"`` (default) integrates the model's ODE,
    the deterministic mean; ``"exact"``, ``"tau_leap"`` and ``"chain_binomial"`` run
    :func:`epinn.stochastic.simulate` on the same definition (the stochastic epidemic of
    the same flows, each flow an event), so the curves carry the demographic noise of
    small outbreaks. Stochastic members start from whole numbers: ``N`` and ``I0`` are
    rounded (``I0`` to at least 1) and the rounded values are returned in ``params``.
    Members whose outbreak fizzles out (a few cases, then none) are **kept**: they are
    what a small population produces, and an estimator trained on them learns that such
    curves say little about the parameters. Observation noise (``noise``) is drawn on top
    of the stochastic counts as on top of the ODE curve.

    The members are made in blocks of ``block_size``: block ``b`` draws its parameters,
    its epidemics and its noise from ``jax.random.fold_in(key, b)`` and simulates all its
    members in one :func:`~epinn.compartmental.solve_ensemble` (or
    :func:`~epinn.stochastic.simulate`) call, inside one jit-compiled function; the
    surplus members of the last block are dropped. So any ``n`` reuses one compilation,
    and the first ``n`` members do not depend on how many more are drawn. The blocks'
    ODE state shares one step size (the stacked method of
    :func:`~epinn.compartmental.solve_ensemble`, error controlled for every member).

    Args:
        key: PRNG key; the same key gives the same set.
        n: number of curves.
        ts: observation times (strictly increasing).
        prior: the :class:`Prior`.
        model: any unstratified :class:`~epinn.Model` with scalar parameters whose
            infections leave one compartment; default ``SIR()``.
        fixed: values of the model's parameters that the prior does not draw (e.g.
            ``{"sigma": 0.5}`` for SEIR).
        t0: time of the initial state; default one grid step before ``ts[0]``.
        observe: ``"prevalence"`` (:math:`\rho I(t_i)`) or ``"incidence"`` (:math:`\rho
            \times` new infections in :math:`(t_{i-1}, t_i]`, with :math:`t_{-1} = t_0`).
        noise: ``"negbin"``, ``"poisson"`` or ``"none"``.
        block_size: members per solver call.
        mesh: devices to spread the blocks over (:mod:`epinn.sharding`): a
            ``jax.sharding.Mesh``, ``None`` (default) for all devices, ``False`` for the
            default device only. With ``d`` devices, blocks ``r d, ..., r d + d - 1`` run
            at once, one per device; the set does not depend on ``d``.
        simulator: ``"ode"``, ``"exact"``, ``"tau_leap"`` or ``"chain_binomial"``.
        dt: the step of ``"tau_leap"`` and ``"chain_binomial"`` (default a tenth of the
            shortest interval of ``[t0, *ts]``); must be ``None`` otherwise.
        seed_compartment: the compartment of the ``I0`` initially infected (default
            ``"I"``, or the target of the model's first infection flow).

    Returns:
        :class:`SimulatedSet` ``(curves (n, T), params, mean (n, T))``; ``params`` holds
        the drawn and derived parameters, ``R0`` (drawn, or from the next-generation
        matrix), ``I0``, ``N``, ``reporting`` and ``noise``.

    Raises:
        ValueError: bad ``n``, ``ts``, ``t0``, ``observe``, ``noise``, ``simulator``
            (the closest valid name is suggested), ``dt``, ``fixed`` or ``block_size``; a
            model parameter with neither a prior range nor a fixed value, or a range or
            fixed value for a name the model does not declare (the closest is
            suggested); every check runs before anything compiles.
        TypeError: a ``key`` that is not one ``jax.random`` key, ``prior`` not a
            :class:`Prior`, or an argument of the wrong kind (``n=2.0``, ``ts`` as
            strings, ``mesh`` not a mesh).

    Warns:
        UserWarning: stochastic members stopped at the event cap of the exact simulator.

    Examples:
        >>> import jax.random as jr, numpy as np
        >>> sim = simulate_training_set(jr.PRNGKey(0), 3, np.arange(1.0, 15.0),
        ...                             prior=Prior(N=763, I0=1))
        >>> sim.curves.shape, sorted(sim.params)
        ((3, 14), ['I0', 'N', 'R0', 'beta', 'gamma', 'noise', 'reporting'])

        ``simulator="exact"`` draws the same parameters (same key) and simulates stochastic
        epidemics of them instead (not run here: it compiles the event loop).

        >>> st = simulate_training_set(jr.PRNGKey(0), 3, np.arange(1.0, 15.0),
        ...                            prior=Prior(N=763, I0=1),
        ...                            simulator="exact")  # doctest: +SKIP
    """
    key = _check_key(key)
    n = _check_positive_int(n, "n")
    block_size = _check_positive_int(block_size, "block_size")
    model, spec, ts_np, t0, simulator, dt = _check_simulation(
        ts, prior, model, fixed, t0, observe, noise, simulator, dt, seed_compartment)
    mesh = resolve_mesh(mesh)
    grid = jnp.asarray(np.concatenate([[t0], ts_np]) if t0 < ts_np[0] else ts_np)
    sim = _SimulateBlocks(model, spec, observe, noise, block_size, ts_np.size, simulator, dt)
    d = 1 if mesh is None else mesh.size
    n_blocks = -(-n // block_size)
    # One round = one block per device: the same compiled call whatever n is.
    rounds = [
        shard_map_batch(sim, jnp.stack([jr.fold_in(key, b) for b in range(r, r + d)]),
                        mesh=mesh, shared=(prior._ranges(), grid))
        for r in range(0, n_blocks, d)
    ]
    curves, params, mean, capped = jax.tree_util.tree_map(
        lambda *a: jnp.concatenate(a, axis=0).reshape(-1, *a[0].shape[2:])[:n], *rounds
    )
    n_capped = int(np.sum(np.asarray(capped)))
    if n_capped:
        warnings.warn(
            f"{n_capped} of {n} stochastic members stopped at the exact simulator's event "
            f"cap ({_MAX_EVENTS} events); their curves are frozen from then on.",
            UserWarning, stacklevel=2,
        )
    return SimulatedSet(curves=curves, params=params, mean=mean)


_MAX_EVENTS = 1_000_000


def _check_simulation(ts, prior, model, fixed, t0, observe, noise, simulator="ode", dt=None,
                      seed_compartment=None):
    """The checks of :func:`simulate_training_set`'s settings, in plain Python; returns
    ``model`` (default ``SIR()``), its :class:`_Spec`, ``ts`` as a NumPy array, ``t0``,
    ``simulator`` and the step ``dt`` of the approximate stochastic simulators."""
    if not isinstance(prior, Prior):
        raise TypeError(f"`prior` must be a Prior; got {type(prior).__name__}.")
    _check_choice(observe, "observe", _OBSERVE)
    _check_choice(noise, "noise", _NOISE)
    simulator = _check_choice(simulator, "simulator", SIMULATORS)
    model, spec = _resolve(model, prior, fixed, seed_compartment, observe)
    ts_np, t0 = _check_ts(ts, t0, observe)
    if simulator in ("ode", "exact"):
        if dt is not None:
            raise ValueError(f"`dt` is the step of 'tau_leap' and 'chain_binomial'; "
                             f"simulator={simulator!r} takes none (leave dt=None).")
    else:
        grid = np.concatenate([[t0], ts_np]) if t0 < ts_np[0] else ts_np
        dt = float(np.min(np.diff(grid))) / 10.0 if dt is None else _check_positive(dt, "dt")
    return model, spec, ts_np, t0, simulator, dt


def _check_finite_simulation(sim: SimulatedSet, prior: Prior) -> None:
    """A training set with NaN or infinite curves (a failed solve) is refused by name."""
    bad = np.flatnonzero(~np.all(np.isfinite(np.asarray(sim.curves)), axis=-1))
    if bad.size:
        i = int(bad[0])
        p = {k: float(v[i]) for k, v in sim.params.items()}
        raise ValueError(
            f"{bad.size} simulated training curve(s) are not finite (e.g. member {i} with "
            f"{p}); the ODE solver failed inside `prior` {prior.to_dict()}: narrow it."
        )


class _SimulateBlocks(eqx.Module):
    """Blocks of ``size`` members, one per key: prior draws, simulation, noise.

    A module with static settings, so one compilation serves every call with them.
    """

    model: CompartmentalModel
    spec: _Spec = eqx.field(static=True)
    observe: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    size: int = eqx.field(static=True)
    T: int = eqx.field(static=True)
    simulator: str = eqx.field(static=True, default="ode")
    dt: float | None = eqx.field(static=True, default=None)

    def __call__(self, keys, shared):
        ranges, grid = shared
        return jax.lax.map(lambda k: _simulate_block(k, ranges, grid, self), keys)


def _member_parameters(p: dict, model: CompartmentalModel, spec: _Spec) -> dict[str, Any]:
    """The model's parameters of every member (``N`` included); adds ``beta`` (from R0)
    or ``R0`` (from the next-generation matrix) to the draws ``p``."""
    rates: dict[str, Any] = {k: p[k] for k in spec.drawn}
    rates.update(dict(spec.fixed))
    if spec.derived:
        p[spec.derived] = p["R0"] * _beta_per_R0(model, rates, p["N"])
        rates[spec.derived] = p[spec.derived]
    else:
        p["R0"] = _R0(model, {**rates, "N": p["N"]})
    return {**rates, "N": p["N"]}


def _simulate_block(key, ranges, grid, s: _SimulateBlocks):
    """One block of ``s.size`` members: prior draws, one ensemble simulation, noise."""
    k_prior, k_noise = jr.split(key)
    model, spec, size = s.model, s.spec, s.size
    p = _draw(k_prior, ranges, size)
    stochastic = s.simulator != "ode"
    if stochastic:  # whole people
        p["N"] = jnp.round(p["N"])
        p["I0"] = jnp.clip(jnp.round(p["I0"]), 1.0, p["N"] - 1.0)
    rates = _member_parameters(p, model, spec)
    y0 = jnp.zeros((size, len(model.compartments)), grid.dtype)
    y0 = y0.at[:, model.compartments.index(spec.seed)].set(p["I0"])
    y0 = y0.at[:, model.compartments.index(spec.susceptible)].set(p["N"] - p["I0"])
    if stochastic:
        true, capped = _stochastic_curves(jr.fold_in(key, 2), model, spec, rates, y0, grid, s)
    else:
        traj = solve_ensemble(model, rates, y0, grid, chunk_size=size, sort_members=False,
                              mesh=False)
        if s.observe == "prevalence":
            true = traj[spec.observed]
        else:
            true = jnp.diff(traj.cumulative_infections, axis=-1, prepend=0.0)
        capped = jnp.zeros((size,), bool)
    mean = p["reporting"][:, None] * true[:, -s.T:]
    # No more people can be observed than there are: NB draws above N are capped.
    counts = jnp.minimum(_add_noise(k_noise, mean, p["noise"], s.noise), p["N"][:, None])
    return counts, p, mean, capped


def _stochastic_curves(key, model, spec, rates, y0, grid, s: _SimulateBlocks):
    """Prevalence or incidence of :func:`epinn.stochastic.simulate` runs, ``(size, T+1)``."""
    sim = _stochastic.simulate(
        model, rates, y0.astype(jnp.int32), grid, key=key, method=s.simulator, n=s.size,
        dt=s.dt, max_events=_MAX_EVENTS,
    )
    if s.observe == "prevalence":
        true = sim.ys[:, :, model.compartments.index(spec.observed)]
    else:
        infections = np.flatnonzero([f.infection for f in model.flows])
        cumulative = jnp.sum(sim.counts[:, :, infections], axis=-1)
        true = jnp.diff(cumulative, axis=-1, prepend=0)
    return true.astype(grid.dtype), sim.capped


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


def normalize_curve(curves: ArrayLike, population: ArrayLike) -> Array:
    r"""Population-free features of count curves: scaled shape and peak fraction.

    .. math::

        x = \big(\sqrt{c_1/m}, \dots, \sqrt{c_T/m},\ \log(m/N)\big), \qquad
        m = \max(\max_i c_i, 1).

    Unchanged when ``curves`` and ``population`` are multiplied by the same factor (as
    long as the peak is at least 1).

    Args:
        curves: counts, ``(..., T)``.
        population: :math:`N`, broadcastable to ``curves.shape[:-1]``.

    Returns:
        features ``(..., T + 1)``.

    Examples:
        >>> x = normalize_curve(jnp.array([1.0, 4.0, 2.0]), 40.0)
        >>> [round(float(v), 4) for v in x]
        [0.5, 1.0, 0.7071, -2.3026]
    """
    c = jnp.asarray(curves)
    m = jnp.maximum(jnp.max(c, axis=-1, keepdims=True), 1.0)
    shape = jnp.sqrt(jnp.maximum(c, 0.0) / m)
    frac = jnp.log(m[..., 0] / jnp.asarray(population, c.dtype))
    return jnp.concatenate([shape, frac[..., None]], axis=-1)


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------


def _z(level: float) -> float:
    """The normal quantile of a two-sided ``level`` interval; checks ``level``."""
    x = _as_float(level, "level")
    if not 0.0 < x < 1.0:
        raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
    return statistics.NormalDist().inv_cdf(0.5 + x / 2.0)


@dataclasses.dataclass(frozen=True, eq=False)
class NeuralEstimator:
    r"""A trained amortised estimator of a model's parameters (and :math:`R_0`) from one curve.

    Build one with :meth:`train`; use it with :meth:`predict` (many curves),
    :meth:`estimate` (one outbreak, as a :class:`~epinn.FitResult`) and :meth:`evaluate`
    (held-out simulations); keep it with :meth:`save` / :meth:`load`. The module docstring
    describes the training set, the features, the loss and where the estimator can be
    trusted.

    Attributes:
        ts: the observation grid it reads (curves must be on exactly this grid).
        t0: time of the simulated initial state.
        prior: the training :class:`Prior`.
        model: the compartmental model of the simulations (any :class:`~epinn.Model`
            that :func:`simulate_training_set` takes).
        fixed: the model's other (fixed) parameters.
        observe: ``"prevalence"`` or ``"incidence"``.
        noise: the training noise model.
        hidden: hidden layer sizes of the MLP.
        activation: the MLP's hidden activation (a name).
        targets: names of the estimated quantities (log scale), in output order.
        net_params: the MLP's parameters.
        x_scaler, y_scaler: :class:`~epinn.Standardizer` of the features and log-targets.
        feature_range: ``(lo, hi)`` of every feature over the training curves.
        log_range: ``(lo, hi)`` of the log of each estimated model parameter and of
            ``R0`` (:attr:`box`) in training.
        peak_range: ``(first, last)`` index of the peak over the training curves.
        history: the :class:`~epinn.History` of the training run (``None`` if unknown).
        simulator: the simulator of the training set (``"ode"`` or a stochastic one, see
            :func:`simulate_training_set`).
        dt: the step of an approximate stochastic simulator (else ``None``).
        seed_compartment: the compartment of the initially infected (``None``: default).

    Examples:
        Training takes about a minute (mostly compilation), so this is not run here:

        >>> import jax.random as jr, epinn
        >>> est = epinn.train_boarding_school_estimator(jr.PRNGKey(0))  # doctest: +SKIP
        >>> data = epinn.load_boarding_school()
        >>> res = est.estimate(data.t, data.counts, data.population)  # doctest: +SKIP
        >>> res.summary()["R0"]  # doctest: +SKIP
        {'mean': 3.24..., 'lo': 2.86..., 'hi': 3.67...}
    """

    ts: tuple[float, ...]
    t0: float
    prior: Prior
    model: CompartmentalModel
    fixed: dict[str, float]
    observe: str
    noise: str
    hidden: tuple[int, ...]
    activation: str
    targets: tuple[str, ...]
    net_params: Any
    x_scaler: Standardizer
    y_scaler: Standardizer
    feature_range: tuple[Array, Array]
    log_range: tuple[Array, Array]
    peak_range: tuple[int, int]
    history: History | None = None
    simulator: str = "ode"
    dt: float | None = None
    seed_compartment: str | None = None

    # ---- construction ----------------------------------------------------------------

    @functools.cached_property
    def _spec(self) -> _Spec:
        return _resolve(self.model, self.prior, self.fixed, self.seed_compartment,
                        self.observe)[1]

    @property
    def box(self) -> tuple[str, ...]:
        """The estimated model parameters and ``R0``: checked against the prior box."""
        return tuple(k for k in self.targets if k not in ("I0", "reporting"))

    @property
    def network(self) -> MLP:
        """The Flax MLP (outputs ``[means, log-variances]`` of the standardised targets)."""
        return MLP((*self.hidden, 2 * len(self.targets)), activation=self.activation)

    @classmethod
    def train(
        cls,
        key: jax.Array,
        ts: ArrayLike,
        *,
        prior: Prior,
        model: CompartmentalModel | None = None,
        fixed: Mapping[str, float] | None = None,
        t0: float | None = None,
        observe: str = "prevalence",
        noise: str = "negbin",
        simulator: str = "ode",
        dt: float | None = None,
        seed_compartment: str | None = None,
        n_train: int = 20000,
        n_val: int = 2000,
        hidden: Sequence[int] = (128, 128),
        activation: str = "elu",
        epochs: int = 150,
        batch_size: int = 256,
        learning_rate: float = 2e-3,
        patience: int = 30,
        verbose: int = 0,
    ) -> NeuralEstimator:
        r"""Simulate a training set from ``prior`` and train the network on it.

        Adam with a cosine-decaying learning rate, minibatches of ``batch_size``, early
        stopping on the validation NLL (best parameters restored).

        Args:
            key: PRNG key; the same key gives the same estimator.
            ts, prior, model, fixed, t0, observe, noise: as :func:`simulate_training_set`.
            simulator, dt, seed_compartment: as :func:`simulate_training_set`; e.g.
                ``simulator="exact"`` trains on stochastic epidemics (fizzled outbreaks
                included) instead of ODE curves.
            n_train: training curves; ``n_val``: validation curves (early stopping).
            hidden: hidden layer sizes; ``activation``: their activation (a name).
            epochs: maximum epochs; ``batch_size`` (at most ``n_train``),
                ``learning_rate``, ``patience``: as :func:`epinn.fit` /
                :class:`epinn.EarlyStopping`.
            verbose: ``1`` shows a progress bar.

        Returns:
            The trained :class:`NeuralEstimator`.

        Raises:
            ValueError: a bad value of any argument (as :func:`simulate_training_set` and
                :func:`epinn.fit`), checked before anything is simulated or compiled; a
                prior whose simulations are not finite.
            TypeError: an argument of the wrong kind, e.g. a ``key`` that is not one
                ``jax.random`` key or a ``learning_rate`` given as a string.
            NonFiniteLossError: the training loss or the trained parameters became NaN or
                infinite.
        """
        # Every argument is checked here, in plain Python, before the simulation compiles.
        key = _check_key(key)
        model, spec, ts_np, t0, simulator, dt = _check_simulation(
            ts, prior, model, fixed, t0, observe, noise, simulator, dt, seed_compartment)
        fixed = dict(spec.fixed)
        n_train = _check_positive_int(n_train, "n_train")
        n_val = _check_positive_int(n_val, "n_val")
        if n_train + n_val > _MAX_INT:
            raise ValueError(
                f"`n_train` + `n_val` must not exceed {_MAX_INT}; got {n_train + n_val}."
            )
        batch_size = _check_positive_int(batch_size, "batch_size")
        if batch_size > n_train:
            raise ValueError(
                f"`batch_size` ({batch_size}) must not exceed `n_train` ({n_train}): a "
                "minibatch is drawn from the training curves."
            )
        hidden = _check_hidden(hidden)
        activation = _check_activation(activation, allow_callable=False)
        epochs = _check_positive_int(epochs, "epochs")
        learning_rate = _check_positive(learning_rate, "learning_rate")
        patience = _check_int(patience, "patience", 0)
        verbose = _check_verbose(verbose)
        early_stopping = EarlyStopping(monitor="val_loss", patience=patience)
        k_sim, k_init, k_fit = jr.split(key, 3)
        sim = simulate_training_set(
            k_sim, n_train + n_val, ts_np, prior=prior, model=model, fixed=fixed, t0=t0,
            observe=observe, noise=noise, simulator=simulator, dt=dt,
            seed_compartment=seed_compartment,
        )
        _check_finite_simulation(sim, prior)
        box = (*spec.rate_targets(prior), "R0")
        targets = box + tuple(k for k in ("I0", "reporting") if not prior.is_fixed(k))
        x = normalize_curve(sim.curves, sim.params["N"])
        y = sim.log_params(targets)
        x_scaler = Standardizer.fit(x[:n_train])
        y_scaler = Standardizer.fit(y[:n_train])
        xs, ys = x_scaler.transform(x), y_scaler.transform(y)
        net = MLP((*hidden, 2 * len(targets)), activation=activation)
        params = jax.jit(net.init)(k_init, xs[:1])
        steps = epochs * -(-n_train // batch_size)
        schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.02)
        params, history = fit(
            net, params, xs[:n_train], ys[:n_train],
            loss=gaussian_nll, optimizer="adam", learning_rate=schedule, epochs=epochs,
            batch_size=batch_size, validation_data=(xs[n_train:], ys[n_train:]),
            early_stopping=early_stopping, key=k_fit, verbose=verbose,
        )
        _check_finite_params(params, history, "training of the neural estimator")
        # The validation loss of the returned parameters (fit's own checks cover the rest).
        at = (history.params_epoch or len(history.val_loss)) - 1
        if history.val_loss and not math.isfinite(history.val_loss[at]):
            history.stop_reason = "non-finite loss"
            raise NonFiniteLossError(
                f"The training of the neural estimator ended with a non-finite validation "
                f"loss ({history.val_loss[at]}) at epoch {at + 1}; try a smaller "
                "`learning_rate`.",
                epoch=at + 1,
                history=history,
            )
        logs = sim.log_params(box)[:n_train]
        peaks = np.asarray(jnp.argmax(sim.curves[:n_train], axis=-1))
        return cls(
            ts=tuple(float(t) for t in ts_np),
            t0=t0,
            prior=prior,
            model=model,
            fixed=fixed,
            observe=observe,
            noise=noise,
            hidden=hidden,
            activation=activation,
            targets=targets,
            net_params=params,
            x_scaler=x_scaler,
            y_scaler=y_scaler,
            feature_range=(jnp.min(x[:n_train], 0), jnp.max(x[:n_train], 0)),
            log_range=(jnp.min(logs, 0), jnp.max(logs, 0)),
            peak_range=(int(peaks.min()), int(peaks.max())),
            history=history,
            simulator=simulator,
            dt=dt,
            seed_compartment=seed_compartment,
        )

    # ---- prediction ------------------------------------------------------------------

    def _log_posterior(self, curves: Array, population: Array) -> tuple[Array, Array]:
        """Mean and standard deviation of the log-targets, each ``(n, len(targets))``."""
        xs = self.x_scaler.transform(normalize_curve(curves, population))
        out = predict(self.network, self.net_params, xs, batch_size=4096)
        mu_s, logvar_s = jnp.split(out, 2, axis=-1)
        mu = self.y_scaler.inverse_transform(mu_s)
        sd = jnp.exp(0.5 * logvar_s) * self.y_scaler.scale
        return mu, sd

    def _summarise(self, mu: Array, sd: Array, level: float) -> dict[str, dict[str, Array]]:
        z = _z(level)
        out = {}
        for i, name in enumerate(self.targets):
            m, s = np.asarray(mu[:, i]), np.asarray(sd[:, i])
            out[name] = {"mean": np.exp(m), "lo": np.exp(m - z * s), "hi": np.exp(m + z * s),
                         "log_mean": m, "log_sd": s}
        return out

    def predict(
        self,
        curves: ArrayLike,
        population: ArrayLike | None = None,
        *,
        level: float = 0.9,
        check: bool = True,
    ) -> dict[str, dict[str, np.ndarray]]:
        r"""Estimates and ``level`` intervals for each target, for one or many curves.

        Args:
            curves: observed counts on the estimator's grid, ``(T,)`` or ``(n, T)``.
            population: :math:`N`, a number or ``(n,)``; default the prior's ``N`` when
                that is fixed.
            level: interval probability (default 90%).
            check: warn (:class:`OutOfPriorWarning`) for curves outside the training range.

        Returns:
            ``{name: {"mean", "lo", "hi", "log_mean", "log_sd"}}`` for every name in
            ``targets`` (``beta``, ``gamma``, ``R0``, ...); each value has shape ``(n,)``
            (``n = 1`` for a single curve). ``"mean"`` is :math:`\exp` of the posterior
            mean of the log (the log-normal median).

        Raises:
            ValueError: ``curves`` of the wrong length, with NaN/inf or negative counts;
                ``population`` not positive, of the wrong shape or below a curve's peak;
                ``level`` outside ``(0, 1)``.
            TypeError: ``curves``, ``population`` or ``level`` not real numbers, or
                ``check`` not a bool.
        """
        _z(level)
        check = _check_flag(check, "check")
        curves, population = self._check_curves(curves, population, "curves")
        mu, sd = self._log_posterior(curves, population)
        if check:
            self._warn(self._outside(curves, population, mu))
        return self._summarise(mu, sd, level)

    def _check_curves(self, curves, population, name) -> tuple[Array, Array]:
        c = _as_float_array(curves, name)
        T = len(self.ts)
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[-1] != T:
            raise ValueError(
                f"`{name}` must have shape ({T},) or (n, {T}) to match the estimator's "
                f"{T} observation times `ts`; got shape {np.shape(curves)}."
            )
        if not np.all(np.isfinite(c)):
            raise ValueError(f"`{name}` contains NaN or inf.")
        if np.any(c < 0):
            raise ValueError(f"`{name}` contains negative counts.")
        if population is None:
            if not self.prior.is_fixed("N"):
                raise ValueError("`population` is required (the prior's N is not fixed).")
            population = self.prior.N[0]
        pop = _as_float_array(population, "population")
        if pop.ndim > 1 or (pop.ndim == 1 and pop.shape[0] != c.shape[0]):
            raise ValueError(
                f"`population` must be a number or have shape ({c.shape[0]},); got {pop.shape}."
            )
        if not np.all(np.isfinite(pop)) or np.any(pop <= 0):
            raise ValueError(f"`population` must be positive and finite; got {pop}.")
        pop = np.broadcast_to(pop, (c.shape[0],))
        over = np.flatnonzero(c.max(axis=-1) > pop)
        if over.size:
            i = int(over[0])
            raise ValueError(
                f"`population` ({pop[i]:g}) is smaller than the largest observed count "
                f"({c[i].max():g}) of curve {i}."
            )
        dtype = jnp.asarray(1.0).dtype
        return jnp.asarray(c, dtype), jnp.asarray(pop, dtype)

    def _outside(self, curves: Array, population: Array, mu: Array) -> list[list[str]]:
        """For each curve, the reasons it lies outside the training range (maybe none)."""
        x = np.asarray(normalize_curve(curves, population))
        lo, hi = (np.asarray(a) for a in self.feature_range)
        slack = _FEATURE_SLACK * (hi - lo)
        bad_feat = (x < lo - slack) | (x > hi + slack)
        peaks = np.asarray(jnp.argmax(curves, axis=-1))
        pop = np.asarray(population)
        n_lo, n_hi = self.prior.N
        llo, lhi = (np.asarray(a) for a in self.log_range)
        box = self.box
        idx = [self.targets.index(k) for k in box]
        est = np.asarray(mu)[:, idx]
        margin = 0.02 * (lhi - llo)
        reasons: list[list[str]] = []
        T = len(self.ts)
        for i in range(x.shape[0]):
            r = []
            if not (n_lo * (1 - 1e-6) <= pop[i] <= n_hi * (1 + 1e-6)):
                r.append(f"population {pop[i]:g} outside the prior's N {self.prior.N}")
            if bad_feat[i, T]:
                r.append(f"peak fraction {math.exp(x[i, T]):.3g} of N outside the training "
                         f"range [{math.exp(lo[T]):.3g}, {math.exp(hi[T]):.3g}]")
            if bad_feat[i, :T].any():
                j = int(np.argmax(bad_feat[i, :T]))
                r.append(f"curve shape at t={self.ts[j]:g} outside the training curves")
            a, b = self.peak_range
            if not a <= peaks[i] <= b:
                r.append(f"peak at t={self.ts[peaks[i]]:g} outside the training peaks "
                         f"t in [{self.ts[a]:g}, {self.ts[b]:g}]")
            for j, k in enumerate(box):
                if not llo[j] - margin[j] <= est[i, j] <= lhi[j] + margin[j]:
                    r.append(f"estimate {k}={math.exp(est[i, j]):.3g} outside the prior box "
                             f"[{math.exp(llo[j]):.3g}, {math.exp(lhi[j]):.3g}]")
            reasons.append(r)
        return reasons

    @staticmethod
    def _warn(reasons: list[list[str]]) -> None:
        bad = [i for i, r in enumerate(reasons) if r]
        if bad:
            first = "; ".join(reasons[bad[0]])
            warnings.warn(
                f"{len(bad)} of {len(reasons)} curve(s) lie outside the estimator's training "
                f"prior (curve {bad[0]}: {first}); its estimates and intervals there are "
                "extrapolations and cannot be trusted.",
                OutOfPriorWarning,
                stacklevel=3,
            )

    # ---- one outbreak ----------------------------------------------------------------

    def estimate(
        self,
        ts: ArrayLike,
        counts: ArrayLike,
        population: float | None = None,
        *,
        level: float = 0.9,
    ) -> FitResult:
        r"""Estimate the parameters of one observed outbreak.

        Also solves the model once at the estimate (``fitted``, ``trajectory`` and
        ``loss``, the mean squared residual of the fitted curve, for comparison with
        :func:`~epinn.fit_parameters`; nothing is optimised, so ``converged`` is always
        ``True`` and ``loss_history`` empty), and checks the misfit: besides the checks of
        :meth:`predict`, it warns when the Pearson statistic

        .. math:: X^2 = \sum_{i=1}^T \frac{(c_i - f_i)^2}{f_i + \nu_{max}^2 f_i^2 + 1}

        of the data :math:`c` around the fitted curve :math:`f`, with the prior's largest
        noise level :math:`\nu_{max}`, exceeds :math:`4T`. Under the model :math:`X^2` is
        roughly :math:`\chi^2_T` or smaller (mean :math:`\le T`); for the estimator of
        :func:`train_boarding_school_estimator`, 4000 held-out simulations gave at most
        :math:`2.0T` (99th percentile :math:`1.1T`), while curves no SIR outbreak produces
        gave :math:`19T` (flat), :math:`40T` (two peaks) and :math:`4.2T` (a step). A
        misshapen curve can still pass; look at ``fitted`` against the data. The fitted
        curve is the model's ODE at the estimate, also for an estimator trained on
        stochastic simulations (whose small outbreaks scatter around the ODE more than the
        observation noise alone: the check is then a looser guide).

        Args:
            ts: observation times; must equal the estimator's ``ts``.
            counts: observed counts at ``ts``.
            population: :math:`N` (default: the prior's, when fixed).
            level: interval probability (default 90%).

        Returns:
            A :class:`~epinn.FitResult` with ``method="neural_estimator"``, ``params``
            (every model parameter: estimated, fixed by the prior or by ``fixed``; ``N``,
            ``reporting``), ``y0``, ``R0`` (from the :math:`\log R_0` head), ``intervals``
            and ``stderr`` (delta method, :math:`x\,\sigma_{\log x}`) for every target,
            and ``extras`` with the log-scale means and standard deviations, ``beta /
            gamma`` (when the model has both), ``R0_at_estimate`` (the next-generation
            :math:`R_0` at the point estimates, which agrees with the head's ``R0`` up to
            the network's approximation error) and the out-of-prior reasons.

        Raises:
            ValueError: ``ts`` not the estimator's grid, ``counts`` of the wrong length or
                with NaN/negative values, a bad ``population`` or ``level``.
            TypeError: ``ts``, ``counts``, ``population`` or ``level`` not real numbers.
        """
        a = _as_float_array(ts, "ts")
        if a.shape != (len(self.ts),) or not np.allclose(a, self.ts, rtol=1e-6, atol=1e-9):
            raise ValueError(
                f"`ts` must be the estimator's training grid {self.ts} (an amortised "
                f"estimator reads curves on that grid only); got {a.tolist()}."
            )
        _z(level)
        curves, pop = self._check_curves(counts, population, "counts")
        mu, sd = self._log_posterior(curves, pop)
        reasons = self._outside(curves, pop, mu)[0]
        s = self._summarise(mu, sd, level)
        val = {k: float(v["mean"][0]) for k, v in s.items()}
        N = float(pop[0])
        I0 = val.get("I0", self.prior.I0[0])
        reporting = val.get("reporting", self.prior.reporting[0])
        spec = self._spec
        # Estimated, else fixed by the prior (a single value), else given in `fixed`.
        params = {k: val[k] if k in val else self.fixed[k] if k in self.fixed
                  else self.prior.range(k)[0] for k in self.model.rate_names}
        params.update(N=N, reporting=reporting)
        y0 = {c: 0.0 for c in self.model.compartments}
        y0.update({spec.susceptible: N - I0, spec.seed: I0})
        fitted, traj = self._fitted(params, y0)
        r0_at = float(_R0(self.model, {k: params[k] for k in (*self.model.rate_names, "N")}))
        obs = np.asarray(curves[0])
        x2 = self._misfit(obs, fitted)
        if x2 > _MISFIT_FACTOR * obs.size:
            reasons.append(
                f"the fitted curve misses the data (Pearson X^2 = {x2:.3g} > "
                f"{_MISFIT_FACTOR} x {obs.size} points): no simulation in the prior looks "
                "like this curve"
            )
        self._warn([reasons])
        free = tuple(k for k in self.targets if k != "R0")
        ratio = {"beta_over_gamma": val["beta"] / val["gamma"]} if {"beta", "gamma"} <= set(
            val) else {}
        return FitResult(
            params=params,
            y0=y0,
            loss=float(np.mean((fitted - obs) ** 2)),
            loss_history=np.zeros(0),
            converged=True,
            free=free,
            R0=val["R0"],
            stderr={k: val[k] * float(s[k]["log_sd"][0]) for k in self.targets},
            intervals={k: (float(v["lo"][0]), float(v["hi"][0])) for k, v in s.items()},
            ts=np.asarray(self.ts),
            fitted={"I" if self.observe == "prevalence" else "incidence": fitted},
            trajectory=traj,
            method="neural_estimator",
            n_steps=0,
            extras={
                "level": level,
                "log_mean": {k: float(v["log_mean"][0]) for k, v in s.items()},
                "log_sd": {k: float(v["log_sd"][0]) for k, v in s.items()},
                **ratio,
                "R0_at_estimate": r0_at,
                "misfit_X2": x2,
                "out_of_prior": reasons,
            },
        )

    def _misfit(self, obs: np.ndarray, fitted: np.ndarray) -> float:
        r"""Pearson :math:`X^2 = \sum_i (c_i - f_i)^2 / (f_i + \nu_{max}^2 f_i^2 + 1)`."""
        nu = self.prior.noise[1] if self.noise == "negbin" else 0.0
        f = np.maximum(fitted, 0.0)
        return float(np.sum((obs - f) ** 2 / (f + nu**2 * f**2 + 1.0)))

    def _fitted(self, params, y0) -> tuple[np.ndarray, Any]:
        """Model curve at ``ts`` (times reporting) and the trajectory on a fine grid."""
        ts = np.asarray(self.ts)
        grid = np.concatenate([[self.t0], ts]) if self.t0 < ts[0] else ts
        # Ten steps per interval, the grid's own times included exactly (a uniform fine
        # grid merged with an uneven one could hold times that coincide in float32).
        both = np.concatenate(
            [np.linspace(a, b, 10, endpoint=False) for a, b in zip(grid[:-1], grid[1:])]
            + [grid[-1:]])
        rates = {k: params[k] for k in (*self.model.rate_names, "N")}
        traj = solve(self.model, rates, y0, both)
        where = 10 * np.arange(len(grid))
        if self.observe == "prevalence":
            series = np.asarray(traj["I"])[where]
        else:
            series = np.diff(np.asarray(traj.cumulative_infections)[where], prepend=0.0)
        return params["reporting"] * series[-len(ts):], traj

    # ---- held-out evaluation ---------------------------------------------------------

    def evaluate(self, key: jax.Array, n: int = 2000, *, level: float = 0.9,
                 simulator: str | None = None, dt: float | None = None) -> dict[str, Any]:
        r"""Accuracy and interval coverage on ``n`` fresh simulations from the prior.

        The held-out curves come from the estimator's own simulator, or from ``simulator``
        (e.g. ``"exact"``: how an ODE-trained estimator fares on stochastic outbreaks).

        For each target :math:`\theta`: relative errors :math:`|\hat\theta - \theta| /
        \theta` (median and mean) and the coverage, the fraction of the ``level`` intervals
        that contain the true value (close to ``level`` when the uncertainty is
        calibrated).

        Args:
            key: PRNG key for the held-out set (use one not used in training).
            n: number of held-out curves.
            level: interval probability.
            simulator: the held-out simulator (default the estimator's ``simulator``).
            dt: its step for ``"tau_leap"`` / ``"chain_binomial"`` (default the
                estimator's when the simulator is its own, else as
                :func:`simulate_training_set`).

        Returns:
            A dict with ``"n"``, ``"level"``, ``"simulator"``; ``"median_relative_error"``,
            ``"mean_relative_error"`` and ``"coverage"``, each ``{name: float}``;
            ``"truth"``, ``{name: (n,) array}``; and ``"estimates"``, the dict of
            :meth:`predict`.

        Raises:
            ValueError: bad ``n`` or ``level`` (checked before anything is simulated).
            TypeError: a ``key`` that is not one ``jax.random`` key, or ``n`` or ``level``
                of the wrong kind.
        """
        key = _check_key(key)
        n = _check_positive_int(n, "n")
        _z(level)
        if simulator is None:
            simulator, dt = self.simulator, self.dt if dt is None else dt
        sim = simulate_training_set(
            key, n, self.ts, prior=self.prior, model=self.model, fixed=self.fixed,
            t0=self.t0, observe=self.observe, noise=self.noise, simulator=simulator, dt=dt,
            seed_compartment=self.seed_compartment,
        )
        mu, sd = self._log_posterior(sim.curves, sim.params["N"])
        est = self._summarise(mu, sd, level)
        truth = {k: np.asarray(sim.params[k]) for k in self.targets}
        out: dict[str, Any] = {"n": n, "level": level, "simulator": simulator,
                               "median_relative_error": {},
                               "mean_relative_error": {}, "coverage": {}}
        for k in self.targets:
            rel = np.abs(est[k]["mean"] - truth[k]) / truth[k]
            inside = (est[k]["lo"] <= truth[k]) & (truth[k] <= est[k]["hi"])
            out["median_relative_error"][k] = float(np.median(rel))
            out["mean_relative_error"][k] = float(np.mean(rel))
            out["coverage"][k] = float(np.mean(inside))
        out["truth"] = truth
        out["estimates"] = est
        return out

    # ---- persistence -----------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration (everything except the arrays)."""
        return {
            "kind": "epinn.NeuralEstimator",
            "ts": list(self.ts),
            "t0": self.t0,
            "prior": self.prior.to_dict(),
            "model": type(self.model).__name__,
            "model_definition": _definition(self.model),
            "fixed": dict(self.fixed),
            "observe": self.observe,
            "noise": self.noise,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "targets": list(self.targets),
            "peak_range": list(self.peak_range),
            "dtype": str(jnp.asarray(self.x_scaler.mean).dtype),
            "simulator": self.simulator,
            "dt": self.dt,
            "seed_compartment": self.seed_compartment,
        }

    def _arrays(self) -> dict[str, Any]:
        return {
            "net": self.net_params,
            "x_mean": self.x_scaler.mean, "x_scale": self.x_scaler.scale,
            "y_mean": self.y_scaler.mean, "y_scale": self.y_scaler.scale,
            "feature_lo": self.feature_range[0], "feature_hi": self.feature_range[1],
            "log_lo": self.log_range[0], "log_hi": self.log_range[1],
        }

    def save(self, path: str | Path) -> Path:
        """Save with :func:`epinn.save_checkpoint`: arrays as msgpack at ``path``, the
        :meth:`config`, a SHA-256 digest of the arrays and the training history in the JSON
        sidecar ``path + ".json"`` (no pickle).

        Returns:
            The checkpoint path.

        Raises:
            TypeError: ``path`` is not a ``str`` or path-like.
            ValueError: ``path`` is a directory or its folder does not exist.
            OSError: the file cannot be written (the message names ``path``).
        """
        path = _check_path(path)
        if path.is_dir():
            raise ValueError(f"`path` {str(path)!r} is a directory; give a file name in it.")
        arrays = self._arrays()
        config = {**self.config(), "arrays_sha256": _digest(arrays)}
        try:
            return save_checkpoint(path, arrays, history=self.history, config=config)
        except OSError as err:  # e.g. a read-only folder: say which file, not the temp file
            raise type(err)(
                f"Cannot write the estimator to `path` {str(path)!r}: {err.strerror or err}."
            ) from err

    @classmethod
    def load(cls, path: str | Path, *, model: CompartmentalModel | None = None
             ) -> NeuralEstimator:
        """Load an estimator written by :meth:`save`.

        The arrays are checked against the SHA-256 digest in the sidecar (written by
        :meth:`save`), so a damaged file is refused rather than loaded with altered weights.
        A built-in model is restored by name; a model of your own (its rate functions are
        code, not data) must be passed as ``model``, and must match the saved definition
        (name, compartments, parameters and flows).

        Args:
            path: the checkpoint written by :meth:`save`.
            model: the model the estimator was trained on, when it is not a built-in.

        Raises:
            TypeError: ``path`` is not a ``str`` or path-like.
            FileNotFoundError: no checkpoint or sidecar at ``path``.
            ValueError: ``path`` is a directory, the files are not a saved
                :class:`NeuralEstimator`, or they are damaged (unreadable JSON or msgpack,
                missing or malformed settings, arrays that do not match their digest); a
                custom model not passed, or a ``model`` that differs from the saved one.
        """
        path = _check_path(path)
        sidecar = path.with_name(path.name + ".json")
        if path.is_dir():
            raise ValueError(f"`path` {str(path)!r} is a directory, not a saved estimator.")
        if not path.is_file() or not sidecar.is_file():
            raise FileNotFoundError(
                f"`path`: no estimator at {str(path)!r} (needs the file and its .json sidecar)."
            )
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"The sidecar {str(sidecar)!r} of `path` is not readable JSON: "
                             f"{err}") from err
        cfg = (meta.get("config") if isinstance(meta, dict) else None) or {}
        if not isinstance(cfg, dict) or cfg.get("kind") != "epinn.NeuralEstimator":
            raise ValueError(f"`path` {str(path)!r} is not a saved NeuralEstimator.")
        _check_saved_model(cfg, model)
        try:
            settings, template = _settings_from_config(cfg, model)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"The sidecar {str(sidecar)!r} of `path` holds a damaged estimator "
                f"configuration: {type(err).__name__}: {err}"
            ) from err
        try:
            ck = load_checkpoint(path, template)
        except ValueError as err:
            if str(path) in str(err):
                raise
            raise ValueError(f"`path` {str(path)!r} does not hold the arrays its sidecar "
                             f"describes: {err}") from err
        a = ck.params
        digest = cfg.get("arrays_sha256")
        if digest is not None and digest != _digest(a):
            raise ValueError(
                f"`path` {str(path)!r} is damaged: its arrays do not match the SHA-256 digest "
                f"saved in {str(sidecar)!r}."
            )
        return cls(
            **settings,
            net_params=a["net"],
            x_scaler=Standardizer(a["x_mean"], a["x_scale"]),
            y_scaler=Standardizer(a["y_mean"], a["y_scale"]),
            feature_range=(a["feature_lo"], a["feature_hi"]),
            log_range=(a["log_lo"], a["log_hi"]),
            history=ck.history,
        )


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or path-like; got {_show(path)}.")
    return Path(path)


def _digest(arrays: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (in tree order)."""
    h = hashlib.sha256()
    for p, leaf in jax.tree_util.tree_leaves_with_path(arrays):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(p)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _definition(model: CompartmentalModel) -> dict[str, Any]:
    """What identifies a model in a saved estimator (its rate functions are code)."""
    return {
        "name": _model_name(model),
        "compartments": list(model.compartments),
        "params": list(model.rate_names),
        "flows": [[f.source, f.target, f.name, bool(f.infection)] for f in model.flows],
    }


def _builtin_class(name: Any) -> type | None:
    cls = getattr(_compartmental, name, None) if isinstance(name, str) else None
    ok = isinstance(cls, type) and issubclass(cls, CompartmentalModel) and cls is not \
        CompartmentalModel
    return cls if ok else None


def _check_saved_model(cfg: dict[str, Any], model: Any) -> None:
    """A custom model must be passed to :meth:`NeuralEstimator.load` and match the saved
    definition; checked before the rest of the configuration."""
    saved = cfg.get("model_definition")
    if model is None:
        if _builtin_class(cfg.get("model")) is None and isinstance(saved, dict):
            raise ValueError(
                f"The estimator was trained on the model {saved.get('name')!r}, which is not "
                "a built-in: pass it, `NeuralEstimator.load(path, model=your_model)`."
            )
        return
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be an epinn.Model; got {_show(model)}.")
    if isinstance(saved, dict) and _definition(model) != saved:
        raise ValueError(
            f"`model` {_model_name(model)} differs from the model the estimator was trained "
            f"on: saved {saved}, given {_definition(model)}."
        )


def _settings_from_config(cfg: dict[str, Any], model: CompartmentalModel | None = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The non-array fields of a saved estimator and the template of its arrays."""
    if model is None:
        model_cls = _builtin_class(cfg["model"])
        if model_cls is None:
            raise ValueError(f"unknown model {cfg['model']!r}")
        model = model_cls()
    targets = tuple(str(t) for t in cfg["targets"])
    box = tuple(k for k in targets if k not in ("I0", "reporting"))
    observe = _check_choice(cfg["observe"], "observe", _OBSERVE)
    ts_np, t0 = _check_ts(cfg["ts"], cfg["t0"], observe)
    hidden = _check_hidden(cfg["hidden"])
    activation = _check_activation(cfg["activation"], allow_callable=False)
    T, d = ts_np.size, len(targets)
    net = MLP((*hidden, 2 * d), activation=activation)
    dtype = jnp.dtype(cfg.get("dtype", "float32"))
    vec = lambda k: jnp.zeros((k,), dtype)  # noqa: E731
    template = {
        "net": jax.eval_shape(net.init, jr.PRNGKey(0), jnp.zeros((1, T + 1), dtype)),
        "x_mean": vec(T + 1), "x_scale": vec(T + 1), "y_mean": vec(d), "y_scale": vec(d),
        "feature_lo": vec(T + 1), "feature_hi": vec(T + 1),
        "log_lo": vec(len(box)), "log_hi": vec(len(box)),
    }
    template["net"] = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), template["net"]
    )
    prior = Prior.from_dict(cfg["prior"])
    simulator = _check_choice(cfg.get("simulator", "ode"), "simulator", SIMULATORS)
    dt = cfg.get("dt")
    seed = cfg.get("seed_compartment")
    _, spec = _resolve(model, prior, cfg["fixed"], seed, observe)
    if "R0" not in box or any(k != "R0" and k not in model.rate_names for k in box):
        raise ValueError(f"`targets` {targets} do not match the model's parameters")
    settings = dict(
        ts=tuple(float(t) for t in ts_np),
        t0=t0,
        prior=prior,
        model=model,
        fixed=dict(spec.fixed),
        simulator=simulator,
        dt=None if dt is None else _check_positive(dt, "dt"),
        seed_compartment=seed,
        observe=observe,
        noise=_check_choice(cfg["noise"], "noise", _NOISE),
        hidden=hidden,
        activation=activation,
        targets=targets,
        peak_range=tuple(_check_int(i, "peak_range", 0, T - 1) for i in cfg["peak_range"]),
    )
    if len(settings["peak_range"]) != 2:
        raise ValueError(f"`peak_range` must be a pair; got {cfg['peak_range']!r}")
    return settings, template


# --------------------------------------------------------------------------------------
# The boarding-school set-up
# --------------------------------------------------------------------------------------


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
