"""The ``epinn`` command: list and run experiments, print or export bundled data sets.

Usage::

    epinn list                              # experiments and data sets
    epinn run NAME [--outdir DIR] [--seed N] [--quick] [--quiet] [other options]
    epinn run NAME --help                   # the experiment's own options
    epinn data NAME [--csv PATH] [--info] [--variant V]

Experiments are the scripts ``experiments/NAME.py`` of the source tree (each has an
importable ``main(args_list=None)`` that parses its arguments with argparse). They are
found in the directory named by the ``EPINN_EXPERIMENTS`` environment variable, next to
the package (``Path(epinn.__file__).parents[1] / "experiments"``, i.e. an editable
install of the repository), or where a wheel installs them
(``<sys.prefix>/share/epinn/experiments``). ``epinn run`` forwards every option after ``NAME`` to the script.

Every failure is one line on stderr and a non-zero exit status, never a traceback: bad
arguments print ``epinn: error: ...`` and exit with status 2 (an unknown experiment or
data set name suggests the closest valid one); an experiment that fails while running
prints ``epinn: error: experiment NAME failed: ...`` and exits with status 1. Set
``EPINN_TRACEBACK=1`` to see the full traceback instead.

The experiment scripts share this module's argument checks: :class:`ExperimentParser`
(argparse whose errors are one line), the ``type=`` functions :func:`positive_int`,
:func:`nonnegative_int`, :func:`positive_float`, :func:`nonnegative_float` and
:func:`output_dir`, and :func:`run_script` for their ``__main__`` blocks.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from ._version import __version__
from . import datasets as _datasets

__all__ = [
    "ExperimentParser",
    "main",
    "nonnegative_float",
    "nonnegative_int",
    "output_dir",
    "positive_float",
    "positive_int",
    "run_script",
]

ENV_VAR = "EPINN_EXPERIMENTS"
TRACEBACK_VAR = "EPINN_TRACEBACK"


class _UsageError(Exception):
    """A bad command line; its message becomes the one ``epinn: error:`` line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage block) and never exits."""

    def error(self, message):  # noqa: D401 - argparse's API
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _closest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- argument checks shared with the experiment scripts ------------------------------


class ExperimentParser(argparse.ArgumentParser):
    """argparse for the experiment scripts: a bad option is one line on stderr, status 2.

    ``prog: error: MESSAGE (see 'prog --help')`` instead of argparse's usage block.

    Examples:
        >>> p = ExperimentParser(prog="toy")
        >>> _ = p.add_argument("--epochs", type=positive_int, default=3)
        >>> p.parse_args(["--epochs", "5"]).epochs
        5
    """

    def error(self, message):  # noqa: D401 - argparse's API
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text: str, kind: type, what: str,
            ok: Callable[[int | float], bool] = lambda value: True) -> int | float:
    """``kind(text)``, finite for floats and with ``ok(value)``; else "must be {what}"."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if (kind is float and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an int ``>= 1``.

    Examples:
        >>> positive_int("3")
        3
    """
    return _number(text, int, "a positive integer", lambda value: value >= 1)


def nonnegative_int(text: str) -> int:
    """argparse ``type=``: an int ``>= 0``."""
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite float ``> 0``."""
    return _number(text, float, "a positive finite number", lambda value: value > 0)


def nonnegative_float(text: str) -> float:
    """argparse ``type=``: a finite float ``>= 0``."""
    return _number(text, float, "a finite number >= 0", lambda value: value >= 0)


def output_dir(text: str) -> str:
    """argparse ``type=``: a folder that is, or can be created as, a writable directory.

    Nothing is created here: the nearest existing ancestor must be a writable directory
    (and ``text`` itself, if it exists, a directory).
    """
    if not text:
        raise argparse.ArgumentTypeError("must name a folder; got ''")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write to {text!r}: {str(probe)!r} is not "
                                         "writable")
    return text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_script(entry: Callable[[list[str] | None], object],
               argv: list[str] | None = None) -> int:
    """Run an experiment's ``main(argv)`` as a command: the exit status, never a traceback.

    For the ``if __name__ == "__main__":`` block of the experiment scripts:
    ``sys.exit(run_script(main))``. A failure prints ``prog: error: Type: message`` (one
    line) on stderr and returns 1 (130 on Ctrl-C); ``EPINN_TRACEBACK=1`` re-raises.
    """
    prog = Path(sys.argv[0]).name or "experiment"
    return _call(entry, argv, f"{prog}: interrupted",
                 lambda exc: f"{prog}: error: {_one_line(exc)}")


