"""Predictions in evaluation mode (:func:`predict`) and metrics of them (:func:`evaluate`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._inputs import _apply_fns, _as_array, _check_int, _check_xy, _output_shape
from ._metrics import _resolve_metrics

PyTree = Any


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
