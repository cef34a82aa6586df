r"""The least-squares / likelihood fits through the ODE solver (private).

What :mod:`epinn.estimation` and :mod:`epinn.profile` share (and the network fits'
input checks build on), so that no estimator imports another's private names:

* validation of a fit's inputs in plain Python (:func:`_check_inputs`, with the ``free``
  syntax for array parameters and their entries, :func:`_parse_free`) and of its settings;
* the transforms of free parameters to the unconstrained scale (:func:`_to_theta`);
* the least-squares / likelihood problem as a pytree (:class:`_Problem`) and its
  Levenberg-Marquardt optimiser with forward-sensitivity Jacobians (:func:`_optimise`).

The network fits' pieces live in :mod:`epinn._fitting`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array

from .compartmental import R0 as _R0
from .compartmental import CompartmentalModel, solve
from .compartmental._integrate import _integrate_sensitivities, _make_config
from .compartmental._options import _Settings
from .compartmental._validate import _normalize_params, _normalize_y0
from .observation import NegativeBinomial, Poisson

#: Observation names accepted by every fit besides compartments and flows.
_FIT_OBSERVABLES = ("incidence", "cumulative")
_LOSSES = ("mse", "poisson", "negbin")


# --------------------------------------------------------------------------------------
# Validation (plain Python, before compilation)
# --------------------------------------------------------------------------------------


def _as_number(name: str, v: Any) -> float:
    """``float(v)``, or a ValueError/TypeError naming the argument ``name``."""
    if isinstance(v, (bool, np.bool_, str, bytes)):
        raise TypeError(f"`{name}` must be a number; got {v!r}.")
    try:
        return float(v)
    except (TypeError, ValueError) as err:
        raise type(err)(f"`{name}` must be a number; got {v!r}.") from err


def _as_array(name: str, v: Any) -> np.ndarray:
    """``np.asarray(v, dtype=float)``, or an error naming the argument ``name``."""
    try:
        return np.asarray(v, dtype=float)
    except (TypeError, ValueError) as err:
        raise type(err)(f"`{name}` must be an array of numbers; got {v!r:.80}.") from err


def _as_count(name: str, v: Any, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int:
    """An integer (Python or NumPy, not bool) in ``[minimum, maximum]``, else an error.

    The upper limit keeps loop counters inside int32, the type JAX uses for them by
    default (``max_steps=2**40`` overflowed inside the compiled solver).
    """
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int; got {v!r}.")
    if not minimum <= int(v) <= maximum:
        raise ValueError(f"`{name}` must be an int in [{minimum}, {maximum}]; got {v!r}.")
    return int(v)


def _as_tolerance(name: str, v: Any) -> float | None:
    """``None`` or a positive finite float, else an error naming ``name``."""
    if v is None:
        return None
    x = _as_number(name, v)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"`{name}` must be positive and finite; got {v!r}.")
    return x


def _check_settings(**settings):
    """Validate the optimiser/solver settings of a fit by name; returns them in order.

    Counts (``steps``, ``n_starts``, ``max_steps``, ``batch_size``) must be ints (NumPy
    ints too) of at least 1; tolerances ``None`` or positive and finite.
    """
    out = []
    for name, v in settings.items():
        if name in ("rtol", "atol", "tol"):
            out.append(_as_tolerance(name, v))
        else:
            out.append(_as_count(name, v))
    return tuple(out)


def _ode_settings(max_steps: int, rtol: float | None, atol: float | None) -> _Settings:
    """A fit's checked ODE settings as one value (the other fields ``None``).

    Tolerances left ``None`` take the precision's defaults: 1e-8/1e-10 in float64,
    1e-6/1e-8 in float32.
    """
    x64 = jnp.asarray(1.0).dtype == jnp.float64
    return _Settings(rtol=(1e-8 if x64 else 1e-6) if rtol is None else rtol,
                     atol=(1e-10 if x64 else 1e-8) if atol is None else atol,
                     max_steps=max_steps)


def _check_inputs(model, ts, data, y0, init, free, loss, t0, *, can_free=True):
    """Validate a fit's inputs in plain Python; returns ``ts, t0, obs, init, free``.

    Shared by :func:`fit_parameters`, :func:`fit_parameters_batch` and (through
    :mod:`epinn.neural_beta`) the network fits; ``can_free=False`` for callers without a
    ``free`` argument (the message about an unseeded ``y0`` then does not suggest it).
    """
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be a CompartmentalModel such as SIR(); got {model!r}.")
    if loss not in _LOSSES:
        raise ValueError(f"`loss` must be one of {_LOSSES}; got {loss!r}.")
    ts = _as_array("ts", ts)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError(f"`ts` must be 1-D with at least 2 times; got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)) or not np.all(np.diff(ts) > 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
    t0 = float(ts[0]) if t0 is None else _as_number("t0", t0)
    if not math.isfinite(t0):
        raise ValueError(f"`t0` must be finite; got {t0!r}.")
    if t0 > ts[0]:
        raise ValueError(f"`t0` ({t0}) must not be after the first observation time {ts[0]}.")
    if not isinstance(data, Mapping) or not data:
        raise ValueError("`data` must be a non-empty mapping {observation name: array}.")
    flows = tuple(f for f in model.flow_names() if model.count_rule(f) is not None)
    valid = (*model.compartments, "incidence", "cumulative", *flows,
             *(f"cumulative_{f}" for f in flows))
    obs = {}
    for name, v in data.items():
        if name == "new_deaths" and "deaths" in flows:
            name = "deaths"  # the former name of the deaths flow's counts per interval
        if name not in valid:
            hint = _close_name(name, valid)
            if isinstance(name, str) and _flow_observation(name)[0] in model.flow_names():
                hint = (f" The count of flow {_flow_observation(name)[0]!r} does not follow "
                        "from the compartments, which fits need.")
            raise ValueError(
                f"`data` has unknown observation {name!r}; valid names for {model.name} are "
                f"{valid}.{hint}"
            )
        per_interval = name == "incidence" or (name in flows)
        if per_interval and t0 == ts[0]:
            raise ValueError(
                f"`data[{name!r}]` counts events in (t_prev, t]; set `t0` before `ts[0]` "
                "so the first interval is defined."
            )
        a = _as_array(f"data[{name!r}]", v)
        by_group = (*ts.shape, model.n_groups)
        if a.shape != ts.shape and not (model.groups is not None and name in
                                        model.compartments and a.shape == by_group):
            also = (f" (or {by_group}: one series per group)" if model.groups is not None
                    and name in model.compartments else "")
            raise ValueError(
                f"`data[{name!r}]` has shape {a.shape}; expected {ts.shape}{also} to match "
                "`ts`."
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`data[{name!r}]` contains NaN or inf.")
        if np.any(a < 0):
            raise ValueError(f"`data[{name!r}]` contains negative counts.")
        if loss in ("poisson", "negbin") and np.any(a != np.round(a)):
            # The same rule as epinn.observation's count likelihoods, checked here: inside
            # the compiled fit a non-integer count makes the likelihood non-finite at every
            # point, and the fit fails without saying why (it returned NaN estimates).
            bad = a[a != np.round(a)][0]
            raise ValueError(
                f"`data[{name!r}]` must be non-negative integer counts for "
                f"loss={loss!r}; got non-integer values (e.g. {bad:g}). Round the counts, "
                "or use loss='mse'."
            )
        obs[name] = a
    if not isinstance(y0, Mapping):
        raise TypeError("`y0` must be a mapping by compartment name, e.g. {'S': 762, ...}.")
    missing = [c for c in model.compartments if c not in y0]
    unknown = [c for c in y0 if c not in model.compartments]
    if missing or unknown:
        raise ValueError(
            f"`y0` must name exactly the compartments {model.compartments}; "
            f"missing {missing}, unknown {unknown}."
        )
    init, y0 = _check_values(model, init, y0, loss)
    free = _parse_free(model, free, init, y0, loss)
    _check_seeded(model, y0, free, can_free)
    N = init["N"]
    total = float(np.sum(N))
    if np.any(sum(y0.values()) > N * (1 + 1e-6)):
        raise ValueError(f"`y0` sums to more than the population N = {N}.")
    for name, a in obs.items():
        if name != "incidence" and name not in model.flow_names() and a.max() > total:
            raise ValueError(
                f"`data[{name!r}]` exceeds the population N = {total:g}; check `init['N']`."
            )
    if "incidence" in obs and obs["incidence"].sum() > total:
        raise ValueError(f"`data['incidence']` sums to more than the population N = {total:g}.")
    return ts, t0, obs, init, free


_ENTRY = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[(.*)\]\s*$")


def _fit_shapes(model) -> dict[str, tuple[int, ...]]:
    """Declared shape of every fittable parameter: the model's, ``reporting`` and ``phi``."""
    return {**model.param_shapes, "reporting": (), "phi": ()}


