"""What a fit records (:class:`History`) and the early-stopping rule (:class:`EarlyStopping`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.struct
import numpy as np

from ._metrics import _HIGHER_IS_BETTER


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
