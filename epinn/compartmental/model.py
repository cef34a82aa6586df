r"""Compartmental models as data: compartments, parameters and flows.

A :class:`Model` is declared from its compartments, its parameters (scalars, or arrays with
declared shapes such as a contact matrix over age groups) and its **flows**: each moves
people from one compartment to another (or in from / out to outside the population:
births, deaths, imports) at a rate given by a function ``rate(t, y, p)`` written in plain
``jax.numpy``, where ``y.S`` is a compartment and ``p.beta`` a parameter of one member.
Flows made with :func:`infection` create new infections. Everything epinn computes about a
model is derived from that definition:

* the vector field :math:`\dot y_c = \sum_{f:\,\to c} r_f - \sum_{f:\, c \to} r_f`;
* conservation: the total is conserved when every flow starts and ends in a compartment,
  and then one compartment is computed from the total instead of being integrated;
* incidence: the integral of the infection flows (read off the susceptibles when the only
  flows that touch their compartment are the infections out of it, otherwise integrated
  as an extra state);
* the infected compartments: those entered by infection (and the compartments they lead
  to by other flows) from which a compartment that drives infection can be reached;
* :math:`R_0` by the next-generation matrix (van den Driessche & Watmough 2002), the early
  growth rate, and whether the final-size relation provably holds (:attr:`Model.final_size_reason`).

Stratified populations: with ``groups``, every compartment is a vector over the groups
(age groups, regions), ``N`` holds the group sizes and rates are written with vector
operations, e.g. ``p.beta * y.S * (p.C @ (y.I / p.N))``. Flows move people within a group.

Examples:
    >>> import jax.numpy as jnp
    >>> sirv = Model(
    ...     compartments=("S", "I", "R", "V"), params=("beta", "gamma", "nu"),
    ...     flows=[infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
    ...            flow("I", "R", lambda t, y, p: p.gamma * y.I),
    ...            flow("S", "V", lambda t, y, p: p.nu * y.S)])
    >>> sirv.infected, sirv.conserved, sirv.infections_from
    (('I',), True, None)

References:
    P. van den Driessche and J. Watmough (2002), Reproduction numbers and sub-threshold
    endemic equilibria for compartmental models of disease transmission, Math. Biosci.
    180, 29-48.
"""


from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._rates import _Namespace, _evaluate_rates

__all__ = ["Flow", "flow", "infection", "Model", "CompartmentalModel", "stratify"]

Rate = Callable[[Any, Any, Any], ArrayLike]


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} must be a Python identifier string; got {name!r}.")
    return name


class Flow(eqx.Module):
    """One flow of a :class:`Model`: people moving from ``source`` to ``target``.

    Made by :func:`flow` or :func:`infection`.

    Attributes:
        source: the compartment people leave, or ``None`` for an inflow from outside
            (births, imports).
        target: the compartment people enter, or ``None`` for an outflow (deaths).
        rate: ``rate(t, y, p)``, people per unit time (per group for stratified models).
        infection: whether the flow creates new infections.
        name: the flow's name (default ``"source->target"``).
    """

    source: str | None = eqx.field(static=True)
    target: str | None = eqx.field(static=True)
    rate: Rate = eqx.field(static=True)
    infection: bool = eqx.field(static=True, default=False)
    name: str = eqx.field(static=True, default="")

    def __check_init__(self):
        for end, what in ((self.source, "`source`"), (self.target, "`target`")):
            if end is not None:
                _check_name(end, f"{what} of a flow")
        if self.source is None and self.target is None:
            raise ValueError("A flow needs a `source` or a `target` (both are None).")
        if self.source == self.target:
            raise ValueError(f"A flow cannot go from {self.source!r} to itself.")
        if not callable(self.rate):
            raise TypeError(
                f"The rate of flow {self.name!r} must be a function (t, y, p) -> rate; "
                f"got {self.rate!r}."
            )
        if self.infection and (self.source is None or self.target is None):
            raise ValueError(
                f"An infection flow moves people between compartments; flow {self.name!r} "
                f"goes from {self.source!r} to {self.target!r}."
            )