def _check_values(model, init, y0, loss):
    """``init`` and ``y0`` as floats (scalars) or float arrays (declared shapes); checked.

    A scalar given for an array parameter is broadcast to its declared shape; with groups,
    a scalar initial state is the same in every group. ``N`` defaults to ``sum(y0)`` (per
    group), ``reporting`` to 1 and ``phi`` (``negbin``) to 10.
    """
    if not isinstance(init, Mapping):
        raise TypeError(f"`init` must be a mapping by parameter name; got {init!r}.")
    grouped = model.groups is not None
    states = {}
    for c, v in y0.items():
        a = _as_array(f"y0[{c!r}]", v) if grouped else np.asarray(_as_number(f"y0[{c!r}]", v))
        if grouped and a.shape in ((), (model.n_groups,)):
            a = np.broadcast_to(a, (model.n_groups,)).copy()
        elif a.ndim:
            want = f"a number or {model.n_groups} values (one per group)" if grouped else \
                "a number"
            raise ValueError(f"`y0[{c!r}]` must be {want}; got shape {a.shape}.")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"`y0[{c!r}]` must be non-negative and finite; got {v!r}.")
        states[c] = a if grouped else float(a)
    shapes = _fit_shapes(model)
    bad = [k for k in init if k not in shapes]
    if bad:
        allowed = (*model.rate_names, "N", "reporting", "phi")
        raise ValueError(f"`init` has unknown names {bad}; valid names are {allowed}.")
    out = {}
    for k, v in init.items():
        if shapes[k] == ():
            out[k] = _as_number(f"init[{k!r}]", v)
            if not math.isfinite(out[k]) or out[k] <= 0:
                raise ValueError(f"`init[{k!r}]` must be positive and finite; got {v!r}.")
            continue
        a = _as_array(f"init[{k!r}]", v)
        if a.shape not in ((), shapes[k]):
            raise ValueError(f"`init[{k!r}]` must be a number or have the declared shape "
                             f"{shapes[k]} of {k!r}; got shape {a.shape}.")
        a = np.broadcast_to(a, shapes[k]).copy()
        low_ok = np.all(a > 0) if k == "N" else np.all(a >= 0)
        if not np.all(np.isfinite(a)) or not low_ok:
            sign = "positive" if k == "N" else "non-negative"
            raise ValueError(f"`init[{k!r}]` must be {sign} and finite; got {a.tolist()}.")
        out[k] = a
    if "N" not in out:
        out["N"] = sum(states.values())
    out.setdefault("reporting", 1.0)
    if loss == "negbin":
        out.setdefault("phi", 10.0)
    needed = (*model.rate_names, "N")
    miss = [k for k in needed if k not in out]
    if miss:
        raise ValueError(f"`init` is missing {miss}; the model needs {needed}.")
    if not 0 < out["reporting"] <= 1:
        raise ValueError(f"`init['reporting']` must be in (0, 1]; got {out['reporting']}.")
    return out, states


