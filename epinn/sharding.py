r"""Spreading a batch axis over devices with JAX's own sharding (``jax.sharding``).

epinn's batched work -- ensembles of ODE solves, batches of fits, simulated training sets,
minibatches of a network's training data -- has one axis of independent items. This module
says how that axis is laid out over devices; the computations themselves do not change.

* A **mesh** is a ``jax.sharding.Mesh``; :func:`device_mesh` makes the 1-D mesh over all
  devices that epinn uses by default (in a multi-process job started with
  ``jax.distributed.initialize`` that is every device of every process).
* The batch axis is split over *all* axes of the mesh (``PartitionSpec(mesh.axis_names)``),
  parameters and other shared inputs are replicated (``PartitionSpec()``), as
  ``NamedSharding`` objects from :func:`batch_sharding` and :func:`replicated`.
* :func:`shard_map_batch` runs a function that maps a batch to a batch on every device's
  block with ``jax.shard_map``. A batch whose length is not a multiple of the number of
  devices is padded by repeating its last item; the padding is dropped from the result, so
  results always come back in input order and of input length.

Nothing here is specific to one kind of device: on one CPU the mesh has one device and
everything runs as before; ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` splits
one CPU into 4 devices (one thread each; :func:`configure_cpu` sets it, one device per
core, before JAX starts), and GPUs/TPUs are used as they are found.

Examples:
    >>> import jax.numpy as jnp
    >>> mesh = device_mesh()
    >>> out = shard_map_batch(lambda x: 2.0 * x, jnp.arange(5.0), mesh=mesh)
    >>> out.tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "batch_sharding",
    "configure_cpu",
    "device_mesh",
    "loop_kernel_bytes",
    "map_blocks",
    "pad_batch",
    "replicated",
    "resolve_mesh",
    "shard_batch",
    "shard_map_batch",
    "vmap_blocks",
]

PyTree = Any


LOOP_KERNEL_BYTES = 32 * 2**20
"""Default of :func:`configure_cpu`'s ``loop_kernel_bytes`` (32 MiB)."""

_LOOP_KEY = "xla_cpu_small_while_loop_byte_threshold"


def configure_cpu(
    devices: int | None = None, *, loop_kernel_bytes: int | None = LOOP_KERNEL_BYTES
) -> str:
    r"""Set XLA's CPU flags for epinn's batched work; call it before JAX starts.

    XLA reads ``XLA_FLAGS`` once, when JAX first uses a device, so this must run before
    anything touches a device (importing ``jax`` or ``epinn`` does not). It sets, in the
    environment of this process (and of the processes it starts):

    * ``--xla_force_host_platform_device_count=devices``: the CPU appears as ``devices``
      devices, so ensembles, batches of fits and minibatches are split over the cores
      (:func:`device_mesh`). Default: the cores this process may run on.
    * ``--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=...``: XLA
      compiles every ``while`` loop whose state is at most ``loop_kernel_bytes`` into one
      kernel. XLA's CPU runtime (since jax 0.4.32) otherwise runs each operation of a loop
      body as a separate task, which costs microseconds per operation and step; loops of
      many small steps, such as the step loop of an ODE solver, run much slower for it
      (jax-ml/jax#26021, #26145); ODE ensembles gain most from it
      (:func:`~epinn.compartmental.solve_ensemble` then takes chunks of 256 members
      instead of 1024; the measurements are in the benchmarks page). ``None`` leaves this
      flag as it is in ``XLA_FLAGS`` (XLA's default is 1 KiB).

    Other flags already in ``XLA_FLAGS`` are kept.

    Args:
        devices: the number of CPU devices, >= 1; ``None`` for one per available core.
        loop_kernel_bytes: the loop-state size (bytes, >= 0) up to which a loop becomes one
            kernel, or ``None``.

    Returns:
        The new value of ``XLA_FLAGS``.

    Raises:
        RuntimeError: when JAX has already started its backends (the flags would be
            ignored).
        ValueError: for a non-positive ``devices`` or a negative ``loop_kernel_bytes``.

    Examples:
        At the top of a script, before any computation::

            import epinn
            epinn.configure_cpu()          # one device per core, loops as kernels
            import jax
            print(jax.device_count())      # e.g. 2
    """
    from jax._src import xla_bridge

    if devices is not None and (isinstance(devices, bool)
                                or not isinstance(devices, (int, np.integer)) or devices < 1):
        raise ValueError(f"`devices` must be a positive int or None; got {devices!r}.")
    if loop_kernel_bytes is not None and (
        isinstance(loop_kernel_bytes, bool)
        or not isinstance(loop_kernel_bytes, (int, np.integer)) or loop_kernel_bytes < 0
    ):
        raise ValueError(
            f"`loop_kernel_bytes` must be a non-negative int or None; got {loop_kernel_bytes!r}."
        )
    started = getattr(xla_bridge, "backends_are_initialized", lambda: False)
    if started():
        raise RuntimeError(
            "configure_cpu() must run before JAX starts its backends (before the first "
            "computation, jax.devices() or device_put): XLA has already read XLA_FLAGS, so "
            "the flags would be ignored. Call it at the top of the script, or set XLA_FLAGS "
            "in the environment."
        )
    if devices is None:
        devices = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = _cpu_flags(os.environ.get("XLA_FLAGS", ""), int(devices),
                                         loop_kernel_bytes)
    return os.environ["XLA_FLAGS"]


