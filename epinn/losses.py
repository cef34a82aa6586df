"""Loss functions and weight penalties.

Every loss has the signature ``loss(predictions, targets) -> scalar`` and returns the mean
over the batch, so training code can take any of them by name through :func:`get_loss`.
Cross-entropies from logits use :mod:`optax`; the rest are short enough to write here
(``optax.l2_loss`` is :math:`\\tfrac12 (y - \\hat y)^2`, not the plain squared error).
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from ._checks import _unknown_name
from ._checks import _asarray

__all__ = [
    "LOSSES",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "check_targets",
    "gaussian_nll",
    "get_loss",
    "gradient_penalty",
    "l1_penalty",
    "mae",
    "mse",
]

_EPS = 1e-7  # probability clip: log(1e-7) ~ -16.1 is finite and representable in float32


def _same_shape(predictions: ArrayLike, targets: ArrayLike) -> tuple[jax.Array, jax.Array]:
    predictions, targets = _asarray(predictions, "predictions"), _asarray(targets, "targets")
    if predictions.shape != targets.shape:
        raise ValueError(
            f"`targets` must have the shape of `predictions` {predictions.shape}; "
            f"got {targets.shape}."
        )
    return predictions, targets


def _check_range(targets: jax.Array, low: float, high: float, what: str) -> None:
    """Concrete ``targets`` must lie in ``[low, high]``; skipped under ``jit`` (no values)."""
    if isinstance(targets, jax.core.Tracer) or targets.size == 0:
        return
    t = np.asarray(targets)
    if t.min() < low or t.max() > high:
        raise ValueError(f"`targets` must be {what}; got values from {t.min()} to {t.max()}.")


def check_targets(loss_fn: Callable, targets: ArrayLike, n_classes: int) -> None:
    """Check target values for a built-in cross-entropy before training compiles it.

    Inside ``jit`` the losses see tracers and cannot check values, so a trainer calls this
    once on the concrete data: :func:`binary_cross_entropy` needs probabilities in
    :math:`[0, 1]`, :func:`categorical_cross_entropy` with integer labels needs labels in
    ``[0, n_classes)``. Other losses accept any real targets (nothing is checked).

    Args:
        loss_fn: the loss function that will be trained with.
        targets: the concrete target array.
        n_classes: the size of the predictions' last axis (the classes of integer labels).

    Raises:
        ValueError: naming the valid range and the range found.

    Examples:
        >>> check_targets(binary_cross_entropy, jnp.array([0.0, 1.0]), 1)
        >>> check_targets(binary_cross_entropy, jnp.array([0.0, 2.0]), 1)
        Traceback (most recent call last):
        ...
        ValueError: `targets` must be probabilities in [0, 1] for binary cross-entropy; got values from 0.0 to 2.0.
    """
    targets = jnp.asarray(targets)
    if loss_fn is binary_cross_entropy:
        _check_range(targets, 0.0, 1.0, "probabilities in [0, 1] for binary cross-entropy")
    elif loss_fn is categorical_cross_entropy and jnp.issubdtype(targets.dtype, jnp.integer):
        _check_range(targets, 0, n_classes - 1, f"class labels in [0, {n_classes})")


def mse(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Mean squared error, :math:`\frac1n \sum_i (\hat y_i - y_i)^2` over all elements.

    Raises:
        ValueError: if the shapes differ (no silent broadcasting of ``(n, 1)`` against ``(n,)``).

    Examples:
        >>> print(float(mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]))))
        2.5
    """
    predictions, targets = _same_shape(predictions, targets)
    return jnp.mean((predictions - targets) ** 2)


