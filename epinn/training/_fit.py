r"""Training: optimizers by name, metrics, ``fit``, early stopping, history, checkpoints.

:func:`fit` trains a Flax Linen module (or any ``apply(params, x)`` function) by
minimising a loss with an :mod:`optax` optimizer:

.. math::

    \theta \leftarrow \theta - \eta\, \text{update}\Big(\nabla_\theta \big[
    \tfrac{1}{|B|}\textstyle\sum_{i \in B} \ell(f_\theta(x_i), y_i) + R(\theta)\big]\Big)

over minibatches :math:`B` (the whole training set for ``batch_size=None``, one sample for
``batch_size=1``), reshuffled every epoch. One epoch is one jit-compiled function: a
``lax.scan`` over the minibatches followed by the epoch's evaluation, compiled once before
the first epoch and called again for every epoch, with one host sync per epoch (for the
progress bar, the non-finite checks and early stopping).

No silent non-finite results: after every epoch :func:`fit` checks the loss, the
parameters and every recorded metric, and raises :class:`NonFiniteLossError` naming the
epoch when any is NaN or infinite. A loss that grows beyond :data:`DIVERGENCE_FACTOR`
times its first epoch's value, while still finite, gives a :class:`LossDivergenceWarning`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import inspect
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import flax.serialization
import flax.struct
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec
from jax.typing import ArrayLike
from tqdm.auto import tqdm

from .._checks import _did_you_mean, _unknown_name
from ..data import batch_indices
from .._checks import _asarray, _check_key, _real_array
from .._version import __version__
from ..losses import (
    LOSSES,
    check_targets,
    binary_cross_entropy,
    categorical_cross_entropy,
    get_loss,
    mae,
    mse,
)
from ..sharding import replicated, resolve_mesh

__all__ = [
    "METRICS",
    "OPTIMIZERS",
    "Checkpoint",
    "DIVERGENCE_FACTOR",
    "EarlyStopping",
    "History",
    "LossDivergenceWarning",
    "NonFiniteLossError",
    "accuracy",
    "evaluate",
    "fit",
    "get_metric",
    "get_optimizer",
    "load_checkpoint",
    "predict",
    "r2_score",
    "rmse",
    "save_checkpoint",
]

PyTree = Any

# --------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "gd": optax.sgd,
    "sgd": optax.sgd,
    "momentum": functools.partial(optax.sgd, momentum=0.9),
    "nesterov": functools.partial(optax.sgd, momentum=0.9, nesterov=True),
    "adam": optax.adam,
    "adagrad": optax.adagrad,
    "adamax": optax.adamax,
    "rmsprop": optax.rmsprop,
}
"""Optimizer factories by name, each ``factory(learning_rate, **kwargs)`` from optax.

