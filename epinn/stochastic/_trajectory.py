"""The result of :func:`epinn.stochastic.simulate` (private module; the class is public)."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array


class StochasticTrajectory(eqx.Module):
    """An ensemble of stochastic simulations (a pytree), returned by :func:`simulate`.

    Attributes:
        ts: the save times ``(T,)``.
        ys: integer counts ``(M, T, C)`` (``(M, T, C, G)`` with groups), int32.
        counts: cumulative number of events of each flow since ``ts[0]``, ``(M, T, F)``
            (``(M, T, F, G)`` with groups), int32; the counts of flow ``f`` over
            :math:`(t_{k-1}, t_k]` are ``counts[:, k, f] - counts[:, k - 1, f]``.
        events: ``(M,)`` the number of events (people moved) per member.
        capped: ``(M,)`` whether a member stopped at ``max_events`` (its states from then
            on are frozen); always ``False`` for the fixed-step methods.
        steps: ``(M,)`` the simulation steps per member: events (exact), leaps (fixed
            steps, until the rates vanish), leaps plus exact events (adaptive tau-leaping).
        compartments: compartment names (static).
        flow_names: flow names (static).
        infection_flows: which flows are infections (static).
        infected: the infected compartments (static).
        method: the simulator used (static).
    """

    ts: Array
    ys: Array
    counts: Array
    events: Array
    capped: Array
    steps: Array
    compartments: tuple[str, ...] = eqx.field(static=True)
    flow_names: tuple[str, ...] = eqx.field(static=True)
    infection_flows: tuple[bool, ...] = eqx.field(static=True)
    infected: tuple[str, ...] = eqx.field(static=True)
    method: str = eqx.field(static=True)

    @property
    def n_members(self) -> int:
        """Number of simulated members ``M``."""
        return self.ys.shape[0]

    def __getitem__(self, name: str) -> Array:
        """Counts of one compartment, ``(M, T)`` (``(M, T, G)`` with groups)."""
        if name not in self.compartments:
            raise KeyError(f"No compartment {name!r}; the compartments are {self.compartments}.")
        return self.ys[:, :, self.compartments.index(name)]

    def flow_count(self, name: str) -> Array:
        """Cumulative events of flow ``name`` since ``ts[0]``, ``(M, T)`` (or ``(M, T, G)``)."""
        if name not in self.flow_names:
            raise KeyError(f"No flow {name!r}; the flows are {self.flow_names}.")
        return self.counts[:, :, self.flow_names.index(name)]
