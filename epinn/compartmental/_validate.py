"""Checks of parameters, initial states and time grids, in plain Python before compilation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._rates import _float_dtype, _is_time_varying, _rates_at_times
from .model import Model

# Relative slack allowed when checking sum(y0) = N: float32 inputs such as N - I0, a
# population reported to a few digits, and finite-difference steps of 1e-4 in N or y0.
_SUM_RTOL = 1e-3

# --------------------------------------------------------------------------------------
# Validation (plain Python, before any compilation)
# --------------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(
            f"`model` must be an epinn.Model (such as SIR(), or your own); got {model!r}."
        )


def _as_mapping(params: Any) -> dict[str, Any]:
    if isinstance(params, Mapping):
        return dict(params)
    if hasattr(params, "_asdict"):
        return dict(params._asdict())
    raise TypeError(
        f"`params` must be a mapping (or the model's Params NamedTuple); got {type(params)}."
    )


def _normalize_params(
    model: Model, params: Any, *, max_ndim: int | None
) -> tuple[dict[str, Any], Array]:
    """Check names, shapes and (when concrete) values; return (rates, N) as arrays.

    Each value is a scalar (broadcast) or has the parameter's declared shape, with at most
    ``max_ndim`` leading ensemble axes. Time-varying rates are passed through unchanged.
    """
    p = _as_mapping(params)
    expected = (*model.rate_names, "N")
    missing = [k for k in expected if k not in p]
    unknown = [k for k in p if k not in expected]
    name = model.name
    if missing:
        raise ValueError(f"`params` is missing {missing} for {name}; expected keys {expected}.")
    if unknown:
        hint = _closest(unknown[0], expected)
        raise ValueError(
            f"`params` has unknown keys {unknown} for {name}; expected {expected}.{hint}"
        )
    shapes = model.param_shapes
    rates: dict[str, Any] = {}
    for k in model.rate_names:
        v = p[k]
        if _is_time_varying(v):
            rates[k] = v
            continue
        rates[k] = _declared_array(v, f"params['{k}']", shapes[k], max_ndim)
        _check_values(rates[k], f"params['{k}']", positive=False)
    if _is_time_varying(p["N"]):
        raise ValueError("`params['N']` must be a constant population, not a function of t.")
    N = _declared_array(p["N"], "params['N']", shapes["N"], max_ndim)
    if model.groups is not None and N.ndim == 0:
        raise ValueError(
            f"`params['N']` must hold the size of each of the {model.n_groups} groups "
            f"{model.groups}; got a scalar."
        )
    _check_values(N, "params['N']", positive=True)
    return rates, N


def _closest(name: str, valid: tuple[str, ...]) -> str:
    import difflib  # noqa: PLC0415

    close = difflib.get_close_matches(str(name), valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _declared_array(v: Any, what: str, shape: tuple[int, ...], max_ndim: int | None) -> Array:
    """``v`` as a float array: a scalar, or the declared ``shape`` after ensemble axes."""
    a = _as_float_array(v, what, None)
    if a.ndim == 0:
        return a
    if shape and a.shape[a.ndim - len(shape):] != shape:
        raise ValueError(
            f"`{what}` must be a scalar or have the declared shape {shape} (after any "
            f"ensemble axis); got shape {a.shape}."
        )
    batch = a.ndim - len(shape)
    if max_ndim is not None and batch > max_ndim:
        hint = " (use solve_ensemble for a leading ensemble axis)" if max_ndim == 0 else ""
        raise ValueError(
            f"`{what}` must have at most {max_ndim} ensemble axis/axes before its declared "
            f"shape {shape}; got shape {a.shape}{hint}."
        )
    return a


def _batch_size(a: Any, shape: tuple[int, ...]) -> int | None:
    """The ensemble axis' length of a value with declared ``shape``, or None."""
    nd = jnp.ndim(a)
    return jnp.shape(a)[0] if nd == len(shape) + 1 else None


def _as_float_array(v: Any, what: str, max_ndim: int | None) -> Array:
    try:
        a = jnp.asarray(v, dtype=_float_dtype())
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{what}` must be a number or array; got {type(v)}.") from e
    if max_ndim is not None and a.ndim > max_ndim:
        hint = " (use solve_ensemble for a leading ensemble axis)" if max_ndim == 0 else ""
        raise ValueError(
            f"`{what}` must have at most {max_ndim} dimension(s); got shape {a.shape}{hint}."
        )
    return a


def _check_values(a: Array, what: str, *, positive: bool) -> None:
    if _is_tracer(a):
        return
    x = np.asarray(a)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{what}` must be finite; got {x}.")
    if positive and np.any(x <= 0):
        raise ValueError(f"`{what}` must be positive; got {x}.")
    if not positive and np.any(x < 0):
        raise ValueError(f"`{what}` must be non-negative; got {x}.")


_RATE_CHECK_POINTS = 1024


