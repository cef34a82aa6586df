r"""What is observed of an epidemic: observables of a trajectory and noise models.

:func:`observe` maps a :class:`~epinn.compartmental.Trajectory` to an expected observed
series (prevalence, incidence, cumulative cases, deaths) scaled by a reporting fraction
:math:`\rho`. Noise models wrap numpyro distributions around that mean:

* :class:`Gaussian`: :math:`y \sim \mathcal N(\mu, \sigma^2)`, variance :math:`\sigma^2`;
* :class:`Poisson`: :math:`y \sim \operatorname{Poisson}(\mu)`, variance :math:`\mu`;
* :class:`NegativeBinomial`: mean :math:`\mu`, dispersion :math:`\phi` (numpyro
  ``NegativeBinomial2``), variance :math:`\mu + \mu^2/\phi`.

Each has ``log_likelihood(mean, data)`` (a sum, usable as a fitting loss: minimise its
negative), ``sample(key, mean)`` and ``distribution(mean)`` (the numpyro distribution, for
``numpyro.sample(..., obs=data)`` in Bayesian models). :func:`simulate_observations` draws a
synthetic data set from a key.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .compartmental import Trajectory, cumulative_cases, incidence
from ._checks import _check_key

__all__ = [
    "OBSERVABLES",
    "observables",
    "observe",
    "NoiseModel",
    "Gaussian",
    "Poisson",
    "NegativeBinomial",
    "simulate_observations",
]

OBSERVABLES = ("prevalence", "incidence", "cumulative", "deaths", "cumulative_deaths")
"""Names :func:`observe` accepts for every model with the compartments and flows they read
(``"deaths"`` is the SIRD/SEIRD flow of that name: deaths per interval); besides these,
any compartment or flow of the model (:func:`observables`)."""


def _is_tracer(x: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check_broadcast(a: tuple[int, ...], b: tuple[int, ...], message: str) -> None:
    try:
        jnp.broadcast_shapes(a, b)
    except ValueError as err:
        raise ValueError(message) from err


def _check_reporting(reporting: ArrayLike) -> Array:
    if not _is_tracer(reporting) and not np.issubdtype(np.asarray(reporting).dtype, np.number):
        raise TypeError(f"`reporting` must be a number or array; got {reporting!r}.")
    r = jnp.asarray(reporting)
    if not jnp.issubdtype(r.dtype, jnp.number):
        raise TypeError(f"`reporting` must be a number or array; got {reporting!r}.")
    if not _is_tracer(r):
        x = np.asarray(r)
        if not np.all(np.isfinite(x)) or np.any(x <= 0) or np.any(x > 1):
            raise ValueError(f"`reporting` must lie in (0, 1]; got {x}.")
    return r


def observables(traj: Trajectory) -> tuple[str, ...]:
    """The names :func:`observe` accepts for ``traj`` (the vocabulary, for its model).

    ``"prevalence"``, ``"incidence"``, ``"cumulative"``, every compartment, every flow
    whose count is available (counts per interval) and ``"cumulative_<flow>"``.

    Examples:
        >>> from epinn.compartmental import SIRD, solve
        >>> traj = solve(SIRD(), {"beta": 0.5, "gamma": 0.2, "mu": 0.05, "N": 100.0},
        ...              [99.0, 1.0, 0.0, 0.0], jnp.arange(3.0))
        >>> observables(traj)
        ('prevalence', 'incidence', 'cumulative', 'S', 'I', 'R', 'D', 'S->I', 'I->R', 'deaths', \
'cumulative_S->I', 'cumulative_I->R', 'cumulative_deaths')
    """
    flows = [f for f in traj.flows
             if f in traj.counted or any(f == r[0] for r in traj.count_rules)]
    return (*OBSERVABLES[:3], *traj.compartments, *flows, *(f"cumulative_{f}" for f in flows))


def _series(traj: Trajectory, what: str) -> Array:
    """The observed series ``what`` of ``traj`` before reporting (time axis last)."""
    if what == "prevalence":
        name = "I" if "I" in traj.compartments else None
        if name is None:
            raise ValueError(
                f"`what`='prevalence' reads the 'I' compartment; the trajectory has "
                f"{traj.compartments}: name the compartment instead."
            )
        what = name
    if what in ("deaths", "cumulative_deaths") and not traj.flows:
        # a trajectory built by hand, without its model's flows: deaths are the D compartment
        if "D" not in traj.compartments:
            raise ValueError(
                f"`what`={what!r} needs a 'D' compartment or a flow named 'deaths' (SIRD, "
                f"SEIRD); the trajectory has {traj.compartments}."
            )
        D = traj["D"]
        return jnp.diff(D, axis=-1) if what == "deaths" else D - D[..., :1]
    if what == "incidence":
        return incidence(traj)
    if what == "cumulative":
        return cumulative_cases(traj)
    if what in traj.compartments:
        y = traj[what]
        return jnp.sum(y, axis=-2) if traj.groups is not None else y
    if what.startswith("cumulative_") and what[len("cumulative_"):] in traj.flows:
        return traj.flow_count(what[len("cumulative_"):])
    if what in traj.flows:
        return jnp.diff(traj.flow_count(what), axis=-1)
    import difflib  # noqa: PLC0415

    valid = observables(traj)
    close = difflib.get_close_matches(str(what), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown `what` {what!r}; valid names for this model are {valid}.{hint}")


def observe(
    traj: Trajectory, what: str = "prevalence", reporting: ArrayLike = 1.0
) -> Array:
    r"""Expected observed series of a trajectory: one vocabulary for every model.

    ``what`` names the series (each times :math:`\rho`):

    * a compartment, e.g. ``"I"``: its value :math:`y_c(t_i)` (summed over groups),
      length T; ``"prevalence"`` is ``"I"``;
    * ``"incidence"``: new infections (all infection flows) in :math:`(t_{i-1}, t_i]`,
      length T - 1; ``"cumulative"``: infections since :math:`t_0`, length T;
    * a flow's name, e.g. ``"deaths"``: its count in :math:`(t_{i-1}, t_i]`, length T - 1;
    * ``"cumulative_<flow>"``: its count since :math:`t_0`, length T (e.g.
      ``"cumulative_deaths"`` = :math:`D(t_i) - D(t_0)`).

    Counts over an interval cover :math:`(t_{i-1}, t_i]`: a weekly series whose week
    :math:`k` runs from day :math:`7k` to :math:`7(k+1)` is observed with ``ts`` the week
    boundaries :math:`0, 7, 14, \dots`. A flow's count is read off a compartment where the
    model allows it (:meth:`epinn.Model.count_rule`; deaths into ``D``), otherwise it must
    have been integrated (``solve(..., counts=(name,))``). :func:`observables` lists the
    names for a trajectory.

    Args:
        traj: a trajectory (single or ensemble; the time axis is last).
        what: see the table.
        reporting: reporting fraction :math:`\rho \in (0, 1]` (scalar or broadcastable).

    Returns:
        :math:`\rho` times the series.

    Raises:
        ValueError: unknown ``what`` (the valid names are listed, the closest suggested), a
            flow count that was not integrated, or ``reporting`` outside (0, 1].

    Examples:
        >>> from epinn.compartmental import SIR, solve
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1000.0},
        ...              [990.0, 10.0, 0.0], jnp.arange(5.0))
        >>> round(observe(traj, "prevalence", reporting=0.5)[0].item(), 4)
        5.0
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if not isinstance(what, str):
        raise TypeError(f"`what` must be a name such as 'incidence'; got {what!r}.")
    rho = _check_reporting(reporting)
    series = _series(traj, what)
    _check_broadcast(
        rho.shape, series.shape,
        f"`reporting` of shape {rho.shape} does not broadcast with the {what!r} series of "
        f"shape {series.shape} (length T - 1 for counts per interval).",
    )
    return rho * series


