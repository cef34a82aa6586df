"""Tests for the documentation: its build helpers, its code examples and (slow) the build."""

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
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
    """The code of a page's ```python blocks and plot directives (options dropped), in order.

    The guide pages run their examples as matplotlib plot directives (```{eval-rst} with
    ``.. plot::``; MyST cannot host that directive directly), so that the figures under
    them are made at build time by the code shown.
    """
    text = page.read_text()
    blocks = re.findall(r"^```(python|\{eval-rst\})\n(.*?)^```", text, re.S | re.M)
    code = []
    for kind, body in blocks:
        if kind == "python":
            code.append(body)
        elif body.startswith(".. plot::\n"):
            _, source = _split_plot(body)
            code.append(source)
    return code


def _split_plot(body: str) -> tuple[str, str]:
    """``(options, code)`` of a ``.. plot::`` directive's text."""
    inner = textwrap.dedent(body.split("\n", 1)[1])
    head = re.match(r"\A((?::[\w-]+:.*\n)*)\n?", inner)
    return head.group(1), inner[head.end():]


def _plot_blocks(page: Path) -> list[str]:
    """The options of each of a page's ``.. plot::`` directives, as text."""
    blocks = re.findall(r"^```\{eval-rst\}\n(\.\. plot::\n.*?)^```", page.read_text(),
                        re.S | re.M)
    return [_split_plot(b)[0] for b in blocks]


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
    (tmp_path / "_autosummary").mkdir()
    for stub in ("epinn.load_dataset", "epinn.datasets.gone", "epinn.gone"):
        (tmp_path / "_autosummary" / f"{stub}.rst").write_text("stub")
    api_pages.write_api_pages(ROOT / "epinn", tmp_path)
    assert not (tmp_path / "gone.rst").exists()
    stubs = [p.stem for p in (tmp_path / "_autosummary").iterdir()]
    assert stubs == ["epinn.load_dataset"]  # stubs of names no page lists are removed


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


# The guide pages' examples run in the documentation build (plot directives; an error
# fails the build), see test_docs_build_without_warnings.


def _run_page_in_subprocess(page: Path) -> str:
    """Execute a page's python blocks in a fresh interpreter (pages that enable float64).

    Returns what they printed.
    """
    code = "\n".join(_python_blocks(page))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# --- the build -------------------------------------------------------------------------

#: What the build needs: the ``docs`` extra of pyproject.toml (import names).
DOCS_EXTRA = ("sphinx", "furo", "myst_parser", "sphinx_gallery", "sphinx-mathjax-offline")


