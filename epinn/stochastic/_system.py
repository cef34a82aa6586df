"""A model read as event channels (private): the static facts the simulators need, the
propensities at an integer state, and the loop state they carry."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..compartmental import Model
from ._inputs import _evaluate


class _System(NamedTuple):
    """Static facts of a model for the simulators (host arrays, built at trace time)."""

    model: Model
    F: int
    C: int
    G: int
    source: np.ndarray  # (F,) index of the source compartment, -1 for inflows
    stoich: np.ndarray  # (F, C) -1/0/+1
    delta: np.ndarray  # (F * G, C * G) the change of the flat state by each channel
    out_comp: np.ndarray  # (n_o,) the compartments that flows leave
    out_flows: np.ndarray  # (n_o, K) the flows out of each, padded with F
    inflows: np.ndarray  # (n_i,) flows from outside


def _system(model: Model) -> _System:
    F, C, G = len(model.flows), len(model.compartments), model.n_groups
    stoich = np.asarray(model.stoichiometry, np.int32)
    source = np.array([-1 if f.source is None else model.compartments.index(f.source)
                       for f in model.flows], np.int32)
    delta = np.einsum("fc,gh->fgch", stoich, np.eye(G, dtype=np.int32)).reshape(F * G, C * G)
    out_comp = np.array([c for c in range(C) if np.any(source == c)], np.int32)
    groups = [np.flatnonzero(source == c) for c in out_comp]
    K = max((len(g) for g in groups), default=0)
    out_flows = np.full((len(groups), K), F, np.int32)
    for i, g in enumerate(groups):
        out_flows[i, :len(g)] = g
    inflows = np.flatnonzero(source < 0).astype(np.int32)
    return _System(model, F, C, G, source, stoich, delta, out_comp, out_flows, inflows)


def _propensities(sys: _System, t: Array, y: Array, p: dict, varying: dict) -> Array:
    """``(F, G)`` non-negative rates at integer state ``y`` ``(C, G)``; a channel whose source
    compartment is empty has none (negative or NaN rates count as zero)."""
    q = dict(p)
    for k, v in varying.items():
        q[k] = _evaluate(v, t)
    dtype = jnp.result_type(t)
    r = sys.model.flow_rates(t, y.astype(dtype), q).reshape(sys.F, sys.G)
    src = jnp.asarray(sys.source)
    present = y[jnp.maximum(src, 0)] > 0  # (F, G)
    allowed = jnp.where((src >= 0)[:, None], present, True)
    return jnp.where(allowed & (r > 0), r, 0.0).astype(dtype)


class _State(NamedTuple):
    t: Array  # time
    comp: Array  # Kahan compensation of t (exact method: many tiny waiting times)
    y: Array  # (C, G) int32 counts
    counts: Array  # (F, G) int32 cumulative events per channel
    events: Array  # () int32
    capped: Array  # () bool
    key: Array  # the member's jax.random key (seeds the streams)
    rng: Any  # xoshiro128** states (uint32, leading axis 4) for every random draw
    steps: Array  # () int32 simulation steps: events (exact), leaps, or both (adaptive)


def _initial_state(sys: _System, t0: Array, y0: Array, key: Array, rng: Any) -> _State:
    zero = jnp.zeros((), jnp.int32)
    return _State(t0, jnp.zeros_like(t0), y0, jnp.zeros((sys.F, sys.G), jnp.int32), zero,
                  jnp.zeros((), bool), key, rng, zero)


def _with_start(final: _State, y0: Array, ys: Array, counts: Array):
    """``(ys, counts, events, capped, steps)`` of one member, the initial state prepended to
    the states saved at ``ts[1:]``."""
    ys = jnp.concatenate([y0[None], ys])
    counts = jnp.concatenate([jnp.zeros_like(counts[:1]), counts])
    return ys, counts, final.events, final.capped, final.steps