# --------------------------------------------------------------------------------------
# Noise models
# --------------------------------------------------------------------------------------


def _check_positive(value: Any, name: str) -> None:
    if _is_tracer(value):
        return
    x = np.asarray(value)
    if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)):
        raise TypeError(f"`{name}` must be a real number or array; got {value!r}.")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"`{name}` must be positive and finite; got {x}.")


def _broadcast(mean: ArrayLike, data: ArrayLike) -> tuple[Array, Array]:
    mean, data = jnp.asarray(mean), jnp.asarray(data)
    _check_broadcast(
        mean.shape, data.shape,
        f"`data` of shape {data.shape} does not broadcast with `mean` of shape {mean.shape}.",
    )
    return mean, data


class NoiseModel(eqx.Module):
    """Base class: an observation distribution around a mean (a pytree of its parameters)."""

    @abc.abstractmethod
    def distribution(self, mean: ArrayLike) -> dist.Distribution:
        """The numpyro distribution of observations with this ``mean``."""

    def _check_data(self, data: Array, where: Array | None) -> None:
        if _is_tracer(data):
            return
        x = np.asarray(data)
        if where is not None and not _is_tracer(where):
            x = x[np.broadcast_to(np.asarray(where), x.shape)]
        if not np.all(np.isfinite(x)):
            raise ValueError("`data` must be finite where it is used (mask missing values).")

    @staticmethod
    def _check_mean(mean: Array, data: Array, where: Array | None) -> None:
        if _is_tracer(mean) or (where is not None and _is_tracer(where)):
            return
        shape = jnp.broadcast_shapes(mean.shape, data.shape)
        m = np.broadcast_to(np.asarray(mean), shape)
        if where is not None:
            m = m[np.broadcast_to(np.asarray(where), shape)]
        if not np.all(np.isfinite(m)):
            raise ValueError("`mean` must be finite where it is used; got NaN or inf.")

    def log_likelihood(
        self, mean: ArrayLike, data: ArrayLike, mask: ArrayLike | None = None
    ) -> Array:
        r"""Summed log-likelihood :math:`\sum_i \log p(y_i \mid \mu_i)`.

        Args:
            mean: expected observations :math:`\mu` (e.g. from :func:`observe`).
            data: observations :math:`y`, broadcastable with ``mean``.
            mask: optional boolean array; entries where it is False (missing data) are
                left out (their data and mean may be NaN).

        Returns:
            a scalar; its negative is a fitting loss.
        """
        mean, data = _broadcast(mean, data)
        where = None if mask is None else jnp.asarray(mask, bool)
        self._check_data(data, where)
        self._check_mean(mean, data, where)
        if where is not None:
            data = jnp.where(where, data, jnp.zeros((), data.dtype))
            # Left-out entries may have any mean (NaN included): numpyro validates them all.
            mean = jnp.where(where, mean, jnp.ones((), mean.dtype))
        lp = self.distribution(mean).log_prob(data)
        if where is not None:
            lp = jnp.where(where, lp, 0.0)
        return jnp.sum(lp)

    def sample(
        self, key: PRNGKeyArray, mean: ArrayLike, sample_shape: tuple[int, ...] = ()
    ) -> Array:
        """Draw observations with the given ``mean`` (shape ``sample_shape + mean.shape``)."""
        return self.distribution(jnp.asarray(mean)).sample(_check_key(key), sample_shape)


