r"""Stochastic simulation of flow-defined models: exact, tau-leaping and chain-binomial.

Every flow of a :class:`~epinn.Model` is read as an *event channel*: in a small time
:math:`dt` flow :math:`f` moves one person from its source to its target with probability
:math:`r_f(t, y)\, dt`, where :math:`r_f` is the flow's rate (its *propensity*) at the
current integer counts :math:`y`. In a stratified model every flow in every group is its own
channel. The mean of this Markov jump process follows the model's ODE when the population
is large; small outbreaks differ from it: they can fizzle out, and their final size has a
distribution. Three simulators, all vectorised over a leading ensemble axis, driven by a
``jax.random`` key, and usable under ``jax.jit`` and ``jax.vmap``:

* ``method="exact"``: Gillespie's direct method (event by event). Between events the
  rates are held at their value at the last event, or the last time in ``ts``: exact for
  constant rates, the usual piecewise-constant approximation for rates that are functions
  of time (add times to ``ts`` to refine it).
* ``method="tau_leap"``: fixed steps of at most ``dt``; the number of people leaving a
  compartment in a step is a Poisson draw with mean (total outflow rate) x step, clipped
  at the compartment's count, and split among the competing flows multinomially.
* ``method="chain_binomial"``: discrete time with steps of at most ``dt``; each of the
  :math:`y_c` people in compartment :math:`c` leaves with probability
  :math:`1 - e^{-h_c\,dt}`, :math:`h_c = \sum_f r_f / y_c` the per-capita rate of the flows
  out of :math:`c`, and the leavers are split among them multinomially (with probabilities
  :math:`r_f / \sum r_f`). The Reed-Frost model is the SIR case with ``dt = 1``,
  :math:`\beta = -N \log(1 - p)` and a recovery rate so large that :math:`e^{-\gamma}` is 0.

In both approximate methods inflows from outside the population (births, imports) are
Poisson draws with mean rate x step. No compartment ever goes negative: a channel whose
source compartment is empty has no propensity, and in a leap at most the people present
leave.

Summaries with Monte Carlo standard errors: :func:`extinction_probability`,
:func:`final_size_distribution`, :func:`peaks`, :func:`outbreak_summary`; and
:func:`plot_ensemble` draws quantile bands beside the deterministic curve.

Examples:
    >>> import jax
    >>> from epinn.compartmental import SIR
    >>> sim = simulate(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 50.0},
    ...                {"S": 49, "I": 1, "R": 0}, [0.0, 5.0, 50.0],
    ...                key=jax.random.key(0), n=8)
    >>> sim.ys.shape, sim.ys.dtype, bool((sim.ys.sum(-1) == 50).all())
    ((8, 3, 3), dtype('int32'), True)

References:
    D. T. Gillespie (1977), Exact stochastic simulation of coupled chemical reactions,
    J. Phys. Chem. 81, 2340-2361. D. T. Gillespie (2001), Approximate accelerated
    stochastic simulation of chemically reacting systems, J. Chem. Phys. 115, 1716-1733.
    H. Andersson and T. Britton (2000), Stochastic Epidemic Models and Their Statistical
    Analysis, Springer (final sizes, Reed-Frost, the probability of a minor outbreak).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike

from .flows import Model

__all__ = [
    "METHODS",
    "Estimate",
    "FinalSizeDistribution",
    "OutbreakSummary",
    "Peaks",
    "StochasticTrajectory",
    "extinction_probability",
    "final_size_distribution",
    "final_sizes",
    "outbreak_summary",
    "peaks",
    "plot_ensemble",
    "simulate",
]

METHODS = ("exact", "tau_leap", "chain_binomial")
"""The simulators of :func:`simulate`."""

_INT_MAX = np.iinfo(np.int32).max
_RATE_CHECK_TIMES = 64


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


class StochasticTrajectory(eqx.Module):
    """An ensemble of stochastic simulations (a pytree), returned by :func:`simulate`.

    Attributes:
        ts: the save times ``(T,)``.
        ys: integer counts ``(M, T, C)`` (``(M, T, C, G)`` with groups), int32.
        counts: cumulative number of events of each flow since ``ts[0]``, ``(M, T, F)``
            (``(M, T, F, G)`` with groups), int32; the counts of flow ``f`` over
            :math:`(t_{k-1}, t_k]` are ``counts[:, k, f] - counts[:, k - 1, f]``.
        events: ``(M,)`` the number of events (people moved) per member.
        capped: ``(M,)`` whether a member stopped at ``max_events`` (its states from then
            on are frozen); always ``False`` for the approximate methods.
        compartments: compartment names (static).
        flow_names: flow names (static).
        infection_flows: which flows are infections (static).
        infected: the infected compartments (static).
        method: the simulator used (static).
    """

    ts: Array
    ys: Array
    counts: Array
    events: Array
    capped: Array
    compartments: tuple[str, ...] = eqx.field(static=True)
    flow_names: tuple[str, ...] = eqx.field(static=True)
    infection_flows: tuple[bool, ...] = eqx.field(static=True)
    infected: tuple[str, ...] = eqx.field(static=True)
    method: str = eqx.field(static=True)

    @property
    def n_members(self) -> int:
        """Number of simulated members ``M``."""
        return self.ys.shape[0]

    def __getitem__(self, name: str) -> Array:
        """Counts of one compartment, ``(M, T)`` (``(M, T, G)`` with groups)."""
        if name not in self.compartments:
            raise KeyError(f"No compartment {name!r}; the compartments are {self.compartments}.")
        return self.ys[:, :, self.compartments.index(name)]

    def flow_count(self, name: str) -> Array:
        """Cumulative events of flow ``name`` since ``ts[0]``, ``(M, T)`` (or ``(M, T, G)``)."""
        if name not in self.flow_names:
            raise KeyError(f"No flow {name!r}; the flows are {self.flow_names}.")
        return self.counts[:, :, self.flow_names.index(name)]


# --------------------------------------------------------------------------------------
# Checks before compilation
# --------------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _is_function(v: Any) -> bool:
    """A rate given as a function of time (a callable or an object with ``evaluate``)."""
    if isinstance(v, (np.ndarray, jax.Array, int, float, np.generic)):
        return False
    return callable(v) or hasattr(v, "evaluate")


def _evaluate(v: Any, t: Any) -> Any:
    return v.evaluate(t) if hasattr(v, "evaluate") else v(t)


class _Values(Mapping):
    """Read-only access by attribute and key (``y.S``, ``p["beta"]``), for rate functions."""

    __slots__ = ("_d",)

    def __init__(self, d: Mapping[str, Any]):
        object.__setattr__(self, "_d", dict(d))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not defined; the names are {tuple(self._d)}.") \
                from None

    def __getitem__(self, name: str) -> Any:
        return self._d[name]

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


def _as_array(v: Any, what: str) -> Any:
    """A concrete value as a NumPy float64 array (for the checks), a tracer unchanged."""
    if _is_tracer(v):
        return v
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{what}` must be a number or an array of numbers; got {type(v)}.") \
            from e


def _check_finite(a: Any, what: str, *, positive: bool = False) -> None:
    if _is_tracer(a):
        return
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{what}` must be finite; got {a}.")
    if positive and np.any(a <= 0):
        raise ValueError(f"`{what}` must be positive; got {a}.")
    if not positive and np.any(a < 0):
        raise ValueError(f"`{what}` must be non-negative; got {a}.")


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be an epinn.Model (such as SIR(), or your own); "
                        f"got {model!r}.")


def _normalize_params(model: Model, params: Any) -> tuple[dict, dict, int | None]:
    """Split ``params`` into constants (declared shape, optional leading ensemble axis) and
    functions of time; return ``(constants, functions, ensemble size or None)``."""
    if hasattr(params, "_asdict"):
        params = params._asdict()
    if not isinstance(params, Mapping):
        raise TypeError(f"`params` must be a mapping of the rates and `N`; got {type(params)}.")
    expected = (*model.rate_names, "N")
    missing = [k for k in expected if k not in params]
    unknown = [k for k in params if k not in expected]
    if missing:
        raise ValueError(f"`params` is missing {missing} for {model.name}; expected {expected}.")
    if unknown:
        raise ValueError(f"`params` has unknown keys {unknown} for {model.name}; "
                         f"expected {expected}.")
    shapes = model.param_shapes
    const, varying, members = {}, {}, None
    for k in expected:
        what = f"params['{k}']"
        v = params[k]
        if _is_function(v):
            if k == "N":
                raise ValueError("`params['N']` must be a constant population, not a function.")
            varying[k] = v
            continue
        a = _as_array(v, what)
        shape = shapes[k]
        if a.ndim == 0 and shape:
            a = np.broadcast_to(a, shape) if not _is_tracer(a) else jnp.broadcast_to(a, shape)
        if a.shape == shape:
            batch = None
        elif a.ndim == len(shape) + 1 and a.shape[1:] == shape:
            batch = a.shape[0]
        else:
            raise ValueError(f"`{what}` must be a scalar or have the declared shape {shape}, "
                             f"optionally after one ensemble axis; got shape {a.shape}.")
        if k == "N" and model.groups is not None and jnp.ndim(params[k]) == 0:
            raise ValueError(f"`params['N']` must hold the size of each of the {model.n_groups} "
                             f"groups {model.groups}; got a scalar.")
        _check_finite(a, what, positive=(k == "N"))
        members = _merge_members(members, batch, what)
        const[k] = a
    return const, varying, members


def _merge_members(members: int | None, batch: int | None, what: str) -> int | None:
    if batch is None or members is None or batch == members:
        return members if batch is None else batch
    raise ValueError(f"`{what}` has an ensemble axis of {batch} members; other inputs have "
                     f"{members}.")


def _normalize_y0(model: Model, y0: Any) -> tuple[Any, int | None]:
    """``y0`` as counts ``(C, G)`` or ``(M, C, G)``: non-negative integers."""
    C, G = model.compartments, model.n_groups
    grouped = model.groups is not None
    if isinstance(y0, Mapping):
        unknown = [k for k in y0 if k not in C]
        missing = [k for k in C if k not in y0]
        if unknown or missing:
            raise ValueError(f"`y0` must name every compartment {C} once; missing {missing}, "
                             f"unknown {unknown}.")
        cols = [_as_array(y0[k], f"y0['{k}']") for k in C]
        xp = jnp if _is_tracer(cols) else np
        if grouped:
            cols = [xp.broadcast_to(c, (G,)) if jnp.ndim(c) == 0 else c for c in cols]
        try:
            shape = np.broadcast_shapes(*(jnp.shape(c) for c in cols))
        except ValueError:
            raise ValueError(f"`y0`'s entries have incompatible shapes "
                             f"{[jnp.shape(c) for c in cols]}.") from None
        a = xp.stack([xp.broadcast_to(c, shape) for c in cols], axis=-1 - grouped)
    else:
        a = _as_array(y0, "y0")
    want = (len(C), G) if grouped else (len(C),)
    if a.shape[a.ndim - len(want):] != want or a.ndim > len(want) + 1:
        raise ValueError(f"`y0` must have shape {want} (compartments {C}"
                         f"{f' by {G} groups' if grouped else ''}), optionally after one "
                         f"ensemble axis; got shape {a.shape}.")
    batch = a.shape[0] if a.ndim == len(want) + 1 else None
    if not _is_tracer(a):
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"`y0` must hold non-negative counts; got {a}.")
        if np.any(a != np.round(a)):
            raise ValueError(f"`y0` must hold whole numbers of people (integer counts); "
                             f"got {a}.")
        if np.any(a > _INT_MAX):
            raise ValueError(f"`y0` counts must fit in int32 (at most {_INT_MAX}).")
    if not grouped:
        a = a[..., None]
    return a, batch


def _check_total(model: Model, y0: Any, N: Any) -> None:
    """The compartments hold the whole population: each group's counts sum to ``N``
    (as :func:`epinn.solve` requires; a different total would describe another epidemic)."""
    if _is_tracer((y0, N)):
        return
    total = np.asarray(y0).sum(-2)  # (..., G)
    n = np.asarray(N)
    n = n if model.groups is not None else n[..., None]
    if np.any(np.abs(total - n) > 1e-6 * n):
        side = "more" if np.any(total > n * (1 + 1e-6)) else "less"
        raise ValueError(f"`y0` sums to {np.squeeze(total)}, {side} than the population "
                         f"params['N'] = {np.squeeze(n)}: the compartments must hold the "
                         "whole population (counts of people, N the population size).")


def _normalize_ts(ts: Any) -> Any:
    a = _as_array(ts, "ts")
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"`ts` must be a 1-D array of at least 2 times; got shape {a.shape}.")
    if not _is_tracer(a):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`ts` must be finite; got {a}.")
        if not np.all(np.diff(a) > 0):
            raise ValueError(f"`ts` must be strictly increasing; got {a}.")
    return a


def _check_key(key: Any) -> None:
    ok = isinstance(key, jax.Array) and (
        (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
        or (key.dtype == jnp.uint32 and key.shape == (2,)))
    if not ok:
        raise TypeError(f"`key` must be one jax.random key (jax.random.key(0) or "
                        f"jax.random.PRNGKey(0)); got {key!r}.")


def _check_options(method: Any, dt: Any, max_events: Any, n: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method == "exact":
        if dt is not None:
            raise ValueError("`dt` is a step of the approximate methods; the exact method "
                             "takes none (leave dt=None).")
    else:
        if dt is None:
            raise ValueError(f"`dt` (the step) is required by method={method!r}.")
        if not _is_tracer(dt):
            d = _as_array(dt, "dt")
            if d.ndim != 0 or not np.isfinite(d) or d <= 0:
                raise ValueError(f"`dt` must be a positive finite number; got {dt!r}.")
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) \
            or not 1 <= max_events <= _INT_MAX:
        raise ValueError(f"`max_events` must be an int from 1 to {_INT_MAX}; "
                         f"got {max_events!r}.")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"`n` (the number of members) must be a positive int; got {n!r}.")


def _check_initial_rates(model: Model, const: dict, varying: dict, y0: Any, ts: Any,
                         members: int) -> None:
    """Every rate must be finite and non-negative at each member's initial state at
    ``ts[0]``; rates given as functions of time at the first member's initial state at
    :data:`_RATE_CHECK_TIMES` times over ``[ts[0], ts[-1]]`` too. Evaluated on the host
    (plain NumPy where the rate functions allow), so a bad rate is reported before any
    compilation."""
    if _is_tracer((const, y0, ts)) or any(_is_tracer(v) for v in varying.values()):
        return
    shapes = model.param_shapes
    grouped = model.groups is not None

    def member(i: int, t: float) -> tuple[dict, dict]:
        y = y0[i] if y0.ndim == 3 else y0
        ys = {c: (y[j] if grouped else y[j, 0]) for j, c in enumerate(model.compartments)}
        p = {k: (v[i] if v.ndim == len(shapes[k]) + 1 else v) for k, v in const.items()}
        for k, v in varying.items():
            p[k] = np.asarray(_evaluate(v, t))
        return ys, p

    def fail(f, r, i, t):
        at = f"member {i}'s initial state" if distinct > 1 else "the initial state"
        raise ValueError(
            f"The rate of flow {f.name!r} evaluates to {r} at {at} and t={t:g}: rates "
            "(propensities) must be finite and non-negative; check `params`, `y0` and the "
            "rate function.")

    def bad(r):
        return ~np.isfinite(r) | (r < 0)

    distinct = members if (y0.ndim == 3 or any(
        v.ndim == len(shapes[k]) + 1 for k, v in const.items())) else 1
    checked = False
    if distinct > 1 and not grouped and all(shapes[k] == () for k in const):
        # all members at once: elementwise rates broadcast over a leading members axis
        t0 = float(ts[0])
        ys = {c: np.broadcast_to(y0[..., j, 0], (members,))
              for j, c in enumerate(model.compartments)}
        p = {k: np.broadcast_to(v, (members,)) for k, v in const.items()}
        p.update({k: np.asarray(_evaluate(v, t0)) for k, v in varying.items()})
        try:
            rs = [np.asarray(f.rate(t0, _Values(ys), _Values(p)), np.float64)
                  for f in model.flows]
        except Exception:  # noqa: BLE001 (a rate that does not broadcast: one by one)
            rs = None
        if rs is not None and all(r.shape in ((), (members,)) for r in rs):
            for f, r in zip(model.flows, rs):
                r = np.broadcast_to(r, (members,))
                if np.any(bad(r)):
                    i = int(np.argmax(bad(r)))
                    fail(f, r[i], i, t0)
            checked = True
    points = [] if checked else [(i, float(ts[0])) for i in range(distinct)]
    if varying:
        grid = np.union1d(ts, np.linspace(ts[0], ts[-1], _RATE_CHECK_TIMES))
        points += [(0, float(t)) for t in grid]
    for i, t in points:
        ys, p = member(i, t)
        for f in model.flows:
            r = np.asarray(f.rate(t, _Values(ys), _Values(p)), dtype=np.float64)
            if np.any(bad(r)):
                fail(f, r, i, t)


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


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


def _exact_member(sys: _System, varying: dict, max_events: Array, ts: Array,
                  key: Array, y0: Array, p: dict):
    """Gillespie's direct method for one member, saving at ``ts``.

    Each save interval runs its own loop: when the next event would fall after the
    interval's end the state is saved and the clock restarts there (exact for constant
    rates, the waiting time being memoryless), which also re-evaluates time-varying rates.
    The two uniforms of each event come from a xoshiro128** stream seeded from ``key``;
    the clock is summed with Kahan's compensation, so that float32 keeps the time of
    millions of short waits.
    """
    delta = jnp.asarray(sys.delta)
    F, G = sys.F, sys.G

    def advance(s: _State, t_end: Array):
        def body(s: _State) -> _State:
            rng, u0 = _xoshiro128ss(s.rng)
            rng, u1 = _xoshiro128ss(rng)
            u = _unit_interval(jnp.stack([u0, u1]), ts.dtype)
            a = _propensities(sys, s.t, s.y, p, varying).reshape(-1)
            cum = jnp.cumsum(a)
            total = cum[-1]
            wait = -jnp.log1p(-u[0]) / total - s.comp  # inf when nothing can happen
            t_next = s.t + wait
            due = t_next <= t_end
            fire = due & (s.events < max_events)
            k = jnp.argmax(cum > u[1] * total)
            y = s.y + jnp.where(fire, delta[k], 0).reshape(s.y.shape)
            counts = s.counts.reshape(-1).at[k].add(fire.astype(jnp.int32)).reshape(F, G)
            comp = jnp.where(fire, (t_next - s.t) - wait, 0.0)
            return _State(jnp.where(fire, t_next, t_end), comp, y, counts,
                          s.events + fire.astype(jnp.int32), s.capped | (due & ~fire), s.key,
                          rng)

        s = jax.lax.while_loop(lambda s: s.t < t_end, body, s)
        return s, (s.y, s.counts)

    zero = jnp.zeros((F, G), jnp.int32)
    init = _State(ts[0], jnp.zeros_like(ts[0]), y0, zero, jnp.zeros((), jnp.int32),
                  jnp.zeros((), bool), key, _seed_streams(key, ()))
    final, (ys, counts) = jax.lax.scan(advance, init, ts[1:])
    ys = jnp.concatenate([y0[None], ys])
    counts = jnp.concatenate([zero[None], counts])
    return ys, counts, final.events, final.capped


def _rotl(x: Array, k: int) -> Array:
    return (x << jnp.uint32(k)) | (x >> jnp.uint32(32 - k))


def _xoshiro128ss(s: Array) -> tuple[Array, Array]:
    """One step of xoshiro128** (Blackman & Vigna 2018): ``(new state, 32 random bits)``.

    ``s`` is the ``(4,)`` uint32 state (not all zero). Used for the per-event uniforms of
    the exact method, where threefry per event cost about as much as the rest of the
    event; each member's state is seeded from its ``jax.random`` key by threefry.
    """
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    out = _rotl(s1 * jnp.uint32(5), 7) * jnp.uint32(9)
    t = s1 << jnp.uint32(9)
    s2 = s2 ^ s0
    s3 = s3 ^ s1
    s1 = s1 ^ s2
    s0 = s0 ^ s3
    s2 = s2 ^ t
    s3 = _rotl(s3, 11)
    return jnp.stack([s0, s1, s2, s3]), out


def _seed_streams(key: Array, shape: tuple[int, ...]) -> Array:
    """``(4, *shape)`` xoshiro128** states from a ``jax.random`` key (none all zero)."""
    seed = jr.bits(key, (4, *shape), jnp.uint32)
    return seed.at[0].set(jnp.where(jnp.all(seed == 0, axis=0), jnp.uint32(1), seed[0]))


def _uniform(rng: Array, dtype) -> tuple[Array, Array]:
    rng, bits = _xoshiro128ss(rng)
    return rng, _unit_interval(bits, dtype)


def _poisson(rng: Array, lam: Array) -> tuple[Array, Array]:
    r"""Poisson draws with means ``lam`` (any shape; streams ``rng``: ``(4, *lam.shape)``).

    Inversion (sequential search) for :math:`\lambda < 10`, and Hörmann's transformed
    rejection with squeeze (PTRS) above, the two algorithms of ``jax.random.poisson``,
    here on xoshiro128** uniforms so that a draw costs a few arithmetic operations.

    References:
        W. Hörmann (1993), The transformed rejection method for generating Poisson random
        variables, Insurance: Mathematics and Economics 12, 39-45.
    """
    dtype = lam.dtype
    small = lam < 10
    rng, u = _uniform(rng, dtype)
    ls = jnp.where(small, lam, 0.0)

    def inv_go(c):
        k, p, F = c
        return small & (u > F) & (k < 200)

    def inv_body(c):
        k, p, F = c
        go = inv_go(c)
        k1 = k + go
        p1 = jnp.where(go, p * ls / jnp.maximum(k1, 1), p)
        return k1, p1, jnp.where(go, F + p1, F)

    p0 = jnp.exp(-ls)
    k_small, _, _ = jax.lax.while_loop(lambda c: jnp.any(inv_go(c)), inv_body,
                                       (jnp.zeros_like(lam), p0, p0))
    ll = jnp.where(small, 10.0, lam)
    log_l = jnp.log(ll)
    b = 0.931 + 2.53 * jnp.sqrt(ll)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)

    def rej_body(c):
        rng, k, done = c
        rng, U = _uniform(rng, dtype)
        rng, V = _uniform(rng, dtype)
        U = U - 0.5
        us = 0.5 - jnp.abs(U)
        kk = jnp.floor((2 * a / us + b) * U + ll + 0.43)
        squeeze = (us >= 0.07) & (V <= vr)
        reject = (kk < 0) | ((us < 0.013) & (V > us))
        lhs = jnp.log(V) + jnp.log(inv_alpha) - jnp.log(a / (us * us) + b)
        rhs = -ll + kk * log_l - jax.lax.lgamma(kk + 1)
        accept = squeeze | (~reject & (lhs <= rhs))
        new = ~done & accept
        return rng, jnp.where(new, kk, k), done | accept

    rng, k_large, _ = jax.lax.while_loop(lambda c: jnp.any(~c[2]), rej_body,
                                         (rng, jnp.zeros_like(lam), small))
    return rng, jnp.where(small, k_small, k_large)


_STIRLING_TAIL = np.array([0.0810614667953272, 0.0413406959554092, 0.0276779256849983,
                           0.02079067210376509, 0.0166446911898211, 0.0138761288230707,
                           0.0118967099458917, 0.0104112652619720, 0.00925546218271273,
                           0.00833056343336287])


def _stirling_tail(k: Array) -> Array:
    r""":math:`\log k! - [(k + 1/2)\log(k + 1) - (k + 1) + \log\sqrt{2\pi}]` (tabled to 9)."""
    kc = jnp.clip(k, 0.0, 9.0)
    kp1sq = (kc + 1) * (kc + 1)
    approx = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (kc + 1)
    table = jnp.asarray(_STIRLING_TAIL, k.dtype)[jnp.floor(kc).astype(jnp.int32)]
    return jnp.where(k <= 9, table, approx)


def _binomial(rng: Array, n: Array, p: Array) -> tuple[Array, Array]:
    r"""Binomial draws ``Bin(n, p)`` (any shape; streams ``rng`` of ``(4, *n.shape)``).

    With :math:`q = \min(p, 1 - p)`: for :math:`nq \le 10` the count of geometric waiting
    times that fit in ``n`` trials (inversion), above Hörmann's transformed rejection
    (BTRS), the algorithms of ``jax.random.binomial``, on xoshiro128** uniforms.

    References:
        W. Hörmann (1993), The generation of binomial random variates, J. Statist.
        Comput. Simul. 46, 101-110.
    """
    dtype = p.dtype
    n = jnp.floor(jnp.broadcast_to(n, p.shape).astype(dtype))
    flip = p >= 0.5
    q = jnp.clip(jnp.where(flip, 1.0 - p, p), 0.0, 0.5)
    trivial = (q <= 0) | (n <= 0)
    inversion = ~trivial & (n * q <= 10.0)
    log1mq = jnp.log1p(-jnp.where(inversion, q, 0.5))

    def inv_body(c):
        rng, i, count, total = c
        go = inversion & (total <= n)
        rng, u = _uniform(rng, dtype)
        count = count + go
        total = jnp.where(go, total + jnp.ceil(jnp.log(u) / log1mq), total)
        return rng, i + 1, count, total

    rng, _, count, _ = jax.lax.while_loop(
        lambda c: jnp.any(inversion & (c[3] <= n)) & (c[1] < 1000), inv_body,
        (rng, jnp.zeros((), jnp.int32), jnp.zeros_like(q), jnp.zeros_like(q)))
    k_inv = jnp.maximum(count - 1, 0.0)

    rejection = ~trivial & ~inversion
    nb = jnp.where(rejection, n, 1e4)
    qb = jnp.where(rejection, q, 0.5)
    sd = jnp.sqrt(nb * qb * (1 - qb))
    b = 1.15 + 2.53 * sd
    a = -0.0873 + 0.0248 * b + 0.01 * qb
    c0 = nb * qb + 0.5
    v_r = 0.92 - 4.2 / b
    r = qb / (1 - qb)
    alpha = (2.83 + 5.1 / b) * sd
    m = jnp.floor((nb + 1) * qb)

    def rej_body(c):
        rng, k_out, done = c
        rng, u = _uniform(rng, dtype)
        rng, v = _uniform(rng, dtype)
        u = u - 0.5
        us = 0.5 - jnp.abs(u)
        k = jnp.floor((2 * a / us + b) * u + c0)
        squeeze = (us >= 0.07) & (v <= v_r)
        reject = (k < 0) | (k > nb)
        lv = jnp.log(v * alpha / (a / (us * us) + b))
        ub = ((m + 0.5) * jnp.log((m + 1) / (r * (nb - m + 1)))
              + (nb + 1) * jnp.log((nb - m + 1) / (nb - k + 1))
              + (k + 0.5) * jnp.log(r * (nb - k + 1) / (k + 1))
              + _stirling_tail(m) + _stirling_tail(nb - m)
              - _stirling_tail(k) - _stirling_tail(nb - k))
        accept = squeeze | (~reject & (lv <= ub))
        return rng, jnp.where(~done & accept, k, k_out), done | accept

    rng, k_rej, _ = jax.lax.while_loop(lambda c: jnp.any(~c[2]), rej_body,
                                       (rng, jnp.zeros_like(q), ~rejection))
    k = jnp.where(trivial, 0.0, jnp.where(inversion, k_inv, k_rej))
    return rng, jnp.where(flip, n - k, k)


def _unit_interval(bits: Array, dtype) -> Array:
    """Uniforms on :math:`[0, 1)` from 32-bit words (their top 24 bits)."""
    return (bits >> jnp.uint32(8)).astype(dtype) * jnp.asarray(2.0**-24, dtype)


def _leap_moves(sys: _System, rng: tuple, t: Array, y: Array, h: Array, p: dict,
                varying: dict, method: str) -> tuple[Array, tuple, Array]:
    """``(F, G)`` events of one step of length ``h`` (tau-leap or chain binomial), the new
    streams, and whether no rate was positive.

    One vectorised draw for the people leaving every compartment, ``K - 1`` for the
    multinomial split among at most ``K`` competing flows (conditional binomials), and one
    for the inflows, from the xoshiro128** streams ``rng`` (leaving and split, inflows).
    """
    rng_out, rng_in = rng
    rates = _propensities(sys, t, y, p, varying)
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
    idle = ~jnp.any(rates > 0)
    return jnp.round(moves[:sys.F]).astype(jnp.int32), (rng_out, rng_in), idle


def _leap_member(sys: _System, varying: dict, method: str, dt: Array, ts: Array,
                 key: Array, y0: Array, p: dict):
    """Tau-leaping or chain binomial for one member: in each save interval
    ``ceil(length / dt)`` equal steps (of at most ``dt``). A step at which no rate is
    positive ends the interval (as in the exact method: nothing can happen until the rates
    are evaluated again at the next saved time)."""
    stoich = jnp.asarray(sys.stoich)

    def advance(s: _State, t_end: Array):
        n = jnp.maximum(jnp.ceil((t_end - s.t) / dt * (1 - 1e-5)), 1.0)
        h = (t_end - s.t) / n

        def step(c):
            i, idle, s = c
            moves, rng, idle = _leap_moves(sys, s.rng, s.t + i * h, s.y, h, p, varying, method)
            y = s.y + jnp.einsum("fc,fg->cg", stoich, moves)
            return i + 1, idle, s._replace(y=y, counts=s.counts + moves, rng=rng,
                                           events=s.events + moves.sum())

        _, _, s = jax.lax.while_loop(lambda c: (c[0] < n) & ~c[1], step,
                                     (jnp.zeros((), n.dtype), jnp.zeros((), bool), s))
        s = s._replace(t=t_end)
        return s, (s.y, s.counts)

    zero = jnp.zeros((sys.F, sys.G), jnp.int32)
    key, k_out, k_in = jr.split(key, 3)
    rng = (_seed_streams(k_out, (len(sys.out_comp), sys.G)),
           _seed_streams(k_in, (len(sys.inflows), sys.G)))
    init = _State(ts[0], jnp.zeros_like(ts[0]), y0, zero, jnp.zeros((), jnp.int32),
                  jnp.zeros((), bool), key, rng)
    final, (ys, counts) = jax.lax.scan(advance, init, ts[1:])
    ys = jnp.concatenate([y0[None], ys])
    counts = jnp.concatenate([zero[None], counts])
    return ys, counts, final.events, final.capped


@eqx.filter_jit
def _run(model: Model, method: str, max_events: Array, members: int, key: Array, y0: Array,
         const: dict, varying: dict, ts: Array, dt: Array | None):
    sys = _system(model)
    shapes = model.param_shapes
    dtype = _float_dtype()
    ts = ts.astype(dtype)
    y0 = y0.astype(jnp.int32)
    const = {k: jnp.asarray(v, dtype) for k, v in const.items()}
    p_axes = {k: 0 if v.ndim == len(shapes[k]) + 1 else None for k, v in const.items()}
    y_axis = 0 if y0.ndim == 3 else None
    if method == "exact":
        member = lambda k, y, p: _exact_member(sys, varying, max_events, ts, k, y, p)  # noqa: E731
    else:
        step = jnp.asarray(dt, dtype)
        member = lambda k, y, p: _leap_member(sys, varying, method, step, ts, k, y, p)  # noqa: E731
    keys = jr.split(key, members)
    ys, counts, events, capped = jax.vmap(member, in_axes=(0, y_axis, p_axes))(keys, y0, const)
    if model.groups is None:
        ys, counts = ys[..., 0], counts[..., 0]
    return ys, counts, events, capped


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
) -> StochasticTrajectory:
    r"""Simulate an ensemble of stochastic epidemics of a flow-defined model.

    Each flow :math:`f` (in each group) is an event channel with propensity
    :math:`a_f = r_f(t, y)`, its rate at the integer state :math:`y`. Gillespie's direct
    method (``"exact"``) draws the waiting time to the next event
    :math:`\tau \sim \mathrm{Exp}(a_0)`, :math:`a_0 = \sum_f a_f`, and the channel with
    probability :math:`a_f / a_0`. ``"tau_leap"`` and ``"chain_binomial"`` advance in
    steps of at most ``dt`` (see :mod:`epinn.stochastic`). Members share the model and
    ``ts``; member ``m`` draws from ``jax.random.split(key, M)[m]``, which seeds the
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
            ``ceil(length / dt)`` equal steps); must be ``None`` for ``"exact"``.
        max_events: per-member cap on the number of events of the exact method; a member
            that reaches it is frozen and flagged in ``capped``.

    Returns:
        :class:`StochasticTrajectory`: ``ys (M, T, C)`` (``(M, T, C, G)`` with groups)
        int32 counts at ``ts``, cumulative flow ``counts``, ``events`` and ``capped``.

    Raises:
        ValueError: bad names, shapes or values (non-integer or negative ``y0``, a
            non-positive ``dt``, ``ts`` not increasing, a rate that evaluates negative at
            the initial state), checked before anything is compiled. Under ``jax.jit``
            only shapes are checked; rates that turn negative inside the simulation count
            as zero.
        TypeError: wrong kinds of objects (``model``, ``key``).

    Examples:
        >>> import jax
        >>> from epinn.compartmental import SIR
        >>> p = {"beta": 2.0, "gamma": 1.0, "N": 100.0}
        >>> sim = simulate(SIR(), p, {"S": 99, "I": 1, "R": 0}, jnp.linspace(0, 30, 7),
        ...                key=jax.random.key(1), method="chain_binomial", dt=0.1, n=4)
        >>> sim.ys.shape, bool((sim.ys >= 0).all()), bool((sim.ys.sum(-1) == 100).all())
        ((4, 7, 3), True, True)
    """
    _check_model(model)
    _check_options(method, dt, max_events, n)
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
    ys, counts, events, capped = _run(model, method, jnp.asarray(max_events, jnp.int32),
                                      int(members), key,
                                      jnp.asarray(y0a), const, varying, jnp.asarray(tsa),
                                      None if dt is None else jnp.asarray(dt))
    return StochasticTrajectory(
        ts=jnp.asarray(tsa, _float_dtype()), ys=ys, counts=counts, events=events,
        capped=capped, compartments=model.compartments, flow_names=model.flow_names(),
        infection_flows=tuple(f.infection for f in model.flows), infected=model.infected,
        method=method)


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error."""

    value: Array
    se: Array


