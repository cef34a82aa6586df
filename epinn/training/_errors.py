"""Non-finite results and divergence: :class:`NonFiniteLossError`,
:class:`LossDivergenceWarning`, :data:`DIVERGENCE_FACTOR` and the per-epoch checks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ._history import History

PyTree = Any


class NonFiniteLossError(FloatingPointError):
    """The training loss, the parameters or a metric became NaN or infinite.

    ``epoch`` (1-based) says when; ``history`` holds the epochs before it, and its
    ``stop_reason`` says what became non-finite.
    """

    def __init__(self, message: str, epoch: int, history: History):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


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
