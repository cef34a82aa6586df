"""Quantities derived from a model or a trajectory: R0, R_t, incidence, peaks, growth, final size."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike

from ._integrate import _peak_of
from ._ngm import _growth_rate_member, _infected_index, _leading_eigenvalue, _r0_member, next_generation_matrices
from ._rates import _is_time_varying, _rates_at_times
from ._validate import _batch_size, _check_model, _ensemble_inputs, _is_tracer, _normalize_params
from .model import Model
from .trajectory import Trajectory

__all__ = [
    "R0", "effective_reproduction_number", "incidence", "cumulative_cases", "peak",
    "growth_rate", "doubling_time", "FinalSize", "final_size",
]

# --------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------


def _check_r0_finite(r0: Array) -> Array:
    """A concrete R0 must be finite: the removal rates must not all vanish."""
    if not _is_tracer(r0) and not np.all(np.isfinite(np.asarray(r0))):
        raise ValueError(
            "R0 is not finite: the removal rate, i.e. the rates of leaving the infected "
            "compartments (e.g. `params['gamma']`, plus `params['mu']` where the model has "
            "it), must be positive."
        )
    return r0


def _map_members(model: Model, fn: Callable, r: Mapping[str, Any], *extra):
    """Apply ``fn(r_member, *extra_member)`` over the broadcast batch shape of ``r``.

    Each value of ``r`` is a scalar or has its declared shape after batch axes; each of
    ``extra`` has a trailing axis of its own after the batch axes.
    """
    shapes = model.param_shapes
    batch = jnp.broadcast_shapes(
        *(jnp.shape(v)[: max(jnp.ndim(v) - len(shapes[k]), 0)] if jnp.ndim(v) else ()
          for k, v in r.items()),
        *(jnp.shape(e)[:-1] for e in extra),
    )
    if not batch:
        return fn({k: jnp.broadcast_to(v, shapes[k]) for k, v in r.items()}, *extra)
    flat = {k: jnp.broadcast_to(v, (*batch, *shapes[k])).reshape(-1, *shapes[k])
            for k, v in r.items()}
    ex = [jnp.broadcast_to(e, (*batch, e.shape[-1])).reshape(-1, e.shape[-1]) for e in extra]
    out = jax.vmap(fn)(flat, *ex)
    return jax.tree_util.tree_map(lambda o: o.reshape(*batch, *o.shape[1:]), out)


def _check_hops(hops: Any) -> int:
    if isinstance(hops, bool) or not isinstance(hops, (int, np.integer)) or hops < 1:
        raise ValueError(f"`hops` must be a positive int; got {hops!r}.")
    return int(hops)


def R0(
    model: Model, params: Any, t: ArrayLike | None = None, *, hops: int = 1
) -> Array:
    r"""Basic reproduction number from the next-generation matrix, for any model.

    With :math:`F` (new infections) and :math:`V` (other flows out of the infected
    compartments) the Jacobians at the disease-free state
    (:func:`~epinn.compartmental.next_generation_matrices`, van den Driessche & Watmough 2002),

    .. math:: R_0 = \rho(F V^{-1}),

    the spectral radius of the next-generation matrix :math:`K = F V^{-1}`, whose entry
    :math:`K_{ij}` is the expected number of new infections in compartment :math:`i` caused
    by one individual entering compartment :math:`j`. SIR, SIRS, SEIR: :math:`\beta/\gamma`;
    SIRD, SEIRD and vital dynamics: :math:`\beta/(\gamma + \mu)`; with a contact matrix the
    Perron root over the groups.

    For a model whose transmission takes two hops (host -> vector -> host),
    :math:`\rho(K)` is the number per *generation*, the geometric mean over the two hops;
    much of the vector-borne literature (Ross-Macdonald) reports its square, the
    host-to-host number: ``hops=2`` returns :math:`\rho(K)^2`.

    Args:
        model: any :class:`~epinn.Model`.
        params: as :func:`solve`; constant rates may carry any (broadcastable) batch shape
            before their declared shapes.
        t: time(s) at which to evaluate time-varying rates (required if there are any).
        hops: report :math:`\rho(K)^{\text{hops}}` (1: per generation; 2: host to host).

    Returns:
        :math:`R_0` (the broadcast batch shape of the rates).

    Raises:
        ValueError: bad ``params``, a model without infection flows, or a concrete
            :math:`R_0` that is not finite (a zero removal rate).

    Examples:
        >>> from epinn.compartmental import SIRD
        >>> float(R0(SIRD(), {"beta": 0.6, "gamma": 0.2, "mu": 0.1, "N": 1.0}))
        2.0
    """
    _check_model(model)
    hops = _check_hops(hops)
    if not model.infected:
        raise ValueError(
            f"`model` {model.name} has no infection flow driven by its compartments "
            "(epinn.infection), so it has no reproduction number."
        )
    rates, N = _normalize_params(model, params, max_ndim=None)
    r = {**_rates_at_times(rates, t, "R0"), "N": N}
    r0 = _map_members(model, lambda rm: _r0_member(model, rm), r)
    return _check_r0_finite(r0 if hops == 1 else r0**hops)


def _rt_member(model, r, y):
    r""":math:`\rho(F(y) V^{-1})` with the non-infected compartments of ``y`` (one member)."""
    idx = jnp.asarray(_infected_index(model))
    F, V = next_generation_matrices(model, r, 0.0, state=y.at[idx].set(0.0))
    K = F @ jnp.linalg.inv(V) if F.shape[0] > 1 else F / V
    return _leading_eigenvalue(K)


def effective_reproduction_number(
    model: Model, params: Any, traj: Trajectory
) -> Array:
    r"""Effective reproduction number :math:`R_t` at ``traj.ts``.

    The next-generation number with the susceptibles of the trajectory in place of the
    disease-free state: :math:`R_t = \rho(F(y(t)) V^{-1})`; for SIR-type models
    :math:`R_t = R_0(t)\, S(t) / N`.

    Args:
        model: the model that produced ``traj``.
        params: its parameters (time-varying rates are evaluated at ``traj.ts``; ensemble
            parameters of shape ``(M,)`` pair with the members of ``traj``).
        traj: a trajectory of ``model``.

    Returns:
        :math:`R_t`, shape ``(T,)`` or ``(M, T)``.

    Raises:
        ValueError: ``params['N']`` below the population of ``traj`` (parameters of
            another trajectory), or a non-finite :math:`R_0`.

    Examples:
        >>> from epinn.compartmental import SIR, solve
        >>> p = {"beta": 0.4, "gamma": 0.2, "N": 100.0}
        >>> traj = solve(SIR(), p, jnp.array([50.0, 1.0, 49.0]), jnp.array([0.0, 1.0]))
        >>> round(float(effective_reproduction_number(SIR(), p, traj)[0]), 4)
        1.0
    """
    _check_trajectory(model, traj)
    rates, N = _normalize_params(model, params, max_ndim=1)
    shapes = model.param_shapes
    ys = traj.ys.reshape(*traj.ys.shape[: traj.ys.ndim - 1 - (model.groups is not None)], -1)
    if traj.is_ensemble:  # constant (M,) entries pair with members: (M, 1) x (T,)
        rates = {k: v if _is_time_varying(v) or _batch_size(v, shapes[k]) is None
                 else v.reshape(v.shape[0], 1, *shapes[k]) for k, v in rates.items()}
        N = N if _batch_size(N, shapes["N"]) is None else N.reshape(N.shape[0], 1, *shapes["N"])
    total = jnp.sum(ys[..., 0, :], axis=-1)  # the population at ts[0]
    if not (_is_tracer(total) or _is_tracer(N)):
        n_total = np.asarray(N).sum(-1) if model.groups is not None else np.asarray(N)
        n0 = np.broadcast_to(n_total.reshape(np.shape(total)) if np.ndim(n_total) else
                             n_total, np.shape(total))
        if np.any(np.asarray(total) > n0 * (1 + 1e-3)):  # y0 may sum to less than N
            raise ValueError(
                f"`params['N']` ({np.asarray(N).ravel()}) is smaller than the population of "
                f"`traj`, whose compartments sum to {np.asarray(total)}."
            )
    r = {**_rates_at_times(rates, traj.ts, "effective_reproduction_number"), "N": N}
    rt = _map_members(model, lambda rm, y: _rt_member(model, rm, y), r, ys)
    return _check_r0_finite(rt)


def _check_trajectory(model: Model, traj: Any) -> None:
    _check_model(model)
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if traj.compartments != model.compartments:
        raise ValueError(
            f"`traj` has compartments {traj.compartments}, but the model has "
            f"{model.compartments}."
        )


def incidence(traj: Trajectory, flow: str | None = None) -> Array:
    r"""New infections in each interval :math:`(t_{i}, t_{i+1}]` (or counts of one flow).

    The integral of the model's infection flows over each interval, exact for every
    model: read off the compartment infections leave when nothing else changes it
    (:math:`S(t_i) - S(t_{i+1})` for SIR, SIRD, SEIR, SEIRD), integrated as an extra state
    otherwise (SIRS, vital dynamics, vaccination). The difference carries roundoff of about
    ``eps * N`` (~1e-7 N in float32): use float64 for small counts in a large N.

    Args:
        traj: a trajectory.
        flow: count this flow instead (e.g. ``"deaths"`` of SIRD, or one of several
            infection flows); see :meth:`Trajectory.flow_count`.

    Returns:
        shape ``(T - 1,)`` or ``(members, T - 1)``.

    Examples:
        >>> from epinn.compartmental import SIR, solve
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1.0},
        ...              jnp.array([0.99, 0.01, 0.0]), jnp.arange(4.0))
        >>> incidence(traj).shape
        (3,)
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if flow is not None:
        return jnp.diff(traj.flow_count(flow), axis=-1)
    return jnp.diff(traj.cumulative_infections, axis=-1)