class FinalSizeDistribution(NamedTuple):
    """Empirical distribution of the final size: ``probability[k]`` of ``sizes[k]``."""

    sizes: Array
    probability: Array
    se: Array


class Peaks(NamedTuple):
    """Per member: the time and size of the largest saved value ``(M,)``."""

    time: Array
    size: Array


class OutbreakSummary(NamedTuple):
    """:func:`outbreak_summary`: extinction probability and major-outbreak means."""

    extinction: Estimate
    final_size: Estimate
    peak_time: Estimate
    peak_size: Estimate
    major: Array


def _check_sim(sim: Any) -> None:
    if not isinstance(sim, StochasticTrajectory):
        raise TypeError(f"`sim` must be the result of epinn.stochastic.simulate; got {type(sim)}.")


def _mean_se(x: Array, mask: Array | None = None) -> Estimate:
    """Mean and its standard error :math:`s/\\sqrt m` (over ``mask``; NaN if empty)."""
    x = jnp.asarray(x, _float_dtype())
    w = jnp.ones_like(x) if mask is None else mask.astype(x.dtype)
    m = w.sum()
    mean = (w * x).sum() / m
    var = (w * (x - mean) ** 2).sum() / jnp.maximum(m - 1, 1)
    return Estimate(mean, jnp.sqrt(var / m))


