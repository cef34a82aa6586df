"""The built-in SIR-family models, written as flow definitions."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

from .model import Model, flow, infection

__all__ = [
    "SIRParams", "SIRDParams", "SIRSParams", "SEIRParams", "SEIRDParams",
    "SIRVitalDynamicsParams", "SIR", "SIRD", "SIRS", "SEIR", "SEIRD", "SIRVitalDynamics",
]

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


"""The class of every compartmental model (an alias of :class:`epinn.Model`)."""


# The built-in models are definitions in the flow language. Their rates are module-level
# values, so that two instances (``SIR() == SIR()``) are equal and share compilations.


def _si(t, y, p):
    return p.beta * y.S * y.I / p.N


@dataclasses.dataclass(frozen=True)
class _PerCapita:
    """The rate ``p.<param> * y.<compartment>``: each person leaves at rate ``param``.

    A frozen dataclass rather than a closure: equal rates compare (and hash) equal, so
    models built from them do too.
    """

    param: str
    compartment: str

    def __call__(self, t, y, p):
        return getattr(p, self.param) * getattr(y, self.compartment)


def _birth(t, y, p):
    return p.mu * p.N


_recovery = _PerCapita("gamma", "I")
_onset = _PerCapita("sigma", "E")
_waning = _PerCapita("omega", "R")
_death_I = _PerCapita("mu", "I")  # disease deaths in SIRD/SEIRD, natural ones in SIRVitalDynamics
_death_S = _PerCapita("mu", "S")
_death_R = _PerCapita("mu", "R")

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
            (*_SIR_FLOWS, flow("I", "D", _death_I, name="deaths")), name="SIRD",
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
            (*_SEIR_FLOWS, flow("I", "D", _death_I, name="deaths")), name="SEIRD",
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


