"""Prior and posterior predictive draws, credible intervals and coverage (private module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike
from numpyro.infer import Predictive

from .._checks import _check_key
from ._checks import _as_float_array, _check_positive_int, _check_prob
from ._results import MCMCResult, SVIResult
from ._sites import _predictive_sites


def prior_predictive(
    model: Callable[..., Any], key: jax.Array, num_samples: int, *model_args: Any,
    **model_kwargs: Any,
) -> dict[str, Array]:
    """Draws of every site of ``model`` under the prior (:class:`~numpyro.infer.Predictive`).

    Pass ``None`` (or omit) the observed data so the observation sites are simulated.

    Args:
        model: a numpyro model function.
        key: PRNG key.
        num_samples: number of draws.
        model_args, model_kwargs: positional and keyword arguments of ``model``.

    Returns:
        ``{site: array (num_samples, ...)}``.

    Examples:
        >>> import jax.random as jr, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     numpyro.sample("x", dist.Normal(0.0, 1.0))
        >>> prior_predictive(model, jr.PRNGKey(0), 3)["x"].shape
        (3,)
    """
    if not callable(model):
        raise TypeError(f"`model` must be a numpyro model function; got {type(model)}.")
    _check_key(key)
    n = _check_positive_int(num_samples, "num_samples")
    sites = _predictive_sites(model, model_args, model_kwargs)
    return dict(Predictive(model, num_samples=n, return_sites=sites)(
        key, *model_args, **model_kwargs))


def posterior_predictive(
    result: MCMCResult | SVIResult,
    key: jax.Array,
    *model_args: Any,
    num_samples: int | None = None,
    **model_kwargs: Any,
) -> dict[str, Array]:
    """Posterior predictive draws: the model re-run at each posterior draw.

    Uses :class:`~numpyro.infer.Predictive` with the latent draws of ``result``;
    deterministic sites are recomputed and observation sites simulated (pass new inputs
    without observed data, e.g. ``posterior_predictive(fit, key, x_new)``).

    Args:
        result: a fit from :func:`run_nuts`, :func:`run_svi` or the ``fit_*`` helpers.
        key: PRNG key.
        *model_args: positional arguments for the model, without the observed data (the
            fit's own arguments are not reused: they contain the data).
        num_samples: use only the first this many draws (default all).
        **model_kwargs: keyword arguments overriding those of the fit.

    Returns:
        ``{site: array (draws, ...)}`` for every sample and deterministic site.

    Raises:
        TypeError: ``result`` is not a fit.
    """
    if not isinstance(result, (MCMCResult, SVIResult)):
        raise TypeError(f"`result` must be an MCMCResult or SVIResult; got {type(result)}.")
    _check_key(key)
    draws = {k: result.samples[k] for k in result.latent_sites}
    if num_samples is not None:
        n = _check_positive_int(num_samples, "num_samples")
        draws = {k: v[:n] for k, v in draws.items()}
    kwargs = {**result.model_kwargs, **model_kwargs}
    sites = _predictive_sites(result.model, model_args, kwargs)
    return dict(Predictive(result.model, posterior_samples=draws, return_sites=sites)(
        key, *model_args, **kwargs))


def credible_interval(
    draws: ArrayLike, prob: float = 0.9, axis: int = 0
) -> tuple[Array, Array, Array]:
    r"""Mean and equal-tailed credible interval of draws.

    The interval is :math:`[q_{(1-p)/2},\ q_{(1+p)/2}]` of the draws along ``axis``.

    Args:
        draws: samples, drawn along ``axis``.
        prob: probability mass :math:`p` of the interval.
        axis: the draws axis.

    Returns:
        ``(mean, lo, hi)``.

    Examples:
        >>> mean, lo, hi = credible_interval(jnp.arange(101.0), prob=0.9)
        >>> float(mean), float(lo), float(hi)
        (50.0, 5.0, 95.0)
    """
    prob = _check_prob(prob)
    x = draws if isinstance(draws, jax.Array) else _as_float_array(draws, "draws")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ValueError(f"`axis` must be an int indexing `draws` of shape {x.shape}; got "
                         f"{axis!r}.")
    if x.ndim == 0 or x.shape[axis] < 2:
        raise ValueError(f"`draws` needs at least 2 draws along axis {axis}; got {x.shape}.")
    x = jnp.asarray(x)
    lo, hi = jnp.quantile(x, jnp.array([0.5 * (1 - prob), 0.5 * (1 + prob)]), axis=axis)
    return jnp.mean(x, axis=axis), lo, hi


def predictive_coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Fraction of the values ``y`` inside ``[lo, hi]`` (empirical coverage).

    Examples:
        >>> predictive_coverage(jnp.array([0.0, 1.0, 5.0]), jnp.zeros(3), jnp.full(3, 2.0))
        0.6666666666666666
    """
    y, lo, hi = (_as_float_array(a, n) for a, n in ((y, "y"), (lo, "lo"), (hi, "hi")))
    if y.size == 0:
        raise ValueError("`y` must not be empty.")
    for name, a in (("lo", lo), ("hi", hi)):
        try:
            np.broadcast_shapes(y.shape, a.shape)
        except ValueError:
            raise ValueError(f"`{name}` of shape {a.shape} does not match `y` of shape "
                             f"{y.shape}.") from None
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` contains NaN or inf.")
    return float(np.mean((y >= lo) & (y <= hi)))
