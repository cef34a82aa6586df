"""Neural-network models as Flax Linen modules (pure ``init`` / ``apply``)."""

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from .activations import get_activation

__all__ = ["MLP", "FusedGRUCell", "FusedLSTMCell", "RNNForecaster", "rollout"]


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


# --------------------------------------------------------------------------------------
# Recurrent forecasters
# --------------------------------------------------------------------------------------

_CELLS = ("lstm", "gru")
_IMPLEMENTATIONS = ("fused", "flax")


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")


def _blockwise(init: Callable[..., jax.Array], blocks: int) -> Callable[..., jax.Array]:
    """An initialiser that draws ``blocks`` independent ``(n, m)`` blocks side by side.

    Flax's cells keep one ``(n, hidden)`` kernel per gate and initialise each on its own
    (e.g. an orthogonal recurrent kernel per gate); the fused cells store the gates side by
    side, ``(n, blocks * hidden)``, and draw them the same way.
    """

    def initializer(key, shape, dtype=jnp.float32):
        n, total = shape
        keys = jax.random.split(key, blocks)
        return jnp.concatenate([init(k, (n, total // blocks), dtype) for k in keys], axis=-1)

    return initializer


def _gate_scales(hidden: int, kinds: str, dtype) -> tuple[jax.Array, jax.Array]:
    """Scale ``s`` and shift ``b`` with ``act(g) = s * tanh(s * g) + b`` per gate block.

    ``"s"`` (logistic sigmoid) uses :math:`\\sigma(g) = \\tfrac12 + \\tfrac12\\tanh(g/2)`,
    ``"t"`` is :math:`\\tanh(g)` itself; so all gates take one ``tanh`` over the stacked
    pre-activations.
    """
    s = jnp.concatenate([jnp.full((hidden,), 0.5 if k == "s" else 1.0, dtype) for k in kinds])
    b = jnp.concatenate([jnp.full((hidden,), 0.5 if k == "s" else 0.0, dtype) for k in kinds])
    return s, b


class FusedLSTMCell(nn.RNNCellBase):
    r"""LSTM cell with stacked gate kernels; the same function as :class:`flax.linen.LSTMCell`.

    .. math::

        \begin{aligned}
        (a_i, a_f, a_g, a_o) &= x W_x + h W_h + b, \\
        i = \sigma(a_i),\ f &= \sigma(a_f),\ g = \tanh(a_g),\ o = \sigma(a_o), \\
        c' = f \odot c + i \odot g&, \qquad h' = o \odot \tanh(c').
        \end{aligned}

    Hand-written (Flax's :class:`~flax.linen.OptimizedLSTMCell` computes the same) because
    ``benchmarks/bench_rnn.py`` measured it faster on CPU: the gate kernels are stored
    already stacked (Flax concatenates its eight per-gate kernels inside every time step)
    and all four gates take one ``tanh`` over the stacked pre-activations, with
    :math:`\sigma(a) = \tfrac12 + \tfrac12 \tanh(a/2)` (XLA's CPU ``tanh`` is cheaper than
    its logistic function; for :math:`a \ll 0` the gate rounds to 0 instead of
    :math:`e^{a}`, an absolute error below ``6e-8`` in float32). Gate order and
    initialisation (LeCun-normal input kernels, an orthogonal recurrent kernel per gate,
    zero bias) follow :class:`flax.linen.LSTMCell`; ``tests/test_rnn.py`` checks the cell
    against Flax's with the same weights.

    Attributes:
        features: hidden size :math:`H`.

    Parameters: ``input_kernel`` :math:`W_x` ``(F, 4H)``, ``recurrent_kernel`` :math:`W_h`
    ``(H, 4H)``, ``bias`` ``(4H,)``; gate blocks in the order ``i, f, g, o``.
    """

    features: int
    kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init
    recurrent_kernel_init: Callable[..., jax.Array] = nn.initializers.orthogonal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], inputs: jax.Array):
        c, h = carry
        hid = self.features
        wx = self.param(
            "input_kernel", _blockwise(self.kernel_init, 4), (inputs.shape[-1], 4 * hid)
        )
        wh = self.param(
            "recurrent_kernel", _blockwise(self.recurrent_kernel_init, 4), (hid, 4 * hid)
        )
        b = self.param("bias", self.bias_init, (4 * hid,))
        s, shift = _gate_scales(hid, "ssts", h.dtype)
        act = s * jnp.tanh(s * (inputs @ wx + h @ wh + b)) + shift
        i, f, g, o = jnp.split(act, 4, axis=-1)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """Zero ``(c, h)`` for inputs of shape ``(*batch, features_in)``."""
        shape = (*input_shape[:-1], self.features)
        return jnp.zeros(shape), jnp.zeros(shape)

    @property
    def num_feature_axes(self) -> int:
        return 1


class FusedGRUCell(nn.RNNCellBase):
    r"""GRU cell with stacked gate kernels; the same function as :class:`flax.linen.GRUCell`.

    .. math::

        \begin{aligned}
        r &= \sigma(x W_{xr} + b_{xr} + h W_{hr}), \qquad
        z = \sigma(x W_{xz} + b_{xz} + h W_{hz}), \\
        n &= \tanh\big(x W_{xn} + b_{xn} + r \odot (h W_{hn} + b_{hn})\big), \qquad
        h' = (1 - z) \odot n + z \odot h.
        \end{aligned}

    Hand-written for the same reasons as :class:`FusedLSTMCell` (stacked kernels, the
    sigmoids through one ``tanh``); gate order ``r, z, n`` and initialisation follow
    :class:`flax.linen.GRUCell`, and ``tests/test_rnn.py`` checks it against Flax's cell.

    Attributes:
        features: hidden size :math:`H`.

    Parameters: ``input_kernel`` ``(F, 3H)``, ``input_bias`` ``(3H,)``,
    ``recurrent_kernel`` ``(H, 3H)``, ``recurrent_bias`` :math:`b_{hn}` ``(H,)``.
    """

    features: int
    kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init
    recurrent_kernel_init: Callable[..., jax.Array] = nn.initializers.orthogonal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, carry: jax.Array, inputs: jax.Array):
        h = carry
        hid = self.features
        wx = self.param(
            "input_kernel", _blockwise(self.kernel_init, 3), (inputs.shape[-1], 3 * hid)
        )
        bx = self.param("input_bias", self.bias_init, (3 * hid,))
        wh = self.param(
            "recurrent_kernel", _blockwise(self.recurrent_kernel_init, 3), (hid, 3 * hid)
        )
        bn = self.param("recurrent_bias", self.bias_init, (hid,))
        ax = inputs @ wx + bx
        ah = h @ wh
        s, shift = _gate_scales(hid, "ss", h.dtype)
        rz = s * jnp.tanh(s * (ax[..., : 2 * hid] + ah[..., : 2 * hid])) + shift
        r, z = rz[..., :hid], rz[..., hid:]
        n = jnp.tanh(ax[..., 2 * hid :] + r * (ah[..., 2 * hid :] + bn))
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """Zero ``h`` for inputs of shape ``(*batch, features_in)``."""
        return jnp.zeros((*input_shape[:-1], self.features))

    @property
    def num_feature_axes(self) -> int:
        return 1


def _make_cell(cell: str, implementation: str, hidden: int) -> nn.RNNCellBase:
    if implementation == "fused":
        cls = FusedLSTMCell if cell == "lstm" else FusedGRUCell
    else:
        cls = nn.OptimizedLSTMCell if cell == "lstm" else nn.GRUCell
    return cls(features=hidden, parent=None)  # adopted by nn.RNN as its ``cell``


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
        implementation: ``"fused"`` (:class:`FusedLSTMCell` / :class:`FusedGRUCell`, the
            faster default) or ``"flax"`` (:class:`flax.linen.OptimizedLSTMCell` /
            :class:`flax.linen.GRUCell`); both compute the same function.
        unroll: time steps per iteration of the recurrent ``scan``.

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
    implementation: str = "fused"
    unroll: int = 1

    def __post_init__(self):
        if self.cell not in _CELLS:
            raise ValueError(f"`cell` must be one of {_CELLS}; got {self.cell!r}.")
        for name in ("hidden", "layers", "horizon", "unroll"):
            _check_positive_int(getattr(self, name), name)
        if self.n_outputs is not None:
            _check_positive_int(self.n_outputs, "n_outputs")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); got {self.dropout_rate}.")
        if self.implementation not in _IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {_IMPLEMENTATIONS}; got {self.implementation!r}."
            )
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
        h = x
        for layer in range(self.layers):
            cell = _make_cell(self.cell, self.implementation, self.hidden)
            h = nn.RNN(cell, unroll=self.unroll, name=f"rnn_{layer}")(h)
            if self.dropout_rate > 0.0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        n_out = 1 if self.n_outputs is None else self.n_outputs
        y = nn.Dense(self.horizon * n_out, name="head")(h[:, -1])
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
    x = jnp.asarray(x)
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
