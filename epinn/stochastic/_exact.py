"""Gillespie's direct method (private): the exact event-by-event simulation of one member."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ._random import _seed_streams, _uniform
from ._system import _initial_state, _propensities, _State, _System, _with_start


def _exact_event(sys: _System, s: _State, a: Array, t_end: Array, max_events: Array,
                 rng: Array) -> tuple[_State, Array]:
    """One step of the direct method at propensities ``a`` ``(F, G)``: the waiting time is
    :math:`-\\log(1-u_0)/a_0`, the channel the first whose cumulative propensity exceeds
    :math:`u_1 a_0`. If the event would fall after ``t_end`` the clock stops there (exact
    for constant rates: the waiting time is memoryless). Returns the new state (streams
    not updated) and the advanced stream ``rng``."""
    rng, u0 = _uniform(rng, s.t.dtype)
    rng, u1 = _uniform(rng, s.t.dtype)
    cum = jnp.cumsum(a.reshape(-1))
    total = cum[-1]
    wait = -jnp.log1p(-u0) / total - s.comp  # inf when nothing can happen
    t_next = s.t + wait
    due = t_next <= t_end
    fire = due & (s.events < max_events)
    k = jnp.argmax(cum > u1 * total)
    delta = jnp.asarray(sys.delta)
    y = s.y + jnp.where(fire, delta[k], 0).reshape(s.y.shape)
    counts = s.counts.reshape(-1).at[k].add(fire.astype(jnp.int32)).reshape(sys.F, sys.G)
    comp = jnp.where(fire, (t_next - s.t) - wait, 0.0)  # Kahan: float32 keeps long clocks
    one = fire.astype(jnp.int32)
    new = s._replace(t=jnp.where(fire, t_next, t_end), comp=comp, y=y, counts=counts,
                     events=s.events + one, capped=s.capped | (due & ~fire),
                     steps=s.steps + one)
    return new, rng


def _exact_member(sys: _System, varying: dict, max_events: Array, ts: Array,
                  key: Array, y0: Array, p: dict):
    """Gillespie's direct method for one member, saving at ``ts``.

    Each save interval runs its own loop: when the next event would fall after the
    interval's end the state is saved and the clock restarts there, which also
    re-evaluates time-varying rates. The two uniforms of each event come from a
    xoshiro128** stream seeded from ``key``; the clock is summed with Kahan's
    compensation, so that float32 keeps the time of millions of short waits.
    """

    def advance(s: _State, t_end: Array):
        def body(s: _State) -> _State:
            a = _propensities(sys, s.t, s.y, p, varying)
            s, rng = _exact_event(sys, s, a, t_end, max_events, s.rng)
            return s._replace(rng=rng)

        s = jax.lax.while_loop(lambda s: s.t < t_end, body, s)
        return s, (s.y, s.counts)

    init = _initial_state(sys, ts[0], y0, key, _seed_streams(key, ()))
    final, (ys, counts) = jax.lax.scan(advance, init, ts[1:])
    return _with_start(final, y0, ys, counts)
