import gc
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import jax.random as jr
import pytest

# The tests compare float32 results at float32 rounding (jit vs eager, vmap vs a loop, Flax
# vs numpy). On NVIDIA GPUs JAX computes float32 matrix products in TF32 by default (about
# 1e-3 relative), so fix full precision for the suite; CPUs compute in float32 either way.
# The library's own precision-sensitive code asks for it explicitly, which
# tests/test_estimation.py::test_fits_run_at_full_matmul_precision and its neighbours check.
jax.config.update("jax_default_matmul_precision", "highest")
# The suite compiles thousands of small programs once each: a persistent compilation cache
# (switched on by JAX_COMPILATION_CACHE_DIR on some machines) would only add disk writes.
jax.config.update("jax_enable_compilation_cache", False)


@pytest.fixture
def key():
    return jr.PRNGKey(0)


@pytest.fixture
def x64():
    """Run a test in float64 (for comparisons with scipy at tight tolerances)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs_after_each_module():
    """Drop every compiled program when a test module is done.

    README's test command runs the whole default suite in one process; without this the
    executables compiled by ~1000 tests accumulate (several GB), and once an XLA compile
    crashed (segmentation fault) late in such a run. Programs shared between modules are
    simply compiled again.
    """
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _free_compiled_programs_after_slow_tests(request):
    """Slow end-to-end tests compile large programs; drop them afterwards.

    One pytest process runs every slow test, and without this the compiled executables of
    all of them stay in memory (an XLA compile once crashed late in such a run).
    """
    yield
    if request.node.get_closest_marker("slow") is not None:
        jax.clear_caches()