def _flow_name(source: str | None, target: str | None) -> str:
    return f"{source or ''}->{target or ''}"


def flow(source: str | None, target: str | None, rate: Rate, *, name: str | None = None) -> Flow:
    """A flow from ``source`` to ``target`` at ``rate(t, y, p)`` people per unit time.

    Args:
        source: compartment people leave; ``None`` for an inflow (births, imports).
        target: compartment people enter; ``None`` for an outflow (deaths).
        rate: a function of time ``t``, the state ``y`` (``y.S``: one member's
            compartment, a scalar or a vector over groups) and the parameters ``p``
            (``p.gamma``, ``p.N``), in ``jax.numpy``. It must be non-negative.
        name: the flow's name, for counts of it (default ``"source->target"``).

    Examples:
        >>> recovery = flow("I", "R", lambda t, y, p: p.gamma * y.I)
        >>> recovery.name
        'I->R'
    """
    return Flow(source, target, rate, False, name or _flow_name(source, target))


def infection(source: str, target: str, rate: Rate, *, name: str | None = None) -> Flow:
    r"""A flow that creates new infections (counted as incidence), e.g. :math:`S \to I`.

    Examples:
        >>> inf = infection("S", "E", lambda t, y, p: p.beta * y.S * y.I / p.N)
        >>> inf.infection, inf.name
        (True, 'S->E')
    """
    return Flow(source, target, rate, True, name or _flow_name(source, target))


class _Structure(eqx.Module):
    """Facts derived from a model's flows (hashable, computed once at construction)."""

    conserved: bool = eqx.field(static=True)
    derived: str | None = eqx.field(static=True)
    infections_from: str | None = eqx.field(static=True)
    infected: tuple[str, ...] = eqx.field(static=True)
    homogeneous: bool = eqx.field(static=True)
    final_size_reason: str | None = eqx.field(static=True)


