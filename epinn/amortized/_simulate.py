"""Simulated training sets: curves drawn from the prior, simulated and observed (private).

:func:`simulate_training_set` draws parameters from a :class:`~epinn.amortized.Prior`,
simulates every member (the model's ODE through
:func:`~epinn.compartmental.solve_ensemble`, or stochastic epidemics through
:func:`epinn.stochastic.simulate`) in blocks of fixed size and draws the observation noise;
the result is a :class:`SimulatedSet`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike

from .. import stochastic as _stochastic
from .._checks import _check_int, _check_key
from ..compartmental import R0 as _R0
from ..compartmental import CompartmentalModel, solve_ensemble
from ..observation import NegativeBinomial, Poisson
from ..sharding import resolve_mesh, shard_map_batch
from ._prior import Prior, _draw
from ._setup import _check_simulation, _Spec

#: The event cap of the exact stochastic simulator per member.
_MAX_EVENTS = 1_000_000


class SimulatedSet(NamedTuple):
    """Simulated training data: observed curves and the parameters that made them.

    Attributes:
        curves: observed counts, ``(n, T)``.
        params: ``{name: (n,)}``: the model's drawn and derived parameters (``beta``,
            ``gamma`` for SIR), ``R0``, ``I0``, ``reporting``, ``noise`` and ``N``.
        mean: the noiseless observation mean (:math:`\\rho I` or :math:`\\rho\\times`
            incidence), ``(n, T)``.
    """

    curves: Array
    params: dict[str, Array]
    mean: Array

    def log_params(self, names: Sequence[str] = ("beta", "gamma", "R0")) -> Array:
        """``(n, len(names))`` array of the log of the named parameters."""
        return jnp.stack([jnp.log(self.params[k]) for k in names], axis=-1)


def _add_noise(key, mean, nu, noise):
    r"""Counts around ``mean`` with :mod:`epinn.observation`'s noise models.

    ``"negbin"``: :class:`~epinn.observation.NegativeBinomial` with dispersion
    :math:`\phi = 1/\nu^2` per member (coefficient of variation :math:`\nu` at large
    counts); ``"poisson"``: :class:`~epinn.observation.Poisson`; ``"none"``: the mean.
    """
    if noise == "none":
        return mean
    if noise == "poisson":
        model = Poisson()
    else:
        model = NegativeBinomial(phi=1.0 / jnp.square(nu)[:, None])
    return model.sample(key, jnp.maximum(mean, 0.0)).astype(mean.dtype)


def _beta_per_R0(model: CompartmentalModel, rates: Mapping[str, Any], N: Array) -> Array:
    """:math:`\\beta / R_0`, the inverse of :math:`R_0` at :math:`\\beta = 1`."""
    one = jnp.ones_like(N)
    return 1.0 / _R0(model, {**rates, "beta": one, "N": N})


def simulate_training_set(
    key: jax.Array,
    n: int,
    ts: ArrayLike,
    *,
    prior: Prior,
    model: CompartmentalModel | None = None,
    fixed: Mapping[str, float] | None = None,
    t0: float | None = None,
    observe: str = "prevalence",
    noise: str = "negbin",
    block_size: int = 2048,
    mesh: Mesh | None | bool = None,
    simulator: str = "ode",
    dt: float | None = None,
    seed_compartment: str | None = None,
) -> SimulatedSet:
    r"""Simulate ``n`` observed epidemic curves with parameters drawn from ``prior``.

    See :mod:`epinn.amortized` for the generative model. Every member draws the model's
    parameters from ``prior`` (``beta`` from :math:`R_0` when the prior draws
    :math:`R_0`), takes ``fixed`` for the others, and starts at ``t0`` with ``I0`` people
    in the seed compartment and ``N - I0`` in the compartment infections come from.

    ``simulator`` chooses the epidemic: ``"ode"`` (default) integrates the model's ODE,
    the deterministic mean; ``"exact"``, ``"tau_leap"`` and ``"chain_binomial"`` run
    :func:`epinn.stochastic.simulate` on the same definition (the stochastic epidemic of
    the same flows, each flow an event), so the curves carry the demographic noise of
    small outbreaks. Stochastic members start from whole numbers: ``N`` and ``I0`` are
    rounded (``I0`` to at least 1) and the rounded values are returned in ``params``.
    Members whose outbreak fizzles out (a few cases, then none) are **kept**: they are
    what a small population produces, and an estimator trained on them learns that such
    curves say little about the parameters. Observation noise (``noise``) is drawn on top
    of the stochastic counts as on top of the ODE curve.

    The members are made in blocks of ``block_size``: block ``b`` draws its parameters,
    its epidemics and its noise from ``jax.random.fold_in(key, b)`` and simulates all its
    members in one :func:`~epinn.compartmental.solve_ensemble` (or
    :func:`~epinn.stochastic.simulate`) call, inside one jit-compiled function; the
    surplus members of the last block are dropped. So any ``n`` reuses one compilation,
    and the first ``n`` members do not depend on how many more are drawn. The blocks'
    ODE state shares one step size (the stacked method of
    :func:`~epinn.compartmental.solve_ensemble`, error controlled for every member).

    Args:
        key: PRNG key; the same key gives the same set.
        n: number of curves.
        ts: observation times (strictly increasing).
        prior: the :class:`Prior`.
        model: any unstratified :class:`~epinn.Model` with scalar parameters whose
            infections leave one compartment; default ``SIR()``.
        fixed: values of the model's parameters that the prior does not draw (e.g.
            ``{"sigma": 0.5}`` for SEIR).
        t0: time of the initial state; default one grid step before ``ts[0]``.
        observe: ``"prevalence"`` (:math:`\rho I(t_i)`) or ``"incidence"`` (:math:`\rho
            \times` new infections in :math:`(t_{i-1}, t_i]`, with :math:`t_{-1} = t_0`).
        noise: ``"negbin"``, ``"poisson"`` or ``"none"``.
        block_size: members per solver call.
        mesh: devices to spread the blocks over (:mod:`epinn.sharding`): a
            ``jax.sharding.Mesh``, ``None`` (default) for all devices, ``False`` for the
            default device only. With ``d`` devices, blocks ``r d, ..., r d + d - 1`` run
            at once, one per device; the set does not depend on ``d``.
        simulator: ``"ode"``, ``"exact"``, ``"tau_leap"`` or ``"chain_binomial"``.
        dt: the step of ``"tau_leap"`` and ``"chain_binomial"`` (default a tenth of the
            shortest interval of ``[t0, *ts]``); must be ``None`` otherwise.
        seed_compartment: the compartment of the ``I0`` initially infected (default
            ``"I"``, or the target of the model's first infection flow).

    Returns:
        :class:`SimulatedSet` ``(curves (n, T), params, mean (n, T))``; ``params`` holds
        the drawn and derived parameters, ``R0`` (drawn, or from the next-generation
        matrix), ``I0``, ``N``, ``reporting`` and ``noise``.

    Raises:
        ValueError: bad ``n``, ``ts``, ``t0``, ``observe``, ``noise``, ``simulator``
            (the closest valid name is suggested), ``dt``, ``fixed`` or ``block_size``; a
            model parameter with neither a prior range nor a fixed value, or a range or
            fixed value for a name the model does not declare (the closest is
            suggested); every check runs before anything compiles.
        TypeError: a ``key`` that is not one ``jax.random`` key, ``prior`` not a
            :class:`Prior`, or an argument of the wrong kind (``n=2.0``, ``ts`` as
            strings, ``mesh`` not a mesh).

    Warns:
        UserWarning: stochastic members stopped at the event cap of the exact simulator.

    Examples:
        >>> import jax.random as jr, numpy as np
        >>> sim = simulate_training_set(jr.PRNGKey(0), 3, np.arange(1.0, 15.0),
        ...                             prior=Prior(N=763, I0=1))
        >>> sim.curves.shape, sorted(sim.params)
        ((3, 14), ['I0', 'N', 'R0', 'beta', 'gamma', 'noise', 'reporting'])

        ``simulator="exact"`` draws the same parameters (same key) and simulates stochastic
        epidemics of them instead (not run here: it compiles the event loop).

        >>> st = simulate_training_set(jr.PRNGKey(0), 3, np.arange(1.0, 15.0),
        ...                            prior=Prior(N=763, I0=1),
        ...                            simulator="exact")  # doctest: +SKIP
    """
    key = _check_key(key)
    n = _check_int(n, "n", 1)
    block_size = _check_int(block_size, "block_size", 1)
    model, spec, ts_np, t0, simulator, dt = _check_simulation(
        ts, prior, model, fixed, t0, observe, noise, simulator, dt, seed_compartment)
    mesh = resolve_mesh(mesh)
    grid = jnp.asarray(np.concatenate([[t0], ts_np]) if t0 < ts_np[0] else ts_np)
    sim = _SimulateBlocks(model, spec, observe, noise, block_size, ts_np.size, simulator, dt)
    d = 1 if mesh is None else mesh.size
    n_blocks = -(-n // block_size)
    # One round = one block per device: the same compiled call whatever n is.
    rounds = [
        shard_map_batch(sim, jnp.stack([jr.fold_in(key, b) for b in range(r, r + d)]),
                        mesh=mesh, shared=(prior._ranges(), grid))
        for r in range(0, n_blocks, d)
    ]
    curves, params, mean, capped = jax.tree_util.tree_map(
        lambda *a: jnp.concatenate(a, axis=0).reshape(-1, *a[0].shape[2:])[:n], *rounds
    )
    n_capped = int(np.sum(np.asarray(capped)))
    if n_capped:
        warnings.warn(
            f"{n_capped} of {n} stochastic members stopped at the exact simulator's event "
            f"cap ({_MAX_EVENTS} events); their curves are frozen from then on.",
            UserWarning, stacklevel=2,
        )
    return SimulatedSet(curves=curves, params=params, mean=mean)


def _check_finite_simulation(sim: SimulatedSet, prior: Prior) -> None:
    """A training set with NaN or infinite curves (a failed solve) is refused by name."""
    bad = np.flatnonzero(~np.all(np.isfinite(np.asarray(sim.curves)), axis=-1))
    if bad.size:
        i = int(bad[0])
        p = {k: float(v[i]) for k, v in sim.params.items()}
        raise ValueError(
            f"{bad.size} simulated training curve(s) are not finite (e.g. member {i} with "
            f"{p}); the ODE solver failed inside `prior` {prior.to_dict()}: narrow it."
        )


class _SimulateBlocks(eqx.Module):
    """Blocks of ``size`` members, one per key: prior draws, simulation, noise.

    A module with static settings, so one compilation serves every call with them.
    """

    model: CompartmentalModel
    spec: _Spec = eqx.field(static=True)
    observe: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    size: int = eqx.field(static=True)
    T: int = eqx.field(static=True)
    simulator: str = eqx.field(static=True, default="ode")
    dt: float | None = eqx.field(static=True, default=None)

    def __call__(self, keys, shared):
        ranges, grid = shared
        return jax.lax.map(lambda k: _simulate_block(k, ranges, grid, self), keys)


def _member_parameters(p: dict, model: CompartmentalModel, spec: _Spec) -> dict[str, Any]:
    """The model's parameters of every member (``N`` included); adds ``beta`` (from R0)
    or ``R0`` (from the next-generation matrix) to the draws ``p``."""
    rates: dict[str, Any] = {k: p[k] for k in spec.drawn}
    rates.update(dict(spec.fixed))
    if spec.derived:
        p[spec.derived] = p["R0"] * _beta_per_R0(model, rates, p["N"])
        rates[spec.derived] = p[spec.derived]
    else:
        p["R0"] = _R0(model, {**rates, "N": p["N"]})
    return {**rates, "N": p["N"]}


def _simulate_block(key, ranges, grid, s: _SimulateBlocks):
    """One block of ``s.size`` members: prior draws, one ensemble simulation, noise."""
    k_prior, k_noise = jr.split(key)
    model, spec, size = s.model, s.spec, s.size
    p = _draw(k_prior, ranges, size)
    stochastic = s.simulator != "ode"
    if stochastic:  # whole people
        p["N"] = jnp.round(p["N"])
        p["I0"] = jnp.clip(jnp.round(p["I0"]), 1.0, p["N"] - 1.0)
    rates = _member_parameters(p, model, spec)
    y0 = jnp.zeros((size, len(model.compartments)), grid.dtype)
    y0 = y0.at[:, model.compartments.index(spec.seed)].set(p["I0"])
    y0 = y0.at[:, model.compartments.index(spec.susceptible)].set(p["N"] - p["I0"])
    if stochastic:
        true, capped = _stochastic_curves(jr.fold_in(key, 2), model, spec, rates, y0, grid, s)
    else:
        traj = solve_ensemble(model, rates, y0, grid, chunk_size=size, sort_members=False,
                              mesh=False)
        if s.observe == "prevalence":
            true = traj[spec.observed]
        else:
            true = jnp.diff(traj.cumulative_infections, axis=-1, prepend=0.0)
        capped = jnp.zeros((size,), bool)
    mean = p["reporting"][:, None] * true[:, -s.T:]
    # No more people can be observed than there are: NB draws above N are capped.
    counts = jnp.minimum(_add_noise(k_noise, mean, p["noise"], s.noise), p["N"][:, None])
    return counts, p, mean, capped


def _stochastic_curves(key, model, spec, rates, y0, grid, s: _SimulateBlocks):
    """Prevalence or incidence of :func:`epinn.stochastic.simulate` runs, ``(size, T+1)``."""
    sim = _stochastic.simulate(
        model, rates, y0.astype(jnp.int32), grid, key=key, method=s.simulator, n=s.size,
        dt=s.dt, max_events=_MAX_EVENTS,
    )
    if s.observe == "prevalence":
        true = sim.ys[:, :, model.compartments.index(spec.observed)]
    else:
        infections = np.flatnonzero([f.infection for f in model.flows])
        cumulative = jnp.sum(sim.counts[:, :, infections], axis=-1)
        true = jnp.diff(cumulative, axis=-1, prepend=0)
    return true.astype(grid.dtype), sim.capped
