"""Saving and loading a trained estimator: msgpack arrays and a JSON sidecar (private).

:func:`_save` writes the arrays with :func:`epinn.save_checkpoint` and the configuration,
a SHA-256 digest of the arrays and the training history in the sidecar; :func:`_load`
checks the sidecar, the model and the digest before it rebuilds the estimator. Used by
:meth:`~epinn.NeuralEstimator.save` and ``load``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .. import compartmental as _compartmental
from .._checks import _check_choice, _check_int, _check_positive, _show
from .._fitting import _check_activation, _check_hidden
from ..compartmental import CompartmentalModel
from ..data import Standardizer
from ..models import MLP
from ..training import load_checkpoint, save_checkpoint
from ._prior import Prior
from ._setup import _NOISE, _OBSERVE, SIMULATORS, _check_ts, _model_name, _resolve

if TYPE_CHECKING:
    from ._estimator import NeuralEstimator


def _config(est: NeuralEstimator) -> dict[str, Any]:
    """:meth:`NeuralEstimator.config`: everything but the arrays, JSON-serialisable."""
    return {
        "kind": "epinn.NeuralEstimator",
        "ts": list(est.ts),
        "t0": est.t0,
        "prior": est.prior.to_dict(),
        "model": type(est.model).__name__,
        "model_definition": _definition(est.model),
        "fixed": dict(est.fixed),
        "observe": est.observe,
        "noise": est.noise,
        "hidden": list(est.hidden),
        "activation": est.activation,
        "targets": list(est.targets),
        "peak_range": list(est.peak_range),
        "dtype": str(jnp.asarray(est.x_scaler.mean).dtype),
        "simulator": est.simulator,
        "dt": est.dt,
        "seed_compartment": est.seed_compartment,
    }


def _arrays(est: NeuralEstimator) -> dict[str, Any]:
    """The estimator's arrays, as saved (the template of :func:`_settings_from_config`)."""
    return {
        "net": est.net_params,
        "x_mean": est.x_scaler.mean, "x_scale": est.x_scaler.scale,
        "y_mean": est.y_scaler.mean, "y_scale": est.y_scaler.scale,
        "feature_lo": est.feature_range[0], "feature_hi": est.feature_range[1],
        "log_lo": est.log_range[0], "log_hi": est.log_range[1],
    }


def _save(est: NeuralEstimator, path: Any) -> Path:
    """:meth:`NeuralEstimator.save`."""
    path = _check_path(path)
    if path.is_dir():
        raise ValueError(f"`path` {str(path)!r} is a directory; give a file name in it.")
    arrays = _arrays(est)
    config = {**_config(est), "arrays_sha256": _digest(arrays)}
    try:
        return save_checkpoint(path, arrays, history=est.history, config=config)
    except OSError as err:  # e.g. a read-only folder: say which file, not the temp file
        raise type(err)(
            f"Cannot write the estimator to `path` {str(path)!r}: {err.strerror or err}."
        ) from err


def _load(cls: type[NeuralEstimator], path: Any, model: CompartmentalModel | None
          ) -> NeuralEstimator:
    """:meth:`NeuralEstimator.load`: sidecar, model and digest checked before the arrays
    are trusted."""
    path = _check_path(path)
    sidecar = path.with_name(path.name + ".json")
    if path.is_dir():
        raise ValueError(f"`path` {str(path)!r} is a directory, not a saved estimator.")
    if not path.is_file() or not sidecar.is_file():
        raise FileNotFoundError(
            f"`path`: no estimator at {str(path)!r} (needs the file and its .json sidecar)."
        )
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"The sidecar {str(sidecar)!r} of `path` is not readable JSON: "
                         f"{err}") from err
    cfg = (meta.get("config") if isinstance(meta, dict) else None) or {}
    if not isinstance(cfg, dict) or cfg.get("kind") != "epinn.NeuralEstimator":
        raise ValueError(f"`path` {str(path)!r} is not a saved NeuralEstimator.")
    _check_saved_model(cfg, model)
    try:
        settings, template = _settings_from_config(cfg, model)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"The sidecar {str(sidecar)!r} of `path` holds a damaged estimator "
            f"configuration: {type(err).__name__}: {err}"
        ) from err
    try:
        ck = load_checkpoint(path, template)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"`path` {str(path)!r} does not hold the arrays its sidecar "
                         f"describes: {err}") from err
    a = ck.params
    digest = cfg.get("arrays_sha256")
    if digest is not None and digest != _digest(a):
        raise ValueError(
            f"`path` {str(path)!r} is damaged: its arrays do not match the SHA-256 digest "
            f"saved in {str(sidecar)!r}."
        )
    return cls(
        **settings,
        net_params=a["net"],
        x_scaler=Standardizer(a["x_mean"], a["x_scale"]),
        y_scaler=Standardizer(a["y_mean"], a["y_scale"]),
        feature_range=(a["feature_lo"], a["feature_hi"]),
        log_range=(a["log_lo"], a["log_hi"]),
        history=ck.history,
    )


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or path-like; got {_show(path)}.")
    return Path(path)