def mae(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Mean absolute error, :math:`\frac1n \sum_i |\hat y_i - y_i|` over all elements.

    Raises:
        ValueError: if the shapes differ.

    Examples:
        >>> print(float(mae(jnp.array([1.0, -3.0]), jnp.array([0.0, 0.0]))))
        2.0
    """
    predictions, targets = _same_shape(predictions, targets)
    return jnp.mean(jnp.abs(predictions - targets))


def binary_cross_entropy(
    predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False, eps: float = _EPS
) -> jax.Array:
    r"""Binary cross-entropy, averaged over all elements.

    .. math::

        \ell = -\frac1n \sum_i \big[y_i \log p_i + (1 - y_i) \log(1 - p_i)\big]

    From probabilities, :math:`p_i` and :math:`1 - p_i` are clipped to ``[eps, 1]`` before
    the log, so ``p = 0`` or ``1`` gives a large finite loss. From logits
    (:math:`p = \sigma(z)`) it uses :func:`optax.sigmoid_binary_cross_entropy`, exact for any
    :math:`|z|`.

    Args:
        predictions: probabilities in ``[0, 1]``, or logits if ``from_logits``.
        targets: labels in ``[0, 1]`` (soft labels allowed), same shape.
        from_logits: whether ``predictions`` are logits.
        eps: probability clip, used only when ``from_logits`` is false.

    Raises:
        ValueError: if the shapes differ, or concrete targets leave ``[0, 1]``.

    Examples:
        >>> print(round(float(binary_cross_entropy(jnp.array([0.5]), jnp.array([1.0]))), 4))
        0.6931
    """
    predictions, targets = _same_shape(predictions, targets)
    _check_range(targets, 0.0, 1.0, "probabilities in [0, 1]")
    if from_logits:
        return jnp.mean(optax.sigmoid_binary_cross_entropy(predictions, targets))
    log_p = jnp.log(jnp.clip(predictions, eps, 1.0))
    log_1mp = jnp.log(jnp.clip(1.0 - predictions, eps, 1.0))
    return -jnp.mean(targets * log_p + (1.0 - targets) * log_1mp)


def categorical_cross_entropy(
    predictions: ArrayLike, targets: ArrayLike, *, from_logits: bool = False, eps: float = _EPS
) -> jax.Array:
    r"""Categorical cross-entropy over the last (class) axis, averaged over the batch.

    .. math::

        \ell = -\frac1n \sum_i \sum_k y_{ik} \log p_{ik}

    Targets are one-hot / soft labels of the same shape as ``predictions``, or integer
    class labels with the class axis dropped. From logits it uses
    :func:`optax.softmax_cross_entropy` (``_with_integer_labels``), which is stable for any
    logits; from probabilities it takes the log of ``p`` clipped to ``[eps, 1]``.

    Args:
        predictions: ``(..., k)`` probabilities, or logits if ``from_logits``.
        targets: ``(..., k)`` one-hot/soft labels, or ``(...)`` integer labels in ``[0, k)``.
        from_logits: whether ``predictions`` are logits.
        eps: probability clip, used only when ``from_logits`` is false.

    Raises:
        ValueError: if ``targets`` fits neither form, or integer-shaped targets are not ints
            (or, when concrete, not in ``[0, k)``).

    Examples:
        >>> p = jnp.array([[0.25, 0.75]])
        >>> print(round(float(categorical_cross_entropy(p, jnp.array([1]))), 4))
        0.2877
    """
    predictions, targets = _asarray(predictions, "predictions"), _asarray(targets, "targets")
    if targets.shape == predictions.shape:
        if from_logits:
            return jnp.mean(optax.softmax_cross_entropy(predictions, targets))
        log_p = jnp.log(jnp.clip(predictions, eps, 1.0))
        return -jnp.mean(jnp.sum(targets * log_p, axis=-1))
    if targets.shape == predictions.shape[:-1]:
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(
                f"`targets` of shape {targets.shape} are read as class labels and must be "
                f"integers; got dtype {targets.dtype}."
            )
        k = predictions.shape[-1]
        _check_range(targets, 0, k - 1, f"class labels in [0, {k})")
        if from_logits:
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(predictions, targets))
        p = jnp.take_along_axis(predictions, targets[..., None], axis=-1)[..., 0]
        return -jnp.mean(jnp.log(jnp.clip(p, eps, 1.0)))
    raise ValueError(
        f"`targets` must have shape {predictions.shape} (one-hot) or "
        f"{predictions.shape[:-1]} (integer labels); got {targets.shape}."
    )


def gaussian_nll(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Heteroscedastic Gaussian negative log-likelihood, averaged over all target elements.

    ``predictions[..., :d]`` is the mean :math:`\mu` and ``predictions[..., d:]`` the log
    variance :math:`s = \log\sigma^2` of each of the ``d`` targets:

    .. math::

        \ell = \frac1n \sum_i \tfrac12\big[\log 2\pi + s_i + (y_i - \mu_i)^2 e^{-s_i}\big]

    Args:
        predictions: ``(..., 2 d)``, ``[mean, log_variance]`` along the last axis.
        targets: ``(..., d)``.

    Raises:
        ValueError: if ``predictions`` is not ``targets`` with a doubled last axis.

    Examples:
        >>> print(round(float(gaussian_nll(jnp.array([[0.0, 0.0]]), jnp.array([[0.0]]))), 4))
        0.9189
    """
    predictions, targets = _asarray(predictions, "predictions"), _asarray(targets, "targets")
    if targets.ndim == 0 or predictions.shape != (*targets.shape[:-1], 2 * targets.shape[-1]):
        raise ValueError(
            f"`targets` of shape (..., d) need `predictions` of shape (..., 2d) holding "
            f"[mean, log_variance]; got targets {targets.shape}, predictions "
            f"{predictions.shape}."
        )
    mean, log_var = jnp.split(predictions, 2, axis=-1)
    return 0.5 * jnp.mean(jnp.log(2 * jnp.pi) + log_var + (targets - mean) ** 2 * jnp.exp(-log_var))


def _check_lam(lam: Any) -> None:
    """A penalty strength: a number >= 0 (traced values pass unchecked)."""
    if isinstance(lam, jax.core.Tracer):
        return
    if isinstance(lam, (str, bytes, bool)) or np.ndim(lam) != 0 or not isinstance(
        lam, (int, float, np.number, np.ndarray, jax.Array)
    ):
        raise TypeError(f"`lam` must be a number >= 0; got {type(lam).__name__} {lam!r}.")
    if not (math.isfinite(float(lam)) and float(lam) >= 0):
        raise ValueError(f"`lam` must be finite and non-negative; got {lam}.")


def _is_kernel(path: tuple[Any, ...]) -> bool:
    last = path[-1] if path else None
    return getattr(last, "key", getattr(last, "name", None)) == "kernel"


def l1_penalty(params: Any, lam: float) -> jax.Array:
    r"""L1 (lasso) penalty on weight matrices: :math:`\lambda \sum_{W} \sum_{jk} |W_{jk}|`.

    Only leaves named ``"kernel"`` (Flax's weights) count; biases are not penalised.

    Args:
        params: a parameter PyTree, e.g. ``model.init(key, x)``.
        lam: the penalty strength :math:`\lambda \ge 0`.

    Raises:
        ValueError: if ``params`` has no ``"kernel"`` leaf or ``lam`` is negative.

    Examples:
        >>> p = {"params": {"Dense_0": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.ones(2)}}}
        >>> print(float(l1_penalty(p, 0.5)))
        1.5
    """
    _check_lam(lam)
    leaves = [w for path, w in jax.tree_util.tree_leaves_with_path(params) if _is_kernel(path)]
    if not leaves:
        raise ValueError("`params` has no 'kernel' leaves (weight matrices) to penalise.")
    return lam * sum(jnp.sum(jnp.abs(w)) for w in leaves)


def gradient_penalty(
    apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any, x: ArrayLike, lam: float
) -> jax.Array:
    r"""Penalty on the parameter-gradient norm of each sample's output.

    .. math::

        \lambda \frac1n \sum_{i=1}^n \big\lVert \nabla_w \textstyle\sum_k \hat y_k(x_i; w)
        \big\rVert_2^2

    with the gradient over all parameters (weights and biases), one sample at a time
    (``jax.vmap`` of ``jax.grad``; each sample is passed with a batch axis of 1).

    Args:
        apply_fn: ``apply_fn(params, x_batch) -> outputs``, e.g. ``model.apply``.
        params: parameter PyTree.
        x: inputs ``(n, ...)``.
        lam: the penalty strength :math:`\lambda \ge 0`.

    Raises:
        ValueError: if ``x`` has no batch axis or ``lam`` is negative.

    Examples:
        >>> f = lambda p, x: p["w"] * x  # d/dw sum(w x_i) = x_i
        >>> print(float(gradient_penalty(f, {"w": 1.0}, jnp.array([1.0, 3.0]), 1.0)))
        5.0
    """
    _check_lam(lam)
    x = _asarray(x, "x")
    if x.ndim == 0:
        raise ValueError("`x` must have a leading batch axis; got a scalar.")

    def squared_norm(x_i):
        grads = jax.grad(lambda p: jnp.sum(apply_fn(p, x_i[None])))(params)
        return sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))

    return lam * jnp.mean(jax.vmap(squared_norm)(x))


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "mse": mse,
    "mae": mae,
    "binary_cross_entropy": binary_cross_entropy,
    "bce": binary_cross_entropy,
    "categorical_cross_entropy": categorical_cross_entropy,
    "cce": categorical_cross_entropy,
    "gaussian_nll": gaussian_nll,
}


def get_loss(name_or_callable: str | Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """Resolve a loss ``f(predictions, targets)`` by (case-insensitive) name, or pass through.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a string nor a callable.

    Examples:
        >>> get_loss("BCE") is binary_cross_entropy
        True
    """
    if isinstance(name_or_callable, str):
        fn = LOSSES.get(name_or_callable.lower())
        if fn is None:
            raise _unknown_name("loss", name_or_callable, LOSSES, "name_or_callable")
        return fn
    if callable(name_or_callable):
        return name_or_callable
    raise TypeError(
        "`name_or_callable` must be a loss name or a callable; "
        f"got {type(name_or_callable).__name__}."
    )
