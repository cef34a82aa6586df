"""Integrate ensembles of members at once, in chunks, on one device or a mesh."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._integrate import _Config, _integrate, _make_config, _peak_of, _prevalence, _scale, _solver_reason, _trajectory
from ._ngm import _growth_rate_member
from ._options import _resolve_options, _Settings
from ._rates import _evaluate_rate, _float_dtype
from ._validate import _batch_size, _check_flow_rates, _check_model, _check_rate_functions, _ensemble_inputs, _is_tracer, _normalize_ts, _split
from .model import Model
from .options import SolverOptions
from .trajectory import Trajectory
from ..sharding import batch_sharding, loop_kernel_bytes, map_blocks, replicated, resolve_mesh

__all__ = ["solve_ensemble", "EnsembleSummary", "ensemble_summary"]

# --------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------


def _grouping_order(key: Array) -> Array:
    """A permutation that sorts ``key`` up to quantisation (to group similar members).

    The key is quantised to the high bits of an int32 whose low ``b`` bits hold the
    member's index (``2^b >= M``), and the packed integers are sorted as one operand;
    ties within a quantisation level keep index order. On CPU, XLA sorted 10 000 such
    integers in ~0.4 ms against ~2.4 ms for ``jnp.argsort`` of the float keys (a
    comparator over two operands). Above ``2^24`` members (fewer than 128 levels left)
    it falls back to ``jnp.argsort``.
    """
    M = key.shape[0]
    b = max(1, (M - 1).bit_length())
    if b > 24:
        return jnp.argsort(key)
    key = jnp.nan_to_num(key.astype(jnp.float32))
    lo, hi = jnp.min(key), jnp.max(key)
    levels = 2 ** (31 - b) - 1
    scaled = jnp.where(hi > lo, (key - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    # Clipped as integers: float32 rounding can lift the top level to 2^(31-b).
    q = jnp.clip(jnp.floor(scaled * levels).astype(jnp.int32), 0, levels)
    packed = jax.lax.shift_left(q, jnp.int32(b)) | jnp.arange(M, dtype=jnp.int32)
    return jax.lax.sort(packed) & jnp.int32((1 << b) - 1)


def _chunk_solve(model, method, varying, cfg, ts, own_loop=False, keep_cum=True):
    """A function solving one chunk: ``(xs, cum, ok, steps)`` in member rows.

    Without ``keep_cum`` the cumulative infections are left out (``None``): the caller
    derives them from S when they are read (see :class:`Trajectory`).
    """
    def single(const, N, y0):
        return _integrate(model, {**const, **varying, "N": N}, y0 / _scale(model, N), ts, cfg)

    def run(chunk):
        const, N, y0 = chunk
        m = N.shape[0]
        if method == "vmap":
            xs, cum, ok, steps = jax.vmap(single)(const, N, y0)
        elif own_loop:  # stacked state (C, members), saved as member rows
            rates = {**const, **varying}
            xs, cum, ok, steps = _integrate(
                model, {**rates, "N": N}, y0.T / _scale(model, N), ts, cfg, rows=True)
        else:
            xs, cum, ok, steps = single(const, N, y0.T)  # state (C, members)
            T, C = xs.shape[:2]  # (T, C, m) -> (m, T, C) as a 2-D transpose: faster on CPU
            xs, cum = xs.reshape(T * C, m).T.reshape(m, T, C), cum.T
        scale = _scale(model, N)
        cum = cum * scale[:, None] if keep_cum else None
        return (xs * scale[:, None, None], cum, jnp.broadcast_to(ok, (m,)),
                jnp.broadcast_to(steps, (m,)))

    return run


def _chunk_layout(members: int, chunk_size: int) -> tuple[int, int]:
    """The number of chunks and their width: equal chunks of at most ``chunk_size + 8``.

    Padding (copies of the last member) fills the last chunk. A width of 256 or more that
    is a multiple of 16 members is widened by 8: each chunk's ``(T * C, width)`` results
    are transposed to member rows, and XLA's CPU transpose slows down when the row stride
    (``4 * width`` bytes in float32) shares a large power of two with the 4 KiB cache-set
    period. On the development machine a ``(483, 1024)`` chunk took ~3x as long to
    transpose as a ``(483, 1032)`` or ``(483, 1000)`` one, and 8192 SIR members in chunks
    of 1024 took 1.6x as long per member as 8200 in chunks of 820.
    """
    n_chunks = -(-members // chunk_size)
    width = -(-members // n_chunks)
    if width >= 256 and width % 16 == 0:
        width += 8
    return n_chunks, width


class _Ensemble(eqx.Module):
    """Sort, chunk and solve an ensemble: one contiguous block of members per device.

    Each device orders its block by early growth rate, cuts it into chunks and solves
    them one after the other, writing each chunk's members straight to their rows: no
    data moves between devices, and the devices run in parallel. The chunks depend on
    the number of devices, so results on different meshes agree within the solver
    tolerance, not bit for bit. A module rather than a closure, so that equal settings
    hash equal and share one compilation.
    """

    model: Model
    chunk_size: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    sort: bool = eqx.field(static=True)
    summary: bool = eqx.field(static=True, default=False)
    own_loop: bool = eqx.field(static=True, default=False)

    def order(self, const, varying, N, y0, ts):
        """Members sorted by early growth rate (similar members share a chunk)."""
        model, M = self.model, N.shape[0]
        r_t0 = {**const, **{k: _evaluate_rate(v, ts[0]) for k, v in varying.items()}}
        shapes = model.param_shapes
        r_t0 = {k: jnp.broadcast_to(v, (M, *shapes[k])) for k, v in r_t0.items()}
        growth = jax.vmap(lambda r, n, y: _growth_rate_member(model, {**r, "N": n}, y))(
            r_t0, N, y0
        )
        return _grouping_order(jax.lax.stop_gradient(growth))

    def run_chunks(self, const, N, y0, valid, shared):
        """Solve a stack of chunks ``(k, chunk, ...)`` one after the other (``lax.map``).

        With ``summary``, each chunk's trajectories are reduced before the next chunk
        runs, so memory does not grow with the number of chunks.
        """
        varying, ts, cfg = shared
        solve_chunk = _chunk_solve(self.model, self.method, varying, cfg, ts, self.own_loop)

        def run(chunk):
            *inputs, w = chunk
            out = solve_chunk(tuple(inputs))
            return _summarise_chunk(self.model, ts, out, w) if self.summary else out

        chunks = (const, N, y0, valid)
        if N.shape[0] == 1:
            return jax.tree_util.tree_map(lambda a: a[None], run(jax.tree_util.tree_map(
                lambda a: a[0], chunks)))
        return jax.lax.map(run, chunks)

    def solve_in_rows(self, const, N, y0, where, M, shared):
        """Solve a stack of chunks into consecutive rows; then put the members in order.

        Chunk ``i`` fills rows ``i * chunk`` to ``(i + 1) * chunk`` of one 2-D buffer (a
        ``dynamic_update_slice`` per chunk). ``where`` ``(M,)`` holds each member's row in
        that buffer (``None``: the members are in order already), and one row gather
        undoes the sort. On CPU this was faster than scattering each chunk's (then
        transposed) rows straight to their places in the output: 10 000 SIR members took
        18.1 ms instead of 23.2 ms on one device and 11.4 ms instead of 13.7 ms on two.
        The price is a second buffer the size of the output while the gather runs.
        """
        varying, ts, cfg = shared
        solve_chunk = _chunk_solve(self.model, self.method, varying, cfg, ts, self.own_loop,
                                   keep_cum=not self.model._infections_from_S)
        k, w = N.shape[:2]

        def chunk(i):
            return solve_chunk(jax.tree_util.tree_map(lambda a: a[i], (const, N, y0)))

        def rows(r):  # (w, ...) -> (w, -1): XLA's CPU copies are faster on rank-2 buffers
            return r.reshape(w, -1)

        if k == 1:
            acc = jax.tree_util.tree_map(rows, chunk(0))
        else:
            acc = jax.tree_util.tree_map(
                lambda o: jnp.zeros((k * w, math.prod(o.shape[1:])), o.dtype),
                jax.eval_shape(chunk, 0),
            )
            acc = jax.lax.fori_loop(0, k, lambda i, acc: jax.tree_util.tree_map(
                lambda o, r: jax.lax.dynamic_update_slice(o, rows(r), (i * w, 0)),
                acc, chunk(i),
            ), acc)

        def place(a, o):
            a = a[:M] if where is None else jnp.take(
                a, where, axis=0, unique_indices=True, mode="clip"
            )
            return a.reshape(M, *o.shape[1:])

        return jax.tree_util.tree_map(place, acc, jax.eval_shape(chunk, 0))

    def block(self, const, N, y0, valid, shared):
        """Sort, chunk and solve one block of members; results in the block's order.

        ``valid`` marks the members that are not padding (zero weight in summaries).
        """
        varying, ts, _ = shared
        M = N.shape[0]
        n_chunks, chunk = _chunk_layout(M, self.chunk_size)
        order = self.order(const, varying, N, y0, ts) if self.sort and n_chunks > 1 else None
        pad = n_chunks * chunk - M

        def to_chunks(a):
            a = a if order is None else a[order]
            if pad:  # repeat the last member; its copies are dropped afterwards
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
            return a.reshape(n_chunks, chunk, *a.shape[1:])

        const, N, y0 = jax.tree_util.tree_map(to_chunks, (const, N, y0))
        if order is not None:  # the inverse permutation by a scatter, not a second sort
            inverse = jnp.zeros_like(order).at[order].set(
                jnp.arange(M, dtype=order.dtype), unique_indices=True
            )
        if not self.summary:
            where = None if order is None else inverse
            return self.solve_in_rows(const, N, y0, where, M, shared)
        valid = to_chunks(valid) & (jnp.arange(n_chunks * chunk) < M).reshape(n_chunks, chunk)
        per_member, per_chunk = self.run_chunks(const, N, y0, valid, shared)

        def from_chunks(a):
            a = a.reshape(n_chunks * chunk, *a.shape[2:])[:M]
            return a if order is None else a[inverse]

        return jax.tree_util.tree_map(from_chunks, per_member), per_chunk

    @eqx.filter_jit
    def __call__(self, const, N, y0, shared, mesh):
        return self.program(const, N, y0, shared, mesh)

    def program(self, const, N, y0, shared, mesh):
        """The whole ensemble solve (traced by :meth:`__call__` or :func:`_compiled`)."""
        const, N, y0 = _broadcast_members(self.model, const, N, y0)
        M = N.shape[0]
        d = 1 if mesh is None else mesh.size
        pad = -M % d  # whole blocks for the devices: copies of the last member

        def grow(a):
            return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0) if pad else a

        const, N, y0 = jax.tree_util.tree_map(grow, (const, N, y0))
        valid = jnp.arange(M + pad) < M
        dyn, static = eqx.partition(shared, eqx.is_array)
        out = map_blocks(
            lambda c, n, y, w, dyn_: self.block(c, n, y, w, eqx.combine(dyn_, static)),
            const, N, y0, valid, dyn, mesh=mesh, n_shared=1,
        )
        if self.summary:
            per_member, per_chunk = out
            per_member = jax.tree_util.tree_map(lambda a: a[:M], per_member)
            return (per_member, _merge_chunks(per_chunk)), jnp.all(per_member[3])
        out = jax.tree_util.tree_map(lambda a: a[:M], out)
        if mesh is not None and M % d == 0:  # results stay spread over the devices
            out = jax.lax.with_sharding_constraint(out, batch_sharding(mesh))
        return out, jnp.all(out[2])  # and whether every member succeeded


_ARRAY = object()  # marks the array leaves among the static ones in _compiled's key


def _call_ensemble(ensemble: _Ensemble, args: tuple, mesh: Mesh | None):
    """Run an ensemble solve, by a cached ``jax.jit`` when that is safe and faster.

    ``equinox.filter_jit`` (``ensemble(*args, mesh)``) sorts the arguments into arrays
    and static values on every call. For concrete inputs of the own loop (no runtime
    checks inside the program, so none of equinox's error handling is needed) the split
    is done here once per call and the compiled function is looked up by the static part;
    on several devices the host arrays go over as one buffer instead of one transfer per
    input. Both cost ~0.3 ms of a 10 000-member SIR solve on 2 CPU devices.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    is_array = [isinstance(v, (np.ndarray, jax.Array)) for v in leaves]
    if not ensemble.own_loop or any(map(_is_tracer, leaves)):
        return ensemble(*args, mesh)
    arrays = [v for v, a in zip(leaves, is_array) if a]
    static = tuple(_ARRAY if a else v for v, a in zip(leaves, is_array))
    dtype = _float_dtype()
    packed = mesh is not None and all(v.dtype == dtype for v in arrays)
    layout = tuple((v.shape, v.dtype) for v in arrays)
    try:
        fn = _compiled(ensemble, treedef, static, layout, mesh, packed)
    except TypeError:  # an unhashable static value
        return ensemble(*args, mesh)
    if packed:
        return fn(np.concatenate([np.ravel(np.asarray(v)) for v in arrays]))
    return fn(*arrays)


@functools.lru_cache(maxsize=32)
def _compiled(ensemble, treedef, static, layout, mesh, packed):
    """``jax.jit`` of :meth:`_Ensemble.program` for one static setting of the arguments.

    ``packed``: the arrays come as one flat buffer, cut up inside the program.
    """
    def program(*arrays):
        if packed:
            sizes = np.cumsum([0] + [math.prod(shape) for shape, _ in layout])
            arrays = [arrays[0][a:b].reshape(shape)
                      for (a, b), (shape, _) in zip(zip(sizes[:-1], sizes[1:]), layout)]
        it = iter(arrays)
        leaves = [next(it) if v is _ARRAY else v for v in static]
        return ensemble.program(*jax.tree_util.tree_unflatten(treedef, leaves), mesh)

    return jax.jit(program)


def _summarise_chunk(model, ts, out, w):
    """Per-member peak and final size; weighted moments and extremes over the chunk."""
    xs, cum, ok, steps = out  # (m, T, C), (m, T), (m,), (m,)
    per_member = (*_peak_of(ts, _prevalence(model, xs)), cum[:, -1], ok, steps)
    wf = w.astype(xs.dtype)[:, None, None]
    count = jnp.sum(wf)
    mean = jnp.sum(wf * xs, axis=0) / jnp.maximum(count, 1.0)
    m2 = jnp.sum(wf * (xs - mean) ** 2, axis=0)
    lo = jnp.min(jnp.where(wf > 0, xs, jnp.inf), axis=0)
    hi = jnp.max(jnp.where(wf > 0, xs, -jnp.inf), axis=0)
    return per_member, (count, mean, m2, lo, hi)


def _merge_chunks(stats):
    """Chan et al.'s pairwise-free merge of per-chunk counts, means and squared deviations.

    ``M2 = sum_j [M2_j + n_j (mean_j - mean)^2]``: exact, and without the cancellation of
    a sum of squares in float32.
    """
    count, mean, m2, lo, hi = stats  # (k,), (k, T, C) ...
    n = jnp.sum(count)
    c = count[:, None, None]
    total_mean = jnp.sum(c * mean, axis=0) / n
    total_m2 = jnp.sum(m2 + c * (mean - total_mean) ** 2, axis=0)
    return n, total_mean, total_m2, jnp.min(lo, axis=0), jnp.max(hi, axis=0)


def solve_ensemble(
    model: Model,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    method: str = "stacked",
    chunk_size: int | None = None,
    sort_members: bool = True,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 16384,
    adjoint: diffrax.AbstractAdjoint | None = None,
    throw: bool = True,
    mesh: Mesh | None | bool = None,
    options: SolverOptions | None = None,
) -> Trajectory:
    r"""Solve an ensemble of trajectories in one compiled call.

    Any constant rate, ``N`` or ``y0`` entry may carry a leading ensemble axis of length
    ``M`` (``y0`` as an ``(M, C)`` array or a mapping of ``(M,)`` arrays); the rest is
    broadcast. Time-varying rates are shared by all members (for per-member functions of
    time, ``jax.vmap`` over :func:`solve`).

    ``method="stacked"`` (default) integrates each chunk of members as one ODE on the
    stacked state (compartments x members) with one step size, controlling every member's
    error with the norm

    .. math:: \|e\| = \max_{m} \operatorname{RMS}_c\big(e_{c m}/(\text{atol} +
        \text{rtol}\,|x_{c m}|)\big),

    so each member meets the tolerance on its own. With the default ``solver`` and
    ``adjoint`` the loop over the steps is epinn's own, around diffrax's Tsit5 step and
    PID controller (the same method; step sequences can differ from ``diffeqsolve``'s by
    a rejected step): it leaves out ``diffeqsolve``'s runtime checks, whose host
    callbacks made XLA's CPU client run the devices of a mesh one at a time, and raises a
    failure (``throw``) after the call. Reverse-mode gradients come from
    ``diffrax.diffeqsolve`` by a custom VJP; for forward mode (``jax.jacfwd``) pass
    ``adjoint=diffrax.ForwardMode()``, which, like any explicit ``solver`` or
    ``adjoint``, runs ``diffeqsolve`` itself. ``method="vmap"`` runs
    ``jax.vmap(diffeqsolve)`` per chunk (independent step sizes, slower on CPU). Chunks run
    sequentially, bounding memory to one chunk's solver state; each chunk's members fill
    consecutive rows of a buffer the size of the output, and one gather puts them back in
    input order (so the peak memory is about twice the output's). With ``sort_members``
    the members are ordered by early growth rate before chunking so fast and slow members
    do not share a step size; the results do not depend on it beyond the solver
    tolerance, only the speed.

    With several devices (GPUs, TPU cores, or CPU devices from
    ``XLA_FLAGS=--xla_force_host_platform_device_count=k``, one per core) the members are
    split into one contiguous block per device of ``mesh`` (``jax.shard_map``; see
    :mod:`epinn.sharding`); each device sorts, chunks and solves its own block, with no
    data moving between devices, and the results come back in input order, sharded over
    the devices (gathered when the number of members is not a multiple of the number of
    devices: the padding members are dropped). The chunks depend on the number of
    devices, so results on different meshes agree within the solver tolerance, not bit
    for bit. Timings against scipy's ``solve_ivp`` on the same members are in the
    benchmarks page (``benchmarks/bench_sir_ensemble.py``).

    Args:
        model, params, y0, ts: as :func:`solve`, with optional leading ensemble axes.
        method: ``"stacked"`` or ``"vmap"``.
        chunk_size: members per chunk (chunks are equal-sized; the last member is repeated
            to pad; a width of 256 or more that is a multiple of 16 gets 8 more padded
            members, which XLA's CPU transposes handle faster). ``None`` picks by the
            devices' platform: 16384 on accelerators; on CPUs 256 when XLA compiles the
            step loop into one kernel (:func:`epinn.configure_cpu`), else 1024. On a GPU
            every solver step costs kernel launches whatever its size, so larger chunks
            are cheaper there (see the benchmarks page).
        sort_members: order members by growth rate before chunking (speed only).
        solver, rtol, atol, dt0, max_steps, adjoint, throw: shorthand for the fields of
            ``options`` (see :class:`SolverOptions`), with :func:`solve`'s defaults. With
            ``method="stacked"`` a failure marks the whole chunk unsuccessful. On several
            devices the default gradients use ``diffrax.DirectAdjoint()`` (reverse mode
            through diffrax's default checkpointed loop fails inside ``shard_map``).
        mesh: a ``jax.sharding.Mesh`` to spread the members over, ``None`` (default) for
            all devices (:func:`epinn.device_mesh`), ``False`` for the default device only.
        options: the solver settings as one :class:`SolverOptions`; its fields left
            ``None`` keep the keywords above (a setting given both ways must agree).

    Returns:
        :class:`Trajectory` with ``ys`` of shape ``(M, len(ts), C)``
        (``M = 1`` when nothing is batched). For the models in which S falls by infection
        only (SIR, SIRD, SEIR, SEIRD) its cumulative infections are not stored but derived
        from ``ys`` when read (:class:`Trajectory`).

    Raises:
        ValueError: as :func:`solve`, plus mismatched ensemble axes, bad ``method`` or
            ``chunk_size``.
        RuntimeError: with ``throw=True``, when the solver failed for some member
            (``max_steps`` reached, or a non-finite solution).

    Examples:
        >>> from epinn.compartmental import SIR
        >>> traj = solve_ensemble(SIR(), {"beta": jnp.array([0.3, 0.5]), "gamma": 0.1,
        ...                               "N": 1.0}, jnp.array([0.99, 0.01, 0.0]),
        ...                       jnp.linspace(0.0, 50.0, 6))
        >>> traj.ys.shape
        (2, 6, 3)
    """
    settings = _resolve_options(solve_ensemble, options, solver=solver, rtol=rtol, atol=atol,
                                dt0=dt0, max_steps=max_steps, adjoint=adjoint, throw=throw)
    ensemble, args, mesh = _prepare_ensemble(model, params, y0, ts, method, chunk_size,
                                             sort_members, settings, mesh, False)
    try:
        (xs, cum, ok, steps), all_ok = _call_ensemble(ensemble, args, mesh)
    except eqx.EquinoxRuntimeError as e:  # diffeqsolve's own check (explicit solver/adjoint)
        out = _call_ensemble(ensemble, _no_throw(args), mesh)[0]
        raise RuntimeError(_failure_message(model, args, out[2], _cfg_of(args), e)) from None
    if ensemble.method == "stacked" and not _is_tracer(all_ok) and not bool(all_ok):
        # One failing member stops its whole stacked chunk: solve the failed members one
        # by one (independent step sizes), so the healthy ones keep their results.
        xs, cum, ok, steps = _rescue(model, ensemble, args, mesh, (xs, cum, ok, steps))
        all_ok = jnp.all(ok)
        if _cfg_of(args).throw and not bool(all_ok):
            raise RuntimeError(_failure_message(model, args, ok, _cfg_of(args)))
    xs = _check_success(ensemble, args, all_ok, xs)
    return _trajectory(model, args[-1].ts, xs, cum, ok, steps)


class _Shared(NamedTuple):
    """What every device needs whole: the time-varying rates, the saved times, the solver."""

    varying: dict[str, Any]
    ts: Array
    cfg: _Config


def _cfg_of(args: tuple) -> _Config:
    return args[-1].cfg


def _no_throw(args: tuple) -> tuple:
    shared = args[-1]
    return (*args[:-1], shared._replace(cfg=dataclasses.replace(shared.cfg, throw=False)))


def _rescue(model, ensemble, args, mesh, out):
    """Re-solve the failed members of a stacked ensemble one by one (``method="vmap"``)."""
    xs, cum, ok, steps = out
    failed = np.flatnonzero(~np.asarray(ok))
    const, N, y0, shared = _no_throw(args)
    const, N, y0 = _broadcast_members(model, *jax.tree_util.tree_map(np.asarray,
                                                                       (const, N, y0)))
    pick = lambda a: jnp.asarray(np.asarray(a)[failed])  # noqa: E731
    sub = (jax.tree_util.tree_map(pick, const), pick(N), pick(y0), shared)
    single = _Ensemble(model, ensemble.chunk_size, "vmap", False, False, False)
    (xs_f, cum_f, ok_f, steps_f), _ = _call_ensemble(single, sub, None)
    put = lambda a, b: None if a is None else a.at[failed].set(b)  # noqa: E731
    return put(xs, xs_f), put(cum, cum_f), put(ok, ok_f), put(steps, steps_f)


def _failure_message(model, args, ok, cfg, error=None) -> str:
    """Name the failed members (indices and parameters) and what to do."""
    const, N, y0, _ = args
    const, N, y0 = _broadcast_members(model, *jax.tree_util.tree_map(np.asarray,
                                                                       (const, N, y0)))
    failed = np.flatnonzero(~np.asarray(ok))
    def describe(i):
        values = [f"{k}={np.asarray(v)[i]:.4g}" for k, v in const.items() if np.ndim(v) == 1]
        return f"{i} ({', '.join(values)})"

    shown = ", ".join(describe(i) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    why = "" if error is None else f" ({_solver_reason(error)})"
    return (
        f"The ensemble solve of {model.name} failed for {len(failed)} of {len(ok)} members"
        f"{why}: member {shown}{more}. They reached the maximum number of solver steps "
        f"(max_steps={cfg.max_steps}) or stopped being finite (a stiff or exploding member). Raise `max_steps`, check those "
        "members' parameters, or pass `throw=False`: the failed members are then marked in "
        "`success` and the others keep their results."
    )


def _check_success(ensemble: _Ensemble, args: tuple, all_ok: Array, x: Array) -> Array:
    """``throw=True`` for the own loop, which returns failures instead of raising them.

    ``all_ok`` (a replicated scalar, readable in every process) is checked on the host
    after the call: no host callback inside the program, so the devices run in parallel.
    Under an outer trace it is abstract, and the check becomes an ``eqx.error_if`` on
    ``x``.
    """
    cfg = _cfg_of(args)
    if not (ensemble.own_loop and cfg.throw):
        return x
    msg = (
        "The ensemble solve failed for some members: it reached the maximum number "
        f"of solver steps (max_steps={cfg.max_steps}) or the solution stopped being finite. "
        "Raise `max_steps`, or pass `throw=False` to get the failed members marked in "
        "`success`."
    )
    if _is_tracer(all_ok):
        return eqx.error_if(x, ~all_ok, msg)
    if not bool(all_ok):
        raise RuntimeError(msg)
    return x


def _default_chunk_size(mesh: Mesh | None, loop_bytes_per_member: int = 0) -> int:
    """Members per chunk when none is given: 256 or 1024 on CPUs, 16384 on accelerators.

    On a CPU a step's cost grows with the chunk, and fast and slow members sharing a step
    size cost extra steps (10 000 SIR members on one device of the 2-core development
    machine: 17-21 ms in chunks of 1024, 25-29 ms in one chunk); on a GPU a step costs
    kernel launches whatever its size. When XLA compiles the step loop of a 256-member
    chunk into one kernel (:func:`epinn.configure_cpu`: the loop's state, about
    ``loop_bytes_per_member`` per member, fits ``loop_kernel_bytes``), there is no
    per-operation cost left to spread over a large chunk, and smaller chunks, whose
    members are more alike and whose state stays in cache, were ~10% faster on the
    development machine (256-384 members against 1024); without it, 256 were ~12% slower.
    """
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    if device.platform != "cpu":
        return 16384
    threshold = loop_kernel_bytes()
    if threshold and threshold >= 256 * loop_bytes_per_member:
        return 256
    return 1024


def _auto_chunk_size(model: Model, ts: Array, mesh: Mesh | None) -> int:
    """:func:`_default_chunk_size` for an ensemble of ``model`` saved at ``ts``.

    The step loop's state per member: the saved times and ~16 copies of the state (the
    solver's stages and dense output), at most ``C + 1`` numbers each.
    """
    per_member = (ts.shape[0] + 16) * (len(model.compartments) + 1) * ts.dtype.itemsize
    return _default_chunk_size(mesh, per_member)


def _prepare_ensemble(model, params, y0, ts, method, chunk_size, sort, settings, mesh, summary):
    """Checks and inputs shared by :func:`solve_ensemble` and :func:`ensemble_summary`.

    ``settings``: the solver settings, a :class:`_Settings` (or the same seven values as a
    plain tuple; ``adjoint`` ``None`` for summaries). Under ``shard_map`` the default
    adjoint becomes ``diffrax.DirectAdjoint``: reverse mode through diffrax's checkpointed
    while loop fails inside ``shard_map``, and forward solves cost the same with either.
    """
    _check_model(model)
    if method not in ("stacked", "vmap"):
        raise ValueError(f"`method` must be 'stacked' or 'vmap'; got {method!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer))
                                   or isinstance(chunk_size, bool) or chunk_size <= 0):
        raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
    rates, N, y0a, _ = _ensemble_inputs(model, params, y0, broadcast=False)
    tsa = _normalize_ts(ts)
    _check_rate_functions(rates, tsa)
    _check_flow_rates(model, rates, N, y0a, tsa[0])
    const, varying = _split(rates)
    mesh = resolve_mesh(mesh)
    settings = _Settings(*settings)
    own_loop = method == "stacked" and settings.solver is None and settings.adjoint is None
    if settings.adjoint is None and mesh is not None:
        settings = settings._replace(adjoint=diffrax.DirectAdjoint())
    cfg = _make_config(settings)
    if mesh is not None and jax.process_count() > 1:  # global arrays for a multi-process job
        const, N, y0a = jax.device_put((const, N, y0a), replicated(mesh))
    elif mesh is not None:  # host copies (the checks made them) go to each device's block
        const, N, y0a = jax.tree_util.tree_map(_on_host, (const, N, y0a))
    if chunk_size is None:
        chunk_size = _auto_chunk_size(model, tsa, mesh)
    ensemble = _Ensemble(model, int(chunk_size), method, bool(sort), summary, own_loop)
    return ensemble, (const, N, y0a, _Shared(varying, tsa, cfg)), mesh


def _on_host(a: Array) -> Array | np.ndarray:
    """A concrete array as a numpy array (a tracer as it is).

    Split over several devices when the compiled program is called, a numpy array is
    copied from the host to each device's block; an array on the default device is first
    sliced there by small compiled programs (about twice the dispatch time on the 2-core
    development machine).
    """
    return a if _is_tracer(a) else np.asarray(a)


def _broadcast_members(model, const, N, y0):
    """An ensemble's inputs broadcast to ``M`` members: ``(M, *declared shape)``, y0 ``(M, n)``.

    ``M`` is the length of the batched inputs (checked to agree before), or 1. Done in the
    compiled program, so that unbatched inputs are neither expanded member by member on
    the host nor copied to the devices.
    """
    shapes = model.param_shapes
    sizes = [_batch_size(v, shapes[k]) for k, v in const.items()]
    sizes += [_batch_size(N, shapes["N"])]
    sizes += [y0.shape[0]] if y0.ndim == 2 else []
    sizes = [m for m in sizes if m is not None]
    M = sizes[0] if sizes else 1
    const = {k: jnp.broadcast_to(v, (M, *shapes[k])) for k, v in const.items()}
    N = jnp.broadcast_to(N, (M, *shapes["N"]))
    return const, N, jnp.broadcast_to(y0, (M, y0.shape[-1]))


class EnsembleSummary(eqx.Module):
    """What :func:`ensemble_summary` keeps of an ensemble (a pytree).

    Attributes:
        ts: saved times ``(T,)``.
        count: the number of members.
        mean, std, min, max: over the members at every saved time, ``(T, C)`` in counts
            (``std`` with divisor ``count``); ``(T, C, G)`` for a stratified model.
        peak_time, peak_size: time and size of each member's peak of ``I`` (as
            :func:`peak`; summed over the groups of a stratified model), ``(M,)``.
        cumulative_infections: each member's infections from ``ts[0]`` to ``ts[-1]``,
            ``(M,)`` (divide by ``N`` for the attack rate).
        success, num_steps: per member, as in :class:`Trajectory`.
        compartments: the names of the compartment axis of ``mean`` etc. (static).
        groups: the group names of a stratified model (the last axis), else ``None``.
    """

    ts: Float[Array, " T"]
    count: Int[Array, ""]
    mean: Float[Array, "T C *G"]
    std: Float[Array, "T C *G"]
    min: Float[Array, "T C *G"]
    max: Float[Array, "T C *G"]
    peak_time: Float[Array, " M"]
    peak_size: Float[Array, " M"]
    cumulative_infections: Float[Array, " M"]
    success: Bool[Array, " M"]
    num_steps: Int[Array, " M"]
    compartments: tuple[str, ...] = eqx.field(static=True)
    groups: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __getitem__(self, name: str) -> tuple[Array, Array]:
        """``(mean, std)`` of one compartment over time: ``(T,)``, or ``(T, G)`` by group."""
        if name not in self.compartments:
            raise KeyError(
                f"Unknown compartment {name!r}; valid names are {self.compartments}."
            )
        j = self.compartments.index(name)
        return self.mean[:, j], self.std[:, j]


def ensemble_summary(
    model: Model,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    method: str = "stacked",
    chunk_size: int | None = None,
    sort_members: bool = True,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 16384,
    throw: bool = True,
    mesh: Mesh | None | bool = None,
    options: SolverOptions | None = None,
) -> EnsembleSummary:
    r"""Solve an ensemble too large to keep, keeping summary statistics only.

    Exactly the solves of :func:`solve_ensemble` (same arguments, chunks and devices), but
    each chunk's trajectories ``(chunk, T, C)`` are reduced as soon as they are computed
    to per-member scalars (:func:`peak` of ``I``, cumulative infections, success)
    and to the chunk's count, mean, sum of squared deviations, minimum and maximum at
    every saved time. The chunks' moments are merged exactly (Chan, Golub and LeVeque's
    update, free of the cancellation of :math:`\sum x^2 - n\bar x^2` in float32):

    .. math:: \bar x = \frac{1}{n}\sum_j n_j \bar x_j, \qquad
        M_2 = \sum_j \big[M_{2,j} + n_j (\bar x_j - \bar x)^2\big], \qquad
        s = \sqrt{M_2 / n}.

    Memory holds one chunk's trajectories per device, the per-chunk statistics and the
    ``O(M)`` inputs and per-member scalars, never the ``M x T x C`` trajectories: a
    million-member SIR ensemble at 161 saved times runs in well under 1 GiB (see the
    ``bench_sir_ensemble.py --summary`` benchmark).

    Args:
        model, params, y0, ts: as :func:`solve_ensemble`.
        method, chunk_size, sort_members, mesh: as :func:`solve_ensemble`.
        solver, rtol, atol, dt0, max_steps, throw: shorthand for the fields of ``options``
            (see :class:`SolverOptions`), with :func:`solve`'s defaults.
        options: the solver settings as one :class:`SolverOptions` (fields left ``None``
            keep the keywords; no ``adjoint``: summaries are for simulation, not for
            gradients).

    Returns:
        An :class:`EnsembleSummary`.

    Raises:
        ValueError, RuntimeError: as :func:`solve_ensemble`.

    Examples:
        >>> from epinn.compartmental import SIR
        >>> out = ensemble_summary(SIR(), {"beta": jnp.array([0.3, 0.5]), "gamma": 0.1,
        ...                                "N": 1.0}, jnp.array([0.99, 0.01, 0.0]),
        ...                        jnp.linspace(0.0, 50.0, 6))
        >>> out.mean.shape, out.peak_time.shape
        ((6, 3), (2,))
    """
    settings = _resolve_options(ensemble_summary, options, solver=solver, rtol=rtol,
                                atol=atol, dt0=dt0, max_steps=max_steps, throw=throw)
    _check_model(model)
    ensemble, args, mesh = _prepare_ensemble(model, params, y0, ts, method, chunk_size,
                                             sort_members, settings, mesh, True)
    (per_member, (n, mean, m2, lo, hi)), all_ok = _call_ensemble(ensemble, args, mesh)
    peak_time, peak_size, cum, ok, steps = per_member
    mean = _check_success(ensemble, args, all_ok, mean)
    by_group = (lambda a: a) if model.groups is None else (
        lambda a: a.reshape(a.shape[0], len(model.compartments), model.n_groups))
    return EnsembleSummary(
        ts=args[-1].ts,
        count=n.astype(jnp.int32),
        mean=by_group(mean),
        std=by_group(jnp.sqrt(m2 / n)),
        min=by_group(lo),
        max=by_group(hi),
        peak_time=peak_time,
        peak_size=peak_size,
        cumulative_infections=cum,
        success=ok,
        num_steps=steps,
        compartments=model.compartments,
        groups=model.groups,
    )