def cumulative_cases(traj: Trajectory) -> Array:
    """Cumulative new infections since ``ts[0]`` (zero at ``ts[0]``; excludes ``y0``).

    Returns:
        shape ``(T,)`` or ``(members, T)``.
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    return traj.cumulative_infections


def peak(traj: Trajectory, compartment: str = "I") -> tuple[Array, Array]:
    r"""Time and size of the maximum of one compartment.

    Takes the grid maximum and refines it with the parabola through it and its two
    neighbours (vertex :math:`t^* = t_1 - b/(2a)`, value :math:`y_1 - b^2/(4a)` of
    :math:`y \approx a (t - t_1)^2 + b (t - t_1) + y_1`); a maximum at either end of ``ts``
    is returned as is. The refinement error is :math:`O(h^3)` in the grid spacing.

    Args:
        traj: a trajectory (single or ensemble).
        compartment: the compartment name.

    Returns:
        ``(t_peak, size)``, each of shape ``()`` or ``(members,)``.

    Examples:
        >>> from epinn.compartmental import SIR, solve
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1.0},
        ...              jnp.array([0.99, 0.01, 0.0]), jnp.linspace(0.0, 60.0, 61))
        >>> t, size = peak(traj)
        >>> 15.0 < float(t) < 30.0
        True
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if compartment not in traj.compartments:
        raise ValueError(
            f"Unknown `compartment` {compartment!r}; valid names are {traj.compartments}."
        )
    y = traj[compartment]
    if traj.groups is not None:
        y = jnp.sum(y, axis=-2)  # the whole population's prevalence
    return _peak_of(traj.ts, y)