class Model(eqx.Module):
    r"""A compartmental model defined by its flows (see :mod:`epinn.compartmental.model`).

    Args:
        compartments: the compartment names, in state order.
        params: the parameter names (scalars), or a mapping from name to declared shape,
            a tuple whose entries are ints or ``"groups"`` (e.g.
            ``{"beta": (), "gamma": (), "C": ("groups", "groups")}``). The population
            ``N`` is always a parameter: a scalar, or the group sizes ``("groups",)`` for
            a stratified model.
        flows: the :class:`Flow` objects (:func:`flow`, :func:`infection`).
        groups: ``None`` (unstratified), the number of groups, or their names.
        disease_free: ``disease_free(p) -> {compartment: value}``, the disease-free state
            at which :math:`R_0` is computed (compartments not named are zero). Needed
            only when infections come from more than one compartment (e.g. hosts and
            vectors); by default the whole population ``N`` is in the compartment that
            infections come from.
        name: a name for messages.

    Raises:
        ValueError: duplicate or invalid names, a flow naming an unknown compartment, a
            flow from a compartment to itself, no flows, a rate function that fails or
            returns the wrong shape for the declared parameters.

    Examples:
        >>> seir = Model(("S", "E", "I", "R"), ("beta", "sigma", "gamma"), [
        ...     infection("S", "E", lambda t, y, p: p.beta * y.S * y.I / p.N),
        ...     flow("E", "I", lambda t, y, p: p.sigma * y.E),
        ...     flow("I", "R", lambda t, y, p: p.gamma * y.I)])
        >>> seir.infected, seir.rate_names
        (('E', 'I'), ('beta', 'sigma', 'gamma'))
    """

    compartments: tuple[str, ...] = eqx.field(static=True)
    parameters: tuple[tuple[str, tuple], ...] = eqx.field(static=True)
    flows: tuple[Flow, ...] = eqx.field(static=True)
    groups: tuple[str, ...] | None = eqx.field(static=True)
    disease_free: Callable | None = eqx.field(static=True)
    name: str = eqx.field(static=True)
    structure: _Structure = eqx.field(static=True)

    def __init__(
        self,
        compartments: Sequence[str],
        params: Sequence[str] | Mapping[str, Sequence[int | str]],
        flows: Sequence[Flow],
        *,
        groups: int | Sequence[str] | None = None,
        disease_free: Callable | None = None,
        name: str = "Model",
    ):
        self.name = str(name)
        self.compartments = _check_compartments(compartments)
        self.groups = _check_groups(groups)
        self.parameters = _check_parameters(params, self.groups)
        self.flows = _check_flows(flows, self.compartments)
        if disease_free is not None and not callable(disease_free):
            raise TypeError(f"`disease_free` must be a function p -> state; got {disease_free!r}.")
        self.disease_free = disease_free
        self.structure = _structure_of(self.compartments, self.parameters, self.flows,
                                       self.groups, self.name)

    # -- names ----------------------------------------------------------------------

    @property
    def rate_names(self) -> tuple[str, ...]:
        """The parameter names other than the population ``N``."""
        return tuple(k for k, _ in self.parameters if k != "N")

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Declared shape of every parameter (``N`` included), groups resolved."""
        return dict(self.parameters)

    @property
    def n_groups(self) -> int:
        """Number of groups (1 when unstratified)."""
        return 1 if self.groups is None else len(self.groups)

    @property
    def infected(self) -> tuple[str, ...]:
        """The infected compartments (derived from the flows)."""
        return self.structure.infected

    @property
    def conserved(self) -> bool:
        """Whether every flow starts and ends in a compartment (the total is conserved)."""
        return self.structure.conserved

    @property
    def infections_from(self) -> str | None:
        """The compartment whose decrease counts the infections, or ``None``.

        Set when every infection flow leaves this one compartment and no other flow
        touches it; then cumulative infections are read off it instead of integrated.
        """
        return self.structure.infections_from

    @property
    def final_size_reason(self) -> str | None:
        """``None`` when the final-size relation provably holds, else why not."""
        return self.structure.final_size_reason

    def flow_names(self) -> tuple[str, ...]:
        """The names of the flows, in order."""
        return tuple(f.name for f in self.flows)

    def count_rule(self, name: str) -> tuple[str, str] | None:
        """How a flow's cumulative count follows from the compartments, if it does.

        ``("target", c)``: the flow is the only one into ``c`` and nothing leaves ``c``, so
        its count since :math:`t_0` is :math:`c(t) - c(t_0)` (deaths into ``D``).
        ``("source", c)``: the flow is the only one touching ``c``, so the count is
        :math:`c(t_0) - c(t)`. ``None``: the count must be integrated (``solve(...,
        counts=)``).
        """
        f = self.flow(name)
        touching = lambda c: [g for g in self.flows if c in (g.source, g.target)]  # noqa: E731
        if f.target is not None and touching(f.target) == [f]:
            return ("target", f.target)
        if f.source is not None and touching(f.source) == [f]:
            return ("source", f.source)
        return None

    def flow(self, name: str) -> Flow:
        """The flow called ``name`` (``KeyError`` naming the valid ones otherwise)."""
        for f in self.flows:
            if f.name == name:
                return f
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(str(name), self.flow_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"{self.name} has no flow {name!r}; its flows are "
                       f"{self.flow_names()}.{hint}")

    def _index(self, name: str) -> int:
        return self.compartments.index(name)

    @property
    def stoichiometry(self) -> np.ndarray:
        """``(F, C)`` integers: flow ``f`` changes compartment ``c`` by this per event."""
        S = np.zeros((len(self.flows), len(self.compartments)), np.int32)
        for i, f in enumerate(self.flows):
            if f.source is not None:
                S[i, self._index(f.source)] -= 1
            if f.target is not None:
                S[i, self._index(f.target)] += 1
        return S

    def flow_rates(self, t: ArrayLike, y: ArrayLike, p: Mapping[str, Any]) -> Array:
        """The rate of every flow for one member: ``(F,)``, or ``(F, G)`` with groups.

        The propensities of a stochastic simulation (each flow an event).

        Args:
            t: time.
            y: one member's state, ``(C,)`` or ``(C, G)`` (or flat ``(C * G,)``) in
                compartment order.
            p: one member's parameters, evaluated at ``t``, ``N`` included.

        Examples:
            >>> m = Model(("S", "I", "R"), ("beta", "gamma"), [
            ...     infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
            ...     flow("I", "R", lambda t, y, p: p.gamma * y.I)])
            >>> m.flow_rates(0.0, jnp.array([90.0, 10.0, 0.0]),
            ...              {"beta": 0.5, "gamma": 0.1, "N": 100.0}).tolist()
            [4.5, 1.0]
        """
        y = jnp.reshape(jnp.asarray(y), (-1,))
        shape = () if self.groups is None else (self.n_groups,)
        return jnp.stack([jnp.broadcast_to(q, shape) for q in self._member_rates(t, y, p)])

    # -- private protocol used by the integrators --------------------------------------

    @property
    def _derived(self) -> str | None:
        return self.structure.derived

    @property
    def _infections_from_S(self) -> bool:
        return self.structure.infections_from is not None

    @property
    def _has_final_size(self) -> bool:
        return self.structure.final_size_reason is None

    def _unflatten(self, y: Array) -> dict[str, Array]:
        """One member's flat state ``(C * G,)`` -> compartments (scalars or ``(G,)``)."""
        G = self.n_groups
        if self.groups is None:
            return {c: y[i] for i, c in enumerate(self.compartments)}
        return {c: y[i * G:(i + 1) * G] for i, c in enumerate(self.compartments)}

    def _member_rates(self, t: Any, y: Array, r: Mapping[str, Any]) -> list[Array]:
        """The rate of every flow for one member's flat state."""
        Y, P = _Namespace(self._unflatten(y)), _Namespace(r)
        return [jnp.asarray(f.rate(t, Y, P)) for f in self.flows]

    def _member_derivative(self, t, y, r, counted=()):
        rates = self._member_rates(t, y, r)
        blocks = []
        for c in self.compartments:
            into = [q for f, q in zip(self.flows, rates) if f.target == c]
            out = [q for f, q in zip(self.flows, rates) if f.source == c]
            d = into[0] if into else (-out.pop(0) if out else None)
            for q in into[1:]:
                d = d + q
            for q in out:
                d = d - q
            if d is None:
                d = jnp.zeros(() if self.groups is None else (self.n_groups,), y.dtype)
            blocks.append(jnp.broadcast_to(d, () if self.groups is None else (self.n_groups,)))
        new = [q for f, q in zip(self.flows, rates) if f.infection]
        new_total = sum(jnp.sum(q) for q in new) if new else jnp.zeros((), y.dtype)
        if counted:
            by_name = {f.name: q for f, q in zip(self.flows, rates)}
            return blocks, new_total, [jnp.sum(by_name[k]) for k in counted]
        return blocks, new_total

    def _rate_axes(self, r: Mapping[str, Any]) -> dict[str, int | None]:
        """Which evaluated rates carry a trailing-stacked members axis (leading, axis 0)."""
        shapes = self.param_shapes
        axes = {}
        for k, v in r.items():
            nd = len(shapes.get(k, ()))
            axes[k] = 0 if jnp.ndim(v) == nd + 1 else None
        return axes

    def _derivative(self, t: Any, y: Array, r: Mapping[str, Any], counted=()):
        """Per-compartment derivatives and the total infection flow.

        ``y`` is one member's flat state ``(C * G,)`` or a stacked state ``(C * G, m)``;
        the rates ``r`` (evaluated at ``t``, ``N`` included) are one member's or carry a
        leading members axis. Returns a list of blocks in compartment order (each ``()``
        or ``(G,)``, with a trailing ``m`` when stacked) and the infections per unit time;
        with ``counted`` (flow names) also the list of those flows' rates (summed over
        groups).
        """
        if y.ndim == 1:
            return self._member_derivative(t, y, r, counted)
        axes = self._rate_axes(r)
        fn = lambda y_, r_: self._member_derivative(t, y_, r_, counted)  # noqa: E731
        return jax.vmap(fn, in_axes=(1, axes), out_axes=-1)(y, r)

    def vector_field(self, t: ArrayLike, y: Array, args: Mapping[str, Any]) -> Array:
        """Right-hand side :math:`dy/dt` in diffrax's ``(t, y, args)`` convention.

        Args:
            t: time.
            y: the flat state (compartment-major, ``C * G`` entries) along the first axis,
                ``(C * G,)`` or ``(C * G, members)``.
            args: the parameter mapping, every parameter (a value or a function of time)
                and ``N``.

        Returns:
            :math:`dy/dt`, same shape as ``y``.
        """
        r = _evaluate_rates(args, t)
        dy, _ = self._derivative(t, y, r)
        return jnp.concatenate([jnp.reshape(b, (-1, *y.shape[1:])) for b in dy], axis=0)

    def infection_flow(self, t: ArrayLike, y: Array, args: Mapping[str, Any]) -> Array:
        r"""New infections per unit time (the incidence rate), summed over infection flows."""
        _, new = self._derivative(t, y, _evaluate_rates(args, t))
        return new


