r"""Tau-leaping and the chain binomial (private): fixed steps, and tau-leaping with the step
chosen by Cao, Gillespie & Petzold (2006) and rates at the estimated midpoint (Gillespie
2001)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array

from ._exact import _exact_event
from ._random import _binomial, _poisson, _seed_streams
from ._system import _initial_state, _propensities, _State, _System, _with_start

_EXACT_BELOW = 10.0
"""Adaptive tau-leaping takes an exact step when fewer events than this are expected in
the selected leap (Cao, Gillespie & Petzold 2006 use 10)."""

_EXACT_RUN = 100
"""The number of exact events adaptive tau-leaping takes before it chooses a leap again
(Cao, Gillespie & Petzold 2006 use 100)."""

_ORDER = 2.0
"""``g_i`` of Cao et al.'s step selection: the highest order of a rate in a compartment.
Mass-action infection :math:`\beta S I / N` is of order 2 in two different compartments,
for which ``g = 2``; first-order flows would allow ``g = 1``, so 2 is the conservative
choice for every compartment (rates are user functions whose order is not known)."""


def _leap_moves(sys: _System, rng: tuple, rates: Array, y: Array, h: Array,
                method: str) -> tuple[Array, tuple]:
    """``(F, G)`` events of one step of length ``h`` at propensities ``rates`` ``(F, G)``
    (tau-leap or chain binomial) and the new streams.

    One vectorised draw for the people leaving every compartment, ``K - 1`` for the
    multinomial split among at most ``K`` competing flows (conditional binomials), and one
    for the inflows, from the xoshiro128** streams ``rng`` (leaving and split, inflows).
    Never more leave a compartment than it holds.
    """
    rng_out, rng_in = rng
    dtype = rates.dtype
    padded = jnp.concatenate([rates, jnp.zeros((1, sys.G), dtype)])  # row F: no flow
    moves = jnp.zeros((sys.F + 1, sys.G), dtype)
    if sys.out_comp.size:
        R = padded[jnp.asarray(sys.out_flows)]  # (n_o, K, G)
        total = R.sum(1)
        present = y[jnp.asarray(sys.out_comp)].astype(dtype)  # (n_o, G)
        if method == "chain_binomial":
            hazard = total / jnp.maximum(present, 1.0)
            rng_out, leaving = _binomial(rng_out, present, -jnp.expm1(-hazard * h))
        else:
            rng_out, n_out = _poisson(rng_out, total * h)
            leaving = jnp.minimum(n_out, present)
        remaining, rest, shares = leaving, total, []
        for j in range(R.shape[1] - 1):
            share = jnp.clip(R[:, j] / jnp.where(rest > 0, rest, 1.0), 0.0, 1.0)
            rng_out, n_j = _binomial(rng_out, remaining, jnp.where(rest > 0, share, 0.0))
            shares.append(n_j)
            remaining, rest = remaining - n_j, rest - R[:, j]
        split = jnp.stack([*shares, remaining], axis=1)  # (n_o, K, G)
        moves = moves.at[jnp.asarray(sys.out_flows)].add(split)
    if sys.inflows.size:
        idx = jnp.asarray(sys.inflows)
        rng_in, n_in = _poisson(rng_in, rates[idx] * h)
        moves = moves.at[idx].add(n_in)
    return jnp.round(moves[:sys.F]).astype(jnp.int32), (rng_out, rng_in)


def _apply(sys: _System, s: _State, moves: Array) -> _State:
    y = s.y + jnp.einsum("fc,fg->cg", jnp.asarray(sys.stoich), moves)
    return s._replace(y=y, counts=s.counts + moves, events=s.events + moves.sum())


def _leap_streams(sys: _System, k_out: Array, k_in: Array) -> tuple[Array, Array]:
    return (_seed_streams(k_out, (len(sys.out_comp), sys.G)),
            _seed_streams(k_in, (len(sys.inflows), sys.G)))


def _leap_member(sys: _System, varying: dict, method: str, dt: Array, ts: Array,
                 key: Array, y0: Array, p: dict):
    """Tau-leaping or chain binomial for one member: in each save interval
    ``ceil(length / dt)`` equal steps (of at most ``dt``). A step at which no rate is
    positive ends the interval (as in the exact method: nothing can happen until the rates
    are evaluated again at the next saved time)."""

    def advance(s: _State, t_end: Array):
        n = jnp.maximum(jnp.ceil((t_end - s.t) / dt * (1 - 1e-5)), 1.0)
        h = (t_end - s.t) / n

        def step(c):
            i, _, s = c
            rates = _propensities(sys, s.t + i * h, s.y, p, varying)
            moves, rng = _leap_moves(sys, s.rng, rates, s.y, h, method)
            s = _apply(sys, s, moves)._replace(rng=rng, steps=s.steps + 1)
            return i + 1, ~jnp.any(rates > 0), s

        _, _, s = jax.lax.while_loop(lambda c: (c[0] < n) & ~c[1], step,
                                     (jnp.zeros((), n.dtype), jnp.zeros((), bool), s))
        s = s._replace(t=t_end)
        return s, (s.y, s.counts)

    key, k_out, k_in = jr.split(key, 3)
    init = _initial_state(sys, ts[0], y0, key, _leap_streams(sys, k_out, k_in))
    final, (ys, counts) = jax.lax.scan(advance, init, ts[1:])
    return _with_start(final, y0, ys, counts)


def _select(pred: Array, a: _State, b: _State) -> _State:
    """``a`` where ``pred`` else ``b``, leaf by leaf (the key and streams from ``a``)."""
    a2, b2 = (x._replace(key=None, rng=None) for x in (a, b))
    out = jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a2, b2)
    return out._replace(key=a.key, rng=a.rng)


def _cgp_tau(sys: _System, y: Array, rates: Array, epsilon: float) -> Array:
    r"""Cao, Gillespie & Petzold's (2006) leap size at state ``y`` ``(C, G)``.

    .. math::
        \tau = \min_{i}\left\{
            \frac{\max(\epsilon x_i / g_i, 1)}{|\mu_i|},
            \frac{\max(\epsilon x_i / g_i, 1)^2}{\sigma_i^2}\right\},\quad
        \mu_i = \sum_j \nu_{ij} a_j,\quad \sigma_i^2 = \sum_j \nu_{ij}^2 a_j

    over the compartments ``i`` that flows leave (in every group), so that no propensity
    is expected to change by more than a fraction :math:`\epsilon` in a leap; ``inf``
    when nothing changes.
    """
    stoich = jnp.asarray(sys.stoich, rates.dtype)
    mu = jnp.einsum("fc,fg->cg", stoich, rates)[jnp.asarray(sys.out_comp)]
    var = jnp.einsum("fc,fg->cg", stoich**2, rates)[jnp.asarray(sys.out_comp)]
    x = y[jnp.asarray(sys.out_comp)].astype(rates.dtype)
    bound = jnp.maximum(epsilon * x / _ORDER, 1.0)
    inf = jnp.asarray(jnp.inf, rates.dtype)
    by_mean = jnp.where(mu != 0, bound / jnp.where(mu != 0, jnp.abs(mu), 1.0), inf)
    by_var = jnp.where(var > 0, bound**2 / jnp.where(var > 0, var, 1.0), inf)
    return jnp.minimum(by_mean.min(initial=jnp.inf), by_var.min(initial=jnp.inf))


def _midpoint_rates(sys: _System, s: _State, rates: Array, h: Array, p: dict,
                    varying: dict) -> Array:
    """Propensities at the expected state half a leap ahead (Gillespie 2001's estimated
    midpoint), rounded to whole counts and never below zero, at the leap's middle time.

    Rates held at the leap's start bias tau-leaping by O(step); at N = 10 000 (SIR,
    R0 = 2) they put the major outbreaks' final sizes 0.3% of N above the exact ones,
    the midpoint rates 0.02% (not detectable with 2000 members)."""
    drift = jnp.einsum("fc,fg->cg", jnp.asarray(sys.stoich, rates.dtype), rates)
    y_mid = jnp.maximum(s.y + jnp.round(0.5 * h * drift).astype(jnp.int32), 0)
    return _propensities(sys, s.t + 0.5 * h, y_mid, p, varying)


def _adaptive_member(sys: _System, varying: dict, epsilon: float, max_events: Array,
                     ts: Array, key: Array, y0: Array, p: dict):
    """Adaptive tau-leaping for one member: each step leaps by Cao et al.'s
    :func:`_cgp_tau` (at most to the end of the save interval), or, when fewer than
    :data:`_EXACT_BELOW` events are expected in that leap, takes up to :data:`_EXACT_RUN`
    exact events (Gillespie's direct method) before choosing again, as Cao et al. do.
    Leaps draw Poisson counts at the rates of the estimated midpoint
    (:func:`_midpoint_rates`), clipped at the people present, so no compartment goes
    negative. A member stops (flagged ``capped``) once it has ``max_events`` events."""

    def advance(s: _State, t_end: Array):
        def exact_run(s: _State, go: Array) -> _State:
            def body(c):
                k, s = c
                a = _propensities(sys, s.t, s.y, p, varying)
                s, rng = _exact_event(sys, s, a, t_end, max_events, s.rng[1])
                return k + 1, s._replace(rng=(s.rng[0], rng))

            cond = lambda c: go & (c[0] < _EXACT_RUN) & (c[1].t < t_end)  # noqa: E731
            return jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), s))[1]

        def body(s: _State) -> _State:
            rates = _propensities(sys, s.t, s.y, p, varying)
            tau = _cgp_tau(sys, s.y, rates, epsilon)
            leap = (rates.sum() * tau >= _EXACT_BELOW) & (s.events < max_events)
            h = jnp.where(leap, jnp.minimum(tau, t_end - s.t), 0.0)
            mid = _midpoint_rates(sys, s, rates, h, p, varying)
            moves, rng_leap = _leap_moves(sys, s.rng[0], mid, s.y, h, "tau_leap")
            lp = _apply(sys, s, moves)._replace(
                t=jnp.where(h >= t_end - s.t, t_end, s.t + h), comp=jnp.zeros_like(s.comp),
                steps=s.steps + 1)
            s = _select(leap, lp, s)._replace(rng=(rng_leap, s.rng[1]))
            return exact_run(s, ~leap)

        s = jax.lax.while_loop(lambda s: s.t < t_end, body, s)
        return s, (s.y, s.counts)

    key, k_out, k_in, k_ssa = jr.split(key, 4)
    rng = (_leap_streams(sys, k_out, k_in), _seed_streams(k_ssa, ()))
    init = _initial_state(sys, ts[0], y0, key, rng)
    final, (ys, counts) = jax.lax.scan(advance, init, ts[1:])
    return _with_start(final, y0, ys, counts)