def _free_names(free) -> tuple[str, ...]:
    if free is None:
        return ()
    if isinstance(free, str):
        return (free,)  # one name: free="beta" is free=("beta",)
    try:
        names = tuple(free)
    except TypeError as err:
        raise TypeError(f"`free` must be a name or a sequence of names; got {free!r}.") from err
    if not all(isinstance(k, str) for k in names):
        raise TypeError(f"`free` must be a name or a sequence of names; got {free!r}.")
    return names


def _entry_index(model, name, base, text, shape) -> tuple[int, ...]:
    """The index of ``base[text]`` (integers, or group names on an axis of the groups)."""
    if shape == ():
        raise ValueError(f"`free` has {name!r}, but {base!r} is a scalar: free it as {base!r}.")
    tokens = [t.strip() for t in text.split(",")]
    if len(tokens) != len(shape):
        raise ValueError(
            f"`free` has {name!r} with {len(tokens)} index(es), but {base!r} has shape "
            f"{shape}: give {len(shape)}, e.g. {base}[{','.join('0' * len(shape))}]."
        )
    index = []
    for axis, (t, n) in enumerate(zip(tokens, shape)):
        if re.fullmatch(r"[+-]?\d+", t):
            i = int(t)
        elif model.groups is not None and t in model.groups and n == model.n_groups:
            i = model.groups.index(t)
        else:
            groups = f" or a group name {model.groups}" if model.groups is not None else ""
            raise ValueError(f"`free` has {name!r}: index {t!r} must be an integer{groups}.")
        if not -n <= i < n:
            raise ValueError(f"`free` has {name!r}: index {i} is out of range for axis {axis} "
                             f"of {base!r} (size {n}, shape {shape}).")
        index.append(i % n)
    return tuple(index)


def _entry_name(base: str, index: tuple[int, ...]) -> str:
    return f"{base}[{','.join(str(i) for i in index)}]" if index else base


