"""Priors of the Bayesian epidemic models (private to :mod:`epinn.bayes`).

The case study's default priors in any time unit, the checks that a prior is a scalar
distribution with the right support (or a fixed number), and the sample sites drawn from
them, optionally non-centred through the prior's quantile function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..compartmental import CompartmentalModel
from ._checks import _is_concrete, _is_real, _suggest

_TIME_UNITS = {"day": 1.0, "week": 7.0}


def _days_per_unit(time_unit: Any) -> float:
    """Days in one unit of time: ``"day"`` 1, ``"week"`` 7, or a positive number."""
    if isinstance(time_unit, str):
        if time_unit not in _TIME_UNITS:
            raise ValueError(
                f"`time_unit` must be one of {tuple(_TIME_UNITS)} or the number of days in one "
                f"unit of `ts`; got {time_unit!r}{_suggest(time_unit, _TIME_UNITS)}."
            )
        return _TIME_UNITS[time_unit]
    if not (_is_real(time_unit) and math.isfinite(float(time_unit)) and float(time_unit) > 0):
        raise ValueError(
            f"`time_unit` must be one of {tuple(_TIME_UNITS)} or the number of days in one unit "
            f"of `ts` (a positive number); got {time_unit!r}."
        )
    return float(time_unit)


def default_priors(time_unit: str | float = "day") -> dict[str, dist.Distribution]:
    r"""The priors of the Stan boarding-school case study (Grinsztajn et al., 2021).

    The case study's rates are **per day**:

    .. math::

        \beta \sim \mathcal N(2, 1)_{[0,\infty)}, \quad
        \gamma \sim \mathcal N(0.4, 0.5)_{[0,\infty)}, \quad
        \phi^{-1} \sim \text{Exponential}(5)

    (truncated normals on :math:`[0, \infty)`; :math:`\phi^{-1}` has no time unit). For
    data on another time scale the rate priors are rescaled exactly: a rate per unit of
    :math:`u` days is :math:`u` times the rate per day, so with ``time_unit="week"``
    :math:`\beta \sim \mathcal N(14, 7)_{[0,\infty)}` and
    :math:`\gamma \sim \mathcal N(2.8, 3.5)_{[0,\infty)}` (per week), the same beliefs
    about the same epidemic. :math:`R_0 = \beta/\gamma` does not change.

    Args:
        time_unit: the unit of the observation times: ``"day"`` (default), ``"week"``, or
            the number of days in one unit (e.g. ``7.0``, or ``1 / 24`` for hours).

    Returns:
        ``{"beta", "gamma", "phi_inv"}`` as numpyro distributions, rates per ``time_unit``.

    Raises:
        ValueError: an unknown ``time_unit`` or a non-positive number.

    Examples:
        >>> sorted(default_priors())
        ['beta', 'gamma', 'phi_inv']
        >>> weekly = default_priors("week")
        >>> float(weekly["beta"].mean / default_priors()["beta"].mean)
        7.0
    """
    u = _days_per_unit(time_unit)
    return {
        "beta": dist.TruncatedNormal(2.0 * u, 1.0 * u, low=0.0),
        "gamma": dist.TruncatedNormal(0.4 * u, 0.5 * u, low=0.0),
        "phi_inv": dist.Exponential(5.0),
    }


def _check_distribution_args(name: str, d: dist.Distribution) -> None:
    """Check a prior's parameters against its ``arg_constraints`` (when concrete).

    Runs under :func:`jax.ensure_compile_time_eval` (see :func:`_check_prior`): a parameter
    computed with ``jnp`` (``LogNormal(jnp.log(2.0), 1.0)``) is a concrete array, and the
    check must not turn it into a tracer when the model is traced by a sampler.
    """
    for param, constraint in getattr(d, "arg_constraints", {}).items():
        if not hasattr(d, param) or isinstance(constraint, type(dist.constraints.dependent)):
            continue
        value = getattr(d, param)
        if _is_concrete(value) and not bool(np.all(np.asarray(constraint(value)))):
            raise ValueError(
                f"`priors[{name!r}]` ({type(d).__name__}) has an invalid parameter "
                f"{param}={np.asarray(value)}: it must satisfy {constraint}."
            )
    if hasattr(d, "base_dist"):
        _check_distribution_args(name, d.base_dist)


def _check_prior(name: str, value: Any, *, upper: float | None = None,
                 allow_zero: bool = False) -> Any:
    """A prior is a numpyro distribution on (0, upper] or a fixed number there."""
    what = f"(0, {upper}]" if upper is not None else ("[0, inf)" if allow_zero else "(0, inf)")
    if isinstance(value, dist.Distribution):
        with jax.ensure_compile_time_eval():
            return _check_prior_distribution(name, value, upper, what)
    if not _is_real(value):
        raise TypeError(
            f"`priors[{name!r}]` must be a numpyro distribution or a fixed number; got "
            f"{type(value).__name__}."
        )
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0) and (upper is None or v <= upper)
    if not ok:
        raise ValueError(f"`priors[{name!r}]` as a fixed value must lie in {what}; got {v}.")
    return v


def _check_prior_distribution(name: str, value: dist.Distribution, upper: float | None,
                              what: str) -> dist.Distribution:
    """Parameters, shape and support of one prior distribution (see :func:`_check_prior`)."""
    _check_distribution_args(name, value)
    if value.batch_shape or value.event_shape:
        raise ValueError(
            f"`priors[{name!r}]` must be a scalar distribution; got batch shape "
            f"{value.batch_shape} and event shape {value.event_shape}."
        )
    support = value.support
    lo, hi = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    lo_ok = lo is not None and _is_concrete(lo) and float(np.asarray(lo)) >= 0
    hi_ok = upper is None or (
        hi is not None and _is_concrete(hi) and float(np.asarray(hi)) <= upper
    )
    if not (lo_ok and hi_ok):
        raise ValueError(
            f"`priors[{name!r}]` must have support inside {what} (e.g. "
            f"TruncatedNormal(..., low=0), LogNormal, Exponential"
            f"{', Beta' if upper else ''}); {type(value).__name__} has support {support}."
        )
    return value


def _model_priors(priors: Any, model: CompartmentalModel, likelihood: str, days: float,
                  neural_beta: bool = False) -> dict[str, Any]:
    """The checked priors of ``model``: :func:`default_priors` (per unit of ``days`` days) for
    beta, gamma and, with the negative binomial, phi_inv, overridden by the user's entries."""
    user = {} if priors is None else priors
    if not isinstance(user, Mapping):
        raise TypeError(f"`priors` must be a mapping {{name: distribution or number}}; "
                        f"got {type(user).__name__}.")
    defaults = {k: v for k, v in default_priors(days).items()
                if k in model.rate_names or (k == "phi_inv" and likelihood == "negbin")}
    merged = {**defaults, **dict(user)}
    initial = tuple(f"{c}0" for c in model.compartments if c != "S")
    allowed = (*model.rate_names, "reporting", "phi_inv", *initial)
    bad = [k for k in merged if k not in allowed]
    if bad:
        raise ValueError(f"`priors` has unknown names {bad}{_suggest(bad[0], allowed)}; "
                         f"allowed for {type(model).__name__}: {allowed}.")
    if "phi_inv" in user and likelihood != "negbin":
        raise ValueError("`priors['phi_inv']` is only used with likelihood='negbin'.")
    if neural_beta:
        if "beta" not in model.rate_names:
            raise ValueError(f"`model` {type(model).__name__} has no rate 'beta'.")
        if "beta" in user:
            raise ValueError("`priors['beta']` is not used: beta(t) is the Bayesian network.")
        merged.pop("beta", None)
    need = [r for r in model.rate_names if r not in merged and not (neural_beta and r == "beta")]
    if need:
        raise ValueError(f"`priors` must give a distribution or fixed value for the rates {need} "
                         f"of {type(model).__name__}.")
    checked = {}
    for k, v in merged.items():
        if k == "reporting":
            checked[k] = _check_prior(k, v, upper=1.0)
        else:
            checked[k] = _check_prior(k, v, allow_zero=k in initial)
    return checked