def _skip_without_docs_extra() -> None:
    missing = [m for m in DOCS_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        (pytest.fail if os.environ.get("EPINN_DOCS_REQUIRED") else pytest.skip)(f"the docs extra is not installed (missing {', '.join(missing)}): "
                    'pip install -e ".[docs]"')


def _build(out: Path, env_extra=None) -> Path:
    _skip_without_docs_extra()
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
        str(out / "doctrees"),
        str(DOCS),
        str(out / "html"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out / "html"


_BUILT: dict[str, Path] = {}


def built_docs(tmp_path_factory) -> Path:
    """The site built once per test session (shared with tests/test_docs_browser.py).

    ``EPINN_DOCS_HTML=docs/_build/html`` checks a site built before instead.
    """
    if os.environ.get("EPINN_DOCS_HTML"):
        return Path(os.environ["EPINN_DOCS_HTML"]).resolve()
    if "html" not in _BUILT:
        _BUILT["html"] = _build(tmp_path_factory.mktemp("docs"))
    return _BUILT["html"]


@pytest.fixture
def docs_html(tmp_path_factory) -> Path:
    return built_docs(tmp_path_factory)


def test_docs_build_skips_without_the_docs_extra(monkeypatch):
    monkeypatch.delenv("EPINN_DOCS_REQUIRED", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "furo" else real(name, *a))
    with pytest.raises(pytest.skip.Exception, match=r"missing furo.*\[docs\]"):
        _skip_without_docs_extra()
    monkeypatch.setenv("EPINN_DOCS_REQUIRED", "1")  # in CI: a failure, not a skip
    with pytest.raises(pytest.fail.Exception, match="missing furo"):
        _skip_without_docs_extra()


GUIDE_PAGES = ("getting_started", "guide/nn_core", "guide/epidemic_models", "guide/estimation",
               "guide/forecasting", "guide/bayesian", "guide/scaling", "guide/custom_models",
               "guide/stochastic", "guide/amortized")


@pytest.mark.parametrize("page", GUIDE_PAGES)
def test_guide_pages_draw_figures_from_their_examples(page):
    """Each page runs its examples as plot directives, in one namespace, some with figures."""
    blocks = _plot_blocks(DOCS / f"{page}.md")
    assert blocks, f"{page} has no plot directive"
    # Inside ```{eval-rst} the directive's own counter restarts with each block: without a
    # prefix of their own, all figures of a page would be written to one file.
    prefixes = [re.search(r"^:filename-prefix: (\S+)$", b, re.M) for b in blocks]
    assert all(prefixes) and len({m.group(1) for m in prefixes}) == len(blocks)
    blocks = [re.sub(r"^:filename-prefix: .*\n", "", b, flags=re.M) for b in blocks]
    assert blocks[0].startswith(":context: reset\n")  # a fresh namespace for each page
    assert all(b.startswith(":context: ") and ":include-source: true" in b for b in blocks)
    assert any(":nofigs:" not in b for b in blocks)  # at least one draws a figure


def test_landing_page():
    text = (DOCS / "index.md").read_text()
    assert "_static/boarding_school_fits.png" in text
    assert (DOCS / "_static" / "boarding_school_fits.png").exists()
    assert "generated/snippets/main_command.md" in text  # README's two commands
    example = _python_blocks(DOCS / "index.md")
    assert len(example) == 1 and len(example[0].strip().splitlines()) <= 12
    for guide in GUIDE_PAGES[1:]:
        assert f"{{doc}}`{guide}`" in text
    assert text.count(":hidden:") == text.count("{toctree}")  # no wall of links


def test_recorded_gallery_figures():
    """Every experiment has figures in the gallery: run at build time or recorded."""
    for script in sorted((ROOT / "experiments").glob("[!_]*.py")):
        if script.stem.startswith("plot_"):
            continue
        command, names = gallery_utils.recorded_figures(DOCS / gallery_utils.FIGURES / script.stem)
        assert names, f"no recorded figures for {script.stem}: python docs/ext/gallery_figures.py"
        assert command.startswith(f"python experiments/{script.stem}.py")


def test_with_figures(tmp_path):
    folder = tmp_path / "one"
    assert gallery_utils.with_figures(SCRIPT, "one", folder) == SCRIPT  # nothing recorded
    folder.mkdir()
    (folder / "b.png").write_bytes(b"png")
    (folder / "a.png").write_bytes(b"png")
    (folder / "figures.txt").write_text("python experiments/one.py --quick\nb.png\nmissing.png\na.png\n")
    assert gallery_utils.recorded_figures(folder) == ("python experiments/one.py --quick",
                                                      ["b.png", "a.png"])
    out = gallery_utils.with_figures(SCRIPT, "one", folder)
    ast.parse(out)
    tail = out[len(SCRIPT.rstrip()):]
    assert "``python experiments/one.py --quick``" in tail
    assert tail.index("_static/gallery/one/b.png") < tail.index("_static/gallery/one/a.png")
    thumb = tail.index("sphinx_gallery_thumbnail_path = '_static/gallery/one/b.png'")
    assert thumb < tail.index("# %%")  # in the code block (hidden there), not in the text
    assert "missing.png" not in tail


@pytest.mark.slow
def test_index_example_runs():
    out = _run_page_in_subprocess(DOCS / "index.md")
    beta, gamma, r0 = (float(v) for v in out.splitlines()[0].split())
    assert abs(beta - 1.669) < 1e-3 and abs(gamma - 0.443) < 1e-3 and abs(r0 - 3.76) < 1e-2


@pytest.mark.slow
@pytest.mark.xdist_group("docs")  # one build per test run under pytest-xdist
def test_docs_build_without_warnings(docs_html, tmp_path):
    html = docs_html
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
    # Figures made at build time by the code on each guide page: one image (at least) per
    # plot directive that draws (epinn.plot_* return figures pyplot does not know of: the
    # pages must pass them an `ax`).
    for page in GUIDE_PAGES:
        text = (html / f"{page}.html").read_text()
        images = set(re.findall(r'<img[^>]+class="plot-directive"[^>]+src="([^"]+)"', text))
        drawing = [b for b in _plot_blocks(DOCS / f"{page}.md") if ":nofigs:" not in b]
        assert len(images) >= len(drawing), (page, images)
    # A real thumbnail and the figures on every gallery page, no placeholder.
    from sphinx_gallery.gen_rst import glr_path_static, scale_image

    placeholder = tmp_path / "placeholder.png"
    scale_image(Path(glr_path_static()) / "no_image.png", placeholder, 400, 280)
    for script in (ROOT / "experiments").glob("[!_]*.py"):
        page = (html / "auto_examples" / f"{script.stem}.html").read_text()
        assert "<img" in page, script.stem
        thumb = next(html.rglob(f"sphx_glr_{script.stem}_thumb.png"))
        assert thumb.read_bytes() != placeholder.read_bytes(), script.stem
    # MathJax is served from the site itself, not from a CDN.
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    start = (html / "getting_started.html").read_text()
    assert re.search(r'<script[^>]+src="_static/mathjax/tex-chtml\.js', start)
    assert "cdn.jsdelivr" not in start


@pytest.mark.slow
@pytest.mark.xdist_group("docs")  # one build per test run under pytest-xdist
def test_docs_gallery_runs_only_plot_scripts(docs_html):
    """plot_*.py scripts run at build time with --quick; the others are only rendered."""
    images = docs_html / "_images"
    for script in sorted((ROOT / "experiments").glob("[!_]*.py")):
        page = (docs_html / "auto_examples" / f"{script.stem}.html").read_text()
        made = list(images.glob(f"sphx_glr_{script.stem}_0*.png"))
        if script.stem.startswith("plot_"):
            assert made, script.stem  # executed: its figures are made by the build
        else:
            assert not made, script.stem  # never executed: its figures are the recorded ones
            _, names = gallery_utils.recorded_figures(DOCS / "_static" / "gallery" / script.stem)
            assert names, script.stem  # every gallery entry shows figures
            for name in names:  # copied to _images/ (a clash of names gets a number: x1.png)
                stem, ext = name.rsplit(".", 1)
                assert re.search(rf'src="\.\./_images/{re.escape(stem)}\d*\.{ext}"', page), (
                    script.stem, name)
    ensemble = (docs_html / "auto_examples" / "plot_sir_ensemble.html").read_text()
    assert "2000 members" in ensemble  # run with --quick