def _parse_free(model, free, init, y0, loss) -> tuple[str, ...]:
    r"""The free quantities, one name per fitted number.

    ``"beta"`` (a scalar parameter), ``"gamma"`` (every entry of an array parameter:
    ``"gamma[0]"``, ``"gamma[1]"``, ...), ``"C[0,1]"`` (one entry; integers, negative
    ones counted from the end, or group names on an axis over the groups), ``"I0"`` (an
    initial state; every group's with groups) and ``"I0[1]"`` (one group's).
    """
    names = _free_names(free) or tuple(model.rate_names)
    shapes = _fit_shapes(model)
    grouped = model.groups is not None
    states = {f"{c}0": c for c in model.compartments}
    out: list[str] = []
    for name in names:
        m = _ENTRY.match(name)
        base, text = (m.group(1), m.group(2)) if m else (name, None)
        if base in shapes:
            shape, value = shapes[base], init.get(base)
        elif base in states:
            shape, value = ((model.n_groups,) if grouped else ()), y0[states[base]]
        else:
            choices = (*model.rate_names, "N", "reporting", "phi", *states)
            raise ValueError(f"`free` has unknown name {name!r}; choose from {choices} (an "
                             "array parameter's entries as e.g. 'C[0,1]')."
                             + _close_name(base, choices))
        if text is not None:
            entries = [_entry_index(model, name, base, text, shape)]
        else:
            entries = list(np.ndindex(*shape)) if shape else [()]
        for index in entries:
            if base in shapes and value is not None and np.ndim(value) and \
                    np.asarray(value)[index] <= 0:
                raise ValueError(
                    f"`free` has {_entry_name(base, index)}, which is 0 in `init`: a free "
                    "value is fitted on a log scale and must start positive. Give it a "
                    "positive start, or free only the other entries by name (e.g. "
                    f"{_entry_name(base, tuple(0 for _ in shape))!r})."
                )
            out.append(_entry_name(base, index))
    dup = sorted({k for k in out if out.count(k) > 1})
    if dup:
        raise ValueError(f"`free` names {dup} more than once (after expanding arrays).")
    if loss != "negbin" and "phi" in out:
        raise ValueError("`free` contains 'phi', which only the 'negbin' loss has.")
    if not out:
        raise ValueError("`free` must name at least one parameter.")
    return tuple(out)


def _slot(model, name: str) -> tuple[str, str, tuple[int, ...]]:
    """``(kind, key, index)`` of a free name from :func:`_parse_free`: ``("param", "C",
    (0, 1))`` for ``"C[0,1]"``, ``("state", "I", ())`` for ``"I0"``."""
    m = _ENTRY.match(name)
    base, index = (m.group(1), tuple(int(i) for i in m.group(2).split(","))) if m else (name,
                                                                                       ())
    if base in _fit_shapes(model) or base == "R0":
        return "param", base, index
    return "state", base[:-1], index


def _lookup(name: str, params: Mapping, y0: Mapping) -> float:
    """The value of a free name (an entry of an array, an initial state) in a result."""
    m = _ENTRY.match(name)
    base, index = (m.group(1), tuple(int(i) for i in m.group(2).split(","))) if m else (name,
                                                                                       ())
    if base in params:
        return float(np.asarray(params[base])[index])
    if base.endswith("0") and base[:-1] in y0:
        return float(np.asarray(y0[base[:-1]])[index])
    return math.nan


def _flow_observation(name: str) -> tuple[str, bool]:
    """``(flow, per_interval)`` of an observation named after a flow."""
    if name.startswith("cumulative_"):
        return name[len("cumulative_"):], False
    return name, True