def _check_rate_functions(rates: Mapping[str, Any], ts: Array) -> None:
    """Rates given as functions of time must be finite and non-negative over ``ts``.

    Each function is evaluated on the host before any compilation, at the saved times and
    at :data:`_RATE_CHECK_POINTS` evenly spaced times from ``ts[0]`` to ``ts[-1]`` (one
    eager ``vmap``), so a dip below zero between saved times is caught unless it is
    narrower than that spacing. Under a trace (rates or ``ts`` abstract, as inside
    ``jit``) nothing is checked, so the compiled program gets no checks.
    """
    functions = {k: v for k, v in rates.items() if _is_time_varying(v) and not _is_tracer(v)}
    if not functions or _is_tracer(ts):  # constant rates (the common case) cost nothing
        return
    t_saved = np.asarray(ts)
    grid = np.union1d(t_saved, np.linspace(t_saved[0], t_saved[-1], _RATE_CHECK_POINTS))
    for k, v in functions.items():
        values = _rates_at_times({k: v}, grid.astype(t_saved.dtype), "the check")[k]
        if _is_tracer(values):  # a closure over traced values
            continue
        x = np.asarray(values)
        bad = ~np.isfinite(x) | (x < 0)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"`params['{k}']` (a function of t) must be finite and non-negative from "
                f"ts[0] to ts[-1] (checked at the saved times and {_RATE_CHECK_POINTS} "
                f"evenly spaced times); at t={grid[i]:g} it is {x[i]}."
            )


def _normalize_y0(model: Model, y0: Any, *, max_ndim: int) -> Array:
    """Return y0 as a flat array ``(..., C * G)`` in model order; check names, shape, values.

    Unstratified: a mapping of scalars (or ``(M,)`` arrays) or an array ``(..., C)``.
    Stratified: a mapping of ``(G,)`` arrays (scalars broadcast), or ``(..., C, G)``.
    """
    C, G, grouped = model.compartments, model.n_groups, model.groups is not None
    if isinstance(y0, Mapping):
        unknown = [k for k in y0 if k not in C]
        missing = [k for k in C if k not in y0]
        if unknown:
            raise ValueError(
                f"`y0` has unknown compartments {unknown}; valid names are {C}."
                + _closest(unknown[0], C))
        if missing:
            raise ValueError(f"`y0` is missing compartments {missing}; expected all of {C}.")
        cols = [_as_float_array(y0[k], f"y0['{k}']", max_ndim + grouped) for k in C]
        if grouped:
            for k, c in zip(C, cols):
                if c.ndim and c.shape[-1] != G:
                    raise ValueError(
                        f"`y0['{k}']` must have one value per group ({G}) along its last "
                        f"axis; got shape {c.shape}."
                    )
            cols = [c if c.ndim else jnp.broadcast_to(c, (G,)) for c in cols]
        shape = jnp.broadcast_shapes(*(c.shape for c in cols))
        arr = jnp.stack([jnp.broadcast_to(c, shape) for c in cols], axis=-1 - grouped)
    else:
        arr = _as_float_array(y0, "y0", max_ndim + 1 + grouped)
        want = (len(C), G) if grouped else (len(C),)
        if arr.ndim < len(want) or arr.shape[arr.ndim - len(want):] != want:
            order = f"{len(C)} x {G} entries (compartments {C} by groups)" if grouped else (
                f"{len(C)} entries in the order {C}")
            raise ValueError(
                f"`y0` must have {order} along its last axes (shape {want} after any "
                f"ensemble axis); got shape {arr.shape}."
            )
    if grouped:
        arr = arr.reshape(*arr.shape[:-2], len(C) * G)
    _check_values(arr, "y0", positive=False)
    return arr


def _check_sum(
    y0: Array, N: Array, model: Model | None = None, *, whole: bool = True
) -> None:
    """The compartments hold the whole population: ``sum(y0) = N`` (per group).

    Within a relative :data:`_SUM_RTOL` (float32 inputs such as ``N - I0``). A sum below
    ``N`` usually means fractions given against a count ``N`` (or the reverse), which
    would run and silently describe another epidemic, so it is refused like a sum above.
    """
    if _is_tracer((y0, N)):
        return
    y, n = np.asarray(y0), np.asarray(N)
    if model is not None and model.groups is not None:
        total = y.reshape(*y.shape[:-1], len(model.compartments), model.n_groups).sum(-2)
    else:
        total = y.sum(-1)
    if np.any(total > n * (1 + _SUM_RTOL)):
        raise ValueError(f"`y0` sums to {total}, more than the population params['N'] = {n}.")
    if whole and np.any(total < n * (1 - _SUM_RTOL)):
        raise ValueError(
            f"`y0` sums to {total}, less than the population params['N'] = {n}: the "
            "compartments must hold the whole population (give y0 and N in the same units: "
            "counts with N the population size, or fractions with N = 1)."
        )


