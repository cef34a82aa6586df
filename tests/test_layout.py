"""The package layout rules of docs/architecture.md, checked on the source with :mod:`ast`.

* A private name (``_x``) is imported across modules only from a ``_``-prefixed module
  (``epinn._checks``, ``epinn._fitting``, ``epinn.compartmental._integrate``, ...): a public
  module's private names are its own business and may change without notice.
* Public modules name their public API in ``__all__`` or are packages re-exporting it.
* No function body (docstring excluded) is longer than :data:`MAX_BODY_LINES` lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "epinn"
MAX_BODY_LINES = 120


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``"line: name from module"`` for each private name read from a public epinn module."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        origin = _resolve(module, is_package, node)
        if not origin.startswith("epinn") or origin == module:
            continue
        if any(part.startswith("_") for part in origin.split(".")):
            continue
        bad += [f"{module}:{node.lineno} imports {a.name} from {origin}" for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_resolve_relative_imports():
    one = ast.parse("from ._integrate import x").body[0]
    two = ast.parse("from ..sharding import y").body[0]
    assert _resolve("epinn.compartmental.ensemble", False, one) == "epinn.compartmental._integrate"
    assert _resolve("epinn.compartmental.ensemble", False, two) == "epinn.sharding"
    assert _resolve("epinn.compartmental", True, one) == "epinn.compartmental._integrate"
    three = ast.parse("from .compartmental import a").body[0]
    assert _resolve("epinn.estimation", False, three) == "epinn.compartmental"


def test_the_check_flags_private_names_from_public_modules():
    source = ("from .compartmental.solve import _secret, solve\n"
              "from .compartmental._integrate import _integrate\n"
              "from ._checks import _check_key\n"
              "from .estimation import __version__\n")
    assert _private_imports(source, "epinn.profile") == [
        "epinn.profile:1 imports _secret from epinn.compartmental.solve"]


def test_private_names_cross_modules_only_from_private_modules():
    bad = []
    for path in _modules():
        bad += _private_imports(path.read_text(encoding="utf-8"), _module_name(path),
                                path.name == "__init__.py")
    assert not bad, "private names imported from public modules:\n" + "\n".join(bad)


def _body_lengths(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            has_doc = isinstance(first, ast.Expr) and isinstance(
                getattr(first, "value", None), ast.Constant) and isinstance(first.value.value, str)
            start = first.end_lineno + 1 if has_doc and len(body) > 1 else first.lineno
            yield node.name, node.lineno, node.end_lineno - start + 1


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_are_short(path):
    long = [f"{name} (line {line}): {n} lines" for name, line, n in _body_lengths(path)
            if n > MAX_BODY_LINES]
    assert not long, f"functions over {MAX_BODY_LINES} lines in {path.name}: {long}"


def test_public_modules_declare_their_api():
    missing = []
    for path in _modules():
        name = _module_name(path)
        if any(part.startswith("_") for part in name.split(".")[1:]) or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = any(isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets) for n in tree.body)
        if not declared:
            missing.append(name)
    assert not missing, f"public modules without __all__: {missing}"


#: The floors of the package (docs/architecture.md). A module imports only from its own
#: group and the floors below; the neural-network toolkit and the epidemic core never
#: import each other.
FOUNDATION = {"_checks", "_deprecated", "_version", "sharding"}
NN_TOOLKIT = {"activations", "losses", "models", "data", "training"}
EPIDEMIC_CORE = {"compartmental", "observation", "stochastic", "datasets"}


def _imported_epinn_modules(path: Path) -> set[str]:
    """Top-level epinn modules (``compartmental``, ``_checks``, ...) that ``path`` imports."""
    module = _module_name(path)
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            origin = _resolve(module, path.name == "__init__.py", node)
            names = [a.name for a in node.names] if origin == "epinn" else [None]
            for name in names:
                full = f"epinn.{name}" if name else origin
                if full.startswith("epinn."):
                    out.add(full.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("epinn.")}
    return out - {module.split(".")[1] if "." in module else module}


@pytest.mark.parametrize(("group", "allowed"), [
    (FOUNDATION, FOUNDATION),
    (NN_TOOLKIT, FOUNDATION | NN_TOOLKIT),
    (EPIDEMIC_CORE, FOUNDATION | EPIDEMIC_CORE),
], ids=["foundation", "nn-toolkit", "epidemic-core"])
def test_layers(group, allowed):
    bad = []
    for path in _modules():
        top = _module_name(path).split(".")
        if len(top) > 1 and top[1] in group:
            wrong = _imported_epinn_modules(path) - allowed
            bad += [f"{_module_name(path)} imports epinn.{m}" for m in sorted(wrong)]
    assert not bad, "\n".join(bad)


def test_experiments_and_benchmarks_use_public_names():
    root = PACKAGE.parent
    bad = []
    for path in sorted([*root.glob("experiments/*.py"), *root.glob("benchmarks/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("epinn"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(p.startswith("_") for p in node.module.split(".")):
                    bad.append(f"{path.relative_to(root)}:{node.lineno} {node.module} {private}")
    assert not bad, "\n".join(bad)


def test_examples_sit_on_top():
    """``epinn.examples`` (worked set-ups for the bundled data) is the top floor.

    Nothing in the package imports it but ``epinn/__init__.py``, which exposes the namespace
    (a name that moved there keeps a deprecated alias below by its dotted path, read only
    when used: :mod:`epinn._deprecated`). The examples themselves are recipes written with
    the public API: from the package's private modules they take only the foundation's
    shared input checks.
    """
    bad = []
    for path in _modules():
        name = _module_name(path)
        if name == "epinn" or name.startswith("epinn.examples"):
            continue
        if "examples" in _imported_epinn_modules(path):
            bad.append(f"{name} imports epinn.examples")
    examples = [p for p in _modules() if _module_name(p).startswith("epinn.examples")]
    assert examples, "epinn/examples/ has no modules"
    for path in examples:
        private = {m for m in _imported_epinn_modules(path) if m.startswith("_")}
        bad += [f"{_module_name(path)} imports epinn.{m}" for m in sorted(private - FOUNDATION)]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                origin = _resolve(_module_name(path), path.name == "__init__.py", node)
                inner = origin.split(".")[2:]  # below a top-level module: epinn.amortized._x
                if any(part.startswith("_") for part in inner):
                    bad.append(f"{_module_name(path)}:{node.lineno} imports from {origin}")
    assert not bad, "\n".join(bad)


# Families that stay namespaces (docs/architecture.md): their names are used with the
# family's prefix, epinn.stochastic.simulate; the CLI's helpers are for experiment scripts.
NAMESPACES = ("stochastic", "examples", "cli")


def _module_path_uses(text: str, top: set[str]) -> list[str]:
    """Each ``from epinn.<module> import NAME`` and ``epinn.<module>.NAME`` in ``text`` where
    NAME is a top-level name (``epinn.NAME``) and ``<module>`` is not a namespace family."""
    import re

    found = []
    for m in re.finditer(r"from epinn\.([a-z_.]+) import (\([^)]*\)|[^\n]+)", text):
        module, names = m.group(1), m.group(2)
        if module.split(".")[0] in NAMESPACES or "._" in f".{module}":
            continue
        listed = [n.split(" as ")[0].strip(" ()\n#") for n in names.split(",")]
        found += [f"from epinn.{module} import {n}" for n in listed if n in top]
    for m in re.finditer(r"epinn\.((?:[a-z][a-z_]*\.)+)([A-Za-z][A-Za-z0-9_]*)", text):
        module, name = m.group(1).rstrip("."), m.group(2)
        if module.split(".")[0] in NAMESPACES or name not in top:
            continue
        found.append(f"epinn.{module}.{name}")
    return found


def test_docs_experiments_and_benchmarks_use_canonical_names():
    """One canonical name per object: the guides, experiments and benchmarks write
    ``epinn.solve`` / ``from epinn import SIR``, not a module path to the same object."""
    import epinn

    root = PACKAGE.parent
    top = set(epinn.__all__)
    pages = [p for p in root.glob("docs/*.md") if p.name != "architecture.md"]  # states the rule
    files = [root / "README.md", *pages, *root.glob("docs/guide/*.md"),
             *root.glob("docs/theory/*.md"), *root.glob("experiments/*.py"),
             *root.glob("benchmarks/*.py")]
    bad = [f"{path.relative_to(root)}: {use}" for path in sorted(files)
           for use in _module_path_uses(path.read_text(encoding="utf-8"), top)]
    assert not bad, "use epinn.NAME instead of a module path:\n" + "\n".join(bad)


def test_the_canonical_name_check_finds_module_paths():
    top = {"solve", "SIR"}
    text = ("from epinn.compartmental import SIR, solve\nx = epinn.compartmental.solve\n"
            "from epinn.stochastic import simulate\nfrom epinn.compartmental._x import _y\n")
    assert _module_path_uses(text, top) == [
        "from epinn.compartmental import SIR", "from epinn.compartmental import solve",
        "epinn.compartmental.solve"]
