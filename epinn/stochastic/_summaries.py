"""Summaries of stochastic ensembles with Monte Carlo standard errors (private module; the
functions are public): final sizes, extinction, peaks, per-member summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..compartmental._rates import _float_dtype
from ._trajectory import StochasticTrajectory


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error."""

    value: Array
    se: Array


class FinalSizeDistribution(NamedTuple):
    """Empirical distribution of the final size: ``probability[k]`` of ``sizes[k]``."""

    sizes: Array
    probability: Array
    se: Array


class Peaks(NamedTuple):
    """Per member: the time and size of the largest saved value ``(M,)``."""

    time: Array
    size: Array


class OutbreakSummary(NamedTuple):
    """:func:`outbreak_summary`: extinction probability and major-outbreak means."""

    extinction: Estimate
    final_size: Estimate
    peak_time: Estimate
    peak_size: Estimate
    major: Array


class MemberSummaries(NamedTuple):
    """Per-member summaries of an ensemble, each ``(M,)``: what :func:`final_sizes`,
    :func:`extinction_probability`, :func:`final_size_distribution`, :func:`peaks` (of the
    infected compartments) and :func:`outbreak_summary` need, without the trajectories.

    Returned by :func:`member_summaries` and :func:`simulate_summaries`, and accepted by
    those functions in place of a :class:`StochasticTrajectory`.

    Attributes:
        final_size: new infections by ``ts[-1]`` (int32).
        infected_end: people in the infected compartments at ``ts[-1]`` (int32).
        peak_time: the first saved time at which the infected compartments peak.
        peak_size: their largest saved total (int32).
        events: events per member (int32).
        capped: whether the member stopped at ``max_events``.
        steps: simulation steps per member (int32).
    """

    final_size: Array
    infected_end: Array
    peak_time: Array
    peak_size: Array
    events: Array
    capped: Array
    steps: Array


def _check_sim(sim: Any, *, summaries: bool = True) -> None:
    kinds = (StochasticTrajectory, MemberSummaries) if summaries else StochasticTrajectory
    if not isinstance(sim, kinds):
        also = " or epinn.stochastic.simulate_summaries" if summaries else ""
        raise TypeError(f"`sim` must be the result of epinn.stochastic.simulate{also}; "
                        f"got {type(sim)}.")


def _mean_se(x: Array, mask: Array | None = None) -> Estimate:
    """Mean and its standard error :math:`s/\\sqrt m` (over ``mask``; NaN if empty)."""
    x = jnp.asarray(x, _float_dtype())
    w = jnp.ones_like(x) if mask is None else jnp.asarray(mask).astype(x.dtype)
    m = w.sum()
    mean = (w * x).sum() / m
    var = (w * (x - mean) ** 2).sum() / jnp.maximum(m - 1, 1)
    return Estimate(mean, jnp.sqrt(var / m))


def _proportion_se(p: Array, m: int) -> Array:
    """Standard error :math:`\\sqrt{\\hat p(1-\\hat p)/m}` of a proportion over ``m`` members."""
    return jnp.sqrt(p * (1 - p) / m)


def final_sizes(sim: StochasticTrajectory | MemberSummaries) -> Array:
    r"""Number of new infections in each member by ``ts[-1]``, ``(M,)``.

    The events of the infection flows (all groups), not counting the initially infected.

    Examples:
        >>> import jax
        >>> from epinn import SIR
        >>> from epinn.stochastic import simulate
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 10.0], key=jax.random.key(0), n=3)
        >>> final_sizes(sim).tolist()
        [0, 0, 0]
    """
    _check_sim(sim)
    if isinstance(sim, MemberSummaries):
        return jnp.asarray(sim.final_size)
    idx = [i for i, inf in enumerate(sim.infection_flows) if inf]
    if not idx:
        raise ValueError("The model has no infection flow, so there is no final size.")
    last = sim.counts[:, -1][:, jnp.asarray(idx)]
    return last.reshape(last.shape[0], -1).sum(-1)


def _compartment_totals(sim: StochasticTrajectory, names: Sequence[str]) -> Array:
    """``(M, T)`` people in the compartments ``names`` (all groups)."""
    x = sim.ys[:, :, jnp.asarray([sim.compartments.index(c) for c in names])]
    return x.reshape(*x.shape[:2], -1).sum(-1)


def _infected_end(sim: StochasticTrajectory | MemberSummaries) -> Array:
    if isinstance(sim, MemberSummaries):
        return jnp.asarray(sim.infected_end)
    return _compartment_totals(sim, sim.infected)[:, -1]


