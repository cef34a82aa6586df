"""The next-generation matrix of a model at its disease-free state (van den Driessche & Watmough 2002)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._rates import _Namespace
from .model import Model

# --------------------------------------------------------------------------------------
# Next-generation matrix
# --------------------------------------------------------------------------------------


def _disease_free_state(model: Model, r: Mapping[str, Array]) -> Array:
    """One member's flat disease-free state (see :class:`Model`'s ``disease_free``)."""
    G = model.n_groups
    dtype = jnp.result_type(*(jnp.asarray(v) for v in r.values()), jnp.float32)
    blocks = {c: jnp.zeros(() if model.groups is None else (G,), dtype)
              for c in model.compartments}
    if model.disease_free is not None:
        given = model.disease_free(_Namespace(r))
        if not isinstance(given, Mapping):
            raise TypeError(f"`disease_free` must return a mapping; got {type(given)}.")
        for c, v in given.items():
            if c not in blocks:
                raise ValueError(f"`disease_free` names the unknown compartment {c!r}.")
            blocks[c] = jnp.broadcast_to(jnp.asarray(v, dtype), blocks[c].shape)
    else:
        sources = {f.source for f in model.flows if f.infection}
        if len(sources) != 1:
            raise ValueError(
                f"Infections leave several compartments {sorted(sources)}: give the model "
                "`disease_free=` (the disease-free state at which R0 is computed)."
            )
        (s,) = sources
        blocks[s] = jnp.broadcast_to(jnp.asarray(r["N"], dtype), blocks[s].shape)
    return jnp.concatenate([jnp.reshape(blocks[c], (-1,)) for c in model.compartments])


def _infected_index(model: Model) -> np.ndarray:
    G = model.n_groups
    return np.array([model._index(c) * G + g for c in model.infected for g in range(G)], int)


def next_generation_matrices(
    model: Model, r: Mapping[str, Array], t: Any = 0.0, *, state: Array | None = None
):
    r"""The matrices :math:`F` and :math:`V` of one member at the disease-free state.

    With :math:`x` the infected compartments (all groups),
    :math:`F = \partial\mathcal F/\partial x` where :math:`\mathcal F_i` is the rate of
    new infections into :math:`x_i`, and :math:`V = \partial\mathcal V/\partial x` where
    :math:`\mathcal V_i` is the net rate of the other flows out of :math:`x_i` (out minus
    in), both at the disease-free state (``jax.jacfwd``), or at ``state`` (a flat state
    whose infected compartments are zero) for the effective reproduction number.

    Args:
        model: the model.
        r: one member's parameters (evaluated at ``t``), ``N`` included.
        t: the time passed to the rate functions.
        state: the state to linearise at; default :class:`Model`'s disease-free state.

    Returns:
        ``(F, V)``, each ``(k, k)`` over the infected compartments (times groups).
    """
    if not model.infected:
        raise ValueError(
            f"`model` {model.name} has no infection flow (epinn.infection) driven by its "
            "compartments, so it has no reproduction number."
        )
    idx = _infected_index(model)
    infected = set(model.infected)
    y_free = _disease_free_state(model, r) if state is None else state
    G = model.n_groups

    def parts(z):
        y = y_free.at[idx].set(z)
        rates = model._member_rates(t, y, r)
        F = {c: 0.0 for c in model.infected}
        V = {c: 0.0 for c in model.infected}
        for f, q in zip(model.flows, rates):
            if f.infection and f.target in infected and f.source not in infected:
                F[f.target] = F[f.target] + q
                continue
            if f.source in infected:
                V[f.source] = V[f.source] + q
            if f.target in infected:
                V[f.target] = V[f.target] - q
        shape = () if model.groups is None else (G,)
        stack = lambda d: jnp.concatenate(  # noqa: E731
            [jnp.reshape(jnp.broadcast_to(d[c], shape), (-1,)) for c in model.infected])
        return stack(F), stack(V)

    z0 = y_free[idx]
    F, V = jax.jacfwd(parts)(z0)
    return F, V


def _leading_eigenvalue(J: Array) -> Array:
    """Largest real part of the eigenvalues of a small Metzler matrix.

    For a non-negative matrix (a next-generation matrix) this is its spectral radius, the
    Perron root. Closed form up to 2 x 2 (differentiable everywhere, any backend).
    """
    k = J.shape[-1]
    if k == 1:
        return J[0, 0]
    if k == 2:
        tr, det = J[0, 0] + J[1, 1], J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]
        # Real for Metzler matrices: tr^2 - 4 det = (a - d)^2 + 4 b c >= 0.
        return 0.5 * (tr + jnp.sqrt(jnp.maximum(tr**2 - 4 * det, 0.0)))
    return jnp.max(jnp.real(jnp.linalg.eigvals(J)))


def _r0_member(model: Model, r: Mapping[str, Array], t: Any = 0.0) -> Array:
    """Spectral radius of :math:`K = F V^{-1}` for one member."""
    F, V = next_generation_matrices(model, r, t)
    K = F @ jnp.linalg.inv(V) if F.shape[0] > 1 else F / V
    return _leading_eigenvalue(K)


def _growth_rate_member(model, r, y0):
    """Leading eigenvalue of the infected subsystem linearised at y0 (one member)."""
    idx = jnp.asarray(_infected_index(model))

    def infected_field(z):
        y = y0.at[idx].set(z)
        dy, _ = model._derivative(0.0, y, r)
        return jnp.concatenate([jnp.reshape(b, (-1,)) for b in dy])[idx]

    J = jax.jacfwd(infected_field)(jnp.zeros(idx.shape[0], y0.dtype))
    return _leading_eigenvalue(J)