#: The name earlier versions used for :class:`Model`; the same class.
CompartmentalModel = Model


# --------------------------------------------------------------------------------------
# Checks of a definition
# --------------------------------------------------------------------------------------


def _check_compartments(compartments: Any) -> tuple[str, ...]:
    if isinstance(compartments, str) or not isinstance(compartments, Sequence):
        raise TypeError(
            f"`compartments` must be a sequence of names such as ('S', 'I', 'R'); "
            f"got {compartments!r}."
        )
    names = tuple(_check_name(c, "Each compartment name") for c in compartments)
    if not names:
        raise ValueError("`compartments` is empty.")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"`compartments` has duplicate names {dup}.")
    return names


def _check_groups(groups: Any) -> tuple[str, ...] | None:
    if groups is None:
        return None
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        if groups < 1:
            raise ValueError(f"`groups` must be at least 1; got {groups}.")
        return tuple(str(i) for i in range(int(groups)))
    if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
        raise TypeError(f"`groups` must be None, a positive int or group names; got {groups!r}.")
    names = tuple(str(g) for g in groups)
    if len(set(names)) != len(names):
        raise ValueError(f"`groups` has duplicate names: {names}.")
    return names


def _check_parameters(params: Any, groups: tuple[str, ...] | None) -> tuple[tuple[str, tuple], ...]:
    G = None if groups is None else len(groups)
    if isinstance(params, str):
        raise TypeError(f"`params` must be a sequence of names or a mapping; got {params!r}.")
    if isinstance(params, Mapping):
        items = list(params.items())
    elif isinstance(params, Sequence):
        items = [(k, ()) for k in params]
    else:
        raise TypeError(f"`params` must be a sequence of names or a mapping; got {params!r}.")
    names = [_check_name(k, "Each parameter name") for k, _ in items]
    dup = sorted({k for k in names if names.count(k) > 1})
    if dup:
        raise ValueError(f"`params` has duplicate names {dup}.")
    out = []
    for k, shape in items:
        if isinstance(shape, (int, str)):
            shape = (shape,)
        try:
            dims = tuple(shape)
        except TypeError:
            raise TypeError(
                f"The declared shape of parameter {k!r} must be a tuple of ints or 'groups'; "
                f"got {shape!r}."
            ) from None
        resolved = []
        for d in dims:
            if d == "groups":
                if G is None:
                    raise ValueError(
                        f"Parameter {k!r} is declared over 'groups', but the model has none "
                        "(pass `groups=`)."
                    )
                resolved.append(G)
            elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1:
                resolved.append(int(d))
            else:
                raise ValueError(
                    f"The declared shape of parameter {k!r} must hold positive ints or "
                    f"'groups'; got {shape!r}."
                )
        out.append((k, tuple(resolved)))
    n_shape = () if G is None else (G,)
    if "N" in names:
        declared = dict(out)["N"]
        if declared != n_shape:
            raise ValueError(
                f"The population `N` must have shape {n_shape} (one size per group when "
                f"stratified); it is declared {declared}."
            )
    else:
        out.append(("N", n_shape))
    return tuple(out)


