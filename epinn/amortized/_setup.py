"""How a prior and a model become simulation settings, checked in plain Python (private).

:func:`_check_simulation` checks every setting of :func:`~epinn.simulate_training_set`
before anything compiles and resolves, with :func:`_resolve`, where each parameter of the
model comes from (a prior range, a fixed value, or ``R0`` for ``beta``) into a
:class:`_Spec`. The estimator reuses the same checks when it is trained or loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import compartmental as _compartmental
from .._checks import (
    _as_float,
    _as_float_array,
    _check_choice,
    _check_positive,
    _did_you_mean,
    _show,
)
from ..compartmental import R0 as _R0
from ..compartmental import SIR, CompartmentalModel
from ._prior import Prior

_OBSERVE = ("prevalence", "incidence")
_NOISE = ("negbin", "poisson", "none")
#: The simulators of :func:`simulate_training_set`: the ODE or a stochastic simulator of
#: :func:`epinn.stochastic.simulate`.
SIMULATORS = ("ode", "exact", "tau_leap", "chain_binomial")


def _check_ts(ts: Any, t0: float | None, observe: str) -> tuple[np.ndarray, float]:
    a = _as_float_array(ts, "ts")
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"`ts` must be 1-D with at least 2 times; got shape {a.shape}.")
    if not np.all(np.isfinite(a)) or not np.all(np.diff(a) > 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
    t0 = float(a[0] - (a[1] - a[0])) if t0 is None else _as_float(t0, "t0")
    if not math.isfinite(t0) or t0 > a[0]:
        raise ValueError(f"`t0` ({t0}) must be finite and not after `ts[0]` ({a[0]}).")
    if observe == "incidence" and t0 == a[0]:
        raise ValueError("`t0` must be before `ts[0]` for incidence (the first interval).")
    return a, t0


class _Spec(NamedTuple):
    """How the prior's draws become one member of a model (resolved in plain Python).

    Attributes:
        drawn: the model's parameters drawn from ``prior.params``, in declared order.
        derived: ``"beta"`` when it follows from a drawn :math:`R_0`, else ``None``.
        fixed: ``((name, value), ...)``, the model's other parameters.
        susceptible: the compartment infections come from (holds ``N - I0`` at ``t0``).
        seed: the compartment that holds the ``I0`` initially infected.
        observed: the compartment read by ``observe="prevalence"``.
    """

    rates: tuple[str, ...]
    drawn: tuple[str, ...]
    derived: str | None
    fixed: tuple[tuple[str, float], ...]
    susceptible: str
    seed: str
    observed: str

    def rate_targets(self, prior: Prior) -> tuple[str, ...]:
        """The estimated model parameters, in declared order: those drawn (and not fixed
        by the prior) and the one derived from :math:`R_0`."""
        return tuple(k for k in self.rates if k == self.derived
                     or (k in self.drawn and not prior.is_fixed(k)))


def _model_name(model: CompartmentalModel) -> str:
    return getattr(model, "name", type(model).__name__)


def _check_fixed(fixed: Any) -> dict[str, float]:
    if fixed is not None and not isinstance(fixed, Mapping):
        raise TypeError(f"`fixed` must be a mapping like {{'sigma': 0.5}}; got {_show(fixed)}.")
    out = {}
    for k, v in dict(fixed or {}).items():
        x = _as_float(v, f"fixed[{k!r}]")
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"`fixed[{k!r}]` must be a non-negative number; got {v!r}.")
        out[k] = x
    return out


def _check_model(model: Any) -> CompartmentalModel:
    """An unstratified model with scalar parameters whose infections leave one compartment."""
    if not isinstance(model, CompartmentalModel):
        raise TypeError(
            f"`model` must be an epinn.Model (SIR(), or your own from epinn.flow / "
            f"epinn.infection); got {_show(model)}."
        )
    name = _model_name(model)
    if model.groups is not None:
        raise ValueError(
            f"`model` {name} is stratified (groups {model.groups}); the amortised estimator "
            "reads one curve of an unstratified model."
        )
    arrays = [k for k, s in model.param_shapes.items() if k != "N" and s != ()]
    if arrays:
        raise ValueError(
            f"`model` {name} declares array parameters {arrays}; the amortised estimator "
            "takes scalar parameters only."
        )
    sources = sorted({f.source for f in model.flows if f.infection})
    if len(sources) != 1:
        raise ValueError(
            f"`model` {name} must have infection flows (epinn.infection) out of exactly one "
            f"compartment, the susceptibles; got sources {sources}."
        )
    return model


def _resolve(model: Any, prior: Prior, fixed: Any, seed_compartment: Any,
             observe: str) -> tuple[CompartmentalModel, _Spec]:
    """Check that every parameter of ``model`` has one source (a prior range, a fixed
    value, or ``R0`` for ``beta``) and where the initial infected sit; plain Python."""
    model = _check_model(SIR() if model is None else model)
    fixed = _check_fixed(fixed)
    name, rates = _model_name(model), model.rate_names
    for what, names in (("`prior.params`", list(prior.params)), ("`fixed`", list(fixed))):
        unknown = [k for k in names if k not in rates]
        if unknown:
            k = unknown[0]
            raise ValueError(
                f"{what} names {k!r}, which is not a parameter of {name}"
                f"{_did_you_mean(k, rates)}; its parameters are {rates}."
            )
    both = [k for k in prior.params if k in fixed]
    if both:
        raise ValueError(f"{both} have both a prior range and a value in `fixed`; give one.")
    derived = None
    if prior.R0 is not None:
        if "beta" not in rates:
            raise ValueError(
                f"The prior draws `R0`, from which `beta` follows, but {name} has no "
                f"parameter `beta` (its parameters are {rates}); give ranges in "
                "`Prior(params=...)` instead."
            )
        if "beta" in fixed:
            raise ValueError("`fixed['beta']` contradicts the prior's `R0` (beta follows "
                             "from R0); give one.")
        derived = "beta"
    missing = [k for k in rates if k not in prior.params and k not in fixed and k != derived]
    if missing:
        raise ValueError(
            f"The parameter(s) {missing} of {name} have neither a prior range nor a fixed "
            f"value: give each a range in `Prior(params=...)` or a value in `fixed` (e.g. "
            f"`fixed={{{missing[0]!r}: ...}}`)."
        )
    susceptible = next(f.source for f in model.flows if f.infection)
    targets = [f.target for f in model.flows if f.infection]
    default = "I" if "I" in model.compartments else targets[0]
    seed = default if seed_compartment is None else seed_compartment
    if seed not in model.compartments or seed == susceptible:
        raise ValueError(
            f"`seed_compartment` must be a compartment of {name} other than the "
            f"susceptibles {susceptible!r}{_did_you_mean(str(seed), model.compartments)}; "
            f"got {seed!r} (compartments {model.compartments})."
        )
    if observe == "prevalence" and "I" not in model.compartments:
        raise ValueError(
            f"`observe='prevalence'` reads the compartment I, which {name} does not have "
            f"(compartments {model.compartments}); observe 'incidence'."
        )
    drawn = tuple(k for k in rates if k in prior.params)
    spec = _Spec(rates, drawn, derived, tuple(sorted(fixed.items())), susceptible, seed, "I")
    if derived and not _is_builtin(model):
        _check_r0_proportional(model, prior, spec)
    return model, spec


def _is_builtin(model: CompartmentalModel) -> bool:
    cls = type(model)
    return cls is not CompartmentalModel and getattr(_compartmental, cls.__name__, None) is cls


def _check_r0_proportional(model: CompartmentalModel, prior: Prior, spec: _Spec) -> None:
    """``beta`` follows from ``R0`` only where :math:`R_0 \\propto \\beta` (any model of
    frequency- or density-dependent transmission): checked at the prior's centre."""
    mid = {k: math.sqrt(lo * hi) for k, (lo, hi) in prior.params.items()}
    p = {**mid, **dict(spec.fixed), "N": math.sqrt(prior.N[0] * prior.N[1])}
    r1, r2 = (float(_R0(model, {**p, "beta": b})) for b in (1.0, 2.0))
    if not (math.isfinite(r1) and r1 > 0 and abs(r2 / r1 - 2.0) < 1e-4):
        raise ValueError(
            f"The prior draws `R0` and derives `beta`, but R0 of {_model_name(model)} is not "
            f"proportional to beta (R0 = {r1:.4g} at beta = 1, {r2:.4g} at beta = 2): give "
            "`beta` a range in `Prior(params=...)` instead."
        )


