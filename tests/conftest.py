import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import jax.random as jr
import pytest


@pytest.fixture
def key():
    return jr.PRNGKey(0)


@pytest.fixture
def x64():
    """Run a test in float64 (for comparisons with scipy at tight tolerances)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _free_compiled_programs_after_slow_tests(request):
    """Slow end-to-end tests compile large programs; drop them afterwards.

    One pytest process runs every slow test, and without this the compiled executables of
    all of them stay in memory (an XLA compile once crashed late in such a run).
    """
    yield
    if request.node.get_closest_marker("slow") is not None:
        jax.clear_caches()