def _cpu_flags(flags: str, devices: int, loop_kernel_bytes: int | None) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with the device count and loop threshold set."""
    extra: list[str] = []
    kept = []
    for f in flags.split():
        if f.startswith("--xla_force_host_platform_device_count="):
            continue
        if f.startswith("--xla_backend_extra_options="):
            extra += [o for o in f.split("=", 1)[1].split(",") if o and not (
                loop_kernel_bytes is not None and o.startswith(_LOOP_KEY + "="))]
            continue
        kept.append(f)
    kept.append(f"--xla_force_host_platform_device_count={devices}")
    if loop_kernel_bytes is not None:
        extra.append(f"{_LOOP_KEY}={int(loop_kernel_bytes)}")
    if extra:
        kept.append("--xla_backend_extra_options=" + ",".join(extra))
    return " ".join(kept)


def loop_kernel_bytes() -> int | None:
    """XLA's small-loop threshold in ``XLA_FLAGS`` (bytes), or ``None`` when not set.

    Loops whose state is at most this size are compiled into one kernel
    (:func:`configure_cpu`); ``None`` means XLA's default. Read from the environment, so
    it reflects what XLA read at start-up unless ``XLA_FLAGS`` was changed since.
    """
    found = re.findall(_LOOP_KEY + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else None


def device_mesh(
    devices: Sequence[jax.Device] | int | None = None, *, axis_name: str = "batch"
) -> Mesh:
    """A 1-D device mesh for a batch axis.

    Args:
        devices: the devices (default ``jax.devices()``: all local devices in a single
            process; all devices of the job after ``jax.distributed.initialize``), or an
            int ``k`` for the first ``k`` of them.
        axis_name: the name of the mesh axis.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``(len(devices),)`` with an ``Auto`` axis type
        (diffrax's solvers need it: the ``Explicit`` default of ``jax.make_mesh`` breaks
        their while loops).

    Raises:
        ValueError: an empty device list or ``k`` outside ``[1, jax.device_count()]``.

    Examples:
        >>> device_mesh().axis_names
        ('batch',)
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"`axis_name` must be a non-empty string; got {axis_name!r}.")
    all_devices = jax.devices()
    if devices is None:
        devs = all_devices
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(all_devices):
            raise ValueError(
                f"`devices` = {devices} must be between 1 and the {len(all_devices)} "
                "available devices."
            )
        devs = all_devices[: int(devices)]
    else:
        try:
            devs = list(devices)
        except TypeError:
            devs = []
        if not devs or not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError(
                "`devices` must be None, an int, or a non-empty sequence of jax devices; "
                f"got {devices!r}."
            )
    return Mesh(np.asarray(devs), (axis_name,), axis_types=(AxisType.Auto,))


def resolve_mesh(mesh: Mesh | None | bool) -> Mesh | None:
    """The mesh that batched epinn functions use for a ``mesh=`` argument.

    ``None`` (the default everywhere) means :func:`device_mesh` over all devices, ``False``
    means no sharding, a ``Mesh`` is used as given. A mesh of one device is returned as
    ``None``: there is nothing to spread, and the unsharded program is the same one.

    Raises:
        TypeError: anything else.

    Examples:
        >>> resolve_mesh(False) is None
        True
    """
    if mesh is False:
        return None
    if mesh is None:
        mesh = device_mesh()
    elif not isinstance(mesh, Mesh):
        raise TypeError(
            "`mesh` must be a jax.sharding.Mesh (see epinn.device_mesh), None for all "
            f"devices or False for none; got {type(mesh).__name__}."
        )
    return None if mesh.size == 1 else mesh


