"""Record the figures of the experiments that the documentation build does not run.

Usage (from the repository root)::

    python docs/ext/gallery_figures.py                  # every experiment but plot_*.py
    python docs/ext/gallery_figures.py boarding_school  # one

Each experiment runs with the arguments in :data:`RUNS` (``--seed 0``, ``--outdir`` a
temporary folder); its PNGs are copied into ``docs/_static/gallery/NAME/`` with a
``figures.txt`` that names the command and the figures in the order the gallery page shows
them (see ``gallery_utils.with_figures``). Rerun it when an experiment's figures change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "ext"))

from gallery_utils import FIGURES  # noqa: E402

#: Arguments per experiment: ``--quick`` where a full run takes many minutes on 2 cores.
RUNS: dict[str, list[str]] = {
    "bayesian_sir": ["--quick"],
    "bnn_regression": ["--quick"],
    "boarding_school": ["--quick"],
    "neural_beta": [],
    "neural_estimator": [],
    "regression_mlp": [],
    "rnn_forecast": ["--quick"],
}

#: The figure shown first (and as the thumbnail) where it is not the first by name.
FIRST = {
    "bayesian_sir": "posterior_predictive.png",
    "boarding_school": "fits.png",
    "neural_beta": "synthetic_beta.png",
    "neural_estimator": "boarding_school_fit.png",
    "rnn_forecast": "forecast_fans.png",
}


def record(stem: str, dest: Path) -> list[str]:
    """Run one experiment and copy its figures to ``dest/stem``; return their names."""
    args = [*RUNS.get(stem, ["--quick"]), "--seed", "0"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "experiments" / f"{stem}.py"), *args, "--outdir", tmp]
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "MPLBACKEND": "Agg"})
        command = " ".join(["python", f"experiments/{stem}.py", *args])
        return store(stem, Path(tmp), command, dest)


def store(stem: str, outdir: Path, command: str, dest: Path) -> list[str]:
    """Copy the PNGs an experiment wrote to ``outdir`` into ``dest/stem`` with their record."""
    pngs = sorted(outdir.rglob("*.png"), key=lambda p: (p.name != FIRST.get(stem), p.name))
    if not pngs:
        raise RuntimeError(f"{stem} wrote no figure to {outdir}")
    out = dest / stem
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for png in pngs:
        shutil.copy2(png, out / png.name)
    names = [p.name for p in pngs]
    (out / "figures.txt").write_text("\n".join([command, *names]) + "\n", encoding="utf-8")
    return names


def main(argv: list[str] | None = None) -> None:
    stems = (argv if argv else None) or sorted(RUNS)
    for stem in stems:
        print(stem, record(stem, DOCS / FIGURES), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