class Gaussian(NoiseModel):
    r"""Gaussian noise :math:`y \sim \mathcal N(\mu, \sigma^2)` (numpyro ``Normal``).

    Args:
        sigma: standard deviation :math:`\sigma > 0` (scalar or broadcastable array; a
            differentiable leaf).

    Examples:
        >>> round(float(Gaussian(2.0).log_likelihood(1.0, 1.0)), 4)
        -1.6121
    """

    sigma: Any

    def __check_init__(self):
        _check_positive(self.sigma, "sigma")

    def distribution(self, mean: ArrayLike) -> dist.Distribution:
        return dist.Normal(jnp.asarray(mean), self.sigma)


def _floor(mean: ArrayLike, min_mean: float) -> Array:
    mean = jnp.asarray(mean)
    return jnp.maximum(mean, jnp.asarray(min_mean, jnp.result_type(mean, float)))


def _check_counts(data: Array, where: Array | None) -> None:
    if _is_tracer(data):
        return
    x = np.asarray(data)
    if where is not None and not _is_tracer(where):
        x = x[np.broadcast_to(np.asarray(where), x.shape)]
    if not np.all(np.isfinite(x)) or np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("`data` must be non-negative integer counts where it is used.")


class Poisson(NoiseModel):
    r"""Poisson counts :math:`y \sim \operatorname{Poisson}(\mu)` (numpyro ``Poisson``).

    Means below ``min_mean`` are raised to it (a hand-written guard, so a model predicting
    zero or roundoff-negative incidence gives a finite log-likelihood rather than NaN).

    Args:
        min_mean: floor on the mean (static).

    Examples:
        >>> round(float(Poisson().log_likelihood(jnp.array([2.0, 3.0]), jnp.array([1, 4]))), 4)
        -3.0905
    """

    min_mean: float = eqx.field(static=True, default=1e-8)

    def __check_init__(self):
        _check_positive(self.min_mean, "min_mean")

    def distribution(self, mean: ArrayLike) -> dist.Distribution:
        return dist.Poisson(_floor(mean, self.min_mean))

    def _check_data(self, data, where):
        _check_counts(data, where)


