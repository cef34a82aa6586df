r"""The network fits' shared machinery (private).

One home for what :mod:`epinn.neural_beta`, :mod:`epinn.pinn` and :mod:`epinn.amortized`
share, so that no estimator imports another's private names:

* the MLP of normalised time (:class:`_TimeMLP`) and its initialisation;
* the compiled Adam / L-BFGS loop (:func:`_minimise`) and its convergence rule;
* the checks of a network fit's settings and inputs (:func:`_check_common`, built on
  :func:`epinn._least_squares._check_inputs`);
* :func:`_full_precision` (float32 matrix products at full precision during a fit), which
  every estimator uses.

The least-squares fits through the solver live in :mod:`epinn._least_squares`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from tqdm.auto import tqdm

from ._checks import _as_float, _check_int, _check_positive, _show, _suggest
from ._checks import _check_key as _check_one_key
from ._least_squares import _FIT_OBSERVABLES, _check_inputs
from .activations import ACTIVATIONS
from .compartmental import CompartmentalModel
from .models import MLP
from .training import History, NonFiniteLossError, get_optimizer

# Adam has no stopping rule: a fit counts as converged when the objective improved by less
# than this fraction over the last tenth of the steps.
_PLATEAU_RTOL = 0.1


def _full_precision(fit):
    """Run ``fit`` (and trace what it compiles) with float32 matrix products in full precision.

    On NVIDIA GPUs since Ampere JAX computes float32 products in TF32 by default (about 1e-3
    relative error), and the normal equations :math:`J^\\top J` of Gauss-Newton steps and
    covariances (whose condition number is squared) or finite-difference penalties on
    networks lose most of their digits to it. Fits are not limited by matrix-product
    throughput, so they always ask for ``"highest"``. Without effect on CPUs and in float64.
    """

    @functools.wraps(fit)
    def wrapper(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fit(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------
# The network of normalised time
# --------------------------------------------------------------------------------------


class _TimeMLP(nn.Module):
    """An :class:`epinn.MLP` of normalised time :math:`\\tau \\in [0, 1]`, fed ``2 tau - 1``.

    Its matrix products run at full float32 precision (``"highest"``): the smoothness
    penalty divides differences of the output by :math:`h^p` (:math:`h^2 = 2.5 \\times
    10^{-5}` for 201 points), which would amplify the ~1e-3 relative error of the TF32
    products that GPUs use by default into the penalty's leading term.
    """

    features: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, tau: Array) -> Array:
        mlp = MLP(tuple(self.features), activation=self.activation, precision="highest",
                  name="mlp")
        return mlp(2.0 * tau - 1.0)


def _init_time_mlp(net: _TimeMLP, key: Array, bias: Array, out_scale: float = 0.1):
    """Initialise ``net``; the output layer is shrunk by ``out_scale`` and its bias set.

    So the network starts close to the constant ``bias`` (per output) while every layer
    still receives gradients.
    """
    params = net.init(key, jnp.zeros((1,)))
    mlp = dict(params["params"]["mlp"])
    last = f"Dense_{len(net.features) - 1}"
    layer = mlp[last]
    mlp[last] = {
        "kernel": out_scale * layer["kernel"],
        "bias": jnp.broadcast_to(jnp.asarray(bias, layer["bias"].dtype), layer["bias"].shape),
    }
    return {"params": {"mlp": mlp}}


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


# --------------------------------------------------------------------------------------
# The training loop (shared with epinn.pinn)
# --------------------------------------------------------------------------------------


# Adam's learning-rate schedule in units of 1/1000 of the run: linear warm-up over the first
# tenth, then cosine decay to a tenth. Evaluated at ``1000 * step / steps`` so that ``steps``
# (and ``learning_rate``) stay traced values and fits of any length share one compilation.
_SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1.0, 100, 1000, 0.1)


def _make_tx(method: str) -> optax.GradientTransformation:
    """Adam at unit learning rate (scaled per step by the schedule) or L-BFGS (zoom line
    search). Adam skips updates with non-finite gradients (``optax.apply_if_finite``)."""
    if method == "adam":
        return optax.apply_if_finite(get_optimizer("adam", 1.0), max_consecutive_errors=20)
    return optax.lbfgs()


def _tree_where(cond: Array, a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


@eqx.filter_jit
def _init_state(method: str, params: Any) -> Any:
    return _make_tx(method).init(params)


@eqx.filter_jit
def _run_chunk(objective, method: str, length: int, carry, start, steps, learning_rate):
    """``length`` optimiser steps in one ``lax.scan``; steps numbered ``>= steps`` are no-ops.

    ``carry = (params, opt_state, best_params, best_loss)``. Returns the new carry and the
    objective (and its components) before each step (NaN for skipped steps).
    """
    tx = _make_tx(method)
    value = lambda p: objective(p)[0]  # noqa: E731
    aux_shape = jax.eval_shape(objective, carry[0])[1]

    def do(c, i):
        params, opt_state, best_params, best_loss = c
        if method == "adam":
            (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            lr = learning_rate * _SCHEDULE(1000.0 * i / steps)
            updates = jax.tree_util.tree_map(lambda u: lr * u, updates)
        else:
            loss, grads = optax.value_and_grad_from_state(value)(params, state=opt_state)
            updates, opt_state = tx.update(
                grads, opt_state, params, value=loss, grad=grads, value_fn=value
            )
            aux = objective(params)[1]
        better = loss < best_loss  # False for NaN
        best_params = _tree_where(better, params, best_params)
        best_loss = jnp.where(better, loss, best_loss)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, best_params, best_loss), (loss, aux)

    def skip(c, i):
        nan = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), aux_shape)
        return c, (jnp.full((), jnp.nan, carry[3].dtype), nan)

    def step(c, i):
        return jax.lax.cond(i < steps, do, skip, c, i)

    return jax.lax.scan(step, carry, start + jnp.arange(length))


def _minimise(
    objective: Callable[[Any], tuple[Array, dict[str, Array]]],
    params: Any,
    *,
    method: str,
    steps: int,
    learning_rate: float = 1e-2,
    chunk_size: int = 100,
    verbose: int = 0,
    desc: str = "fit",
    first_step: int = 1,
) -> tuple[Any, History]:
    """Minimise ``objective(params) -> (loss, aux)`` with Adam or L-BFGS.

    A compiled ``lax.scan`` over ``chunk_size`` steps runs once per chunk (tqdm over
    steps, updated per chunk); ``steps`` and ``learning_rate`` are traced, so runs of any
    length share the compilation. Returns the parameters with the lowest objective seen and
    a :class:`epinn.History` with one entry per step: ``train_loss`` holds the objective,
    ``metrics`` its components (the ``aux`` dict), ``epoch_time`` the seconds per chunk and
    ``compile_time`` the first chunk's time minus the median later chunk's (an estimate).

    Raises:
        NonFiniteLossError: the objective became NaN or infinite (the message names the
            step, counted from ``first_step``), or the best parameters hold a NaN or
            infinite value.
    """
    n_chunks = -(-steps // chunk_size)
    dtype = jax.eval_shape(objective, params)[0].dtype
    opt_state = _init_state(method, params)
    carry = (params, opt_state, params, jnp.asarray(jnp.inf, dtype))
    n_steps = jnp.asarray(steps, jnp.int32)
    lr = jnp.asarray(learning_rate, dtype)
    history = History()
    times = []
    with tqdm(total=steps, disable=not verbose, unit="step", desc=desc) as bar:
        for c in range(n_chunks):
            t_start = time.perf_counter()
            carry, (losses, aux) = _run_chunk(
                objective, method, chunk_size, carry, jnp.asarray(c * chunk_size, jnp.int32),
                n_steps, lr,
            )
            n = min(chunk_size, steps - c * chunk_size)
            losses = np.asarray(losses)[:n]
            aux = {k: np.asarray(v)[:n] for k, v in aux.items()}
            times.append(time.perf_counter() - t_start)
            history.train_loss.extend(float(v) for v in losses)
            for k, v in aux.items():
                history.metrics.setdefault(k, []).extend(float(x) for x in v)
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                step = first_step + c * chunk_size + int(bad[0])
                history.stop_reason = "non-finite loss"
                raise NonFiniteLossError(
                    f"The {desc} objective became {losses[bad[0]]} at step {step}; try a "
                    "smaller `learning_rate` or check the data (the error's `history` holds "
                    "the steps before).",
                    epoch=step,
                    history=history,
                )
            bar.update(n)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
    history.epoch_time = times
    later = float(np.median(times[1:])) if len(times) > 1 else 0.0
    history.compile_time = max(times[0] - later, 0.0)
    history.stop_reason = "completed"
    best = int(np.nanargmin(np.where(np.isfinite(history.train_loss), history.train_loss,
                                     np.inf)))
    history.best_epoch = history.params_epoch = best + 1
    _check_finite_params(carry[2], history, desc)
    return carry[2], history


def _plateaued(losses: Sequence[float], rtol: float = _PLATEAU_RTOL) -> bool:
    """The objective improved by less than ``rtol`` (relative) over the last tenth of steps."""
    losses = np.asarray(losses, dtype=float)
    if losses.size < 2 or not np.isfinite(losses[-1]):
        return False
    k = max(1, losses.size // 10)
    before, best = np.nanmin(losses[:-k]), np.nanmin(losses)
    return bool(before - best <= rtol * abs(best))


# --------------------------------------------------------------------------------------
# Validation and set-up shared with epinn.pinn
# --------------------------------------------------------------------------------------


# The ODE solver's step limit: diffrax counts steps in int32 and sizes its checkpoints by it.
_MAX_SOLVER_STEPS = 2**24


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 NumPy array; a TypeError names ``name`` (strings, complex
    numbers, ragged nests and other objects that are not real numbers)."""
    try:
        a = np.asarray(value)
        if a.dtype.kind in "USVcmM":
            raise TypeError
        return a.astype(float)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be an array of real numbers; got {_show(value)}.") from None


