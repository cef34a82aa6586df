r"""Forecast uncertainty: the pinball loss, seed ensembles, ensemble quantiles, coverage.

A quantile head trained with :func:`pinball_loss`, or an ensemble over seeds
(:class:`SeedEnsemble`, members vmapped in one module and trained in one :func:`epinn.fit`
with :func:`ensemble_loss`); :func:`interval_coverage` gives the empirical coverage of an
interval, e.g. the 80% interval between the 10% and 90% quantiles.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _as_float_array, _asarray, _is_concrete, _unknown_name
from ..losses import LOSSES, get_loss


def _check_levels(levels: Any, name: str) -> tuple[float, ...]:
    """Quantile levels as a non-empty tuple of floats, each in the open interval (0, 1)."""
    try:
        arr = np.asarray(levels, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a sequence of floats; got {levels!r}.") from err
    if isinstance(levels, str) or arr.ndim != 1 or arr.size == 0 or not np.all(
        (arr > 0.0) & (arr < 1.0)
    ):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of levels in (0, 1); got {levels!r}."
        )
    return tuple(float(q) for q in arr)


def pinball_loss(quantiles: Sequence[float]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""Pinball (quantile) loss for a head predicting several quantiles per step.

    For quantile levels :math:`\tau_q` and predictions :math:`\hat y_{\cdot q}`,

    .. math::

        \ell = \frac{1}{nQ} \sum_{i, q} \max\big(\tau_q (y_i - \hat y_{iq}),
            (\tau_q - 1)(y_i - \hat y_{iq})\big),

    minimised by the :math:`\tau_q`-quantiles of :math:`y` given the inputs
    (Koenker & Bassett 1978). Hand-written: optax has no quantile loss.

    Args:
        quantiles: levels in ``(0, 1)``, e.g. ``(0.1, 0.5, 0.9)``.

    Returns:
        ``loss(predictions, targets)`` with ``predictions`` of shape ``targets.shape +
        (len(quantiles),)``, e.g. ``(batch, horizon, Q)`` from
        ``RNNForecaster(n_outputs=Q)``; usable as ``fit(..., loss=pinball_loss(q))``.

    Raises:
        ValueError: levels outside ``(0, 1)`` or none given.

    Examples:
        >>> import jax.numpy as jnp
        >>> loss = pinball_loss((0.1, 0.9))
        >>> float(loss(jnp.array([[0.0, 0.0]]), jnp.array([1.0])))
        0.5
    """
    taus = _check_levels(quantiles, "quantiles")

    def loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
        if predictions.shape != (*targets.shape, len(taus)):
            raise ValueError(
                f"pinball_loss: predictions must have shape targets.shape + ({len(taus)},) "
                f"= {(*targets.shape, len(taus))}; got {predictions.shape}."
            )
        tau = jnp.asarray(taus, predictions.dtype)
        diff = targets[..., None] - predictions
        return jnp.mean(jnp.maximum(tau * diff, (tau - 1.0) * diff))

    loss.quantiles = taus  # type: ignore[attr-defined]
    return loss


