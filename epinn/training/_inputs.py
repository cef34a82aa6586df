"""Model adapters (train and eval functions of a module or an ``apply``) and the input
checks run in plain Python before anything is traced."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _real_array

PyTree = Any


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