def _digest(arrays: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (in tree order)."""
    h = hashlib.sha256()
    for p, leaf in jax.tree_util.tree_leaves_with_path(arrays):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(p)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _definition(model: CompartmentalModel) -> dict[str, Any]:
    """What identifies a model in a saved estimator (its rate functions are code)."""
    return {
        "name": _model_name(model),
        "compartments": list(model.compartments),
        "params": list(model.rate_names),
        "flows": [[f.source, f.target, f.name, bool(f.infection)] for f in model.flows],
    }


def _builtin_class(name: Any) -> type | None:
    cls = getattr(_compartmental, name, None) if isinstance(name, str) else None
    ok = isinstance(cls, type) and issubclass(cls, CompartmentalModel) and cls is not \
        CompartmentalModel
    return cls if ok else None


def _check_saved_model(cfg: dict[str, Any], model: Any) -> None:
    """A custom model must be passed to :meth:`NeuralEstimator.load` and match the saved
    definition; checked before the rest of the configuration."""
    saved = cfg.get("model_definition")
    if model is None:
        if _builtin_class(cfg.get("model")) is None and isinstance(saved, dict):
            raise ValueError(
                f"The estimator was trained on the model {saved.get('name')!r}, which is not "
                "a built-in: pass it, `NeuralEstimator.load(path, model=your_model)`."
            )
        return
    if not isinstance(model, CompartmentalModel):
        raise TypeError(f"`model` must be an epinn.Model; got {_show(model)}.")
    if isinstance(saved, dict) and _definition(model) != saved:
        raise ValueError(
            f"`model` {_model_name(model)} differs from the model the estimator was trained "
            f"on: saved {saved}, given {_definition(model)}."
        )


def _settings_from_config(cfg: dict[str, Any], model: CompartmentalModel | None = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The non-array fields of a saved estimator and the template of its arrays."""
    if model is None:
        model_cls = _builtin_class(cfg["model"])
        if model_cls is None:
            raise ValueError(f"unknown model {cfg['model']!r}")
        model = model_cls()
    targets = tuple(str(t) for t in cfg["targets"])
    box = tuple(k for k in targets if k not in ("I0", "reporting"))
    observe = _check_choice(cfg["observe"], "observe", _OBSERVE)
    ts_np, t0 = _check_ts(cfg["ts"], cfg["t0"], observe)
    hidden = _check_hidden(cfg["hidden"])
    activation = _check_activation(cfg["activation"], allow_callable=False)
    T, d = ts_np.size, len(targets)
    net = MLP((*hidden, 2 * d), activation=activation)
    dtype = jnp.dtype(cfg.get("dtype", "float32"))
    vec = lambda k: jnp.zeros((k,), dtype)  # noqa: E731
    template = {
        "net": jax.eval_shape(net.init, jr.PRNGKey(0), jnp.zeros((1, T + 1), dtype)),
        "x_mean": vec(T + 1), "x_scale": vec(T + 1), "y_mean": vec(d), "y_scale": vec(d),
        "feature_lo": vec(T + 1), "feature_hi": vec(T + 1),
        "log_lo": vec(len(box)), "log_hi": vec(len(box)),
    }
    template["net"] = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), template["net"]
    )
    prior = Prior.from_dict(cfg["prior"])
    simulator = _check_choice(cfg.get("simulator", "ode"), "simulator", SIMULATORS)
    dt = cfg.get("dt")
    seed = cfg.get("seed_compartment")
    _, spec = _resolve(model, prior, cfg["fixed"], seed, observe)
    if "R0" not in box or any(k != "R0" and k not in model.rate_names for k in box):
        raise ValueError(f"`targets` {targets} do not match the model's parameters")
    settings = dict(
        ts=tuple(float(t) for t in ts_np),
        t0=t0,
        prior=prior,
        model=model,
        fixed=dict(spec.fixed),
        simulator=simulator,
        dt=None if dt is None else _check_positive(dt, "dt"),
        seed_compartment=seed,
        observe=observe,
        noise=_check_choice(cfg["noise"], "noise", _NOISE),
        hidden=hidden,
        activation=activation,
        targets=targets,
        peak_range=tuple(_check_int(i, "peak_range", 0, T - 1) for i in cfg["peak_range"]),
    )
    if len(settings["peak_range"]) != 2:
        raise ValueError(f"`peak_range` must be a pair; got {cfg['peak_range']!r}")
    return settings, template
