"""The training prior of the amortised estimator: independent log-uniform ranges (private).

:class:`Prior` holds one ``(lo, hi)`` range per quantity (the observation settings ``N``,
``I0``, ``reporting``, ``noise``; ``R0``; any parameter of the model) and draws from them;
:mod:`epinn.amortized` re-exports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array

from .._checks import _as_float, _check_int, _check_key, _did_you_mean, _show

_PRIOR_NAMES = ("N", "R0", "gamma", "I0", "reporting", "noise")
#: Prior names that are not parameters of the model (the observation and initial state).
_OBSERVATION_NAMES = ("N", "I0", "reporting", "noise")


def _check_range(value: Any, name: str) -> tuple[float, float]:
    """A number or a pair ``(lo, hi)`` with ``0 < lo <= hi`` (finite), as two floats."""
    try:
        pair = (value, value) if np.ndim(value) == 0 else tuple(value)
        if len(pair) != 2 or any(isinstance(v, (bool, np.bool_, str, bytes)) for v in pair):
            raise ValueError
        lo, hi = (_as_float(v, name) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(
            f"Prior `{name}` must be a number or a pair (lo, hi) of numbers; got "
            f"{_show(value)}."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"Prior `{name}` must satisfy 0 < lo <= hi (finite); got {value!r}.")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class Prior:
    r"""Independent log-uniform priors, one ``(lo, hi)`` range per quantity.

    A draw is :math:`\theta = \exp(u)`, :math:`u \sim \mathcal U(\log lo, \log hi)`. A
    single number, or a range with ``lo == hi``, fixes the value.

    **Any parameter of any model.** ``params`` gives a range to any declared scalar
    parameter of the model being simulated (``{"beta": (0.5, 3), "nu": (0.001, 0.05)}``
    for your own :class:`~epinn.Model`); every parameter of the model must then have a
    range here or a value in ``fixed`` (:func:`simulate_training_set` names any that has
    neither, and any range for a name the model does not declare). ``R0`` is the
    alternative to a range for ``beta``: the model's ``beta`` then follows from the drawn
    :math:`R_0` (:math:`R_0` is proportional to :math:`\beta`; checked), which keeps every
    curve an epidemic. Without ``params`` (the SIR-type set-up) the defaults
    ``R0=(1.5, 8)`` and ``gamma=(0.2, 1)`` apply; with ``params`` only the ranges given are
    drawn. ``gamma`` may be given either way.

    The box these ranges span is the estimator's domain of trust: see
    :mod:`epinn.amortized`.

    Attributes:
        N: population size (required; usually fixed, e.g. ``763``).
        R0: basic reproduction number (``lo > 1``: every curve is an epidemic); ``beta``
            follows from it. ``None`` when not drawn.
        gamma: recovery rate (per time unit of ``ts``); ``None`` when not drawn.
        I0: initially infected people at ``t0``, in the seed compartment (``I`` by
            default); the rest of ``N`` is susceptible.
        reporting: fraction of the true counts that is observed, in ``(0, 1]``.
        noise: coefficient of variation :math:`\nu` of the negative-binomial noise
            (:math:`\text{Var} = \mu + \nu^2\mu^2`); unused for Poisson or no noise.
        params: ``{name: (lo, hi)}`` for the model's parameters (``gamma`` included when it
            is drawn; ``R0`` is kept in its own attribute).

    Raises:
        ValueError: a range that is not one or two positive finite numbers with
            ``lo <= hi``, ``R0`` not above 1, ``reporting`` above 1, ``I0`` not below
            ``N``, a name given twice (``gamma`` and ``params["gamma"]``, or ``R0`` and
            ``beta``), or a ``params`` name that is an observation setting (``N``, ``I0``,
            ``reporting``, ``noise``).
        TypeError: ``params`` not a mapping of names.

    Examples:
        >>> p = Prior(N=1000, R0=(2.0, 4.0), I0=1)
        >>> p.R0, p.N, p.is_fixed("N"), p.is_fixed("R0")
        ((2.0, 4.0), (1000.0, 1000.0), True, False)
        >>> q = Prior(N=763, I0=1, params={"beta": (0.5, 3.0), "gamma": (0.2, 1.0),
        ...                                "nu": (0.005, 0.05)})
        >>> q.R0, q.gamma, sorted(q.params)
        (None, (0.2, 1.0), ['beta', 'gamma', 'nu'])
    """

    N: tuple[float, float]
    R0: tuple[float, float] | None = None
    gamma: tuple[float, float] | None = None
    I0: tuple[float, float] = (0.5, 3.0)
    reporting: tuple[float, float] = (0.7, 1.0)
    noise: tuple[float, float] = (0.02, 0.5)
    params: Mapping[str, Any] | None = None

    def __post_init__(self):
        params = _check_prior_params(self.params)
        if not params:  # the SIR-type set-up and its defaults
            R0 = (1.5, 8.0) if self.R0 is None else self.R0
            gamma = (0.2, 1.0) if self.gamma is None else self.gamma
        else:
            R0, gamma = self.R0, self.gamma
            # Given twice is fine only with one value (as dataclasses.replace does).
            for name in ("R0", "gamma"):
                field = R0 if name == "R0" else gamma
                if name in params and field is not None and _check_range(
                        field, name) != _check_range(params[name], name):
                    raise ValueError(f"Prior `{name}` is given twice, differently (as "
                                     f"`{name}` and in `params`).")
            R0 = params.pop("R0", R0)
            gamma = params.pop("gamma", gamma)
        if R0 is not None and "beta" in params:
            raise ValueError(
                "Prior `R0` and `params['beta']` both given: beta follows from R0 (give one)."
            )
        for name in ("N", "I0", "reporting", "noise"):
            object.__setattr__(self, name, _check_range(getattr(self, name), name))
        R0 = None if R0 is None else _check_range(R0, "R0")
        gamma = None if gamma is None else _check_range(gamma, "gamma")
        ranges = {k: _check_range(v, k) for k, v in sorted(params.items())}
        if gamma is not None:
            ranges = {"gamma": gamma, **ranges}
        object.__setattr__(self, "R0", R0)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "params", ranges)
        if R0 is not None and R0[0] <= 1.0:
            raise ValueError(f"Prior `R0` must lie above 1 (epidemics only); got {R0}.")
        if self.reporting[1] > 1.0:
            raise ValueError(f"Prior `reporting` must lie in (0, 1]; got {self.reporting}.")
        if self.I0[1] >= self.N[0]:
            raise ValueError(
                f"Prior `I0` {self.I0} must stay below the population `N` {self.N}."
            )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def names(self) -> tuple[str, ...]:
        """Every quantity with a range: the observation settings, ``R0`` and ``params``."""
        r0 = ("R0",) if self.R0 is not None else ()
        return ("N", *r0, *self.params, "I0", "reporting", "noise")

    def range(self, name: str) -> tuple[float, float]:
        """The ``(lo, hi)`` range of ``name`` (an observation setting, ``R0`` or a param)."""
        if name in self.params:
            return self.params[name]
        value = getattr(self, name, None) if name in _PRIOR_NAMES else None
        if value is None:
            raise KeyError(
                f"The prior has no range for {name!r}{_did_you_mean(name, self.names)}; "
                f"its names are {self.names}."
            )
        return value

    def is_fixed(self, name: str) -> bool:
        """Whether the range of ``name`` is a single value."""
        lo, hi = self.range(name)
        return lo == hi

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{name: [lo, hi]}`` (the model's other ranges under ``"params"``)."""
        d: dict[str, Any] = {"N": list(self.N)}
        if self.R0 is not None:
            d["R0"] = list(self.R0)
        if self.gamma is not None:
            d["gamma"] = list(self.gamma)
        d.update({k: list(getattr(self, k)) for k in ("I0", "reporting", "noise")})
        rest = {k: list(v) for k, v in self.params.items() if k != "gamma"}
        if rest:
            d["params"] = rest
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`.

        Raises:
            TypeError: ``d`` is not a mapping.
            ValueError: unknown names, no ``N``, or a bad range (as the constructor).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"`d` must be a mapping {{name: [lo, hi]}}; got {_show(d)}.")
        valid = (*_PRIOR_NAMES, "params")
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ValueError(
                f"Unknown prior names {unknown}; valid names are {valid} (ranges of other "
                "model parameters go under 'params')."
            )
        if "N" not in d:
            raise ValueError("The prior needs `N`, the population size.")
        return cls(**dict(d))

    def sample(self, key: jax.Array, n: int) -> dict[str, Array]:
        """``n`` independent log-uniform draws of every quantity, ``{name: (n,)}``."""
        key = _check_key(key)
        return jax.jit(_draw, static_argnums=2)(key, self._ranges(),
                                                _check_int(n, "n", 1))

    def _ranges(self) -> dict[str, Array]:
        """``{name: array([lo, hi])}`` for every name in :attr:`names`."""
        return {k: jnp.asarray(self.range(k)) for k in self.names}


def _check_prior_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(
            f"Prior `params` must be a mapping {{name: (lo, hi)}}; got {_show(params)}."
        )
    out = {}
    for k, v in params.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise TypeError(f"Prior `params` names must be parameter names; got {k!r}.")
        if k in _OBSERVATION_NAMES:
            raise ValueError(
                f"Prior `params[{k!r}]`: {k!r} is an observation setting; give it as "
                f"`Prior({k}=...)`."
            )
        out[k] = v
    return out



def _draw(key, prior_arrays, n):
    """Log-uniform draws from ``{name: (lo, hi)}`` arrays.

    The six SIR-type names draw from ``jax.random.split(key, 6)`` in the order of
    ``_PRIOR_NAMES`` (whichever of them the prior has); other names from
    ``jax.random.split(fold_in(key, 6), k)`` in sorted order.
    """
    legacy = jr.split(key, len(_PRIOR_NAMES))
    keys = {name: k for name, k in zip(_PRIOR_NAMES, legacy)}
    extra = sorted(k for k in prior_arrays if k not in keys)
    if extra:
        keys.update(zip(extra, jr.split(jr.fold_in(key, len(_PRIOR_NAMES)), len(extra))))
    out = {}
    for name in prior_arrays:
        lo, hi = prior_arrays[name]
        u = jr.uniform(keys[name], (n,), minval=jnp.log(lo), maxval=jnp.log(hi))
        out[name] = jnp.where(lo == hi, lo, jnp.exp(u))  # a fixed value stays exact
    return out
