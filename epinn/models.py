"""Neural-network models as Flax Linen modules (pure ``init`` / ``apply``)."""

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from ._checks import _bind_keywords, _lookup_callable
from .activations import ACTIVATIONS, get_activation
from ._checks import _did_you_mean
from ._checks import _asarray

__all__ = ["MLP", "RNNForecaster", "rollout"]


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


def _check_dropout_rate(rate: Any) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"`dropout_rate` must be a float in [0, 1); got {type(rate).__name__}.")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1); got {rate}.")


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
        precision: precision of the layers' matrix products, passed to ``flax.linen.Dense``
            (a :class:`jax.lax.Precision` or ``"highest"``). ``None`` is JAX's default, which
            on NVIDIA GPUs since Ampere computes float32 products in TF32 (about 1e-3
            relative error) and on CPUs in full float32. Ask for ``"highest"`` where the
            network's output is differentiated by finite differences or compared at float32
            rounding; epinn's time-dependent networks (:func:`~epinn.fit_neural_beta`,
            :func:`~epinn.fit_pinn`) do.

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
    precision: str | jax.lax.Precision | None = None

    def __post_init__(self):
        _check_features(self.features)
        _check_dropout_rate(self.dropout_rate)
        kwargs = self.activation_kwargs
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(
                f"`activation_kwargs` must be a mapping such as {{'beta': 2.0}} or None; got "
                f"{type(kwargs).__name__}."
            )
        if kwargs and any(not isinstance(k, str) for k in kwargs):
            raise TypeError(f"`activation_kwargs` keys must be strings; got {list(kwargs)}.")
        fn = _lookup_callable(self.activation, ACTIVATIONS, "activation", "activation")
        _bind_keywords(fn, dict(kwargs or {}), "activation_kwargs")  # fail early, naming the field
        _lookup_callable(self.output_activation, ACTIVATIONS, "activation", "output_activation")
        if isinstance(self.precision, str):
            try:
                jax.lax.Precision(self.precision)
            except ValueError:
                raise ValueError(
                    f"`precision` must be None, a jax.lax.Precision or one of 'default', "
                    f"'high', 'highest'; got {self.precision!r}."
                ) from None
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
            x = act(nn.Dense(size, kernel_init=self.kernel_init, precision=self.precision)(x))
            if self.dropout_rate > 0.0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.features[-1], kernel_init=self.kernel_init, precision=self.precision)(x)
        return get_activation(self.output_activation)(x)


# --------------------------------------------------------------------------------------
# Recurrent forecasters
# --------------------------------------------------------------------------------------

_CELLS = ("lstm", "gru")


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {type(value).__name__} "
                         f"{value!r}.")


def _make_cell(cell: str, hidden: int, param_dtype: Any) -> nn.RNNCellBase:
    cls = nn.OptimizedLSTMCell if cell == "lstm" else nn.GRUCell
    # parent=None: adopted by nn.RNN as its ``cell``.
    return cls(features=hidden, param_dtype=param_dtype, parent=None)