def _check_flows(flows: Any, compartments: tuple[str, ...]) -> tuple[Flow, ...]:
    if isinstance(flows, Flow) or not isinstance(flows, Sequence):
        raise TypeError(f"`flows` must be a sequence of flows (epinn.flow/infection); got {flows!r}.")
    flows = tuple(flows)
    if not flows:
        raise ValueError("`flows` is empty: a model needs at least one flow.")
    for f in flows:
        if not isinstance(f, Flow):
            raise TypeError(f"Each flow must be made by epinn.flow or epinn.infection; got {f!r}.")
        for end in (f.source, f.target):
            if end is not None and end not in compartments:
                raise ValueError(
                    f"Flow {f.name!r} names the unknown compartment {end!r}; the "
                    f"compartments are {compartments}."
                )
    names = [f.name for f in flows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"Flow names must be unique; {dup} is used more than once (pass name=).")
    return flows


def _probe_values(model: Model, seed: int, dtype=jnp.float32) -> tuple[Array, dict[str, Array]]:
    """A random positive state and parameter set (for shape checks and structure)."""
    rng = np.random.default_rng(seed)
    n = len(model.compartments) * model.n_groups
    y = rng.uniform(0.5, 1.5, n).astype(dtype)
    p = {k: rng.uniform(0.5, 1.5, s).astype(dtype) for k, s in model.parameters}
    p["N"] = (p["N"] + n).astype(dtype)
    return y, p


