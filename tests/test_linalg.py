"""predcode.linalg: the same results as NumPy in float64, and no batched LAPACK call on CPU under vmap."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from predcode import linalg


def _spd(rng, n, batch=()):
    a = rng.standard_normal((*batch, n, n)) / np.sqrt(n)
    return a @ np.swapaxes(a, -1, -2) + np.eye(n)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_inverse_cholesky_cholesky_inverse_lower_and_inv_equal_numpy_float64():
    rng = np.random.default_rng(0)
    a = _spd(rng, 7)
    chol = np.linalg.cholesky(a)
    np.testing.assert_allclose(np.asarray(linalg.cholesky(jnp.asarray(a))), chol, atol=1e-12)
    np.testing.assert_allclose(np.asarray(linalg.inverse_cholesky(jnp.asarray(a))), np.linalg.inv(chol), atol=1e-10)
    np.testing.assert_allclose(np.asarray(linalg.inverse_lower(jnp.asarray(chol))), np.linalg.inv(chol), atol=1e-10)
    g = rng.standard_normal((5, 5)) + 5 * np.eye(5)
    np.testing.assert_allclose(np.asarray(linalg.inv(jnp.asarray(g))), np.linalg.inv(g), atol=1e-12)


def test_inverse_cholesky_reads_only_the_lower_triangle():
    rng = np.random.default_rng(1)
    a = _spd(rng, 6)
    junk = a + np.triu(rng.standard_normal((6, 6)), 1)  # upper triangle changed, lower kept
    want = np.linalg.inv(np.linalg.cholesky(a))
    np.testing.assert_allclose(np.asarray(linalg.inverse_cholesky(jnp.asarray(junk))), want, atol=1e-10)


@pytest.mark.parametrize("fn", ["cholesky", "inverse_cholesky", "inverse_lower", "inv"])
def test_vmap_and_nested_vmap_equal_the_matrix_by_matrix_result(fn):
    rng = np.random.default_rng(2)
    a = _spd(rng, 5, (2, 3))
    if fn == "inverse_lower":
        a = np.linalg.cholesky(a)
    f = getattr(linalg, fn)
    want = np.stack([np.stack([np.asarray(f(jnp.asarray(m))) for m in row]) for row in a])
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(jnp.asarray(a[0]))), want[0], atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(jax.vmap(f)))(jnp.asarray(a))), want, atol=1e-12)
    # an unbatched argument under vmap (in_axes=None) is computed once and broadcast
    out = jax.vmap(lambda _, m: f(m), in_axes=(0, None))(jnp.arange(3), jnp.asarray(a[0, 0]))
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(want[0, 0], (3, 5, 5)), atol=1e-12)


def test_vmapped_call_on_cpu_is_a_loop_of_unbatched_lapack_calls():
    """The fix itself: under vmap the jaxpr holds a scan over single matrices, no batched call."""
    if jax.default_backend() != "cpu":
        pytest.skip("the sequential batching applies on CPU only")
    a = jnp.asarray(_spd(np.random.default_rng(3), 4, (3,)))
    jaxpr = str(jax.make_jaxpr(jax.vmap(linalg.inverse_cholesky))(a))
    assert "scan" in jaxpr or "while" in jaxpr, jaxpr
    for line in jaxpr.splitlines():
        if "cholesky" in line or "triangular_solve" in line:
            assert "f64[3,4,4]" not in line, line  # every LAPACK operand is one 4 x 4 matrix


_TWO_CHAINS = """
import jax, jax.numpy as jnp
from predcode import linalg
n, B = 360, 2
f = jax.vmap(linalg.inverse_cholesky)
g = jax.jit(lambda a, b: (f(a), f(b), jax.vmap(linalg.inv)(a)))  # independent batched chains
k = jax.random.normal(jax.random.key(0), (B, n, n)) / n**0.5
A = k @ jnp.swapaxes(k, 1, 2) + jnp.eye(n)
for _ in range(150):
    jax.block_until_ready(g(A, A + 0.1 * jnp.eye(n)))
print("finished")
"""


def test_two_independent_vmapped_factorisations_do_not_deadlock_xla_cpu():
    """Regression: with jnp.linalg directly this program hung (0% CPU) within seconds on 2 cores."""
    proc = subprocess.run([sys.executable, "-c", _TWO_CHAINS], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "finished" in proc.stdout, proc.stdout + proc.stderr
