"""Integrate one trajectory of any model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import numpy as np
from jaxtyping import ArrayLike

from ._integrate import _make_config, _solve_core, _solver_reason
from ._rates import _is_time_varying
from ._validate import _check_flow_rates, _check_model, _check_rate_functions, _check_sum, _closest, _normalize_params, _normalize_ts, _normalize_y0
from ._options import _resolve_options
from .model import Model
from .options import SolverOptions
from .trajectory import Trajectory

__all__ = ["solve"]

def solve(
    model: Model,
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
    options: SolverOptions | None = None,
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
        options: the solver settings as one :class:`SolverOptions`; its fields left
            ``None`` keep the keywords above (a setting given both ways must agree).

    Returns:
        :class:`Trajectory` with ``ys`` of shape ``(len(ts), C)`` (``(len(ts), C, G)``
        with groups) in counts.

    Raises:
        ValueError: bad names, shapes or values of ``params``, ``y0``, ``ts`` or options.
        TypeError: wrong kinds of objects.

    Examples:
        >>> import jax.numpy as jnp
        >>> from epinn.compartmental import SIR
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
    _check_flow_rates(model, rates, N, y0a, tsa[0])
    opts = _resolve_options(solve, options, solver=solver, rtol=rtol, atol=atol, dt0=dt0,
                            max_steps=max_steps, adjoint=adjoint, throw=throw)
    cfg = _make_config(opts)
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


def _check_counts(model: Model, counts: Any) -> tuple[str, ...]:
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