def _check_rate_shapes(model: Model) -> None:
    """Every rate returns one value (per group) for the declared shapes: checked by tracing."""
    y, p = _probe_values(model, 0)
    expected = () if model.groups is None else (model.n_groups,)
    for f in model.flows:
        def one(y, p, f=f):
            return f.rate(0.0, _Namespace(model._unflatten(y)), _Namespace(p))

        try:
            out = jax.eval_shape(one, y, p)
        except AttributeError as e:
            raise ValueError(f"The rate of flow {f.name!r} uses an unknown name: {e}") from None
        except Exception as e:  # noqa: BLE001 (any failure of user code, reported by flow)
            raise ValueError(
                f"The rate of flow {f.name!r} failed for parameters of the declared shapes "
                f"{model.param_shapes}: {type(e).__name__}: {e}"
            ) from e
        shape = getattr(out, "shape", None)
        if shape != expected:
            raise ValueError(
                f"The rate of flow {f.name!r} must return shape {expected} (one value "
                f"{'per group' if model.groups else 'per member'}); got {shape}."
            )


# --------------------------------------------------------------------------------------
# Structure derived from the flows
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _structure_of(compartments, parameters, flows, groups, name) -> _Structure:
    """Check the rates' shapes and analyse the flows, once per definition.

    Keyed by the definition itself (flows compare by their rate functions), so that
    built-in models, which reuse module-level rate functions, are analysed once.
    """
    probe = _Probe(compartments, parameters, flows, groups, name)
    _check_rate_shapes(probe)
    with jax.ensure_compile_time_eval():  # a model may be defined inside a jit
        return _analyse(probe)


class _Probe(Model):
    """A :class:`Model` under construction (no structure yet), for the checks."""

    def __init__(self, compartments, parameters, flows, groups, name):
        self.compartments, self.parameters, self.flows = compartments, parameters, flows
        self.groups, self.name, self.disease_free = groups, name, None
        self.structure = None