def final_sizes(sim: StochasticTrajectory) -> Array:
    r"""Number of new infections in each member by ``ts[-1]``, ``(M,)``.

    The events of the infection flows (all groups), not counting the initially infected.

    Examples:
        >>> import jax
        >>> from epinn.compartmental import SIR
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 10.0], key=jax.random.key(0), n=3)
        >>> final_sizes(sim).tolist()
        [0, 0, 0]
    """
    _check_sim(sim)
    idx = [i for i, inf in enumerate(sim.infection_flows) if inf]
    if not idx:
        raise ValueError("The model has no infection flow, so there is no final size.")
    last = sim.counts[:, -1][:, jnp.asarray(idx)]
    return last.reshape(last.shape[0], -1).sum(-1)


def _infected_now(sim: StochasticTrajectory) -> Array:
    """``(M, T)`` people in the infected compartments (all groups)."""
    idx = jnp.asarray([sim.compartments.index(c) for c in sim.infected])
    x = sim.ys[:, :, idx]
    return x.reshape(*x.shape[:2], -1).sum(-1)


def extinction_probability(sim: StochasticTrajectory, threshold: float) -> Estimate:
    r"""Probability of a minor outbreak: no one infected at ``ts[-1]`` and fewer than
    ``threshold`` new infections, with its standard error :math:`\sqrt{\hat p(1-\hat p)/M}`.

    In a large population the final sizes split into minor outbreaks (a few cases) and
    major ones (a fraction of ``N``); any ``threshold`` between the two modes gives the
    same answer. With :math:`k` initial infectives the branching-process approximation
    gives :math:`\min(1, 1/R_0)^k` for the SIR model.

    Examples:
        >>> import jax
        >>> from epinn.compartmental import SIR
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 50.0], key=jax.random.key(0), n=5)
        >>> [float(v) for v in extinction_probability(sim, threshold=3)]
        [1.0, 0.0]
    """
    _check_sim(sim)
    if not np.isscalar(threshold) or not threshold > 0:
        raise ValueError(f"`threshold` must be a positive number; got {threshold!r}.")
    minor = (_infected_now(sim)[:, -1] == 0) & (final_sizes(sim) < threshold)
    p = minor.mean(dtype=_float_dtype())
    return Estimate(p, jnp.sqrt(p * (1 - p) / minor.shape[0]))


