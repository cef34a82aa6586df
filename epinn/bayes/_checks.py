"""Input checks of :mod:`epinn.bayes` (private), in plain Python before any tracing.

The checks here keep the messages and exception types that :mod:`epinn.bayes` has always
raised, which differ from the package-wide ones in :mod:`epinn._checks` (a bad count or a
non-string choice is a ``ValueError`` here, a ``TypeError`` there); flags use
:func:`epinn._checks._check_flag` directly.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import diffrax
import flax.linen as nn
import jax
import numpy as np

# int32 step counters: larger budgets overflow inside the solver's while loop.
_MAX_STEPS_LIMIT = 2**31 - 1


def _suggest(value: Any, valid: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    if not isinstance(value, str):
        return ""
    names = [str(v) for v in valid]
    same_case = [v for v in names if v.lower() == value.lower()]
    close = same_case or difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_choice(value: Any, valid: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``valid``; else a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"`{name}` must be one of {valid}; got {value!r}{_suggest(value, valid)}."
        )
    return value


def _check_positive_int(value: Any, name: str, minimum: int = 1,
                        maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be an int <= {maximum}; got {value!r}.")
    return int(value)


def _is_real(value: Any) -> bool:
    """A plain real number (Python or NumPy scalar, or a 0-d array), not a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0
            and not isinstance(value, jax.core.Tracer)
            and np.issubdtype(np.asarray(value).dtype, np.number)
            and not np.issubdtype(np.asarray(value).dtype, np.bool_))


def _check_real(value: Any, name: str, *, positive: bool = False,
                nonnegative: bool = False) -> float:
    """``value`` as a finite float; else a ValueError naming ``name``."""
    what = "a positive" if positive else ("a non-negative" if nonnegative else "a")
    ok = _is_real(value) and math.isfinite(float(value))
    ok = ok and not (positive and float(value) <= 0) and not (nonnegative and float(value) < 0)
    if not ok:
        raise ValueError(f"`{name}` must be {what} finite number; got {value!r}.")
    return float(value)


def _check_prob(prob: Any, name: str = "prob") -> float:
    if not _is_real(prob) or not 0.0 < float(prob) < 1.0:
        raise ValueError(f"`{name}` must be a number in (0, 1); got {prob!r}.")
    return float(prob)


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value, float64)`` with a ValueError naming ``name`` on failure."""
    if value is None:
        raise ValueError(f"`{name}` must be an array of numbers; got None.")
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be an array of numbers; got {value!r} ({err}).") \
            from None
    return out


def _check_thresholds(max_r_hat: Any, min_ess: Any) -> None:
    if not (_is_real(max_r_hat) and float(max_r_hat) >= 1.0):
        raise ValueError(f"`max_r_hat` must be a number >= 1; got {max_r_hat!r}.")
    _check_real(min_ess, "min_ess", nonnegative=True)


def _check_solver_options(rtol: Any, atol: Any, max_steps: Any, solver: Any = None) -> None:
    """ODE options of the epidemic models, checked in plain Python (before any tracing)."""
    _check_real(rtol, "rtol", positive=True)
    _check_real(atol, "atol", positive=True)
    _check_positive_int(max_steps, "max_steps", 1, _MAX_STEPS_LIMIT)
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(
            f"`solver` must be a diffrax solver such as diffrax.Tsit5() or None; got {solver!r}."
        )


def _is_concrete(x: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check_network(network: Any, outputs: int | None = None, what: str = "") -> None:
    """A Flax Linen module; with ``outputs``, one whose ``features`` (if any) end there."""
    if not isinstance(network, nn.Module):
        raise TypeError(
            "`network` must be a Flax Linen module such as epinn.MLP((16, 1), "
            f"activation='tanh'); got {type(network).__name__}."
        )
    features = getattr(network, "features", None)
    if outputs is not None and features is not None and features[-1] != outputs:
        raise ValueError(f"`network` must have {outputs} output(s) {what}; its features end "
                         f"in {features[-1]}.")


def _check_scale(value: Any, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not (_is_real(value) and math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
