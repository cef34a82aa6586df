"""Tests for the documentation: its build helpers, its code examples and (slow) the build."""

import ast
import importlib
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import epinn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "ext"))

import api_pages  # noqa: E402
import coverage_check  # noqa: E402
import gallery_utils  # noqa: E402
import snippets  # noqa: E402


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


def _run_page(page: Path) -> None:
    """Execute a page's ```python blocks in order, in one namespace, as a reader would."""
    blocks = _python_blocks(page)
    assert blocks, f"{page} has no python code blocks"
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)


# --- the coverage check ----------------------------------------------------------------


def _fake_package():
    mod = types.ModuleType("fakepkg")
    mod.sub = types.ModuleType("fakepkg.sub")  # a submodule: not an API name
    mod.annotations = __import__("__future__").annotations  # a __future__ feature
    mod._private = 1

    def documented_fn():
        pass

    documented_fn.__module__, documented_fn.__qualname__ = "fakepkg.impl", "documented_fn"

    def via_alias():
        pass

    via_alias.__module__, via_alias.__qualname__ = "fakepkg.impl", "via_alias"
    mod.documented_fn, mod.via_alias = documented_fn, via_alias
    mod.CONSTANT = {"a": 1}
    mod.forgotten = lambda: None
    mod.__all__ = ["documented_fn", "only_in_all"]
    return mod


def test_coverage_check_public_names():
    names = coverage_check.public_names(_fake_package())
    assert names == ["CONSTANT", "documented_fn", "forgotten", "only_in_all", "via_alias"]


def test_coverage_check_finds_undocumented():
    mod = _fake_package()
    documented = {"fakepkg.documented_fn", "fakepkg.impl.via_alias", "fakepkg.CONSTANT"}
    assert coverage_check.undocumented(mod, documented) == ["forgotten", "only_in_all"]
    everything = documented | {"fakepkg.forgotten", "fakepkg.only_in_all"}
    assert coverage_check.undocumented(mod, everything) == []
    assert coverage_check.undocumented(mod, set()) == coverage_check.public_names(mod)


def test_every_public_name_gets_an_api_entry():
    """The API pages are generated from epinn/__init__.py; check that this covers dir(epinn).

    A fast, static version of the check the Sphinx build runs on its real output.
    """
    exports = api_pages.reexports(ROOT / "epinn" / "__init__.py")
    modules = api_pages.existing_modules(ROOT / "epinn")
    documented = set()
    for mod in modules:
        documented |= {f"epinn.{n}" for n in exports.get(mod, [])}
        module = importlib.import_module(f"epinn.{mod}")
        documented |= {f"epinn.{mod}.{n}" for n in getattr(module, "__all__", ())}
    assert coverage_check.undocumented(epinn, documented) == []
    assert set(exports) <= set(modules) | api_pages.SKIP  # no re-export from a missing module


# --- API page generation ---------------------------------------------------------------


