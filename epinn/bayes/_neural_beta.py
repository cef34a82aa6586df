"""A Bayesian neural transmission rate: :func:`~epinn.neural_beta_model` and its SVI fit.

Private module of :mod:`epinn.bayes`: :math:`\\beta(t)` is a Flax network with Gaussian
weight priors inside the epidemic model of ``_epidemic``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import ArrayLike
from numpyro.contrib.module import random_flax_module
from numpyro.infer import autoguide

from .._checks import _check_key
from ..compartmental import R0 as _R0
from ..compartmental import SIR, CompartmentalModel, NetworkRate, SolverOptions
from ._checks import (
    _check_network,
    _check_scale,
)
from ._epidemic import _adjoint, _epidemic_body, _epidemic_spec, _ode_settings
from ._init import _init_to_values, _network_init
from ._priors import _draw
from ._results import SVIResult
from ._run import _check_svi_options, run_svi


def neural_beta_model(
    ts: ArrayLike,
    counts: ArrayLike | None = None,
    *,
    y0: Mapping[str, float],
    network: Any,
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    prior_scale: float = 1.0,
    t_scale: float | None = None,
    likelihood: str = "poisson",
    observed: str = "I",
    time_unit: str | float = "day",
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_steps: int = 4096,
    options: SolverOptions | None = None,
) -> None:
    r"""numpyro model with a Bayesian neural transmission rate :math:`\beta(t)`.

    .. math::

        \beta(t) = \operatorname{softplus}\big(f_w(t / t_s)\big), \qquad
        w \sim \mathcal N(0, s^2 I),

    where :math:`f_w` is ``network`` (one input, one output) with weights registered by
    :func:`~numpyro.contrib.module.random_flax_module` (sites ``"beta_net/..."``). The
    other rates, initial states, reporting and overdispersion are as in
    :func:`epidemic_model`. Deterministic ``"beta_t"`` and ``"R0_t"``
    (:math:`\beta(t)/\gamma` for SIR) hold the rate on the solve grid (``t0`` then ``ts``).
    Gradients are reverse mode (many weights), so fit with SVI
    (:func:`fit_bayesian_neural_beta`). The likelihood defaults to Poisson: with the
    negative binomial, mean-field SVI tends to explain the data by overdispersion rather
    than pay the KL cost of pinning down the weights (on the boarding school, 1/phi went to
    0.6 and the band of beta(t) stayed at the prior's).

    Args:
        ts, counts, y0, model, population, t0, priors, likelihood, observed, time_unit:
            as :func:`epidemic_model` (``priors`` must not contain ``"beta"``).
        network: a Flax Linen module with one input and one output, e.g.
            ``MLP((16, 16, 1), activation="tanh")``.
        prior_scale: standard deviation :math:`s` of the weight prior.
        t_scale: time is divided by this before entering the network; default the span
            ``ts[-1] - t0``.
        rtol, atol, max_steps: shorthand for the fields of ``options``.
        options: the solver settings as one :class:`~epinn.SolverOptions` (``rtol``,
            ``atol``, ``max_steps``; the default Tsit5 solver and reverse-mode adjoint).

    Raises:
        ValueError: as :func:`epidemic_model`, plus a bad network or scale.
    """
    model = SIR() if model is None else model
    spec = _epidemic_spec(ts, counts, model=model, y0=y0, population=population, t0=t0,
                          priors=priors, likelihood=likelihood, observed=observed,
                          time_unit=time_unit, neural_beta=True)
    ode = _ode_settings(neural_beta_model, options, rtol=rtol, atol=atol, max_steps=max_steps)
    _check_scale(prior_scale, "prior_scale")
    scale = float(spec.grid[-1] - spec.grid[0]) if t_scale is None else t_scale
    _check_scale(scale, "t_scale")
    _check_network(network, outputs=1, what="for beta(t)")
    net = random_flax_module("beta_net", network, dist.Normal(0.0, prior_scale),
                             input_shape=(1,))
    beta = NetworkRate(network, _sampled_variables(net), transform=jax.nn.softplus,
                       t_scale=scale)
    rates = {r: beta if r == "beta" else _draw(r, spec.priors[r], spec.reparam)
             for r in model.rate_names}
    grid = jnp.asarray(spec.grid)
    numpyro.deterministic("beta_t", jax.vmap(beta)(grid))
    numpyro.deterministic("R0_t", _R0(model, {**rates, "N": spec.population}, t=grid))
    if "gamma" in rates:
        numpyro.deterministic("recovery_time", 1.0 / jnp.asarray(rates["gamma"]))
    _epidemic_body(spec, rates, adjoint=_adjoint(False), ode=ode)


def _sampled_variables(net: Any) -> dict[str, Any]:
    """The Flax variables ``{"params": ...}`` bound in ``random_flax_module``'s result.

    numpyro returns ``functools.partial(apply_fn, params)``; taking the bound weights lets
    :class:`~epinn.compartmental.NetworkRate` carry them as pytree leaves, so the compiled
    solve is reused across model traces (a closure would recompile it each time).
    """
    if isinstance(net, functools.partial) and net.args and isinstance(net.args[0], Mapping):
        return {"params": net.args[0]}
    raise RuntimeError(  # pragma: no cover - guards against a change in numpyro
        "numpyro.contrib.module.random_flax_module no longer returns functools.partial("
        "apply_fn, params); update epinn.bayes._neural_beta._sampled_variables."
    )


def fit_bayesian_neural_beta(
    ts: ArrayLike,
    counts: ArrayLike,
    *,
    key: jax.Array,
    y0: Mapping[str, float],
    network: Any = None,
    model: CompartmentalModel | None = None,
    population: float | None = None,
    t0: float | None = None,
    priors: Mapping[str, Any] | None = None,
    prior_scale: float = 1.0,
    t_scale: float | None = None,
    likelihood: str = "poisson",
    observed: str = "I",
    time_unit: str | float = "day",
    guide: str | autoguide.AutoGuide = "normal",
    num_steps: int = 3000,
    learning_rate: float = 1e-2,
    num_samples: int = 500,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_steps: int = 4096,
    options: SolverOptions | None = None,
) -> SVIResult:
    r"""Variational posterior of a neural :math:`\beta(t)` (:func:`neural_beta_model`).

    SVI with an autoguide (:func:`run_svi`); the guide starts at the network's own
    initialisation (LeCun normal) and at the prior medians of the other parameters. The
    draws of ``"beta_t"`` give a credible band for the transmission rate, e.g.
    ``credible_interval(fit.samples["beta_t"], 0.9)``.

    Args:
        ts, counts, key, y0, model, population, t0: as :func:`fit_epidemic`.
        priors, likelihood, observed, time_unit: as :func:`fit_epidemic`.
        network: the Flax network; default ``MLP((16, 16, 1), activation="tanh")``.
        prior_scale, t_scale: as :func:`neural_beta_model`.
        guide, num_steps, learning_rate, num_samples: as :func:`run_svi`.
        rtol, atol, max_steps: shorthand for the fields of ``options``.
        options: the solver settings as one :class:`~epinn.SolverOptions`, as in
            :func:`neural_beta_model`.

    Returns:
        :class:`SVIResult` with ``samples["beta_t"]`` of shape ``(num_samples, len(grid))``.

    Raises:
        ValueError: bad data, priors or options.
        TypeError: ``network`` is not a Flax Linen module, or a bad key.
        NonFiniteLossError: the ELBO loss ended non-finite (see :func:`run_svi`).
    """
    from ..models import MLP

    model = SIR() if model is None else model
    network = MLP((16, 16, 1), activation="tanh") if network is None else network
    _check_network(network, outputs=1, what="for beta(t)")
    _check_key(key)
    if counts is None:
        raise ValueError("`counts` must be given: there is no data to fit.")
    cfg = dict(y0=y0, model=model, population=population, t0=t0, priors=priors,
               likelihood=likelihood, observed=observed, time_unit=time_unit)
    _epidemic_spec(ts, counts, **cfg, neural_beta=True)
    # Everything run_svi and the model check, before the network's initialisation compiles.
    ode = _ode_settings(fit_bayesian_neural_beta, options, rtol=rtol, atol=atol,
                        max_steps=max_steps)
    _check_scale(prior_scale, "prior_scale")
    if t_scale is not None:
        _check_scale(t_scale, "t_scale")
    _check_svi_options(guide, num_steps, num_samples, learning_rate)
    fn = functools.partial(neural_beta_model, **cfg, network=network, prior_scale=prior_scale,
                           t_scale=t_scale, options=ode.options())
    init_key, run_key = jr.split(key)
    values = _network_init(network, init_key, 1)
    return run_svi(
        fn, run_key, np.asarray(ts, dtype=np.float64), np.asarray(counts, dtype=np.float64),
        guide=guide, num_steps=num_steps, learning_rate=learning_rate,
        num_samples=num_samples, init_strategy=_init_to_values(values, "beta_net"),
    )
