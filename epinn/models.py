"""Neural-network models as Flax Linen modules (pure ``init`` / ``apply``)."""

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from flax.core import FrozenDict

from .activations import get_activation

__all__ = ["MLP"]


def _check_features(features: Any) -> None:
    try:
        sizes = [operator.index(f) for f in features]
        valid = len(sizes) > 0 and all(s > 0 for s in sizes)
        valid = valid and not any(isinstance(f, bool) for f in features)
    except TypeError:
        valid = False
    if not valid or isinstance(features, str):
        raise ValueError(
            f"`features` must be a non-empty sequence of positive ints (layer sizes "
            f"including the output, e.g. (64, 64, 1)); got {features!r}."
        )


class MLP(nn.Module):
    r"""Multilayer perceptron: ``Dense`` layers with an activation between them.

    For layer sizes ``features = (n_1, ..., n_L)``,

    .. math::

        h_0 = x, \qquad h_l = \phi(W_l h_{l-1} + b_l) \ (l < L), \qquad
        \hat y = \phi_{\text{out}}(W_L h_{L-1} + b_L)

    with optional dropout after each hidden activation (only when ``train=True``; then
    ``apply`` needs ``rngs={"dropout": key}``).

    Attributes:
        features: layer sizes including the output layer, e.g. ``(64, 64, 1)``.
        activation: hidden activation, a name or callable for
            :func:`~epinn.activations.get_activation`.
        output_activation: output activation, e.g. ``"linear"``, ``"sigmoid"``, ``"softmax"``.
        activation_kwargs: keyword arguments for the hidden activation (e.g. ``{"beta": 2.0}``
            for SmeLU); stored as a ``FrozenDict``, and ``features`` as a tuple, so the module
            is hashable.
        dropout_rate: dropout probability for hidden layers, in ``[0, 1)``.
        kernel_init: weight initialiser (Flax's default, LeCun normal).

    Raises:
        ValueError: bad ``features`` or ``dropout_rate``, or an unknown activation name.

    Examples:
        >>> import jax.random as jr, jax.numpy as jnp
        >>> model = MLP(features=(8, 1), activation="tanh")
        >>> params = model.init(jr.PRNGKey(0), jnp.ones((5, 3)))
        >>> model.apply(params, jnp.ones((5, 3))).shape
        (5, 1)
    """

    features: Sequence[int]
    activation: str | Callable[..., jax.Array] = "relu"
    output_activation: str | Callable[..., jax.Array] = "linear"
    activation_kwargs: Mapping[str, Any] | None = None
    dropout_rate: float = 0.0
    kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init

    def __post_init__(self):
        _check_features(self.features)
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); got {self.dropout_rate}.")
        get_activation(self.activation, **(self.activation_kwargs or {}))  # fail early
        get_activation(self.output_activation)
        # Hashable fields, so the module (and ``model.apply``) can be a static jit argument.
        self.features = tuple(self.features)
        if self.activation_kwargs is not None:
            self.activation_kwargs = FrozenDict(self.activation_kwargs)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the network to ``x`` of shape ``(..., n_in)``; returns ``(..., features[-1])``."""
        act = get_activation(self.activation, **(self.activation_kwargs or {}))
        for size in self.features[:-1]:
            x = act(nn.Dense(size, kernel_init=self.kernel_init)(x))
            if self.dropout_rate > 0.0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.features[-1], kernel_init=self.kernel_init)(x)
        return get_activation(self.output_activation)(x)