``"gd"`` and ``"sgd"`` are both :func:`optax.sgd`: plain gradient descent, which is
full-batch gradient descent with ``batch_size=None`` and stochastic with minibatches.
``"momentum"`` and ``"nesterov"`` are :func:`optax.sgd` with ``momentum=0.9`` (override
with a keyword).
"""


def _check_learning_rate(learning_rate: Any) -> None:
    if callable(learning_rate):
        return
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.number)):
        raise TypeError(
            "`learning_rate` must be a positive float or an optax schedule (a callable "
            f"step -> rate); got {type(learning_rate).__name__}."
        )
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be positive and finite; got {learning_rate}.")


def get_optimizer(
    name_or_tx: str | optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    learning_rate: float | optax.Schedule = 1e-3,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """Resolve an optax optimizer by name, or pass one through.

    Args:
        name_or_tx: a name from :data:`OPTIMIZERS` (``"gd"``, ``"sgd"``, ``"momentum"``,
            ``"nesterov"``, ``"adam"``, ``"adagrad"``, ``"adamax"``, ``"rmsprop"``;
            case-insensitive), an ``optax.GradientTransformation`` (returned unchanged, its
            own learning rate applies and ``learning_rate`` is ignored), or an optax factory
            such as ``optax.adamw`` (called as ``factory(learning_rate, **kwargs)``).
        learning_rate: a positive float, or an optax schedule ``step -> rate`` such as
            ``optax.exponential_decay(1e-2, 100, 0.5)``.
        **kwargs: extra keyword arguments for the factory, e.g. ``momentum=0.5``.

    Returns:
        The ``optax.GradientTransformation``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a non-positive
            learning rate.
        TypeError: anything else, or a factory that does not return a transformation.

    Examples:
        >>> tx = get_optimizer("adam", 1e-2)
        >>> isinstance(tx, optax.GradientTransformation)
        True
    """
    if isinstance(name_or_tx, optax.GradientTransformation):
        return name_or_tx
    _check_learning_rate(learning_rate)
    if isinstance(name_or_tx, str):
        factory = OPTIMIZERS.get(name_or_tx.lower())
        if factory is None:
            raise ValueError(
                f"Unknown `optimizer` {name_or_tx!r}{_did_you_mean(name_or_tx, OPTIMIZERS)}; "
                f"valid names are {sorted(OPTIMIZERS)} (or pass an "
                "optax.GradientTransformation)."
            )
        for k, v in kwargs.items():  # numbers (or flags such as nesterov=True)
            if isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
                raise (TypeError if isinstance(v, str) else ValueError)(
                    f"`{k}` (an option of the {name_or_tx!r} optimizer) must be a finite "
                    f"number; got {v!r}."
                )
    elif callable(name_or_tx):
        factory = name_or_tx
    else:
        raise TypeError(
            "`optimizer` must be a name, an optax.GradientTransformation or an optax factory; "
            f"got {type(name_or_tx).__name__}."
        )
    tx = factory(learning_rate, **kwargs)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` factory {name_or_tx!r} returned {type(tx).__name__}, "
            "not an optax.GradientTransformation."
        )
    return tx


@functools.lru_cache(maxsize=64)
def _cached_optimizer(name: str, learning_rate: Any) -> optax.GradientTransformation:
    return get_optimizer(name, learning_rate)


def _fit_optimizer(optimizer: Any, learning_rate: Any) -> optax.GradientTransformation:
    # The same transformation object for the same (name, learning rate), so that fits with
    # equal settings share one compiled epoch.
    if isinstance(optimizer, str):
        _check_learning_rate(learning_rate)
        try:
            return _cached_optimizer(optimizer.lower(), learning_rate)
        except TypeError:  # an unhashable schedule
            pass
    return get_optimizer(optimizer, learning_rate)


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# History and early stopping
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class History:
    """What happened during :func:`fit`, epoch by epoch (epochs are numbered from 1).

    Attributes:
        train_loss: per epoch, the mean of the minibatch losses during the epoch (without
            the regularizer), as Keras reports it.
        val_loss: per epoch, the loss on ``validation_data`` after the epoch (empty without
            validation data).
        metrics: per metric name, a list per epoch: ``"mae"`` on the training data and
            ``"val_mae"`` on the validation data (both evaluated after the epoch, in
            evaluation mode); ``"penalty"`` holds the regularizer's value when one is used.
        epoch_time: wall-clock seconds per epoch (compilation excluded).
        compile_time: seconds spent compiling the epoch function before the first epoch.
        monitor: the quantity that defines ``best_epoch`` (``"val_loss"`` if there was
            validation data, else ``"loss"``, or the early-stopping monitor).
        best_epoch: the epoch (1-based) with the best ``monitor`` value.
        params_epoch: the epoch (1-based) whose parameters :func:`fit` returned:
            ``best_epoch`` when early stopping restored the best parameters, else the last.
        stop_reason: ``"completed"`` (all epochs ran), ``"early_stopping"``, or, on the
            history attached to a :class:`NonFiniteLossError`, ``"non-finite loss"``,
            ``"non-finite parameters"`` or ``"non-finite metric"``.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    epoch_time: list[float] = dataclasses.field(default_factory=list)
    compile_time: float = 0.0
    monitor: str = "loss"
    best_epoch: int | None = None
    params_epoch: int | None = None
    stop_reason: str = "not started"

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers ``[1, 2, ..., len(train_loss)]``."""
        return list(range(1, len(self.train_loss) + 1))

    def __len__(self) -> int:
        return len(self.train_loss)

    def __getitem__(self, name: str) -> list[float]:
        """``history["loss"]`` / ``["val_loss"]`` / ``["mae"]`` / ``["val_mae"]``..."""
        if name in ("loss", "train_loss"):
            return self.train_loss
        if name == "val_loss":
            return self.val_loss
        return self.metrics[name]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain lists, floats, ints and strings)."""
        return {
            "train_loss": [float(v) for v in self.train_loss],
            "val_loss": [float(v) for v in self.val_loss],
            "metrics": {k: [float(v) for v in vs] for k, vs in self.metrics.items()},
            "epoch_time": [float(v) for v in self.epoch_time],
            "compile_time": float(self.compile_time),
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "params_epoch": self.params_epoch,
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        """Rebuild a :class:`History` from :meth:`to_dict`'s output."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


class EarlyStopping(flax.struct.PyTreeNode):
    """Early-stopping rule as an immutable PyTree (after ``flax.training.early_stopping``).

    After each epoch, :meth:`update` compares the monitored value with the best so far. It
    counts as an improvement when it beats the best by more than ``min_delta``
    (``value < best - min_delta`` for losses, ``value > best + min_delta`` for accuracy and
    R^2). After ``patience`` epochs in a row without improvement, ``should_stop`` is set.

    Unlike Keras (keras-team/keras#12511), :func:`fit` restores the best epoch's parameters
    whenever ``restore_best`` is true, whether or not the rule fired before the last epoch.

    Attributes:
        monitor: ``"val_loss"``, ``"loss"``, a metric name (``"mae"``) or its validation
            version (``"val_mae"``).
        patience: epochs without improvement to wait before stopping (``0`` stops at the
            first epoch that does not improve).
        min_delta: the smallest change that counts as an improvement, ``>= 0``.
        restore_best: return the best epoch's parameters instead of the last ones.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (``"max"`` for accuracy and r2).
        best_value: best monitored value so far (``None`` before the first update).
        best_epoch: the epoch of ``best_value``.
        wait: epochs since the last improvement.
        should_stop: whether the patience is exhausted.
        has_improved: whether the last update improved.

    Examples:
        >>> es = EarlyStopping(patience=1)
        >>> for epoch, v in enumerate([3.0, 2.0, 2.5, 2.4], start=1):
        ...     es = es.update(v, epoch)
        >>> es.should_stop, es.best_epoch, es.best_value
        (True, 2, 2.0)
    """

    monitor: str = flax.struct.field(pytree_node=False, default="val_loss")
    patience: int = flax.struct.field(pytree_node=False, default=10)
    min_delta: float = flax.struct.field(pytree_node=False, default=0.0)
    restore_best: bool = flax.struct.field(pytree_node=False, default=True)
    mode: str = flax.struct.field(pytree_node=False, default="auto")
    best_value: float | None = None
    best_epoch: int = 0
    wait: int = 0
    should_stop: bool = False
    has_improved: bool = False

    def __post_init__(self):
        if not isinstance(self.monitor, str):
            raise TypeError(f"`monitor` must be a string; got {type(self.monitor).__name__}.")
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)):
            raise TypeError(f"`patience` must be an int; got {type(self.patience).__name__}.")
        if self.patience < 0:
            raise ValueError(f"`patience` must be >= 0; got {self.patience}.")
        if isinstance(self.min_delta, bool) or not isinstance(
            self.min_delta, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"`min_delta` must be a number >= 0; got {type(self.min_delta).__name__}."
            )
        if not isinstance(self.restore_best, (bool, np.bool_)):
            raise TypeError(
                f"`restore_best` must be True or False; got {type(self.restore_best).__name__}."
            )
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"`min_delta` must be finite and >= 0; got {self.min_delta}.")
        if not isinstance(self.mode, str) or self.mode not in ("min", "max", "auto"):
            raise ValueError(f"`mode` must be 'min', 'max' or 'auto'; got {self.mode!r}.")

    @property
    def maximize(self) -> bool:
        """Whether larger monitored values are better."""
        if self.mode == "auto":
            base = self.monitor.removeprefix("val_")
            return base in _HIGHER_IS_BETTER
        return self.mode == "max"

    def reset(self) -> EarlyStopping:
        """The same rule with its state cleared."""
        return self.replace(best_value=None, best_epoch=0, wait=0, should_stop=False,
                            has_improved=False)

    def update(self, value: float, epoch: int) -> EarlyStopping:
        """Record the monitored ``value`` of ``epoch``; returns the new state."""
        value = float(value)
        if self.best_value is None:
            improved = not math.isnan(value)
        elif self.maximize:
            improved = value > self.best_value + self.min_delta
        else:
            improved = value < self.best_value - self.min_delta
        if improved:
            return self.replace(best_value=value, best_epoch=int(epoch), wait=0,
                                has_improved=True)
        wait = self.wait + 1
        return self.replace(wait=wait, should_stop=self.should_stop or wait >= self.patience,
                            has_improved=False)


class NonFiniteLossError(FloatingPointError):
    """The training loss, the parameters or a metric became NaN or infinite.

    ``epoch`` (1-based) says when; ``history`` holds the epochs before it, and its
    ``stop_reason`` says what became non-finite.
    """

    def __init__(self, message: str, epoch: int, history: History):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


# --------------------------------------------------------------------------------------
# Model adapters and input checks
# --------------------------------------------------------------------------------------


class _Apply(NamedTuple):
    train: Callable[[PyTree, jax.Array, jax.Array], jax.Array]  # (params, x, key)
    eval: Callable[[PyTree, jax.Array], jax.Array]  # (params, x)


def _has_train_argument(model: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False


def _apply_fns(model: Any) -> _Apply:
    """Train/eval functions of ``model``; the same object for the same (hashable) model."""
    try:
        return _cached_apply_fns(model)
    except TypeError:  # unhashable model
        return _make_apply_fns(model)


@functools.lru_cache(maxsize=64)
def _cached_apply_fns(model: Any) -> _Apply:
    return _make_apply_fns(model)


def _make_apply_fns(model: Any) -> _Apply:
    if isinstance(model, nn.Module):
        if _has_train_argument(model):
            return _Apply(
                train=lambda p, x, k: model.apply(p, x, train=True, rngs={"dropout": k}),
                eval=lambda p, x: model.apply(p, x, train=False),
            )
        return _Apply(train=lambda p, x, k: model.apply(p, x), eval=model.apply)
    if callable(model):
        return _Apply(train=lambda p, x, k: model(p, x), eval=model)
    raise TypeError(
        "`model` must be a Flax Linen module or a function apply(params, x); "
        f"got {type(model).__name__}."
    )


def _as_array(a: ArrayLike, name: str) -> jax.Array:
    a = jnp.asarray(_real_array(a, name, ragged=ValueError, must_be="a rectangular array"))
    if a.ndim == 0:
        raise ValueError(f"`{name}` must have a leading sample axis; got a scalar.")
    if a.shape[0] == 0:
        raise ValueError(f"`{name}` must be non-empty; got shape {a.shape}.")
    if jnp.issubdtype(a.dtype, jnp.inexact) and not np.isfinite(np.asarray(a)).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return a


def _check_xy(x: ArrayLike, y: ArrayLike, xname: str = "x", yname: str = "y"):
    x, y = _as_array(x, xname), _as_array(y, yname)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`{xname}` and `{yname}` must have the same number of samples; "
            f"got {x.shape[0]} and {y.shape[0]}."
        )
    return x, y


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}.")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"`{name}` must be {bounds}; got {value}.")
    return int(value)


def _check_params_finite(params: PyTree) -> None:
    """Initial parameters must be finite (checked on the host: no compilation)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.core.Tracer):
            continue
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ValueError(
                f"`params` contains NaN or infinite values at {jax.tree_util.keystr(path)} "
                "before training."
            )


def _first(a: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype)


def _output_shape(apply: Callable, params: Any, x: jax.Array) -> jax.ShapeDtypeStruct:
    """The model's output on abstract ``x``; its own error re-raised naming the arguments."""
    try:
        return jax.eval_shape(apply, params, x)
    except Exception as err:
        raise ValueError(
            f"`model` could not be applied to `params` and `x` with per-sample shape "
            f"{x.shape[1:]}: {err}"
        ) from err


def _check_shapes(apply: _Apply, loss_fn, metric_fns, regularizer, params, x, y):
    """Trace model, loss, metrics and regularizer on abstract values; no FLOPs run.

    Returns the model's abstract output for ``x``.
    """
    pred = _output_shape(apply.eval, params, x)
    for what, fn in [("loss", loss_fn), *(("metric " + k, f) for k, f in metric_fns.items())]:
        try:
            out = jax.eval_shape(fn, pred, y)
        except Exception as err:
            raise ValueError(
                f"The {what} rejected `y` of shape {y.shape} against the model's output of "
                f"shape {pred.shape} (e.g. reshape `y` to {pred.shape}): {err}"
            ) from err
        if out.shape != ():
            raise ValueError(f"The {what} must return a scalar; got shape {out.shape}.")
    if regularizer is not None:
        if not callable(regularizer):
            raise TypeError(f"`regularizer` must be callable; got {type(regularizer).__name__}.")
        out = jax.eval_shape(regularizer, params)
        if out.shape != ():
            raise ValueError(f"`regularizer` must return a scalar; got shape {out.shape}.")
    return pred


# --------------------------------------------------------------------------------------
# The jitted epoch
# --------------------------------------------------------------------------------------


class _EpochConfig(NamedTuple):
    """Everything static about an epoch; hashable, so equal configs share one compilation."""

    apply: _Apply
    loss_fn: Callable
    tx: optax.GradientTransformation
    regularizer: Callable | None
    metrics: tuple[tuple[str, Callable], ...]
    n: int
    batch_size: int
    has_val: bool
    mesh: Mesh | None = None  # data parallel over this mesh's devices


@functools.partial(jax.jit, static_argnums=(2, 3))
def _epoch_inputs(key: jax.Array, epoch_index: jax.Array, n: int, batch_size: int):
    """Per-epoch randomness: the shuffled minibatch indices and the dropout key.

    Jitted apart from the epoch, so its compilation (the PRNG's hash, the sort) is shared
    by every fit with the same ``n`` and ``batch_size``.
    """
    perm_key, dropout_key = jr.split(jr.fold_in(key, epoch_index))
    if batch_size == n:
        return None, None, dropout_key
    full, rest = batch_indices(perm_key, n, batch_size)
    return full, rest, dropout_key


def _step(cfg: _EpochConfig, carry, batch, axis_name=None):
    """One optimizer step; with ``axis_name``, on this device's share of the minibatch."""
    params, opt_state = carry
    xb, yb, key = batch

    def objective(p):
        data_loss = cfg.loss_fn(cfg.apply.train(p, xb, key), yb)
        total = data_loss if cfg.regularizer is None else data_loss + cfg.regularizer(p)
        return total, data_loss

    (total, data_loss), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if axis_name is not None:  # equal shares: the mean of the means is the batch's mean
        flat, unravel = jax.flatten_util.ravel_pytree((grads, total, data_loss))
        grads, total, data_loss = unravel(jax.lax.pmean(flat, axis_name))
    updates, opt_state = cfg.tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (total, data_loss)


def _steps(cfg: _EpochConfig, carry, batches):
    """Optimizer steps over a stack of minibatches ``(steps, batch, ...)``.

    Data parallel over ``cfg.mesh`` when its devices divide the minibatch; otherwise (and
    on one device) every device takes the whole minibatch.
    """
    if cfg.mesh is not None and batches[0].shape[1] % cfg.mesh.size == 0:
        return _data_parallel_scan(cfg, carry, batches)
    return jax.lax.scan(functools.partial(_step, cfg), carry, batches)


def _data_parallel_scan(cfg: _EpochConfig, carry, batches):
    """The minibatch loop with each device stepping through its share of every minibatch.

    ``jax.shard_map``: every device holds the (replicated) parameters and optimizer state,
    computes the gradient of the mean loss over its ``batch_size / devices`` samples, and
    the devices average their gradients (an all-reduce) before each identical update.
    Dropout keys are folded with the device index, so each share draws its own masks.
    """
    axis = tuple(cfg.mesh.axis_names)

    def local(carry, batches):
        index = jax.lax.axis_index(axis)

        def step(carry, batch):
            xb, yb, key = batch
            return _step(cfg, carry, (xb, yb, jr.fold_in(key, index)), axis)

        return jax.lax.scan(step, carry, batches)

    split, whole = PartitionSpec(None, axis), PartitionSpec()
    return jax.shard_map(local, mesh=cfg.mesh, in_specs=(whole, (split, split, whole)),
                         out_specs=whole, check_vma=False)(carry, batches)


@functools.partial(jax.jit, static_argnums=0)
def _epoch(cfg: _EpochConfig, params, opt_state, x, y, x_val, y_val, full, rest, dropout_key):
    """One epoch: a ``lax.scan`` of optimizer steps over the minibatches, then evaluation."""
    n, batch_size = cfg.n, cfg.batch_size
    carry = (params, opt_state)
    if full is None:  # full batch: one step
        carry, (total, data_loss) = _steps(cfg, carry, (x[None], y[None], dropout_key[None]))
        total, data_loss = total[0], data_loss[0]
    else:
        n_full, n_rest = full.shape[0], rest.shape[0]
        keys = jr.split(dropout_key, n_full + 1)
        # Gather the whole epoch once, then scan over the (n_full, batch_size, ...) stack.
        batches = (jnp.take(x, full, axis=0), jnp.take(y, full, axis=0), keys[:n_full])
        carry, (totals, data_losses) = _steps(cfg, carry, batches)
        total = jnp.sum(totals) * batch_size
        data_loss = jnp.sum(data_losses) * batch_size
        if n_rest:  # the last, smaller batch (a static shape, outside the scan)
            last = (jnp.take(x, rest, axis=0)[None], jnp.take(y, rest, axis=0)[None], keys[-1:])
            carry, (t, d) = _steps(cfg, carry, last)
            total, data_loss = total + t[0] * n_rest, data_loss + d[0] * n_rest
        total, data_loss = total / n, data_loss / n
    params, opt_state = carry
    logs = {"objective": total, "loss": data_loss}
    if cfg.metrics:
        pred = cfg.apply.eval(params, x)
        logs.update({k: f(pred, y) for k, f in cfg.metrics})
    if cfg.regularizer is not None:
        logs["penalty"] = cfg.regularizer(params)
    if cfg.has_val:
        pred_val = cfg.apply.eval(params, x_val)
        logs["val_loss"] = cfg.loss_fn(pred_val, y_val)
        logs.update({"val_" + k: f(pred_val, y_val) for k, f in cfg.metrics})
    return params, opt_state, logs, _all_finite(params)


def _all_finite(tree: PyTree) -> jax.Array:
    """Whether every inexact leaf of ``tree`` is finite (one boolean; integer leaves pass)."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
             if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


DIVERGENCE_FACTOR = 1e6
""":func:`fit` warns (:class:`LossDivergenceWarning`) when a loss grows beyond this
multiple of its first epoch's value."""


class LossDivergenceWarning(RuntimeWarning):
    """The training (or validation) loss grew by more than :data:`DIVERGENCE_FACTOR`."""


def _non_finite_error(message: str, reason: str, epoch: int, epochs: int,
                      history: History) -> NonFiniteLossError:
    history.stop_reason = reason
    return NonFiniteLossError(
        f"{message} at epoch {epoch} of {epochs}; try a smaller `learning_rate`, check the "
        "data or the loss (the error's `history` holds the epochs before).",
        epoch=epoch,
        history=history,
    )


def _check_finite_epoch(logs: Mapping[str, float], params_finite: bool, epoch: int,
                        epochs: int, history: History) -> None:
    """Raise :class:`NonFiniteLossError` for a non-finite loss, parameter or metric.

    The loss is measured before each update; the parameters and metrics after the
    epoch's last update, so a step that overflows is caught in the epoch it happens.
    """
    for name in ("objective", "loss"):
        if not math.isfinite(logs[name]):
            raise _non_finite_error(f"The training loss became {logs[name]}",
                                    "non-finite loss", epoch, epochs, history)
    if not params_finite:
        raise _non_finite_error(
            f"The parameters became NaN or infinite in an update (the loss before was "
            f"{logs['loss']:.4g})", "non-finite parameters", epoch, epochs, history)
    bad = [k for k, v in logs.items() if not math.isfinite(v)]
    if bad:
        raise _non_finite_error(
            f"The recorded {bad[0]!r} became {logs[bad[0]]} (finite parameters)",
            "non-finite metric", epoch, epochs, history)


def _check_divergence(logs: Mapping[str, float], history: History, epoch: int,
                      warned: bool) -> bool:
    """Warn once per fit when a loss exceeds ``DIVERGENCE_FACTOR`` times its first value.

    Compares ``loss`` (and ``val_loss``) of this epoch with epoch 1's, for positive first
    values. Returns whether the warning has been given.
    """
    if warned or epoch == 1:
        return warned
    for name, first in (("val_loss", history.val_loss[:1]), ("loss", history.train_loss[:1])):
        if name in logs and first and first[0] > 0 and logs[name] > DIVERGENCE_FACTOR * first[0]:
            warnings.warn(
                f"The {name} grew from {first[0]:.4g} (epoch 1) to {logs[name]:.4g} at epoch "
                f"{epoch}, more than {DIVERGENCE_FACTOR:g} times: the optimisation is "
                "diverging; try a smaller `learning_rate`.",
                LossDivergenceWarning, stacklevel=3,
            )
            return True
    return False


def _progress_postfix(logs: Mapping[str, float]) -> dict[str, str]:
    keys = ["loss", "val_loss"] + [k for k in logs if k not in ("loss", "val_loss", "objective")]
    return {k: f"{logs[k]:.4g}" for k in keys if k in logs}


# --------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------


def fit(
    model: nn.Module | Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: str | Callable = "mse",
    optimizer: str | optax.GradientTransformation | Callable = "adam",
    learning_rate: float | optax.Schedule = 1e-3,
    epochs: int = 100,
    batch_size: int | None = None,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    early_stopping: EarlyStopping | None = None,
    metrics: Sequence[str | Callable] = (),
    key: jax.Array | None = None,
    verbose: int = 1,
    regularizer: Callable[[PyTree], jax.Array] | None = None,
    mesh: Mesh | None | bool = None,
) -> tuple[PyTree, History]:
    r"""Train ``params`` of ``model`` on ``(x, y)`` with a loss and an optax optimizer.

    Each epoch takes a fresh permutation of the samples (key
    ``jax.random.fold_in(key, epoch)``), cuts it into minibatches of ``batch_size`` (the
    last one smaller when ``batch_size`` does not divide ``n``) and takes one optimizer
    step per minibatch on

    .. math::

        L(\theta) = \frac{1}{|B|} \sum_{i \in B} \ell\big(f_\theta(x_i), y_i\big)
            + R(\theta)

    with :math:`R` the optional ``regularizer``. ``batch_size=None`` (or ``n``) is
    full-batch gradient descent (one step per epoch), ``batch_size=1`` is stochastic
    gradient descent. The epoch -- the ``lax.scan`` over minibatches, then the
    evaluation of metrics and validation loss -- is compiled once, before the first
    epoch (``history.compile_time``); the host syncs once per epoch.

    With several devices the training is data parallel (:mod:`epinn.sharding`): the
    parameters and optimizer state are replicated, each device steps through its equal
    share of every minibatch (``jax.shard_map``), and the devices average their gradients
    (one all-reduce) before each update -- the same updates as on one device, up to the
    order of float additions, for losses that are means over the samples (all of
    :data:`LOSSES`; a custom loss that is not would be averaged over the shares instead).
    With dropout each device draws its own masks. A minibatch whose size the number of
    devices does not divide is taken whole by every device. On a multi-core CPU,
    ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (set before JAX starts)
    gives one device per core: XLA runs a training step on one core otherwise, and the
    LSTM benchmark trains 1.9x faster on 2 cores this way.

    If the model's ``__call__`` has a ``train`` argument (e.g. :class:`epinn.MLP` with
    dropout), training calls it with ``train=True`` and ``rngs={"dropout": k}`` (a fresh
    ``k`` per step) and evaluation with ``train=False``.

    Args:
        model: a Flax Linen module, or a function ``apply(params, x) -> predictions``.
        params: the initial parameters, e.g. ``model.init(key, x[:1])``.
        x: inputs, samples along axis 0.
        y: targets, samples along axis 0, shaped like the model's output (or integer
            labels, for categorical cross-entropy).
        loss: a name from :data:`epinn.LOSSES` (``"mse"``, ``"mae"``,
            ``"binary_cross_entropy"``, ``"categorical_cross_entropy"``,
            ``"gaussian_nll"``, ...) or a callable ``loss(predictions, targets) -> scalar``.
        optimizer: a name, an ``optax.GradientTransformation`` or an optax factory; see
            :func:`get_optimizer`.
        learning_rate: a positive float or an optax schedule (ignored when ``optimizer`` is
            already a transformation).
        epochs: the maximum number of passes over the data, ``>= 1``.
        batch_size: ``None`` for full batch, else ``1 <= batch_size <= n``.
        validation_data: ``(x_val, y_val)``, evaluated after every epoch.
        early_stopping: an :class:`EarlyStopping` rule; its ``monitor`` must be recorded
            (``"val_..."`` needs ``validation_data``, a metric name needs ``metrics``).
        metrics: names from :data:`METRICS` or callables, recorded on the training data
            and, with validation data, as ``"val_<name>"``.
        key: a ``jax.random`` key, required for shuffled minibatches and dropout.
        verbose: ``1`` shows a tqdm progress bar over epochs, ``0`` is silent.
        regularizer: a function ``params -> scalar`` added to the loss, e.g.
            ``lambda p: epinn.l1_penalty(p, 1e-4)``.
        mesh: the devices for data parallelism: a ``jax.sharding.Mesh``, ``None``
            (default) for all devices (:func:`epinn.device_mesh`; one device is plain
            training), ``False`` for the default device only.

    Returns:
        ``(params, history)``: the trained parameters (the best epoch's when early stopping
        restores them) and a :class:`History`.

    Raises:
        ValueError: empty or non-finite data, ``x``/``y`` length mismatch, ``y`` not
            matching the model output, ``batch_size`` outside ``[1, n]``, ``epochs < 1``,
            unknown loss/optimizer/metric names, an unavailable ``early_stopping.monitor``,
            or a missing ``key``.
        TypeError: arguments of the wrong type.
        NonFiniteLossError: (a ``FloatingPointError``) the training loss (measured before
            each update), the parameters after an epoch's updates, or a recorded metric or
            validation loss became NaN or infinite; the message names the epoch and what
            became non-finite, and ``history.stop_reason`` says which.

    Warns:
        LossDivergenceWarning: (once per fit) the epoch's training loss, or the
            validation loss, exceeds :data:`DIVERGENCE_FACTOR` (``1e6``) times its value
            in epoch 1 -- the optimisation is diverging, usually from too large a learning
            rate, though the values are still finite. The first epoch's loss is measured
            before its updates, so a one-epoch fit cannot be compared with anything.

    Examples:
        >>> import jax.numpy as jnp, jax.random as jr
        >>> from epinn import MLP
        >>> x = jnp.linspace(-1, 1, 32)[:, None]
        >>> model = MLP((16, 1), activation="tanh")
        >>> params = model.init(jr.PRNGKey(0), x)
        >>> params, history = fit(model, params, x, x**2, learning_rate=1e-2, epochs=200,
        ...                       verbose=0)
        >>> history.train_loss[-1] < 0.1 * history.train_loss[0]
        True
    """
    # ---- plain-Python checks, before anything is traced
    apply = _apply_fns(model)
    x, y = _check_xy(x, y)
    n = x.shape[0]
    epochs = _check_int(epochs, "epochs", 1)
    verbose = _check_int(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", 0)
    if batch_size is None:
        batch_size = n
    batch_size = _check_int(batch_size, "batch_size", 1, n)
    loss_fn = _resolve_loss(loss)
    metric_fns = _resolve_metrics(metrics)
    tx = _fit_optimizer(optimizer, learning_rate)
    pred = _check_shapes(apply, loss_fn, metric_fns, regularizer, params, _first(x), _first(y))
    _check_params_finite(params)
    has_val = validation_data is not None
    if has_val:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("`validation_data` must be a pair (x_val, y_val).")
        x_val, y_val = _check_xy(*validation_data, xname="validation_data[0]",
                                 yname="validation_data[1]")
        if x_val.shape[1:] != x.shape[1:] or y_val.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"`validation_data` must have the per-sample shapes of x {x.shape[1:]} and "
                f"y {y.shape[1:]}; got {x_val.shape[1:]} and {y_val.shape[1:]}."
            )
    else:
        x_val = y_val = None
    n_out = pred.shape[-1:] or (1,)
    for targets in (y, y_val) if has_val else (y,):
        check_targets(loss_fn, targets, n_out[0])
    available = ["loss", *metric_fns]
    available += ["val_loss", *("val_" + k for k in metric_fns)] if has_val else []
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise TypeError(
                "`early_stopping` must be an EarlyStopping; "
                f"got {type(early_stopping).__name__}."
            )
        if early_stopping.monitor not in available:
            raise ValueError(
                f"`early_stopping` monitors {early_stopping.monitor!r}, which this fit does "
                f"not record{_did_you_mean(early_stopping.monitor, available)}; available: "
                f"{available}."
            )
        early_stopping = early_stopping.reset()
    needs_key = batch_size < n or getattr(model, "dropout_rate", 0.0) > 0
    if key is None:
        if needs_key:
            raise ValueError(
                "`key` is required for shuffled minibatches and dropout; pass a jax.random key."
            )
        key = jr.PRNGKey(0)  # traced but not used for anything random
    else:
        key = _check_key(key)

    mesh = resolve_mesh(mesh)

    # ---- compile the epoch once
    opt_state = jax.jit(tx.init)(params)  # one compilation, not one per leaf shape
    if mesh is not None:  # replicated state; data whole on every device (gathers are local)
        params, opt_state, x, y, x_val, y_val = jax.device_put(
            (params, opt_state, x, y, x_val, y_val), replicated(mesh))
    cfg = _EpochConfig(apply, loss_fn, tx, regularizer, tuple(metric_fns.items()), n,
                       batch_size, has_val, mesh)
    t0 = time.perf_counter()
    inputs = _epoch_inputs(key, np.int32(0), n, batch_size)
    compiled = _epoch.lower(cfg, params, opt_state, x, y, x_val, y_val, *inputs).compile()
    history = History(compile_time=time.perf_counter() - t0)
    monitor = early_stopping.monitor if early_stopping is not None else (
        "val_loss" if has_val else "loss")
    history.monitor = monitor
    tracker = early_stopping if early_stopping is not None else EarlyStopping(monitor=monitor)
    best_params = params
    divergence = False  # whether the divergence warning was given

    # ---- the epochs: one compiled call and one host sync each
    with tqdm(total=epochs, disable=not verbose, unit="epoch", desc="fit") as bar:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            params, opt_state, logs, finite = compiled(
                params, opt_state, x, y, x_val, y_val, *inputs)
            if epoch < epochs:  # dispatch the next shuffle now: it overlaps with this epoch
                inputs = _epoch_inputs(key, np.int32(epoch), n, batch_size)
            logs, finite = jax.device_get((logs, finite))  # the one sync
            logs = {k: float(v) for k, v in logs.items()}
            history.epoch_time.append(time.perf_counter() - t0)
            _check_finite_epoch(logs, bool(finite), epoch, epochs, history)
            divergence = _check_divergence(logs, history, epoch, divergence)
            history.train_loss.append(logs["loss"])
            if has_val:
                history.val_loss.append(logs["val_loss"])
            for k, v in logs.items():
                if k not in ("objective", "loss", "val_loss"):
                    history.metrics.setdefault(k, []).append(v)
            tracker = tracker.update(logs[monitor], epoch)
            if tracker.has_improved:
                best_params = params
            bar.update(1)
            bar.set_postfix(_progress_postfix(logs), refresh=False)
            if early_stopping is not None and tracker.should_stop:
                history.stop_reason = "early_stopping"
                break
        else:
            history.stop_reason = "completed"

    history.best_epoch = tracker.best_epoch if tracker.best_value is not None else None
    if early_stopping is not None and early_stopping.restore_best and history.best_epoch:
        params, history.params_epoch = best_params, history.best_epoch
    else:
        history.params_epoch = len(history)
    return params, history


# --------------------------------------------------------------------------------------
# predict / evaluate
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 3))
def _predict_jit(apply_eval, params, x, batch_size):
    if batch_size is None:
        return apply_eval(params, x)
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    xp = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
    xb = xp.reshape(n_batches, batch_size, *x.shape[1:])
    out = jax.lax.map(lambda b: apply_eval(params, b), xb)
    return out.reshape(n_batches * batch_size, *out.shape[2:])[:n]


