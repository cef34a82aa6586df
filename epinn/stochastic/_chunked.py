""":func:`simulate_summaries`: ensembles larger than memory holds as trajectories, simulated
in chunks of which only per-member summaries are kept (private module; the function is
public)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike

from ..compartmental import Model
from ._simulate import _Inputs, _prepare, _run, _trajectory
from ._summaries import MemberSummaries, member_summaries


@eqx.filter_jit
def _summarized(inp: _Inputs, key: Array) -> MemberSummaries:
    return member_summaries(_trajectory(inp, _run(inp, key)))


def _chunk_inputs(inp: _Inputs, start: int, size: int) -> _Inputs:
    """The members ``start .. start + size - 1`` of ``inp`` (past the end: the last member
    again, whose results are dropped)."""
    idx = np.minimum(np.arange(start, start + size), inp.members - 1)
    shapes = inp.model.param_shapes
    const = {k: (np.asarray(v)[idx] if np.ndim(v) == len(shapes[k]) + 1 else v)
             for k, v in inp.const.items()}
    y0 = np.asarray(inp.y0)[idx] if np.ndim(inp.y0) == 3 else inp.y0
    return inp._replace(members=size, const=const, y0=y0)


def simulate_summaries(
    model: Model,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    key: Array,
    n: int,
    method: str = "exact",
    dt: float | None = None,
    max_events: int = 1_000_000,
    epsilon: float | None = None,
    chunk: int = 10_000,
) -> MemberSummaries:
    """Simulate ``n`` members in chunks and keep only their :class:`MemberSummaries`.

    The same simulation as :func:`simulate` (same arguments and checks), run ``chunk``
    members at a time, each chunk's trajectories reduced to per-member final sizes, peaks
    and extinction inside the compiled call. Memory grows by about 25 bytes per member
    (the summaries) plus one chunk's trajectories, not by members x times x compartments;
    every chunk reuses one compilation. Chunk ``c`` (members ``c * chunk`` onwards)
    draws from ``jax.random.fold_in(key, c)``: its summaries equal
    ``member_summaries(simulate(..., key=jax.random.fold_in(key, c), n=chunk))``, so the
    results depend on ``chunk`` as well as on ``key``.

    Args:
        model, params, y0, ts, key, method, dt, max_events, epsilon: as for
            :func:`simulate` (an ensemble axis of ``params`` or ``y0`` must have ``n``
            members).
        n: number of members.
        chunk: members per compiled call (the last chunk is padded to this size).

    Returns:
        :class:`MemberSummaries` of NumPy arrays ``(n,)``; pass it to
        :func:`extinction_probability`, :func:`final_size_distribution`, :func:`peaks`
        or :func:`outbreak_summary`.

    Examples:
        >>> import jax
        >>> from epinn import SIR
        >>> from epinn.stochastic import extinction_probability
        >>> s = simulate_summaries(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 100.0},
        ...                        [99, 1, 0], [0.0, 50.0], key=jax.random.key(0), n=300,
        ...                        chunk=128)
        >>> s.final_size.shape, bool((s.infected_end == 0).all())
        ((300,), True)
        >>> round(float(extinction_probability(s, threshold=20).value), 1)  # about 1/R0
        0.5
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` (the number of members) must be a positive int; got {n!r}.")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"`chunk` (members per compiled call) must be a positive int; "
                         f"got {chunk!r}.")
    inp = _prepare(model, params, y0, ts, key, method, n, dt, epsilon, max_events)
    size = min(int(chunk), int(n))
    out = None
    for c in range(math.ceil(n / size)):
        start = c * size
        part = _summarized(_chunk_inputs(inp, start, size), jr.fold_in(key, c))
        take = min(size, n - start)
        if out is None:
            out = [np.empty((n,), np.asarray(v).dtype) for v in part]
        for o, v in zip(out, part):
            o[start:start + take] = np.asarray(v)[:take]
    return MemberSummaries(*out)