def interval_coverage(
    lower: ArrayLike, upper: ArrayLike, targets: ArrayLike
) -> dict[str, Any]:
    r"""Empirical coverage of forecast intervals: the share of targets inside
    :math:`[\ell, u]`, per horizon step and overall, with the mean interval width.

    For a calibrated 80% interval (10% and 90% quantiles) the coverage is near 0.8.

    Args:
        lower: ``(windows, horizon)`` lower bounds.
        upper: ``(windows, horizon)`` upper bounds, ``>= lower``.
        targets: ``(windows, horizon)`` observed values.

    Returns:
        ``{"per_step": (horizon,) array, "overall": float, "mean_width": float}``.

    Raises:
        ValueError: mismatched shapes, NaN or inf in ``lower``, ``upper`` or
            ``targets`` (a NaN target is neither inside nor outside), or
            ``upper < lower``.

    Examples:
        >>> import numpy as np
        >>> cov = interval_coverage(np.zeros((2, 2)), np.ones((2, 2)),
        ...                         np.array([[0.5, 2.0], [1.0, -1.0]]))
        >>> cov["per_step"].tolist(), cov["overall"]
        ([1.0, 0.0], 0.5)
    """
    lo, hi = _as_float_array(lower, "lower"), _as_float_array(upper, "upper")
    y = _as_float_array(targets, "targets")
    if not (lo.shape == hi.shape == y.shape) or y.ndim != 2:
        raise ValueError(
            f"`lower`, `upper` and `targets` must share one (windows, horizon) shape; got "
            f"{lo.shape}, {hi.shape}, {y.shape}."
        )
    for name, a in (("lower", lo), ("upper", hi), ("targets", y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
    if np.any(hi < lo):
        raise ValueError("`upper` must be >= `lower` everywhere.")
    inside = (y >= lo) & (y <= hi)
    return {
        "per_step": inside.mean(axis=0),
        "overall": float(inside.mean()),
        "mean_width": float((hi - lo).mean()),
    }


class SeedEnsemble(nn.Module):
    r"""``size`` independently initialised copies of a module, evaluated with ``vmap``.

    The members share the input and differ only in their initial parameters (and dropout
    draws): ``init`` splits the ``params`` key per member (``flax.linen.vmap``), and the
    output has a leading member axis. Trained in one :func:`epinn.fit` with
    :func:`ensemble_loss`, each member receives the gradient of its own loss (the members
    share no parameters and Adam's update is elementwise), so this equals ``size``
    separate trainings on the same minibatches, run in one compiled program. The spread
    of the members estimates model (not observation) uncertainty.

    Attributes:
        member: the module to replicate (e.g. an :class:`epinn.RNNForecaster`).
        size: number of members, ``>= 1``.

    Examples:
        >>> import jax.random as jr, jax.numpy as jnp
        >>> from epinn.models import RNNForecaster
        >>> ens = SeedEnsemble(RNNForecaster(hidden=4, horizon=3), size=5)
        >>> params = ens.init(jr.PRNGKey(0), jnp.ones((2, 6, 1)))
        >>> ens.apply(params, jnp.ones((2, 6, 1))).shape
        (5, 2, 3)
    """

    member: nn.Module
    size: int = 5

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or (
            self.size < 1
        ):
            raise ValueError(f"`size` must be a positive int; got {self.size!r}.")
        if not isinstance(self.member, nn.Module):
            raise TypeError(f"`member` must be a Flax Linen module; got {self.member!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        stacked = nn.vmap(
            lambda mdl, x: mdl(x, train) if _has_train(mdl) else mdl(x),
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            axis_size=self.size,
        )
        return stacked(self.member, x)


def _has_train(module: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


def ensemble_loss(loss: str | Callable = "mse") -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""Mean over members of a loss, for training a :class:`SeedEnsemble` with ``fit``.

    :math:`\ell_{\text{ens}} = \frac1E \sum_e \ell(\hat y^{(e)}, y)`; predictions carry a
    leading member axis, targets do not.

    Args:
        loss: a name from :data:`epinn.LOSSES` or a callable ``loss(pred, target)``.

    Returns:
        ``loss(predictions (E, ...), targets (...)) -> scalar``.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(ensemble_loss("mse")(jnp.array([[1.0], [3.0]]), jnp.array([2.0])))
        1.0
    """
    if isinstance(loss, str) and loss.lower() not in LOSSES:
        raise _unknown_name("loss", loss, LOSSES, "loss")
    if not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"`loss` must be a loss name or a callable; got {type(loss).__name__}.")
    fn = get_loss(loss) if isinstance(loss, str) else loss
    if not callable(fn):
        raise TypeError(f"`loss` must be a name or a callable; got {loss!r}.")

    def member_mean(predictions: jax.Array, targets: jax.Array) -> jax.Array:
        return jnp.mean(jax.vmap(fn, in_axes=(0, None))(predictions, targets))

    return member_mean


def ensemble_quantiles(
    member_predictions: ArrayLike, levels: Sequence[float] = (0.1, 0.5, 0.9)
) -> jax.Array:
    """Empirical quantiles over the leading member axis, stacked last:
    ``(E, windows, horizon) -> (windows, horizon, len(levels))``.

    ``jnp.quantile`` with linear interpolation between order statistics (numpy's
    default).

    Args:
        member_predictions: ``(E, ...)``, members first (e.g. a :class:`SeedEnsemble`'s
            output).
        levels: quantile levels in ``(0, 1)``, as for :func:`pinball_loss`.

    Returns:
        ``member_predictions.shape[1:] + (len(levels),)``.

    Raises:
        ValueError: no member axis, or levels outside ``(0, 1)`` or none given.

    Examples:
        >>> import jax.numpy as jnp
        >>> ensemble_quantiles(jnp.arange(5.0).reshape(5, 1, 1), (0.5,)).tolist()
        [[[2.0]]]
    """
    p = _asarray(member_predictions, "member_predictions")
    if p.ndim < 2:
        raise ValueError(f"`member_predictions` must have a leading member axis; got {p.shape}.")
    # Traced levels (under jit/vmap) carry no values to check.
    taus = _check_levels(levels, "levels") if _is_concrete(levels) else levels
    q = jnp.quantile(p, jnp.asarray(taus, p.dtype), axis=0)
    return jnp.moveaxis(q, 0, -1)