def predict(
    model: nn.Module | Callable, params: PyTree, x: ArrayLike, batch_size: int | None = None
) -> jax.Array:
    """Model outputs for ``x`` in evaluation mode (``train=False``), jit-compiled.

    Args:
        model: a Flax Linen module or a function ``apply(params, x)``.
        params: the parameters.
        x: inputs, samples along axis 0.
        batch_size: evaluate in chunks of this many samples (bounded memory), or all at
            once with ``None``.

    Returns:
        The predictions, samples along axis 0.

    Raises:
        ValueError: empty or non-finite ``x``, or ``batch_size < 1``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p, x: p * x
        >>> predict(f, 2.0, jnp.arange(5.0), batch_size=2).tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    x = _as_array(x, "x")
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1)
        batch_size = min(batch_size, x.shape[0])
    apply = _apply_fns(model).eval
    _output_shape(apply, params, x[:1])
    return _predict_jit(apply, params, x, batch_size)


@functools.lru_cache(maxsize=64)
def _jit_metric(fn: Callable) -> Callable:
    return jax.jit(fn)  # one compilation per metric and shape, not one per operation


def evaluate(
    model: nn.Module | Callable,
    params: PyTree,
    x: ArrayLike,
    y: ArrayLike,
    metrics: Sequence[str | Callable] = ("mse",),
    batch_size: int | None = None,
) -> dict[str, float]:
    """Metrics of the model's predictions on ``(x, y)``.

    Args:
        model: a Flax Linen module or a function ``apply(params, x)``.
        params: the parameters.
        x: inputs.
        y: targets.
        metrics: names from :data:`METRICS` (``"mse"``, ``"mae"``, ``"rmse"``, ``"r2"``,
            ``"accuracy"``, ``"binary_cross_entropy"``, ``"categorical_cross_entropy"``)
            or callables ``f(predictions, targets)``.
        batch_size: forwarded to :func:`predict`.

    Returns:
        ``{name: value}`` as Python floats.

    Raises:
        ValueError: mismatched or bad data, unknown metric names.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p, x: p * x
        >>> out = evaluate(f, 2.0, jnp.arange(3.0), jnp.array([0.0, 2.0, 5.0]), ("mse", "mae"))
        >>> {k: round(v, 4) for k, v in out.items()}
        {'mse': 0.3333, 'mae': 0.3333}
    """
    x, y = _check_xy(x, y)
    metric_fns = _resolve_metrics(metrics)
    if not metric_fns:
        raise ValueError("`metrics` must name at least one metric.")
    pred = predict(model, params, x, batch_size=batch_size)
    out = {}
    for name, fn in metric_fns.items():
        try:
            out[name] = float(_jit_metric(fn)(pred, y))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"Metric {name!r} rejected `y` of shape {y.shape} against predictions of "
                f"shape {pred.shape}: {err}"
            ) from err
    return out


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------

_FORMAT = "epinn-checkpoint"
_FORMAT_VERSION = 2  # 2 added the SHA-256 of the arrays' bytes; 1 still loads


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns."""

    params: PyTree
    opt_state: PyTree | None
    history: History | None
    config: Any
    metadata: dict[str, Any]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_path(path: Any, name: str = "path") -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a str or os.PathLike; got {type(path).__name__}.")
    path = Path(path)
    if str(path) in ("", ".") or path.is_dir():
        raise IsADirectoryError(f"`{name}` {str(path)!r} is a directory, not a checkpoint file.")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    params: PyTree,
    opt_state: PyTree | None = None,
    history: History | None = None,
    config: Any = None,
) -> Path:
    """Save parameters (and optimizer state) with msgpack, plus a JSON sidecar.

    The arrays go to ``path`` through :func:`flax.serialization.to_bytes` (msgpack: exact
    bytes, dtypes and shapes; no pickle). ``path + ".json"`` holds the ``config``, the
    ``history``, the library versions, a description of the saved tree and the SHA-256 of
    ``path``'s bytes, which :func:`load_checkpoint` verifies. Both files are
    written atomically (a temporary file in the same folder, then ``os.replace``), so a
    crash never leaves a half-written checkpoint.

    Args:
        path: the checkpoint file, e.g. ``"results/model.msgpack"``; its folder must exist.
        params: the parameter PyTree.
        opt_state: the optax state, to resume training.
        history: a :class:`History` (or its ``to_dict()``).
        config: anything JSON-serialisable describing the run (model sizes, seeds...).

    Returns:
        The checkpoint path.

    Raises:
        TypeError: ``path`` is not a str or path, or ``config`` or ``history`` is not
            JSON-serialisable.
        ValueError: the folder of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        PermissionError: the folder of ``path`` is not writable.
    """
    path = _check_path(path)
    if not path.parent.is_dir():
        raise ValueError(f"`path`: folder {str(path.parent)!r} does not exist.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"`path`: folder {str(path.parent)!r} is not writable.")
    hist = history.to_dict() if isinstance(history, History) else history
    meta = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {
            "epinn": _epinn_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
        },
        "has_opt_state": opt_state is not None,
        "params_structure": str(jax.tree_util.tree_structure(params)),
        "config": config,
        "history": hist,
    }
    payload = {"params": params}
    if opt_state is not None:
        payload["opt_state"] = opt_state
    try:
        data = flax.serialization.to_bytes(payload)
    except (TypeError, ValueError) as err:  # msgpack: objects that are not arrays or numbers
        raise TypeError(f"`params` and `opt_state` must be PyTrees of arrays and numbers to be "
                        f"saved: {err}") from err
    meta["sha256"] = _sha256(data)
    try:
        text = json.dumps(meta, indent=2, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`config` and `history` must be JSON-serialisable: {err}") from err
    _atomic_write(path, data)
    _atomic_write(_sidecar(path), text.encode())
    return path


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON sidecar as a dict (``{}`` when there is none)."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"The checkpoint sidecar {str(sidecar)!r} is not valid JSON: {err}"
                         ) from err
    if not isinstance(meta, dict):
        raise ValueError(f"The checkpoint sidecar {str(sidecar)!r} must hold a JSON object; "
                         f"got {type(meta).__name__}.")
    return meta


