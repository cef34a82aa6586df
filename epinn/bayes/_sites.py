"""The sites of a numpyro model, read off one seeded trace (private to :mod:`epinn.bayes`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array
from numpyro.distributions.transforms import biject_to

from ._checks import _is_concrete, _suggest


def _model_trace(model, args, kwargs) -> dict[str, Any]:
    """One seeded trace of ``model`` (plain Python; the model runs once, eagerly)."""
    return numpyro.handlers.trace(numpyro.handlers.seed(model, jr.PRNGKey(0))).get_trace(
        *args, **kwargs
    )


def _latent(trace: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(k for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"])


def _model_sites(model, args, kwargs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(latent sample sites, deterministic sites) of one seeded trace of ``model``."""
    tr = _model_trace(model, args, kwargs)
    det = tuple(k for k, s in tr.items() if s["type"] == "deterministic")
    return _latent(tr), det


def _check_site_names(names: Any, valid: tuple[str, ...], argname: str) -> tuple[str, ...]:
    """``names`` as a tuple, every entry one of ``valid``; else a ValueError naming ``argname``."""
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"`{argname}` must be a tuple of site names; got {names!r}.")
    names = tuple(names)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"`{argname}` has unknown sites {unknown}{_suggest(unknown[0], valid)}; "
                         f"valid sites: {valid}.")
    return names


def _check_init_params(init_params: Any, trace: Mapping[str, Any], num_chains: int
                       ) -> dict[str, Array]:
    """Validate ``{latent site: (num_chains, *unconstrained shape)}`` initial values.

    Returns them as numpyro's ``MCMC.run`` expects: with a leading chain axis for several
    chains and without one for a single chain (where a site's own shape is accepted too).
    """
    if not isinstance(init_params, Mapping):
        raise TypeError(
            f"`init_params` must be a mapping {{site: array}}; got {type(init_params).__name__}."
        )
    latent = _latent(trace)
    unknown = [k for k in init_params if k not in latent]
    missing = [k for k in latent if k not in init_params]
    if unknown or missing:
        raise ValueError(
            f"`init_params` must give exactly the latent sites {latent}; unknown "
            f"{unknown}, missing {missing}."
        )
    out = {}
    for name in latent:
        site = trace[name]
        shape = tuple(biject_to(site["fn"].support).inverse_shape(jnp.shape(site["value"])))
        value = jnp.asarray(init_params[name])
        if value.shape == (num_chains, *shape):
            value = value[0] if num_chains == 1 else value
        elif not (num_chains == 1 and value.shape == shape):
            raise ValueError(
                f"`init_params[{name!r}]` must have shape {(num_chains, *shape)} "
                f"(num_chains, unconstrained site shape); got {value.shape}."
            )
        if _is_concrete(value) and not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"`init_params[{name!r}]` contains NaN or inf.")
        out[name] = value
    return out


def _predictive_sites(model, args, kwargs) -> list[str]:
    """Sample and deterministic sites, without ``numpyro.factor`` terms."""
    tr = _model_trace(model, args, kwargs)
    return [k for k, s in tr.items()
            if s["type"] == "deterministic"
            or (s["type"] == "sample" and not isinstance(s["fn"], dist.Unit))]