def _reachable(start: set[str], edges: list[tuple[str, str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        c = todo.pop()
        for a, b in edges:
            if a == c and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def _increasing_in(model: Model, fn: Callable, seeds=(1, 2)) -> np.ndarray:
    r"""Which state entries some output of ``fn(y, p)`` increases with, at random points.

    A compartment drives infection when an infection rate grows with it: infectious
    people do; a compartment that only dilutes the force of infection (recovered people
    in the denominator of :math:`\beta S I / (S + I + R)`) does not.
    """
    pattern = None
    for s in seeds:
        y, p = _probe_values(model, s)
        J = np.asarray(jax.jacfwd(fn)(jnp.asarray(y), p)).reshape(-1, y.shape[0])
        up = (J > 1e-7 * np.abs(J).max()).any(0)
        pattern = up if pattern is None else pattern | up
    return pattern


def _analyse(model: Model) -> _Structure:
    flows, C = model.flows, model.compartments
    conserved = all(f.source is not None and f.target is not None for f in flows)
    infections = [f for f in flows if f.infection]
    sources = {f.source for f in infections}
    infections_from = None
    if len(sources) == 1:
        (s,) = sources
        if all(f.infection for f in flows if s in (f.source, f.target)):
            infections_from = s
    infected: tuple[str, ...] = ()
    if infections:
        G = model.n_groups

        def force(y, p):
            r = model._member_rates(0.0, y, p)
            return jnp.stack([jnp.sum(q) for f, q in zip(flows, r) if f.infection])

        dep = _increasing_in(model, force).reshape(len(C), G).any(1)
        drivers = {c for c, d in zip(C, dep) if d} - sources
        edges = [(f.source, f.target) for f in flows
                 if not f.infection and f.source is not None and f.target is not None]
        entered = _reachable({f.target for f in infections}, edges)
        infected = tuple(c for c in C if c in entered and _reachable({c}, edges) & drivers)
    derived = None
    if conserved:
        candidates = [c for c in C if c not in sources]
        derived = candidates[-1] if candidates else None
    return _Structure(
        conserved=conserved,
        derived=derived,
        infections_from=infections_from,
        infected=infected,
        homogeneous=_is_homogeneous(model),
        final_size_reason=_final_size_reason(model, infections_from, infected, conserved),
    )


def _is_homogeneous(model: Model) -> bool:
    r"""Whether every rate is homogeneous of degree one in the state and ``N`` jointly.

    :math:`r(t, \lambda y, \lambda N) = \lambda\, r(t, y, N)` for :math:`\lambda = 2, 3`
    at random points (true for frequency-dependent transmission and per-capita rates;
    false for a constant import or density-dependent transmission). Such a model can be
    integrated in population fractions with ``N = 1`` exactly; any other is integrated
    with the rates evaluated at counts.
    """
    for s in (3, 4):
        y, p = _probe_values(model, s)
        base = np.array([np.asarray(q).sum() for q in model._member_rates(0.0, jnp.asarray(y), p)])
        for lam in (2.0, 3.0):
            q = {**p, "N": p["N"] * lam}
            scaled = np.array([np.asarray(v).sum()
                               for v in model._member_rates(0.0, jnp.asarray(y * lam), q)])
            if not np.allclose(scaled, lam * base, rtol=1e-4, atol=0.0):
                return False
    return True


def _final_size_reason(model, infections_from, infected, conserved) -> str | None:
    r"""``None`` when the final-size relation holds provably, else the reason it does not.

    It holds when the population is closed, all infections leave one compartment ``S``
    that no other flow touches, the infection rate is :math:`S\, w^\top X / N` (linear
    in the infected compartments :math:`X`, proportional to ``S``, independent of the
    rest) and the other flows out of the infected compartments are linear in them, with
    nothing entering them except by infection.
    """
    if model.groups is not None:
        return "the final-size relation is implemented for unstratified models only"
    if not conserved:
        return ("the population is not closed (births, deaths or imports): the disease can "
                "become endemic")
    if infections_from is None:
        touching = [f.name for f in model.flows if not f.infection
                    and any(f2.infection and f2.source in (f.source, f.target)
                            for f2 in model.flows)]
        return ("the susceptibles change by flows other than infection "
                f"({', '.join(touching) or 'infections leave several compartments'})")
    if not infected:
        return "no compartment drives infection"
    idx = {c: i for i, c in enumerate(model.compartments)}
    for f in model.flows:
        if not f.infection and f.target in infected and f.source not in infected:
            return f"flow {f.name!r} enters an infected compartment other than by infection"
    s = idx[infections_from]
    X = [idx[c] for c in infected]
    others = [i for i in range(len(model.compartments)) if i != s and i not in X]

    def force(y, p):
        r = model._member_rates(0.0, y, p)
        return sum(jnp.sum(q) for f, q in zip(model.flows, r) if f.infection)

    def outflows(y, p):
        r = model._member_rates(0.0, y, p)
        return jnp.stack([q for f, q in zip(model.flows, r) if f.source in infected])

    for seed in (5, 6):
        y, p = _probe_values(model, seed)
        y = jnp.asarray(y)
        f0 = float(force(y, p))
        if not np.isclose(float(force(y.at[s].multiply(2.0), p)), 2 * f0, rtol=1e-4):
            return "the infection rate is not proportional to the susceptibles"
        Jf = np.asarray(jax.jacfwd(force)(y, p))
        if others and np.any(np.abs(Jf[others]) > 1e-6 * abs(f0)):
            return "the infection rate depends on compartments that are neither S nor infected"
        if not np.isclose(float(force(y.at[jnp.array(X)].multiply(2.0), p)), 2 * f0, rtol=1e-4):
            return "the infection rate is not linear in the infected compartments"
        o0 = np.asarray(outflows(y, p))
        o2 = np.asarray(outflows(y.at[jnp.array(X)].multiply(2.0), p))
        if not np.allclose(o2, 2 * o0, rtol=1e-4):
            return "the flows out of the infected compartments are not linear in them"
    return None


# --------------------------------------------------------------------------------------
# Stratification
# --------------------------------------------------------------------------------------


def stratify(model: Model, groups: int | Sequence[str], *, contact: str = "C") -> Model:
    r"""Stratify an unstratified model by groups mixing through a contact matrix.

    Every compartment becomes a vector over the groups and every parameter a per-group
    vector (``N`` the group sizes), except the contact matrix ``contact`` of shape
    ``(G, G)``. Each infection rate :math:`\lambda(S, I, N)` of the form
    :math:`\beta S\, I / N` is rewritten so that group :math:`g` sees the
    contact-weighted infectious fraction:

    .. math:: \beta_g\, S_g \sum_h C_{gh}\, I_h / N_h .

    This is done by evaluating the original rate with ``y.I`` replaced by
    :math:`N_g \sum_h C_{gh} I_h / N_h` for each compartment that drives infection, which
    is exact for rates linear in the infectious compartments over ``N`` (frequency
    dependence, the usual case). Other flows act within each group. With the
    homogeneous contact matrix :math:`C_{gh} = N_h / N` the stratified model reproduces
    the unstratified one.

    Args:
        model: an unstratified :class:`Model`.
        groups: the number of groups or their names.
        contact: the name of the new contact-matrix parameter.

    Returns:
        The stratified :class:`Model`.

    Examples:
        >>> sir = Model(("S", "I", "R"), ("beta", "gamma"), [
        ...     infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
        ...     flow("I", "R", lambda t, y, p: p.gamma * y.I)])
        >>> aged = stratify(sir, 3)
        >>> aged.param_shapes["C"], aged.param_shapes["N"]
        ((3, 3), (3,))
    """
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be an epinn.Model; got {model!r}.")
    if model.groups is not None:
        raise ValueError(f"`model` {model.name} is stratified already.")
    if contact in dict(model.parameters) or contact in model.compartments:
        raise ValueError(f"`contact` {contact!r} is a name of the model already.")
    drivers = set(model.infected)
    shapes = {k: ("groups",) for k, _ in model.parameters if k != "N"}
    shapes[contact] = ("groups", "groups")

    def mixed(rate):
        def r(t, y, p):
            seen = {c: y[c] for c in y}
            for c in drivers:
                seen[c] = p.N * (p[contact] @ (y[c] / p.N))
            return rate(t, _Namespace(seen), p)

        return r

    flows = [Flow(f.source, f.target, mixed(f.rate) if f.infection else f.rate,
                  f.infection, f.name) for f in model.flows]
    return Model(model.compartments, shapes, flows, groups=groups,
                 name=f"{model.name} stratified")


