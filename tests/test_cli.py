"""Tests for the ``epinn`` command line (epinn.cli), called through ``main([...])``."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import epinn
from epinn import cli, datasets

TOY = '''\
"""Experiment: a toy that records its arguments.

A second paragraph that the listing must not show.
"""
import argparse
import json
from pathlib import Path

import _toy_helper  # a sibling module, importable as when run as `python toy.py`


def main(args_list=None):
    p = argparse.ArgumentParser(description="toy experiment")
    p.add_argument("--outdir", default="unused")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args(args_list)
    Path(a.outdir).mkdir(parents=True, exist_ok=True)
    (Path(a.outdir) / "summary.json").write_text(json.dumps(vars(a)))
    print("toy done", _toy_helper.VALUE)
    return a.epochs - 1  # lets a test see the return value become the exit status
'''


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    """A fake experiments directory with a toy script, selected via EPINN_EXPERIMENTS."""
    d = tmp_path / "experiments"
    d.mkdir()
    (d / "toy.py").write_text(TOY)
    (d / "_toy_helper.py").write_text("VALUE = 42\n")
    (d / "nomain.py").write_text('"""Experiment: has no main."""\nX = 1\n')
    (d / "nodoc.py").write_text("def main(args_list=None):\n    return None\n")
    monkeypatch.setenv(cli.ENV_VAR, str(d))
    return d


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("epinn: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "argv", [["--help"], ["list", "--help"], ["data", "--help"], ["run", "--help"], ["run", "-h"]]
)
def test_help_everywhere(argv, capsys):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: epinn")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert epinn.__version__ in capsys.readouterr().out


def test_list(experiments, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  toy +a toy that records its arguments\.$", out, re.M)
    assert "second paragraph" not in out
    assert "_toy_helper" not in out  # private modules are not experiments
    assert "nodoc" in out and "nomain" in out
    for name in datasets.list_datasets():
        assert name in out
    assert cli.main(["list", "--datasets"]) == 0
    out = capsys.readouterr().out
    assert "toy" not in out and "zika_yap" in out
    assert cli.main(["list", "--experiments"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "zika_yap" not in out


def test_run_forwards_common_and_unknown_args(experiments, tmp_path, capsys):
    outdir = tmp_path / "out"
    argv = [
        "run",
        "toy",
        "--outdir",
        str(outdir),
        "--seed",
        "7",
        "--quick",
        "--quiet",
        "--epochs",
        "1",
    ]
    assert cli.main(argv) == 0
    assert "toy done 42" in capsys.readouterr().out
    got = json.loads((outdir / "summary.json").read_text())
    assert got == {"outdir": str(outdir), "seed": 7, "quick": True, "quiet": True, "epochs": 1}
    # Options after NAME in any order, `--opt=value` form; main's return value is the status.
    assert cli.main(["run", "toy", "--epochs=3", f"--outdir={outdir}"]) == 2
    got = json.loads((outdir / "summary.json").read_text())
    assert got["epochs"] == 3 and got["seed"] == 0 and not got["quick"]
    # The script ran with its own folder on sys.path and sys.argv set; both are restored.
    assert str(experiments) not in sys.path
    assert "_epinn_experiment_toy" not in sys.modules


def test_run_name_help_is_the_experiments_help(experiments, capsys):
    assert cli.main(["run", "toy", "--help"]) == 0
    out = capsys.readouterr().out
    assert "toy experiment" in out and "--epochs" in out


def test_run_bad_experiment_option_fails(experiments, capsys):
    assert cli.main(["run", "toy", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_run_unknown_experiment(experiments, capsys):
    assert cli.main(["run", "nope"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'nope'" in line and "toy" in line


def test_run_without_main(experiments, capsys):
    assert cli.main(["run", "nomain"]) == 2
    assert "main()" in _one_error_line(capsys.readouterr().err)


def test_run_main_returning_none_is_success(experiments):
    assert cli.main(["run", "nodoc"]) == 0


def test_run_missing_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cli.ENV_VAR, str(tmp_path / "missing"))
    assert cli.main(["run", "toy"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "missing" in line and cli.ENV_VAR in line
    # `list` still works and says where it looked.
    assert cli.main(["list"]) == 0
    assert "none found" in capsys.readouterr().out


def test_default_experiments_dir(monkeypatch):
    monkeypatch.delenv(cli.ENV_VAR, raising=False)
    expected = Path(epinn.__file__).resolve().parents[1] / "experiments"
    assert cli._experiments_dir() == expected


def test_installed_experiments_dir(monkeypatch, tmp_path):
    """Without a source checkout next to the package, the scripts a wheel installed under
    ``<prefix>/share/epinn/experiments`` are used."""
    monkeypatch.delenv(cli.ENV_VAR, raising=False)
    package = tmp_path / "site-packages" / "epinn"
    package.mkdir(parents=True)
    monkeypatch.setattr(epinn, "__file__", str(package / "__init__.py"))
    monkeypatch.setattr(cli.sys, "prefix", str(tmp_path / "venv"))
    assert cli._experiments_dir() == tmp_path / "site-packages" / "experiments"  # none yet
    installed = tmp_path / "venv" / "share" / "epinn" / "experiments"
    installed.mkdir(parents=True)
    assert cli._experiments_dir() == installed


@pytest.mark.slow
def test_wheel_holds_every_subpackage_and_the_experiments(tmp_path):
    """A regular (non-editable) install gets the subpackages, the data and the scripts."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(root)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("epinn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(root).as_posix() for p in (root / "epinn").rglob("*.py")
                if "__pycache__" not in p.parts}
    for package in packages:
        assert f"{package}/__init__.py" in names, package
    scripts = {p.name for p in (root / "experiments").glob("*.py")}
    shipped = {n.rsplit("/", 1)[1] for n in names if "/share/epinn/experiments/" in n}
    assert scripts == shipped
    assert any(n.startswith("epinn/data_files/") and n.endswith(".csv") for n in names)


