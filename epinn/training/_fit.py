""":func:`fit`: checks, the epoch compiled once, then one compiled call and one host sync
per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh
from jax.typing import ArrayLike
from tqdm.auto import tqdm

from .._checks import _check_key, _did_you_mean
from ..losses import check_targets
from ..sharding import replicated, resolve_mesh
from ._epoch import _epoch, _epoch_inputs, _EpochConfig
from ._errors import _check_divergence, _check_finite_epoch
from ._history import EarlyStopping, History
from ._inputs import (
    _apply_fns,
    _check_int,
    _check_params_finite,
    _check_shapes,
    _check_xy,
    _first,
)
from ._metrics import _resolve_loss, _resolve_metrics
from ._optimizers import _fit_optimizer

PyTree = Any


def _progress_postfix(logs: Mapping[str, float]) -> dict[str, str]:
    keys = ["loss", "val_loss"] + [k for k in logs if k not in ("loss", "val_loss", "objective")]
    return {k: f"{logs[k]:.4g}" for k in keys if k in logs}


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
    gives one device per core: XLA runs a training step on one core otherwise (the
    benchmarks page has the measured gain).

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