def extinction_probability(sim: StochasticTrajectory | MemberSummaries,
                           threshold: float) -> Estimate:
    r"""Probability of a minor outbreak: no one infected at ``ts[-1]`` and fewer than
    ``threshold`` new infections, with its standard error :math:`\sqrt{\hat p(1-\hat p)/M}`.

    In a large population the final sizes split into minor outbreaks (a few cases) and
    major ones (a fraction of ``N``); any ``threshold`` between the two modes gives the
    same answer. With :math:`k` initial infectives the branching-process approximation
    gives :math:`\min(1, 1/R_0)^k` for the SIR model.

    Examples:
        >>> import jax
        >>> from epinn import SIR
        >>> from epinn.stochastic import simulate
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 50.0], key=jax.random.key(0), n=5)
        >>> [float(v) for v in extinction_probability(sim, threshold=3)]
        [1.0, 0.0]
    """
    _check_sim(sim)
    if not np.isscalar(threshold) or not threshold > 0:
        raise ValueError(f"`threshold` must be a positive number; got {threshold!r}.")
    minor = (_infected_end(sim) == 0) & (final_sizes(sim) < threshold)
    p = minor.mean(dtype=_float_dtype())
    return Estimate(p, _proportion_se(p, minor.shape[0]))


def final_size_distribution(sim: StochasticTrajectory | MemberSummaries,
                            length: int | None = None) -> FinalSizeDistribution:
    r"""Empirical distribution of :func:`final_sizes` with standard errors
    :math:`\sqrt{\hat p_k(1-\hat p_k)/M}`.

    Args:
        sim: the ensemble (or its :class:`MemberSummaries`).
        length: number of sizes ``0 .. length - 1`` to report (static; default up to the
            largest observed; give it under ``jax.jit``).

    Examples:
        >>> import jax
        >>> from epinn import SIR
        >>> from epinn.stochastic import simulate
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 10.0], key=jax.random.key(0), n=4)
        >>> final_size_distribution(sim, length=2).probability.tolist()
        [1.0, 0.0]
    """
    x = final_sizes(sim)
    if length is None:
        length = int(np.asarray(x).max()) + 1
    p = jnp.bincount(x, length=length) / x.shape[0]
    return FinalSizeDistribution(jnp.arange(length), p, _proportion_se(p, x.shape[0]))


def peaks(sim: StochasticTrajectory | MemberSummaries,
          compartments: Sequence[str] | str | None = None) -> Peaks:
    """Time and size of each member's peak over the saved times.

    Args:
        sim: the ensemble (or its :class:`MemberSummaries`, which hold the peaks of the
            infected compartments only).
        compartments: the compartment(s) summed (all groups); default the infected ones.

    Returns:
        :class:`Peaks` with ``time`` and ``size``, each ``(M,)`` (the first maximum).
    """
    _check_sim(sim)
    if isinstance(sim, MemberSummaries):
        if compartments is not None:
            raise ValueError("Member summaries hold the peaks of the infected compartments "
                             "only; pass the trajectories (simulate) to choose "
                             "`compartments`.")
        return Peaks(jnp.asarray(sim.peak_time), jnp.asarray(sim.peak_size))
    names = sim.infected if compartments is None else (
        (compartments,) if isinstance(compartments, str) else tuple(compartments))
    unknown = [c for c in names if c not in sim.compartments]
    if unknown or not names:
        raise ValueError(f"`compartments` must name compartments of {sim.compartments}; "
                         f"got {compartments!r}.")
    x = _compartment_totals(sim, names)
    i = jnp.argmax(x, axis=1)
    return Peaks(sim.ts[i], jnp.take_along_axis(x, i[:, None], 1)[:, 0])


def outbreak_summary(sim: StochasticTrajectory | MemberSummaries,
                     threshold: float) -> OutbreakSummary:
    r"""Extinction probability, and the mean final size, peak time and peak size of the
    major outbreaks (``final size >= threshold``), each with its Monte Carlo standard
    error (:math:`s/\sqrt{m}` over the :math:`m` major outbreaks; NaN when there are none).

    ``major`` is the ``(M,)`` mask of major outbreaks.
    """
    ext = extinction_probability(sim, threshold)
    size = final_sizes(sim)
    major = size >= threshold
    pk = peaks(sim)
    return OutbreakSummary(ext, _mean_se(size, major), _mean_se(pk.time, major),
                           _mean_se(pk.size, major), major)


def member_summaries(sim: StochasticTrajectory) -> MemberSummaries:
    """Reduce an ensemble to its :class:`MemberSummaries` (jit-able).

    Examples:
        >>> import jax
        >>> from epinn import SIR
        >>> from epinn.stochastic import simulate
        >>> sim = simulate(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 20.0}, [19, 1, 0],
        ...                [0.0, 5.0, 50.0], key=jax.random.key(0), n=3)
        >>> s = member_summaries(sim)
        >>> bool((s.final_size == final_sizes(sim)).all()), s.peak_time.shape
        (True, (3,))
    """
    _check_sim(sim, summaries=False)
    size = final_sizes(sim)  # raises for a model without infection flows
    pk = peaks(sim)
    return MemberSummaries(size.astype(jnp.int32), _infected_end(sim).astype(jnp.int32),
                           pk.time, pk.size.astype(jnp.int32), sim.events, sim.capped,
                           sim.steps)