class RNNForecaster(nn.Module):
    r"""Stacked LSTM or GRU encoder with a dense head forecasting ``horizon`` steps at once.

    For an input window :math:`x_{1:L}` (``batch x time x features``), ``layers`` recurrent
    layers run over time (``flax.linen.RNN``); the last layer's final hidden state goes
    through one ``Dense`` layer to all future values at once (direct multi-step
    forecasting):

    .. math::

        h^{(1)}_t = \mathrm{cell}_1(h^{(1)}_{t-1}, x_t), \quad
        h^{(l)}_t = \mathrm{cell}_l(h^{(l-1)}_{t-1}, h^{(l-1)}_t), \quad
        (\hat y_{L+1}, \dots, \hat y_{L+H}) = W h^{(\text{layers})}_L + b.

    The cells are Flax's :class:`~flax.linen.OptimizedLSTMCell` (gates
    :math:`i, f, g, o`; :math:`c' = f \odot c + i \odot g`, :math:`h' = o \odot \tanh c'`)
    and :class:`~flax.linen.GRUCell`. (Hand-written alternatives -- the input projection of
    all time steps hoisted out of the scan as one matrix product, stacked gate kernels with
    the sigmoids computed through one ``tanh``, a custom backward pass with the weight
    gradients taken out of the loop -- trained no faster on CPU in
    ``benchmarks/bench_rnn.py``'s problem, so Flax's cells are used as they are.)
    Dropout (rate ``dropout_rate``, only with ``train=True``, which needs
    ``rngs={"dropout": key}``) acts on every layer's output sequence. For forecasts
    further ahead than ``horizon``, feed predictions back with :func:`rollout`.

    Attributes:
        cell: ``"lstm"`` or ``"gru"``.
        hidden: hidden size of every recurrent layer.
        layers: number of stacked recurrent layers.
        horizon: number of future steps predicted at once, ``>= 1``.
        dropout_rate: dropout probability on the layers' outputs, in ``[0, 1)``.
        n_outputs: ``None`` for one target series (output ``batch x horizon``), or the
            number of target series / quantiles per step (output
            ``batch x horizon x n_outputs``).
        unroll: time steps per iteration of the recurrent ``scan``.
        param_dtype: dtype of the parameters and of the computation (inputs are cast to
            it, as the recurrent state starts in it); ``jnp.float64`` needs x64 enabled.

    Raises:
        ValueError: a bad attribute (named in the message), or an input ``x`` that is not
            ``batch x time x features``.

    Examples:
        >>> import jax.random as jr, jax.numpy as jnp
        >>> model = RNNForecaster(cell="gru", hidden=8, layers=2, horizon=7)
        >>> x = jnp.ones((4, 28, 1))            # batch x time x features
        >>> params = model.init(jr.PRNGKey(0), x)
        >>> model.apply(params, x).shape
        (4, 7)
        >>> RNNForecaster(hidden=8, horizon=3, n_outputs=2).init_with_output(
        ...     jr.PRNGKey(0), jnp.ones((4, 10, 2)))[0].shape
        (4, 3, 2)
    """

    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    horizon: int = 7
    dropout_rate: float = 0.0
    n_outputs: int | None = None
    unroll: int = 1
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if not isinstance(self.cell, str) or self.cell not in _CELLS:
            hint = _did_you_mean(self.cell, _CELLS) if isinstance(self.cell, str) else ""
            raise ValueError(f"`cell` must be one of {_CELLS}; got {self.cell!r}{hint}.")
        for name in ("hidden", "layers", "horizon", "unroll"):
            _check_positive_int(getattr(self, name), name)
        if self.n_outputs is not None:
            _check_positive_int(self.n_outputs, "n_outputs")
        _check_dropout_rate(self.dropout_rate)
        try:
            dtype = jnp.dtype(self.param_dtype)
        except TypeError as err:
            raise TypeError(f"`param_dtype` must be a float dtype; got {self.param_dtype!r}."
                            ) from err
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"`param_dtype` must be a float dtype; got {dtype}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Forecast from ``x`` of shape ``(batch, time, features)``.

        Returns:
            ``(batch, horizon)``, or ``(batch, horizon, n_outputs)`` when ``n_outputs`` is set.
        """
        if jnp.ndim(x) != 3:
            raise ValueError(
                f"`x` must be batch x time x features (3-D); got shape {jnp.shape(x)}. "
                "Add a feature axis with x[..., None], or vmap over extra leading axes."
            )
        if x.shape[1] < 1:
            raise ValueError(f"`x` must have at least one time step; got shape {x.shape}.")
        h = jnp.asarray(x, self.param_dtype)
        for layer in range(self.layers):
            cell = _make_cell(self.cell, self.hidden, self.param_dtype)
            h = nn.RNN(cell, unroll=self.unroll, name=f"rnn_{layer}")(h)
            if self.dropout_rate > 0.0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        n_out = 1 if self.n_outputs is None else self.n_outputs
        y = nn.Dense(self.horizon * n_out, param_dtype=self.param_dtype, name="head")(h[:, -1])
        if self.n_outputs is None:
            return y
        return y.reshape(x.shape[0], self.horizon, n_out)


def rollout(
    model: RNNForecaster, params: Any, x: jax.Array, steps: int
) -> jax.Array:
    r"""Autoregressive forecast ``steps`` ahead by feeding the model's forecasts back.

    The window slides forward ``model.horizon`` steps at a time: the forecast block
    :math:`\hat y_{L+1:L+H}` is appended to the input and the oldest :math:`H` steps are
    dropped, until ``steps`` values exist (the last block is cut). The model's output per
    step must have as many values as the input has features (one target series for
    ``n_outputs=None`` and one input feature, or ``n_outputs == features``), so that the
    forecast can be fed back as input. Evaluation mode (no dropout); a ``lax.scan``, so
    it works under ``jit`` and ``vmap``.

    Args:
        model: an :class:`RNNForecaster`.
        params: its parameters.
        x: input windows, ``(batch, time, features)``.
        steps: how many future steps to forecast, ``>= 1``.

    Returns:
        ``(batch, steps)``, or ``(batch, steps, n_outputs)`` when ``model.n_outputs`` is set.

    Raises:
        ValueError: ``steps < 1``, ``x`` not 3-D, or outputs that cannot be fed back.

    Examples:
        >>> import jax.random as jr, jax.numpy as jnp
        >>> model = RNNForecaster(hidden=8, horizon=2)
        >>> x = jnp.ones((3, 10, 1))
        >>> params = model.init(jr.PRNGKey(0), x)
        >>> rollout(model, params, x, steps=5).shape
        (3, 5)
    """
    if not isinstance(model, RNNForecaster):
        raise TypeError(f"`model` must be an RNNForecaster; got {type(model).__name__}.")
    _check_positive_int(steps, "steps")
    x = _asarray(x, "x")
    if x.ndim != 3:
        raise ValueError(f"`x` must be batch x time x features (3-D); got shape {x.shape}.")
    n_out = 1 if model.n_outputs is None else model.n_outputs
    if n_out != x.shape[-1]:
        raise ValueError(
            f"`model` predicts {n_out} value(s) per step but `x` has {x.shape[-1]} "
            "feature(s); an autoregressive roll-out feeds forecasts back as inputs, so they "
            "must match."
        )
    blocks = -(-steps // model.horizon)
    window = x.shape[1]

    def block(xw, _):
        y = model.apply(params, xw, train=False).reshape(x.shape[0], model.horizon, n_out)
        xw = jnp.concatenate([xw, y], axis=1)[:, -window:]
        return xw, y

    _, ys = jax.lax.scan(block, x, None, length=blocks)  # (blocks, batch, horizon, n_out)
    ys = jnp.moveaxis(ys, 0, 1).reshape(x.shape[0], blocks * model.horizon, n_out)[:, :steps]
    return ys[..., 0] if model.n_outputs is None else ys
