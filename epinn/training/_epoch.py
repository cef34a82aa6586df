"""The jitted epoch: minibatch indices, optimizer steps (data parallel over a mesh),
one ``lax.scan`` over the minibatches and the epoch's evaluation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import optax
from jax.sharding import Mesh, PartitionSpec

from ..data import batch_indices
from ._errors import _all_finite
from ._inputs import _Apply


class _EpochConfig(NamedTuple):
    """Everything static about an epoch; hashable, so equal configs share one compilation."""

    apply: _Apply
    loss_fn: Callable
    tx: optax.GradientTransformation
    regularizer: Callable | None
    metrics: tuple[tuple[str, Callable], ...]
    n: int
    batch_size: int
    has_val: bool
    mesh: Mesh | None = None  # data parallel over this mesh's devices


@functools.partial(jax.jit, static_argnums=(2, 3))
def _epoch_inputs(key: jax.Array, epoch_index: jax.Array, n: int, batch_size: int):
    """Per-epoch randomness: the shuffled minibatch indices and the dropout key.

    Jitted apart from the epoch, so its compilation (the PRNG's hash, the sort) is shared
    by every fit with the same ``n`` and ``batch_size``.
    """
    perm_key, dropout_key = jr.split(jr.fold_in(key, epoch_index))
    if batch_size == n:
        return None, None, dropout_key
    full, rest = batch_indices(perm_key, n, batch_size)
    return full, rest, dropout_key


def _step(cfg: _EpochConfig, carry, batch, axis_name=None):
    """One optimizer step; with ``axis_name``, on this device's share of the minibatch."""
    params, opt_state = carry
    xb, yb, key = batch

    def objective(p):
        data_loss = cfg.loss_fn(cfg.apply.train(p, xb, key), yb)
        total = data_loss if cfg.regularizer is None else data_loss + cfg.regularizer(p)
        return total, data_loss

    (total, data_loss), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if axis_name is not None:  # equal shares: the mean of the means is the batch's mean
        flat, unravel = jax.flatten_util.ravel_pytree((grads, total, data_loss))
        grads, total, data_loss = unravel(jax.lax.pmean(flat, axis_name))
    updates, opt_state = cfg.tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (total, data_loss)


def _steps(cfg: _EpochConfig, carry, batches):
    """Optimizer steps over a stack of minibatches ``(steps, batch, ...)``.

    Data parallel over ``cfg.mesh`` when its devices divide the minibatch; otherwise (and
    on one device) every device takes the whole minibatch.
    """
    if cfg.mesh is not None and batches[0].shape[1] % cfg.mesh.size == 0:
        return _data_parallel_scan(cfg, carry, batches)
    return jax.lax.scan(functools.partial(_step, cfg), carry, batches)


def _data_parallel_scan(cfg: _EpochConfig, carry, batches):
    """The minibatch loop with each device stepping through its share of every minibatch.

    ``jax.shard_map``: every device holds the (replicated) parameters and optimizer state,
    computes the gradient of the mean loss over its ``batch_size / devices`` samples, and
    the devices average their gradients (an all-reduce) before each identical update.
    Dropout keys are folded with the device index, so each share draws its own masks.
    """
    axis = tuple(cfg.mesh.axis_names)

    def local(carry, batches):
        index = jax.lax.axis_index(axis)

        def step(carry, batch):
            xb, yb, key = batch
            return _step(cfg, carry, (xb, yb, jr.fold_in(key, index)), axis)

        return jax.lax.scan(step, carry, batches)

    split, whole = PartitionSpec(None, axis), PartitionSpec()
    return jax.shard_map(local, mesh=cfg.mesh, in_specs=(whole, (split, split, whole)),
                         out_specs=whole, check_vma=False)(carry, batches)


@functools.partial(jax.jit, static_argnums=0)
def _epoch(cfg: _EpochConfig, params, opt_state, x, y, x_val, y_val, full, rest, dropout_key):
    """One epoch: a ``lax.scan`` of optimizer steps over the minibatches, then evaluation."""
    n, batch_size = cfg.n, cfg.batch_size
    carry = (params, opt_state)
    if full is None:  # full batch: one step
        carry, (total, data_loss) = _steps(cfg, carry, (x[None], y[None], dropout_key[None]))
        total, data_loss = total[0], data_loss[0]
    else:
        n_full, n_rest = full.shape[0], rest.shape[0]
        keys = jr.split(dropout_key, n_full + 1)
        # Gather the whole epoch once, then scan over the (n_full, batch_size, ...) stack.
        batches = (jnp.take(x, full, axis=0), jnp.take(y, full, axis=0), keys[:n_full])
        carry, (totals, data_losses) = _steps(cfg, carry, batches)
        total = jnp.sum(totals) * batch_size
        data_loss = jnp.sum(data_losses) * batch_size
        if n_rest:  # the last, smaller batch (a static shape, outside the scan)
            last = (jnp.take(x, rest, axis=0)[None], jnp.take(y, rest, axis=0)[None], keys[-1:])
            carry, (t, d) = _steps(cfg, carry, last)
            total, data_loss = total + t[0] * n_rest, data_loss + d[0] * n_rest
        total, data_loss = total / n, data_loss / n
    params, opt_state = carry
    logs = {"objective": total, "loss": data_loss}
    if cfg.metrics:
        pred = cfg.apply.eval(params, x)
        logs.update({k: f(pred, y) for k, f in cfg.metrics})
    if cfg.regularizer is not None:
        logs["penalty"] = cfg.regularizer(params)
    if cfg.has_val:
        pred_val = cfg.apply.eval(params, x_val)
        logs["val_loss"] = cfg.loss_fn(pred_val, y_val)
        logs.update({"val_" + k: f(pred_val, y_val) for k, f in cfg.metrics})
    return params, opt_state, logs, _all_finite(params)
