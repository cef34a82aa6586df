r"""Forecast errors per horizon step: MAE, RMSE and MAPE (:func:`forecast_errors`)."""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

from .._checks import _as_float_array


def _check_pred_target(predictions: ArrayLike, targets: ArrayLike):
    p = _as_float_array(predictions, "predictions")
    y = _as_float_array(targets, "targets")
    if p.shape != y.shape:
        raise ValueError(
            f"`predictions` and `targets` must have the same shape; got {p.shape} and "
            f"{y.shape}."
        )
    if p.ndim < 2:
        raise ValueError(
            f"`predictions` must be (windows, horizon[, ...]); got shape {p.shape}."
        )
    if p.shape[0] == 0:
        raise ValueError("`predictions` must hold at least one window.")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))):
        raise ValueError("`predictions` and `targets` must be finite.")
    return p, y


def forecast_errors(predictions: ArrayLike, targets: ArrayLike) -> dict[str, np.ndarray]:
    r"""MAE, RMSE and MAPE per horizon step.

    For windows :math:`n = 1..N` and horizon step :math:`k`,

    .. math::

        \text{MAE}_k = \frac1N \sum_n |e_{nk}|, \quad
        \text{RMSE}_k = \Big(\frac1N \sum_n e_{nk}^2\Big)^{1/2}, \quad
        \text{MAPE}_k = \frac{100}{|\mathcal{N}_k|} \sum_{n \in \mathcal{N}_k}
            \frac{|e_{nk}|}{|y_{nk}|},

    with :math:`e = \hat y - y` and :math:`\mathcal{N}_k = \{n : y_{nk} \ne 0\}` (MAPE is
    undefined for zero counts; it is NaN if every target of a step is 0). Trailing axes
    (several target series) are averaged like windows.

    Args:
        predictions: ``(windows, horizon[, ...])``.
        targets: the same shape.

    Returns:
        ``{"mae": (horizon,), "rmse": (horizon,), "mape": (horizon,)}`` as numpy float64.

    Raises:
        ValueError: shapes differ, fewer than 2 dimensions, no windows, or NaN/inf.

    Examples:
        >>> import numpy as np
        >>> err = forecast_errors(np.array([[1.0, 2.0], [3.0, 6.0]]),
        ...                       np.array([[2.0, 2.0], [3.0, 4.0]]))
        >>> err["mae"].tolist(), err["mape"].tolist()
        ([0.5, 1.0], [25.0, 25.0])
    """
    p, y = _check_pred_target(predictions, targets)
    e = np.moveaxis(p - y, 1, 0).reshape(p.shape[1], -1)
    yy = np.moveaxis(y, 1, 0).reshape(p.shape[1], -1)
    nz = yy != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.where(nz, np.abs(e) / np.where(nz, np.abs(yy), 1.0), 0.0)
        mape = 100.0 * ape.sum(axis=1) / nz.sum(axis=1)
    return {
        "mae": np.abs(e).mean(axis=1),
        "rmse": np.sqrt((e**2).mean(axis=1)),
        "mape": np.where(nz.any(axis=1), mape, np.nan),
    }