def _batch_spec(mesh: Mesh) -> PartitionSpec:
    return PartitionSpec(tuple(mesh.axis_names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every axis of ``mesh``, other axes whole.

    Examples:
        >>> batch_sharding(device_mesh()).spec
        P('batch',)
    """
    return NamedSharding(mesh, _batch_spec(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh`` (parameters, shared inputs).

    Examples:
        >>> replicated(device_mesh()).spec
        P()
    """
    return NamedSharding(mesh, PartitionSpec())


def _batch_length(tree: PyTree, what: str) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if not leaves or None in sizes or len(sizes) != 1:
        shapes = [np.shape(x) for x in leaves]
        raise ValueError(
            f"Every array of {what} must have the same leading (batch) axis; got shapes "
            f"{shapes}."
        )
    return sizes.pop()


def pad_batch(tree: PyTree, multiple: int) -> tuple[PyTree, int]:
    """Pad the leading axis of every leaf to a multiple of ``multiple``.

    The last item is repeated, so padded items are valid inputs (no NaN from zeros in a
    division); drop them with ``x[:n]``.

    Returns:
        ``(padded_tree, n)`` with ``n`` the original length.

    Raises:
        ValueError: leaves with different or missing leading axes, or ``multiple < 1``.

    Examples:
        >>> padded, n = pad_batch(jnp.arange(3.0), 4)
        >>> padded.tolist(), n
        ([0.0, 1.0, 2.0, 2.0], 3)
    """
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"`multiple` must be a positive int; got {multiple!r}.")
    n = _batch_length(tree, "the batch")
    if n == 0:
        raise ValueError("The batch is empty.")
    pad = -n % multiple
    if not pad:
        return tree, n

    def _pad(x):
        x = jnp.asarray(x)
        return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)

    return jax.tree_util.tree_map(_pad, tree), n


