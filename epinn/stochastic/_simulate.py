""":func:`simulate`: one call, every member at once (private module; the function is public)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike

from .._checks import _check_key
from ..compartmental import Model
from ..compartmental._rates import _float_dtype
from ..compartmental._validate import _check_model
from ._exact import _exact_member
from ._inputs import (
    _check_initial_rates,
    _check_options,
    _check_total,
    _merge_members,
    _normalize_params,
    _normalize_ts,
    _normalize_y0,
)
from ._leap import _adaptive_member, _leap_member
from ._system import _system
from ._trajectory import StochasticTrajectory

_EPSILON = 0.03
"""Default ``epsilon`` of adaptive tau-leaping (Cao, Gillespie & Petzold 2006)."""


class _Inputs(NamedTuple):
    """Checked inputs of one simulation, ready for :func:`_run`."""

    model: Model
    method: str
    epsilon: float | None
    max_events: Array
    members: int
    y0: Any  # (C, G) or (M, C, G) counts
    const: dict  # constant parameters (declared shape, optional ensemble axis)
    varying: dict  # parameters that are functions of time
    ts: Any
    dt: Array | None


def _prepare(model, params, y0, ts, key, method, n, dt, epsilon, max_events) -> _Inputs:
    """Every check of :func:`simulate`, in plain Python before anything is compiled."""
    _check_model(model)
    _check_options(method, dt, max_events, n, epsilon)
    _check_key(key)
    const, varying, m_params = _normalize_params(model, params)
    y0a, m_y0 = _normalize_y0(model, y0)
    members = _merge_members(m_params, m_y0, "y0")
    if n is not None and members is not None and n != members:
        raise ValueError(f"`n` = {n} differs from the ensemble axis ({members}) of "
                         f"`params`/`y0`.")
    members = n if n is not None else (members or 1)
    tsa = _normalize_ts(ts)
    _check_total(model, y0a, const["N"])
    _check_initial_rates(model, const, varying, y0a, tsa, members)
    if method == "tau_leap" and dt is None:
        epsilon = _EPSILON if epsilon is None else float(epsilon)
    return _Inputs(model, method, epsilon, jnp.asarray(max_events, jnp.int32), int(members),
                   y0a, const, varying, tsa, None if dt is None else jnp.asarray(dt))


def _run(inp: _Inputs, key: Array) -> tuple[Array, ...]:
    """``(ys, counts, events, capped, steps)`` of every member (traced; see :func:`_simulated`)."""
    model = inp.model
    sys = _system(model)
    shapes = model.param_shapes
    dtype = _float_dtype()
    ts = jnp.asarray(inp.ts).astype(dtype)
    y0 = jnp.asarray(inp.y0).astype(jnp.int32)
    const = {k: jnp.asarray(v, dtype) for k, v in inp.const.items()}
    p_axes = {k: 0 if v.ndim == len(shapes[k]) + 1 else None for k, v in const.items()}
    y_axis = 0 if y0.ndim == 3 else None
    varying, max_events = inp.varying, inp.max_events
    if inp.method == "exact":
        def member(k, y, p):
            return _exact_member(sys, varying, max_events, ts, k, y, p)
    elif inp.dt is None:
        def member(k, y, p):
            return _adaptive_member(sys, varying, inp.epsilon, max_events, ts, k, y, p)
    else:
        step = jnp.asarray(inp.dt, dtype)

        def member(k, y, p):
            return _leap_member(sys, varying, inp.method, step, ts, k, y, p)
    keys = jr.split(key, inp.members)
    ys, counts, events, capped, steps = jax.vmap(member, in_axes=(0, y_axis, p_axes))(
        keys, y0, const)
    if model.groups is None:
        ys, counts = ys[..., 0], counts[..., 0]
    return ys, counts, events, capped, steps


def _trajectory(inp: _Inputs, out: tuple[Array, ...]) -> StochasticTrajectory:
    ys, counts, events, capped, steps = out
    model = inp.model
    return StochasticTrajectory(
        ts=jnp.asarray(inp.ts, _float_dtype()), ys=ys, counts=counts, events=events,
        capped=capped, steps=steps, compartments=model.compartments,
        flow_names=model.flow_names(),
        infection_flows=tuple(f.infection for f in model.flows), infected=model.infected,
        method=inp.method)


@eqx.filter_jit
def _simulated(inp: _Inputs, key: Array) -> StochasticTrajectory:
    return _trajectory(inp, _run(inp, key))


def simulate(
    model: Model,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    key: Array,
    method: str = "exact",
    n: int | None = None,
    dt: float | None = None,
    max_events: int = 1_000_000,
    epsilon: float | None = None,
) -> StochasticTrajectory:
    r"""Simulate an ensemble of stochastic epidemics of a flow-defined model.

    Each flow :math:`f` (in each group) is an event channel with propensity
    :math:`a_f = r_f(t, y)`, its rate at the integer state :math:`y`. Gillespie's direct
    method (``"exact"``) draws the waiting time to the next event
    :math:`\tau \sim \mathrm{Exp}(a_0)`, :math:`a_0 = \sum_f a_f`, and the channel with
    probability :math:`a_f / a_0`. ``"tau_leap"`` and ``"chain_binomial"`` advance in
    steps of at most ``dt`` (see :mod:`epinn.stochastic`). ``"tau_leap"`` with
    ``dt=None`` chooses each step as Cao, Gillespie & Petzold (2006) do:

    .. math::
        \tau = \min_i \left\{\frac{\max(\epsilon x_i/g_i, 1)}{|\mu_i|},
        \frac{\max(\epsilon x_i/g_i, 1)^2}{\sigma_i^2}\right\},\qquad
        \mu_i = \sum_f \nu_{if} a_f,\ \sigma_i^2 = \sum_f \nu_{if}^2 a_f,

    over the compartments :math:`i` that flows leave (:math:`g_i = 2`, the order of
    mass-action infection), so that no rate is expected to change by more than a
    fraction :math:`\epsilon` in a leap; when fewer than 10 events are expected in that
    leap (:math:`a_0 \tau < 10`) it takes up to 100 exact events instead; a leap draws
    its Poisson counts at the rates of the estimated midpoint state
    :math:`y + \tfrac{\tau}{2}\mu` (Gillespie 2001), which removes most of the O(step)
    bias of rates held at the leap's start. Members share the model
    and ``ts``; member ``m`` draws from ``jax.random.split(key, M)[m]``, which seeds the
    xoshiro128** streams (Blackman & Vigna 2018) that the loops draw their uniforms,
    Poisson and binomial variates from: a few integer operations per number where
    threefry per event would dominate the cost of an event. The same key gives the same
    bits.

    Args:
        model: any :class:`~epinn.Model` (``SIR()``, your own, a stratified one).
        params: every rate in ``model.rate_names`` and the population ``N``; each a scalar
            or an array of its declared shape, optionally with a leading ensemble axis
            ``(M, ...)``; a rate may be a function of ``t`` (shared by all members).
        y0: initial counts (non-negative whole numbers): a mapping by compartment or an
            array ``(C,)`` (``(C, G)`` with groups), optionally with a leading ensemble
            axis. Each group's counts sum to its ``N``.
        ts: strictly increasing save times; the simulation runs from ``ts[0]``.
        key: a ``jax.random`` key.
        method: ``"exact"``, ``"tau_leap"`` or ``"chain_binomial"``.
        n: number of members ``M``; default the ensemble axis of ``params``/``y0`` (1 if
            none).
        dt: the step of the approximate methods (each save interval is cut into
            ``ceil(length / dt)`` equal steps); must be ``None`` for ``"exact"``, and is
            required by ``"chain_binomial"``; ``None`` with ``"tau_leap"`` selects the
            adaptive step.
        max_events: per-member cap on the number of events of the exact method and of
            adaptive tau-leaping; a member that reaches it is frozen and flagged in
            ``capped``.
        epsilon: the adaptive step's bound on the relative change of the rates in a leap
            (default 0.03); only with ``method="tau_leap"`` and ``dt=None``.

    Returns:
        :class:`StochasticTrajectory`: ``ys (M, T, C)`` (``(M, T, C, G)`` with groups)
        int32 counts at ``ts``, cumulative flow ``counts``, ``events``, ``capped`` and
        ``steps``.

    Raises:
        ValueError: bad names, shapes or values (non-integer or negative ``y0``, a
            non-positive ``dt``, ``ts`` not increasing, a rate that evaluates negative at
            the initial state), checked before anything is compiled. Under ``jax.jit``
            only shapes are checked; rates that turn negative inside the simulation count
            as zero.
        TypeError: wrong kinds of objects (``model``, ``key``).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from epinn import SIR
        >>> p = {"beta": 2.0, "gamma": 1.0, "N": 100.0}
        >>> sim = simulate(SIR(), p, {"S": 99, "I": 1, "R": 0}, jnp.linspace(0, 30, 7),
        ...                key=jax.random.key(1), method="chain_binomial", dt=0.1, n=4)
        >>> sim.ys.shape, bool((sim.ys >= 0).all()), bool((sim.ys.sum(-1) == 100).all())
        ((4, 7, 3), True, True)
        >>> ad = simulate(SIR(), p, {"S": 99, "I": 1, "R": 0}, jnp.linspace(0, 30, 7),
        ...               key=jax.random.key(1), method="tau_leap", n=4)  # adaptive
        >>> bool((ad.ys.sum(-1) == 100).all()), ad.steps.shape
        (True, (4,))

    References:
        Y. Cao, D. T. Gillespie and L. R. Petzold (2006), Efficient step size selection
        for the tau-leaping simulation method, J. Chem. Phys. 124, 044109.
        D. T. Gillespie (2001), Approximate accelerated stochastic simulation of
        chemically reacting systems, J. Chem. Phys. 115, 1716-1733 (the midpoint leap).
    """
    inp = _prepare(model, params, y0, ts, key, method, n, dt, epsilon, max_events)
    return _simulated(inp, key)
