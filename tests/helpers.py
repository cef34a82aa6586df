"""Shared test helpers."""

import jax
import jax.numpy as jnp
import numpy as np


def tree_allclose(a, b, *, rtol=None, atol=None) -> bool:
    """Leaf-wise ``allclose`` with dtype-aware default tolerances."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False
        dt = jnp.result_type(x.dtype, y.dtype)
        r = rtol if rtol is not None else (1e-10 if dt == jnp.float64 else 1e-5)
        t = atol if atol is not None else (1e-12 if dt == jnp.float64 else 1e-6)
        if not np.allclose(x, y, rtol=r, atol=t):
            return False
    return True


def central_difference(f, x, eps=1e-6):
    """Central finite-difference gradient of scalar ``f`` at float64 array ``x``."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps * max(1.0, abs(x[i]))
        g[i] = (f(x + e) - f(x - e)) / (2 * e[i])
    return g


def dot_precisions(fn, *args) -> set:
    """The precisions of every matrix product in ``fn``'s jaxpr, traced with JAX's default.

    The test suite fixes ``jax_default_matmul_precision = "highest"`` (tests/conftest.py);
    this traces under ``"default"`` so that only precisions the code asks for itself show.
    """
    with jax.default_matmul_precision("default"):
        jaxpr = jax.make_jaxpr(fn)(*args)
    return {eq.params["precision"] for eq in _all_eqns(jaxpr.jaxpr)
            if eq.primitive.name == "dot_general"}


def _all_eqns(jaxpr):
    """Every equation of ``jaxpr``, including those of sub-jaxprs (jit, scan, cond...)."""
    for eq in jaxpr.eqns:
        yield eq
        for value in eq.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _all_eqns(sub)


class _CompileCounter:
    """Counts XLA backend compilations (JAX's monitoring events) while active."""

    _EVENT = "/jax/core/compile/backend_compile_duration"
    _active: list = []
    _registered = False

    def __init__(self):
        self.count = 0

    @classmethod
    def _listener(cls, name, secs, **kwargs):
        if name == cls._EVENT:
            for counter in cls._active:
                counter.count += 1

    def __enter__(self):
        if not _CompileCounter._registered:
            jax.monitoring.register_event_duration_secs_listener(_CompileCounter._listener)
            _CompileCounter._registered = True
        _CompileCounter._active.append(self)
        return self

    def __exit__(self, *exc):
        _CompileCounter._active.remove(self)
        return False


def count_compilations() -> _CompileCounter:
    """Context manager counting XLA compilations inside it (``.count`` afterwards).

    Used by the bad-input tests: a check at the boundary must raise before anything is
    compiled, e.g.::

        with count_compilations() as c, pytest.raises(ValueError, match="steps"):
            fit_parameters_batch(..., steps=0)
        assert c.count == 0
    """
    return _CompileCounter()
