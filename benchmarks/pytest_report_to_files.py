"""A pytest plugin for benchmarks/run_on_gpu.sh: write each failure and duration at once.

A run stopped by its time budget prints no summary; this keeps what was learnt so far.
Files go to ``$EPINN_REPORT_DIR`` (``failures.txt``: node id and traceback per failure;
``durations.txt``: seconds, outcome and node id per test). Under pytest-xdist only the
controlling process writes.
"""

import os


def _write(name: str, text: str) -> None:
    folder = os.environ.get("EPINN_REPORT_DIR")
    if folder and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(os.path.join(folder, name), "a") as f:
            f.write(text)


def pytest_runtest_logreport(report):
    if report.failed:
        _write("failures.txt", f"==== {report.nodeid} ({report.when})\n"
                               f"{report.longreprtext[-3000:]}\n")
    if report.when == "call":
        _write("durations.txt", f"{report.duration:.1f} {report.outcome} {report.nodeid}\n")
