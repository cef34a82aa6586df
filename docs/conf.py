"""Sphinx configuration for the epinn documentation.

Build (offline, warnings are errors)::

    pip install -e ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

Set ``EPINN_DOCS_ONLINE=1`` to link to the Python, NumPy, JAX, Flax, optax, diffrax and
numpyro docs through intersphinx (it fetches their inventories, so only when online).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import shutil
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # build-time plots are tiny; no TPU/GPU probing

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "ext"))

from api_pages import reexports, write_api_pages  # noqa: E402
from gallery_utils import FIGURES, copy_experiments  # noqa: E402
from snippets import write_snippets  # noqa: E402
from sphinx.pycode import ModuleAnalyzer  # noqa: E402

import epinn  # noqa: E402

project = "epinn"
author = "epinn developers"
copyright = "epinn developers"  # noqa: A001
release = version = epinn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: math renders offline
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "coverage_check",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "ext",
    "generated/experiments",
    # sphinx-gallery writes these next to the pages it generates; they are not sources.
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
]
nitpicky = False

# --- API pages -----------------------------------------------------------------------
# One page per module that exists now, generated from epinn/__init__.py (see ext/api_pages).
api_modules = write_api_pages(ROOT / "epinn", DOCS / "generated" / "api")
# Text taken from the code (CLI help, data-set catalogue, ...) for the pages to include.
write_snippets(ROOT, DOCS / "generated" / "snippets")

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = False  # jaxtyping strings ("*members T") are not rst
napoleon_use_ivar = True  # `Attributes:` as a field list: no clash with autodoc's members
coverage_check_module = "epinn"

# --- MyST ----------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- intersphinx: only online (an unreachable inventory is an unsuppressible warning) --
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "jax": ("https://docs.jax.dev/en/latest", None),
        "flax": ("https://flax.readthedocs.io/en/latest", None),
        "optax": ("https://optax.readthedocs.io/en/latest", None),
        "diffrax": ("https://docs.kidger.site/diffrax", None),
        "numpyro": ("https://num.pyro.ai/en/stable", None),
    }
    if os.environ.get("EPINN_DOCS_ONLINE")
    else {}
)

# --- plots made at build time (matplotlib's plot directive) ----------------------------
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.figsize": (7.0, 3.2), "savefig.bbox": "tight", "font.size": 9}
# The guide pages run their examples as ```{plot} blocks with ``:context:`` (the first of a
# page ``:context: reset``): the code shown is the code run, in order, in one namespace per
# page, and each block's figures appear under it (see also _reset_jax_config).


# --- experiments gallery -------------------------------------------------------------
# Every script of experiments/ is rendered; only plot_*.py are executed (with --quick), so
# minutes-long experiments never run at build time: their pages show the figures recorded
# in _static/gallery/NAME/ by ext/gallery_figures.py. sphinx-gallery reads a copy that sits
# next to a gallery header (see ext/gallery_utils.py).
# EPINN_EXPERIMENTS points elsewhere, as for the `epinn run` command.
_experiments = Path(os.environ.get("EPINN_EXPERIMENTS") or ROOT / "experiments")
_gallery_src = copy_experiments(
    _experiments, DOCS / "generated" / "experiments", DOCS / FIGURES
)
# Pages of scripts that no longer exist would be orphans (a warning): start afresh.
shutil.rmtree(DOCS / "auto_examples", ignore_errors=True)
(DOCS / "sg_execution_times.rst").unlink(missing_ok=True)

sphinx_gallery_conf = {
    "examples_dirs": [str(_gallery_src.relative_to(DOCS))],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",  # execute only plot_*.py
    "ignore_pattern": r"(^|[/\\])_",  # private helper modules (_x.py) are not examples
    "reset_argv": "gallery_utils.quick_argv",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "show_memory": False,
    "write_computation_times": False,  # no sg_execution_times pages (they go stale)
}


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """Leave out NamedTuple fields ("Alias for field number N"); `Attributes:` covers them."""
    doc = getattr(obj, "__doc__", None)
    if isinstance(doc, str) and doc.startswith("Alias for field number"):
        return True
    return None


_EXPORTED_FROM = {
    name: mod for mod, names in reexports(ROOT / "epinn" / "__init__.py").items() for name in names
}


def _constant_docstring(app, what, name, obj, options, lines):
    """Document a re-exported constant with the docstring it has in its own module.

    autodoc reads a constant's docstring (the string literal or ``#:`` comment after the
    assignment) from the module named in the directive; ``epinn.OPTIMIZERS`` is assigned in
    ``epinn/training/_optimizers.py``, not in ``epinn/__init__.py`` or
    ``epinn/training/__init__.py``, so without this it would show the docstring of ``dict``.
    """
    if what not in ("data", "attribute"):
        return
    type_doc = inspect.cleandoc(type(obj).__doc__ or "").strip()
    if lines and "\n".join(lines).strip() != type_doc:
        return  # it has a docstring of its own
    module, _, short = name.rpartition(".")
    if module == "epinn":
        source = f"epinn.{_EXPORTED_FROM[short]}" if short in _EXPORTED_FROM else None
    else:
        source = module if module.startswith("epinn.") else None
    docs = _attr_docs(source, short) if source is not None else None
    lines[:] = list(docs) if docs else []


def _attr_docs(module: str, short: str) -> list[str] | None:
    """The docstring of constant ``short`` in ``module`` or, for a package such as
    ``epinn.training``, in the private module that assigns it (``_optimizers``, ...)."""
    names = [module]
    path = getattr(importlib.import_module(module), "__path__", None)
    if path is not None:
        names += [f"{module}.{m.name}" for m in pkgutil.iter_modules(path)]
    for name in names:
        docs = ModuleAnalyzer.for_module(name).find_attr_docs().get(("", short))
        if docs:
            return docs
    return None


def _reset_jax_config(app, docname, source):
    """Each page's examples start in float32, as a reader's fresh session would.

    Pages run their examples in the build process (plot directive); one that switches on
    ``jax_enable_x64`` must not change the numbers or the speed of the pages read after it.
    """
    import jax

    jax.config.update("jax_enable_x64", False)


def setup(app):
    # MathJax on every page: module titles with math appear in every page's sidebar.
    app.set_html_assets_policy("always")
    app.connect("source-read", _reset_jax_config)
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
    # Before napoleon (priority 500), so that the docstring put in is parsed like any other.
    app.connect("autodoc-process-docstring", _constant_docstring, priority=100)


# --- HTML ----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"epinn {release}"
html_show_sourcelink = False