def _close_name(name: Any, valid: tuple[str, ...]) -> str:
    import difflib  # noqa: PLC0415

    close = difflib.get_close_matches(str(name), valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_seeded(model, y0, free, can_free):
    """Raise if ``y0`` has nobody infected and no infected initial state is fitted.

    With every infected compartment (``model.infected``: ``I``, or ``E`` and ``I``) at zero
    the infection term vanishes for all time: the solution does not depend on the
    transmission rate, and a fit would return its initial guess as if converged.
    """
    if any(np.any(np.asarray(y0[c]) > 0) for c in model.infected):
        return
    fitted = {_slot(model, k)[1] for k in free if _slot(model, k)[0] == "state"}
    if fitted & set(model.infected):
        return  # a fitted initial state is positive (log-parametrised)
    zero = ", ".join(f"y0[{c!r}]" for c in model.infected)
    hint = f"give {zero.split(', ')[-1]} a positive value"
    if can_free:
        hint += f" or fit it (e.g. free=(..., '{model.infected[-1]}0'))"
    raise ValueError(
        f"`y0` has nobody infected: the infected compartments {model.infected} are all "
        f"zero ({zero} = 0), so the epidemic never starts and the data cannot inform the "
        f"rates; {hint}."
    )


# --------------------------------------------------------------------------------------
# Parameter transforms and the forward model
# --------------------------------------------------------------------------------------


def _to_theta(name: str, x: float) -> float:
    if name == "reporting":
        x = min(x, 1 - 1e-6)
        return math.log(x / (1 - x))
    return math.log(x)


def _from_theta(name: str, th):
    return jax.nn.sigmoid(th) if name == "reporting" else jnp.exp(th)


def _from_theta_np(name: str, th: float) -> float:
    with np.errstate(over="ignore"):  # a huge interval end is inf, not an OverflowError
        if name == "reporting":
            return float(1.0 / (1.0 + np.exp(-np.float64(th))))
        return float(np.exp(np.float64(th)))


def _merge_fine_grid(grid: np.ndarray, fine_points: int):
    """Merge the data grid with ``fine_points`` uniform points over it, for one solve.

    Returns the merged grid and the indices of the data and the fine points in it. Fine
    points within 1e-9 of the span from a data time are that data time (no near-duplicate
    save times).
    """
    fine = np.linspace(grid[0], grid[-1], fine_points)
    tol = 1e-9 * max(grid[-1] - grid[0], 1e-300)
    near = np.abs(fine[:, None] - grid[None, :]) <= tol
    fine = np.where(near.any(axis=1), grid[np.argmax(near, axis=1)], fine)
    merged = np.union1d(grid, fine)
    return (merged, tuple(int(i) for i in np.searchsorted(merged, grid)),
            tuple(int(i) for i in np.searchsorted(merged, fine)))


class _Problem(eqx.Module):
    """One fit as a pytree: the data and fixed values are leaves, the structure is static.

    Fits with the same structure and shapes share one compilation (warm fits are fast).
    """

    model: CompartmentalModel
    base: dict[str, Array]
    y0: dict[str, Array]
    grid: Array
    y: dict[str, Array]
    free: tuple[str, ...] = eqx.field(static=True)
    # (kind, key, index) of each free name: see :func:`_slot`.
    slots: tuple[tuple[str, str, tuple[int, ...]], ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    # Observed compartments given per group, ``(T, G)`` (stratified models).
    per_group: tuple[str, ...] = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    offset: int = eqx.field(static=True)
    n: int = eqx.field(static=True)
    # The ODE settings (rtol, atol, max_steps; see :func:`_ode_settings`).
    ode: _Settings = eqx.field(static=True)
    # With a fine grid, one solve saves at ``grid`` (the data times and the fine times,
    # merged); ``data_idx``/``fine_idx`` pick them out. See :func:`_merge_fine_grid`.
    data_idx: tuple[int, ...] | None = eqx.field(static=True, default=None)
    fine_idx: tuple[int, ...] | None = eqx.field(static=True, default=None)

    @classmethod
    def build(cls, model, ts, t0, obs, y0, init, free, loss, ode, fine_points=0):
        offset = 1 if t0 < ts[0] else 0
        f = lambda v: jnp.asarray(np.asarray(v, dtype=float))  # noqa: E731
        grid = np.concatenate([[t0], ts]) if offset else np.asarray(ts)
        data_idx = fine_idx = None
        if fine_points:
            grid, data_idx, fine_idx = _merge_fine_grid(grid, fine_points)
        return cls(
            model=model,
            base={k: f(v) for k, v in init.items()},
            y0={c: f(v) for c, v in y0.items()},
            grid=jnp.asarray(grid),
            y={k: jnp.asarray(v) for k, v in obs.items()},
            free=free,
            slots=tuple(_slot(model, k) for k in free),
            names=tuple(obs),
            per_group=tuple(k for k, v in obs.items() if np.ndim(v) == 2),
            loss=loss,
            offset=offset,
            n=sum(v.size for v in obs.values()),
            ode=ode._replace(rtol=float(ode.rtol), atol=float(ode.atol),
                             max_steps=int(ode.max_steps)),
            data_idx=data_idx,
            fine_idx=fine_idx,
        )

    def theta0(self) -> np.ndarray:
        vals = [
            float(np.asarray(self.base[key])[i]) if kind == "param"
            else max(float(np.asarray(self.y0[key])[i]), 1e-3)
            for kind, key, i in self.slots
        ]
        return np.array([_to_theta(key, v) for (_, key, _), v in zip(self.slots, vals)])

    def unpack(self, theta):
        p = dict(self.base)
        y0 = dict(self.y0)
        for i, (kind, key, index) in enumerate(self.slots):
            v = _from_theta(key, theta[i])
            into = p if kind == "param" else y0
            into[key] = into[key].at[index].set(v) if index else v
        # Freed initial states are taken from S, keeping S0 + ... = the given total (per
        # group).
        freed = [key for kind, key, _ in self.slots if kind == "state"]
        src = self.model.infections_from or next(
            (f.source for f in self.model.flows if f.infection), "S")
        if freed and src not in freed and src in y0:
            total = sum(self.y0.values())
            y0[src] = total - sum(y0[c] for c in self.model.compartments if c != src)
        if "R0" in p:
            # R0 held fixed (epinn.profile): beta follows from it and the other rates, as
            # R0 is proportional to beta in every built-in model.
            p["beta"] = p["R0"] / _R0(self.model, {**self.model_params(p), "beta": 1.0})
        return p, y0

    def model_params(self, p):
        return {k: p[k] for k in (*self.model.rate_names, "N")}

    def scale(self, N):
        """The population the integrators divide by: ``N``, or the sum of the groups'."""
        return N if self.model.groups is None else jnp.sum(N, axis=-1)

    def solve(self, theta, *, adjoint=None, ts=None):
        p, y0 = self.unpack(theta)
        mp = self.model_params(p)
        grid = self.grid if ts is None else ts
        return solve(self.model, mp, y0, grid, adjoint=adjoint, throw=False,
                     options=self.ode.options()), p

    def predict(self, theta):
        traj, p = self.solve(theta, adjoint=diffrax.ForwardMode())
        return self.observe_grid(traj.ys, traj.cumulative_infections, p), traj.success, p

    def observe_grid(self, ys, cum, p):
        """:meth:`observe` of a solution on ``grid`` (the data times of a merged grid)."""
        if self.data_idx is not None:
            d = np.asarray(self.data_idx)
            ys, cum = ys[d], cum[d]
        return self.observe(ys, cum, p)

    def observe(self, ys, cum, p):
        """The observed series of one trajectory: ``ys`` (T, C) counts (``(T, C, G)`` or
        flat ``(T, C * G)`` with groups), ``cum`` (T,).

        The vocabulary of :func:`epinn.observe`: a compartment's value (summed over groups,
        or per group for the names in ``per_group``), ``"incidence"`` (per interval) and
        ``"cumulative"``, a flow's name (its count per interval, summed over groups) and
        ``"cumulative_<flow>"``. Infections (incidence, infection flows) are scaled by
        ``reporting``.
        """
        o = self.offset
        model = self.model
        grouped = model.groups is not None
        if grouped:
            ys = ys.reshape(ys.shape[0], len(model.compartments), model.n_groups)

        def col(c):  # (T,), summed over groups
            v = ys[:, model.compartments.index(c)]
            return jnp.sum(v, axis=-1) if grouped else v

        out = {}
        for name in self.names:
            if name in self.per_group:
                out[name] = ys[o:, model.compartments.index(name)]
            elif name in model.compartments:
                out[name] = col(name)[o:]
            elif name == "incidence":
                out[name] = p["reporting"] * jnp.diff(cum)
            elif name == "cumulative":
                out[name] = p["reporting"] * (cum[o:] - (0.0 if o else cum[0]))
            else:
                flow, per_interval = _flow_observation(name)
                kind, c = model.count_rule(flow)
                counted = col(c) - col(c)[0] if kind == "target" else col(c)[0] - col(c)
                scale = p["reporting"] if model.flow(flow).infection else 1.0
                out[name] = scale * (jnp.diff(counted) if per_interval else counted[o:])
        return out

    def residuals(self, theta):
        """Least-squares residuals (Anscombe-transformed for likelihood losses)."""
        pred, ok, _ = self.predict(theta)
        return self.residual_vector(pred, ok)

    def residual_vector(self, pred, ok):
        parts = []
        for k in self.names:
            mu, y = pred[k], self.y[k]
            if self.loss == "mse":
                r = mu - y
            else:
                r = 2.0 * (jnp.sqrt(jnp.maximum(mu, 0.0) + 0.375) - jnp.sqrt(y + 0.375))
            parts.append(jnp.reshape(r, (-1,)))
        r = jnp.concatenate(parts)
        # A failed solve is a bad point, not a crash: a large finite residual.
        return jnp.where(ok & jnp.all(jnp.isfinite(r)), r, 1e6)

    def residuals_jacobian(self, theta):
        """Residuals, their Jacobian in ``theta`` and the solution on ``grid``, in one solve.

        The Jacobian comes from the forward sensitivities of the ODE
        (:func:`~epinn.compartmental._integrate_sensitivities`), chained with the
        read-out (observation, counts, residuals) by JVPs.
        """
        model = self.model

        def ode_inputs(th):
            p, y0 = self.unpack(th)
            rates, N = _normalize_params(model, self.model_params(p), max_ndim=0)
            # N goes with the rates: a model whose rates are not homogeneous in (y, N)
            # evaluates them at counts (see epinn.flows).
            return {**rates, "N": N}, _normalize_y0(model, y0, max_ndim=1) / self.scale(N)

        rates, x0 = ode_inputs(theta)
        # Derivatives of the ODE's inputs, one direction per parameter (leading axis).
        d_rates, d_x0 = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0),
                                     jax.jacfwd(ode_inputs)(theta))
        cfg = _make_config(self.ode._replace(throw=False))
        (xs, cum, ok, steps), (d_xs, d_cum) = _integrate_sensitivities(
            model, rates, x0, self.grid, cfg, d_rates, d_x0
        )

        def read_out(th, xs_, cum_):
            p, _ = self.unpack(th)
            N = self.scale(p["N"])
            ys, c = xs_ * N, cum_ * N
            return self.residual_vector(self.observe_grid(ys, c, p), ok), (ys, c)

        eye = jnp.eye(theta.shape[0], dtype=theta.dtype)
        (r, (ys, c)), (J, _) = jax.vmap(
            lambda e, u, v: jax.jvp(read_out, (theta, xs, cum), (e, u, v)),
            out_axes=(None, 0),
        )(eye, d_xs, d_cum)
        return r, J.T, (ys, c, steps)

    def nll(self, theta):
        """Negative log-likelihood (``poisson``/``negbin``); for ``mse`` the mean square."""
        if self.loss == "mse":
            r = self.residuals(theta)
            return jnp.mean(r**2)
        pred, ok, p = self.predict(theta)
        noise = Poisson() if self.loss == "poisson" else NegativeBinomial(p["phi"])
        total = -sum(noise.log_likelihood(pred[k], self.y[k]) for k in self.names)
        return jnp.where(ok & jnp.isfinite(total), total, 1e12)