def growth_rate(
    model: Model, params: Any, y0: Any, t: ArrayLike = 0.0
) -> Array:
    r"""Early exponential growth rate :math:`r` of the infected compartments.

    The leading eigenvalue of the Jacobian of the infected subsystem linearised at ``y0``
    (susceptibles fixed at :math:`S_0`). SIR: :math:`r = \beta S_0/N - \gamma`; SEIR:
    :math:`r` solves :math:`(r + \sigma)(r + \gamma) = \sigma \beta S_0 / N`.

    Args:
        model: the model.
        params: as :func:`solve_ensemble` (may carry a leading ensemble axis).
        y0: the state at which to linearise (usually the initial state).
        t: time at which time-varying rates are evaluated.

    Returns:
        :math:`r`, shape ``()`` or ``(members,)``.

    Examples:
        >>> from epinn.compartmental import SIR
        >>> r = growth_rate(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1.0}, [1.0, 0.0, 0.0])
        >>> round(float(r), 6)
        0.3
    """
    _check_model(model)
    rates, N, y0a, M = _ensemble_inputs(model, params, y0, whole=False)
    r = _rates_at_times(rates, t, "growth_rate")
    fn = lambda r, n, y: _growth_rate_member(model, {**r, "N": n}, y)  # noqa: E731
    if M is None:
        return fn(r, N, y0a)
    r = {k: jnp.broadcast_to(v, (M,)) for k, v in r.items()}
    return jax.vmap(fn)(r, N, y0a)


def doubling_time(
    model: Model, params: Any, y0: Any, t: ArrayLike = 0.0
) -> Array:
    r"""Doubling time :math:`\ln 2 / r` with :math:`r` from :func:`growth_rate`.

    Negative when the epidemic declines (then it is minus the halving time).

    Examples:
        >>> from epinn.compartmental import SIR
        >>> d = doubling_time(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1.0}, [1.0, 0.0, 0.0])
        >>> round(float(d), 4)
        2.3105
    """
    return math.log(2.0) / growth_rate(model, params, y0, t)