def _call(entry: Callable[[list[str] | None], object], argv: list[str] | None,
          interrupted: str, failed: Callable[[Exception], str]) -> int:
    """``entry(argv)`` as an exit status: what it returns or exits with (a string exit
    goes to stderr, status 1), 130 after printing ``interrupted`` on Ctrl-C, 1 after
    printing ``failed(exc)`` for an exception (re-raised when ``EPINN_TRACEBACK`` is set).
    """
    try:
        return _exit_code(entry(argv))
    except SystemExit as exc:  # argparse inside the script: --help or bad options
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get(TRACEBACK_VAR):
            raise
        print(failed(exc), file=sys.stderr)
        return 1


# --- experiments ---------------------------------------------------------------------


def _experiments_dir() -> Path:
    """The experiments directory: ``$EPINN_EXPERIMENTS``, ``<repo>/experiments`` (a source
    checkout) or ``<prefix>/share/epinn/experiments`` (installed from a wheel)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import epinn

    source = Path(epinn.__file__).resolve().parents[1] / "experiments"
    installed = Path(sys.prefix) / "share" / "epinn" / "experiments"
    return installed if not source.is_dir() and installed.is_dir() else source


def _require_experiments_dir() -> Path:
    path = _experiments_dir()
    if not path.is_dir():
        raise _UsageError(
            f"no experiments directory at {path}: install epinn from the repository or a "
            f"wheel (which puts the scripts in <prefix>/share/epinn/experiments), or set "
            f"{ENV_VAR}=/path/to/experiments"
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
        raise _UsageError(f"unknown experiment {name!r}{_closest(name, found)}; choose from: "
                          f"{valid}")
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
            return _call(entry, forwarded, f"epinn: experiment {name!r} interrupted",
                         lambda exc: f"epinn: error: experiment {name!r} failed: "
                                     f"{_one_line(exc)} (set {TRACEBACK_VAR}=1 for the "
                                     f"traceback)")
        except _UsageError:
            raise
        except Exception as exc:  # the script itself does not load (syntax, imports...)
            if os.environ.get(TRACEBACK_VAR):
                raise
            raise _UsageError(f"experiment {name!r} ({path}) could not be loaded: "
                              f"{_one_line(exc)}") from None
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
        hint = _closest(args.name, _datasets.list_datasets())
        raise _UsageError(f"unknown data set {args.name!r}{hint}; choose from: {valid}")
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
        path = Path(args.csv).expanduser()
        if not args.csv or path.is_dir():
            raise _UsageError(f"--csv: {args.csv!r} is a directory; name a file in it, e.g. "
                              f"{str(path / (data.name + '.csv'))!r}")
        if not path.parent.is_dir():
            raise _UsageError(f"--csv: directory {path.parent} does not exist")
        try:
            data.to_csv(path)
        except OSError as exc:  # unwritable folder or file, full disk...
            raise _UsageError(f"--csv: cannot write {str(path)!r}: "
                              f"{exc.strerror or exc}") from None
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
    p_run.add_argument("--outdir", type=output_dir,
                       help="directory for figures and summary.json")
    p_run.add_argument("--seed", type=nonnegative_int, help="random seed (an integer >= 0)")
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
        line on stderr), 1 for a failure while running (one line too; 130 on Ctrl-C),
        otherwise the experiment's own status.

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
    except KeyboardInterrupt:
        print("epinn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unforeseen: still one line, not a traceback
        if os.environ.get(TRACEBACK_VAR):
            raise
        print(f"epinn: error: {_one_line(exc)} (set {TRACEBACK_VAR}=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
