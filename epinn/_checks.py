"""Checks of user input shared across epinn (private): one low module, imported by the others.

Plain-Python validation before anything is traced or compiled: conversions that name the
argument, counts, flags, keys and close-name suggestions for unknown names.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


# Counts (steps, sizes, grid points) go into jax as int32: larger ones would overflow there.
_MAX_INT = 2**31 - 1


def _show(value: Any) -> str:
    """A short description of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:60]}..."


def _is_concrete(x: jax.Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_key(key: Any, name: str = "key") -> jax.Array:
    """Return ``key`` if it is one JAX PRNG key; otherwise raise a TypeError naming ``name``.

    Accepts typed keys (``jax.random.key(0)``, a scalar of a key dtype) and legacy raw keys
    (``jax.random.PRNGKey(0)``, a 1-D ``uint32`` array of the default implementation's key
    shape, also as NumPy data), concrete or traced. Used at the
    boundary of every epinn function that takes a key, so that an int, a float array or a
    batch of keys is named here rather than deep inside ``jax.random``.
    """
    if isinstance(key, np.ndarray) and key.dtype == np.uint32:  # raw key data, as JAX takes
        key = jnp.asarray(key)
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.ndim == 0:
                return key
        elif key.dtype == jnp.uint32 and key.ndim == 1:
            try:  # the default PRNG implementation's key shape, e.g. (2,) for threefry
                jax.random.wrap_key_data(key)
            except (TypeError, ValueError):
                pass
            else:
                return key
        got = f"an array of dtype {key.dtype} and shape {key.shape}"
    else:
        got = f"{type(key).__name__} {key!r}"[:80]
    raise TypeError(
        f"`{name}` must be one jax.random key, such as jax.random.PRNGKey(0) or "
        f"jax.random.key(0); got {got}."
    )


def _real_array(value: Any, name: str, *, host: bool = False,
                ragged: type[Exception] = TypeError, must_be: str = "an array of real numbers",
                show_type: bool = False) -> np.ndarray | jax.Array:
    """``value`` as an array of real numbers (bool, int or float dtype), naming ``name``.

    A ``jax.Array`` is returned as it is (no copy to the host) unless ``host``; anything
    else goes through ``np.asarray``. A value that does not convert (a ragged nested list)
    raises ``ragged`` ("`name` must be ``must_be``: why"); another dtype a TypeError (with
    the value's type when ``show_type``).
    """
    if isinstance(value, jax.Array) and not host:
        a = value
    else:
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged nested lists
            raise ragged(f"`{name}` must be {must_be}: {err}") from None
    if a.dtype.kind not in "biuf":
        got = f"{type(value).__name__} of dtype" if show_type else "dtype"
        raise TypeError(f"`{name}` must hold real numbers; got {got} {a.dtype}.")
    return a


def _asarray(value: Any, name: str) -> jax.Array:
    """``jnp.asarray(value)`` of real numbers; anything else is an error naming ``name``."""
    if isinstance(value, jax.core.Tracer):
        return value
    return jnp.asarray(_real_array(value, name, show_type=True))


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a NumPy float64 array of real numbers, naming ``name`` if it is not."""
    return _real_array(value, name, host=True).astype(float)


def _as_float(value: Any, name: str) -> float:
    """``float(value)`` for a real number (not a bool or a string); a TypeError names ``name``."""
    bad = isinstance(value, (bool, np.bool_, str, bytes))
    if not bad:
        try:
            bad = np.ndim(value) != 0 or np.iscomplexobj(value)
        except (TypeError, ValueError):
            bad = True
    if not bad:
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"`{name}` must be a real number; got {_show(value)}.")


def _check_positive(value: Any, name: str) -> float:
    x = _as_float(value, name)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"`{name}` must be positive and finite; got {value!r}.")
    return x


def _check_int(value: Any, name: str, low: int, high: int = _MAX_INT) -> int:
    """An int (Python or NumPy, not a bool) in ``[low, high]``."""
    bounds = f">= {low}" if high >= _MAX_INT else f"in [{low}, {high}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int {bounds}; got {_show(value)}.")
    if not low <= value <= high:
        at_most = f" (at most {high})" if value > high and high >= _MAX_INT else ""
        raise ValueError(f"`{name}` must be an int {bounds}{at_most}; got {value!r}.")
    return int(value)


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {_show(value)}.")
    return bool(value)


def _check_verbose(value: Any) -> int:
    return int(value) if isinstance(value, (bool, np.bool_)) else _check_int(value, "verbose", 0)


def _did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid name, or ``""`` (difflib)."""
    close = difflib.get_close_matches(str(name).lower(), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_name(kind: str, name: str, valid: Iterable[str], argument: str) -> ValueError:
    """The error for an unknown registry name: the argument, the closest and all names."""
    valid = sorted(valid)
    return ValueError(
        f"Unknown {kind} `{argument}`={name!r}{_did_you_mean(name, valid)}; valid names "
        f"are {valid}."
    )


def _suggest(value: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(value.lower(), [c.lower() for c in choices], n=1)
    if not close:
        return ""
    best = next(c for c in choices if c.lower() == close[0])
    return f" (did you mean {best!r}?)"


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (exactly); otherwise an error naming ``name`` and the closest."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {tuple(choices)}; got {_show(value)}.")
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}; got {value!r}{_suggest(value, choices)}."
        )
    return value


def _lookup_callable(name_or_callable: Any, table: Mapping[str, Callable], kind: str,
                     argument: str) -> Callable:
    """The ``kind`` (e.g. activation) for a case-insensitive name in ``table`` or a callable; errors
    name ``argument``."""
    if isinstance(name_or_callable, str):
        fn = table.get(name_or_callable.lower())
        if fn is None:
            raise _unknown_name(kind, name_or_callable, table, argument)
        return fn
    if callable(name_or_callable):
        return name_or_callable
    raise TypeError(
        f"`{argument}` must be an {kind} name or a callable; "
        f"got {type(name_or_callable).__name__}."
    )


def _bind_keywords(fn: Callable, kwargs: dict, argument: str) -> Callable:
    """``fn`` with ``kwargs`` bound, checked now; errors name ``argument``."""
    if not kwargs:
        return fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        signature = None
    if signature is not None:
        try:
            signature.bind_partial(None, **kwargs)  # TypeError now, not at the first call
        except TypeError as err:
            name = getattr(fn, "__name__", "the activation")
            raise TypeError(f"`{argument}` {sorted(kwargs)} do not fit {name}{signature}: "
                            f"{err}") from None
    for k, v in kwargs.items():  # parameters such as negative_slope, alpha, beta
        if isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
            raise (TypeError if isinstance(v, str) else ValueError)(
                f"`{k}` (in `{argument}`) must be a finite number; got {v!r}."
            )
    return functools.partial(fn, **kwargs)
