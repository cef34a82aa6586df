"""Activation functions and a name lookup.

Thin, documented wrappers over :mod:`jax.nn`; only SmeLU (which jax does not provide) is
written by hand. Every function is elementwise (except :func:`softmax`) and works under
``jit``, ``vmap`` and ``grad``.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from ._checks import _bind_keywords, _lookup_callable

__all__ = [
    "ACTIVATIONS",
    "elu",
    "get_activation",
    "leaky_relu",
    "linear",
    "relu",
    "sigmoid",
    "smelu",
    "softmax",
    "tanh",
]


def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, :math:`\sigma(x) = 1 / (1 + e^{-x})` (:func:`jax.nn.sigmoid`).

    Examples:
        >>> print(float(sigmoid(0.0)))
        0.5
    """
    return jax.nn.sigmoid(x)


def tanh(x: ArrayLike) -> jax.Array:
    r"""Hyperbolic tangent, :math:`\tanh(x) = (e^x - e^{-x}) / (e^x + e^{-x})`.

    Examples:
        >>> print(float(tanh(0.0)))
        0.0
    """
    return jax.nn.tanh(x)


def relu(x: ArrayLike) -> jax.Array:
    r"""Rectified linear unit, :math:`\max(x, 0)` (:func:`jax.nn.relu`).

    Examples:
        >>> print(relu(jnp.array([-1.0, 2.0])))
        [0. 2.]
    """
    return jax.nn.relu(x)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> jax.Array:
    r"""Leaky ReLU, :math:`x` for :math:`x \ge 0`, else :math:`a x` with ``negative_slope`` a.

    Examples:
        >>> print(leaky_relu(jnp.array([-2.0, 3.0]), negative_slope=0.5))
        [-1.  3.]
    """
    return jax.nn.leaky_relu(x, negative_slope)


def elu(x: ArrayLike, alpha: float = 1.0) -> jax.Array:
    r"""Exponential linear unit, :math:`x` for :math:`x > 0`, else :math:`\alpha(e^x - 1)`.

    Examples:
        >>> print(float(elu(2.0)))
        2.0
    """
    return jax.nn.elu(x, alpha)


def smelu(x: ArrayLike, beta: float = 1.0) -> jax.Array:
    r"""Smooth ReLU (SmeLU) of Shamir et al. (2020); hand-written, :mod:`jax.nn` lacks it.

    .. math::

        \operatorname{SmeLU}_\beta(x) = \begin{cases}
            0 & x \le -\beta \\
            (x + \beta)^2 / (4\beta) & |x| \le \beta \\
            x & x \ge \beta
        \end{cases}

    The quadratic piece joins both linear pieces with matching value and slope, so the
    function is :math:`C^1`.

    Args:
        x: input array.
        beta: half-width :math:`\beta > 0` of the quadratic region (checked when concrete;
            may be traced, e.g. under ``vmap`` over ``beta``).

    Returns:
        ``SmeLU(x)``, same shape as ``x``.

    Raises:
        ValueError: if ``beta`` is not positive.

    Examples:
        >>> print(smelu(jnp.array([-2.0, 0.0, 2.0]), beta=1.0))
        [0.   0.25 2.  ]

    References:
        G. I. Shamir, D. Lin, L. Coviello, "Smooth activations and reproducibility in deep
        networks", arXiv:2010.09931 (2020).
    """
    if not isinstance(beta, jax.core.Tracer):
        if isinstance(beta, (str, bytes, bool)) or not isinstance(
            beta, (int, float, jax.Array, np.number, np.ndarray)
        ) or np.ndim(beta) != 0:
            raise TypeError(f"`beta` must be a positive number; got {type(beta).__name__} "
                            f"{beta!r}.")
        if not float(beta) > 0 or not math.isfinite(float(beta)):
            raise ValueError(f"`beta` must be positive and finite; got {beta}.")
    x = jnp.asarray(x)
    quadratic = (x + beta) ** 2 / (4 * beta)
    return jnp.where(x <= -beta, jnp.zeros_like(x), jnp.where(x >= beta, x, quadratic))


def softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Softmax along ``axis``, :math:`e^{x_i} / \sum_j e^{x_j}` (:func:`jax.nn.softmax`).

    Examples:
        >>> print(softmax(jnp.zeros(4)))
        [0.25 0.25 0.25 0.25]
    """
    return jax.nn.softmax(x, axis=axis)


def linear(x: ArrayLike) -> jax.Array:
    """Identity, the activation of a linear output layer (:func:`jax.nn.identity`).

    Examples:
        >>> print(float(linear(-3.0)))
        -3.0
    """
    return jax.nn.identity(x)


ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "smelu": smelu,
    "softmax": softmax,
    "linear": linear,
}


def get_activation(
    name_or_callable: str | Callable[..., jax.Array], **kwargs
) -> Callable[..., jax.Array]:
    """Resolve an activation by (case-insensitive) name, or pass a callable through.

    Args:
        name_or_callable: a key of :data:`ACTIVATIONS` or any callable.
        **kwargs: keyword arguments bound with :func:`functools.partial`,
            e.g. ``beta`` for SmeLU.

    Returns:
        A callable ``f(x)``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a string nor a callable, a keyword the function does not take,
            or a string value.
        ValueError: also for a non-finite parameter value.

    Examples:
        >>> f = get_activation("SmeLU", beta=2.0)
        >>> print(float(f(0.0)))
        0.5
    """
    return _bind_keywords(_lookup_callable(name_or_callable, ACTIVATIONS, "activation", "name_or_callable"), kwargs, "**kwargs")
