r"""SIR-family compartmental models on diffrax: exact, differentiable and vectorised.

Every model is a small frozen :class:`equinox.Module` with a vector field in diffrax's
``(t, y, args)`` convention, where ``y`` holds the compartments in ``model.compartments``
order and ``args`` is the parameter mapping (the rates in ``model.rate_names`` plus the
population ``N``). Transmission is frequency dependent, :math:`\beta S I / N`, so the same
parameters describe counts (``N`` people) and fractions (``N = 1``).

Any rate may be time-varying: a value in ``params`` may be a Python function of ``t``, a
diffrax interpolation (any :class:`diffrax.AbstractPath`, evaluated with ``.evaluate(t)``) or
a Flax network wrapped in :class:`NetworkRate`. Constant rates stay plain arrays (the fast
path).

:func:`solve` integrates one trajectory, :func:`solve_ensemble` many at once (one Tsit5
solve, diffrax's step and step-size controller, over the stacked state of a chunk of
members, with the error of *every* member controlled by a max norm). Derived quantities:
:func:`R0`, :func:`effective_reproduction_number`, :func:`incidence`, :func:`cumulative_cases`,
:func:`peak`, :func:`growth_rate`, :func:`doubling_time`, :func:`final_size`.

Internally the ODE is integrated in population fractions :math:`x = y / N` (so ``atol`` means
the same for counts and fractions) and the result is scaled back to counts. Where the total
is conserved for every ``y0`` (all models but :class:`SIRVitalDynamics`), R is not
integrated but computed as the conserved total minus the other compartments; Runge-Kutta
methods conserve linear invariants, so this changes nothing but roundoff and saves a
component. Incidence is exact: S(t_i) - S(t_{i+1}) where S only decreases by infection,
otherwise an integrated infection-flow state. The default solver is Tsit5, written out as
straight-line code (``_Tsit5``; same numbers as :class:`diffrax.Tsit5`, faster on CPU).

Validation happens in plain Python before compilation. Values (signs, finiteness, sums,
monotone ``ts``) are only checked on concrete inputs: under ``jax.jit``, ``jax.vmap`` or
``jax.grad`` the inputs are tracers and only shapes and names are checked.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from .flows import (
    Model,
    _evaluate_rate,
    _evaluate_rates,
    _infected_index,
    _is_time_varying,
    _leading_eigenvalue,
    _r0_member,
    flow,
    infection,
    next_generation_matrices,
)
from .sharding import batch_sharding, loop_kernel_bytes, map_blocks, replicated, resolve_mesh

__all__ = [
    "CompartmentalModel",
    "EnsembleSummary",
    "ensemble_summary",
    "SIR",
    "SIRD",
    "SIRS",
    "SEIR",
    "SEIRD",
    "SIRVitalDynamics",
    "NetworkRate",
    "Trajectory",
    "FinalSize",
    "solve",
    "solve_ensemble",
    "R0",
    "effective_reproduction_number",
    "incidence",
    "cumulative_cases",
    "peak",
    "growth_rate",
    "doubling_time",
    "final_size",
]

# Relative slack allowed when checking sum(y0) = N: float32 inputs such as N - I0, a
# population reported to a few digits, and finite-difference steps of 1e-4 in N or y0.
_SUM_RTOL = 1e-3


# --------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------


class NetworkRate(eqx.Module):
    r"""A positive rate :math:`\theta(t)` given by a Flax (Linen) network of time.

    .. math::

        \theta(t) = \operatorname{transform}\big(f_{\text{params}}(t / t_\text{scale})\big),

    where :math:`f` is ``module.apply`` with input shape ``(1,)`` and one output. The
    network ``params`` are the pytree leaves of this module, so ``jax.grad`` through
    :func:`solve` reaches them (the neural-:math:`\beta(t)` estimator trains them that way).

    Args:
        module: a Flax Linen module mapping an input of shape ``(1,)`` to one output
            (stored as static: it is hashable configuration, not data).
        params: its variables, as returned by ``module.init``.
        transform: maps the raw output to a positive rate; default ``jax.nn.softplus``.
        t_scale: time is divided by this before entering the network (inputs of order 1
            train better).

    Examples:
        >>> import flax.linen as nn
        >>> import jax.random as jr
        >>> net = nn.Dense(1)
        >>> rate = NetworkRate(net, net.init(jr.PRNGKey(0), jnp.ones((1,))), t_scale=100.0)
        >>> bool(rate(5.0) > 0), rate(5.0).shape
        (True, ())
    """

    module: Any = eqx.field(static=True)
    params: PyTree
    transform: Callable[[Array], Array] = eqx.field(static=True, default=jax.nn.softplus)
    t_scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not hasattr(self.module, "apply"):
            raise TypeError(
                f"`module` must be a Flax Linen module with `.apply`; got {type(self.module)}."
            )
        if not (isinstance(self.t_scale, (int, float)) and self.t_scale > 0):
            raise ValueError(f"`t_scale` must be a positive number; got {self.t_scale!r}.")

    def __call__(self, t: ArrayLike) -> Float[Array, ""]:
        x = jnp.reshape(jnp.asarray(t) / self.t_scale, (1,))
        out = self.module.apply(self.params, x)
        if jnp.size(out) != 1:
            raise ValueError(
                f"`module` must return one output for NetworkRate; got shape {jnp.shape(out)}."
            )
        return self.transform(jnp.reshape(out, ()))


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class SIRParams(NamedTuple):
    """Parameters of :class:`SIR`."""

    beta: Any
    gamma: Any
    N: Any


class SIRDParams(NamedTuple):
    """Parameters of :class:`SIRD`."""

    beta: Any
    gamma: Any
    mu: Any
    N: Any


class SIRSParams(NamedTuple):
    """Parameters of :class:`SIRS`."""

    beta: Any
    gamma: Any
    omega: Any
    N: Any


class SEIRParams(NamedTuple):
    """Parameters of :class:`SEIR`."""

    beta: Any
    sigma: Any
    gamma: Any
    N: Any


class SEIRDParams(NamedTuple):
    """Parameters of :class:`SEIRD`."""

    beta: Any
    sigma: Any
    gamma: Any
    mu: Any
    N: Any


class SIRVitalDynamicsParams(NamedTuple):
    """Parameters of :class:`SIRVitalDynamics`."""

    beta: Any
    gamma: Any
    mu: Any
    N: Any


CompartmentalModel = Model
"""The class of every compartmental model (an alias of :class:`epinn.Model`)."""


# The built-in models are definitions in the flow language. Their rate functions live at
# module level, so that two instances (``SIR() == SIR()``) are equal and share compilations.


def _si(t, y, p):
    return p.beta * y.S * y.I / p.N


def _recovery(t, y, p):
    return p.gamma * y.I


def _disease_death(t, y, p):
    return p.mu * y.I


def _waning(t, y, p):
    return p.omega * y.R


def _onset(t, y, p):
    return p.sigma * y.E


def _birth(t, y, p):
    return p.mu * p.N


def _death_S(t, y, p):
    return p.mu * y.S


def _death_I(t, y, p):
    return p.mu * y.I


def _death_R(t, y, p):
    return p.mu * y.R


_SIR_FLOWS = (infection("S", "I", _si), flow("I", "R", _recovery))
_SEIR_FLOWS = (infection("S", "E", _si), flow("E", "I", _onset), flow("I", "R", _recovery))


class SIR(Model):
    r"""Kermack-McKendrick SIR model.

    .. math::

        \dot S = -\beta S I / N, \quad \dot I = \beta S I / N - \gamma I, \quad
        \dot R = \gamma I, \qquad R_0 = \beta / \gamma.

    Examples:
        >>> SIR().compartments, SIR().rate_names
        (('S', 'I', 'R'), ('beta', 'gamma'))
    """

    Params: ClassVar[type] = SIRParams

    def __init__(self):
        super().__init__(("S", "I", "R"), ("beta", "gamma"), _SIR_FLOWS, name="SIR")


class SIRD(Model):
    r"""SIR with disease deaths at rate :math:`\mu` from I.

    .. math::

        \dot S = -\beta S I/N,\ \dot I = \beta S I/N - (\gamma + \mu) I,\
        \dot R = \gamma I,\ \dot D = \mu I, \qquad R_0 = \beta / (\gamma + \mu).
    """

    Params: ClassVar[type] = SIRDParams

    def __init__(self):
        super().__init__(
            ("S", "I", "R", "D"), ("beta", "gamma", "mu"),
            (*_SIR_FLOWS, flow("I", "D", _disease_death, name="deaths")), name="SIRD",
        )


class SIRS(Model):
    r"""SIR with waning immunity at rate :math:`\omega` (R back to S).

    .. math::

        \dot S = -\beta S I/N + \omega R,\ \dot I = \beta S I/N - \gamma I,\
        \dot R = \gamma I - \omega R, \qquad R_0 = \beta / \gamma.

    There is no final size (the disease can become endemic).
    """

    Params: ClassVar[type] = SIRSParams

    def __init__(self):
        super().__init__(
            ("S", "I", "R"), ("beta", "gamma", "omega"),
            (*_SIR_FLOWS, flow("R", "S", _waning)), name="SIRS",
        )


class SEIR(Model):
    r"""SEIR model: infected people are first exposed (E), infectious after mean
    :math:`1/\sigma`.

    .. math::

        \dot S = -\beta S I/N,\ \dot E = \beta S I/N - \sigma E,\
        \dot I = \sigma E - \gamma I,\ \dot R = \gamma I, \qquad R_0 = \beta / \gamma.
    """

    Params: ClassVar[type] = SEIRParams

    def __init__(self):
        super().__init__(("S", "E", "I", "R"), ("beta", "sigma", "gamma"), _SEIR_FLOWS,
                         name="SEIR")


class SEIRD(Model):
    r"""SEIR with disease deaths at rate :math:`\mu` from I.

    .. math::

        \dot S = -\beta S I/N,\ \dot E = \beta S I/N - \sigma E,\
        \dot I = \sigma E - (\gamma + \mu) I,\ \dot R = \gamma I,\ \dot D = \mu I,
        \qquad R_0 = \beta / (\gamma + \mu).
    """

    Params: ClassVar[type] = SEIRDParams

    def __init__(self):
        super().__init__(
            ("S", "E", "I", "R", "D"), ("beta", "sigma", "gamma", "mu"),
            (*_SEIR_FLOWS, flow("I", "D", _disease_death, name="deaths")), name="SEIRD",
        )


class SIRVitalDynamics(Model):
    r"""SIR with births and natural deaths at the same per-capita rate :math:`\mu`.

    .. math::

        \dot S = \mu N - \beta S I/N - \mu S,\ \dot I = \beta S I/N - (\gamma + \mu) I,\
        \dot R = \gamma I - \mu R, \qquad R_0 = \beta / (\gamma + \mu).

    The total stays ``N`` when ``sum(y0) = N``. There is no final size (endemic
    equilibrium instead).
    """

    Params: ClassVar[type] = SIRVitalDynamicsParams

    def __init__(self):
        super().__init__(
            ("S", "I", "R"), ("beta", "gamma", "mu"),
            (flow(None, "S", _birth, name="births"), infection("S", "I", _si),
             flow("S", None, _death_S), flow("I", "R", _recovery), flow("I", None, _death_I),
             flow("R", None, _death_R)),
            name="SIRVitalDynamics",
        )


# --------------------------------------------------------------------------------------
# Trajectory
# --------------------------------------------------------------------------------------


class Trajectory(eqx.Module):
    """Solution of :func:`solve` / :func:`solve_ensemble` (a pytree).

    Attributes:
        ts: saved times, shape ``(T,)``.
        ys: compartments in counts, ``(T, C)`` or ``(members, T, C)``.
        cumulative_infections: infections since ``ts[0]``, ``(T,)`` or ``(members, T)``
            (zero at ``ts[0]``); :func:`incidence` is its difference. Constructed with
            ``None``, it is derived from ``ys`` when read, as :math:`S(t_0) - S(t)`:
            :func:`solve_ensemble` does that for the models in which S falls by infection
            only (SIR, SIRD, SEIR, SEIRD), so that an ensemble's output holds the
            compartments alone (a quarter less memory and layout work for SIR).
        success: whether the solve succeeded, ``()`` or ``(members,)``. With
            ``throw=False`` a failed member has ``success=False`` and its values from the
            failure on are ``inf`` (or NaN); mask with ``success`` when fitting.
        num_steps: accepted+rejected solver steps, ``()`` or ``(members,)`` (members of
            one stacked chunk share a count).
        compartments: names of the columns of ``ys`` (static).

    ``traj["I"]`` returns ``ys[..., index of "I"]``.
    """

    ts: Float[Array, " T"]
    ys: Float[Array, "*members T C"]
    _cumulative: Float[Array, "*members T"] | None
    success: Bool[Array, "*members"]
    num_steps: Int[Array, "*members"]
    compartments: tuple[str, ...] = eqx.field(static=True)
    groups: tuple[str, ...] | None = eqx.field(static=True)
    infections_from: str = eqx.field(static=True)
    flows: tuple[str, ...] = eqx.field(static=True)
    count_rules: tuple[tuple[str, str, str], ...] = eqx.field(static=True)
    counted: tuple[str, ...] = eqx.field(static=True)
    _counts: Float[Array, "*members T k"] | None

    def __init__(
        self,
        ts: ArrayLike,
        ys: ArrayLike,
        cumulative_infections: ArrayLike | None,
        success: ArrayLike,
        num_steps: ArrayLike,
        compartments: tuple[str, ...],
        *,
        groups: tuple[str, ...] | None = None,
        infections_from: str = "S",
        flows: tuple[str, ...] = (),
        count_rules: tuple[tuple[str, str, str], ...] = (),
        counts: tuple[tuple[str, ...], ArrayLike | None] = ((), None),
    ):
        compartments = tuple(compartments)
        if cumulative_infections is None and infections_from not in compartments:
            raise ValueError(
                f"`cumulative_infections=None` derives them as {infections_from}(t0) - "
                f"{infections_from}(t), which needs an {infections_from!r} compartment; got "
                f"compartments {compartments}."
            )
        self.ts, self.ys, self.success, self.num_steps = ts, ys, success, num_steps
        self._cumulative = cumulative_infections
        self.compartments = compartments
        self.groups = None if groups is None else tuple(groups)
        self.infections_from = infections_from
        self.flows, self.count_rules = tuple(flows), tuple(count_rules)
        self.counted, self._counts = tuple(counts[0]), counts[1]

    def flow_count(self, name: str) -> Float[Array, "*members T"]:
        """Cumulative count of flow ``name`` since ``ts[0]`` (summed over groups).

        Read off a compartment where the model's definition allows it
        (:meth:`epinn.Model.count_rule`: deaths into ``D``), else integrated when
        :func:`solve` was asked for it (``counts=(name,)``).
        """
        if name in self.counted:
            return self._counts[..., self.counted.index(name)]
        for flow_name, kind, c in self.count_rules:
            if flow_name == name:
                y = self[c]
                if self.groups is not None:
                    y = jnp.sum(y, axis=-2)
                return y - y[..., :1] if kind == "target" else y[..., :1] - y
        if name not in self.flows:
            raise KeyError(f"Unknown flow {name!r}; the flows are {self.flows}."
                           + _closest(name, self.flows))
        raise ValueError(
            f"The count of flow {name!r} does not follow from the compartments (other flows "
            f"share them); solve with counts=({name!r},) to integrate it."
        )

    @property
    def cumulative_infections(self) -> Float[Array, "*members T"]:
        """Infections since ``ts[0]``: stored, or :math:`S(t_0) - S(t)` from ``ys``."""
        if self._cumulative is not None:
            return self._cumulative
        s = self[self.infections_from]
        if self.groups is not None:
            s = jnp.sum(s, axis=-2)
        return s[..., :1] - s

    def __getitem__(self, name: str) -> Float[Array, "*members T"]:
        """One compartment over time: ``(*members, T)``, or ``(*members, G, T)`` by group."""
        if name not in self.compartments:
            raise KeyError(
                f"Unknown compartment {name!r}; valid names are {self.compartments}."
            )
        j = self.compartments.index(name)
        if self.groups is None:
            return self.ys[..., j]
        return jnp.swapaxes(self.ys[..., j, :], -1, -2)

    @property
    def is_ensemble(self) -> bool:
        """True when ``ys`` has a leading members axis."""
        return self.ys.ndim == (3 if self.groups is None else 4)


# --------------------------------------------------------------------------------------
# Validation (plain Python, before any compilation)
# --------------------------------------------------------------------------------------


def _float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _is_tracer(x: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check_model(model: Any) -> None:
    if not isinstance(model, CompartmentalModel):
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
    model: CompartmentalModel, params: Any, *, max_ndim: int | None
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


def _normalize_y0(model: CompartmentalModel, y0: Any, *, max_ndim: int) -> Array:
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
    y0: Array, N: Array, model: CompartmentalModel | None = None, *, whole: bool = True
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


class _Config(eqx.Module):
    solver: Any
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    adjoint: Any
    throw: bool = eqx.field(static=True)


def _make_config(solver, rtol, atol, dt0, max_steps, adjoint, throw) -> _Config:
    """Check the solver settings and bundle them (cached when they are plain values)."""
    plain = (float, int, bool, type(None))
    if (solver is None and type(adjoint) in (type(None), diffrax.DirectAdjoint)
            and all(type(v) in plain for v in (rtol, atol, dt0, max_steps, throw))):
        return _plain_config(rtol, atol, dt0, max_steps, adjoint is not None, throw)
    return _build_config(solver, rtol, atol, dt0, max_steps, adjoint, throw)


@functools.lru_cache(maxsize=64)
def _plain_config(rtol, atol, dt0, max_steps, direct, throw) -> _Config:
    """:func:`_build_config` with the default solver: built once per setting (~0.1 ms)."""
    adjoint = diffrax.DirectAdjoint() if direct else None
    return _build_config(None, rtol, atol, dt0, max_steps, adjoint, throw)


def _build_config(solver, rtol, atol, dt0, max_steps, adjoint, throw) -> _Config:
    solver = _Tsit5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver such as Tsit5(); got {solver!r}.")
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(f"`adjoint` must be a diffrax adjoint; got {adjoint!r}.")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, jax.core.Tracer) or not np.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"`{name}` must be a positive finite number; got {v!r}.")
    if dt0 is not None and (not np.isfinite(float(dt0)) or float(dt0) <= 0):
        raise ValueError(f"`dt0` must be None or a positive number; got {dt0!r}.")
    if not isinstance(max_steps, (int, np.integer)) or max_steps <= 0:
        raise ValueError(f"`max_steps` must be a positive int; got {max_steps!r}.")
    return _Config(
        solver=solver,
        rtol=float(rtol),
        atol=float(atol),
        dt0=None if dt0 is None else float(dt0),
        max_steps=int(max_steps),
        adjoint=adjoint,
        throw=bool(throw),
    )


# --------------------------------------------------------------------------------------
# Integration core
# --------------------------------------------------------------------------------------


class _Tsit5(diffrax.Tsit5):
    """diffrax's Tsit5 with its seven stages written out as straight-line code.

    Same tableau, embedded error estimate, FSAL state and 5th-order dense interpolation as
    :class:`diffrax.Tsit5` (identical step sequences up to roundoff). diffrax's generic
    Runge-Kutta step runs the stages in an inner loop over a stage buffer, which keeps XLA
    from fusing the stage arithmetic; written out, a step over a stacked ensemble state ran
    ~2.5x faster on CPU. Hand-written for this reason; used when ``solver=None``.
    """

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        first_step, f0 = solver_state
        control = terms.contr(t0, t1)
        f0 = jax.lax.cond(
            first_step | made_jump, lambda: terms.vf(t0, y0, args), lambda: f0
        )
        ks = [terms.prod(f0, control)]
        y = y0
        for a, c in zip(tab.a_lower, tab.c):
            y = y0 + sum(float(aj) * kj for aj, kj in zip(a, ks))
            f = terms.vf(t0 + float(c) * (t1 - t0), y, args)
            ks.append(terms.prod(f, control))
        # Tsit5 is stiffly accurate: the last stage's input is the solution, and its
        # vector field is the next step's first stage (FSAL).
        y_error = sum(float(b) * k for b, k in zip(tab.b_error, ks))
        dense_info = dict(y0=y0, y1=y, k=jnp.stack(ks))
        return y, y_error, dense_info, (jnp.array(False), f), diffrax.RESULTS.successful


def _max_rms_norm(y: Array) -> Array:
    """RMS over compartments of each member, then the max over members (axis 1)."""
    if y.ndim <= 1:
        return optx.rms_norm(y)
    return jnp.max(jax.vmap(optx.rms_norm, in_axes=1)(y))


class _Parts(NamedTuple):
    """How a model is integrated: the solver's inputs, vector field and read-out.

    The compartment ``model._derived`` (if any) is not integrated: it is the conserved
    total minus the others. The infection flow is integrated as an extra state only when S
    does not decrease by infection alone. ``inputs(rates, x0) -> (args, x_init)`` and
    ``outputs(xs, args) -> (fractions, cumulative infections)`` are pure functions, so
    their JVPs give the sensitivities' initial values and read-out.
    """

    inputs: Callable
    field: Callable
    outputs: Callable
    rows: Callable
    from_rows: Callable


def _scale(model: CompartmentalModel, N: Array) -> Array:
    """The population a state is divided by: ``N``, or the sum of the group sizes."""
    return N if model.groups is None else jnp.sum(N, axis=-1)


@functools.lru_cache(maxsize=64)
def _parts(model: CompartmentalModel, counted: tuple[str, ...] = ()) -> _Parts:
    """The integration of ``model``; ``counted`` flows' cumulative counts ride along.

    The extra states after the compartments are the cumulative infections (when they
    cannot be read off a compartment) and then one per counted flow. ``outputs`` then
    returns ``(fractions, cumulative infections, counts (T, k))``.
    """
    if counted:
        return _counting_parts(model, counted)
    extra = not model._infections_from_S
    d = None if model._derived is None else model._index(model._derived)
    G, C = model.n_groups, len(model.compartments)
    homogeneous = model.structure.homogeneous

    def block(x, k):  # compartment k of a flat state (C * G, ...) or ((C - 1) * G, ...)
        return x[k] if G == 1 else x[k * G:(k + 1) * G]

    def totals(x0):  # the population of each group, (...) or (G, ...)
        return jnp.sum(x0, axis=0) if G == 1 else sum(block(x0, k) for k in range(C))

    def full(x, total):  # insert the derived compartment (conservation law)
        if d is None:
            return x
        # summed slice by slice: elementwise, so XLA fuses it (a reduction over the few
        # compartments became a separate library call on CPU)
        rest = total - sum(block(x, k) for k in range(C - 1))
        rest = rest[None] if G == 1 else rest
        return jnp.concatenate([x[: d * G], rest, x[d * G :]], axis=0)

    def inputs(rates, x0):
        args = {**rates, "_total": totals(x0)}
        N = rates.get("N")
        if N is None:  # fractions of a population of one (unstratified callers only)
            args["N"] = jnp.ones((), x0.dtype)
        elif homogeneous:  # the rates scale with (y, N): integrate fractions exactly
            args["N"] = jnp.ones_like(N) if G == 1 else N / _scale(model, N)[..., None]
        else:  # rates are evaluated at counts
            args["_scale"] = _scale(model, N)
        x_init = x0 if d is None else jnp.concatenate([x0[: d * G], x0[(d + 1) * G :]], axis=0)
        if extra:
            x_init = jnp.concatenate([x_init, jnp.zeros_like(x0[:1])], axis=0)
        return args, x_init

    def field(t, x, args):
        r = _evaluate_rates(args, t)
        y = full(x[:-1] if extra else x, args["_total"])
        scale = args.get("_scale")
        if scale is not None:
            y = y * scale
        dy, new = model._derivative(t, y, r)
        if d is not None:
            dy = dy[:d] + dy[d + 1 :]
        if G == 1:
            out = jnp.stack([*dy, new] if extra else dy, axis=0)
        else:
            out = jnp.concatenate([*dy, new[None]] if extra else dy, axis=0)
        return out if scale is None else out / scale

    def source_total(xs, axis):  # the infection source compartment, summed over groups
        s = model._index(model.infections_from)
        sl = jax.lax.slice_in_dim(xs, s * G, (s + 1) * G, axis=axis)
        return jnp.sum(sl, axis=axis) if G > 1 else jnp.squeeze(sl, axis)

    def outputs(xs, args):  # xs: (T, state[, members])
        if extra:
            xs, cum = xs[:, :-1], xs[:, -1]
        xs = jax.vmap(lambda x: full(x, args["_total"]))(xs)
        if not extra:
            src = source_total(xs, 1)
            cum = src[:1] - src
        return xs, cum

    def rows(x, args):  # a stacked state (state, members) -> member rows (members, C[+1])
        y = full(x[:-1] if extra else x, args["_total"])
        return jnp.concatenate([y, x[-1:]] if extra else [y], axis=0).T

    def from_rows(ys):  # (members, T, C[+1]) -> fractions (members, T, C), cumulative
        if extra:
            return ys[..., :-1], ys[..., -1]
        src = source_total(ys, 2)
        return ys, src[:, :1] - src

    return _Parts(inputs, field, outputs, rows, from_rows)


def _counting_parts(model: CompartmentalModel, counted: tuple[str, ...]) -> _Parts:
    """:func:`_parts` with integrated flow counts (single solves; no member rows)."""
    base = _parts(model)
    k = len(counted)
    own = not model._infections_from_S  # base integrates the infections itself

    def inputs(rates, x0):
        args, x_init = base.inputs(rates, x0)
        return args, jnp.concatenate([x_init, jnp.zeros((k, *x0.shape[1:]), x0.dtype)], axis=0)

    def field(t, x, args):
        dx = base.field(t, x[:-k], args)
        r = _evaluate_rates(args, t)
        G = model.n_groups
        y = x[:-k][: x.shape[0] - k - own] if own else x[:-k]
        d = model._derived
        if d is not None:
            total = args["_total"]
            di = model._index(d)
            blocks = [y[i] if G == 1 else y[i * G:(i + 1) * G] for i in range(y.shape[0] // G)]
            rest = total - sum(blocks)
            y = jnp.concatenate([y[: di * G], rest[None] if G == 1 else rest, y[di * G:]])
        scale = args.get("_scale")
        if scale is not None:
            y = y * scale
        _, _, rates = model._derivative(t, y, r, counted)
        extra = jnp.stack(rates)
        return jnp.concatenate([dx, extra if scale is None else extra / scale], axis=0)

    def outputs(xs, args):
        xs_, cum = base.outputs(xs[:, :-k], args)
        counts = xs[:, -k:]
        return xs_, cum, counts - counts[:1]

    return _Parts(inputs, field, outputs, None, None)


def _diffeqsolve(field, x_init, args, ts, cfg, norm, normalise_time=False):
    r"""diffrax.diffeqsolve from ``ts[0]`` to ``ts[-1]``, saving at ``ts``.

    With ``normalise_time`` the ODE is integrated in
    :math:`\tau = (t - t_0) / (t_1 - t_0) \in [0, 1]`, the vector field scaled by
    :math:`t_1 - t_0` (the same ODE; errors are tested on the state, so the same steps up to
    roundoff). The end points are then constants: diffrax derives a clipping threshold
    from ``t1`` by 100 chained ``prevbefore`` calls, which XLA folds for a constant but
    compiles as ~1500 instructions (~0.3 s) for a traced ``t1``, such as the time grid of a
    fit (a leaf, so that fits share one compilation). Used by the fits' sensitivity solve;
    not by default, because in float32 it made ``diffrax.DirectAdjoint`` gradients noisier
    (8e-3 against 4e-4 relative to float64 on a test ensemble; the other adjoints were
    unaffected).
    """
    if not normalise_time:
        t0, t1, dt0, term, save = ts[0], ts[-1], cfg.dt0, diffrax.ODETerm(field), ts
    else:
        start, span = ts[0], ts[-1] - ts[0]

        def scaled(tau, x, a):
            inner, start_, span_ = a
            return span_ * field(start_ + tau * span_, x, inner)

        t0, t1, term, save = 0.0, 1.0, diffrax.ODETerm(scaled), (ts - start) / span
        dt0, args = None if cfg.dt0 is None else cfg.dt0 / span, (args, start, span)
    return diffrax.diffeqsolve(
        term,
        cfg.solver,
        t0,
        t1,
        dt0,
        x_init,
        args,
        saveat=diffrax.SaveAt(ts=save),
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, norm=norm),
        adjoint=cfg.adjoint,
        max_steps=cfg.max_steps,
        throw=cfg.throw,
    )


def _stacked_loop(field, x_init, args, ts, cfg, rows=None):
    """Integrate a stacked ensemble state with diffrax's Tsit5 step and PID controller.

    The same method, controller, end clipping and dense output as
    ``diffrax.diffeqsolve(..., SaveAt(ts=ts))`` with :func:`_max_rms_norm` (the step
    sequences can still differ by a rejected step, so solutions agree to the tolerance),
    in a plain ``lax.while_loop`` owned here: no runtime checks with host callbacks, which
    ``diffeqsolve`` adds (``saveat.ts`` ordering, ``dt0``, ``throw``). ``ts`` is checked
    at the boundary, and failures are returned, not raised. A program with host callbacks
    is run one device at a time by XLA's CPU client, so without them the devices of a mesh
    solve their blocks in parallel. Not reverse-differentiable by itself: see
    :func:`_stacked_solve`. Returns the saved states ``(T, *x_init.shape)`` (``inf``
    where not reached), success and the number of steps (accepted and rejected).

    With ``rows(x, args) -> (members, k)`` each saved state is stored as member rows
    instead, and the saved states are ``(members, T, k)``. An ensemble's output is
    member-major: written row by row at each saved time, it costs about half as much on
    CPU as transposing a chunk's time-major states afterwards, which XLA fuses into an
    element-by-element copy.
    """
    term, solver = diffrax.ODETerm(field), cfg.solver
    ctrl = diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, norm=_max_rms_norm)
    order = solver.order(term)
    t0, t1, T = ts[0], ts[-1], ts.shape[0]
    tn, c_state = ctrl.init(term, t0, t1, x_init, cfg.dt0, args, solver.func, order)
    tn = jnp.minimum(tn, t1)
    s_state = solver.init(term, t0, tn, x_init, args)
    t1_floor = t1 - 100 * jnp.finfo(jnp.result_type(t1)).eps * jnp.abs(t1)
    if rows is None:
        ys, axis = jnp.full((T, *x_init.shape), jnp.inf, x_init.dtype).at[0].set(x_init), 0
    else:
        r0 = rows(x_init, args)
        ys, axis = jnp.full((r0.shape[0], T, r0.shape[1]), jnp.inf, r0.dtype).at[:, 0].set(r0), 1
    keep_as = (lambda x: x) if rows is None else (lambda x: rows(x, args))

    def cond(c):
        t, tn, _, _, _, _, _, n = c
        return (t < t1) & (n < cfg.max_steps) & jnp.isfinite(tn)

    def body(c):
        t, tn, x, s_state, c_state, j, ys, n = c
        y1, err, dense, s_new, _ = solver.step(term, t, tn, x, args, s_state, False)
        keep, nt0, nt1, _, c_state, _ = ctrl.adapt_step_size(
            t, tn, x, y1, args, err, order, c_state
        )
        interp = solver.interpolation_cls(t0=t, t1=tn, **dense)

        def save_cond(sc):  # the saved times in (t, tn] of an accepted step
            j, _ = sc
            return keep & (j < T) & (ts[jnp.minimum(j, T - 1)] <= tn)

        def save(sc):
            j, ys = sc
            x_j = keep_as(interp.evaluate(ts[j]))
            return j + 1, jax.lax.dynamic_update_index_in_dim(ys, x_j, j, axis)

        j, ys = jax.lax.while_loop(save_cond, save, (j, ys))
        x = jnp.where(keep, y1, x)
        s_state = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), s_new, s_state)
        # diffrax's end clipping: a step that would end within ~100 ulp of t1 or beyond it
        # ends at t1 if this one was accepted, halfway there if it was rejected.
        clip = jnp.where(keep, t1, t + 0.5 * (t1 - t))
        return nt0, jnp.where(nt1 > t1_floor, clip, nt1), x, s_state, c_state, j, ys, n + 1

    init = (t0, tn, x_init, s_state, c_state, jnp.int32(1), ys, jnp.int32(0))
    t, _, _, _, _, j, ys, n = jax.lax.while_loop(cond, body, init)
    return ys, (t >= t1) & (j == T), n


def _stacked_solve(field, x_init, args, ts, cfg, rows=None):
    """:func:`_stacked_loop`, reverse-differentiable through diffrax.

    The forward pass is the own loop; a cotangent is pulled back through
    ``diffrax.diffeqsolve`` with ``cfg.adjoint`` (the same solution up to roundoff, laid
    out as the loop's by ``rows``). Forward mode is not available here; the callers use
    diffrax for it.
    """
    dyn, static = eqx.partition(args, eqx.is_array)

    @jax.custom_vjp
    def run(dyn, x_init, ts):
        return _stacked_loop(field, x_init, eqx.combine(dyn, static), ts, cfg, rows)

    def fwd(dyn, x_init, ts):
        return run(dyn, x_init, ts), (dyn, x_init, ts)

    def bwd(res, ct):
        def ys_of(dyn, x_init, ts):
            a = eqx.combine(dyn, static)
            ys = _diffeqsolve(field, x_init, a, ts, cfg, _max_rms_norm).ys
            return ys if rows is None else jnp.swapaxes(jax.vmap(lambda x: rows(x, a))(ys), 0, 1)

        _, pull = jax.vjp(ys_of, *res)
        return pull(ct[0])

    run.defvjp(fwd, bwd)
    return run(dyn, x_init, ts)


def _integrate(
    model: CompartmentalModel,
    rates: Mapping[str, Any],
    x0: Array,
    ts: Array,
    cfg: _Config,
) -> tuple[Array, Array, Array, Array]:
    """Integrate fractions ``x0`` of shape (C,) or (C, members) at N = 1.

    Returns fractions ``(T, C[, members])``, cumulative infections ``(T[, members])``
    (fractions), success and step count.
    """
    parts = _parts(model)
    args, x_init = parts.inputs(rates, x0)
    sol = _diffeqsolve(parts.field, x_init, args, ts, cfg, _max_rms_norm)
    ys, ok, steps = sol.ys, diffrax.is_successful(sol.result), sol.stats["num_steps"]
    xs, cum = parts.outputs(ys, args)
    return xs, cum, ok, steps


def _integrate_counts(model, rates, x0, ts, cfg, counted):
    """:func:`_integrate` of one member with the cumulative counts of ``counted`` flows.

    Returns fractions ``(T, C)``, cumulative infections ``(T,)``, counts ``(T, k)``
    (fractions, zero at ``ts[0]``), success and step count.
    """
    parts = _parts(model, counted)
    args, x_init = parts.inputs(rates, x0)
    sol = _diffeqsolve(parts.field, x_init, args, ts, cfg, _max_rms_norm)
    xs, cum, counts = parts.outputs(sol.ys, args)
    return xs, cum, counts, diffrax.is_successful(sol.result), sol.stats["num_steps"]


def _integrate_rows(
    model: CompartmentalModel,
    rates: Mapping[str, Any],
    x0: Array,
    ts: Array,
    cfg: _Config,
) -> tuple[Array, Array, Array, Array]:
    """Integrate a stacked state of fractions ``x0`` (C, members) by the own loop.

    :func:`_stacked_solve` with each saved state written as member rows. Returns
    fractions ``(members, T, C)``, cumulative infections ``(members, T)`` (fractions),
    success and step count.
    """
    parts = _parts(model)
    args, x_init = parts.inputs(rates, x0)
    ys, ok, steps = _stacked_solve(parts.field, x_init, args, ts, cfg, parts.rows)
    xs, cum = parts.from_rows(ys)
    return xs, cum, ok, steps


def _integrate_sensitivities(
    model: CompartmentalModel,
    rates: Mapping[str, Any],
    x0: Array,
    ts: Array,
    cfg: _Config,
    d_rates: Mapping[str, Any],
    d_x0: Array,
):
    r""":func:`_integrate` of one member with its forward sensitivities.

    ``d_rates`` and ``d_x0`` hold ``P`` tangent directions along a leading axis (e.g. the
    derivatives of the rates and of ``x0`` with respect to ``P`` parameters). The
    sensitivities :math:`s_p = \partial x / \partial \theta_p` are integrated alongside
    the state, :math:`\dot s_p = \partial_x f\, s_p + \partial_\theta f\, e_p` (the
    vector field's JVP), on the steps that the state's error test chooses (as CVODES does
    without sensitivity error control): the solution is :func:`_integrate`'s (up to
    roundoff), and the sensitivities are 5th-order accurate on those steps. This is the
    forward-sensitivity method: the program is a single solve of a ``(1 + P)``-times larger
    system, which compiles about as fast as the plain solve, where ``jax.jacfwd`` through
    diffrax (``ForwardMode``) adds a JVP and a ``vmap`` of the whole solver loop.
    Constant rates only. Returns ``(xs, cum, ok, steps)`` and their tangents
    ``(d_xs, d_cum)`` with the directions on a leading axis.
    """
    parts = _parts(model)
    (args, x_init), (d_args, d_init) = jax.vmap(
        lambda dr, dx: jax.jvp(parts.inputs, (rates, x0), (dr, dx)), out_axes=(None, 0)
    )(d_rates, d_x0)

    n = x_init.shape[0]  # the state and its P tangents, flattened into one vector

    def field(t, z, a):
        x, dx = z[:n], z[n:].reshape(-1, n)
        args_, d_args_ = a
        f = lambda x_, a_: parts.field(t, x_, a_)  # noqa: E731
        fx, dfx = jax.vmap(lambda u, v: jax.jvp(f, (x, args_), (u, v)), out_axes=(None, 0))(
            dx, d_args_
        )
        return jnp.concatenate([fx, dfx.reshape(-1)])

    z0 = jnp.concatenate([x_init, d_init.reshape(-1)])
    # The error test covers the state only, so the steps (and the solution) are exactly
    # those of `_integrate`; the sensitivities ride along on them.
    norm = lambda z: optx.rms_norm(z[:n])  # noqa: E731
    sol = _diffeqsolve(field, z0, (args, d_args), ts, cfg, norm, normalise_time=True)
    T = sol.ys.shape[0]
    xs_raw, d_raw = sol.ys[:, :n], sol.ys[:, n:].reshape(T, -1, n)  # (T, state), (T, P, state)
    (xs, cum), (d_xs, d_cum) = jax.vmap(
        lambda u, v: jax.jvp(parts.outputs, (xs_raw, args), (u, v)),
        in_axes=(1, 0), out_axes=(None, 0),
    )(d_raw, d_args)
    return (xs, cum, diffrax.is_successful(sol.result), sol.stats["num_steps"]), (d_xs, d_cum)


@eqx.filter_jit
def _solve_core(model, rates, N, y0, ts, cfg, counted=()) -> Trajectory:
    scale = _scale(model, N)
    rates = {**rates, "N": N}
    if not counted:
        xs, cum, ok, steps = _integrate(model, rates, y0 / scale, ts, cfg)
        return _trajectory(model, ts, xs * scale, cum * scale, ok, steps)
    xs, cum, counts, ok, steps = _integrate_counts(model, rates, y0 / scale, ts, cfg, counted)
    return _trajectory(model, ts, xs * scale, cum * scale, ok, steps,
                       counts=(counted, counts * scale[..., None]))


def _trajectory(model, ts, ys, cum, ok, steps, counts=((), None)) -> Trajectory:
    """A :class:`Trajectory` from flat states ``(..., T, C * G)`` (groups unflattened)."""
    if model.groups is not None:
        ys = ys.reshape(*ys.shape[:-1], len(model.compartments), model.n_groups)
    rules = tuple((f.name, *rule) for f in model.flows
                  if (rule := model.count_rule(f.name)) is not None)
    return Trajectory(ts=ts, ys=ys, cumulative_infections=cum, success=ok, num_steps=steps,
                      compartments=model.compartments, groups=model.groups,
                      infections_from=model.infections_from or "S",
                      flows=model.flow_names(), count_rules=rules, counts=counts)


def solve(
    model: CompartmentalModel,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 16384,
    adjoint: diffrax.AbstractAdjoint | None = None,
    throw: bool = True,
    counts: Sequence[str] = (),
) -> Trajectory:
    r"""Integrate a compartmental model and save it at ``ts``.

    Solves :math:`\dot y = f(t, y; \theta)` from ``y(ts[0]) = y0`` with an adaptive diffrax
    solver. Internally it integrates fractions :math:`y/N` with the error test
    :math:`\|e_i / (\text{atol} + \text{rtol}\,|x_i|)\|_\text{RMS} \le 1`, so ``atol`` is in
    units of the population fraction and suits counts and fractions alike.

    Reverse-mode differentiable in ``params`` and ``y0`` (default adjoint); for forward mode
    (``jax.jacfwd``, Levenberg-Marquardt) pass ``adjoint=diffrax.ForwardMode()``. Works
    under ``jax.jit`` and ``jax.vmap`` (then only shapes are validated).

    Args:
        model: e.g. ``SIR()``.
        params: mapping (or ``model.Params``) with every rate in ``model.rate_names`` and the
            population ``N``. A rate may be a function of ``t`` (callable, diffrax
            interpolation or :class:`NetworkRate`); it must stay non-negative, which is
            checked before solving at the saved times ``ts`` and at 1024 evenly spaced
            times between ``ts[0]`` and ``ts[-1]`` (not under ``jit``).
        y0: initial state, a mapping by compartment name (all compartments) or an array in
            ``model.compartments`` order.
        ts: strictly increasing 1-D save times; integration runs from ``ts[0]`` to
            ``ts[-1]``.
        solver: diffrax solver with an error estimate; default Tsit5 (a straight-line
            implementation of ``diffrax.Tsit5``, same numbers, faster on CPU).
        rtol: relative tolerance.
        atol: absolute tolerance on population fractions.
        dt0: initial step; ``None`` lets diffrax choose.
        max_steps: maximum number of solver steps.
        adjoint: diffrax adjoint; default ``RecursiveCheckpointAdjoint()``.
        throw: raise on solver failure. With ``throw=False`` a failure sets
            ``traj.success = False`` and the values from the failure on are inf/NaN.
        counts: names of flows whose cumulative counts to integrate alongside
            (``traj.flow_count(name)``); flows whose count follows from a compartment
            (:meth:`epinn.Model.count_rule`) need not be listed.

    Returns:
        :class:`Trajectory` with ``ys`` of shape ``(len(ts), C)`` (``(len(ts), C, G)``
        with groups) in counts.

    Raises:
        ValueError: bad names, shapes or values of ``params``, ``y0``, ``ts`` or options.
        TypeError: wrong kinds of objects.

    Examples:
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1000.0},
        ...              {"S": 990.0, "I": 10.0, "R": 0.0}, jnp.linspace(0.0, 100.0, 11))
        >>> traj.ys.shape, round(float(traj.ys[-1].sum()), 2)
        ((11, 3), 1000.0)
    """
    _check_model(model)
    rates, N = _normalize_params(model, params, max_ndim=0)
    y0a = _normalize_y0(model, y0, max_ndim=0)
    _check_sum(y0a, N, model)
    tsa = _normalize_ts(ts)
    _check_rate_functions(rates, tsa)
    cfg = _make_config(solver, rtol, atol, dt0, max_steps, adjoint, throw)
    try:
        return _solve_core(model, rates, N, y0a, tsa, cfg, _check_counts(model, counts))
    except eqx.EquinoxRuntimeError as e:
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in rates.items()
                          if not _is_time_varying(v) and np.ndim(v) == 0)
        raise RuntimeError(
            f"solve failed for {model.name} ({shown}): {_solver_reason(e)} The solver "
            f"took max_steps={cfg.max_steps} steps without reaching ts[-1] or the solution "
            "stopped being finite (a stiff problem, e.g. a very large rate). Raise "
            "`max_steps`, check the rates, or pass `throw=False` to get `success=False`."
        ) from None


def _check_counts(model: CompartmentalModel, counts: Any) -> tuple[str, ...]:
    """The flows whose counts must be integrated (unknown names refused)."""
    if isinstance(counts, str):
        counts = (counts,)
    if not isinstance(counts, Sequence):
        raise TypeError(f"`counts` must be a sequence of flow names; got {counts!r}.")
    out = []
    for name in counts:
        if name not in model.flow_names():
            raise ValueError(
                f"`counts` names the unknown flow {name!r}; the flows of {model.name} are "
                f"{model.flow_names()}." + _closest(str(name), model.flow_names()))
        if model.count_rule(name) is None and name not in out:
            out.append(name)
    return tuple(out)


# --------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------


def _ensemble_inputs(
    model: CompartmentalModel, params: Any, y0: Any, *, broadcast: bool = True,
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


def _growth_rate_member(model, r, y0):
    """Leading eigenvalue of the infected subsystem linearised at y0 (one member)."""
    idx = jnp.asarray(_infected_index(model))

    def infected_field(z):
        y = y0.at[idx].set(z)
        dy, _ = model._derivative(0.0, y, r)
        return jnp.concatenate([jnp.reshape(b, (-1,)) for b in dy])[idx]

    J = jax.jacfwd(infected_field)(jnp.zeros(idx.shape[0], y0.dtype))
    return _leading_eigenvalue(J)


def _grouping_order(key: Array) -> Array:
    """A permutation that sorts ``key`` up to quantisation (to group similar members).

    The key is quantised to the high bits of an int32 whose low ``b`` bits hold the
    member's index (``2^b >= M``), and the packed integers are sorted as one operand;
    ties within a quantisation level keep index order. On CPU, XLA sorted 10 000 such
    integers in ~0.4 ms against ~2.4 ms for ``jnp.argsort`` of the float keys (a
    comparator over two operands). Above ``2^24`` members (fewer than 128 levels left)
    it falls back to ``jnp.argsort``.
    """
    M = key.shape[0]
    b = max(1, (M - 1).bit_length())
    if b > 24:
        return jnp.argsort(key)
    key = jnp.nan_to_num(key.astype(jnp.float32))
    lo, hi = jnp.min(key), jnp.max(key)
    levels = 2 ** (31 - b) - 1
    scaled = jnp.where(hi > lo, (key - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    # Clipped as integers: float32 rounding can lift the top level to 2^(31-b).
    q = jnp.clip(jnp.floor(scaled * levels).astype(jnp.int32), 0, levels)
    packed = jax.lax.shift_left(q, jnp.int32(b)) | jnp.arange(M, dtype=jnp.int32)
    return jax.lax.sort(packed) & jnp.int32((1 << b) - 1)


def _chunk_solve(model, method, varying, cfg, ts, own_loop=False, keep_cum=True):
    """A function solving one chunk: ``(xs, cum, ok, steps)`` in member rows.

    Without ``keep_cum`` the cumulative infections are left out (``None``): the caller
    derives them from S when they are read (see :class:`Trajectory`).
    """
    def single(const, N, y0):
        return _integrate(model, {**const, **varying, "N": N}, y0 / _scale(model, N), ts, cfg)

    def run(chunk):
        const, N, y0 = chunk
        m = N.shape[0]
        if method == "vmap":
            xs, cum, ok, steps = jax.vmap(single)(const, N, y0)
        elif own_loop:  # stacked state (C, members), saved as member rows
            rates = {**const, **varying}
            xs, cum, ok, steps = _integrate_rows(
                model, {**rates, "N": N}, y0.T / _scale(model, N), ts, cfg)
        else:
            xs, cum, ok, steps = single(const, N, y0.T)  # state (C, members)
            T, C = xs.shape[:2]  # (T, C, m) -> (m, T, C) as a 2-D transpose: faster on CPU
            xs, cum = xs.reshape(T * C, m).T.reshape(m, T, C), cum.T
        scale = _scale(model, N)
        cum = cum * scale[:, None] if keep_cum else None
        return (xs * scale[:, None, None], cum, jnp.broadcast_to(ok, (m,)),
                jnp.broadcast_to(steps, (m,)))

    return run


def _chunk_layout(members: int, chunk_size: int) -> tuple[int, int]:
    """The number of chunks and their width: equal chunks of at most ``chunk_size + 8``.

    Padding (copies of the last member) fills the last chunk. A width of 256 or more that
    is a multiple of 16 members is widened by 8: each chunk's ``(T * C, width)`` results
    are transposed to member rows, and XLA's CPU transpose slows down when the row stride
    (``4 * width`` bytes in float32) shares a large power of two with the 4 KiB cache-set
    period. On the development machine a ``(483, 1024)`` chunk took ~3x as long to
    transpose as a ``(483, 1032)`` or ``(483, 1000)`` one, and 8192 SIR members in chunks
    of 1024 took 1.6x as long per member as 8200 in chunks of 820.
    """
    n_chunks = -(-members // chunk_size)
    width = -(-members // n_chunks)
    if width >= 256 and width % 16 == 0:
        width += 8
    return n_chunks, width


class _Ensemble(eqx.Module):
    """Sort, chunk and solve an ensemble: one contiguous block of members per device.

    Each device orders its block by early growth rate, cuts it into chunks and solves
    them one after the other, writing each chunk's members straight to their rows: no
    data moves between devices, and the devices run in parallel. The chunks depend on
    the number of devices, so results on different meshes agree within the solver
    tolerance, not bit for bit. A module rather than a closure, so that equal settings
    hash equal and share one compilation.
    """

    model: CompartmentalModel
    chunk_size: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    sort: bool = eqx.field(static=True)
    summary: bool = eqx.field(static=True, default=False)
    own_loop: bool = eqx.field(static=True, default=False)

    def order(self, const, varying, N, y0, ts):
        """Members sorted by early growth rate (similar members share a chunk)."""
        model, M = self.model, N.shape[0]
        r_t0 = {**const, **{k: _evaluate_rate(v, ts[0]) for k, v in varying.items()}}
        shapes = model.param_shapes
        r_t0 = {k: jnp.broadcast_to(v, (M, *shapes[k])) for k, v in r_t0.items()}
        growth = jax.vmap(lambda r, n, y: _growth_rate_member(model, {**r, "N": n}, y))(
            r_t0, N, y0
        )
        return _grouping_order(jax.lax.stop_gradient(growth))

    def run_chunks(self, const, N, y0, valid, shared):
        """Solve a stack of chunks ``(k, chunk, ...)`` one after the other (``lax.map``).

        With ``summary``, each chunk's trajectories are reduced before the next chunk
        runs, so memory does not grow with the number of chunks.
        """
        varying, ts, cfg = shared
        solve_chunk = _chunk_solve(self.model, self.method, varying, cfg, ts, self.own_loop)

        def run(chunk):
            *inputs, w = chunk
            out = solve_chunk(tuple(inputs))
            return _summarise_chunk(self.model, ts, out, w) if self.summary else out

        chunks = (const, N, y0, valid)
        if N.shape[0] == 1:
            return jax.tree_util.tree_map(lambda a: a[None], run(jax.tree_util.tree_map(
                lambda a: a[0], chunks)))
        return jax.lax.map(run, chunks)

    def solve_in_rows(self, const, N, y0, where, M, shared):
        """Solve a stack of chunks into consecutive rows; then put the members in order.

        Chunk ``i`` fills rows ``i * chunk`` to ``(i + 1) * chunk`` of one 2-D buffer (a
        ``dynamic_update_slice`` per chunk). ``where`` ``(M,)`` holds each member's row in
        that buffer (``None``: the members are in order already), and one row gather
        undoes the sort. On CPU this was faster than scattering each chunk's (then
        transposed) rows straight to their places in the output: 10 000 SIR members took
        18.1 ms instead of 23.2 ms on one device and 11.4 ms instead of 13.7 ms on two.
        The price is a second buffer the size of the output while the gather runs.
        """
        varying, ts, cfg = shared
        solve_chunk = _chunk_solve(self.model, self.method, varying, cfg, ts, self.own_loop,
                                   keep_cum=not self.model._infections_from_S)
        k, w = N.shape[:2]

        def chunk(i):
            return solve_chunk(jax.tree_util.tree_map(lambda a: a[i], (const, N, y0)))

        def rows(r):  # (w, ...) -> (w, -1): XLA's CPU copies are faster on rank-2 buffers
            return r.reshape(w, -1)

        if k == 1:
            acc = jax.tree_util.tree_map(rows, chunk(0))
        else:
            acc = jax.tree_util.tree_map(
                lambda o: jnp.zeros((k * w, math.prod(o.shape[1:])), o.dtype),
                jax.eval_shape(chunk, 0),
            )
            acc = jax.lax.fori_loop(0, k, lambda i, acc: jax.tree_util.tree_map(
                lambda o, r: jax.lax.dynamic_update_slice(o, rows(r), (i * w, 0)),
                acc, chunk(i),
            ), acc)

        def place(a, o):
            a = a[:M] if where is None else jnp.take(
                a, where, axis=0, unique_indices=True, mode="clip"
            )
            return a.reshape(M, *o.shape[1:])

        return jax.tree_util.tree_map(place, acc, jax.eval_shape(chunk, 0))

    def block(self, const, N, y0, valid, shared):
        """Sort, chunk and solve one block of members; results in the block's order.

        ``valid`` marks the members that are not padding (zero weight in summaries).
        """
        varying, ts, _ = shared
        M = N.shape[0]
        n_chunks, chunk = _chunk_layout(M, self.chunk_size)
        order = self.order(const, varying, N, y0, ts) if self.sort and n_chunks > 1 else None
        pad = n_chunks * chunk - M

        def to_chunks(a):
            a = a if order is None else a[order]
            if pad:  # repeat the last member; its copies are dropped afterwards
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
            return a.reshape(n_chunks, chunk, *a.shape[1:])

        const, N, y0 = jax.tree_util.tree_map(to_chunks, (const, N, y0))
        if order is not None:  # the inverse permutation by a scatter, not a second sort
            inverse = jnp.zeros_like(order).at[order].set(
                jnp.arange(M, dtype=order.dtype), unique_indices=True
            )
        if not self.summary:
            where = None if order is None else inverse
            return self.solve_in_rows(const, N, y0, where, M, shared)
        valid = to_chunks(valid) & (jnp.arange(n_chunks * chunk) < M).reshape(n_chunks, chunk)
        per_member, per_chunk = self.run_chunks(const, N, y0, valid, shared)

        def from_chunks(a):
            a = a.reshape(n_chunks * chunk, *a.shape[2:])[:M]
            return a if order is None else a[inverse]

        return jax.tree_util.tree_map(from_chunks, per_member), per_chunk

    @eqx.filter_jit
    def __call__(self, const, N, y0, shared, mesh):
        return self.program(const, N, y0, shared, mesh)

    def program(self, const, N, y0, shared, mesh):
        """The whole ensemble solve (traced by :meth:`__call__` or :func:`_compiled`)."""
        const, N, y0 = _broadcast_members(self.model, const, N, y0)
        M = N.shape[0]
        d = 1 if mesh is None else mesh.size
        pad = -M % d  # whole blocks for the devices: copies of the last member

        def grow(a):
            return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0) if pad else a

        const, N, y0 = jax.tree_util.tree_map(grow, (const, N, y0))
        valid = jnp.arange(M + pad) < M
        dyn, static = eqx.partition(shared, eqx.is_array)
        out = map_blocks(
            lambda c, n, y, w, dyn_: self.block(c, n, y, w, eqx.combine(dyn_, static)),
            const, N, y0, valid, dyn, mesh=mesh, n_shared=1,
        )
        if self.summary:
            per_member, per_chunk = out
            per_member = jax.tree_util.tree_map(lambda a: a[:M], per_member)
            return (per_member, _merge_chunks(per_chunk)), jnp.all(per_member[3])
        out = jax.tree_util.tree_map(lambda a: a[:M], out)
        if mesh is not None and M % d == 0:  # results stay spread over the devices
            out = jax.lax.with_sharding_constraint(out, batch_sharding(mesh))
        return out, jnp.all(out[2])  # and whether every member succeeded


_ARRAY = object()  # marks the array leaves among the static ones in _compiled's key


def _call_ensemble(ensemble: _Ensemble, args: tuple, mesh: Mesh | None):
    """Run an ensemble solve, by a cached ``jax.jit`` when that is safe and faster.

    ``equinox.filter_jit`` (``ensemble(*args, mesh)``) sorts the arguments into arrays
    and static values on every call. For concrete inputs of the own loop (no runtime
    checks inside the program, so none of equinox's error handling is needed) the split
    is done here once per call and the compiled function is looked up by the static part;
    on several devices the host arrays go over as one buffer instead of one transfer per
    input. Both cost ~0.3 ms of a 10 000-member SIR solve on 2 CPU devices.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    is_array = [isinstance(v, (np.ndarray, jax.Array)) for v in leaves]
    if not ensemble.own_loop or any(map(_is_tracer, leaves)):
        return ensemble(*args, mesh)
    arrays = [v for v, a in zip(leaves, is_array) if a]
    static = tuple(_ARRAY if a else v for v, a in zip(leaves, is_array))
    dtype = _float_dtype()
    packed = mesh is not None and all(v.dtype == dtype for v in arrays)
    layout = tuple((v.shape, v.dtype) for v in arrays)
    try:
        fn = _compiled(ensemble, treedef, static, layout, mesh, packed)
    except TypeError:  # an unhashable static value
        return ensemble(*args, mesh)
    if packed:
        return fn(np.concatenate([np.ravel(np.asarray(v)) for v in arrays]))
    return fn(*arrays)


@functools.lru_cache(maxsize=32)
def _compiled(ensemble, treedef, static, layout, mesh, packed):
    """``jax.jit`` of :meth:`_Ensemble.program` for one static setting of the arguments.

    ``packed``: the arrays come as one flat buffer, cut up inside the program.
    """
    def program(*arrays):
        if packed:
            sizes = np.cumsum([0] + [math.prod(shape) for shape, _ in layout])
            arrays = [arrays[0][a:b].reshape(shape)
                      for (a, b), (shape, _) in zip(zip(sizes[:-1], sizes[1:]), layout)]
        it = iter(arrays)
        leaves = [next(it) if v is _ARRAY else v for v in static]
        return ensemble.program(*jax.tree_util.tree_unflatten(treedef, leaves), mesh)

    return jax.jit(program)


def _summarise_chunk(model, ts, out, w):
    """Per-member peak and final size; weighted moments and extremes over the chunk."""
    xs, cum, ok, steps = out  # (m, T, C), (m, T), (m,), (m,)
    per_member = (*_peak_of(ts, _prevalence(model, xs)), cum[:, -1], ok, steps)
    wf = w.astype(xs.dtype)[:, None, None]
    count = jnp.sum(wf)
    mean = jnp.sum(wf * xs, axis=0) / jnp.maximum(count, 1.0)
    m2 = jnp.sum(wf * (xs - mean) ** 2, axis=0)
    lo = jnp.min(jnp.where(wf > 0, xs, jnp.inf), axis=0)
    hi = jnp.max(jnp.where(wf > 0, xs, -jnp.inf), axis=0)
    return per_member, (count, mean, m2, lo, hi)


def _merge_chunks(stats):
    """Chan et al.'s pairwise-free merge of per-chunk counts, means and squared deviations.

    ``M2 = sum_j [M2_j + n_j (mean_j - mean)^2]``: exact, and without the cancellation of
    a sum of squares in float32.
    """
    count, mean, m2, lo, hi = stats  # (k,), (k, T, C) ...
    n = jnp.sum(count)
    c = count[:, None, None]
    total_mean = jnp.sum(c * mean, axis=0) / n
    total_m2 = jnp.sum(m2 + c * (mean - total_mean) ** 2, axis=0)
    return n, total_mean, total_m2, jnp.min(lo, axis=0), jnp.max(hi, axis=0)


def solve_ensemble(
    model: CompartmentalModel,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    method: str = "stacked",
    chunk_size: int | None = None,
    sort_members: bool = True,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 16384,
    adjoint: diffrax.AbstractAdjoint | None = None,
    throw: bool = True,
    mesh: Mesh | None | bool = None,
) -> Trajectory:
    r"""Solve an ensemble of trajectories in one compiled call.

    Any constant rate, ``N`` or ``y0`` entry may carry a leading ensemble axis of length
    ``M`` (``y0`` as an ``(M, C)`` array or a mapping of ``(M,)`` arrays); the rest is
    broadcast. Time-varying rates are shared by all members (for per-member functions of
    time, ``jax.vmap`` over :func:`solve`).

    ``method="stacked"`` (default) integrates each chunk of members as one ODE on the
    stacked state (compartments x members) with one step size, controlling every member's
    error with the norm

    .. math:: \|e\| = \max_{m} \operatorname{RMS}_c\big(e_{c m}/(\text{atol} +
        \text{rtol}\,|x_{c m}|)\big),

    so each member meets the tolerance on its own. With the default ``solver`` and
    ``adjoint`` the loop over the steps is epinn's own, around diffrax's Tsit5 step and
    PID controller (the same method; step sequences can differ from ``diffeqsolve``'s by
    a rejected step): it leaves out ``diffeqsolve``'s runtime checks, whose host
    callbacks made XLA's CPU client run the devices of a mesh one at a time, and raises a
    failure (``throw``) after the call. Reverse-mode gradients come from
    ``diffrax.diffeqsolve`` by a custom VJP; for forward mode (``jax.jacfwd``) pass
    ``adjoint=diffrax.ForwardMode()``, which, like any explicit ``solver`` or
    ``adjoint``, runs ``diffeqsolve`` itself. ``method="vmap"`` runs
    ``jax.vmap(diffeqsolve)`` per chunk (independent step sizes, slower on CPU). Chunks run
    sequentially, bounding memory to one chunk's solver state; each chunk's members fill
    consecutive rows of a buffer the size of the output, and one gather puts them back in
    input order (so the peak memory is about twice the output's). With ``sort_members``
    the members are ordered by early growth rate before chunking so fast and slow members
    do not share a step size; the results do not depend on it beyond the solver
    tolerance, only the speed.

    With several devices (GPUs, TPU cores, or CPU devices from
    ``XLA_FLAGS=--xla_force_host_platform_device_count=k``, one per core) the members are
    split into one contiguous block per device of ``mesh`` (``jax.shard_map``; see
    :mod:`epinn.sharding`); each device sorts, chunks and solves its own block, with no
    data moving between devices, and the results come back in input order, sharded over
    the devices (gathered when the number of members is not a multiple of the number of
    devices: the padding members are dropped). The chunks depend on the number of
    devices, so results on different meshes agree within the solver tolerance, not bit
    for bit. On 2 CPU cores, 10 000 SIR members took 9.3-11.9 ms (median 10.4 ms) on two
    host devices with :func:`epinn.configure_cpu` (XLA compiling the step loop into one
    kernel; 12.9-15.8 ms without it) against 14.6-17.3 ms on one, and scipy's
    ``solve_ivp`` on all members as one stacked system 143-159 ms
    (``bench_sir_ensemble.py``).

    Args:
        model, params, y0, ts: as :func:`solve`, with optional leading ensemble axes.
        method: ``"stacked"`` or ``"vmap"``.
        chunk_size: members per chunk (chunks are equal-sized; the last member is repeated
            to pad; a width of 256 or more that is a multiple of 16 gets 8 more padded
            members, which XLA's CPU transposes handle ~3x faster). ``None`` picks by the
            devices' platform: 16384 on accelerators; on CPUs 256 when XLA compiles the
            step loop into one kernel (:func:`epinn.configure_cpu`), else 1024. On a GPU
            every solver step costs kernel launches whatever its size, so larger chunks
            are cheaper there: on an H100, 10 000 SIR members took 88 ms in chunks of 1024
            and 17 ms in one chunk (``bench_sir_ensemble.py``).
        sort_members: order members by growth rate before chunking (speed only).
        solver, rtol, atol, dt0, max_steps, adjoint, throw: as :func:`solve`. With
            ``method="stacked"`` a failure marks the whole chunk unsuccessful. On several
            devices the default gradients use ``diffrax.DirectAdjoint()`` (reverse mode
            through diffrax's default checkpointed loop fails inside ``shard_map``).
        mesh: a ``jax.sharding.Mesh`` to spread the members over, ``None`` (default) for
            all devices (:func:`epinn.device_mesh`), ``False`` for the default device only.

    Returns:
        :class:`Trajectory` with ``ys`` of shape ``(M, len(ts), C)``
        (``M = 1`` when nothing is batched). For the models in which S falls by infection
        only (SIR, SIRD, SEIR, SEIRD) its cumulative infections are not stored but derived
        from ``ys`` when read (:class:`Trajectory`).

    Raises:
        ValueError: as :func:`solve`, plus mismatched ensemble axes, bad ``method`` or
            ``chunk_size``.
        RuntimeError: with ``throw=True``, when the solver failed for some member
            (``max_steps`` reached, or a non-finite solution).

    Examples:
        >>> traj = solve_ensemble(SIR(), {"beta": jnp.array([0.3, 0.5]), "gamma": 0.1,
        ...                               "N": 1.0}, jnp.array([0.99, 0.01, 0.0]),
        ...                       jnp.linspace(0.0, 50.0, 6))
        >>> traj.ys.shape
        (2, 6, 3)
    """
    ensemble, args, mesh = _prepare_ensemble(
        model, params, y0, ts, method, chunk_size, sort_members,
        (solver, rtol, atol, dt0, max_steps, adjoint, throw), mesh, False,
    )
    try:
        (xs, cum, ok, steps), all_ok = _call_ensemble(ensemble, args, mesh)
    except eqx.EquinoxRuntimeError as e:  # diffeqsolve's own check (explicit solver/adjoint)
        out = _call_ensemble(ensemble, _no_throw(args), mesh)[0]
        raise RuntimeError(_failure_message(model, args, out[2], cfg_of(args), e)) from None
    if ensemble.method == "stacked" and not _is_tracer(all_ok) and not bool(all_ok):
        # One failing member stops its whole stacked chunk: solve the failed members one
        # by one (independent step sizes), so the healthy ones keep their results.
        xs, cum, ok, steps = _rescue(model, ensemble, args, mesh, (xs, cum, ok, steps))
        all_ok = jnp.all(ok)
        if cfg_of(args).throw and not bool(all_ok):
            raise RuntimeError(_failure_message(model, args, ok, cfg_of(args)))
    xs = _check_success(ensemble, args, all_ok, xs)
    return _trajectory(model, args[-1][1], xs, cum, ok, steps)


def cfg_of(args: tuple) -> _Config:
    return args[-1][2]


def _no_throw(args: tuple) -> tuple:
    varying, ts, cfg = args[-1]
    return (*args[:-1], (varying, ts, dataclasses.replace(cfg, throw=False)))


def _rescue(model, ensemble, args, mesh, out):
    """Re-solve the failed members of a stacked ensemble one by one (``method="vmap"``)."""
    xs, cum, ok, steps = out
    failed = np.flatnonzero(~np.asarray(ok))
    const, N, y0, shared = _no_throw(args)
    const, N, y0 = _broadcast_members(model, *jax.tree_util.tree_map(np.asarray,
                                                                       (const, N, y0)))
    pick = lambda a: jnp.asarray(np.asarray(a)[failed])  # noqa: E731
    sub = (jax.tree_util.tree_map(pick, const), pick(N), pick(y0), shared)
    single = _Ensemble(model, ensemble.chunk_size, "vmap", False, False, False)
    (xs_f, cum_f, ok_f, steps_f), _ = _call_ensemble(single, sub, None)
    put = lambda a, b: None if a is None else a.at[failed].set(b)  # noqa: E731
    return put(xs, xs_f), put(cum, cum_f), put(ok, ok_f), put(steps, steps_f)


def _failure_message(model, args, ok, cfg, error=None) -> str:
    """Name the failed members (indices and parameters) and what to do."""
    const, N, y0, _ = args
    const, N, y0 = _broadcast_members(model, *jax.tree_util.tree_map(np.asarray,
                                                                       (const, N, y0)))
    failed = np.flatnonzero(~np.asarray(ok))
    def describe(i):
        values = [f"{k}={np.asarray(v)[i]:.4g}" for k, v in const.items() if np.ndim(v) == 1]
        return f"{i} ({', '.join(values)})"

    shown = ", ".join(describe(i) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    why = "" if error is None else f" ({_solver_reason(error)})"
    return (
        f"The ensemble solve of {model.name} failed for {len(failed)} of {len(ok)} members"
        f"{why}: member {shown}{more}. They reached the maximum number of solver steps "
        f"(max_steps={cfg.max_steps}) or stopped being finite (a stiff or exploding member). Raise `max_steps`, check those "
        "members' parameters, or pass `throw=False`: the failed members are then marked in "
        "`success` and the others keep their results."
    )


def _solver_reason(error: Exception) -> str:
    """diffrax's own message, without equinox's stack-trace preamble and debugging tips."""
    for ln in str(error).splitlines():
        if ln.startswith("equinox.EquinoxRuntimeError: "):
            return ln.removeprefix("equinox.EquinoxRuntimeError: ").strip()
    return type(error).__name__


def _check_success(ensemble: _Ensemble, args: tuple, all_ok: Array, x: Array) -> Array:
    """``throw=True`` for the own loop, which returns failures instead of raising them.

    ``all_ok`` (a replicated scalar, readable in every process) is checked on the host
    after the call: no host callback inside the program, so the devices run in parallel.
    Under an outer trace it is abstract, and the check becomes an ``eqx.error_if`` on
    ``x``.
    """
    cfg = args[-1][2]
    if not (ensemble.own_loop and cfg.throw):
        return x
    msg = (
        "The ensemble solve failed for some members: it reached the maximum number "
        f"of solver steps (max_steps={cfg.max_steps}) or the solution stopped being finite. "
        "Raise `max_steps`, or pass `throw=False` to get the failed members marked in "
        "`success`."
    )
    if _is_tracer(all_ok):
        return eqx.error_if(x, ~all_ok, msg)
    if not bool(all_ok):
        raise RuntimeError(msg)
    return x


def _default_chunk_size(mesh: Mesh | None, loop_bytes_per_member: int = 0) -> int:
    """Members per chunk when none is given: 256 or 1024 on CPUs, 16384 on accelerators.

    On a CPU a step's cost grows with the chunk, and fast and slow members sharing a step
    size cost extra steps (10 000 SIR members on one device of the 2-core development
    machine: 17-21 ms in chunks of 1024, 25-29 ms in one chunk); on a GPU a step costs
    kernel launches whatever its size. When XLA compiles the step loop of a 256-member
    chunk into one kernel (:func:`epinn.configure_cpu`: the loop's state, about
    ``loop_bytes_per_member`` per member, fits ``loop_kernel_bytes``), there is no
    per-operation cost left to spread over a large chunk, and smaller chunks, whose
    members are more alike and whose state stays in cache, were ~10% faster on the
    development machine (256-384 members against 1024); without it, 256 were ~12% slower.
    """
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    if device.platform != "cpu":
        return 16384
    threshold = loop_kernel_bytes()
    if threshold and threshold >= 256 * loop_bytes_per_member:
        return 256
    return 1024


def _auto_chunk_size(model: CompartmentalModel, ts: Array, mesh: Mesh | None) -> int:
    """:func:`_default_chunk_size` for an ensemble of ``model`` saved at ``ts``.

    The step loop's state per member: the saved times and ~16 copies of the state (the
    solver's stages and dense output), at most ``C + 1`` numbers each.
    """
    per_member = (ts.shape[0] + 16) * (len(model.compartments) + 1) * ts.dtype.itemsize
    return _default_chunk_size(mesh, per_member)


def _prepare_ensemble(model, params, y0, ts, method, chunk_size, sort, config, mesh, summary):
    """Checks and inputs shared by :func:`solve_ensemble` and :func:`ensemble_summary`.

    ``config`` holds the arguments of :func:`_make_config`. Under ``shard_map`` the default
    adjoint becomes ``diffrax.DirectAdjoint``: reverse mode through diffrax's checkpointed
    while loop fails inside ``shard_map``, and forward solves cost the same with either.
    """
    _check_model(model)
    if method not in ("stacked", "vmap"):
        raise ValueError(f"`method` must be 'stacked' or 'vmap'; got {method!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer))
                                   or isinstance(chunk_size, bool) or chunk_size <= 0):
        raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
    rates, N, y0a, _ = _ensemble_inputs(model, params, y0, broadcast=False)
    tsa = _normalize_ts(ts)
    _check_rate_functions(rates, tsa)
    const, varying = _split(rates)
    mesh = resolve_mesh(mesh)
    solver, rtol, atol, dt0, max_steps, adjoint, throw = config
    own_loop = method == "stacked" and solver is None and adjoint is None
    if adjoint is None and mesh is not None:
        adjoint = diffrax.DirectAdjoint()
    cfg = _make_config(solver, rtol, atol, dt0, max_steps, adjoint, throw)
    if mesh is not None and jax.process_count() > 1:  # global arrays for a multi-process job
        const, N, y0a = jax.device_put((const, N, y0a), replicated(mesh))
    elif mesh is not None:  # host copies (the checks made them) go to each device's block
        const, N, y0a = jax.tree_util.tree_map(_on_host, (const, N, y0a))
    if chunk_size is None:
        chunk_size = _auto_chunk_size(model, tsa, mesh)
    ensemble = _Ensemble(model, int(chunk_size), method, bool(sort), summary, own_loop)
    return ensemble, (const, N, y0a, (varying, tsa, cfg)), mesh


def _on_host(a: Array) -> Array | np.ndarray:
    """A concrete array as a numpy array (a tracer as it is).

    Split over several devices when the compiled program is called, a numpy array is
    copied from the host to each device's block; an array on the default device is first
    sliced there by small compiled programs (about twice the dispatch time on the 2-core
    development machine).
    """
    return a if _is_tracer(a) else np.asarray(a)


def _broadcast_members(model, const, N, y0):
    """An ensemble's inputs broadcast to ``M`` members: ``(M, *declared shape)``, y0 ``(M, n)``.

    ``M`` is the length of the batched inputs (checked to agree before), or 1. Done in the
    compiled program, so that unbatched inputs are neither expanded member by member on
    the host nor copied to the devices.
    """
    shapes = model.param_shapes
    sizes = [_batch_size(v, shapes[k]) for k, v in const.items()]
    sizes += [_batch_size(N, shapes["N"])]
    sizes += [y0.shape[0]] if y0.ndim == 2 else []
    sizes = [m for m in sizes if m is not None]
    M = sizes[0] if sizes else 1
    const = {k: jnp.broadcast_to(v, (M, *shapes[k])) for k, v in const.items()}
    N = jnp.broadcast_to(N, (M, *shapes["N"]))
    return const, N, jnp.broadcast_to(y0, (M, y0.shape[-1]))


class EnsembleSummary(eqx.Module):
    """What :func:`ensemble_summary` keeps of an ensemble (a pytree).

    Attributes:
        ts: saved times ``(T,)``.
        count: the number of members.
        mean, std, min, max: over the members at every saved time, ``(T, C)`` in counts
            (``std`` with divisor ``count``).
        peak_time, peak_size: time and size of each member's peak of ``I`` (as
            :func:`peak`), ``(M,)``.
        cumulative_infections: each member's infections from ``ts[0]`` to ``ts[-1]``,
            ``(M,)`` (divide by ``N`` for the attack rate).
        success, num_steps: per member, as in :class:`Trajectory`.
        compartments: the names of the last axis of ``mean`` etc. (static).
    """

    ts: Float[Array, " T"]
    count: Int[Array, ""]
    mean: Float[Array, "T C"]
    std: Float[Array, "T C"]
    min: Float[Array, "T C"]
    max: Float[Array, "T C"]
    peak_time: Float[Array, " M"]
    peak_size: Float[Array, " M"]
    cumulative_infections: Float[Array, " M"]
    success: Bool[Array, " M"]
    num_steps: Int[Array, " M"]
    compartments: tuple[str, ...] = eqx.field(static=True)

    def __getitem__(self, name: str) -> tuple[Array, Array]:
        """``(mean, std)`` of one compartment over time."""
        if name not in self.compartments:
            raise KeyError(
                f"Unknown compartment {name!r}; valid names are {self.compartments}."
            )
        j = self.compartments.index(name)
        return self.mean[:, j], self.std[:, j]


def ensemble_summary(
    model: CompartmentalModel,
    params: Mapping[str, Any] | NamedTuple,
    y0: Mapping[str, ArrayLike] | ArrayLike,
    ts: ArrayLike,
    *,
    method: str = "stacked",
    chunk_size: int | None = None,
    sort_members: bool = True,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 16384,
    throw: bool = True,
    mesh: Mesh | None | bool = None,
) -> EnsembleSummary:
    r"""Solve an ensemble too large to keep, keeping summary statistics only.

    Exactly the solves of :func:`solve_ensemble` (same arguments, chunks and devices), but
    each chunk's trajectories ``(chunk, T, C)`` are reduced as soon as they are computed
    to per-member scalars (:func:`peak` of ``I``, cumulative infections, success)
    and to the chunk's count, mean, sum of squared deviations, minimum and maximum at
    every saved time. The chunks' moments are merged exactly (Chan, Golub and LeVeque's
    update, free of the cancellation of :math:`\sum x^2 - n\bar x^2` in float32):

    .. math:: \bar x = \frac{1}{n}\sum_j n_j \bar x_j, \qquad
        M_2 = \sum_j \big[M_{2,j} + n_j (\bar x_j - \bar x)^2\big], \qquad
        s = \sqrt{M_2 / n}.

    Memory holds one chunk's trajectories per device, the per-chunk statistics and the
    ``O(M)`` inputs and per-member scalars, never the ``M x T x C`` trajectories: a
    million-member SIR ensemble at 161 saved times runs in well under 1 GiB (see the
    ``bench_sir_ensemble.py --summary`` benchmark).

    Args:
        model, params, y0, ts: as :func:`solve_ensemble`.
        method, chunk_size, sort_members, solver, rtol, atol, dt0, max_steps, throw, mesh: as
            :func:`solve_ensemble` (no ``adjoint``: summaries are for simulation, not for
            gradients).

    Returns:
        An :class:`EnsembleSummary`.

    Raises:
        ValueError, RuntimeError: as :func:`solve_ensemble`.

    Examples:
        >>> out = ensemble_summary(SIR(), {"beta": jnp.array([0.3, 0.5]), "gamma": 0.1,
        ...                                "N": 1.0}, jnp.array([0.99, 0.01, 0.0]),
        ...                        jnp.linspace(0.0, 50.0, 6))
        >>> out.mean.shape, out.peak_time.shape
        ((6, 3), (2,))
    """
    _check_model(model)
    if model.groups is not None:
        raise ValueError(
            f"ensemble_summary does not summarise stratified models yet ({model.name} has "
            "groups); use solve_ensemble and reduce its trajectories."
        )
    ensemble, args, mesh = _prepare_ensemble(
        model, params, y0, ts, method, chunk_size, sort_members,
        (solver, rtol, atol, dt0, max_steps, None, throw), mesh, True,
    )
    (per_member, (n, mean, m2, lo, hi)), all_ok = _call_ensemble(ensemble, args, mesh)
    peak_time, peak_size, cum, ok, steps = per_member
    mean = _check_success(ensemble, args, all_ok, mean)
    return EnsembleSummary(
        ts=args[-1][1],
        count=n.astype(jnp.int32),
        mean=mean,
        std=jnp.sqrt(m2 / n),
        min=lo,
        max=hi,
        peak_time=peak_time,
        peak_size=peak_size,
        cumulative_infections=cum,
        success=ok,
        num_steps=steps,
        compartments=model.compartments,
    )


# --------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------


def _rates_at_times(rates: Mapping[str, Any], t: Any, what: str) -> dict[str, Array]:
    """Evaluate time-varying rates at ``t`` (scalar or 1-D); constants pass through."""
    out = {}
    for k, v in rates.items():
        if _is_time_varying(v):
            if t is None:
                raise ValueError(f"`t` is required by {what}: params['{k}'] depends on time.")
            ta = jnp.asarray(t, _float_dtype())
            f = lambda s, v=v: jnp.reshape(_evaluate_rate(v, s), ())  # noqa: E731
            out[k] = jax.vmap(f)(ta) if ta.ndim == 1 else f(ta)
        else:
            out[k] = v
    return out


def _check_r0_finite(r0: Array) -> Array:
    """A concrete R0 must be finite: the removal rates must not all vanish."""
    if not _is_tracer(r0) and not np.all(np.isfinite(np.asarray(r0))):
        raise ValueError(
            "R0 is not finite: the removal rate, i.e. the rates of leaving the infected "
            "compartments (e.g. `params['gamma']`, plus `params['mu']` where the model has "
            "it), must be positive."
        )
    return r0


def _map_members(model: CompartmentalModel, fn: Callable, r: Mapping[str, Any], *extra):
    """Apply ``fn(r_member, *extra_member)`` over the broadcast batch shape of ``r``.

    Each value of ``r`` is a scalar or has its declared shape after batch axes; each of
    ``extra`` has a trailing axis of its own after the batch axes.
    """
    shapes = model.param_shapes
    batch = jnp.broadcast_shapes(
        *(jnp.shape(v)[: max(jnp.ndim(v) - len(shapes[k]), 0)] if jnp.ndim(v) else ()
          for k, v in r.items()),
        *(jnp.shape(e)[:-1] for e in extra),
    )
    if not batch:
        return fn({k: jnp.broadcast_to(v, shapes[k]) for k, v in r.items()}, *extra)
    flat = {k: jnp.broadcast_to(v, (*batch, *shapes[k])).reshape(-1, *shapes[k])
            for k, v in r.items()}
    ex = [jnp.broadcast_to(e, (*batch, e.shape[-1])).reshape(-1, e.shape[-1]) for e in extra]
    out = jax.vmap(fn)(flat, *ex)
    return jax.tree_util.tree_map(lambda o: o.reshape(*batch, *o.shape[1:]), out)


def _check_hops(hops: Any) -> int:
    if isinstance(hops, bool) or not isinstance(hops, (int, np.integer)) or hops < 1:
        raise ValueError(f"`hops` must be a positive int; got {hops!r}.")
    return int(hops)


def R0(
    model: CompartmentalModel, params: Any, t: ArrayLike | None = None, *, hops: int = 1
) -> Array:
    r"""Basic reproduction number from the next-generation matrix, for any model.

    With :math:`F` (new infections) and :math:`V` (other flows out of the infected
    compartments) the Jacobians at the disease-free state
    (:func:`~epinn.flows.next_generation_matrices`, van den Driessche & Watmough 2002),

    .. math:: R_0 = \rho(F V^{-1}),

    the spectral radius of the next-generation matrix :math:`K = F V^{-1}`, whose entry
    :math:`K_{ij}` is the expected number of new infections in compartment :math:`i` caused
    by one individual entering compartment :math:`j`. SIR, SIRS, SEIR: :math:`\beta/\gamma`;
    SIRD, SEIRD and vital dynamics: :math:`\beta/(\gamma + \mu)`; with a contact matrix the
    Perron root over the groups.

    For a model whose transmission takes two hops (host -> vector -> host),
    :math:`\rho(K)` is the number per *generation*, the geometric mean over the two hops;
    much of the vector-borne literature (Ross-Macdonald) reports its square, the
    host-to-host number: ``hops=2`` returns :math:`\rho(K)^2`.

    Args:
        model: any :class:`~epinn.Model`.
        params: as :func:`solve`; constant rates may carry any (broadcastable) batch shape
            before their declared shapes.
        t: time(s) at which to evaluate time-varying rates (required if there are any).
        hops: report :math:`\rho(K)^{\text{hops}}` (1: per generation; 2: host to host).

    Returns:
        :math:`R_0` (the broadcast batch shape of the rates).

    Raises:
        ValueError: bad ``params``, a model without infection flows, or a concrete
            :math:`R_0` that is not finite (a zero removal rate).

    Examples:
        >>> float(R0(SIRD(), {"beta": 0.6, "gamma": 0.2, "mu": 0.1, "N": 1.0}))
        2.0
    """
    _check_model(model)
    hops = _check_hops(hops)
    if not model.infected:
        raise ValueError(
            f"`model` {model.name} has no infection flow driven by its compartments "
            "(epinn.infection), so it has no reproduction number."
        )
    rates, N = _normalize_params(model, params, max_ndim=None)
    r = {**_rates_at_times(rates, t, "R0"), "N": N}
    r0 = _map_members(model, lambda rm: _r0_member(model, rm), r)
    return _check_r0_finite(r0 if hops == 1 else r0**hops)


def _rt_member(model, r, y):
    """:math:`\rho(F(y) V^{-1})` with the non-infected compartments of ``y`` (one member)."""
    idx = jnp.asarray(_infected_index(model))
    F, V = next_generation_matrices(model, r, 0.0, state=y.at[idx].set(0.0))
    K = F @ jnp.linalg.inv(V) if F.shape[0] > 1 else F / V
    return _leading_eigenvalue(K)


def effective_reproduction_number(
    model: CompartmentalModel, params: Any, traj: Trajectory
) -> Array:
    r"""Effective reproduction number :math:`R_t` at ``traj.ts``.

    The next-generation number with the susceptibles of the trajectory in place of the
    disease-free state: :math:`R_t = \rho(F(y(t)) V^{-1})`; for SIR-type models
    :math:`R_t = R_0(t)\, S(t) / N`.

    Args:
        model: the model that produced ``traj``.
        params: its parameters (time-varying rates are evaluated at ``traj.ts``; ensemble
            parameters of shape ``(M,)`` pair with the members of ``traj``).
        traj: a trajectory of ``model``.

    Returns:
        :math:`R_t`, shape ``(T,)`` or ``(M, T)``.

    Raises:
        ValueError: ``params['N']`` below the population of ``traj`` (parameters of
            another trajectory), or a non-finite :math:`R_0`.

    Examples:
        >>> p = {"beta": 0.4, "gamma": 0.2, "N": 100.0}
        >>> traj = solve(SIR(), p, jnp.array([50.0, 1.0, 49.0]), jnp.array([0.0, 1.0]))
        >>> round(float(effective_reproduction_number(SIR(), p, traj)[0]), 4)
        1.0
    """
    _check_trajectory(model, traj)
    rates, N = _normalize_params(model, params, max_ndim=1)
    shapes = model.param_shapes
    ys = traj.ys.reshape(*traj.ys.shape[: traj.ys.ndim - 1 - (model.groups is not None)], -1)
    if traj.is_ensemble:  # constant (M,) entries pair with members: (M, 1) x (T,)
        rates = {k: v if _is_time_varying(v) or _batch_size(v, shapes[k]) is None
                 else v.reshape(v.shape[0], 1, *shapes[k]) for k, v in rates.items()}
        N = N if _batch_size(N, shapes["N"]) is None else N.reshape(N.shape[0], 1, *shapes["N"])
    total = jnp.sum(ys[..., 0, :], axis=-1)  # the population at ts[0]
    if not (_is_tracer(total) or _is_tracer(N)):
        n_total = np.asarray(N).sum(-1) if model.groups is not None else np.asarray(N)
        n0 = np.broadcast_to(n_total.reshape(np.shape(total)) if np.ndim(n_total) else
                             n_total, np.shape(total))
        if np.any(np.asarray(total) > n0 * (1 + 1e-3)):  # y0 may sum to less than N
            raise ValueError(
                f"`params['N']` ({np.asarray(N).ravel()}) is smaller than the population of "
                f"`traj`, whose compartments sum to {np.asarray(total)}."
            )
    r = {**_rates_at_times(rates, traj.ts, "effective_reproduction_number"), "N": N}
    rt = _map_members(model, lambda rm, y: _rt_member(model, rm, y), r, ys)
    return _check_r0_finite(rt)


def _check_trajectory(model: CompartmentalModel, traj: Any) -> None:
    _check_model(model)
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if traj.compartments != model.compartments:
        raise ValueError(
            f"`traj` has compartments {traj.compartments}, but the model has "
            f"{model.compartments}."
        )


def incidence(traj: Trajectory, flow: str | None = None) -> Array:
    r"""New infections in each interval :math:`(t_{i}, t_{i+1}]` (or counts of one flow).

    The integral of the model's infection flows over each interval, exact for every
    model: read off the compartment infections leave when nothing else changes it
    (:math:`S(t_i) - S(t_{i+1})` for SIR, SIRD, SEIR, SEIRD), integrated as an extra state
    otherwise (SIRS, vital dynamics, vaccination). The difference carries roundoff of about
    ``eps * N`` (~1e-7 N in float32): use float64 for small counts in a large N.

    Args:
        traj: a trajectory.
        flow: count this flow instead (e.g. ``"deaths"`` of SIRD, or one of several
            infection flows); see :meth:`Trajectory.flow_count`.

    Returns:
        shape ``(T - 1,)`` or ``(members, T - 1)``.

    Examples:
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1.0},
        ...              jnp.array([0.99, 0.01, 0.0]), jnp.arange(4.0))
        >>> incidence(traj).shape
        (3,)
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if flow is not None:
        return jnp.diff(traj.flow_count(flow), axis=-1)
    return jnp.diff(traj.cumulative_infections, axis=-1)


def cumulative_cases(traj: Trajectory) -> Array:
    """Cumulative new infections since ``ts[0]`` (zero at ``ts[0]``; excludes ``y0``).

    Returns:
        shape ``(T,)`` or ``(members, T)``.
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    return traj.cumulative_infections


def peak(traj: Trajectory, compartment: str = "I") -> tuple[Array, Array]:
    r"""Time and size of the maximum of one compartment.

    Takes the grid maximum and refines it with the parabola through it and its two
    neighbours (vertex :math:`t^* = t_1 - b/(2a)`, value :math:`y_1 - b^2/(4a)` of
    :math:`y \approx a (t - t_1)^2 + b (t - t_1) + y_1`); a maximum at either end of ``ts``
    is returned as is. The refinement error is :math:`O(h^3)` in the grid spacing.

    Args:
        traj: a trajectory (single or ensemble).
        compartment: the compartment name.

    Returns:
        ``(t_peak, size)``, each of shape ``()`` or ``(members,)``.

    Examples:
        >>> traj = solve(SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1.0},
        ...              jnp.array([0.99, 0.01, 0.0]), jnp.linspace(0.0, 60.0, 61))
        >>> t, size = peak(traj)
        >>> 15.0 < float(t) < 30.0
        True
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a Trajectory; got {type(traj)}.")
    if compartment not in traj.compartments:
        raise ValueError(
            f"Unknown `compartment` {compartment!r}; valid names are {traj.compartments}."
        )
    y = traj[compartment]
    if traj.groups is not None:
        y = jnp.sum(y, axis=-2)  # the whole population's prevalence
    return _peak_of(traj.ts, y)


def _prevalence(model: CompartmentalModel, xs: Array) -> Array:
    """``I`` (or the infected compartments' sum), over groups, from flat ``(..., T, C * G)``."""
    G = model.n_groups
    names = ("I",) if "I" in model.compartments else model.infected
    cols = [model._index(c) * G + g for c in names for g in range(G)]
    return sum(xs[..., j] for j in cols)


def _peak_of(ts: Array, y: Array) -> tuple[Array, Array]:
    """:func:`peak` of a series ``y`` ``(..., T)`` saved at ``ts``."""
    T = ts.shape[0]
    k = jnp.argmax(y, axis=-1)
    kc = jnp.clip(k, 1, T - 2) if T >= 3 else k
    take = lambda a, i: jnp.take_along_axis(a, i[..., None], axis=-1)[..., 0]  # noqa: E731
    t_grid, y_grid = ts[k], take(y, k)
    if T < 3:
        return t_grid, y_grid
    t0, t1, t2 = ts[kc - 1], ts[kc], ts[kc + 1]
    y0, y1, y2 = take(y, kc - 1), take(y, kc), take(y, kc + 1)
    h0, h2, d0, d2 = t0 - t1, t2 - t1, y0 - y1, y2 - y1
    det = h0 * h2 * (h0 - h2)
    a = (d0 * h2 - d2 * h0) / det
    b = (h0**2 * d2 - h2**2 * d0) / det
    interior = (k == kc) & (a < 0)
    a_safe = jnp.where(interior, a, -1.0)
    dt = jnp.clip(-b / (2 * a_safe), h0, h2)
    t_ref = t1 + dt
    y_ref = y1 + a_safe * dt**2 + b * dt
    return jnp.where(interior, t_ref, t_grid), jnp.where(interior, y_ref, y_grid)


def growth_rate(
    model: CompartmentalModel, params: Any, y0: Any, t: ArrayLike = 0.0
) -> Array:
    r"""Early exponential growth rate :math:`r` of the infected compartments.

    The leading eigenvalue of the Jacobian of the infected subsystem linearised at ``y0``
    (susceptibles fixed at :math:`S_0`). SIR: :math:`r = \beta S_0/N - \gamma`; SEIR:
    :math:`r` solves :math:`(r + \sigma)(r + \gamma) = \sigma \beta S_0 / N`.

    Args:
        model: the model.
        params: as :func:`solve_ensemble` (may carry a leading ensemble axis).
        y0: the state at which to linearise (usually the initial state).
        t: time at which time-varying rates are evaluated.

    Returns:
        :math:`r`, shape ``()`` or ``(members,)``.

    Examples:
        >>> r = growth_rate(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1.0}, [1.0, 0.0, 0.0])
        >>> round(float(r), 6)
        0.3
    """
    _check_model(model)
    rates, N, y0a, M = _ensemble_inputs(model, params, y0, whole=False)
    r = _rates_at_times(rates, t, "growth_rate")
    fn = lambda r, n, y: _growth_rate_member(model, {**r, "N": n}, y)  # noqa: E731
    if M is None:
        return fn(r, N, y0a)
    r = {k: jnp.broadcast_to(v, (M,)) for k, v in r.items()}
    return jax.vmap(fn)(r, N, y0a)


def doubling_time(
    model: CompartmentalModel, params: Any, y0: Any, t: ArrayLike = 0.0
) -> Array:
    r"""Doubling time :math:`\ln 2 / r` with :math:`r` from :func:`growth_rate`.

    Negative when the epidemic declines (then it is minus the halving time).

    Examples:
        >>> d = doubling_time(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1.0}, [1.0, 0.0, 0.0])
        >>> round(float(d), 4)
        2.3105
    """
    return math.log(2.0) / growth_rate(model, params, y0, t)


class FinalSize(NamedTuple):
    """Result of :func:`final_size`.

    Attributes:
        susceptible: :math:`S_\\infty`, the susceptibles left after the epidemic.
        infections: :math:`S_0 - S_\\infty`, new infections during the epidemic.
        attack_rate: ``infections / N``.
    """

    susceptible: Array
    infections: Array
    attack_rate: Array


def final_size(model: CompartmentalModel, params: Any, y0: Any) -> FinalSize:
    r"""Final size of an epidemic from the final-size equation (no simulation).

    Where the relation provably holds (:attr:`~epinn.Model.final_size_reason` is
    ``None``: a closed population, infections from one compartment S that nothing else
    changes, an infection rate :math:`S\, w^\top X / N` linear in the infected
    compartments :math:`X`, linear flows out of them), integrating
    :math:`\dot S / S = -w^\top X / N` gives

    .. math:: \ln\frac{S_0}{S_\infty} = \frac{1}{N}\big(a^\top X_0
        + R_0 (S_0 - S_\infty)\big),

    with :math:`a^\top = \mathbf 1^\top F V^{-1}` the expected infections caused by one
    individual in each infected compartment (for SIR, SEIR and their variants
    :math:`a^\top X_0 = R_0 (E_0 + I_0)`). The root below :math:`N/R_0` is found by Newton's
    method on :math:`u = \ln S_\infty` with ``optimistix`` (started from the lower bound,
    where the convex residual makes Newton monotone) and differentiated implicitly.

    Args:
        model: a model for which the relation holds (SIR, SIRD, SEIR, SEIRD, or your own).
        params: as :func:`solve_ensemble` (may carry a leading ensemble axis).
        y0: initial state with :math:`S_0 > 0`.

    Returns:
        :class:`FinalSize` ``(susceptible, infections, attack_rate)``.

    Raises:
        ValueError: a model for which the relation does not hold (the message says why:
            waning immunity, demography, vaccination...), time-varying rates,
            :math:`S_0 = 0` or a zero removal rate (infinite :math:`R_0`).

    Examples:
        >>> fs = final_size(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 1.0}, [1.0 - 1e-6, 1e-6, 0.0])
        >>> round(float(fs.attack_rate), 4)
        0.7968
    """
    _check_model(model)
    if model.final_size_reason is not None:
        raise ValueError(
            f"`model` {model.name} has no final-size relation: {model.final_size_reason}. "
            "Integrate it to a late time with solve() and read cumulative_infections instead."
        )
    rates, N, y0a, _ = _ensemble_inputs(model, params, y0)
    for k, v in rates.items():
        if _is_time_varying(v):
            raise ValueError(f"`params['{k}']` must be constant for final_size.")
    s_idx = model._index(model.infections_from)
    S0 = y0a[..., s_idx]
    if not _is_tracer(S0) and np.any(np.asarray(S0) <= 0):
        raise ValueError(f"`y0['{model.infections_from}']` must be positive for final_size.")
    idx = jnp.asarray(_infected_index(model))

    def member(rm, y):
        F, V = next_generation_matrices(model, rm)
        K = F @ jnp.linalg.inv(V)
        r0 = jnp.trace(K)  # K = e a^T has rank one: its spectral radius is its trace
        return r0, jnp.sum(K, axis=0) @ y[idx]

    r0, a_x0 = _map_members(model, member, {**rates, "N": N}, y0a)
    r0 = _check_r0_finite(r0)
    s_inf = _solve_final_size(S0, a_x0 / r0, r0 / N)
    return FinalSize(susceptible=s_inf, infections=S0 - s_inf, attack_rate=(S0 - s_inf) / N)


def _solve_final_size(S0: Array, J0: Array, c: Array) -> Array:
    S0, J0, c = jnp.broadcast_arrays(S0, J0, c)
    tol = float(np.sqrt(np.finfo(S0.dtype).eps))
    solver = optx.Newton(rtol=tol, atol=tol)

    def residual(u, args):
        S0, A, c = args
        return jnp.log(S0) - u - c * (A - jnp.exp(u))

    def one(S0, J0, c):  # scalar Newton per member (no dense M x M Jacobian)
        A = S0 + J0
        u0 = jnp.log(S0) - c * A
        return jnp.exp(optx.root_find(residual, solver, u0, (S0, A, c)).value)

    flat = jax.vmap(one)(S0.ravel(), J0.ravel(), c.ravel())
    return flat.reshape(S0.shape)
