"""The Bayesian neural network for regression: :func:`~epinn.bnn_model`, :func:`~epinn.fit_bnn`.

Private module of :mod:`epinn.bayes`: the weights of a Flax network get a Gaussian prior
through :func:`numpyro.contrib.module.random_flax_module`.
"""

from __future__ import annotations

import functools
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
from numpyro.infer.reparam import LocScaleReparam

from .._checks import _check_flag, _check_key
from ._checks import (
    _as_float_array,
    _check_choice,
    _check_network,
    _check_positive_int,
    _check_scale,
)
from ._init import _init_to_values, _network_init, _unconstrained_inits
from ._results import MCMCResult, SVIResult
from ._run import _check_sizes, _check_svi_options, run_nuts, run_svi


def _regression_array(value: Any, name: str) -> Any:
    """A tracer as is; anything else as a NumPy array (checked without compiling)."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, jax.Array):
        return np.asarray(value)
    return _as_float_array(value, name)


def _check_regression_data(x: Any, y: Any) -> tuple[Any, Any]:
    """``(x (n, features), y (n,) or None)``, checked; NumPy arrays (or tracers as given)."""
    xa = _regression_array(x, "x")
    if xa.ndim == 1:
        xa = xa.reshape(-1, 1)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise ValueError(f"`x` must have shape (n, features) with n >= 1; got {np.shape(x)}.")
    if isinstance(xa, np.ndarray) and not np.all(np.isfinite(xa)):
        raise ValueError("`x` contains NaN or inf.")
    if y is None:
        return xa, None
    ya = _regression_array(y, "y")
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya.reshape(-1)
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"`y` must have shape ({xa.shape[0]},) to match `x`; got {np.shape(y)}.")
    if isinstance(ya, np.ndarray) and not np.all(np.isfinite(ya)):
        raise ValueError("`y` contains NaN or inf.")
    return xa, ya


def bnn_model(
    x: ArrayLike,
    y: ArrayLike | None = None,
    *,
    network: Any,
    prior_scale: float = 1.0,
    hierarchical: bool = False,
    heteroscedastic: bool = False,
    noise_scale: float = 1.0,
) -> None:
    r"""numpyro model of a Bayesian neural network for regression.

    .. math::

        w \sim \mathcal N(0, s^2 I), \qquad
        y_i \sim \mathcal N\big(f_w(x_i)_1,\ \sigma_i^2\big),

    with :math:`\sigma_i = \sigma \sim \text{HalfNormal}(\text{noise\_scale})` or, when
    ``heteroscedastic``, :math:`\sigma_i = \operatorname{softplus}(f_w(x_i)_2) + 10^{-6}`.
    With ``hierarchical=True`` the prior scale is itself unknown,
    :math:`s \sim \text{HalfNormal}(\text{prior\_scale})` (site ``"weight_scale"``), and the
    weights are non-centred (:class:`~numpyro.infer.reparam.LocScaleReparam`) so NUTS does
    not meet the funnel.

    Sites: the weights ``"net/<layer>.kernel"``/``"net/<layer>.bias"`` (via
    :func:`~numpyro.contrib.module.random_flax_module`), ``"sigma"`` (homoscedastic),
    deterministic ``"mean"`` :math:`f_w(x)_1` (and ``"noise"`` :math:`\sigma_i`), and the
    observations ``"obs"``.

    Args:
        x: inputs ``(n, features)`` (or ``(n,)`` for one feature).
        y: targets ``(n,)`` or ``None`` to simulate them.
        network: a Flax Linen module, normally :class:`~epinn.models.MLP`, with one output
            (two when ``heteroscedastic``).
        prior_scale: the weight prior's standard deviation :math:`s` (or the scale of its
            HalfNormal prior when hierarchical).
        hierarchical: learn the prior scale.
        heteroscedastic: learn an input-dependent noise from a second output.
        noise_scale: scale of the HalfNormal prior on :math:`\sigma`.

    Raises:
        ValueError: bad shapes, scales or number of network outputs.
    """
    xa, ya = _check_regression_data(x, y)
    _check_scale(prior_scale, "prior_scale")
    _check_scale(noise_scale, "noise_scale")
    n_out = 2 if heteroscedastic else 1
    _check_network(network, outputs=n_out, what=f"(heteroscedastic={heteroscedastic})")
    if hierarchical:
        scale = numpyro.sample("weight_scale", dist.HalfNormal(prior_scale))
        with numpyro.handlers.reparam(config=_non_centred_weights):
            net = random_flax_module("net", network, dist.Normal(0.0, scale),
                                     input_shape=(1, xa.shape[1]))
    else:
        net = random_flax_module("net", network, dist.Normal(0.0, prior_scale),
                                 input_shape=(1, xa.shape[1]))
    out = net(xa)
    if out.shape[-1] != n_out:
        raise ValueError(f"`network` must have {n_out} output(s); got {out.shape[-1]}.")
    mean = numpyro.deterministic("mean", out[:, 0])
    if heteroscedastic:
        sigma = numpyro.deterministic("noise", jax.nn.softplus(out[:, 1]) + 1e-6)
    else:
        sigma = numpyro.sample("sigma", dist.HalfNormal(noise_scale))
    with numpyro.plate("data", xa.shape[0]):
        numpyro.sample("obs", dist.Normal(mean, sigma), obs=ya)


def _non_centred_weights(site: dict) -> LocScaleReparam | None:
    """Reparameterise the weight sites ``net/...`` (not the ``_decentered`` ones it adds)."""
    name = site["name"]
    if name.startswith("net/") and not name.endswith("_decentered"):
        return LocScaleReparam(0.0)
    return None


def fit_bnn(
    x: ArrayLike,
    y: ArrayLike,
    *,
    key: jax.Array,
    network: Any,
    method: str = "nuts",
    prior_scale: float = 1.0,
    hierarchical: bool = False,
    heteroscedastic: bool = False,
    noise_scale: float = 1.0,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    guide: str | autoguide.AutoGuide = "normal",
    num_steps: int = 5000,
    learning_rate: float = 1e-2,
    warn: bool = False,
) -> MCMCResult | SVIResult:
    r"""Fit :func:`bnn_model` by NUTS (small networks) or SVI (larger ones).

    Chains (and the guide) start from the network's own initialiser (LeCun normal) rather
    than numpyro's uniform draws, which suits the layer sizes. Weight-space R-hat of a BNN
    is large by nature (hidden units can be permuted and chains settle in different
    modes), so ``warn`` defaults to ``False`` here; judge the fit by its predictions.

    Args:
        x, y: training inputs ``(n, features)`` and targets ``(n,)``.
        key: PRNG key.
        network: the Flax network (e.g. ``MLP((16, 16, 1), activation="tanh")``).
        method: ``"nuts"`` or ``"svi"``.
        prior_scale, hierarchical, heteroscedastic, noise_scale: as :func:`bnn_model`.
        num_warmup, num_samples, num_chains: NUTS sizes (``num_samples`` is also the number
            of SVI draws).
        guide, num_steps, learning_rate: SVI options (see :func:`run_svi`).
        warn: warn on failed NUTS diagnostics.

    Returns:
        :class:`MCMCResult` or :class:`SVIResult`; predict with
        ``posterior_predictive(fit, key, x_new)``.

    Raises:
        ValueError: bad data (including NaN or inf in ``x`` or ``y``), options or network
            outputs.
        TypeError: ``network`` is not a Flax Linen module, or a bad key.
        NonFiniteLossError: ``method="svi"`` and the ELBO loss ended non-finite (see
            :func:`run_svi`).
    """
    _check_key(key)
    hierarchical = _check_flag(hierarchical, "hierarchical")
    heteroscedastic = _check_flag(heteroscedastic, "heteroscedastic")
    _check_network(network, outputs=2 if heteroscedastic else 1,
                   what=f"(heteroscedastic={heteroscedastic})")
    _check_choice(method, ("nuts", "svi"), "method")
    xa, ya = _check_regression_data(x, y)
    if ya is None:
        raise ValueError("`y` must be given to fit a BNN.")
    # Every option is checked here, before the network's initialisation compiles.
    _check_scale(prior_scale, "prior_scale")
    _check_scale(noise_scale, "noise_scale")
    _check_flag(warn, "warn")
    if method == "nuts":
        _check_sizes(num_warmup, num_samples, num_chains)
    else:
        _check_svi_options(guide, num_steps, num_samples, learning_rate)
    xa, ya = jnp.asarray(xa), jnp.asarray(ya)
    model = functools.partial(
        bnn_model, network=network, prior_scale=prior_scale, hierarchical=hierarchical,
        heteroscedastic=heteroscedastic, noise_scale=noise_scale,
    )
    init_key, run_key = jr.split(key)
    n_in = xa.shape[1]
    # Non-centred weights (hierarchical) are weight / scale; start them at weight / s.
    strategy = functools.partial(_init_to_values, prefix="net",
                                 decentered_scale=prior_scale if hierarchical else 1.0)
    if method == "nuts":
        chains = _check_positive_int(num_chains, "num_chains")
        # One network initialisation per chain, so the chains start apart (stacked on a
        # chain axis, which run_nuts drops for a single chain as numpyro expects).
        inits = [strategy(_network_init(network, k, n_in)) for k in jr.split(init_key, chains)]
        return run_nuts(
            model, run_key, xa, ya, num_warmup=num_warmup, num_samples=num_samples,
            num_chains=chains, init_params=_unconstrained_inits(model, (xa, ya), inits),
            warn=warn,
        )
    return run_svi(
        model, run_key, xa, ya, guide=guide, num_steps=num_steps,
        learning_rate=learning_rate, num_samples=_check_positive_int(num_samples, "num_samples"),
        init_strategy=strategy(_network_init(network, init_key, n_in)),
    )