def _check_nonnegative(value: Any, name: str) -> float:
    x = _as_float(value, name)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"`{name}` must be >= 0 and finite; got {value!r}.")
    return x


def _check_activation(value: Any, *, allow_callable: bool = True) -> Any:
    """An activation name of :data:`epinn.activations.ACTIVATIONS` (any case) or, when
    allowed, a callable; unknown names get the closest valid one suggested."""
    if isinstance(value, str):
        if value.lower() not in ACTIVATIONS:
            raise ValueError(
                f"Unknown `activation` {value!r}{_suggest(value, sorted(ACTIVATIONS))}; valid "
                f"names are {sorted(ACTIVATIONS)}."
            )
        return value
    if allow_callable and callable(value):
        return value
    kind = "a name or a callable" if allow_callable else "a name (it is saved as JSON)"
    raise TypeError(f"`activation` must be {kind}; got {_show(value)}.")


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    msg = f"`hidden` must be a non-empty sequence of positive ints; got {_show(hidden)}."
    if isinstance(hidden, (str, bytes, Mapping)) or not isinstance(hidden, Iterable):
        raise TypeError(msg)
    sizes = tuple(hidden)
    if not sizes:
        raise ValueError(msg)
    for i, h in enumerate(sizes):
        _check_int(h, f"hidden[{i}]", 1)
    return tuple(int(h) for h in sizes)


