"""The ``epinn`` command: list and run experiments, print or export bundled data sets.

Usage::

    epinn list                              # experiments and data sets
    epinn run NAME [--outdir DIR] [--seed N] [--quick] [--quiet] [other options]
    epinn run NAME --help                   # the experiment's own options
    epinn data NAME [--csv PATH] [--info] [--variant V]

Experiments are the scripts ``experiments/NAME.py`` of the source tree (each has an
importable ``main(args_list=None)`` that parses its arguments with argparse). They are
found next to the package (``Path(epinn.__file__).parents[1] / "experiments"``, i.e. an
editable install of the repository) or in the directory named by the ``EPINN_EXPERIMENTS``
environment variable. ``epinn run`` forwards every option after ``NAME`` to the script.

Bad arguments print one line ``epinn: error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from . import __version__
from . import datasets as _datasets

__all__ = ["main"]

ENV_VAR = "EPINN_EXPERIMENTS"


class _UsageError(Exception):
    """A bad command line; its message becomes the one ``epinn: error:`` line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage block) and never exits."""

    def error(self, message):  # noqa: D401 - argparse's API
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# --- experiments ---------------------------------------------------------------------


def _experiments_dir() -> Path:
    """The experiments directory: ``$EPINN_EXPERIMENTS`` or ``<repo>/experiments``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import epinn

    return Path(epinn.__file__).resolve().parents[1] / "experiments"


def _require_experiments_dir() -> Path:
    path = _experiments_dir()
    if not path.is_dir():
        raise _UsageError(
            f"no experiments directory at {path}; the scripts ship with the source tree: "
            f"install epinn editable from the repository or set {ENV_VAR}=/path/to/experiments"
        )
    return path


