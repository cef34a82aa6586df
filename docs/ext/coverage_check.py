"""Sphinx extension: fail the build when a public name of ``epinn`` is not documented.

Public names are those in ``epinn.__all__`` (if defined) and every non-underscore attribute
of ``dir(epinn)`` that is not a module (nor a ``from __future__`` feature). A name counts as
documented when the Python domain holds ``epinn.NAME`` or the object's canonical
``module.qualname`` (e.g. ``epinn.models.MLP``). Modelled on optax's
``docs/ext/coverage_check.py``, but run inside the html build itself.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
from collections.abc import Iterable
from types import ModuleType


def public_names(module: ModuleType) -> list[str]:
    """Public names of ``module``: ``__all__`` plus non-underscore, non-module attributes."""
    names = set(getattr(module, "__all__", ()))
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj) or isinstance(obj, __future__._Feature):
            continue
        names.add(name)
    return sorted(names)


def _aliases(module: ModuleType, name: str) -> set[str]:
    """Names under which ``module.name`` may be documented."""
    found = {f"{module.__name__}.{name}"}
    obj = getattr(module, name, None)
    owner = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(owner, str) and isinstance(qualname, str):
        found.add(f"{owner}.{qualname}")
    return found


def undocumented(module: ModuleType, documented: Iterable[str]) -> list[str]:
    """Public names of ``module`` with no entry in ``documented`` (fully qualified names)."""
    documented = set(documented)
    return [n for n in public_names(module) if not _aliases(module, n) & documented]


def _check(app, env) -> None:
    from sphinx.errors import SphinxError

    if app.builder.format != "html":  # doctest/linkcheck builders document nothing
        return
    module = importlib.import_module(app.config.coverage_check_module)
    missing = undocumented(module, env.get_domain("py").objects)
    if missing:
        raise SphinxError(
            f"Public names of `{module.__name__}` missing from the API pages: {missing}. "
            "Re-export them in epinn/__init__.py as `from .mod import name as name` (the API "
            "pages are generated from those lines) or document them by hand."
        )


def setup(app):
    app.add_config_value("coverage_check_module", "epinn", "env")
    app.connect("env-check-consistency", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