class FinalSize(NamedTuple):
    """Result of :func:`final_size`.

    Attributes:
        susceptible: :math:`S_\\infty`, the susceptibles left after the epidemic.
        infections: :math:`S_0 - S_\\infty`, new infections during the epidemic.
        attack_rate: ``infections / N``.
    """

    susceptible: Array
    infections: Array
    attack_rate: Array


def final_size(model: Model, params: Any, y0: Any) -> FinalSize:
    r"""Final size of an epidemic from the final-size equation (no simulation).

    Where the relation provably holds (:attr:`~epinn.Model.final_size_reason` is
    ``None``: a closed population, infections from one compartment S that nothing else
    changes, an infection rate :math:`S\, w^\top X / N` linear in the infected
    compartments :math:`X`, linear flows out of them), integrating
    :math:`\dot S / S = -w^\top X / N` gives

    .. math:: \ln\frac{S_0}{S_\infty} = \frac{1}{N}\big(a^\top X_0
        + R_0 (S_0 - S_\infty)\big),

    with :math:`a^\top = \mathbf 1^\top F V^{-1}` the expected infections caused by one
    individual in each infected compartment (for SIR, SEIR and their variants
    :math:`a^\top X_0 = R_0 (E_0 + I_0)`). The root below :math:`N/R_0` is found by Newton's
    method on :math:`u = \ln S_\infty` with ``optimistix`` (started from the lower bound,
    where the convex residual makes Newton monotone) and differentiated implicitly.

    Args:
        model: a model for which the relation holds (SIR, SIRD, SEIR, SEIRD, or your own).
        params: as :func:`solve_ensemble` (may carry a leading ensemble axis).
        y0: initial state with :math:`S_0 > 0`.

    Returns:
        :class:`FinalSize` ``(susceptible, infections, attack_rate)``.

    Raises:
        ValueError: a model for which the relation does not hold (the message says why:
            waning immunity, demography, vaccination...), time-varying rates,
            :math:`S_0 = 0` or a zero removal rate (infinite :math:`R_0`).

    Examples:
        >>> from epinn.compartmental import SIR
        >>> fs = final_size(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 1.0}, [1.0 - 1e-6, 1e-6, 0.0])
        >>> round(float(fs.attack_rate), 4)
        0.7968
    """
    _check_model(model)
    if model.final_size_reason is not None:
        raise ValueError(
            f"`model` {model.name} has no final-size relation: {model.final_size_reason}. "
            "Integrate it to a late time with solve() and read cumulative_infections instead."
        )
    rates, N, y0a, _ = _ensemble_inputs(model, params, y0)
    for k, v in rates.items():
        if _is_time_varying(v):
            raise ValueError(f"`params['{k}']` must be constant for final_size.")
    s_idx = model._index(model.infections_from)
    S0 = y0a[..., s_idx]
    if not _is_tracer(S0) and np.any(np.asarray(S0) <= 0):
        raise ValueError(f"`y0['{model.infections_from}']` must be positive for final_size.")
    idx = jnp.asarray(_infected_index(model))

    def member(rm, y):
        F, V = next_generation_matrices(model, rm)
        K = F @ jnp.linalg.inv(V)
        r0 = jnp.trace(K)  # K = e a^T has rank one: its spectral radius is its trace
        return r0, jnp.sum(K, axis=0) @ y[idx]

    r0, a_x0 = _map_members(model, member, {**rates, "N": N}, y0a)
    r0 = _check_r0_finite(r0)
    s_inf = _solve_final_size(S0, a_x0 / r0, r0 / N)
    return FinalSize(susceptible=s_inf, infections=S0 - s_inf, attack_rate=(S0 - s_inf) / N)


def _solve_final_size(S0: Array, J0: Array, c: Array) -> Array:
    S0, J0, c = jnp.broadcast_arrays(S0, J0, c)
    tol = float(np.sqrt(np.finfo(S0.dtype).eps))
    solver = optx.Newton(rtol=tol, atol=tol)

    def residual(u, args):
        S0, A, c = args
        return jnp.log(S0) - u - c * (A - jnp.exp(u))

    def one(S0, J0, c):  # scalar Newton per member (no dense M x M Jacobian)
        A = S0 + J0
        u0 = jnp.log(S0) - c * A
        return jnp.exp(optx.root_find(residual, solver, u0, (S0, A, c)).value)

    flat = jax.vmap(one)(S0.ravel(), J0.ravel(), c.ravel())
    return flat.reshape(S0.shape)
