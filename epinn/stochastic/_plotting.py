"""Quantile bands of a stochastic ensemble beside the deterministic curve (private module;
the function is public). Draws what it is given and computes no simulation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._summaries import _check_sim
from ._trajectory import StochasticTrajectory


def plot_ensemble(
    ax: Any,
    sim: StochasticTrajectory,
    compartment: str | None = None,
    *,
    deterministic: Any = None,
    quantiles: Sequence[float] = (0.05, 0.25),
    color: str = "C0",
    label: str = "stochastic",
) -> Any:
    """Draw the ensemble's median and quantile bands of one compartment on ``ax``.

    Bands between the quantiles ``q`` and ``1 - q`` for each ``q`` in ``quantiles``
    (summed over groups), the median as a line, and the deterministic curve (an
    :class:`epinn.Trajectory` from :func:`epinn.solve`) dashed beside it.

    Args:
        ax: a matplotlib ``Axes``.
        sim: the ensemble.
        compartment: default the first infected compartment.
        deterministic: optional deterministic trajectory of the same model.
        quantiles: lower quantiles of the bands, each below 0.5.
        color: colour of the bands and median.
        label: legend label of the median.

    Returns:
        ``ax``.
    """
    _check_sim(sim, summaries=False)
    name = compartment or (sim.infected[0] if sim.infected else sim.compartments[0])
    if name not in sim.compartments:
        raise ValueError(f"`compartment` must be one of {sim.compartments}; got {name!r}.")
    if any(not 0 < q < 0.5 for q in quantiles):
        raise ValueError(f"`quantiles` must lie in (0, 0.5); got {quantiles!r}.")
    x = np.asarray(sim[name], np.float64)
    x = x.reshape(*x.shape[:2], -1).sum(-1)
    ts = np.asarray(sim.ts)
    for i, q in enumerate(sorted(quantiles)):
        lo, hi = np.quantile(x, [q, 1 - q], axis=0)
        ax.fill_between(ts, lo, hi, color=color, alpha=0.15 + 0.15 * i, linewidth=0,
                        label=f"{100 * q:g}-{100 * (1 - q):g}%")
    ax.plot(ts, np.median(x, axis=0), color=color, label=f"{label} median")
    if deterministic is not None:
        d = np.asarray(deterministic[name], np.float64)
        d = d.reshape(d.shape[0], -1).sum(-1)
        ax.plot(np.asarray(deterministic.ts), d, "k--", label="deterministic")
    ax.set_xlabel("t")
    ax.set_ylabel(name)
    return ax
