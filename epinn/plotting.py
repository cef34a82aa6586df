"""Figures. Each function draws what it is given and returns a matplotlib ``Figure``.

The functions build figures with :class:`matplotlib.figure.Figure` directly (no
``pyplot``), so they never need a display, never touch global figure state, and work under
any backend; save with ``fig.savefig(path)``. They compute nothing beyond what they draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "plot_decision_regions",
    "plot_epidemic_fits",
    "plot_learning_curves",
    "plot_parameter_intervals",
    "plot_predictions",
    "plot_time_varying_rate",
]


def _history_dict(history: Any) -> dict[str, Any]:
    if hasattr(history, "to_dict"):
        return history.to_dict()
    if isinstance(history, Mapping):
        return dict(history)
    raise TypeError(
        f"`history` must be an epinn History or its to_dict(); got {type(history).__name__}."
    )


def _single_axes(ax: Axes | None, figsize=(4.2, 3.8)) -> tuple[Figure, Axes]:
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.subplots()
    if not isinstance(ax, Axes):
        raise ValueError(f"`ax` must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax.get_figure(), ax


def _axes_for(ax: Axes | Sequence[Axes] | None, n_panels: int) -> tuple[Figure, list[Axes]]:
    if ax is None:
        fig = Figure(figsize=(4.5 * n_panels, 3.4), layout="constrained")
        return fig, list(np.atleast_1d(fig.subplots(1, n_panels)))
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
    if len(axes) != n_panels or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(
            f"`ax` must be {n_panels} matplotlib Axes (loss, then one per metric); "
            f"got {len(axes)}."
        )
    return axes[0].get_figure(), axes


def plot_learning_curves(
    history: Any,
    *,
    metrics: Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    log_loss: bool = False,
) -> Figure:
    """Training and validation loss (and metrics) per epoch, the best epoch marked.

    One panel for the loss and one per metric; each shows the training curve and, when
    recorded, the validation curve (``"val_<name>"``). A dotted vertical line marks
    ``history.best_epoch``, and a dot its monitored value.

    Args:
        history: an :class:`epinn.History` or its ``to_dict()``.
        metrics: metric names to draw beside the loss (training names such as ``"mae"``;
            their ``"val_"`` versions come along). ``None`` draws every recorded metric,
            ``()`` only the loss.
        ax: ``1 + len(metrics)`` Axes to draw into (a single Axes for the loss alone);
            ``None`` makes a new figure.
        log_loss: logarithmic y-axis for the loss panel.

    Returns:
        The figure.

    Raises:
        TypeError: ``history`` is neither a History nor a dict.
        ValueError: an unknown metric name, an empty history, or the wrong number of Axes.

    Examples:
        >>> from epinn import History
        >>> h = History(train_loss=[1.0, 0.5, 0.4], val_loss=[1.1, 0.6, 0.7], best_epoch=2,
        ...             monitor="val_loss")
        >>> fig = plot_learning_curves(h)
        >>> [a.get_title() for a in fig.axes]
        ['loss']
    """
    h = _history_dict(history)
    train, val = list(h.get("train_loss", [])), list(h.get("val_loss", []))
    if not train:
        raise ValueError("`history` has no epochs to plot.")
    recorded = h.get("metrics", {}) or {}
    base = [k for k in recorded if not k.startswith("val_") and k != "penalty"]
    base += [k[4:] for k in recorded if k.startswith("val_") and k[4:] not in recorded]
    if metrics is None:
        metrics = base
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in recorded and "val_" + m not in recorded]
        if unknown:
            raise ValueError(f"`metrics` {unknown} not in the history; recorded: {base}.")
    fig, axes = _axes_for(ax, 1 + len(metrics))

    best = h.get("best_epoch")
    monitor = h.get("monitor") or ("val_loss" if val else "loss")
    panels = [("loss", train, val)] + [
        (m, recorded.get(m, []), recorded.get("val_" + m, [])) for m in metrics
    ]
    for a, (name, tr, va) in zip(axes, panels):
        if len(tr):
            a.plot(np.arange(1, len(tr) + 1), tr, label="train", color="C0")
        if len(va):
            a.plot(np.arange(1, len(va) + 1), va, label="validation", color="C1")
        if best:
            a.axvline(best, color="0.4", linestyle=":", linewidth=1,
                      label=f"best epoch ({best})")
            series = {name: tr, "val_" + name: va}
            if name == "loss":
                series = {"loss": tr, "train_loss": tr, "val_loss": va}
            marked = series.get(monitor)
            if marked is not None and len(marked) >= best:
                a.plot([best], [marked[best - 1]], "o", color="k", markersize=4)
        a.set_title(name)
        a.set_xlabel("epoch")
        a.legend(frameon=False, fontsize="small")
    if log_loss:
        axes[0].set_yscale("log")
    return fig


def plot_predictions(
    y_true: Any, y_pred: Any, *, ax: Axes | None = None, label: str = "test"
) -> Figure:
    """Predicted against true values (a parity plot), with the line :math:`\\hat y = y`.

    Args:
        y_true: true values, any shape (flattened).
        y_pred: predictions, same number of elements.
        ax: an Axes to draw into, or ``None`` for a new figure.
        label: legend label of the points.

    Returns:
        The figure.

    Raises:
        ValueError: ``y_true`` and ``y_pred`` differ in size or are empty.

    Examples:
        >>> fig = plot_predictions([0.0, 1.0, 2.0], [0.1, 0.9, 2.2])
        >>> fig.axes[0].get_xlabel()
        'true'
    """
    t = np.ravel(np.asarray(y_true, dtype=float))
    p = np.ravel(np.asarray(y_pred, dtype=float))
    if t.size == 0 or t.size != p.size:
        raise ValueError(
            f"`y_true` and `y_pred` must be non-empty and equal in size; got {t.size}, {p.size}."
        )
    fig, ax = _single_axes(ax)
    ax.scatter(t, p, s=8, alpha=0.6, label=label)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="k", linewidth=1, label="prediction = truth")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.legend(frameon=False, fontsize="small")
    return fig


def plot_decision_regions(
    grid_x: Any,
    grid_y: Any,
    grid_labels: Any,
    x: Any,
    labels: Any,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Class regions of a 2-D classifier with labelled points on top.

    Args:
        grid_x: ``(ny, nx)`` first coordinates of a mesh (as from ``np.meshgrid``).
        grid_y: ``(ny, nx)`` second coordinates.
        grid_labels: ``(ny, nx)`` integer class predicted at each mesh point.
        x: ``(n, 2)`` points to show.
        labels: ``(n,)`` integer classes of the points (their true labels).
        ax: an Axes to draw into, or ``None`` for a new figure.

    Returns:
        The figure.

    Raises:
        ValueError: inconsistent shapes.

    Examples:
        >>> import numpy as np
        >>> gx, gy = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
        >>> fig = plot_decision_regions(gx, gy, (gx > 0).astype(int),
        ...                             np.array([[0.5, 0.0]]), np.array([1]))
        >>> len(fig.axes)
        1
    """
    gx, gy, gl = (np.asarray(a) for a in (grid_x, grid_y, grid_labels))
    pts, lab = np.asarray(x, dtype=float), np.ravel(np.asarray(labels))
    if gx.ndim != 2 or gx.shape != gy.shape or gx.shape != gl.shape:
        raise ValueError(
            f"`grid_x`, `grid_y`, `grid_labels` must be 2-D of one shape; got {gx.shape}, "
            f"{gy.shape}, {gl.shape}."
        )
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] != lab.shape[0]:
        raise ValueError(
            f"`x` must be (n, 2) with n `labels`; got {pts.shape} and {lab.shape}."
        )
    n_classes = int(max(gl.max(), lab.max() if lab.size else 0)) + 1
    levels = np.arange(n_classes + 1) - 0.5
    fig, ax = _single_axes(ax)
    ax.contourf(gx, gy, gl, levels=levels, cmap="tab10", vmin=-0.5, vmax=9.5, alpha=0.3)
    for c in range(n_classes):
        sel = lab == c
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=10, color=f"C{c}", edgecolor="k",
                       linewidth=0.3, label=f"class {c}")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(frameon=False, fontsize="small", loc="upper right")
    return fig