def test_reexports_parses_init(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text(
        '"""doc"""\n__version__ = "1"\n'
        "# --- a ---\nfrom .a import f as f\nfrom .a import _hidden as _hidden\n"
        "# --- b ---\nfrom .b import G as G, h as h\nimport os\n"
    )
    assert api_pages.reexports(init) == {"a": ["f"], "b": ["G", "h"]}


def test_existing_modules_order():
    modules = api_pages.existing_modules(ROOT / "epinn")
    assert "datasets" in modules and "activations" in modules and "cli" not in modules
    known = [m for m in modules if m in api_pages.MODULE_ORDER]
    assert known == sorted(known, key=api_pages.MODULE_ORDER.index)


def test_write_api_pages(tmp_path):
    modules = api_pages.write_api_pages(ROOT / "epinn", tmp_path)
    page = (tmp_path / "datasets.rst").read_text()
    assert ".. automodule:: epinn.datasets" in page
    for name in ("load_boarding_school", "OutbreakData", "list_datasets"):
        assert f"   {name}\n" in page
    index = (tmp_path / "index.rst").read_text()
    assert all(f"   {m}\n" in index for m in modules)
    (tmp_path / "gone.rst").write_text("stale")
    api_pages.write_api_pages(ROOT / "epinn", tmp_path)
    assert not (tmp_path / "gone.rst").exists()


# --- gallery sources -------------------------------------------------------------------

SCRIPT = '''"""Experiment: fit a thing to data.

Details with ``code`` and a backslash \\\\ here.
"""
from __future__ import annotations

X = 1
'''


def test_with_title_adds_rst_title():
    out = gallery_utils.with_title(SCRIPT, "fit_thing")
    tree = ast.parse(out)  # still valid Python, the __future__ import still first
    doc = ast.get_docstring(tree)
    lines = doc.splitlines()
    assert lines[0] == "fit_thing: Fit a thing to data."
    assert lines[1] == "=" * len(lines[0])
    assert "Details with ``code`` and a backslash \\ here." in doc
    assert "epinn run fit_thing" in doc
    assert "from __future__ import annotations" in out
    assert out.rstrip().endswith("X = 1")


def test_with_title_keeps_titled_and_adds_missing():
    titled = '"""Title\n=====\n\nText.\n"""\nX = 1\n'
    assert gallery_utils.with_title(titled, "t") == titled
    bare = gallery_utils.with_title("import os\n", "bare")
    assert ast.get_docstring(ast.parse(bare)).startswith("bare\n====")
    assert gallery_utils.with_title("def (", "broken") == "def ("


def test_copy_experiments(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.py").write_text(SCRIPT)
    (src / "_helper.py").write_text("Y = 2\n")
    dst = gallery_utils.copy_experiments(src, tmp_path / "dst")
    assert sorted(p.name for p in dst.iterdir()) == ["GALLERY_HEADER.rst", "_helper.py", "one.py"]
    assert (dst / "_helper.py").read_text() == "Y = 2\n"
    assert gallery_utils.copy_experiments(tmp_path / "missing", dst) == dst
    assert [p.name for p in dst.iterdir()] == ["GALLERY_HEADER.rst"]


# --- text taken from the code ----------------------------------------------------------


def test_snippets(tmp_path):
    (tmp_path / "experiments").mkdir()
    assert snippets.main_experiment(tmp_path) == "regression_mlp"
    (tmp_path / "experiments" / "boarding_school.py").write_text('"""Experiment: x."""\n')
    assert snippets.main_experiment(tmp_path) == "boarding_school"
    assert "no benchmark scripts" in snippets.benchmarks_markdown(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_x.py").write_text('"""Benchmark: Time x against y."""\n')
    assert "| `bench_x.py` | Time x against y. |" in snippets.benchmarks_markdown(tmp_path)
    text = snippets.datasets_markdown()
    for name in epinn.list_datasets():
        data = epinn.load_dataset(name)
        assert f'load_dataset("{name}")' in text and data.citation.splitlines()[0] in text
    assert snippets.cli_help(["data", "--help"]).startswith("usage: epinn data")


# --- code on the pages runs ------------------------------------------------------------


def test_theory_backprop_example(capsys):
    _run_page(DOCS / "theory" / "neural_networks.md")
    values = re.findall(r"Array\((-?[\d.]+)", capsys.readouterr().out)
    assert [float(v) for v in values] == [-4.0, -4.0, 3.0]  # (x + y) z at (-2, 5, -4)


def test_datasets_page_runs(capsys):
    _run_page(DOCS / "datasets.md")
    assert "108" in capsys.readouterr().out


def test_getting_started_runs():
    # In a subprocess: the page's SIR fit switches on float64, which must not leak into
    # the other tests of this process.
    out = _run_page_in_subprocess(DOCS / "getting_started.md")
    assert "[  3.   8.  26.  76. 225." in out
    beta, gamma, r0 = (float(v) for v in out.split("\n")[-3].split())
    # The least-squares optimum (tested against scipy in test_estimation.py).
    assert abs(beta - 1.669) < 1e-3 and abs(gamma - 0.443) < 1e-3 and abs(r0 - 3.76) < 1e-2


@pytest.mark.slow
def test_nn_core_guide_runs():
    _run_page(DOCS / "guide" / "nn_core.md")


@pytest.mark.slow
def test_epidemic_models_guide_runs():
    _run_page(DOCS / "guide" / "epidemic_models.md")


def _run_page_in_subprocess(page: Path) -> str:
    """Execute a page's python blocks in a fresh interpreter (pages that enable float64).

    Returns what they printed.
    """
    code = "\n".join(_python_blocks(page))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_estimation_guide_runs():
    _run_page_in_subprocess(DOCS / "guide" / "estimation.md")


# --- the build -------------------------------------------------------------------------


def _build(tmp_path, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("EPINN_DOCS_ONLINE", None)  # offline, as in CI
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(tmp_path / "html"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return tmp_path / "html"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    html = _build(tmp_path)
    for page in (
        "index",
        "getting_started",
        "cli",
        "datasets",
        "benchmarks",
        "theory/neural_networks",
        "theory/epidemics",
        "guide/nn_core",
        "guide/epidemic_models",
        "generated/api/index",
        "auto_examples/index",
    ):
        assert (html / f"{page}.html").exists(), page
    for mod in api_pages.existing_modules(ROOT / "epinn"):
        assert (html / "generated" / "api" / f"{mod}.html").exists(), mod
    assert (html / "generated" / "api" / "_autosummary" / "epinn.load_dataset.html").exists()
    assert list((html / "_images").glob("neural_networks-*.png"))  # the activation plot
    for script in (ROOT / "experiments").glob("[!_]*.py"):
        assert (html / "auto_examples" / f"{script.stem}.html").exists(), script


@pytest.mark.slow
def test_docs_gallery_runs_only_plot_scripts(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "plot_quick.py").write_text(
        '"""Experiment: a curve drawn at build time."""\n'
        "import argparse\nimport matplotlib.pyplot as plt\n\n"
        "def main(args_list=None):\n"
        "    a = argparse.ArgumentParser()\n    a.add_argument('--quick', action='store_true')\n"
        "    args = a.parse_args(args_list)\n"
        "    plt.plot([0, 1], [0, 1])\n    plt.title(f'quick={args.quick}')\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    (experiments / "long_job.py").write_text(
        '"""Experiment: must never run during the build."""\nraise SystemExit(\'executed\')\n'
    )
    html = _build(tmp_path, {"EPINN_EXPERIMENTS": str(experiments)})
    page = (html / "auto_examples" / "plot_quick.html").read_text()
    assert "quick=True" in page  # executed, with --quick
    assert (html / "auto_examples" / "long_job.html").exists()  # rendered, not executed