def final_size_distribution(sim: StochasticTrajectory, length: int | None = None
                            ) -> FinalSizeDistribution:
    r"""Empirical distribution of :func:`final_sizes` with standard errors
    :math:`\sqrt{\hat p_k(1-\hat p_k)/M}`.

    Args:
        sim: the ensemble.
        length: number of sizes ``0 .. length - 1`` to report (static; default up to the
            largest observed; give it under ``jax.jit``).

    Examples:
        >>> import jax
        >>> from epinn.compartmental import SIR
        >>> sim = simulate(SIR(), {"beta": 0.0, "gamma": 1.0, "N": 10.0}, [9, 1, 0],
        ...                [0.0, 10.0], key=jax.random.key(0), n=4)
        >>> final_size_distribution(sim, length=2).probability.tolist()
        [1.0, 0.0]
    """
    x = final_sizes(sim)
    if length is None:
        length = int(np.asarray(x).max()) + 1
    p = jnp.bincount(x, length=length) / x.shape[0]
    return FinalSizeDistribution(jnp.arange(length), p, jnp.sqrt(p * (1 - p) / x.shape[0]))


def peaks(sim: StochasticTrajectory, compartments: Sequence[str] | str | None = None) -> Peaks:
    """Time and size of each member's peak over the saved times.

    Args:
        sim: the ensemble.
        compartments: the compartment(s) summed (all groups); default the infected ones.

    Returns:
        :class:`Peaks` with ``time`` and ``size``, each ``(M,)`` (the first maximum).
    """
    _check_sim(sim)
    names = sim.infected if compartments is None else (
        (compartments,) if isinstance(compartments, str) else tuple(compartments))
    unknown = [c for c in names if c not in sim.compartments]
    if unknown or not names:
        raise ValueError(f"`compartments` must name compartments of {sim.compartments}; "
                         f"got {compartments!r}.")
    x = sim.ys[:, :, jnp.asarray([sim.compartments.index(c) for c in names])]
    x = x.reshape(*x.shape[:2], -1).sum(-1)
    i = jnp.argmax(x, axis=1)
    return Peaks(sim.ts[i], jnp.take_along_axis(x, i[:, None], 1)[:, 0])


