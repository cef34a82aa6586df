"""Metrics by name (:data:`METRICS`, :func:`get_metric`) and the resolution of the
``loss`` and ``metrics`` arguments of :func:`~epinn.training.fit`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import _asarray, _did_you_mean, _unknown_name
from ..losses import (
    LOSSES,
    binary_cross_entropy,
    categorical_cross_entropy,
    get_loss,
    mae,
    mse,
)


def rmse(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Root mean squared error :math:`\sqrt{\frac1n\sum_i (\hat y_i - y_i)^2}`.

    Examples:
        >>> print(round(float(rmse(jnp.array([3.0, 0.0]), jnp.array([-1.0, 0.0]))), 5))
        2.82843
    """
    return jnp.sqrt(mse(predictions, targets))


def r2_score(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Coefficient of determination, averaged over output columns.

    .. math::

        R^2_k = 1 - \frac{\sum_i (y_{ik} - \hat y_{ik})^2}{\sum_i (y_{ik} - \bar y_k)^2}

    over the sample axis 0, then the mean over outputs :math:`k` (scikit-learn's
    ``multioutput="uniform_average"``). A constant target column scores 1 if predicted
    exactly and 0 otherwise (scikit-learn's ``force_finite=True``).

    Examples:
        >>> y = jnp.array([1.0, 2.0, 3.0])
        >>> print(float(r2_score(jnp.array([1.0, 2.0, 4.0]), y)))
        0.5
    """
    predictions, targets = _asarray(predictions, "predictions"), _asarray(targets, "targets")
    if predictions.shape != targets.shape:
        raise ValueError(
            f"`targets` must have the shape of `predictions` {predictions.shape}; "
            f"got {targets.shape}."
        )
    p = predictions.reshape(predictions.shape[0], -1)
    y = targets.reshape(targets.shape[0], -1).astype(p.dtype)
    ss_res = jnp.sum((y - p) ** 2, axis=0)
    ss_tot = jnp.sum((y - jnp.mean(y, axis=0)) ** 2, axis=0)
    safe_tot = jnp.where(ss_tot > 0, ss_tot, 1.0)
    r2 = jnp.where(ss_tot > 0, 1.0 - ss_res / safe_tot, jnp.where(ss_res == 0, 1.0, 0.0))
    return jnp.mean(r2)


def accuracy(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Fraction of correctly classified samples.

    * Binary: ``predictions`` of shape ``(n,)`` or ``(n, 1)`` are probabilities; the
      predicted class is :math:`\hat p > 0.5`, the true class :math:`y > 0.5`.
    * Multiclass: ``predictions`` of shape ``(n, k)``, ``k > 1`` (probabilities or
      logits); the predicted class is the argmax. ``targets`` are one-hot ``(n, k)`` or
      integer labels ``(n,)`` / ``(n, 1)``.

    Examples:
        >>> p = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> print(round(float(accuracy(p, jnp.array([0, 1, 1]))), 4))
        0.6667
        >>> print(float(accuracy(jnp.array([0.7, 0.2]), jnp.array([1.0, 0.0]))))
        1.0
    """
    predictions, targets = _asarray(predictions, "predictions"), _asarray(targets, "targets")
    if predictions.ndim == 0:
        raise ValueError("`predictions` must have a sample axis; got a scalar.")
    if predictions.ndim == 1 or predictions.shape[-1] == 1:
        pred_class = predictions.reshape(predictions.shape[0], -1)[:, 0] > 0.5
        true = targets.reshape(targets.shape[0], -1)
        if true.shape[1] != 1:
            raise ValueError(
                f"`targets` for binary predictions {predictions.shape} must have one column; "
                f"got shape {targets.shape}."
            )
        return jnp.mean(pred_class == (true[:, 0] > 0.5))
    pred_class = jnp.argmax(predictions, axis=-1)
    if targets.shape == predictions.shape:
        true_class = jnp.argmax(targets, axis=-1)
    elif targets.shape == predictions.shape[:-1] or targets.shape == (*predictions.shape[:-1], 1):
        true_class = targets.reshape(pred_class.shape)
    else:
        raise ValueError(
            f"`targets` must be one-hot {predictions.shape} or integer labels "
            f"{predictions.shape[:-1]}; got shape {targets.shape}."
        )
    return jnp.mean(pred_class == true_class)


METRICS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "mse": mse,
    "mae": mae,
    "rmse": rmse,
    "r2": r2_score,
    "accuracy": accuracy,
    "binary_cross_entropy": binary_cross_entropy,
    "bce": binary_cross_entropy,
    "categorical_cross_entropy": categorical_cross_entropy,
    "cce": categorical_cross_entropy,
}
"""Metric functions ``metric(predictions, targets) -> scalar`` by name."""

_HIGHER_IS_BETTER = {"accuracy", "r2"}


def get_metric(name_or_callable: str | Callable) -> tuple[str, Callable]:
    """Resolve a metric by name (from :data:`METRICS`) or take a callable.

    Args:
        name_or_callable: a metric name, or ``f(predictions, targets) -> scalar``.

    Returns:
        ``(name, fn)``; a callable is named by its ``__name__``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a string nor a callable.

    Examples:
        >>> get_metric("R2")[0]
        'r2'
    """
    if isinstance(name_or_callable, str):
        name = name_or_callable.lower()
        if name not in METRICS:
            raise ValueError(
                f"Unknown metric {name_or_callable!r} in `metrics`"
                f"{_did_you_mean(name, METRICS)}; valid names are {sorted(METRICS)} (or pass "
                "a callable)."
            )
        return name, METRICS[name]
    if callable(name_or_callable):
        return getattr(name_or_callable, "__name__", "metric"), name_or_callable
    raise TypeError(
        f"`metrics` entries must be names or callables; got {type(name_or_callable).__name__}."
    )


def _resolve_metrics(metrics: Sequence[str | Callable]) -> dict[str, Callable]:
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    out: dict[str, Callable] = {}
    for m in metrics:
        name, fn = get_metric(m)
        if name in out:
            raise ValueError(f"`metrics` contains {name!r} twice.")
        out[name] = fn
    return out


def _resolve_loss(loss: str | Callable) -> Callable:
    if isinstance(loss, str) and loss.lower() not in LOSSES:
        raise _unknown_name("loss", loss, LOSSES, "loss")
    if not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"`loss` must be a name or a callable; got {type(loss).__name__}.")
    return get_loss(loss)