def _require_key(key: Any) -> Array:
    """A required key: ValueError for ``None``, then :func:`epinn._checks._check_key`'s
    TypeError for anything but one ``jax.random`` key."""
    if key is None:
        raise ValueError("`key` is required (it initialises the network); pass jax.random.key(0).")
    return _check_one_key(key, "key")


def _check_finite_params(params: Any, history: History, what: str) -> None:
    """Raise :class:`epinn.NonFiniteLossError` if a trained parameter is NaN or infinite."""
    bad = [jax.tree_util.keystr(p) for p, v in jax.tree_util.tree_leaves_with_path(params)
           if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        history.stop_reason = "non-finite parameters"
        raise NonFiniteLossError(
            f"The {what} ended with non-finite parameters ({', '.join(bad[:3])}); try a "
            "smaller `learning_rate` or check the data.",
            epoch=len(history.train_loss),
            history=history,
        )


def _check_common(model, ts, data, y0, N, rates, t0):
    """Validate a network fit's inputs through :func:`_check_inputs`; returns ts, t0,
    obs, N and ``y0`` as floats (arrays by group for stratified models).

    Every conversion of user input happens here first, with an error naming the argument
    (``ts``, ``t0``, ``data['I']``, ``y0['S']``, ``N``).
    """
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be a CompartmentalModel such as SIR(); got {model!r}.")
    if not isinstance(data, Mapping):
        raise TypeError("`data` must be a mapping {observation name: counts}, e.g. {'I': counts}.")
    if not isinstance(y0, Mapping):
        raise TypeError("`y0` must be a mapping by compartment name, e.g. {'S': 762, ...}.")
    ts = _as_float_array(ts, "ts")
    t0 = None if t0 is None else _as_float(t0, "t0")
    if t0 is not None and not math.isfinite(t0):
        raise ValueError(f"`t0` must be finite; got {t0}.")
    valid = (*model.compartments, *_FIT_OBSERVABLES)
    for k in data:
        if k not in valid:
            hint = _suggest(k, valid) if isinstance(k, str) else ""
            raise ValueError(f"`data` has unknown observation {k!r}{hint}; valid names are "
                             f"{valid}.")
    data = {k: _as_float_array(v, f"data[{k!r}]") for k, v in data.items()}
    values = {}
    for k, v in y0.items():
        if model.groups is None:
            x = _as_float(v, f"y0[{k!r}]")
        else:  # a number for every group, or one value per group
            x = np.broadcast_to(_as_float_array(v, f"y0[{k!r}]"), (model.n_groups,)).copy() \
                if np.shape(v) in ((), (model.n_groups,)) else _as_float(v, f"y0[{k!r}]")
        if not (np.all(np.isfinite(x)) and np.all(np.asarray(x) >= 0)):
            raise ValueError(f"`y0[{k!r}]` must be >= 0 and finite; got {v!r}.")
        values[k] = x
    if N is None:
        N = sum(values.values())
        N = float(N) if model.groups is None else N
    if model.groups is None or np.ndim(N) == 0:
        N = _check_positive(N, "N")
    else:
        N = _as_float_array(N, "N")
        if N.shape != (model.n_groups,) or not np.all(np.isfinite(N)) or np.any(N <= 0):
            raise ValueError(f"`N` must be the {model.n_groups} positive group sizes; got "
                             f"{N.tolist()}.")
    init = {name: 1.0 for name in model.rate_names}
    init.update(rates)
    init["N"] = N
    ts, t0, obs, _, _ = _check_inputs(model, ts, data, values, init, None, "mse", t0,
                                      can_free=False)
    by_group = [k for k, v in obs.items() if v.ndim != 1]
    if by_group:
        raise ValueError(f"`data` of {by_group} must be one series summed over the groups, "
                         f"shape {ts.shape}; the network fits do not take them by group.")
    return ts, t0, obs, N, values


def _guess_beta(model, ts, obs, y0, t0, N, gamma):
    r"""A start for :math:`\beta`: :math:`(\gamma + r) N / S_0` with the growth rate
    :math:`r = \log(I_\text{peak} / I_0) / (t_\text{peak} - t_0)` when ``I`` is observed
    (and the data rise above :math:`I_0`), else :math:`2\gamma N/S_0`."""
    N = float(np.sum(N))
    s0 = max(float(np.sum(y0.get("S", N))), 1e-12 * N)
    r = gamma
    if "I" in obs and float(np.sum(y0.get("I", 0.0))) > 0:
        k = int(np.argmax(obs["I"]))
        i0, ik, dt = float(np.sum(y0["I"])), float(obs["I"][k]), float(ts[k]) - t0
        if ik > i0 and dt > 0:
            r = math.log(ik / i0) / dt
    return (gamma + r) * N / s0


def _shifted_grid(ts: np.ndarray, t0: float) -> tuple[np.ndarray, int]:
    """Observation grid in time since ``t0``, starting at 0; offset 1 if ``t0 < ts[0]``."""
    offset = 1 if t0 < ts[0] else 0
    grid = np.concatenate([[t0], ts]) if offset else ts
    return grid - t0, offset


def _merge_grids(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted union of two increasing grids, with points closer than 1e-6 of the span
    merged (so it stays strictly increasing in float32); returns it and the indices of
    ``a``'s and ``b``'s points in it."""
    both = np.sort(np.concatenate([a, b]))
    tol = 1e-6 * max(float(both[-1] - both[0]), 1.0)
    keep = np.concatenate([[True], np.diff(both) > tol])
    both = both[keep]

    def index(x):
        i = np.clip(np.searchsorted(both, x), 1, len(both) - 1)
        return np.where(np.abs(both[i - 1] - x) <= np.abs(both[i] - x), i - 1, i)

    return both, index(a), index(b)


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((pred - y) ** 2)) / ss if ss > 0 else math.nan