def plot_epidemic_fits(
    t: Any,
    counts: Any,
    curves: Mapping[str, tuple[Any, Any]],
    *,
    bands: Mapping[str, tuple[Any, Any, Any]] | None = None,
    title: str | None = None,
    ylabel: str = "count",
    xlabel: str = "day",
    ax: Axes | None = None,
) -> Figure:
    """Observed counts as points and each method's fitted curve as a line.

    Args:
        t, counts: the observations.
        curves: ``{label: (t, y)}`` fitted curves.
        bands: optional ``{label: (t, lo, hi)}`` shaded intervals (e.g. posterior bands).
        title, ylabel, xlabel: labels.
        ax: an Axes to draw into (default: a new figure).

    Returns:
        The figure.
    """
    if not isinstance(curves, Mapping):
        raise TypeError(f"`curves` must be a mapping label -> (t, y); got {type(curves)}.")
    fig, ax = _single_axes(ax, figsize=(6.4, 4.2))
    for label, (tb, lo, hi) in (bands or {}).items():
        ax.fill_between(np.asarray(tb), np.asarray(lo), np.asarray(hi), alpha=0.25, label=label)
    for label, (tc, yc) in curves.items():
        ax.plot(np.asarray(tc), np.asarray(yc), lw=1.6, label=label)
    ax.plot(np.asarray(t), np.asarray(counts), "ko", ms=4, label="data", zorder=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_parameter_intervals(
    methods: Mapping[str, Mapping[str, Any]],
    name: str,
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """One parameter's estimate per method: a point, with its interval where given.

    Args:
        methods: ``{method: {name: value or {"mean", "lo", "hi"}}}`` (as in the
            boarding-school experiment's ``summary.json``). Methods without ``name`` are
            skipped.
        name: the parameter, e.g. ``"R0"``.
        title: figure title.
        ax: an Axes to draw into (default: a new figure).

    Returns:
        The figure.
    """
    rows = [(m, v[name]) for m, v in methods.items() if name in v]
    if not rows:
        raise ValueError(f"No method in `methods` reports {name!r}.")
    fig, ax = _single_axes(ax, figsize=(6.0, 0.5 * len(rows) + 1.4))
    for i, (label, v) in enumerate(rows):
        if isinstance(v, Mapping):
            mean, lo, hi = v["mean"], v["lo"], v["hi"]
            ax.errorbar(mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o", capsize=4)
        else:
            ax.plot(float(v), i, "o")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(name)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_time_varying_rate(
    rates: Mapping[str, tuple[Any, ...]],
    *,
    ylabel: str = "rate",
    xlabel: str = "time",
    ax: Axes | None = None,
) -> Figure:
    """Time-varying rates such as a learned :math:`\\beta(t)`, with optional bands.

    Args:
        rates: ``{label: (t, value)}`` or ``{label: (t, value, lo, hi)}``.
        ylabel, xlabel: axis labels.
        ax: an Axes to draw into (default: a new figure).

    Returns:
        The figure.
    """
    fig, ax = _single_axes(ax, figsize=(6.0, 3.8))
    for label, tup in rates.items():
        if len(tup) not in (2, 4):
            raise ValueError(f"`rates[{label!r}]` must be (t, value) or (t, value, lo, hi).")
        t, v = np.asarray(tup[0]), np.asarray(tup[1])
        (line,) = ax.plot(t, v, label=label)
        if len(tup) == 4:
            ax.fill_between(t, np.asarray(tup[2]), np.asarray(tup[3]), alpha=0.25,
                            color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig
