"""Checkpoints: msgpack arrays plus a JSON sidecar (config, history, versions, SHA-256),
written atomically (:func:`save_checkpoint`) and verified on loading (:func:`load_checkpoint`)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._version import __version__
from ._history import History

PyTree = Any


_FORMAT = "epinn-checkpoint"
_FORMAT_VERSION = 2  # 2 added the SHA-256 of the arrays' bytes; 1 still loads


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns."""

    params: PyTree
    opt_state: PyTree | None
    history: History | None
    config: Any
    metadata: dict[str, Any]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_path(path: Any, name: str = "path") -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a str or os.PathLike; got {type(path).__name__}.")
    path = Path(path)
    if str(path) in ("", ".") or path.is_dir():
        raise IsADirectoryError(f"`{name}` {str(path)!r} is a directory, not a checkpoint file.")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(
    path: str | os.PathLike,
    params: PyTree,
    opt_state: PyTree | None = None,
    history: History | None = None,
    config: Any = None,
) -> Path:
    """Save parameters (and optimizer state) with msgpack, plus a JSON sidecar.

    The arrays go to ``path`` through :func:`flax.serialization.to_bytes` (msgpack: exact
    bytes, dtypes and shapes; no pickle). ``path + ".json"`` holds the ``config``, the
    ``history``, the library versions, a description of the saved tree and the SHA-256 of
    ``path``'s bytes, which :func:`load_checkpoint` verifies. Both files are
    written atomically (a temporary file in the same folder, then ``os.replace``), so a
    crash never leaves a half-written checkpoint.

    Args:
        path: the checkpoint file, e.g. ``"results/model.msgpack"``; its folder must exist.
        params: the parameter PyTree.
        opt_state: the optax state, to resume training.
        history: a :class:`History` (or its ``to_dict()``).
        config: anything JSON-serialisable describing the run (model sizes, seeds...).

    Returns:
        The checkpoint path.

    Raises:
        TypeError: ``path`` is not a str or path, or ``config`` or ``history`` is not
            JSON-serialisable.
        ValueError: the folder of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        PermissionError: the folder of ``path`` is not writable.
    """
    path = _check_path(path)
    if not path.parent.is_dir():
        raise ValueError(f"`path`: folder {str(path.parent)!r} does not exist.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"`path`: folder {str(path.parent)!r} is not writable.")
    hist = history.to_dict() if isinstance(history, History) else history
    meta = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {
            "epinn": _epinn_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
        },
        "has_opt_state": opt_state is not None,
        "params_structure": str(jax.tree_util.tree_structure(params)),
        "config": config,
        "history": hist,
    }
    payload = {"params": params}
    if opt_state is not None:
        payload["opt_state"] = opt_state
    try:
        data = flax.serialization.to_bytes(payload)
    except (TypeError, ValueError) as err:  # msgpack: objects that are not arrays or numbers
        raise TypeError(f"`params` and `opt_state` must be PyTrees of arrays and numbers to be "
                        f"saved: {err}") from err
    meta["sha256"] = _sha256(data)
    try:
        text = json.dumps(meta, indent=2, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`config` and `history` must be JSON-serialisable: {err}") from err
    _atomic_write(path, data)
    _atomic_write(_sidecar(path), text.encode())
    return path


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON sidecar as a dict (``{}`` when there is none)."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"The checkpoint sidecar {str(sidecar)!r} is not valid JSON: {err}"
                         ) from err
    if not isinstance(meta, dict):
        raise ValueError(f"The checkpoint sidecar {str(sidecar)!r} must hold a JSON object; "
                         f"got {type(meta).__name__}.")
    return meta


def _epinn_version() -> str:
    return __version__


