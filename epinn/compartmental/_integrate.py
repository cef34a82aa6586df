"""The integration core: the scaled vector field, Tsit5 and the stacked solves."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array

from ._options import _Settings
from ._rates import _evaluate_rates
from .model import Model
from .trajectory import Trajectory

# --------------------------------------------------------------------------------------
# Integration core
# --------------------------------------------------------------------------------------


class _Tsit5(diffrax.Tsit5):
    """diffrax's Tsit5 with its seven stages written out as straight-line code.

    Same tableau, embedded error estimate, FSAL state and 5th-order dense interpolation as
    :class:`diffrax.Tsit5` (identical step sequences up to roundoff). diffrax's generic
    Runge-Kutta step runs the stages in an inner loop over a stage buffer, which keeps XLA
    from fusing the stage arithmetic; written out, a step over a stacked ensemble state ran
    ~2.5x faster on CPU. Hand-written for this reason; used when ``solver=None``.
    """

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        first_step, f0 = solver_state
        control = terms.contr(t0, t1)
        f0 = jax.lax.cond(
            first_step | made_jump, lambda: terms.vf(t0, y0, args), lambda: f0
        )
        ks = [terms.prod(f0, control)]
        y = y0
        for a, c in zip(tab.a_lower, tab.c):
            y = y0 + sum(float(aj) * kj for aj, kj in zip(a, ks))
            f = terms.vf(t0 + float(c) * (t1 - t0), y, args)
            ks.append(terms.prod(f, control))
        # Tsit5 is stiffly accurate: the last stage's input is the solution, and its
        # vector field is the next step's first stage (FSAL).
        y_error = sum(float(b) * k for b, k in zip(tab.b_error, ks))
        dense_info = dict(y0=y0, y1=y, k=jnp.stack(ks))
        return y, y_error, dense_info, (jnp.array(False), f), diffrax.RESULTS.successful


def _max_rms_norm(y: Array) -> Array:
    """RMS over compartments of each member, then the max over members (axis 1)."""
    if y.ndim <= 1:
        return optx.rms_norm(y)
    return jnp.max(jax.vmap(optx.rms_norm, in_axes=1)(y))


class _Parts(NamedTuple):
    """How a model is integrated: the solver's inputs, vector field and read-out.

    The compartment ``model._derived`` (if any) is not integrated: it is the conserved
    total minus the others. The infection flow is integrated as an extra state only when S
    does not decrease by infection alone. ``inputs(rates, x0) -> (args, x_init)`` and
    ``outputs(xs, args) -> (fractions, cumulative infections)`` are pure functions, so
    their JVPs give the sensitivities' initial values and read-out.
    """

    inputs: Callable
    field: Callable
    outputs: Callable
    rows: Callable
    from_rows: Callable


def _scale(model: Model, N: Array) -> Array:
    """The population a state is divided by: ``N``, or the sum of the group sizes."""
    return N if model.groups is None else jnp.sum(N, axis=-1)


@functools.lru_cache(maxsize=64)
def _parts(model: Model, counted: tuple[str, ...] = ()) -> _Parts:
    """The integration of ``model``; ``counted`` flows' cumulative counts ride along.

    The extra states after the compartments are the cumulative infections (when they
    cannot be read off a compartment) and then one per counted flow. ``outputs`` then
    returns ``(fractions, cumulative infections, counts (T, k))``.
    """
    if counted:
        return _counting_parts(model, counted)
    extra = not model._infections_from_S
    d = None if model._derived is None else model._index(model._derived)
    G, C = model.n_groups, len(model.compartments)
    homogeneous = model.structure.homogeneous

    def block(x, k):  # compartment k of a flat state (C * G, ...) or ((C - 1) * G, ...)
        return x[k] if G == 1 else x[k * G:(k + 1) * G]

    def totals(x0):  # the population of each group, (...) or (G, ...)
        return jnp.sum(x0, axis=0) if G == 1 else sum(block(x0, k) for k in range(C))

    def full(x, total):  # insert the derived compartment (conservation law)
        if d is None:
            return x
        # summed slice by slice: elementwise, so XLA fuses it (a reduction over the few
        # compartments became a separate library call on CPU)
        rest = total - sum(block(x, k) for k in range(C - 1))
        rest = rest[None] if G == 1 else rest
        return jnp.concatenate([x[: d * G], rest, x[d * G :]], axis=0)

    def inputs(rates, x0):
        args = {**rates, "_total": totals(x0)}
        N = rates.get("N")
        if N is None:  # fractions of a population of one (unstratified callers only)
            args["N"] = jnp.ones((), x0.dtype)
        elif homogeneous:  # the rates scale with (y, N): integrate fractions exactly
            args["N"] = jnp.ones_like(N) if G == 1 else N / _scale(model, N)[..., None]
        else:  # rates are evaluated at counts
            args["_scale"] = _scale(model, N)
        x_init = x0 if d is None else jnp.concatenate([x0[: d * G], x0[(d + 1) * G :]], axis=0)
        if extra:
            x_init = jnp.concatenate([x_init, jnp.zeros_like(x0[:1])], axis=0)
        return args, x_init

    def field(t, x, args):
        r = _evaluate_rates(args, t)
        y = full(x[:-1] if extra else x, args["_total"])
        scale = args.get("_scale")
        if scale is not None:
            y = y * scale
        dy, new = model._derivative(t, y, r)
        if d is not None:
            dy = dy[:d] + dy[d + 1 :]
        if G == 1:
            out = jnp.stack([*dy, new] if extra else dy, axis=0)
        else:
            out = jnp.concatenate([*dy, new[None]] if extra else dy, axis=0)
        return out if scale is None else out / scale

    def source_total(xs, axis):  # the infection source compartment, summed over groups
        s = model._index(model.infections_from)
        sl = jax.lax.slice_in_dim(xs, s * G, (s + 1) * G, axis=axis)
        return jnp.sum(sl, axis=axis) if G > 1 else jnp.squeeze(sl, axis)

    def outputs(xs, args):  # xs: (T, state[, members])
        if extra:
            xs, cum = xs[:, :-1], xs[:, -1]
        xs = jax.vmap(lambda x: full(x, args["_total"]))(xs)
        if not extra:
            src = source_total(xs, 1)
            cum = src[:1] - src
        return xs, cum

    def rows(x, args):  # a stacked state (state, members) -> member rows (members, C[+1])
        y = full(x[:-1] if extra else x, args["_total"])
        return jnp.concatenate([y, x[-1:]] if extra else [y], axis=0).T

    def from_rows(ys):  # (members, T, C[+1]) -> fractions (members, T, C), cumulative
        if extra:
            return ys[..., :-1], ys[..., -1]
        src = source_total(ys, 2)
        return ys, src[:, :1] - src

    return _Parts(inputs, field, outputs, rows, from_rows)


def _counting_parts(model: Model, counted: tuple[str, ...]) -> _Parts:
    """:func:`_parts` with integrated flow counts (single solves; no member rows)."""
    base = _parts(model)
    k = len(counted)
    own = not model._infections_from_S  # base integrates the infections itself

    def inputs(rates, x0):
        args, x_init = base.inputs(rates, x0)
        return args, jnp.concatenate([x_init, jnp.zeros((k, *x0.shape[1:]), x0.dtype)], axis=0)

    def field(t, x, args):
        dx = base.field(t, x[:-k], args)
        r = _evaluate_rates(args, t)
        G = model.n_groups
        y = x[:-k][: x.shape[0] - k - own] if own else x[:-k]
        d = model._derived
        if d is not None:
            total = args["_total"]
            di = model._index(d)
            blocks = [y[i] if G == 1 else y[i * G:(i + 1) * G] for i in range(y.shape[0] // G)]
            rest = total - sum(blocks)
            y = jnp.concatenate([y[: di * G], rest[None] if G == 1 else rest, y[di * G:]])
        scale = args.get("_scale")
        if scale is not None:
            y = y * scale
        _, _, rates = model._derivative(t, y, r, counted)
        extra = jnp.stack(rates)
        return jnp.concatenate([dx, extra if scale is None else extra / scale], axis=0)

    def outputs(xs, args):
        xs_, cum = base.outputs(xs[:, :-k], args)
        counts = xs[:, -k:]
        return xs_, cum, counts - counts[:1]

    return _Parts(inputs, field, outputs, None, None)


def _diffeqsolve(field, x_init, args, ts, cfg, norm, normalise_time=False):
    r"""diffrax.diffeqsolve from ``ts[0]`` to ``ts[-1]``, saving at ``ts``.

    With ``normalise_time`` the ODE is integrated in
    :math:`\tau = (t - t_0) / (t_1 - t_0) \in [0, 1]`, the vector field scaled by
    :math:`t_1 - t_0` (the same ODE; errors are tested on the state, so the same steps up to
    roundoff). The end points are then constants: diffrax derives a clipping threshold
    from ``t1`` by 100 chained ``prevbefore`` calls, which XLA folds for a constant but
    compiles as ~1500 instructions (~0.3 s) for a traced ``t1``, such as the time grid of a
    fit (a leaf, so that fits share one compilation). Used by the fits' sensitivity solve;
    not by default, because in float32 it made ``diffrax.DirectAdjoint`` gradients noisier
    (8e-3 against 4e-4 relative to float64 on a test ensemble; the other adjoints were
    unaffected).
    """
    if not normalise_time:
        t0, t1, dt0, term, save = ts[0], ts[-1], cfg.dt0, diffrax.ODETerm(field), ts
    else:
        start, span = ts[0], ts[-1] - ts[0]

        def scaled(tau, x, a):
            inner, start_, span_ = a
            return span_ * field(start_ + tau * span_, x, inner)

        t0, t1, term, save = 0.0, 1.0, diffrax.ODETerm(scaled), (ts - start) / span
        dt0, args = None if cfg.dt0 is None else cfg.dt0 / span, (args, start, span)
    return diffrax.diffeqsolve(
        term,
        cfg.solver,
        t0,
        t1,
        dt0,
        x_init,
        args,
        saveat=diffrax.SaveAt(ts=save),
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, norm=norm),
        adjoint=cfg.adjoint,
        max_steps=cfg.max_steps,
        throw=cfg.throw,
    )


def _stacked_loop(field, x_init, args, ts, cfg, rows=None):
    """Integrate a stacked ensemble state with diffrax's Tsit5 step and PID controller.

    The same method, controller, end clipping and dense output as
    ``diffrax.diffeqsolve(..., SaveAt(ts=ts))`` with :func:`_max_rms_norm` (the step
    sequences can still differ by a rejected step, so solutions agree to the tolerance),
    in a plain ``lax.while_loop`` owned here: no runtime checks with host callbacks, which
    ``diffeqsolve`` adds (``saveat.ts`` ordering, ``dt0``, ``throw``). ``ts`` is checked
    at the boundary, and failures are returned, not raised. A program with host callbacks
    is run one device at a time by XLA's CPU client, so without them the devices of a mesh
    solve their blocks in parallel. Not reverse-differentiable by itself: see
    :func:`_stacked_solve`. Returns the saved states ``(T, *x_init.shape)`` (``inf``
    where not reached), success and the number of steps (accepted and rejected).

    With ``rows(x, args) -> (members, k)`` each saved state is stored as member rows
    instead, and the saved states are ``(members, T, k)``. An ensemble's output is
    member-major: written row by row at each saved time, it costs about half as much on
    CPU as transposing a chunk's time-major states afterwards, which XLA fuses into an
    element-by-element copy.
    """
    term, solver = diffrax.ODETerm(field), cfg.solver
    ctrl = diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, norm=_max_rms_norm)
    order = solver.order(term)
    t0, t1, T = ts[0], ts[-1], ts.shape[0]
    tn, c_state = ctrl.init(term, t0, t1, x_init, cfg.dt0, args, solver.func, order)
    tn = jnp.minimum(tn, t1)
    s_state = solver.init(term, t0, tn, x_init, args)
    t1_floor = t1 - 100 * jnp.finfo(jnp.result_type(t1)).eps * jnp.abs(t1)
    if rows is None:
        ys, axis = jnp.full((T, *x_init.shape), jnp.inf, x_init.dtype).at[0].set(x_init), 0
    else:
        r0 = rows(x_init, args)
        ys, axis = jnp.full((r0.shape[0], T, r0.shape[1]), jnp.inf, r0.dtype).at[:, 0].set(r0), 1
    keep_as = (lambda x: x) if rows is None else (lambda x: rows(x, args))

    def cond(c):
        t, tn, _, _, _, _, _, n = c
        return (t < t1) & (n < cfg.max_steps) & jnp.isfinite(tn)

    def body(c):
        t, tn, x, s_state, c_state, j, ys, n = c
        y1, err, dense, s_new, _ = solver.step(term, t, tn, x, args, s_state, False)
        keep, nt0, nt1, _, c_state, _ = ctrl.adapt_step_size(
            t, tn, x, y1, args, err, order, c_state
        )
        interp = solver.interpolation_cls(t0=t, t1=tn, **dense)

        def save_cond(sc):  # the saved times in (t, tn] of an accepted step
            j, _ = sc
            return keep & (j < T) & (ts[jnp.minimum(j, T - 1)] <= tn)

        def save(sc):
            j, ys = sc
            x_j = keep_as(interp.evaluate(ts[j]))
            return j + 1, jax.lax.dynamic_update_index_in_dim(ys, x_j, j, axis)

        j, ys = jax.lax.while_loop(save_cond, save, (j, ys))
        x = jnp.where(keep, y1, x)
        s_state = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), s_new, s_state)
        # diffrax's end clipping: a step that would end within ~100 ulp of t1 or beyond it
        # ends at t1 if this one was accepted, halfway there if it was rejected.
        clip = jnp.where(keep, t1, t + 0.5 * (t1 - t))
        return nt0, jnp.where(nt1 > t1_floor, clip, nt1), x, s_state, c_state, j, ys, n + 1

    init = (t0, tn, x_init, s_state, c_state, jnp.int32(1), ys, jnp.int32(0))
    t, _, _, _, _, j, ys, n = jax.lax.while_loop(cond, body, init)
    return ys, (t >= t1) & (j == T), n


def _stacked_solve(field, x_init, args, ts, cfg, rows=None):
    """:func:`_stacked_loop`, reverse-differentiable through diffrax.

    The forward pass is the own loop; a cotangent is pulled back through
    ``diffrax.diffeqsolve`` with ``cfg.adjoint`` (the same solution up to roundoff, laid
    out as the loop's by ``rows``). Forward mode is not available here; the callers use
    diffrax for it.
    """
    dyn, static = eqx.partition(args, eqx.is_array)

    @jax.custom_vjp
    def run(dyn, x_init, ts):
        return _stacked_loop(field, x_init, eqx.combine(dyn, static), ts, cfg, rows)

    def fwd(dyn, x_init, ts):
        return run(dyn, x_init, ts), (dyn, x_init, ts)

    def bwd(res, ct):
        def ys_of(dyn, x_init, ts):
            a = eqx.combine(dyn, static)
            ys = _diffeqsolve(field, x_init, a, ts, cfg, _max_rms_norm).ys
            return ys if rows is None else jnp.swapaxes(jax.vmap(lambda x: rows(x, a))(ys), 0, 1)

        _, pull = jax.vjp(ys_of, *res)
        return pull(ct[0])

    run.defvjp(fwd, bwd)
    return run(dyn, x_init, ts)


def _integrate(
    model: Model,
    rates: Mapping[str, Any],
    x0: Array,
    ts: Array,
    cfg: _Config,
    rows: bool = False,
) -> tuple[Array, Array, Array, Array]:
    """Integrate fractions ``x0`` of shape (C,) or (C, members) at N = 1.

    Returns fractions ``(T, C[, members])``, cumulative infections ``(T[, members])``
    (fractions), success and step count. With ``rows`` a stacked state (C, members) is
    integrated by the own loop (:func:`_stacked_solve`), each saved state written as member
    rows: fractions ``(members, T, C)`` and cumulative infections ``(members, T)``.
    """
    parts = _parts(model)
    args, x_init = parts.inputs(rates, x0)
    if rows:
        ys, ok, steps = _stacked_solve(parts.field, x_init, args, ts, cfg, parts.rows)
        xs, cum = parts.from_rows(ys)
        return xs, cum, ok, steps
    sol = _diffeqsolve(parts.field, x_init, args, ts, cfg, _max_rms_norm)
    ys, ok, steps = sol.ys, diffrax.is_successful(sol.result), sol.stats["num_steps"]
    xs, cum = parts.outputs(ys, args)
    return xs, cum, ok, steps


def _integrate_counts(model, rates, x0, ts, cfg, counted):
    """:func:`_integrate` of one member with the cumulative counts of ``counted`` flows.

    Returns fractions ``(T, C)``, cumulative infections ``(T,)``, counts ``(T, k)``
    (fractions, zero at ``ts[0]``), success and step count.
    """
    parts = _parts(model, counted)
    args, x_init = parts.inputs(rates, x0)
    sol = _diffeqsolve(parts.field, x_init, args, ts, cfg, _max_rms_norm)
    xs, cum, counts = parts.outputs(sol.ys, args)
    return xs, cum, counts, diffrax.is_successful(sol.result), sol.stats["num_steps"]


def _integrate_sensitivities(
    model: Model,
    rates: Mapping[str, Any],
    x0: Array,
    ts: Array,
    cfg: _Config,
    d_rates: Mapping[str, Any],
    d_x0: Array,
):
    r""":func:`_integrate` of one member with its forward sensitivities.

    ``d_rates`` and ``d_x0`` hold ``P`` tangent directions along a leading axis (e.g. the
    derivatives of the rates and of ``x0`` with respect to ``P`` parameters). The
    sensitivities :math:`s_p = \partial x / \partial \theta_p` are integrated alongside
    the state, :math:`\dot s_p = \partial_x f\, s_p + \partial_\theta f\, e_p` (the
    vector field's JVP), on the steps that the state's error test chooses (as CVODES does
    without sensitivity error control): the solution is :func:`_integrate`'s (up to
    roundoff), and the sensitivities are 5th-order accurate on those steps. This is the
    forward-sensitivity method: the program is a single solve of a ``(1 + P)``-times larger
    system, which compiles about as fast as the plain solve, where ``jax.jacfwd`` through
    diffrax (``ForwardMode``) adds a JVP and a ``vmap`` of the whole solver loop.
    Constant rates only. Returns ``(xs, cum, ok, steps)`` and their tangents
    ``(d_xs, d_cum)`` with the directions on a leading axis.
    """
    parts = _parts(model)
    (args, x_init), (d_args, d_init) = jax.vmap(
        lambda dr, dx: jax.jvp(parts.inputs, (rates, x0), (dr, dx)), out_axes=(None, 0)
    )(d_rates, d_x0)

    n = x_init.shape[0]  # the state and its P tangents, flattened into one vector

    def field(t, z, a):
        x, dx = z[:n], z[n:].reshape(-1, n)
        args_, d_args_ = a
        f = lambda x_, a_: parts.field(t, x_, a_)  # noqa: E731
        fx, dfx = jax.vmap(lambda u, v: jax.jvp(f, (x, args_), (u, v)), out_axes=(None, 0))(
            dx, d_args_
        )
        return jnp.concatenate([fx, dfx.reshape(-1)])

    z0 = jnp.concatenate([x_init, d_init.reshape(-1)])
    # The error test covers the state only, so the steps (and the solution) are exactly
    # those of `_integrate`; the sensitivities ride along on them.
    norm = lambda z: optx.rms_norm(z[:n])  # noqa: E731
    sol = _diffeqsolve(field, z0, (args, d_args), ts, cfg, norm, normalise_time=True)
    T = sol.ys.shape[0]
    xs_raw, d_raw = sol.ys[:, :n], sol.ys[:, n:].reshape(T, -1, n)  # (T, state), (T, P, state)
    (xs, cum), (d_xs, d_cum) = jax.vmap(
        lambda u, v: jax.jvp(parts.outputs, (xs_raw, args), (u, v)),
        in_axes=(1, 0), out_axes=(None, 0),
    )(d_raw, d_args)
    return (xs, cum, diffrax.is_successful(sol.result), sol.stats["num_steps"]), (d_xs, d_cum)


@eqx.filter_jit
def _solve_core(model, rates, N, y0, ts, cfg, counted=()) -> Trajectory:
    scale = _scale(model, N)
    rates = {**rates, "N": N}
    if not counted:
        xs, cum, ok, steps = _integrate(model, rates, y0 / scale, ts, cfg)
        return _trajectory(model, ts, xs * scale, cum * scale, ok, steps)
    xs, cum, counts, ok, steps = _integrate_counts(model, rates, y0 / scale, ts, cfg, counted)
    return _trajectory(model, ts, xs * scale, cum * scale, ok, steps,
                       counts=(counted, counts * scale[..., None]))


def _trajectory(model, ts, ys, cum, ok, steps, counts=((), None)) -> Trajectory:
    """A :class:`Trajectory` from flat states ``(..., T, C * G)`` (groups unflattened)."""
    if model.groups is not None:
        ys = ys.reshape(*ys.shape[:-1], len(model.compartments), model.n_groups)
    rules = tuple((f.name, *rule) for f in model.flows
                  if (rule := model.count_rule(f.name)) is not None)
    return Trajectory(ts=ts, ys=ys, cumulative_infections=cum, success=ok, num_steps=steps,
                      compartments=model.compartments, groups=model.groups,
                      infections_from=model.infections_from or "S",
                      flows=model.flow_names(), count_rules=rules, counts=counts)


class _Config(eqx.Module):
    solver: Any
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    adjoint: Any
    throw: bool = eqx.field(static=True)


def _make_config(settings: _Settings | tuple) -> _Config:
    """Check the solver settings and bundle them (cached when they are plain values).

    ``settings`` is a :class:`~epinn.compartmental._options._Settings` or a tuple of its
    seven fields in order: ``solver, rtol, atol, dt0, max_steps, adjoint, throw``.
    """
    s = _Settings(*settings)
    plain = (float, int, bool, type(None))
    if (s.solver is None and type(s.adjoint) in (type(None), diffrax.DirectAdjoint)
            and all(type(v) in plain for v in (s.rtol, s.atol, s.dt0, s.max_steps, s.throw))):
        return _plain_config(s)
    return _build_config(s)


@functools.lru_cache(maxsize=64)
def _plain_config(settings: _Settings) -> _Config:
    """:func:`_build_config` with the default solver: built once per setting (~0.1 ms)."""
    return _build_config(settings)


def _build_config(settings: _Settings) -> _Config:
    solver, rtol, atol, dt0, max_steps, adjoint, throw = settings
    solver = _Tsit5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver such as Tsit5(); got {solver!r}.")
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(f"`adjoint` must be a diffrax adjoint; got {adjoint!r}.")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, jax.core.Tracer) or not np.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"`{name}` must be a positive finite number; got {v!r}.")
    if dt0 is not None and (not np.isfinite(float(dt0)) or float(dt0) <= 0):
        raise ValueError(f"`dt0` must be None or a positive number; got {dt0!r}.")
    if not isinstance(max_steps, (int, np.integer)) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive int; got {max_steps!r}.")
    return _Config(
        solver=solver,
        rtol=float(rtol),
        atol=float(atol),
        dt0=None if dt0 is None else float(dt0),
        max_steps=int(max_steps),
        adjoint=adjoint,
        throw=bool(throw),
    )


def _prevalence(model: Model, xs: Array) -> Array:
    """``I`` (or the infected compartments' sum), over groups, from flat ``(..., T, C * G)``."""
    G = model.n_groups
    names = ("I",) if "I" in model.compartments else model.infected
    cols = [model._index(c) * G + g for c in names for g in range(G)]
    return sum(xs[..., j] for j in cols)


def _peak_of(ts: Array, y: Array) -> tuple[Array, Array]:
    """:func:`peak` of a series ``y`` ``(..., T)`` saved at ``ts``."""
    T = ts.shape[0]
    k = jnp.argmax(y, axis=-1)
    kc = jnp.clip(k, 1, T - 2) if T >= 3 else k
    take = lambda a, i: jnp.take_along_axis(a, i[..., None], axis=-1)[..., 0]  # noqa: E731
    t_grid, y_grid = ts[k], take(y, k)
    if T < 3:
        return t_grid, y_grid
    t0, t1, t2 = ts[kc - 1], ts[kc], ts[kc + 1]
    y0, y1, y2 = take(y, kc - 1), take(y, kc), take(y, kc + 1)
    h0, h2, d0, d2 = t0 - t1, t2 - t1, y0 - y1, y2 - y1
    det = h0 * h2 * (h0 - h2)
    a = (d0 * h2 - d2 * h0) / det
    b = (h0**2 * d2 - h2**2 * d0) / det
    interior = (k == kc) & (a < 0)
    a_safe = jnp.where(interior, a, -1.0)
    dt = jnp.clip(-b / (2 * a_safe), h0, h2)
    t_ref = t1 + dt
    y_ref = y1 + a_safe * dt**2 + b * dt
    return jnp.where(interior, t_ref, t_grid), jnp.where(interior, y_ref, y_grid)


def _solver_reason(error: Exception) -> str:
    """diffrax's own message, without equinox's stack-trace preamble and debugging tips."""
    for ln in str(error).splitlines():
        if ln.startswith("equinox.EquinoxRuntimeError: "):
            return ln.removeprefix("equinox.EquinoxRuntimeError: ").strip()
    return type(error).__name__