def shard_batch(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place every leaf with its leading axis split over ``mesh`` (``jax.device_put``).

    Works unchanged in a multi-process job when every process passes the same host data.

    Raises:
        ValueError: a leading axis that is not a multiple of ``mesh.size`` (pad first with
            :func:`pad_batch`), or leaves without a common leading axis.

    Examples:
        >>> x = shard_batch(jnp.zeros((4, 3)), device_mesh())
        >>> x.sharding.spec
        P('batch',)
    """
    n = _batch_length(tree, "the batch")
    if n % mesh.size:
        raise ValueError(
            f"A batch of {n} cannot be split evenly over {mesh.size} devices; pad it to a "
            f"multiple of {mesh.size} (epinn.pad_batch) or use a mesh whose size divides "
            f"{n}."
        )
    return jax.device_put(tree, batch_sharding(mesh))


def shard_map_batch(
    fn: Callable[..., PyTree], *args: PyTree, mesh: Mesh | None | bool = None,
    shared: PyTree = None, partitioner: str = "shard_map",
) -> PyTree:
    """Apply a batch-to-batch function to each device's block of a sharded batch.

    ``fn(*blocks, shared)`` (or ``fn(*blocks)`` when ``shared`` is None) receives the
    device's contiguous block of each batched argument and a replicated copy of
    ``shared``; every leaf of its output must have the block's length on its leading axis.
    The batch is padded to a multiple of the mesh size and the padding is removed from the
    output, which is sharded over the mesh and in input order. Runs under ``jax.jit``;
    ``jax.shard_map`` with ``check_vma=False`` (diffrax's while loops do not pass the
    varying-axes check). The compilation is cached on ``fn``: pass a top-level function or
    an ``equinox.Module`` (hashed by its fields), not a new lambda per call.

    Args:
        fn: the per-block function, batch in and batch out (e.g. a ``jax.vmap``-ed solve).
        *args: batched pytrees with a common leading axis.
        mesh: see :func:`resolve_mesh`; without one, ``fn`` runs on the whole batch.
        shared: a pytree of inputs every device needs whole (arrays are replicated,
            everything else is static).
        partitioner: ``"shard_map"`` (each device runs ``fn`` on its block on its own) or
            ``"gspmd"``: the blocks are stacked on a new leading axis that is sharded over
            the devices and ``jax.vmap(fn)`` runs over it, partitioned by XLA. Loops in
            ``fn`` then run in lockstep over the devices (a while loop's condition is
            all-reduced every iteration), but code that cannot be traced inside
            ``shard_map`` works -- optimistix/lineax solves, for one (lineax issue #185:
            structures inside ``shard_map`` carry shardings that the solver's own
            structure check rejects).

    Returns:
        ``fn``'s output for the whole batch.

    Examples:
        >>> shard_map_batch(lambda x, s: x + s, jnp.arange(3.0), shared=1.0).tolist()
        [1.0, 2.0, 3.0]
    """
    if partitioner not in ("shard_map", "gspmd"):
        raise ValueError(
            f"`partitioner` must be 'shard_map' or 'gspmd'; got {partitioner!r}."
        )
    mesh = resolve_mesh(mesh)
    has_shared = shared is not None
    if mesh is None:
        return _plain(fn, has_shared, args, shared)
    padded, n = pad_batch(args, mesh.size)
    dyn, static = eqx.partition(shared, eqx.is_array)
    # Committed inputs: also what a multi-process job needs (each process passes the same
    # host data and keeps its own devices' blocks).
    padded = jax.device_put(padded, batch_sharding(mesh))
    dyn = jax.device_put(dyn, replicated(mesh))
    return _sharded(fn, mesh, has_shared, static, padded, dyn, n, partitioner)


@eqx.filter_jit
def _plain(fn, has_shared, args, shared):
    return fn(*args, shared) if has_shared else fn(*args)


@eqx.filter_jit
def _sharded(fn, mesh, has_shared, static, padded, dyn, n, partitioner):
    def call(*batch_and_shared):
        *batch, dyn_ = batch_and_shared
        return fn(*batch, eqx.combine(dyn_, static)) if has_shared else fn(*batch)

    blocks = map_blocks if partitioner == "shard_map" else vmap_blocks
    out = blocks(call, *padded, dyn, mesh=mesh, n_shared=1)
    return jax.tree_util.tree_map(lambda a: a[:n], out)


def _check_blocks(fn: Any, args: tuple, mesh: Any, n_shared: Any) -> None:
    """Arguments of :func:`map_blocks` and :func:`vmap_blocks`, checked before tracing."""
    if not callable(fn):
        raise TypeError(f"`fn` must be callable; got {type(fn).__name__}.")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(
            f"`mesh` must be a jax.sharding.Mesh (see epinn.device_mesh) or None; got "
            f"{type(mesh).__name__}."
        )
    if (isinstance(n_shared, bool) or not isinstance(n_shared, (int, np.integer))
            or not 0 <= n_shared <= len(args)):
        raise ValueError(
            f"`n_shared` must be an int in [0, {len(args)}] (the number of arguments); "
            f"got {n_shared!r}."
        )
    d = 1 if mesh is None else mesh.size
    for i, a in enumerate(args[: len(args) - n_shared]):
        for leaf in jax.tree_util.tree_leaves(a):
            shape = np.shape(leaf)
            if len(shape) == 0 or shape[0] % d:
                raise ValueError(
                    f"Batched argument {i} needs a leading axis that the mesh's {d} "
                    f"device(s) divide; got a leaf of shape {shape}."
                )


def map_blocks(
    fn: Callable[..., PyTree], *args: PyTree, mesh: Mesh | None, n_shared: int = 0
) -> PyTree:
    """``jax.shard_map`` of ``fn`` over the leading axis of ``args`` (for use inside jit).

    The last ``n_shared`` arguments are replicated pytrees (arrays only, or ``None``); the
    others are batched with a leading axis that ``mesh.size`` divides. Without a mesh,
    ``fn(*args)``. Building block of :func:`shard_map_batch` for code that is already
    traced.
    """
    _check_blocks(fn, args, mesh, n_shared)
    if mesh is None:
        return fn(*args)
    spec = _batch_spec(mesh)
    k = len(args) - n_shared
    specs = (spec,) * k + (PartitionSpec(),) * n_shared
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(
        *args
    )


def vmap_blocks(
    fn: Callable[..., PyTree], *args: PyTree, mesh: Mesh | None, n_shared: int = 0
) -> PyTree:
    """Like :func:`map_blocks`, partitioned by XLA (GSPMD) instead of ``shard_map``.

    The batched arguments are reshaped to ``(mesh.size, block, ...)``, the new leading
    axis is constrained to be split over the devices and ``jax.vmap(fn)`` runs over it;
    the output is reshaped back and left split over the devices.
    """
    _check_blocks(fn, args, mesh, n_shared)
    if mesh is None:
        return fn(*args)
    d = mesh.size
    k = len(args) - n_shared
    batched, shared = args[:k], args[k:]
    spec = NamedSharding(mesh, _batch_spec(mesh))

    def to_blocks(a):
        return jax.lax.with_sharding_constraint(a.reshape(d, -1, *a.shape[1:]), spec)

    def from_blocks(a):
        return jax.lax.with_sharding_constraint(a.reshape(-1, *a.shape[2:]), spec)

    stacked = jax.tree_util.tree_map(to_blocks, batched)
    out = jax.vmap(lambda *b: fn(*b, *shared))(*stacked)
    return jax.tree_util.tree_map(from_blocks, out)