def _epinn_version() -> str:
    return __version__


def _restore(template: PyTree, state: Any, name: str) -> PyTree:
    arg = "template" if name == "params" else "opt_state_template"
    try:
        restored = flax.serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"The checkpoint's {name} do not match the structure of `{arg}`: "
                         f"{err}") from err
    if jax.tree_util.tree_structure(restored) != jax.tree_util.tree_structure(template):
        raise ValueError(f"The checkpoint's {name} do not match the structure of `{arg}`.")
    # flax does not compare shapes or dtypes; do it leaf by leaf.
    flat_t = jax.tree_util.tree_leaves_with_path(template)
    flat_r = jax.tree_util.tree_leaves(restored)
    for (p, t), r in zip(flat_t, flat_r):
        ts, rs = np.shape(t), np.shape(r)
        td, rd = np.asarray(t).dtype, np.asarray(r).dtype
        if ts != rs or td != rd:
            raise ValueError(
                f"The checkpoint's {name} at {jax.tree_util.keystr(p)} has shape {rs} dtype "
                f"{rd}, the template shape {ts} dtype {td}."
            )
    return jax.tree_util.tree_map(jnp.asarray, restored)


def load_checkpoint(
    path: str | os.PathLike, template: PyTree, opt_state_template: PyTree | None = None
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` into a template's structure.

    Args:
        path: the checkpoint file.
        template: a PyTree with the structure, shapes and dtypes of the saved parameters
            (e.g. ``model.init(key, x)``); its values are not used.
        opt_state_template: the same for the optimizer state (e.g. ``tx.init(template)``),
            to restore it; without it ``opt_state`` is ``None``.

    Returns:
        A :class:`Checkpoint` ``(params, opt_state, history, config, metadata)``.

    Raises:
        TypeError: ``path`` is not a str or path.
        FileNotFoundError: no checkpoint at ``path``.
        IsADirectoryError: ``path`` is a directory.
        ValueError: the file is not a checkpoint, its bytes differ from the SHA-256 its
            sidecar recorded (a corrupt or altered file), the sidecar is not valid JSON,
            the saved tree differs from the template (keys, structure, shapes or dtypes),
            or there is no optimizer state to restore.

    Warns:
        UserWarning: the sidecar is missing, or records no SHA-256 (a checkpoint of
            format 1): the file loads, unverified.

    Examples:
        >>> import tempfile, os, jax.numpy as jnp
        >>> p = {"w": jnp.arange(3.0)}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_checkpoint(os.path.join(d, "m.msgpack"), p, config={"lr": 0.1})
        ...     ck = load_checkpoint(os.path.join(d, "m.msgpack"), p)
        >>> ck.params["w"].tolist(), ck.config
        ([0.0, 1.0, 2.0], {'lr': 0.1})
    """
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at `path` {str(path)!r}.")
    data = path.read_bytes()
    meta = _read_sidecar(path)
    expected = meta.get("sha256")
    if expected is not None and _sha256(data) != expected:
        raise ValueError(
            f"Checkpoint {str(path)!r} is corrupt or was altered: the SHA-256 of its bytes "
            f"differs from the one recorded in {str(_sidecar(path))!r} when it was saved."
        )
    try:
        state = flax.serialization.msgpack_restore(data)
    except Exception as err:  # msgpack's ExtraData, FormatError, ... on a corrupt file
        raise ValueError(
            f"`path` {str(path)!r} is not a readable msgpack checkpoint: {err!r}"
        ) from err
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"`path` {str(path)!r} is not an epinn checkpoint.")
    params = _restore(template, state["params"], "params")
    opt_state = None
    if opt_state_template is not None:
        if "opt_state" not in state:
            raise ValueError("`opt_state_template` given, but the checkpoint has no opt_state.")
        opt_state = _restore(opt_state_template, state["opt_state"], "opt_state")
    hist = meta.get("history")
    try:
        history = History.from_dict(hist) if hist is not None else None
    except TypeError as err:
        raise ValueError(f"The sidecar {str(_sidecar(path))!r} holds a malformed history: "
                         f"{err}") from err
    if expected is None:
        warnings.warn(
            f"Checkpoint {str(path)!r} has no SHA-256 in its sidecar "
            f"{str(_sidecar(path))!r} (missing, or an older format): loaded unverified.",
            UserWarning, stacklevel=2,
        )
    return Checkpoint(
        params=params,
        opt_state=opt_state,
        history=history,
        config=meta.get("config"),
        metadata={k: v for k, v in meta.items() if k not in ("history", "config")},
    )