class NegativeBinomial(NoiseModel):
    r"""Negative-binomial counts with mean :math:`\mu` and dispersion :math:`\phi`.

    .. math::

        p(y) = \binom{y + \phi - 1}{y}\Big(\frac{\phi}{\phi + \mu}\Big)^{\phi}
        \Big(\frac{\mu}{\phi + \mu}\Big)^{y}, \qquad
        \operatorname{Var} y = \mu + \mu^2/\phi,

    numpyro's ``NegativeBinomial2(mean, concentration=phi)`` (scipy's ``nbinom`` with
    ``n = phi``, ``p = phi / (phi + mu)``); :math:`\phi \to \infty` is Poisson. Means
    below ``min_mean`` are raised to it, as in :class:`Poisson`.

    Args:
        phi: dispersion :math:`\phi > 0` (a differentiable leaf).
        min_mean: floor on the mean (static).

    Examples:
        >>> nb = NegativeBinomial(10.0)
        >>> round(float(nb.log_likelihood(5.0, 3)), 4)
        -1.9569
    """

    phi: Any
    min_mean: float = eqx.field(static=True, default=1e-8)

    def __check_init__(self):
        _check_positive(self.phi, "phi")
        _check_positive(self.min_mean, "min_mean")

    def distribution(self, mean: ArrayLike) -> dist.Distribution:
        return dist.NegativeBinomial2(_floor(mean, self.min_mean), self.phi)

    def _check_data(self, data, where):
        _check_counts(data, where)


def simulate_observations(
    key: PRNGKeyArray,
    traj: Trajectory,
    what: str = "incidence",
    noise: NoiseModel | None = None,
    reporting: ArrayLike = 1.0,
) -> Array:
    """Synthetic observations: ``noise.sample(key, observe(traj, what, reporting))``.

    Args:
        key: a JAX PRNG key (same key, same data set).
        traj: the trajectory to observe.
        what: one of :data:`OBSERVABLES`.
        noise: a :class:`NoiseModel`; default :class:`Poisson`.
        reporting: reporting fraction in (0, 1].

    Returns:
        noisy observations, shaped like ``observe(traj, what)`` (integer counts for
        Poisson and negative binomial).

    Examples:
        >>> import jax.random as jr
        >>> from epinn.compartmental import SIR, solve
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1000.0},
        ...              [990.0, 10.0, 0.0], jnp.arange(8.0))
        >>> simulate_observations(jr.PRNGKey(0), traj, "incidence").shape
        (7,)
    """
    noise = Poisson() if noise is None else noise
    if not isinstance(noise, NoiseModel):
        raise TypeError(f"`noise` must be a NoiseModel such as Poisson(); got {noise!r}.")
    return noise.sample(key, observe(traj, what, reporting))
