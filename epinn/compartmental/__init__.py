r"""Compartmental models on diffrax: defined by their flows, exact, differentiable and vectorised.

The model layer is one package, a module per concept: :mod:`~epinn.compartmental.model` (a model
as data: compartments, parameters, flows; :func:`stratify`), :mod:`~epinn.compartmental.builtins`
(SIR, SEIR, ... written as flow definitions), :mod:`~epinn.compartmental.trajectory` and
:mod:`~epinn.compartmental.solve` (one trajectory), :mod:`~epinn.compartmental.ensemble` (many at
once) and :mod:`~epinn.compartmental.derived` (R0, R_t, incidence, peaks, growth, final size).
Everything public is importable from here, ``epinn.compartmental.NAME``, and from ``epinn``.

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

from ._ngm import next_generation_matrices
from ._rates import NetworkRate
from .options import SolverOptions
from .builtins import (
    SEIR,
    SEIRD,
    SIR,
    SIRD,
    SIRS,
    SIRVitalDynamics,
)
from .derived import (
    R0,
    FinalSize,
    cumulative_cases,
    doubling_time,
    effective_reproduction_number,
    final_size,
    growth_rate,
    incidence,
    peak,
)
from .ensemble import EnsembleSummary, ensemble_summary, solve_ensemble
from .model import CompartmentalModel, Flow, Model, flow, infection, stratify
from .solve import solve
from .trajectory import Trajectory

__all__ = [
    "Model",
    "Flow",
    "flow",
    "infection",
    "stratify",
    "next_generation_matrices",
    "CompartmentalModel",
    "SIR",
    "SIRD",
    "SIRS",
    "SEIR",
    "SEIRD",
    "SIRVitalDynamics",
    "NetworkRate",
    "Trajectory",
    "solve",
    "SolverOptions",
    "solve_ensemble",
    "EnsembleSummary",
    "ensemble_summary",
    "R0",
    "effective_reproduction_number",
    "incidence",
    "cumulative_cases",
    "peak",
    "growth_rate",
    "doubling_time",
    "FinalSize",
    "final_size",
]