def _check_simulation(ts, prior, model, fixed, t0, observe, noise, simulator="ode", dt=None,
                      seed_compartment=None):
    """The checks of :func:`simulate_training_set`'s settings, in plain Python; returns
    ``model`` (default ``SIR()``), its :class:`_Spec`, ``ts`` as a NumPy array, ``t0``,
    ``simulator`` and the step ``dt`` of the approximate stochastic simulators."""
    if not isinstance(prior, Prior):
        raise TypeError(f"`prior` must be a Prior; got {type(prior).__name__}.")
    _check_choice(observe, "observe", _OBSERVE)
    _check_choice(noise, "noise", _NOISE)
    simulator = _check_choice(simulator, "simulator", SIMULATORS)
    model, spec = _resolve(model, prior, fixed, seed_compartment, observe)
    ts_np, t0 = _check_ts(ts, t0, observe)
    if simulator in ("ode", "exact"):
        if dt is not None:
            raise ValueError(f"`dt` is the step of 'tau_leap' and 'chain_binomial'; "
                             f"simulator={simulator!r} takes none (leave dt=None).")
    else:
        grid = np.concatenate([[t0], ts_np]) if t0 < ts_np[0] else ts_np
        dt = float(np.min(np.diff(grid))) / 10.0 if dt is None else _check_positive(dt, "dt")
    return model, spec, ts_np, t0, simulator, dt