def _draw(name: str, prior: Any, reparam: str | None = None) -> Any:
    """A sample site for a distribution; a fixed value as is.

    With ``reparam="noncentred"`` a prior that :func:`_noncentred_value` knows is sampled
    as ``"<name>_z"`` ~ N(0, 1) and ``name`` becomes a deterministic site of the same
    prior distribution.
    """
    if not isinstance(prior, dist.Distribution):
        return prior
    if reparam == "noncentred" and _noncentred_value(prior, 0.0) is not None:
        z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0))
        return numpyro.deterministic(name, _noncentred_value(prior, z))
    return numpyro.sample(name, prior)


def _noncentred_value(prior: dist.Distribution, z: Any) -> Any:
    r"""The value :math:`F^{-1}(\Phi(z))` of ``prior`` at a standard-normal ``z``, or ``None``.

    For :math:`z \sim \mathcal N(0, 1)` the result has exactly the distribution ``prior``.
    Written per family so that both tails stay accurate in float32 (no :math:`\Phi(z)`
    that rounds to 1):

    * ``LogNormal(m, s)``: :math:`e^{m + s z}`;
    * ``Exponential(r)``: :math:`-\log \Phi(-z) / r` (``log_ndtr``);
    * ``TruncatedNormal(m, s, low=a)`` without upper bound: with
      :math:`q = 1 - \Phi((a - m)/s)`, :math:`m - s\,\Phi^{-1}\big(q\,\Phi(-z)\big)`.

    Other families return ``None`` (they are sampled as they are).
    """
    from jax.scipy.special import log_ndtr, ndtr, ndtri

    if isinstance(prior, dist.LogNormal):
        return jnp.exp(prior.base_dist.loc + prior.base_dist.scale * z)
    if isinstance(prior, dist.Exponential):
        return -log_ndtr(-jnp.asarray(z, dtype=jnp.result_type(float))) / prior.rate
    if isinstance(prior, dist.LeftTruncatedDistribution) and isinstance(
            prior.base_dist, dist.Normal):
        m, sd = prior.base_dist.loc, prior.base_dist.scale
        q = 1.0 - ndtr((prior.low - m) / sd)
        return m - sd * ndtri(q * ndtr(-jnp.asarray(z, dtype=jnp.result_type(float))))
    return None


def _noncentred_z(prior: dist.Distribution, theta: float) -> float | None:
    r"""The inverse of :func:`_noncentred_value`: :math:`z = \Phi^{-1}(F(\theta))`."""
    from scipy.special import ndtr, ndtri

    if isinstance(prior, dist.LogNormal):
        m, sd = float(prior.base_dist.loc), float(prior.base_dist.scale)
        return (math.log(theta) - m) / sd
    if isinstance(prior, dist.Exponential):
        return float(-ndtri(math.exp(-float(prior.rate) * theta)))
    if isinstance(prior, dist.LeftTruncatedDistribution) and isinstance(
            prior.base_dist, dist.Normal):
        m, sd = float(prior.base_dist.loc), float(prior.base_dist.scale)
        q = 1.0 - ndtr((float(prior.low) - m) / sd)
        return float(-ndtri(ndtr((m - theta) / sd) / q))
    return None
