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