def _restore(template: PyTree, state: Any, name: str) -> PyTree:
    arg = "template" if name == "params" else "opt_state_template"
    try:
        restored = flax.serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"The checkpoint's {name} do not match the structure of `{arg}`: "
                         f"{err}") from err
    if jax.tree_util.tree_structure(restored) != jax.tree_util.tree_structure(template):
        raise ValueError(f"The checkpoint's {name} do not match the structure of `{arg}`.")
    # flax does not compare shapes or dtypes; do it leaf by leaf.
    flat_t = jax.tree_util.tree_leaves_with_path(template)
    flat_r = jax.tree_util.tree_leaves(restored)
    for (p, t), r in zip(flat_t, flat_r):
        ts, rs = np.shape(t), np.shape(r)
        td, rd = np.asarray(t).dtype, np.asarray(r).dtype
        if ts != rs or td != rd:
            raise ValueError(
                f"The checkpoint's {name} at {jax.tree_util.keystr(p)} has shape {rs} dtype "
                f"{rd}, the template shape {ts} dtype {td}."
            )
    return jax.tree_util.tree_map(jnp.asarray, restored)


def load_checkpoint(
    path: str | os.PathLike, template: PyTree, opt_state_template: PyTree | None = None
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` into a template's structure.

    Args:
        path: the checkpoint file.
        template: a PyTree with the structure, shapes and dtypes of the saved parameters
            (e.g. ``model.init(key, x)``); its values are not used.
        opt_state_template: the same for the optimizer state (e.g. ``tx.init(template)``),
            to restore it; without it ``opt_state`` is ``None``.

    Returns:
        A :class:`Checkpoint` ``(params, opt_state, history, config, metadata)``.

    Raises:
        TypeError: ``path`` is not a str or path.
        FileNotFoundError: no checkpoint at ``path``.
        IsADirectoryError: ``path`` is a directory.
        ValueError: the file is not a checkpoint, its bytes differ from the SHA-256 its
            sidecar recorded (a corrupt or altered file), the sidecar is not valid JSON,
            the saved tree differs from the template (keys, structure, shapes or dtypes),
            or there is no optimizer state to restore.

    Warns:
        UserWarning: the sidecar is missing, or records no SHA-256 (a checkpoint of
            format 1): the file loads, unverified.

    Examples:
        >>> import tempfile, os, jax.numpy as jnp
        >>> p = {"w": jnp.arange(3.0)}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_checkpoint(os.path.join(d, "m.msgpack"), p, config={"lr": 0.1})
        ...     ck = load_checkpoint(os.path.join(d, "m.msgpack"), p)
        >>> ck.params["w"].tolist(), ck.config
        ([0.0, 1.0, 2.0], {'lr': 0.1})
    """
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at `path` {str(path)!r}.")
    data = path.read_bytes()
    meta = _read_sidecar(path)
    expected = meta.get("sha256")
    if expected is not None and _sha256(data) != expected:
        raise ValueError(
            f"Checkpoint {str(path)!r} is corrupt or was altered: the SHA-256 of its bytes "
            f"differs from the one recorded in {str(_sidecar(path))!r} when it was saved."
        )
    try:
        state = flax.serialization.msgpack_restore(data)
    except Exception as err:  # msgpack's ExtraData, FormatError, ... on a corrupt file
        raise ValueError(
            f"`path` {str(path)!r} is not a readable msgpack checkpoint: {err!r}"
        ) from err
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"`path` {str(path)!r} is not an epinn checkpoint.")
    params = _restore(template, state["params"], "params")
    opt_state = None
    if opt_state_template is not None:
        if "opt_state" not in state:
            raise ValueError("`opt_state_template` given, but the checkpoint has no opt_state.")
        opt_state = _restore(opt_state_template, state["opt_state"], "opt_state")
    hist = meta.get("history")
    try:
        history = History.from_dict(hist) if hist is not None else None
    except TypeError as err:
        raise ValueError(f"The sidecar {str(_sidecar(path))!r} holds a malformed history: "
                         f"{err}") from err
    if expected is None:
        warnings.warn(
            f"Checkpoint {str(path)!r} has no SHA-256 in its sidecar "
            f"{str(_sidecar(path))!r} (missing, or an older format): loaded unverified.",
            UserWarning, stacklevel=2,
        )
    return Checkpoint(
        params=params,
        opt_state=opt_state,
        history=history,
        config=meta.get("config"),
        metadata={k: v for k, v in meta.items() if k not in ("history", "config")},
    )
