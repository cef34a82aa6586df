"""Merging ``options=SolverOptions(...)`` with a function's own keywords (private)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from .options import SolverOptions

_FIELDS = tuple(f.name for f in dataclasses.fields(SolverOptions))


class _Settings(NamedTuple):
    """The merged settings, passed down as one value; the function checks them as before."""

    solver: Any = None
    rtol: Any = None
    atol: Any = None
    dt0: Any = None
    max_steps: Any = None
    adjoint: Any = None
    throw: Any = None

    def options(self) -> SolverOptions:
        """These settings as a :class:`SolverOptions` (to pass to another function)."""
        return SolverOptions(**self._asdict())


@functools.cache
def _defaults(fn: Callable) -> dict[str, Any]:
    """The defaults of ``fn``'s solver keywords: the values Python fills in at a call.

    Read from the function itself (``__kwdefaults__``, ``__defaults__``; through
    ``functools.wraps`` decorators), not from :func:`inspect.signature`, which a
    documentation tool may have replaced with source text (Sphinx's
    ``autodoc_preserve_defaults`` sets ``__signature__`` to defaults as written).
    """
    fn = inspect.unwrap(fn)
    code = fn.__code__
    positional = code.co_varnames[: code.co_argcount]
    values = tuple(fn.__defaults__ or ())
    defaults = dict(zip(positional[len(positional) - len(values):], values))
    defaults.update(fn.__kwdefaults__ or {})
    return {k: defaults[k] for k in _FIELDS if k in defaults}


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # arrays, objects without a plain equality
        return False


def _resolve_options(fn: Callable, options: Any, **keywords: Any) -> _Settings:
    """The settings from ``options`` and ``fn``'s solver ``keywords``.

    ``keywords`` are the values ``fn`` received for the solver settings it exposes. A field
    of ``options`` left ``None`` takes the keyword; a field set in ``options`` replaces a
    keyword left at its default; a field set both ways to different values, or set in
    ``options`` when ``fn`` does not use it, is an error naming ``fn``. Fields ``fn`` does not
    use come back ``None``. Keyword values are not checked here: ``fn`` checks the merged
    values with its own messages (fields of ``options`` were checked when it was built).
    """
    where = f"{fn.__name__}()"
    if options is not None and not isinstance(options, SolverOptions):
        raise TypeError(f"`options` of {where} must be an epinn.SolverOptions or None; got "
                        f"{type(options).__name__}.")
    defaults = _defaults(fn)
    merged = {}
    for name in _FIELDS:
        given = None if options is None else getattr(options, name)
        if name not in keywords:
            if given is not None:
                raise ValueError(
                    f"{where} does not use the solver setting `{name}` (it takes "
                    f"{', '.join(keywords) or 'none'}); leave options.{name} as None.")
            continue
        value = keywords[name]
        if given is not None and not _same(value, defaults.get(name, value)) \
                and not _same(value, given):
            raise ValueError(
                f"{where} got `{name}` twice: {value!r} as a keyword and {given!r} in "
                "`options`; give it once.")
        merged[name] = value if given is None else given
    return _Settings(**merged)
