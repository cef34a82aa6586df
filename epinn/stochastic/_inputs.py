"""Input checks of the stochastic simulators (private), run in plain Python before anything
is traced: names, shapes, whole non-negative counts, increasing times, non-negative rates.

Inside ``jax.jit`` (traced inputs) only shapes can be checked; the value checks are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..compartmental import Model
from ..compartmental._rates import _Namespace
from ..compartmental._validate import _check_values, _is_tracer

METHODS = ("exact", "tau_leap", "chain_binomial")
"""The simulators of :func:`epinn.stochastic.simulate`."""

_INT_MAX = np.iinfo(np.int32).max
_RATE_CHECK_TIMES = 64


def _is_function(v: Any) -> bool:
    """A rate given as a function of time (a callable or an object with ``evaluate``)."""
    if isinstance(v, (np.ndarray, jax.Array, int, float, np.generic)):
        return False
    return callable(v) or hasattr(v, "evaluate")


def _evaluate(v: Any, t: Any) -> Any:
    return v.evaluate(t) if hasattr(v, "evaluate") else v(t)


def _as_array(v: Any, what: str) -> Any:
    """A concrete value as a NumPy float64 array (for the checks), a tracer unchanged."""
    if _is_tracer(v):
        return v
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{what}` must be a number or an array of numbers; got {type(v)}.") \
            from e


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
        _check_values(a, what, positive=(k == "N"))
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


def _check_options(method: Any, dt: Any, max_events: Any, n: Any, epsilon: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method == "exact" and dt is not None:
        raise ValueError("`dt` is a step of the approximate methods; the exact method "
                         "takes none (leave dt=None).")
    if method == "chain_binomial" and dt is None:
        raise ValueError("`dt` (the step) is required by method='chain_binomial'.")
    if dt is not None and not _is_tracer(dt):
        d = _as_array(dt, "dt")
        if d.ndim != 0 or not np.isfinite(d) or d <= 0:
            raise ValueError(f"`dt` must be a positive finite number; got {dt!r}.")
    if epsilon is not None:
        if method != "tau_leap" or dt is not None:
            raise ValueError("`epsilon` sets the adaptive step of method='tau_leap' with "
                             "dt=None; leave it None otherwise.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) \
                or not 0 < epsilon < 1:
            raise ValueError(f"`epsilon` must be a number in (0, 1) (Cao et al. use 0.03); "
                             f"got {epsilon!r}.")
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
            rs = [np.asarray(f.rate(t0, _Namespace(ys), _Namespace(p)), np.float64)
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
            r = np.asarray(f.rate(t, _Namespace(ys), _Namespace(p)), dtype=np.float64)
            if np.any(bad(r)):
                fail(f, r, i, t)