# --------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------


def _iterate(solver, fn, y0, max_steps, record):
    """Run an optimistix solver step by step, recording ``record(y, state)`` after each step.

    optimistix's ``least_squares``/``root_find`` run the same init/step/terminate loop;
    this driver exists only to keep the loss history.
    """
    args, options, tags = None, {}, frozenset()
    f_struct, aux_struct = jax.eval_shape(lambda: fn(y0, args))
    state = solver.init(fn, y0, args, options, f_struct, aux_struct, tags)
    dynamic, static = eqx.partition(state, eqx.is_array)
    hist = jnp.full((max_steps,), jnp.nan, dtype=y0.dtype)

    def cond(c):
        i, y, dynamic, hist, done = c
        return (i < max_steps) & ~done

    def body(c):
        i, y, dynamic, hist, _ = c
        state = eqx.combine(static, dynamic)
        y, state, _ = solver.step(fn, y, args, options, state, tags)
        done, _ = solver.terminate(fn, y, args, options, state, tags)
        dynamic = eqx.filter(state, eqx.is_array)
        return i + 1, y, dynamic, hist.at[i].set(record(y, state)), done

    done0, _ = solver.terminate(fn, y0, args, options, state, tags)
    i, y, dynamic, hist, done = jax.lax.while_loop(cond, body, (0, y0, dynamic, hist, done0))
    return y, hist, i, done, eqx.combine(static, dynamic)


