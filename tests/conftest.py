"""Shared test set-up: point the dataset loaders at the verified offline copies when they exist."""

import os
import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", False)

TESTS = Path(__file__).resolve().parent
SHARED = TESTS.parents[1] / "shared"
sys.path.insert(0, str(TESTS))

if (SHARED / "data").is_dir() and not os.environ.get("PREDCODE_DATA"):
    os.environ["PREDCODE_DATA"] = str(SHARED / "data")


@pytest.fixture
def x64():
    """Run a test in float64 (exact comparisons against NumPy oracles)."""
    with jax.enable_x64(True):
        yield
