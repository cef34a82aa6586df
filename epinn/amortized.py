r"""Neural (amortised) parameter estimation: an MLP reads epidemic parameters off a curve.

Instead of fitting every new outbreak by optimisation, simulate many outbreaks once, with
parameters drawn from a prior, and train a network to map a curve to its parameters. The
trained :class:`NeuralEstimator` then estimates parameters for any new curve on the same time
grid in one forward pass ("amortised" inference; the course's *fully connected network
estimates parameters*).

**Training set** (:func:`simulate_training_set`). Every member draws, log-uniformly and
independently within the box given by a :class:`Prior`,

* the basic reproduction number :math:`R_0` and the recovery rate :math:`\gamma`; the
  transmission rate follows as :math:`\beta = R_0 / R_0|_{\beta = 1}` (:math:`\beta = R_0
  \gamma` for SIR). Drawing :math:`R_0` rather than :math:`\beta` keeps every simulated
  curve an epidemic (:math:`R_0 > 1` on the whole box);
* the initially infected :math:`I_0` at time ``t0`` (with :math:`S_0 = N - I_0`), the
  population :math:`N`, a reporting fraction :math:`\rho` and a noise level :math:`\nu`.

All members are integrated by :func:`epinn.compartmental.solve_ensemble` (blocks of fixed
size, so any number of members reuses one compilation). The observed counts are drawn
with :mod:`epinn.observation`'s noise models: :math:`y_i \sim \text{NB}(\mu_i,
\text{Var} = \mu_i + \nu^2 \mu_i^2)` (:class:`~epinn.observation.NegativeBinomial` with
dispersion :math:`\phi = 1/\nu^2`, as ``phi`` in :func:`epinn.fit_parameters`; :math:`\nu`
is the coefficient of variation at large counts), Poisson, or noiseless, capped at
:math:`N` (nobody can be counted twice), with mean
:math:`\mu_i = \rho I(t_i)` (prevalence) or :math:`\rho \times` the new infections in
:math:`(t_{i-1}, t_i]` (incidence).

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
mean and log-variance of the standardised :math:`(\log\beta, \log\gamma, \log R_0)` (and of
:math:`\log I_0`, :math:`\log\rho` when their prior range is not a single value), trained
with :func:`epinn.fit` on :func:`epinn.gaussian_nll`. Minimising the expected Gaussian NLL
over the simulated joint distribution makes the mean head the posterior mean
:math:`\mathbb E[\log\theta \mid x]` and the variance head the posterior variance (within
the Gaussian family), so the network's intervals are approximate posterior intervals under
the prior. :math:`\log R_0` has its own head because the posterior of
:math:`(\log\beta, \log\gamma)` is strongly correlated (prevalence data pin down the growth
and decline rates better than either rate), which a diagonal Gaussian cannot express; its
mean agrees with :math:`\mathbb E\log\beta - \mathbb E\log\gamma` up to the network's
approximation error (reported in :meth:`NeuralEstimator.estimate`'s ``extras``).
Point estimates are :math:`\exp(\mathbb E[\log\theta\mid x])` (the median of the log-normal)
and a level-:math:`q` interval is :math:`\exp(\mu \pm z_{(1+q)/2}\,\sigma)`.

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
* an estimate of :math:`\beta`, :math:`\gamma` or :math:`R_0` leaves the prior box;
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
import hashlib
import json
import os
import math
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
from .compartmental import SIR, CompartmentalModel, solve, solve_ensemble
from .compartmental import R0 as _R0
from .data import Standardizer
from ._checks import _check_key
from .estimation import FitResult
from .losses import gaussian_nll
from .models import MLP
from .neural_beta import _check_activation, _check_finite_params, _check_hidden
from ._checks import (
    _MAX_INT,
    _as_float,
    _as_float_array,
    _check_choice,
    _check_flag,
    _check_int,
    _check_positive,
    _check_verbose,
    _show,
)
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
]

_PRIOR_NAMES = ("N", "R0", "gamma", "I0", "reporting", "noise")
_OBSERVE = ("prevalence", "incidence")
_NOISE = ("negbin", "poisson", "none")
#: Parameters whose estimates are checked against the prior box.
_BOX = ("beta", "gamma", "R0")
# Relative slack (of each training range's width) before a feature counts as outside.
_FEATURE_SLACK = 0.05
# estimate() warns when the Pearson misfit exceeds this many times the number of points.
_MISFIT_FACTOR = 4


class OutOfPriorWarning(UserWarning):
    """A curve, population or estimate lies outside what the estimator was trained on."""


# --------------------------------------------------------------------------------------
# Prior
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Prior:
    r"""Independent log-uniform priors, one ``(lo, hi)`` range per quantity.

    A draw is :math:`\theta = \exp(u)`, :math:`u \sim \mathcal U(\log lo, \log hi)`. A
    single number, or a range with ``lo == hi``, fixes the value.

    The box these ranges span is the estimator's domain of trust: see the module
    docstring.

    Attributes:
        N: population size (required; usually fixed, e.g. ``763``).
        R0: basic reproduction number (``lo > 1``: every curve is an epidemic).
        gamma: recovery rate (per time unit of ``ts``).
        I0: initially infected people at ``t0`` (:math:`S_0 = N - I_0`).
        reporting: fraction of the true counts that is observed, in ``(0, 1]``.
        noise: coefficient of variation :math:`\nu` of the negative-binomial noise
            (:math:`\text{Var} = \mu + \nu^2\mu^2`); unused for Poisson or no noise.

    Raises:
        ValueError: a range that is not one or two positive finite numbers with
            ``lo <= hi``, ``R0`` not above 1, ``reporting`` above 1 or ``I0`` not below ``N``.

    Examples:
        >>> p = Prior(N=1000, R0=(2.0, 4.0), I0=1)
        >>> p.R0, p.N, p.is_fixed("N"), p.is_fixed("R0")
        ((2.0, 4.0), (1000.0, 1000.0), True, False)
    """

    N: tuple[float, float]
    R0: tuple[float, float] = (1.5, 8.0)
    gamma: tuple[float, float] = (0.2, 1.0)
    I0: tuple[float, float] = (0.5, 3.0)
    reporting: tuple[float, float] = (0.7, 1.0)
    noise: tuple[float, float] = (0.02, 0.5)

    def __post_init__(self):
        for name in _PRIOR_NAMES:
            value = getattr(self, name)
            try:
                pair = (value, value) if np.ndim(value) == 0 else tuple(value)
                if len(pair) != 2 or any(isinstance(v, (bool, np.bool_, str, bytes))
                                         for v in pair):
                    raise ValueError
                lo, hi = (_as_float(v, name) for v in pair)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Prior `{name}` must be a number or a pair (lo, hi) of numbers; got "
                    f"{_show(value)}."
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise ValueError(
                    f"Prior `{name}` must satisfy 0 < lo <= hi (finite); got {value!r}."
                )
            object.__setattr__(self, name, (lo, hi))
        if self.R0[0] <= 1.0:
            raise ValueError(f"Prior `R0` must lie above 1 (epidemics only); got {self.R0}.")
        if self.reporting[1] > 1.0:
            raise ValueError(f"Prior `reporting` must lie in (0, 1]; got {self.reporting}.")
        if self.I0[1] >= self.N[0]:
            raise ValueError(
                f"Prior `I0` {self.I0} must stay below the population `N` {self.N}."
            )

    def is_fixed(self, name: str) -> bool:
        """Whether the range of ``name`` is a single value."""
        lo, hi = getattr(self, name)
        return lo == hi

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly ``{name: [lo, hi]}``."""
        return {k: list(getattr(self, k)) for k in _PRIOR_NAMES}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> Prior:
        """Inverse of :meth:`to_dict`.

        Raises:
            TypeError: ``d`` is not a mapping.
            ValueError: unknown names, no ``N``, or a bad range (as the constructor).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"`d` must be a mapping {{name: [lo, hi]}}; got {_show(d)}.")
        unknown = [k for k in d if k not in _PRIOR_NAMES]
        if unknown:
            raise ValueError(f"Unknown prior names {unknown}; valid names are {_PRIOR_NAMES}.")
        if "N" not in d:
            raise ValueError("The prior needs `N`, the population size.")
        return cls(**dict(d))

    def sample(self, key: jax.Array, n: int) -> dict[str, Array]:
        """``n`` independent log-uniform draws of every quantity, ``{name: (n,)}``."""
        key = _check_key(key)
        ranges = {k: jnp.asarray(getattr(self, k)) for k in _PRIOR_NAMES}
        return jax.jit(_draw, static_argnums=2)(key, ranges, _check_positive_int(n, "n"))


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
        params: ``{name: (n,)}`` with ``beta``, ``gamma``, ``R0``, ``I0``, ``reporting``,
            ``noise`` and ``N``.
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


def _check_model(model: Any, fixed: Mapping[str, float] | None) -> dict[str, float]:
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be a CompartmentalModel such as SIR(); got {model!r}.")
    if not {"beta", "gamma"} <= set(model.rate_names) or not {"S", "I"} <= set(
        model.compartments
    ):
        raise ValueError(
            f"`model` must have rates beta, gamma and compartments S, I; got "
            f"{type(model).__name__} with {model.rate_names}, {model.compartments}."
        )
    if fixed is not None and not isinstance(fixed, Mapping):
        raise TypeError(f"`fixed` must be a mapping like {{'sigma': 0.5}}; got {_show(fixed)}.")
    fixed = dict(fixed or {})
    others = [k for k in model.rate_names if k not in ("beta", "gamma")]
    missing = [k for k in others if k not in fixed]
    unknown = [k for k in fixed if k not in others]
    if missing or unknown:
        raise ValueError(
            f"`fixed` must give exactly the other rates {others} of {type(model).__name__}; "
            f"missing {missing}, unknown {unknown}."
        )
    out = {}
    for k, v in fixed.items():
        x = _as_float(v, f"fixed[{k!r}]")
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"`fixed[{k!r}]` must be a non-negative number; got {v!r}.")
        out[k] = x
    return out


def _check_positive_int(value: Any, name: str) -> int:
    """An int >= 1 (Python or NumPy); TypeError for other kinds, ValueError out of range."""
    return _check_int(value, name, 1)


def _draw(key, prior_arrays, n):
    """Log-uniform draws from ``{name: (lo, hi)}`` arrays."""
    keys = jr.split(key, len(_PRIOR_NAMES))
    out = {}
    for k, name in zip(keys, _PRIOR_NAMES):
        lo, hi = prior_arrays[name]
        u = jr.uniform(k, (n,), minval=jnp.log(lo), maxval=jnp.log(hi))
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


def _beta_per_R0(model: CompartmentalModel, gamma: Array, fixed: Mapping[str, float]):
    """:math:`\\beta / R_0`: :math:`R_0` is proportional to :math:`\\beta` in every model."""
    one = jnp.ones_like(gamma)
    unit = _R0(model, {"beta": one, "gamma": gamma, **fixed, "N": one})
    return 1.0 / unit


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
) -> SimulatedSet:
    r"""Simulate ``n`` observed epidemic curves with parameters drawn from ``prior``.

    See the module docstring for the generative model. The members are made in blocks of
    ``block_size``: block ``b`` draws its parameters and noise from
    ``jax.random.fold_in(key, b)`` and integrates all its members in one
    :func:`~epinn.compartmental.solve_ensemble` call, inside one jit-compiled function;
    the surplus members of the last block are dropped. So any ``n`` reuses one compilation
    (compiling the solver and the samplers takes 10-20 s on 2 busy CPU cores; simulating
    10 000 members then takes ~0.2 s), and the first ``n`` members do not depend on how
    many more are drawn. The blocks' state shares one step size (the stacked method of
    :func:`~epinn.compartmental.solve_ensemble`, error controlled for every member).

    Args:
        key: PRNG key; the same key gives the same set.
        n: number of curves.
        ts: observation times (strictly increasing).
        prior: the :class:`Prior`.
        model: a model with rates ``beta``, ``gamma`` and compartments ``S``, ``I``;
            default ``SIR()``.
        fixed: values of the model's other rates (e.g. ``{"sigma": 0.5}`` for SEIR).
        t0: time of the initial state; default one grid step before ``ts[0]``.
        observe: ``"prevalence"`` (:math:`\rho I(t_i)`) or ``"incidence"`` (:math:`\rho
            \times` new infections in :math:`(t_{i-1}, t_i]`, with :math:`t_{-1} = t_0`).
        noise: ``"negbin"``, ``"poisson"`` or ``"none"``.
        block_size: members per solver call.
        mesh: devices to spread the blocks over (:mod:`epinn.sharding`): a
            ``jax.sharding.Mesh``, ``None`` (default) for all devices, ``False`` for the
            default device only. With ``d`` devices, blocks ``r d, ..., r d + d - 1`` run
            at once, one per device; the set does not depend on ``d``.

    Returns:
        :class:`SimulatedSet` ``(curves (n, T), params, mean (n, T))``.

    Raises:
        ValueError: bad ``n``, ``ts``, ``t0``, ``observe`` (the closest valid name is
            suggested), ``noise``, ``fixed`` or ``block_size``; every check runs before
            anything compiles.
        TypeError: a ``key`` that is not one ``jax.random`` key, ``prior`` not a
            :class:`Prior`, or an argument of the wrong kind (``n=2.0``, ``ts`` as
            strings, ``mesh`` not a mesh).

    Examples:
        >>> import jax.random as jr, numpy as np
        >>> sim = simulate_training_set(jr.PRNGKey(0), 3, np.arange(1.0, 15.0),
        ...                             prior=Prior(N=763, I0=1))
        >>> sim.curves.shape, sorted(sim.params)
        ((3, 14), ['I0', 'N', 'R0', 'beta', 'gamma', 'noise', 'reporting'])
    """
    key = _check_key(key)
    n = _check_positive_int(n, "n")
    block_size = _check_positive_int(block_size, "block_size")
    model, fixed, ts_np, t0 = _check_simulation(ts, prior, model, fixed, t0, observe, noise)
    mesh = resolve_mesh(mesh)
    grid = jnp.asarray(np.concatenate([[t0], ts_np]) if t0 < ts_np[0] else ts_np)
    ranges = {k: jnp.asarray(getattr(prior, k)) for k in _PRIOR_NAMES}
    sim = _SimulateBlocks(model, tuple(sorted(fixed.items())), observe, noise, block_size,
                          ts_np.size)
    d = 1 if mesh is None else mesh.size
    n_blocks = -(-n // block_size)
    # One round = one block per device: the same compiled call whatever n is.
    rounds = [
        shard_map_batch(sim, jnp.stack([jr.fold_in(key, b) for b in range(r, r + d)]),
                        mesh=mesh, shared=(ranges, grid))
        for r in range(0, n_blocks, d)
    ]
    curves, params, mean = jax.tree_util.tree_map(
        lambda *a: jnp.concatenate(a, axis=0).reshape(-1, *a[0].shape[2:])[:n], *rounds
    )
    return SimulatedSet(curves=curves, params=params, mean=mean)


def _check_simulation(ts, prior, model, fixed, t0, observe, noise):
    """The checks of :func:`simulate_training_set`'s settings, in plain Python; returns
    ``model`` (default ``SIR()``), ``fixed`` as floats, ``ts`` as a NumPy array and ``t0``."""
    if not isinstance(prior, Prior):
        raise TypeError(f"`prior` must be a Prior; got {type(prior).__name__}.")
    model = SIR() if model is None else model
    fixed = _check_model(model, fixed)
    _check_choice(observe, "observe", _OBSERVE)
    _check_choice(noise, "noise", _NOISE)
    ts_np, t0 = _check_ts(ts, t0, observe)
    return model, fixed, ts_np, t0


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
    """Blocks of ``size`` members, one per key: prior draws, ``solve_ensemble``, noise.

    A module with static settings, so one compilation serves every call with them.
    """

    model: CompartmentalModel
    fixed: tuple = eqx.field(static=True)
    observe: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    size: int = eqx.field(static=True)
    T: int = eqx.field(static=True)

    def __call__(self, keys, shared):
        ranges, grid = shared
        return jax.lax.map(
            lambda k: _simulate_block(k, ranges, grid, self.model, self.fixed, self.observe,
                                      self.noise, self.size, self.T), keys)


def _simulate_block(key, ranges, grid, model, fixed, observe, noise, size, T):
    """One block of ``size`` members: prior draws, one ``solve_ensemble``, noise."""
    k_prior, k_noise = jr.split(key)
    fixed = dict(fixed)
    p = _draw(k_prior, ranges, size)
    p["beta"] = p["R0"] * _beta_per_R0(model, p["gamma"], fixed)
    y0 = jnp.zeros((size, len(model.compartments)), grid.dtype)
    y0 = y0.at[:, model.compartments.index("I")].set(p["I0"])
    y0 = y0.at[:, model.compartments.index("S")].set(p["N"] - p["I0"])
    rates = {"beta": p["beta"], "gamma": p["gamma"], **fixed, "N": p["N"]}
    traj = solve_ensemble(model, rates, y0, grid, chunk_size=size, sort_members=False,
                          mesh=False)
    if observe == "prevalence":
        true = traj["I"]
    else:
        true = jnp.diff(traj.cumulative_infections, axis=-1, prepend=0.0)
    mean = p["reporting"][:, None] * true[:, -T:]
    # No more people can be observed than there are: NB draws above N are capped.
    counts = jnp.minimum(_add_noise(k_noise, mean, p["noise"], noise), p["N"][:, None])
    return counts, p, mean


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
    r"""A trained amortised estimator of :math:`(\beta, \gamma, R_0)` from one curve.

    Build one with :meth:`train`; use it with :meth:`predict` (many curves),
    :meth:`estimate` (one outbreak, as a :class:`~epinn.FitResult`) and :meth:`evaluate`
    (held-out simulations); keep it with :meth:`save` / :meth:`load`. The module docstring
    describes the training set, the features, the loss and where the estimator can be
    trusted.

    Attributes:
        ts: the observation grid it reads (curves must be on exactly this grid).
        t0: time of the simulated initial state.
        prior: the training :class:`Prior`.
        model: the compartmental model of the simulations.
        fixed: the model's other (fixed) rates.
        observe: ``"prevalence"`` or ``"incidence"``.
        noise: the training noise model.
        hidden: hidden layer sizes of the MLP.
        activation: the MLP's hidden activation (a name).
        targets: names of the estimated quantities (log scale), in output order.
        net_params: the MLP's parameters.
        x_scaler, y_scaler: :class:`~epinn.Standardizer` of the features and log-targets.
        feature_range: ``(lo, hi)`` of every feature over the training curves.
        log_range: ``(lo, hi)`` of the log of ``beta``, ``gamma``, ``R0`` in training.
        peak_range: ``(first, last)`` index of the peak over the training curves.
        history: the :class:`~epinn.History` of the training run (``None`` if unknown).

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

    # ---- construction ----------------------------------------------------------------

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
        model, fixed, ts_np, t0 = _check_simulation(ts, prior, model, fixed, t0, observe, noise)
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
            observe=observe, noise=noise,
        )
        _check_finite_simulation(sim, prior)
        targets = ("beta", "gamma", "R0") + tuple(
            k for k in ("I0", "reporting") if not prior.is_fixed(k)
        )
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
        logs = sim.log_params(_BOX)[:n_train]
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
        idx = [self.targets.index(k) for k in _BOX]
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
            for j, k in enumerate(_BOX):
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
        misshapen curve can still pass; look at ``fitted`` against the data.

        Args:
            ts: observation times; must equal the estimator's ``ts``.
            counts: observed counts at ``ts``.
            population: :math:`N` (default: the prior's, when fixed).
            level: interval probability (default 90%).

        Returns:
            A :class:`~epinn.FitResult` with ``method="neural_estimator"``, ``params``
            (``beta``, ``gamma``, fixed rates, ``N``, ``reporting``), ``y0``, ``R0`` (from
            the :math:`\log R_0` head), ``intervals`` and ``stderr`` (delta method,
            :math:`x\,\sigma_{\log x}`) for every target, and ``extras`` with the log-scale
            means and standard deviations, ``beta / gamma`` and the out-of-prior reasons.

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
        params = {"beta": val["beta"], "gamma": val["gamma"], **self.fixed, "N": N,
                  "reporting": reporting}
        y0 = {c: 0.0 for c in self.model.compartments}
        y0.update(S=N - I0, I=I0)
        fitted, traj = self._fitted(params, y0)
        obs = np.asarray(curves[0])
        x2 = self._misfit(obs, fitted)
        if x2 > _MISFIT_FACTOR * obs.size:
            reasons.append(
                f"the fitted curve misses the data (Pearson X^2 = {x2:.3g} > "
                f"{_MISFIT_FACTOR} x {obs.size} points): no simulation in the prior looks "
                "like this curve"
            )
        self._warn([reasons])
        free = ("beta", "gamma") + tuple(k for k in ("I0", "reporting") if k in self.targets)
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
                "beta_over_gamma": val["beta"] / val["gamma"],
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
        fine = np.linspace(grid[0], grid[-1], 10 * (len(grid) - 1) + 1)
        both = np.unique(np.concatenate([fine, grid]))
        rates = {k: params[k] for k in (*self.model.rate_names, "N")}
        traj = solve(self.model, rates, y0, both)
        where = np.searchsorted(both, grid)
        if self.observe == "prevalence":
            series = np.asarray(traj["I"])[where]
        else:
            series = np.diff(np.asarray(traj.cumulative_infections)[where], prepend=0.0)
        return params["reporting"] * series[-len(ts):], traj

    # ---- held-out evaluation ---------------------------------------------------------

    def evaluate(self, key: jax.Array, n: int = 2000, *, level: float = 0.9) -> dict[str, Any]:
        r"""Accuracy and interval coverage on ``n`` fresh simulations from the prior.

        For each target :math:`\theta`: relative errors :math:`|\hat\theta - \theta| /
        \theta` (median and mean) and the coverage, the fraction of the ``level`` intervals
        that contain the true value (close to ``level`` when the uncertainty is
        calibrated).

        Args:
            key: PRNG key for the held-out set (use one not used in training).
            n: number of held-out curves.
            level: interval probability.

        Returns:
            A dict with ``"n"``, ``"level"``; ``"median_relative_error"``,
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
        sim = simulate_training_set(
            key, n, self.ts, prior=self.prior, model=self.model, fixed=self.fixed,
            t0=self.t0, observe=self.observe, noise=self.noise,
        )
        mu, sd = self._log_posterior(sim.curves, sim.params["N"])
        est = self._summarise(mu, sd, level)
        truth = {k: np.asarray(sim.params[k]) for k in self.targets}
        out: dict[str, Any] = {"n": n, "level": level, "median_relative_error": {},
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
            "fixed": dict(self.fixed),
            "observe": self.observe,
            "noise": self.noise,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "targets": list(self.targets),
            "peak_range": list(self.peak_range),
            "dtype": str(jnp.asarray(self.x_scaler.mean).dtype),
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
    def load(cls, path: str | Path) -> NeuralEstimator:
        """Load an estimator written by :meth:`save`.

        The arrays are checked against the SHA-256 digest in the sidecar (written by
        :meth:`save`), so a damaged file is refused rather than loaded with altered weights.

        Raises:
            TypeError: ``path`` is not a ``str`` or path-like.
            FileNotFoundError: no checkpoint or sidecar at ``path``.
            ValueError: ``path`` is a directory, the files are not a saved
                :class:`NeuralEstimator`, or they are damaged (unreadable JSON or msgpack,
                missing or malformed settings, arrays that do not match their digest).
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
        try:
            settings, template = _settings_from_config(cfg)
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


def _settings_from_config(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The non-array fields of a saved estimator and the template of its arrays."""
    model_cls = getattr(_compartmental, cfg["model"], None)
    if not (isinstance(model_cls, type) and issubclass(model_cls, CompartmentalModel)):
        raise ValueError(f"unknown model {cfg['model']!r}")
    targets = tuple(str(t) for t in cfg["targets"])
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
        "log_lo": vec(len(_BOX)), "log_hi": vec(len(_BOX)),
    }
    template["net"] = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), template["net"]
    )
    model = model_cls()
    settings = dict(
        ts=tuple(float(t) for t in ts_np),
        t0=t0,
        prior=Prior.from_dict(cfg["prior"]),
        model=model,
        fixed=_check_model(model, cfg["fixed"]),
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
    key: jax.Array, *, quick: bool = False, verbose: int = 0
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

    Returns:
        The trained :class:`NeuralEstimator`; apply it with
        ``est.estimate(data.t, data.counts, data.population)``.
    """
    key = _check_key(key)
    quick = _check_flag(quick, "quick")
    size = dict(n_train=2000, n_val=200, hidden=(32, 32), epochs=20) if quick else {}
    return NeuralEstimator.train(
        key, np.arange(1.0, 15.0), prior=BOARDING_SCHOOL_PRIOR, t0=0.0,
        observe="prevalence", noise="negbin", verbose=verbose, **size,
    )
