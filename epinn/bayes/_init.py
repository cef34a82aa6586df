"""Where the samplers start: numpyro init strategies (private to :mod:`epinn.bayes`).

Network weights start at the network's own initialiser (LeCun normal) rather than at
numpyro's uniform draws; other sites at given values or their prior median. NUTS takes one
starting point per chain in its unconstrained space.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import initialize_model


def _network_init(network: Any, key: jax.Array, n_in: int) -> dict[str, Array]:
    """``{"Dense_0.kernel": array, ...}`` from the network's own initialiser."""
    params = jax.jit(network.init)(key, jnp.ones((1, n_in)))["params"]
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {".".join(str(p.key) for p in path): v for path, v in flat}


def _init_values(site=None, values=None, prefix="", decentered_scale=1.0,
                 fallback=init_to_median):
    if site is None:
        return functools.partial(_init_values, values=values, prefix=prefix,
                                 decentered_scale=decentered_scale, fallback=fallback)
    name = site["name"]
    # Weight sites are "<prefix>/<layer>.<kind>" (numpyro's scope); the non-centred ones
    # carry a "_decentered" suffix (and numpyro currently repeats the scope prefix).
    decentered = name.endswith("_decentered")
    path = name.removesuffix("_decentered").rsplit("/", 1)[-1]
    if name.startswith(prefix + "/") and path in values:
        return values[path] / decentered_scale if decentered else values[path]
    return fallback(site)


def _init_to_values(values: Mapping[str, Array], prefix: str, decentered_scale: float = 1.0,
                    fallback=init_to_median):
    """numpyro init strategy: the network weights under ``prefix`` from ``values``,
    ``fallback`` elsewhere (a ``functools.partial``, as numpyro's ``initialize_model``
    expects)."""
    return functools.partial(_init_values, values=dict(values), prefix=prefix,
                             decentered_scale=decentered_scale, fallback=fallback)


def _init_sites(site=None, values=None):
    if site is None:
        return functools.partial(_init_sites, values=values)
    if site["name"] in values:
        return jnp.asarray(values[site["name"]], dtype=jnp.result_type(float))
    return init_to_median(site)


def _init_to_sites(values: Mapping[str, float]):
    """numpyro init strategy: ``values`` by site name, the prior median elsewhere."""
    return functools.partial(_init_sites, values=dict(values))


def _unconstrained_inits(model, args, strategies) -> dict[str, Array]:
    """One initial point per init strategy, stacked on a leading chain axis, in the
    unconstrained space of NUTS."""
    per_chain = [
        initialize_model(jr.PRNGKey(0), model, model_args=args, init_strategy=st)[0].z
        for st in strategies
    ]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *per_chain)
