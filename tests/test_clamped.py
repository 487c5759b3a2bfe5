"""predcode.dynamics.LinearClamped: the Gram form equals the direct form (float64) and -jax.grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from predcode.dynamics import Euler, LinearClamped, settle


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _problem(seed=0, B=6, m=5, n=9, precision=False):
    rng = np.random.default_rng(seed)
    x = rng.random((B, n))
    w = rng.standard_normal((m, n))
    a = rng.standard_normal((B, m))
    p = None
    if precision:
        q = rng.standard_normal((n, n))
        p = q @ q.T / n + np.eye(n)
    return x, w, a, p


@pytest.mark.parametrize("precision", [False, True])
def test_message_energy_and_error_equal_the_direct_form_in_float64(precision):
    x, w, a, p = _problem(precision=precision)
    pm = np.eye(x.shape[1]) if p is None else p
    e = x - a @ w
    c = LinearClamped.build(jnp.asarray(x), jnp.asarray(w), None if p is None else jnp.asarray(p))
    np.testing.assert_allclose(np.asarray(c.message(jnp.asarray(a))), e @ pm @ w.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(c.sq_error(jnp.asarray(a))), np.einsum("bi,ij,bj->b", e, pm, e), rtol=1e-11)
    np.testing.assert_allclose(float(c.energy(jnp.asarray(a))), 0.5 * np.einsum("bi,ij,bj->", e, pm, e), rtol=1e-11)
    np.testing.assert_allclose(np.asarray(c.error(jnp.asarray(a))), e, atol=1e-13)


def test_message_is_minus_the_gradient_of_the_energy():
    x, w, a, p = _problem(1, precision=True)
    c = LinearClamped.build(jnp.asarray(x), jnp.asarray(w), jnp.asarray(p))
    grad = jax.grad(lambda a_: 0.5 * jnp.sum((jnp.asarray(x) - a_ @ w) @ p * (jnp.asarray(x) - a_ @ w)))(jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(c.message(jnp.asarray(a))), -np.asarray(grad), rtol=1e-11, atol=1e-12)


def test_settling_in_gram_form_reaches_the_closed_form_posterior_mean():
    """Linear Gaussian model x = z W + noise, prior z ~ N(0, I): settling converges to (W W^T + I)^-1 W x."""
    x, w, _, _ = _problem(2, B=4, m=3, n=8)
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    c = LinearClamped.build(xj, wj)

    def predict(states):
        msg = c.message(states[0])
        return (), (c.sq_error(states[0], msg),), (msg,)

    def drive(states, sigs):
        return (sigs[0] - states[0],)

    def energy(states, errs):
        return 0.5 * (jnp.sum(errs[0]) + jnp.sum(states[0] ** 2))

    res = settle(predict, drive, energy, (jnp.zeros((4, 3)),), steps=4000, solver=Euler(0.01))
    want = np.linalg.solve(w @ w.T + np.eye(3), w @ x.T).T
    np.testing.assert_allclose(np.asarray(res.states[0]), want, atol=1e-8)
    assert np.all(np.diff(np.asarray(res.energy)) <= 1e-12)  # gradient flow: the energy never rises


def test_shapes_are_checked_with_the_parameter_named():
    with pytest.raises(ValueError, match="x, w: expected x"):
        LinearClamped.build(jnp.zeros((2, 5)), jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"precision: expected shape \(4, 4\), got \(3, 3\)"):
        LinearClamped.build(jnp.zeros((2, 4)), jnp.zeros((3, 4)), jnp.eye(3))
