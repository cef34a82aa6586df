"""How an ODE is integrated: one value for the settings every solve takes."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import diffrax
import jax
import numpy as np

__all__ = ["SolverOptions"]


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    r"""The integration settings of a solve, as one value (like diffrax's ``PIDController``).

    Every epinn function that integrates an ODE (:func:`~epinn.solve`,
    :func:`~epinn.solve_ensemble`, :func:`~epinn.ensemble_summary`, the least-squares fits,
    :func:`~epinn.profile_likelihood`, :func:`~epinn.fit_neural_beta` and the Bayesian
    epidemic models) takes ``options=SolverOptions(...)``. A field left ``None`` keeps that
    function's own default, so one value can be shared by functions whose defaults differ
    (the Bayesian models, for instance, default to looser tolerances than :func:`~epinn.solve`).

    The same settings are also accepted one by one as keywords (``rtol=1e-8``), the short
    form; a setting given both ways with different values is refused, and a function refuses
    a field it does not use (the fits choose their own adjoint, for instance) rather than
    ignore it.

    The step-size controller accepts a step when the scaled error
    :math:`\|e_i / (\text{atol} + \text{rtol}\,|x_i|)\|` is at most one, with the state
    :math:`x` in population fractions (so ``atol`` means the same for counts and fractions).

    Attributes:
        solver: a diffrax solver with an error estimate; ``None`` is each function's
            default (Tsit5).
        rtol: relative tolerance (positive).
        atol: absolute tolerance on population fractions (positive).
        dt0: initial step (positive); ``None`` lets diffrax choose.
        max_steps: the most solver steps before the solve counts as failed (positive int).
        adjoint: a diffrax adjoint (how gradients pass through the solve), e.g.
            ``diffrax.ForwardMode()`` for forward-mode derivatives.
        throw: raise on solver failure (``True``) or report it in the result (``False``).

    Examples:
        >>> import jax.numpy as jnp
        >>> import epinn
        >>> tight = epinn.SolverOptions(rtol=1e-9, atol=1e-11)
        >>> traj = epinn.solve(epinn.SIR(), {"beta": 0.5, "gamma": 0.25, "N": 1000.0},
        ...                    {"S": 990.0, "I": 10.0, "R": 0.0}, jnp.linspace(0.0, 60.0, 7),
        ...                    options=tight)
        >>> tight.replace(max_steps=100).max_steps
        100
    """

    solver: diffrax.AbstractSolver | None = None
    rtol: float | None = None
    atol: float | None = None
    dt0: float | None = None
    max_steps: int | None = None
    adjoint: diffrax.AbstractAdjoint | None = None
    throw: bool | None = None

    def __post_init__(self):
        for name in ("rtol", "atol", "dt0"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive(value, name))
        if self.max_steps is not None:
            m = self.max_steps
            if isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)):
                raise TypeError(f"`max_steps` must be a positive int; got {m!r}.")
            if m <= 0:
                raise ValueError(f"`max_steps` must be a positive int; got {m!r}.")
            object.__setattr__(self, "max_steps", int(m))
        if self.throw is not None and not isinstance(self.throw, (bool, np.bool_)):
            raise TypeError(f"`throw` must be True or False; got {self.throw!r}.")
        if self.solver is not None and not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(
                f"`solver` must be a diffrax solver such as diffrax.Tsit5(); got {self.solver!r}.")
        if self.adjoint is not None and not isinstance(self.adjoint, diffrax.AbstractAdjoint):
            raise TypeError(
                "`adjoint` must be a diffrax adjoint such as diffrax.ForwardMode(); got "
                f"{self.adjoint!r}.")

    def replace(self, **changes: Any) -> SolverOptions:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, (jax.core.Tracer, bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"`{name}` must be a positive number (a Python float); got {value!r}.")
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"`{name}` must be positive and finite; got {value!r}.")
    return x
