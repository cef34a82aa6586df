"""Rates that vary in time: functions of ``t``, diffrax paths and networks (:class:`NetworkRate`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree


def _is_time_varying(value: Any) -> bool:
    """True for a rate given as a function of time (callable or diffrax path)."""
    return isinstance(value, diffrax.AbstractPath) or (
        callable(value) and not isinstance(value, (jax.Array, np.ndarray))
    )


def _evaluate_rate(value: Any, t: ArrayLike) -> Array:
    """Value of a rate at time ``t``: diffrax paths via ``.evaluate``, callables via call."""
    if isinstance(value, diffrax.AbstractPath):
        return value.evaluate(t)
    if _is_time_varying(value):
        return value(t)
    return value


def _evaluate_rates(args: Mapping[str, Any], t: ArrayLike) -> dict[str, Any]:
    return {k: _evaluate_rate(v, t) for k, v in args.items() if not k.startswith("_")}


# --------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------


class NetworkRate(eqx.Module):
    r"""A positive rate :math:`\theta(t)` given by a Flax (Linen) network of time.

    .. math::

        \theta(t) = \operatorname{transform}\big(f_{\text{params}}(t / t_\text{scale})\big),

    where :math:`f` is ``module.apply`` with input shape ``(1,)`` and one output. The
    network ``params`` are the pytree leaves of this module, so ``jax.grad`` through
    :func:`solve` reaches them (the neural-:math:`\beta(t)` estimator trains them that way).

    Args:
        module: a Flax Linen module mapping an input of shape ``(1,)`` to one output
            (stored as static: it is hashable configuration, not data).
        params: its variables, as returned by ``module.init``.
        transform: maps the raw output to a positive rate; default ``jax.nn.softplus``.
        t_scale: time is divided by this before entering the network (inputs of order 1
            train better).

    Examples:
        >>> import flax.linen as nn
        >>> import jax.random as jr
        >>> net = nn.Dense(1)
        >>> rate = NetworkRate(net, net.init(jr.PRNGKey(0), jnp.ones((1,))), t_scale=100.0)
        >>> bool(rate(5.0) > 0), rate(5.0).shape
        (True, ())
    """

    module: Any = eqx.field(static=True)
    params: PyTree
    transform: Callable[[Array], Array] = eqx.field(static=True, default=jax.nn.softplus)
    t_scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not hasattr(self.module, "apply"):
            raise TypeError(
                f"`module` must be a Flax Linen module with `.apply`; got {type(self.module)}."
            )
        if not (isinstance(self.t_scale, (int, float)) and self.t_scale > 0):
            raise ValueError(f"`t_scale` must be a positive number; got {self.t_scale!r}.")

    def __call__(self, t: ArrayLike) -> Float[Array, ""]:
        x = jnp.reshape(jnp.asarray(t) / self.t_scale, (1,))
        out = self.module.apply(self.params, x)
        if jnp.size(out) != 1:
            raise ValueError(
                f"`module` must return one output for NetworkRate; got shape {jnp.shape(out)}."
            )
        return self.transform(jnp.reshape(out, ()))


def _rates_at_times(rates: Mapping[str, Any], t: Any, what: str) -> dict[str, Array]:
    """Evaluate time-varying rates at ``t`` (scalar or 1-D); constants pass through."""
    out = {}
    for k, v in rates.items():
        if _is_time_varying(v):
            if t is None:
                raise ValueError(f"`t` is required by {what}: params['{k}'] depends on time.")
            ta = jnp.asarray(t, _float_dtype())
            f = lambda s, v=v: jnp.reshape(_evaluate_rate(v, s), ())  # noqa: E731
            out[k] = jax.vmap(f)(ta) if ta.ndim == 1 else f(ta)
        else:
            out[k] = v
    return out


class _Namespace(Mapping):
    """Read-only access by attribute and by key: ``y.S`` or ``y["S"]``."""

    __slots__ = ("_d",)

    def __init__(self, d: Mapping[str, Any]):
        object.__setattr__(self, "_d", dict(d))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(
                f"{name!r} is not defined; the names are {tuple(self._d)}."
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self._d[name]

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(self._d)})"


def _float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)
