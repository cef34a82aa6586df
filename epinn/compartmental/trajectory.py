"""The result of an integration: states at the saved times and what can be read off them."""

from __future__ import annotations


import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._validate import _closest

__all__ = ["Trajectory"]

# --------------------------------------------------------------------------------------
# Trajectory
# --------------------------------------------------------------------------------------


class Trajectory(eqx.Module):
    """Solution of :func:`solve` / :func:`solve_ensemble` (a pytree).

    Attributes:
        ts: saved times, shape ``(T,)``.
        ys: compartments in counts, ``(T, C)`` or ``(members, T, C)``.
        cumulative_infections: infections since ``ts[0]``, ``(T,)`` or ``(members, T)``
            (zero at ``ts[0]``); :func:`incidence` is its difference. Constructed with
            ``None``, it is derived from ``ys`` when read, as :math:`S(t_0) - S(t)`:
            :func:`solve_ensemble` does that for the models in which S falls by infection
            only (SIR, SIRD, SEIR, SEIRD), so that an ensemble's output holds the
            compartments alone (a quarter less memory and layout work for SIR).
        success: whether the solve succeeded, ``()`` or ``(members,)``. With
            ``throw=False`` a failed member has ``success=False`` and its values from the
            failure on are ``inf`` (or NaN); mask with ``success`` when fitting.
        num_steps: accepted+rejected solver steps, ``()`` or ``(members,)`` (members of
            one stacked chunk share a count).
        compartments: names of the columns of ``ys`` (static).

    ``traj["I"]`` returns ``ys[..., index of "I"]``.
    """

    ts: Float[Array, " T"]
    ys: Float[Array, "*members T C"]
    _cumulative: Float[Array, "*members T"] | None
    success: Bool[Array, "*members"]
    num_steps: Int[Array, "*members"]
    compartments: tuple[str, ...] = eqx.field(static=True)
    groups: tuple[str, ...] | None = eqx.field(static=True)
    infections_from: str = eqx.field(static=True)
    flows: tuple[str, ...] = eqx.field(static=True)
    count_rules: tuple[tuple[str, str, str], ...] = eqx.field(static=True)
    counted: tuple[str, ...] = eqx.field(static=True)
    _counts: Float[Array, "*members T k"] | None

    def __init__(
        self,
        ts: ArrayLike,
        ys: ArrayLike,
        cumulative_infections: ArrayLike | None,
        success: ArrayLike,
        num_steps: ArrayLike,
        compartments: tuple[str, ...],
        *,
        groups: tuple[str, ...] | None = None,
        infections_from: str = "S",
        flows: tuple[str, ...] = (),
        count_rules: tuple[tuple[str, str, str], ...] = (),
        counts: tuple[tuple[str, ...], ArrayLike | None] = ((), None),
    ):
        compartments = tuple(compartments)
        if cumulative_infections is None and infections_from not in compartments:
            raise ValueError(
                f"`cumulative_infections=None` derives them as {infections_from}(t0) - "
                f"{infections_from}(t), which needs an {infections_from!r} compartment; got "
                f"compartments {compartments}."
            )
        self.ts, self.ys, self.success, self.num_steps = ts, ys, success, num_steps
        self._cumulative = cumulative_infections
        self.compartments = compartments
        self.groups = None if groups is None else tuple(groups)
        self.infections_from = infections_from
        self.flows, self.count_rules = tuple(flows), tuple(count_rules)
        self.counted, self._counts = tuple(counts[0]), counts[1]

    def flow_count(self, name: str) -> Float[Array, "*members T"]:
        """Cumulative count of flow ``name`` since ``ts[0]`` (summed over groups).

        Read off a compartment where the model's definition allows it
        (:meth:`epinn.Model.count_rule`: deaths into ``D``), else integrated when
        :func:`solve` was asked for it (``counts=(name,)``).
        """
        if name in self.counted:
            return self._counts[..., self.counted.index(name)]
        for flow_name, kind, c in self.count_rules:
            if flow_name == name:
                y = self[c]
                if self.groups is not None:
                    y = jnp.sum(y, axis=-2)
                return y - y[..., :1] if kind == "target" else y[..., :1] - y
        if name not in self.flows:
            raise KeyError(f"Unknown flow {name!r}; the flows are {self.flows}."
                           + _closest(name, self.flows))
        raise ValueError(
            f"The count of flow {name!r} does not follow from the compartments (other flows "
            f"share them); solve with counts=({name!r},) to integrate it."
        )

    @property
    def cumulative_infections(self) -> Float[Array, "*members T"]:
        """Infections since ``ts[0]``: stored, or :math:`S(t_0) - S(t)` from ``ys``."""
        if self._cumulative is not None:
            return self._cumulative
        s = self[self.infections_from]
        if self.groups is not None:
            s = jnp.sum(s, axis=-2)
        return s[..., :1] - s

    def __getitem__(self, name: str) -> Float[Array, "*members T"]:
        """One compartment over time: ``(*members, T)``, or ``(*members, G, T)`` by group."""
        if name not in self.compartments:
            raise KeyError(
                f"Unknown compartment {name!r}; valid names are {self.compartments}."
            )
        j = self.compartments.index(name)
        if self.groups is None:
            return self.ys[..., j]
        return jnp.swapaxes(self.ys[..., j, :], -1, -2)

    @property
    def is_ensemble(self) -> bool:
        """True when ``ys`` has a leading members axis."""
        return self.ys.ndim == (3 if self.groups is None else 4)