def _residuals_and_solution(problem: _Problem, th):
    """Residuals, and as auxiliary output the residuals and the grid's solution."""
    traj, p = problem.solve(th, adjoint=diffrax.ForwardMode())
    ys, cum = traj.ys, traj.cumulative_infections
    r = problem.residual_vector(problem.observe_grid(ys, cum, p), traj.success)
    return r, (r, (ys, cum, traj.num_steps.astype(r.dtype)))  # float: differentiable


@eqx.filter_jit
def _jacobian_with_solution(problem: _Problem, th):
    """``J, (r, solution)``: forward sensitivities in float64, ``jax.jacfwd`` in float32.

    In float32 the sensitivities' mismatch with the derivative of the computed solution
    (~rtol, 1e-6) stalled Levenberg-Marquardt on poorly identified fits (2 of 16 windows
    of the SIR-projection forecast); ``jax.jacfwd`` through diffrax differentiates the
    discrete solver exactly.
    """
    # jit: optimistix traces the residual function's JVP twice (shapes, then the step);
    # the second trace of this pass through the solver is a cache hit.
    if th.dtype != jnp.float64:
        return jax.jacfwd(lambda t: _residuals_and_solution(problem, t), has_aux=True)(th)
    r, J, (ys, cum, steps) = problem.residuals_jacobian(th)
    return J, (r, (ys, cum, steps.astype(r.dtype)))  # float: a differentiable output


def _jacobian_once(problem: _Problem):
    """Residuals (with the grid's solution as auxiliary output) whose JVP is ``J @ v``.

    The residuals, their Jacobian ``J`` and the solution come from one solve with forward
    sensitivities (:meth:`_Problem.residuals_jacobian`). Wrapping it in a ``custom_jvp``
    means that optimistix's ``linearize`` + materialise of the residual function, the
    covariance and the fitted trajectory all reuse that one solve: the compiled fit holds a
    single ODE program (half the compilation time of ``jax.jacfwd`` through diffrax).
    """

    @jax.custom_jvp
    def f(th):
        # Only ever linearised (by the optimiser) or shape-evaluated; taking the primal
        # from the same jitted pass keeps it to one trace of the solver.
        return _jacobian_with_solution(problem, th)[1]

    @f.defjvp
    def f_jvp(primals, tangents):
        (th,), (dth,) = primals, tangents
        J, out = _jacobian_with_solution(problem, th)
        return out, (J @ dth, jax.tree.map(jnp.zeros_like, out[1]))

    return f