def _normalize_ts(ts: Any) -> Array:
    a = _as_float_array(ts, "ts", None)
    if a.ndim != 1:
        raise ValueError(f"`ts` must be 1-dimensional; got shape {a.shape}.")
    if a.shape[0] < 2:
        raise ValueError(f"`ts` must contain at least 2 times; got {a.shape[0]}.")
    if not _is_tracer(a):
        x = np.asarray(a)
        if not np.all(np.isfinite(x)):
            raise ValueError("`ts` must be finite.")
        if not np.all(np.diff(x) > 0):
            raise ValueError("`ts` must be strictly increasing.")
    return a


def _ensemble_inputs(
    model: Model, params: Any, y0: Any, *, broadcast: bool = True,
    whole: bool = True,
) -> tuple[dict[str, Any], Array, Array, int | None]:
    """Validate and broadcast an ensemble: constant rates and N to (M,), y0 to (M, C).

    Returns M = None when nothing carries an ensemble axis (then shapes are unbatched).
    Without ``broadcast`` the inputs keep their own shapes (``()`` or ``(M,)``, ``(C,)``
    or ``(M, C)``), for the compiled program to broadcast (:func:`_broadcast_members`).
    ``whole``: ``y0`` must hold the whole population (not so for a state to linearise at).
    """
    rates, N = _normalize_params(model, params, max_ndim=1)
    y0a = _normalize_y0(model, y0, max_ndim=1)
    shapes = model.param_shapes
    sizes: dict[str, int] = {}
    for k, v in rates.items():
        if not _is_time_varying(v) and _batch_size(v, shapes[k]) is not None:
            sizes[f"params['{k}']"] = v.shape[0]
    if _batch_size(N, shapes["N"]) is not None:
        sizes["params['N']"] = N.shape[0]
    if y0a.ndim == 2:
        sizes["y0"] = y0a.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Ensemble axes of `params`/`y0` disagree: {sizes}.")
    _check_sum(y0a, N, model, whole=whole)  # before broadcasting (numpy broadcasts the totals)
    if not sizes:
        return rates, N, y0a, None
    M = next(iter(sizes.values()))
    if M == 0:
        raise ValueError(f"The ensemble axis of {next(iter(sizes))} is empty.")
    if not broadcast:
        return rates, N, y0a, M
    out = {k: v if _is_time_varying(v) else jnp.broadcast_to(v, (M, *shapes[k]))
           for k, v in rates.items()}
    N = jnp.broadcast_to(N, (M, *shapes["N"]))
    y0a = jnp.broadcast_to(y0a, (M, y0a.shape[-1]))
    return out, N, y0a, M


def _split(rates: Mapping[str, Any]) -> tuple[dict[str, Array], dict[str, Any]]:
    const = {k: v for k, v in rates.items() if not _is_time_varying(v)}
    varying = {k: v for k, v in rates.items() if _is_time_varying(v)}
    return const, varying


def _check_flow_rates(model: Model, rates: Mapping[str, Any], N: Any, y0: Array,
                      t0: Any) -> None:
    """Every flow's rate must be finite and non-negative at the initial state.

    A flow moves people one way (``source -> target``); a negative rate would move them
    backwards and can drive compartments negative, silently. Evaluated eagerly on the host
    for concrete inputs (one ``vmap`` over the members of an ensemble); under a trace
    nothing is checked. Only the initial state is checked: a rate that turns negative
    later is the rate function's responsibility (write ``jnp.maximum(..., 0)``).
    """
    values = [v for v in (*rates.values(), N, y0, t0) if not _is_time_varying(v)]
    if any(_is_tracer(v) for v in values):
        return
    r = _rates_at_times(rates, t0, "the check of the initial flow rates")
    if any(_is_tracer(v) for v in r.values()):  # a closure over traced values
        return
    shapes = model.param_shapes
    p = {**r, "N": N}
    axes = {k: 0 if _batch_size(v, shapes[k]) is not None else None for k, v in p.items()}
    y_axis = 0 if jnp.ndim(y0) == 2 else None
    if y_axis is None and not any(a == 0 for a in axes.values()):
        q = model.flow_rates(t0, y0, p)[None]
    else:
        q = jax.vmap(lambda y, pp: model.flow_rates(t0, y, pp), in_axes=(y_axis, axes))(y0, p)
    q = np.asarray(q).reshape(q.shape[0], len(model.flows), -1)  # (M, F, G)
    bad = ~np.isfinite(q) | (q < 0)
    if np.any(bad):
        m, f, g = (int(i[0]) for i in np.nonzero(bad))
        where = (f" of member {m}" if q.shape[0] > 1 else "") + (
            f" in group {model.groups[g]!r}" if model.groups is not None else "")
        flow = model.flows[f]
        raise ValueError(
            f"The rate of flow {flow.name!r} ({flow.source} -> {flow.target}) is "
            f"{q[m, f, g]:g} at the initial state{where} (t={float(np.ravel(t0)[0]):g}); flow "
            "rates must be finite and non-negative (a flow moves people one way: write a "
            "second flow for the other direction)."
        )
