"""Text the docs take from the code at build time, so it cannot drift from it.

``write_snippets(root, out_dir)`` writes small Markdown/text files into ``docs/generated/``
that the hand-written pages ``{include}``: the README's main command (the boarding-school
experiment once it exists, the regression experiment before), the ``epinn --help`` texts,
the data-set catalogue (from :mod:`epinn.datasets`) and the list of benchmark scripts.
"""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path


def main_experiment(root: Path) -> str:
    """Stem of the experiment README's first command runs."""
    experiments = root / "experiments"
    for stem in ("boarding_school", "regression_mlp"):
        if (experiments / f"{stem}.py").exists():
            return stem
    return "regression_mlp"


def first_doc_line(path: Path) -> str:
    """First line of a script's module docstring (read with :mod:`ast`, not imported)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def cli_help(argv: list[str]) -> str:
    """What ``epinn ARGV`` prints (``--help`` texts)."""
    from epinn.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(argv)
    return buffer.getvalue()


def datasets_markdown() -> str:
    """One section per bundled data set: facts, description, citation, source comments."""
    from epinn import datasets

    parts = []
    for name in datasets.list_datasets():
        d = datasets.load_dataset(name)
        span = f"{d.dates[0]} to {d.dates[-1]}" if d.dates else "no calendar dates"
        pop = str(d.population) if d.population else "not stated"
        loader = f"load_{name}" if hasattr(datasets, f"load_{name}") else "load_dataset"
        parts += [
            f"# {d.title}",
            "",
            f'`load_dataset("{name}")` or {{func}}`epinn.{loader}`',
            "",
            "| | |",
            "|---|---|",
            f"| records | {len(d.t)} {d.time_unit}s, t = {d.t[0]:g} .. {d.t[-1]:g} |",
            f"| dates | {span} |",
            f"| `counts` | {d.observed} (columns: {', '.join(f'`{c}`' for c in d.series)}) |",
            f"| population | {pop} |",
            "",
            d.description,
            "",
            "**Cite:**",
            "",
            *[f"- {line}" for line in d.citation.splitlines()],
            "",
            "Source notes kept in the bundled file:",
            "",
            "```text",
            d.source,
            "```",
            "",
        ]
    return "\n".join(parts)


def benchmarks_markdown(root: Path) -> str:
    """A list of ``benchmarks/*.py`` with their first docstring line and how to run them."""
    scripts = sorted(p for p in (root / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
    if not scripts:
        return "This version of epinn contains no benchmark scripts.\n"
    lines = ["| script | what it measures | run |", "|---|---|---|"]
    for p in scripts:
        what = first_doc_line(p).removeprefix("Benchmark:").strip()
        lines.append(f"| `{p.name}` | {what} | `python benchmarks/{p.name}` |")
    return "\n".join(lines) + "\n"


def write_snippets(root: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = main_experiment(root)
    files = {
        "main_command.md": (
            "```bash\n"
            f"pip install -e . && python experiments/{stem}.py\n"
            'pip install -e ".[test]" && pytest\n'
            "```\n"
        ),
        "main_experiment.txt": stem,
        "cli_help.txt": cli_help(["--help"]),
        "cli_list_help.txt": cli_help(["list", "--help"]),
        "cli_run_help.txt": cli_help(["run", "--help"]),
        "cli_data_help.txt": cli_help(["data", "--help"]),
        "datasets.md": datasets_markdown(),
        "benchmarks.md": benchmarks_markdown(root),
    }
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