class _Optimum(NamedTuple):
    """What :func:`_optimise` returns (a pytree; ``vmap`` stacks every field)."""

    theta: Array  # the optimum, in the unconstrained parameters
    history: Array  # the recorded objective per step
    steps: Array  # optimiser steps taken
    converged: Array  # the optimiser's criterion met
    loss: Array  # mean squared residual (mse) or negative log-likelihood at theta
    covariance: Array  # Laplace covariance of theta (NaN with covariance=False)
    information: Array  # Fisher information (J^T J / sigma^2) or the NLL's Hessian
    solution: Any  # (mse) the merged grid's solution at theta, else None


def _optimise(problem: _Problem, theta0, steps, tol, covariance=True) -> _Optimum:
    """Optimise from ``theta0``; return theta, history, steps, converged, loss, covariance,
    Fisher information (of theta) and (``mse``) the grid's solution at theta. ``tol`` is
    the optimisers' relative and absolute tolerance.

    The covariance of theta (Laplace) is computed here from the Jacobian or Hessian that the
    optimiser has at its last point, so each derivative program is compiled once: for
    ``mse`` :math:`\\hat\\sigma^2 (J^\\top J)^{-1}`, for likelihoods :math:`H^{-1}`.
    With ``covariance=False`` (batches of fits, which report no intervals) the covariance
    returned is NaN and no solution is returned.
    """
    lm = optx.LevenbergMarquardt(rtol=tol, atol=tol)
    if problem.loss == "mse":
        # The last accepted point's residuals, Jacobian and solution are all in the solver
        # state: the program holds one (sensitivity) solve, see `_jacobian_once`.
        record = lambda th, state: jnp.mean(state.f_info.residual**2)  # noqa: E731
        f = _jacobian_once(problem)
        theta, hist, n, done, state = _iterate(lm, lambda th, _: f(th), theta0, steps, record)
        r = state.f_info.residual
        J = state.f_info.jac.as_matrix()
        sigma2 = jnp.sum(r**2) / max(problem.n - theta.shape[0], 1)
        info = J.T @ J / sigma2
        if not covariance:
            nan = jnp.full((theta.shape[0],) * 2, jnp.nan, theta.dtype)
            return _Optimum(theta, hist, n, done, jnp.mean(r**2), nan, info, None)
        cov = sigma2 * jnp.linalg.pinv(J.T @ J)
        return _Optimum(theta, hist, n, done, jnp.mean(r**2), cov, info, state.aux)
    # Likelihoods: LM on the Anscombe residuals (its objective, 0.5 * sum r^2, is recorded),
    # then Newton on the exact NLL (the NLL is recorded).
    record = lambda th, state: 0.5 * jnp.sum(state.f_info.residual**2)  # noqa: E731
    fn = lambda th, _: (problem.residuals(th), None)  # noqa: E731
    theta, hist, n, _, _ = _iterate(lm, fn, theta0, steps, record)
    newton = optx.Newton(rtol=tol, atol=tol)
    grad = lambda th, _: (jax.jacfwd(problem.nll)(th), None)  # noqa: E731
    theta_n, hist_n, n_n, _, _ = _iterate(newton, grad, theta, 50, lambda th, _: problem.nll(th))
    # Keep the Newton polish only if it improved the likelihood (one vmapped evaluation).
    nll_both = jax.vmap(problem.nll)(jnp.stack([theta, theta_n]))
    # (A failed solve scores a finite 1e12 with a zero derivative, where Newton's step is
    # NaN: a NaN point is never "better".)
    better = (jnp.all(jnp.isfinite(theta_n)) & jnp.isfinite(nll_both[1])
              & (nll_both[1] <= nll_both[0]))
    theta = jnp.where(better, theta_n, theta)
    # Converged when the Newton decrement g^T H^-1 g / 2 (the predicted remaining decrease
    # of the NLL) is negligible: invariant to the parametrisation, and usable in float32.
    g_twice = lambda th: (jax.jacfwd(problem.nll)(th),) * 2  # noqa: E731
    H, g = jax.jacfwd(g_twice, has_aux=True)(theta)
    decrement = 0.5 * g @ jnp.linalg.solve(H, g)
    done = jnp.isfinite(decrement) & (jnp.abs(decrement) < 1e-4)
    loss = jnp.where(better, nll_both[1], nll_both[0])
    cov = jnp.linalg.pinv(H) if covariance else jnp.full_like(H, jnp.nan)
    return _Optimum(theta, jnp.concatenate([hist, hist_n]), n + n_n, done, loss, cov, H, None)
