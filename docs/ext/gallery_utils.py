"""Helpers for the sphinx-gallery page over the repository's ``experiments/`` scripts."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

HEADER = """\
Experiments
===========

The scripts in the repository's ``experiments/`` folder, rendered. Run one with
``python experiments/NAME.py`` or ``epinn run NAME`` (``--help`` lists its options); each
writes its figures and a ``summary.json`` to ``--outdir``. Scripts named ``plot_*.py`` run
while the documentation is built (with ``--quick``); the others take minutes, so their pages
show the figures of a recorded run (the command is on each page, under the code).
"""

#: Where the recorded figures of the experiments live, relative to ``docs/``: one folder per
#: experiment with its PNGs and ``command.txt`` (written by ``gallery_figures.py``).
FIGURES = "_static/gallery"


def copy_experiments(src: Path, dst: Path, figures: Path | None = None) -> Path:
    """Copy ``src/*.py`` into a fresh ``dst`` beside the gallery header; return ``dst``.

    sphinx-gallery needs a header file in the folder it reads; working on a copy keeps
    ``experiments/`` free of Sphinx files. A script that is not run at build time and has
    recorded figures in ``figures/<stem>/`` (``figures`` is ``docs/`` + :data:`FIGURES`)
    gets them appended (see :func:`with_figures`).
    """
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    (dst / "GALLERY_HEADER.rst").write_text(HEADER, encoding="utf-8")
    if src.is_dir():
        for script in sorted(src.glob("*.py")):
            if script.stem.startswith("_"):  # helpers: copied for imports, not rendered
                shutil.copy2(script, dst / script.name)
            else:
                text = with_title(script.read_text(encoding="utf-8"), script.stem)
                recorded = figures / script.stem if figures is not None else None
                if recorded is not None and not script.stem.startswith("plot_"):
                    text = with_figures(text, script.stem, recorded)
                (dst / script.name).write_text(text, encoding="utf-8")
    return dst


def with_title(source: str, stem: str) -> str:
    """The script with its docstring opened by an rst title, as sphinx-gallery needs.

    Experiment docstrings open "Experiment: what it does." (house style), not with an rst
    heading; the first line becomes the page title (without the "Experiment:" prefix), the
    rest of the docstring follows, then how to run the script. A script that already opens
    with a title, or cannot be parsed, is returned unchanged.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    node = tree.body[0] if tree.body else None
    has_doc = (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )
    doc = (ast.get_docstring(tree) or "") if has_doc else ""
    lines = doc.strip().splitlines()
    if len(lines) > 1 and lines[1].strip() and set(lines[1].strip()) <= set("=-~^#*"):
        return source  # already an rst title
    first = lines[0].strip() if lines else ""
    title = first.removeprefix("Experiment:").strip() or stem
    title = f"{stem}: {title[0].upper()}{title[1:]}" if title != stem else stem
    body = "\n".join(lines[1:]).strip()
    run = (
        f"Run it with ``python experiments/{stem}.py`` or ``epinn run {stem}``; ``--help`` "
        "lists its options."
    )
    text = "\n\n".join(p for p in (f"{title}\n{'=' * len(title)}", body, run) if p)
    literal = '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '\n"""'
    src_lines = source.splitlines(keepends=True)
    if has_doc:
        rest = src_lines[node.end_lineno :]
        head = src_lines[: node.lineno - 1]
    else:
        rest, head = src_lines, []
    return "".join(head) + literal + "\n" + "".join(rest)


def recorded_figures(folder: Path) -> tuple[str, list[str]]:
    """The command and the figure names recorded in ``folder/figures.txt``.

    The file's first line is the command that made the figures, each further line the name
    of a PNG in ``folder``, in the order to show them (the first is the thumbnail). Names
    whose file is missing are left out; ``("", [])`` when there is no record.
    """
    record = folder / "figures.txt"
    if not record.is_file():
        return "", []
    command, *names = record.read_text(encoding="utf-8").strip().splitlines()
    return command.strip(), [n.strip() for n in names if (folder / n.strip()).is_file()]


def with_figures(source: str, stem: str, folder: Path) -> str:
    """The script with a closing text cell that shows the recorded figures in ``folder``.

    The cell names the command that made them and the first figure becomes the gallery
    thumbnail (see :func:`recorded_figures`). Without recorded figures the source is
    returned unchanged.
    """
    command, names = recorded_figures(folder)
    if not names:
        return source
    # The thumbnail setting closes the last code block, where sphinx-gallery reads it and
    # (remove_config_comments) hides it; inside the text cell it would be shown as text.
    lines = ["", "", f"# sphinx_gallery_thumbnail_path = '{FIGURES}/{stem}/{names[0]}'", "",
             "# %%", "# Figures", "# -------", "#",
             f"# What ``{command}`` wrote, recorded with ``python docs/ext/gallery_figures.py",
             f"# {stem}`` (the script takes minutes, so it does not run while the documentation",
             "# is built).", "#"]
    for name in names:
        lines += [f"# .. image:: /{FIGURES}/{stem}/{name}", f"#    :alt: {name}", "#"]
    lines.append("")
    return source.rstrip("\n") + "\n".join(lines)


def quick_argv(gallery_conf, script_vars) -> list[str]:
    """Command-line arguments for the executed ``plot_*.py`` scripts: a quick run."""
    return ["--quick"]
