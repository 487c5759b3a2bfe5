"""Oracle tests for the learning rules: Hebbian updates, norm clipping, the covariance rules, Adam.

Oracles: float64 NumPy replays, closed forms, and ``jax.grad`` (under ``jax.enable_x64(True)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predcode.learning import (
    clip_column_norms,
    gaussian_nll_sigma_grad,
    hebbian,
    keras_adam,
    legacy_precision,
    legacy_sigma_update,
)

TOL = dict(rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------------------------------------------
# hebbian
# ----------------------------------------------------------------------------------------------


def test_hebbian_is_batch_mean_of_outer_products():
    rng = np.random.default_rng(1)
    pre, post = rng.normal(size=(7, 3)), rng.normal(size=(7, 5))
    want = np.mean([np.outer(pre[b], post[b]) for b in range(7)], axis=0)
    got = hebbian(jnp.asarray(pre, jnp.float32), jnp.asarray(post, jnp.float32))
    assert got.shape == (3, 5)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_hebbian_zero_one_weights_ignore_padding():
    rng = np.random.default_rng(2)
    pre, post = rng.normal(size=(8, 3)), rng.normal(size=(8, 4))
    w = np.array([1, 1, 0, 1, 1, 0, 0, 1], float)
    # Padding rows hold large junk: any leak would show.
    pre[w == 0] *= 1e3
    post[w == 0] *= 1e3
    keep = w == 1
    want = np.mean([np.outer(pre[b], post[b]) for b in np.flatnonzero(keep)], axis=0)
    got = hebbian(jnp.asarray(pre, jnp.float32), jnp.asarray(post, jnp.float32), jnp.asarray(w, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    same = hebbian(jnp.asarray(pre[keep], jnp.float32), jnp.asarray(post[keep], jnp.float32))
    np.testing.assert_allclose(np.asarray(got), np.asarray(same), rtol=1e-5, atol=1e-6)


def test_hebbian_all_ones_weights_equal_unweighted(x64):
    rng = np.random.default_rng(3)
    pre, post = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.normal(size=(6, 3)))
    np.testing.assert_allclose(np.asarray(hebbian(pre, post, jnp.ones(6))), np.asarray(hebbian(pre, post)), **TOL)


# ----------------------------------------------------------------------------------------------
# clip_column_norms
# ----------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n_from=st.integers(1, 12),
    n_to=st.integers(1, 12),
    log_scale=st.floats(-3, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_clip_column_norms_property(n_from, n_to, log_scale, seed):
    w = np.random.default_rng(seed).normal(size=(n_from, n_to)) * 10.0**log_scale
    w32 = jnp.asarray(w, jnp.float32)
    out = np.asarray(clip_column_norms(w32), np.float64)
    w_in = np.asarray(w32, np.float64)
    norms_in = np.linalg.norm(w_in, axis=0)
    norms_out = np.linalg.norm(out, axis=0)
    assert np.all(norms_out <= 1 + 1e-6)
    inside = norms_in <= 1
    # Columns already inside the ball are untouched, bit for bit.
    np.testing.assert_array_equal(out[:, inside], w_in[:, inside])
    # Columns outside land on the sphere, same direction.
    outside = ~inside
    np.testing.assert_allclose(norms_out[outside], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, outside], w_in[:, outside] / norms_in[outside], rtol=1e-5, atol=1e-6)
    # Idempotent.
    again = np.asarray(clip_column_norms(jnp.asarray(out, jnp.float32)), np.float64)
    np.testing.assert_allclose(again, out, rtol=1e-6, atol=1e-7)


def test_clip_column_norms_examples_and_max_norm(x64):
    w = jnp.asarray([[3.0, 0.3, 0.0], [4.0, 0.4, 0.0]])
    out = np.asarray(clip_column_norms(w))
    np.testing.assert_allclose(out, [[0.6, 0.3, 0.0], [0.8, 0.4, 0.0]], **TOL)
    out2 = np.asarray(clip_column_norms(w, max_norm=2.5))
    np.testing.assert_allclose(out2, [[1.5, 0.3, 0.0], [2.0, 0.4, 0.0]], **TOL)


# ----------------------------------------------------------------------------------------------
# legacy_precision
# ----------------------------------------------------------------------------------------------


def _legacy_sigma(rng, n, spread=0.3):
    """A non-symmetric legacy-style covariance, some diagonal entries below 1."""
    s = np.eye(n) + rng.uniform(-spread, spread, size=(n, n)) * (1 - np.eye(n))
    s[np.diag_indices(n)] = rng.uniform(0.5, 2.0, size=n)
    return s


def test_legacy_precision_floor_and_jitter(x64):
    rng = np.random.default_rng(4)
    n = 5
    sigma = _legacy_sigma(rng, n)
    cov, _ = legacy_precision(jnp.asarray(sigma))
    cov = np.asarray(cov)
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(np.diag(cov), np.maximum(1.0, np.diag(sigma)) + 0.00025, **TOL)
    np.testing.assert_allclose(cov[off], sigma[off] + 0.00025, **TOL)
    # The diagonal floor acted somewhere, so the test covers it.
    assert np.any(np.diag(sigma) < 1)


def test_legacy_precision_factor_reads_lower_triangle(x64):
    rng = np.random.default_rng(5)
    n = 6
    sigma = _legacy_sigma(rng, n)
    cov, prec = legacy_precision(jnp.asarray(sigma))
    cov, prec = np.asarray(cov), np.asarray(prec)
    assert not np.allclose(cov, cov.T)  # the oracle has to distinguish the triangles
    chol = np.linalg.cholesky(np.tril(cov) + np.tril(cov, -1).T)
    np.testing.assert_allclose(prec @ prec.T, np.linalg.inv(chol @ chol.T), rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(np.tril(prec, -1), 0)  # P is upper triangular
    np.testing.assert_allclose(prec, np.linalg.inv(chol).T, **TOL)


def test_legacy_precision_jitter_accumulates_when_fed_back(x64):
    rng = np.random.default_rng(6)
    sigma = _legacy_sigma(rng, 3)
    sigma[np.diag_indices(3)] = 1.5
    cov1, _ = legacy_precision(jnp.asarray(sigma))
    cov2, _ = legacy_precision(cov1)
    np.testing.assert_allclose(np.asarray(cov2), sigma + 2 * 0.00025, **TOL)


# ----------------------------------------------------------------------------------------------
# legacy_sigma_update
# ----------------------------------------------------------------------------------------------


def test_legacy_sigma_update_formula(x64):
    rng = np.random.default_rng(7)
    b, n = 6, 4
    e = rng.normal(size=(b, n))
    p = np.triu(rng.normal(size=(n, n)))
    got = legacy_sigma_update(jnp.asarray(e), jnp.asarray(p))
    np.testing.assert_allclose(np.asarray(got), -0.5 * (e.T @ e - p) / b, **TOL)


def test_legacy_sigma_update_weights_ignore_padding(x64):
    rng = np.random.default_rng(8)
    b, n = 7, 3
    e = rng.normal(size=(b, n))
    p = np.triu(rng.normal(size=(n, n)))
    w = np.array([1, 0, 1, 1, 0, 1, 0], float)
    e[w == 0] *= 1e3
    real = e[w == 1]
    want = -0.5 * (real.T @ real - p) / w.sum()
    got = legacy_sigma_update(jnp.asarray(e), jnp.asarray(p), jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(got), want, **TOL)
    same = legacy_sigma_update(jnp.asarray(real), jnp.asarray(p))
    np.testing.assert_allclose(np.asarray(got), np.asarray(same), **TOL)


# ----------------------------------------------------------------------------------------------
# gaussian_nll_sigma_grad
# ----------------------------------------------------------------------------------------------


def _nll(sigma, e):
    quad = jnp.sum(e * jnp.linalg.solve(sigma, e.T).T, axis=1)
    return jnp.mean(0.5 * quad) + 0.5 * jnp.linalg.slogdet(sigma)[1]


def test_gaussian_nll_sigma_grad_matches_autodiff_nonsymmetric(x64):
    rng = np.random.default_rng(9)
    b, n = 8, 4
    e = jnp.asarray(rng.normal(size=(b, n)))
    sigma = np.eye(n) * 2.0 + rng.uniform(-0.4, 0.4, size=(n, n))
    assert not np.allclose(sigma, sigma.T)
    assert np.linalg.cond(sigma) < 10
    sigma = jnp.asarray(sigma)
    want = jax.grad(_nll)(sigma, e)
    got = gaussian_nll_sigma_grad(e, sigma)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-11)


def test_gaussian_nll_sigma_grad_weights_match_subset(x64):
    rng = np.random.default_rng(10)
    b, n = 9, 3
    e = rng.normal(size=(b, n))
    w = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1], float)
    e[w == 0] *= 1e3
    sigma = jnp.asarray(np.eye(n) * 1.5 + rng.uniform(-0.2, 0.2, size=(n, n)))
    got = gaussian_nll_sigma_grad(jnp.asarray(e), sigma, jnp.asarray(w))
    want = jax.grad(_nll)(sigma, jnp.asarray(e[w == 1]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-11)


def test_gaussian_nll_sigma_grad_descent_reaches_empirical_covariance(x64):
    rng = np.random.default_rng(11)
    b, n = 200, 3
    a = np.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.6]])
    e = rng.normal(size=(b, n)) @ a.T
    s = e.T @ e / b  # closed-form minimiser of the batch-mean NLL over symmetric matrices
    ej = jnp.asarray(e)
    # Curvature at the minimum is about 0.5 / lambda_min(S)^2; stay inside 2 / curvature.
    lr = 2.0 * np.linalg.eigvalsh(s).min() ** 2

    # Over general (non-symmetric) matrices S is only a saddle of this NLL: rounding errors in the
    # antisymmetric part grow. The iterate is kept symmetric (projected gradient descent), where S
    # is the unique minimiser.
    def body(_, x):
        x = x - lr * gaussian_nll_sigma_grad(ej, x)
        return 0.5 * (x + x.T)

    sigma = jax.jit(lambda sg: jax.lax.fori_loop(0, 3000, body, sg))(jnp.eye(n))
    assert np.abs(np.eye(n) - s).max() > 0.1  # the start is far from the answer
    np.testing.assert_allclose(np.asarray(sigma), s, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(gaussian_nll_sigma_grad(ej, jnp.asarray(s))), 0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# keras_adam
# ----------------------------------------------------------------------------------------------


def _keras_replay(p0, grads, lr, b1=0.9, b2=0.999, eps=1e-7):
    p = {k: v.astype(np.float64).copy() for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, g in enumerate(grads, start=1):
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            p[k] -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[k] / (np.sqrt(v[k]) + eps)
    return p


def _run(opt, p0, grads):
    params = {k: jnp.asarray(v, jnp.float32) for k, v in p0.items()}
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update({k: jnp.asarray(x, jnp.float32) for k, x in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def test_keras_adam_matches_float64_replay():
    rng = np.random.default_rng(12)
    p0 = {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
    grads = [
        {k: rng.normal(size=v.shape).astype(np.float32) * 10.0 ** rng.uniform(-3, 1) for k, v in p0.items()}
        for _ in range(5)
    ]
    lr = 0.01
    got = _run(keras_adam(lr), p0, grads)
    want = _keras_replay(p0, grads, lr)
    for k in p0:
        # Compare the displacement, which is what the optimizer computed.
        np.testing.assert_allclose(got[k] - p0[k], want[k] - p0[k], rtol=2e-4, atol=1e-6)
        assert np.abs(want[k] - p0[k]).max() > 1e-3


def test_keras_adam_eps_placement_differs_from_optax_with_tiny_gradients():
    rng = np.random.default_rng(13)
    p0 = {"w": np.zeros(6, np.float32)}
    grads = [{"w": (rng.normal(size=6) * 1e-8).astype(np.float32)} for _ in range(5)]
    lr = 1e-3
    keras = _run(keras_adam(lr), p0, grads)["w"]
    ref = _keras_replay(p0, grads, lr)["w"]
    optx = _run(optax.adam(lr, eps=1e-7), p0, grads)["w"]
    np.testing.assert_allclose(keras, ref, rtol=1e-3, atol=1e-12)
    # optax adds eps to the bias-corrected sqrt(v_hat): with |g| ~ 1e-8 << eps both steps are
    # tiny, but they differ by a large factor.
    assert np.all(np.abs(optx - keras) > 0.5 * np.abs(keras))
    # With ordinary gradients the two agree closely.
    big = [{"w": rng.normal(size=6).astype(np.float32)} for _ in range(5)]
    np.testing.assert_allclose(
        _run(keras_adam(lr), p0, big)["w"], _run(optax.adam(lr, eps=1e-7), p0, big)["w"], rtol=1e-4, atol=1e-8
    )


@pytest.mark.parametrize("lr", (0.0, -1e-3, float("nan")))
def test_keras_adam_rejects_non_positive_learning_rate(lr):
    with pytest.raises(ValueError, match="^learning_rate"):
        keras_adam(lr)
