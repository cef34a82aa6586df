"""Training an amortised estimator: checks, training set, network fit, ranges (private).

:func:`_train` is the body of :meth:`~epinn.NeuralEstimator.train`: every argument is
checked in plain Python (:func:`_check_training`) before the training set is simulated,
the MLP is fitted on the Gaussian NLL of the standardised log-targets
(:func:`_fit_network`), and the ranges the out-of-prior checks compare with are recorded.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike

from .._checks import _MAX_INT, _check_int, _check_key, _check_positive, _check_verbose
from .._fitting import _check_activation, _check_finite_params, _check_hidden
from ..compartmental import CompartmentalModel
from ..data import Standardizer
from ..losses import gaussian_nll
from ..models import MLP
from ..training import EarlyStopping, History, NonFiniteLossError, fit
from ._features import normalize_curve
from ._prior import Prior
from ._setup import _check_simulation, _Spec
from ._simulate import SimulatedSet, _check_finite_simulation, simulate_training_set


class _Training(NamedTuple):
    """The checked settings of one training run."""

    model: CompartmentalModel
    spec: _Spec
    ts: np.ndarray
    t0: float
    simulator: str
    dt: float | None
    n_train: int
    n_val: int
    batch_size: int
    hidden: tuple[int, ...]
    activation: str
    epochs: int
    learning_rate: float
    patience: int
    verbose: int


class _Network(NamedTuple):
    """A fitted network and the standardisations of its inputs and outputs."""

    params: Any
    history: History
    x_scaler: Standardizer
    y_scaler: Standardizer


def _check_training(ts: Any, prior: Prior, model: Any, fixed: Any, t0: Any, observe: Any,
                    noise: Any, simulator: Any, dt: Any, seed_compartment: Any,
                    n_train: Any, n_val: Any, hidden: Any, activation: Any, epochs: Any,
                    batch_size: Any, learning_rate: Any, patience: Any, verbose: Any
                    ) -> _Training:
    """Every setting of :meth:`NeuralEstimator.train`, checked before anything compiles."""
    model, spec, ts_np, t0, simulator, dt = _check_simulation(
        ts, prior, model, fixed, t0, observe, noise, simulator, dt, seed_compartment)
    n_train = _check_int(n_train, "n_train", 1)
    n_val = _check_int(n_val, "n_val", 1)
    if n_train + n_val > _MAX_INT:
        raise ValueError(
            f"`n_train` + `n_val` must not exceed {_MAX_INT}; got {n_train + n_val}."
        )
    batch_size = _check_int(batch_size, "batch_size", 1)
    if batch_size > n_train:
        raise ValueError(
            f"`batch_size` ({batch_size}) must not exceed `n_train` ({n_train}): a "
            "minibatch is drawn from the training curves."
        )
    return _Training(
        model=model, spec=spec, ts=ts_np, t0=t0, simulator=simulator, dt=dt,
        n_train=n_train, n_val=n_val, batch_size=batch_size, hidden=_check_hidden(hidden),
        activation=_check_activation(activation, allow_callable=False),
        epochs=_check_int(epochs, "epochs", 1),
        learning_rate=_check_positive(learning_rate, "learning_rate"),
        patience=_check_int(patience, "patience", 0), verbose=_check_verbose(verbose),
    )


@functools.lru_cache(maxsize=16)
def _schedule(learning_rate: float, steps: int) -> optax.Schedule:
    """The cosine-decaying learning rate, one object per setting: :func:`epinn.fit` keys
    its compiled epoch on the optimizer, so equal settings then share one compilation."""
    return optax.cosine_decay_schedule(learning_rate, steps, alpha=0.02)


def _fit_network(key: jax.Array, x: Array, y: Array, s: _Training) -> _Network:
    """The MLP fitted to ``x -> y`` (the first ``n_train`` rows; the rest validate).

    Adam with a cosine-decaying learning rate, minibatches, early stopping on the
    validation NLL (best parameters restored). Raises :class:`~epinn.NonFiniteLossError`
    when the loss or the parameters stop being finite.
    """
    k_init, k_fit = key
    n = s.n_train
    x_scaler, y_scaler = Standardizer.fit(x[:n]), Standardizer.fit(y[:n])
    xs, ys = x_scaler.transform(x), y_scaler.transform(y)
    net = MLP((*s.hidden, 2 * y.shape[-1]), activation=s.activation)
    params = jax.jit(net.init)(k_init, xs[:1])
    steps = s.epochs * -(-n // s.batch_size)
    params, history = fit(
        net, params, xs[:n], ys[:n],
        loss=gaussian_nll, optimizer="adam", learning_rate=_schedule(s.learning_rate, steps),
        epochs=s.epochs,
        batch_size=s.batch_size, validation_data=(xs[n:], ys[n:]),
        early_stopping=EarlyStopping(monitor="val_loss", patience=s.patience), key=k_fit,
        verbose=s.verbose,
    )
    _check_finite_params(params, history, "training of the neural estimator")
    # The validation loss of the returned parameters (fit's own checks cover the rest).
    at = (history.params_epoch or len(history.val_loss)) - 1
    if history.val_loss and not math.isfinite(history.val_loss[at]):
        history.stop_reason = "non-finite loss"
        raise NonFiniteLossError(
            f"The training of the neural estimator ended with a non-finite validation "
            f"loss ({history.val_loss[at]}) at epoch {at + 1}; try a smaller "
            "`learning_rate`.",
            epoch=at + 1,
            history=history,
        )
    return _Network(params, history, x_scaler, y_scaler)


def _train(key: jax.Array, ts: ArrayLike, *, prior: Prior,
           model: CompartmentalModel | None, fixed: Mapping[str, float] | None,
           t0: float | None, observe: str, noise: str, simulator: str, dt: float | None,
           seed_compartment: str | None, n_train: int, n_val: int, hidden: Sequence[int],
           activation: str, epochs: int, batch_size: int, learning_rate: float,
           patience: int, verbose: int) -> dict[str, Any]:
    """The fields of a :class:`NeuralEstimator` trained as :meth:`NeuralEstimator.train`."""
    key = _check_key(key)
    s = _check_training(ts, prior, model, fixed, t0, observe, noise, simulator, dt,
                        seed_compartment, n_train, n_val, hidden, activation, epochs,
                        batch_size, learning_rate, patience, verbose)
    fixed = dict(s.spec.fixed)
    k_sim, k_init, k_fit = jr.split(key, 3)
    sim = simulate_training_set(
        k_sim, s.n_train + s.n_val, s.ts, prior=prior, model=s.model, fixed=fixed, t0=s.t0,
        observe=observe, noise=noise, simulator=s.simulator, dt=s.dt,
        seed_compartment=seed_compartment,
    )
    _check_finite_simulation(sim, prior)
    box = (*s.spec.rate_targets(prior), "R0")
    targets = box + tuple(k for k in ("I0", "reporting") if not prior.is_fixed(k))
    x = normalize_curve(sim.curves, sim.params["N"])
    net = _fit_network((k_init, k_fit), x, sim.log_params(targets), s)
    return dict(
        ts=tuple(float(t) for t in s.ts), t0=s.t0, prior=prior, model=s.model, fixed=fixed,
        observe=observe, noise=noise, hidden=s.hidden, activation=s.activation,
        targets=targets, net_params=net.params, x_scaler=net.x_scaler,
        y_scaler=net.y_scaler, **_training_ranges(sim, x, box, s.n_train),
        history=net.history, simulator=s.simulator, dt=s.dt,
        seed_compartment=seed_compartment,
    )


def _training_ranges(sim: SimulatedSet, x: Array, box: tuple[str, ...], n_train: int
                     ) -> dict[str, Any]:
    """The ranges of the training curves that the out-of-prior checks compare with: every
    feature, the log of each quantity in ``box`` and the peak's index."""
    logs = sim.log_params(box)[:n_train]
    peaks = np.asarray(jnp.argmax(sim.curves[:n_train], axis=-1))
    return dict(
        feature_range=(jnp.min(x[:n_train], 0), jnp.max(x[:n_train], 0)),
        log_range=(jnp.min(logs, 0), jnp.max(logs, 0)),
        peak_range=(int(peaks.min()), int(peaks.max())),
    )
