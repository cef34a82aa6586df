"""Write one API page per existing ``epinn`` module, from the re-exports in ``__init__.py``.

``epinn/__init__.py`` states the public API once, as ``from .mod import name as name`` lines
grouped by module. This reads those lines with :mod:`ast` and writes, for every module that
exists at build time, ``<out>/<mod>.rst`` with an ``automodule`` and an ``autosummary``
table of its public names (documented as ``epinn.NAME``; names a module lists in ``__all__``
without re-exporting them are documented as ``epinn.mod.NAME``; a module a namespace
package lists in ``__all__``, as ``epinn.examples`` lists ``boarding_school``, gets a section
of the package's page with its own ``__all__``). Modules that are not written yet simply
get no page.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

# Order of the API pages; modules not listed here (e.g. added later) follow alphabetically.
MODULE_ORDER = (
    "activations",
    "losses",
    "models",
    "data",
    "training",
    "plotting",
    "compartmental",
    "stochastic",
    "observation",
    "datasets",
    "results",
    "estimation",
    "forecast",
    "bayes",
)
# Modules that are not library API (documented elsewhere).
SKIP = {"cli"}
# Pages after all others: the worked set-ups sit on top of the library.
LAST = ("examples",)


def reexports(init_file: Path) -> dict[str, list[str]]:
    """``{module: [public names]}`` from ``from .module import x as x`` lines, in order."""
    tree = ast.parse(init_file.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            mod = node.module.split(".")[0]
            for alias in node.names:
                name = alias.asname or alias.name
                if not name.startswith("_"):
                    out.setdefault(mod, []).append(name)
    return out


def existing_modules(package_dir: Path) -> list[str]:
    """Public modules of the package present now, in :data:`MODULE_ORDER` then a-z."""
    candidates = [p.stem for p in package_dir.glob("*.py")]
    candidates += [p.parent.name for p in package_dir.glob("*/__init__.py")]
    found = {m for m in candidates if not m.startswith("_") and m not in SKIP}
    found = {m for m in found if importlib.util.find_spec(f"epinn.{m}") is not None}
    ordered = [m for m in MODULE_ORDER if m in found]
    last = [m for m in LAST if m in found]
    return ordered + sorted(found - set(ordered) - set(last)) + last


def _module_title(mod: str) -> str:
    module = importlib.import_module(f"epinn.{mod}")
    doc = (module.__doc__ or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else mod


def _page(mod: str, top: list[str]) -> str:
    """The page of ``epinn.mod``: its re-exports, its other ``__all__`` names, its submodules.

    A namespace package such as ``epinn.examples`` lists modules in ``__all__``
    (``boarding_school``): each gets a section of its own with its ``__all__`` names.
    """
    module = importlib.import_module(f"epinn.{mod}")
    listed = [n for n in getattr(module, "__all__", ()) if n not in top]
    submodules = [n for n in listed if inspect.ismodule(getattr(module, n, None))]
    extra = [n for n in listed if n not in submodules]
    heading = f"``epinn.{mod}``: {_module_title(mod)}"
    lines = [heading, "=" * len(heading), "", *_automodule(f"epinn.{mod}")]
    for current, names in (("epinn", top), (f"epinn.{mod}", extra)):
        lines += _summary(current, names)
    for sub in submodules:
        name = f"epinn.{mod}.{sub}"
        child = importlib.import_module(name)
        title = f"``{name}``: {_module_title(f'{mod}.{sub}')}"
        lines += [title, "-" * len(title), "", *_automodule(name)]
        lines += _summary(name, list(getattr(child, "__all__", ())))
    return "\n".join(lines)


def _automodule(name: str) -> list[str]:
    return [f".. automodule:: {name}", "   :no-members:", ""]


def _summary(current: str, names: list[str]) -> list[str]:
    """An autosummary table (with a stub page per name) of ``names`` in module ``current``."""
    if not names:
        return []
    return [
        f".. currentmodule:: {current}",
        "",
        ".. autosummary::",
        "   :toctree: _autosummary",
        "",
        *[f"   {n}" for n in names],
        "",
    ]


def write_api_pages(package_dir: Path, out_dir: Path) -> list[str]:
    """Write ``out_dir/<mod>.rst`` for each existing module and ``out_dir/index.rst``.

    Returns:
        The modules that got a page.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    exports = reexports(package_dir / "__init__.py")
    modules = existing_modules(package_dir)
    for mod in modules:
        _write_if_changed(out_dir / f"{mod}.rst", _page(mod, exports.get(mod, [])))
    index = [
        "API reference",
        "=============",
        "",
        "Everything public is importable from the top level (``import epinn``); each page",
        "below covers one module. Pages appear as modules are added to the package.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
        *[f"   {mod}" for mod in modules],
        "",
    ]
    _write_if_changed(out_dir / "index.rst", "\n".join(index))
    for stale in out_dir.glob("*.rst"):
        if stale.stem not in modules and stale.stem != "index":
            stale.unlink()
    _remove_stale_stubs(out_dir)
    return modules


def _remove_stale_stubs(out_dir: Path) -> None:
    """Delete autosummary stubs (``_autosummary/NAME.rst``) that no page lists any more.

    autosummary writes a stub per listed name but never deletes one; a stub left from an
    earlier state of the package (a name moved or renamed) is an orphan page, a warning.
    """
    listed = set()
    for page in out_dir.glob("*.rst"):
        current = "epinn"
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith(".. currentmodule:: "):
                current = line.split("::", 1)[1].strip()
            elif line.startswith("   ") and not line.strip().startswith(":") and line.strip():
                listed.add(f"{current}.{line.strip()}")
    for stub in (out_dir / "_autosummary").glob("*.rst"):
        if stub.stem not in listed:
            stub.unlink()


def _write_if_changed(path: Path, text: str) -> None:
    """Rewrite only when the text changes, so Sphinx's incremental build stays incremental."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