def outbreak_summary(sim: StochasticTrajectory, threshold: float) -> OutbreakSummary:
    r"""Extinction probability, and the mean final size, peak time and peak size of the
    major outbreaks (``final size >= threshold``), each with its Monte Carlo standard
    error (:math:`s/\sqrt{m}` over the :math:`m` major outbreaks; NaN when there are none).

    ``major`` is the ``(M,)`` mask of major outbreaks.
    """
    ext = extinction_probability(sim, threshold)
    size = final_sizes(sim)
    major = size >= threshold
    pk = peaks(sim)
    return OutbreakSummary(ext, _mean_se(size, major), _mean_se(pk.time, major),
                           _mean_se(pk.size, major), major)


def plot_ensemble(
    ax: Any,
    sim: StochasticTrajectory,
    compartment: str | None = None,
    *,
    deterministic: Any = None,
    quantiles: Sequence[float] = (0.05, 0.25),
    color: str = "C0",
    label: str = "stochastic",
) -> Any:
    """Draw the ensemble's median and quantile bands of one compartment on ``ax``.

    Bands between the quantiles ``q`` and ``1 - q`` for each ``q`` in ``quantiles``
    (summed over groups), the median as a line, and the deterministic curve (an
    :class:`epinn.Trajectory` from :func:`epinn.solve`) dashed beside it.

    Args:
        ax: a matplotlib ``Axes``.
        sim: the ensemble.
        compartment: default the first infected compartment.
        deterministic: optional deterministic trajectory of the same model.
        quantiles: lower quantiles of the bands, each below 0.5.
        color: colour of the bands and median.
        label: legend label of the median.

    Returns:
        ``ax``.
    """
    _check_sim(sim)
    name = compartment or (sim.infected[0] if sim.infected else sim.compartments[0])
    if name not in sim.compartments:
        raise ValueError(f"`compartment` must be one of {sim.compartments}; got {name!r}.")
    if any(not 0 < q < 0.5 for q in quantiles):
        raise ValueError(f"`quantiles` must lie in (0, 0.5); got {quantiles!r}.")
    x = np.asarray(sim[name], np.float64)
    x = x.reshape(*x.shape[:2], -1).sum(-1)
    ts = np.asarray(sim.ts)
    for i, q in enumerate(sorted(quantiles)):
        lo, hi = np.quantile(x, [q, 1 - q], axis=0)
        ax.fill_between(ts, lo, hi, color=color, alpha=0.15 + 0.15 * i, linewidth=0,
                        label=f"{100 * q:g}-{100 * (1 - q):g}%")
    ax.plot(ts, np.median(x, axis=0), color=color, label=f"{label} median")
    if deterministic is not None:
        d = np.asarray(deterministic[name], np.float64)
        d = d.reshape(d.shape[0], -1).sum(-1)
        ax.plot(np.asarray(deterministic.ts), d, "k--", label="deterministic")
    ax.set_xlabel("t")
    ax.set_ylabel(name)
    return ax