def test_real_experiments_are_listed(monkeypatch, capsys):
    """Every script in the repository's experiments/ shows up with its docstring line.

    The directory is the one beside these tests (always there where the tests run); how
    ``epinn`` finds it by default is test_default_experiments_dir's and
    test_installed_experiments_dir's concern.
    """
    directory = Path(__file__).resolve().parents[1] / "experiments"
    monkeypatch.setenv(cli.ENV_VAR, str(directory))
    assert cli._experiments_dir() == directory
    assert cli.main(["list", "--experiments"]) == 0
    out = capsys.readouterr().out
    for path in directory.glob("*.py"):
        if not path.stem.startswith("_"):
            assert f"  {path.stem}" in out


def test_data_prints_csv(capsys):
    assert cli.main(["data", "boarding_school"]) == 0
    out = capsys.readouterr().out
    assert out == datasets.load_boarding_school().to_csv()
    assert "date,day,in_bed,convalescent\n1978-01-22,1,3,0" in out
    assert out.startswith("# Source:")


def test_data_csv_export(tmp_path, capsys):
    path = tmp_path / "zika.csv"
    assert cli.main(["data", "zika_yap", "--csv", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    assert path.read_text() == datasets.load_zika_yap().to_csv()
    assert cli.main(["data", "zika_yap", "--csv", str(tmp_path / "no" / "x.csv")]) == 2
    assert "--csv" in _one_error_line(capsys.readouterr().err)


def test_data_info_and_variant(capsys):
    assert cli.main(["data", "boarding_school", "--variant", "pomp", "--info"]) == 0
    out = capsys.readouterr().out
    assert "763" in out and "pomp" in out and "doi:10.1136/bmj.1.6112.587" in out
    assert cli.main(["data", "boarding_school", "--variant", "epimdr"]) == 0
    assert "\n1978-01-24,3,28\n" in capsys.readouterr().out
    assert cli.main(["data", "boarding_school", "--variant", "bad"]) == 2
    assert "variant" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["data", "zika_yap", "--variant", "pomp"]) == 2
    assert "--variant" in _one_error_line(capsys.readouterr().err)


def test_data_unknown_name(capsys):
    assert cli.main(["data", "ebola"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    for name in datasets.list_datasets():
        assert name in line


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["lst"],
        ["--bogus", "list"],
        ["list", "extra"],
        ["data"],
        ["run"],
        ["run", "--seed", "x", "toy"],
    ],
)
def test_bad_arguments_one_line(argv, experiments, capsys):
    assert cli.main(argv) == 2
    _one_error_line(capsys.readouterr().err)


def test_module_entry_point_exit_status():
    """`python -m epinn.cli` (what the console script runs) exits with main()'s status."""
    proc = subprocess.run(
        [sys.executable, "-m", "epinn.cli", "data", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert _one_error_line(proc.stderr).startswith("epinn: error: unknown data set")


# --------------------------------------------------------------------- issue 22, class 7

FAILING = '''\
"""Experiment: fails while running."""


def main(args_list=None):
    raise RuntimeError("the solver gave up\\nsecond line of detail")
'''

REAL = Path(__file__).resolve().parents[1] / "experiments"
REAL_NAMES = sorted(p.stem for p in REAL.glob("*.py") if not p.stem.startswith("_"))
# One invalid option of each experiment's own (checked by its argparse, before any work).
OWN_BAD_OPTION = {
    "bayesian_sir": ["--samples", "0"],
    "bnn_regression": ["--epochs", "0"],
    "boarding_school": ["--methods", "pin"],
    "neural_beta": ["--smoothness", "-1"],
    "neural_estimator": ["--n-test", "-5"],
    "plot_sir_ensemble": ["--members", "0"],
    "regression_mlp": ["--epochs", "0"],
    "rnn_forecast": ["--lr", "nan"],
}


def test_bad_option_cases_name_real_experiments():
    assert REAL_NAMES and set(OWN_BAD_OPTION) <= set(REAL_NAMES)


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_experiment_accepts_quick_and_refuses_bad_options(name, monkeypatch, capsys,
                                                               tmp_path):
    """`epinn run NAME --quick --help` works; bad options are one line and status 2."""
    monkeypatch.delenv(cli.ENV_VAR, raising=False)
    assert cli.main(["run", name, "--quick", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--outdir" in out and "--seed" in out
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    own = [OWN_BAD_OPTION[name]] if name in OWN_BAD_OPTION else []  # newer scripts: common
    for argv in (*own, ["--seed", "-1"], ["--seed", "1.5"],
                 ["--outdir", str(a_file)], ["--outdir", str(a_file / "sub")]):
        assert cli.main(["run", name, *argv]) == 2, argv
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and ": error: " in lines[0], (argv, err)
        assert argv[0] in lines[0] or argv[0].lstrip("-") in lines[0], (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "results").exists()  # nothing ran


def test_experiment_failure_is_one_line(experiments, capsys, monkeypatch):
    (experiments / "failing.py").write_text(FAILING)
    (experiments / "broken.py").write_text("def main(:\n")
    assert cli.main(["run", "failing"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "experiment 'failing' failed: RuntimeError: the solver gave up" in line
    assert "second line" not in line and cli.TRACEBACK_VAR in line
    assert cli.main(["run", "broken"]) == 2
    assert "could not be loaded: SyntaxError" in _one_error_line(capsys.readouterr().err)
    monkeypatch.setenv(cli.TRACEBACK_VAR, "1")  # the traceback, for debugging
    with pytest.raises(RuntimeError, match="gave up"):
        cli.main(["run", "failing"])


def test_unknown_names_suggest_the_closest(experiments, capsys):
    assert cli.main(["run", "toi"]) == 2
    assert "did you mean 'toy'" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["data", "zika_yapp"]) == 2
    assert "did you mean 'zika_yap'" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["data", "boarding_scool", "--info"]) == 2
    assert "did you mean 'boarding_school'" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["run", "zzzzzz"]) == 2
    assert "did you mean" not in _one_error_line(capsys.readouterr().err)


def test_run_common_options_checked_by_epinn(experiments, tmp_path, capsys):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for argv, match in [
        (["--outdir", str(a_file)], "--outdir.*not a directory"),
        (["--outdir", str(a_file / "deeper")], "--outdir.*is a file"),
        (["--outdir", ""], "--outdir"),
        (["--seed", "-3"], "--seed.*>= 0"),
        (["--seed", "abc"], "--seed"),
    ]:
        assert cli.main(["run", "toy", *argv]) == 2, argv
        assert re.search(match, _one_error_line(capsys.readouterr().err)), argv
    assert not (tmp_path / "summary.json").exists()


def test_data_csv_to_directory_or_unwritable_path(tmp_path, capsys):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for target, match in [
        (tmp_path, "is a directory.*zika_yap.csv"),
        (a_file / "x.csv", "does not exist"),
        (tmp_path / "missing" / "x.csv", "does not exist"),
    ]:
        assert cli.main(["data", "zika_yap", "--csv", str(target)]) == 2
        assert re.search(match, _one_error_line(capsys.readouterr().err)), target
    # A path that cannot be written (a directory in the way of the temporary file, or no
    # permission) is one line too: here a read-only file in a read-only folder.
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        status = cli.main(["data", "zika_yap", "--csv", str(ro / "x.csv")])
        err = capsys.readouterr().err
        if status != 0:  # root may write anyway
            assert status == 2 and "cannot write" in _one_error_line(err)
    finally:
        ro.chmod(0o700)


def test_argument_types():
    import argparse

    assert cli.positive_int("7") == 7 and cli.nonnegative_int("0") == 0
    assert cli.positive_float("1e-3") == 1e-3 and cli.nonnegative_float("0") == 0.0
    for fn, text in [(cli.positive_int, "0"), (cli.positive_int, "2.5"),
                     (cli.positive_int, "x"), (cli.nonnegative_int, "-1"),
                     (cli.positive_float, "0"), (cli.positive_float, "inf"),
                     (cli.positive_float, "nan"), (cli.nonnegative_float, "-0.1"),
                     (cli.nonnegative_float, "abc")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
            fn(text)


def test_run_script_one_line(capsys, monkeypatch):
    def failing(argv):
        raise ValueError("`epochs` must be >= 1; got 0.\nmore")

    assert cli.run_script(failing) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("error: ValueError: `epochs` must be >= 1; got 0.")
    assert cli.run_script(lambda argv: {"summary": 1}) == 0
    parser = cli.ExperimentParser(prog="toy")
    parser.add_argument("--epochs", type=cli.positive_int, default=1)
    assert cli.run_script(lambda argv: parser.parse_args(["--epochs", "0"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["toy: error: argument --epochs: must be a positive integer; got '0' "
                   "(see 'toy --help')"]


def test_script_entry_point_no_traceback(tmp_path):
    """`python experiments/NAME.py` with a bad option: one line, status 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(REAL / "plot_sir_ensemble.py"), "--members", "0",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--members" in lines[0], proc.stderr