def _summary_line(path: Path) -> str:
    """First line of a script's docstring, read with ``ast`` (the script is not imported)."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return "(could not be read)"
    if not doc:
        return ""
    line = doc.strip().splitlines()[0].strip()
    return line.removeprefix("Experiment:").strip()


def _find_experiments(directory: Path) -> dict[str, Path]:
    """Experiment scripts in ``directory``: ``{stem: path}`` for ``*.py`` not starting ``_``."""
    return {p.stem: p for p in sorted(directory.glob("*.py")) if not p.stem.startswith("_")}


@contextlib.contextmanager
def _script_context(path: Path, argv: list[str]):
    """Run as ``python path argv...`` would: script folder on sys.path, sys.argv set."""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.parent))
    try:
        yield
    finally:
        sys.argv = old_argv
        sys.path[:] = old_path


def _exit_code(code) -> int:
    """Translate a ``SystemExit`` code or ``main()`` return value into an exit status."""
    if code is None or code is True:
        return 0
    if isinstance(code, bool):  # False
        return 1
    if isinstance(code, int):
        return code
    return 0  # e.g. a summary dict returned by main()


def _run_experiment(name: str, forwarded: list[str]) -> int:
    directory = _require_experiments_dir()
    found = _find_experiments(directory)
    if name not in found:
        valid = ", ".join(found) or "none"
        raise _UsageError(f"unknown experiment {name!r}; choose from: {valid}")
    path = found[name]
    module_name = f"_epinn_experiment_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    with _script_context(path, forwarded):
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
            entry = getattr(module, "main", None)
            if not callable(entry):
                raise _UsageError(f"experiment {name!r} ({path}) has no main() function")
            try:
                return _exit_code(entry(forwarded))
            except SystemExit as exc:  # argparse inside the script: --help or bad options
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                    return 1
                return _exit_code(exc.code)
        finally:
            sys.modules.pop(module_name, None)


# --- commands ------------------------------------------------------------------------


def _cmd_list(args, out) -> int:
    show_exp = not args.datasets
    show_data = not args.experiments
    if show_exp:
        directory = _experiments_dir()
        if directory.is_dir():
            found = _find_experiments(directory)
            print(f"Experiments (epinn run NAME), in {directory}:", file=out)
            width = max((len(n) for n in found), default=0)
            for name, path in found.items():
                print(f"  {name:<{width}}  {_summary_line(path)}".rstrip(), file=out)
            if not found:
                print("  (none)", file=out)
        else:
            print(f"Experiments: none found (no directory {directory}; set {ENV_VAR}).", file=out)
    if show_exp and show_data:
        print(file=out)
    if show_data:
        print("Data sets (epinn data NAME):", file=out)
        names = _datasets.list_datasets()
        width = max(len(n) for n in names)
        for name in names:
            data = _datasets.load_dataset(name)
            what = f"{len(data.t)} {data.time_unit}s of {data.observed}" + (
                f", N={data.population}" if data.population else ""
            )
            print(f"  {name:<{width}}  {data.title} ({what})", file=out)
    return 0


def _cmd_data(args, out) -> int:
    if args.name not in _datasets.list_datasets():
        valid = ", ".join(_datasets.list_datasets())
        raise _UsageError(f"unknown data set {args.name!r}; choose from: {valid}")
    kwargs = {}
    if args.variant is not None:
        if args.name != "boarding_school":
            raise _UsageError("--variant applies only to the data set 'boarding_school'")
        kwargs["variant"] = args.variant
    try:
        data = _datasets.load_dataset(args.name, **kwargs)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if args.info:
        unit = data.time_unit
        print(f"name:        {data.name}", file=out)
        print(f"title:       {data.title}", file=out)
        print(f"records:     {len(data.t)} ({unit}s {data.t[0]:g}..{data.t[-1]:g})", file=out)
        if data.dates is not None:
            print(f"dates:       {data.dates[0]} .. {data.dates[-1]}", file=out)
        print(f"observed:    {data.observed} (columns: {', '.join(data.series)})", file=out)
        print(f"population:  {data.population if data.population else 'not stated'}", file=out)
        print(f"description: {data.description}", file=out)
        print("citation:", file=out)
        for line in data.citation.splitlines():
            print(f"  {line}", file=out)
        return 0
    if args.csv is not None:
        path = Path(args.csv)
        if not path.parent.is_dir():
            raise _UsageError(f"--csv: directory {path.parent} does not exist")
        data.to_csv(path)
        print(f"wrote {data.name} ({len(data.t)} records) to {path}", file=out)
        return 0
    out.write(data.to_csv())
    return 0


def _cmd_run(args, forwarded: list[str], run_parser: argparse.ArgumentParser, out) -> int:
    if args.name is None:
        if args.help:
            run_parser.print_help(file=out)
            return 0
        raise _UsageError("the following argument is required: NAME (see 'epinn list')")
    common = []
    if args.outdir is not None:
        common += ["--outdir", args.outdir]
    if args.seed is not None:
        common += ["--seed", str(args.seed)]
    if args.quick:
        common.append("--quick")
    if args.quiet:
        common.append("--quiet")
    if args.help:
        common.append("--help")
    return _run_experiment(args.name, common + forwarded)


# --- parser --------------------------------------------------------------------------


def _build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = _Parser(
        prog="epinn",
        description="epinn: neural networks for epidemic modelling in JAX. "
        "Run the experiments, look at the bundled outbreak data.",
        epilog="Run 'epinn COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"epinn {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    p_list = sub.add_parser(
        "list",
        help="list experiments and data sets",
        description="List the experiment "
        "scripts (name and first docstring line) and the bundled data sets.",
    )
    which = p_list.add_mutually_exclusive_group()
    which.add_argument("--experiments", action="store_true", help="only experiments")
    which.add_argument("--datasets", action="store_true", help="only data sets")

    p_run = sub.add_parser(
        "run",
        help="run an experiment script",
        add_help=False,
        allow_abbrev=False,
        description="Run experiments/NAME.py through its main(). The options below are the "
        "ones every experiment understands; any other option is forwarded to the script "
        "unchanged ('epinn run NAME --help' shows the script's own options).",
        epilog="Experiments are looked up in $" + ENV_VAR + " or in the repository's "
        "experiments/ folder; 'epinn list' shows them.",
    )
    p_run.add_argument("name", nargs="?", metavar="NAME", help="experiment (file stem)")
    p_run.add_argument(
        "-h",
        "--help",
        action="store_true",
        help="show this help, or with NAME the experiment's help",
    )
    p_run.add_argument("--outdir", help="directory for figures and summary.json")
    p_run.add_argument("--seed", type=int, help="random seed")
    p_run.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    p_run.add_argument("--quiet", action="store_true", help="no progress bars")

    p_data = sub.add_parser(
        "data",
        help="print or export a bundled data set as CSV",
        description="Print a bundled data set as CSV (source kept as '#' comments), "
        "write it to a file, or describe it.",
    )
    p_data.add_argument(
        "name", metavar="NAME", help="one of: " + ", ".join(_datasets.list_datasets())
    )
    p_data.add_argument("--csv", metavar="PATH", help="write the CSV to PATH instead of stdout")
    p_data.add_argument(
        "--info", action="store_true", help="describe the data set and print its citation"
    )
    p_data.add_argument(
        "--variant",
        help="boarding_school only: which digitisation (outbreaks, pomp, epimdr, benmaier)",
    )
    return parser, p_run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``epinn`` console script.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 for bad arguments (after one ``epinn: error:``
        line on stderr), otherwise the experiment's own status.

    Examples:
        >>> from epinn.cli import main
        >>> main(["data", "zika_yap", "--info"])  # doctest: +ELLIPSIS
        name:        zika_yap
        ...
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, run_parser = _build_parser()
    out = sys.stdout
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command == "run":
            return _cmd_run(args, extra, run_parser, out)
        if extra:
            raise _UsageError(
                f"unrecognized arguments: {' '.join(extra)} (see 'epinn {args.command} --help')"
            )
        if args.command == "list":
            return _cmd_list(args, out)
        return _cmd_data(args, out)
    except _UsageError as exc:
        print(f"epinn: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version inside argparse
        return _exit_code(exc.code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
