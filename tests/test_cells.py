"""Oracle tests for the activations and the error cells.

Oracles: closed forms, ``jax.grad`` of the cell's own log-likelihood, and float64 SciPy / NumPy.
Exact comparisons run under ``jax.enable_x64(True)`` (the suite default is float32).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from predcode.activations import ACTIVATIONS, get_activation
from predcode.cells import (
    BernoulliErrorCell,
    GaussianErrorCell,
    LaplacianErrorCell,
    whiten,
)
from predcode.learning.covariance import legacy_precision

B, N = 5, 4
TOL = dict(rtol=1e-9, atol=1e-10)


def _spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def _sigma_for(kind, rng, n=N):
    """A valid ``sigma`` for a covariance kind and the equivalent dense float64 covariance matrix."""
    if kind == "fixed":
        s = 1.7
        return s, s * np.eye(n)
    if kind == "scalar":
        s = 0.6
        return jnp.asarray(s), s * np.eye(n)
    if kind == "diagonal":
        d = rng.uniform(0.3, 2.5, size=n)
        return jnp.asarray(d), np.diag(d)
    full = _spd(rng, n)
    return jnp.asarray(full), full


def _make_cell(kind):
    # "fixed" takes its variance at construction; the others at call time.
    return GaussianErrorCell("fixed", sigma=1.7) if kind == "fixed" else GaussianErrorCell(kind)


def _call(cell, kind, target, mu, sigma, **kw):
    if kind == "fixed":
        return cell(target, mu, **kw)
    return cell(target, mu, sigma=sigma, **kw)


# ----------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_deriv_matches_autodiff_away_from_kinks(name, x64):
    act = get_activation(name)
    z = jnp.asarray(np.concatenate([np.linspace(-4, -0.05, 20), np.linspace(0.05, 4, 20)]))
    expected = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(np.asarray(act.deriv(z)), np.asarray(expected), **TOL)
    assert act.name == name


def test_activation_values_closed_form(x64):
    z = np.linspace(-3, 3, 13)
    ref = {
        "identity": z,
        "relu": np.maximum(z, 0),
        "tanh": np.tanh(z),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "softplus": np.log1p(np.exp(z)),
        "gelu": 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),  # the tanh approximation
        "leaky_relu": np.where(z >= 0, z, 0.01 * z),
    }
    assert set(ref) == set(ACTIVATIONS)
    for name, want in ref.items():
        np.testing.assert_allclose(np.asarray(get_activation(name).fn(jnp.asarray(z))), want, **TOL)


def test_relu_deriv_legacy_convention_at_zero():
    relu = get_activation("relu")
    z = jnp.asarray([-1e-6, -2.0, 0.0, -0.0, 1e-6, 3.0], jnp.float32)
    np.testing.assert_array_equal(np.asarray(relu.deriv(z)), [0, 0, 1, 1, 1, 1])
    assert relu.deriv(z).dtype == z.dtype
    # jax.grad's own convention at 0 differs, which is why the legacy one is explicit.
    assert float(jax.grad(relu.fn)(0.0)) == 0.0


def test_unknown_activation_raises_naming_parameter():
    with pytest.raises(ValueError, match="hidden_activation") as info:
        get_activation("swishy", parameter="hidden_activation")
    assert "swishy" in str(info.value)
    with pytest.raises(ValueError, match="^activation"):
        get_activation("nope")


# ----------------------------------------------------------------------------------------------
# GaussianErrorCell
# ----------------------------------------------------------------------------------------------

KINDS = ("fixed", "scalar", "diagonal", "full")


@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_energy_matches_scipy_logpdf(kind, x64):
    rng = np.random.default_rng(1)
    sigma, cov = _sigma_for(kind, rng)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    out = _call(_make_cell(kind), kind, jnp.asarray(target), jnp.asarray(mu), sigma)
    want = np.array([-scipy.stats.multivariate_normal(mu[i], cov).logpdf(target[i]) for i in range(B)])
    assert out.energy.shape == (B,)
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.e), target - mu, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_dmu_dtarget_match_autodiff(kind, x64):
    rng = np.random.default_rng(2)
    sigma, _ = _sigma_for(kind, rng)
    cell = _make_cell(kind)
    target, mu = jnp.asarray(rng.normal(size=(B, N))), jnp.asarray(rng.normal(size=(B, N)))

    def loglik(t, m):
        return -jnp.sum(_call(cell, kind, t, m, sigma).energy)

    out = _call(cell, kind, target, mu, sigma)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(jax.grad(loglik, 1)(target, mu)), **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(jax.grad(loglik, 0)(target, mu)), **TOL)


def test_gaussian_learnable_scalar_sigma_grad_closed_form(x64):
    rng = np.random.default_rng(3)
    e = rng.normal(size=(B, N))
    s = 0.8
    cell = GaussianErrorCell("scalar")
    grad = jax.grad(lambda v: jnp.sum(cell(jnp.asarray(e), jnp.zeros((B, N)), sigma=v).energy))(jnp.asarray(s))
    per_sample = 0.5 * N / s - 0.5 * np.sum(e * e, axis=1) / s**2
    np.testing.assert_allclose(float(grad), per_sample.sum(), **TOL)


def test_gaussian_learnable_diagonal_sigma_grad_closed_form(x64):
    rng = np.random.default_rng(4)
    e = rng.normal(size=(B, N))
    d = rng.uniform(0.4, 2.0, size=N)
    cell = GaussianErrorCell("diagonal")
    grad = jax.grad(lambda v: jnp.sum(cell(jnp.asarray(e), jnp.zeros((B, N)), sigma=v).energy))(jnp.asarray(d))
    want = np.sum(0.5 / d - 0.5 * e * e / d**2, axis=0)
    np.testing.assert_allclose(np.asarray(grad), want, **TOL)


def test_gaussian_learnable_full_sigma_grad_closed_form(x64):
    rng = np.random.default_rng(5)
    e = rng.normal(size=(B, N))
    cov = _spd(rng, N)
    cell = GaussianErrorCell("full")
    grad = jax.grad(lambda v: jnp.sum(cell(jnp.asarray(e), jnp.zeros((B, N)), sigma=v).energy))(jnp.asarray(cov))
    inv = np.linalg.inv(cov)
    # d/dSigma sum_b [0.5 e_b Sigma^-1 e_b^T + 0.5 log|Sigma|] for symmetric Sigma.
    want = 0.5 * B * inv - 0.5 * inv @ (e.T @ e) @ inv
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ("fixed", "scalar", "diagonal"))
def test_gaussian_mask_equals_subvector_energy(kind, x64):
    rng = np.random.default_rng(6)
    sigma, cov = _sigma_for(kind, rng)
    cell = _make_cell(kind)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    mask = (rng.uniform(size=(B, N)) < 0.6).astype(float)
    mask[0] = [1, 0, 1, 0]
    mask[1] = 0.0  # a fully hidden sample has no energy at all
    out = _call(cell, kind, jnp.asarray(target), jnp.asarray(mu), sigma, mask=jnp.asarray(mask))
    hidden = mask == 0
    assert np.all(np.asarray(out.e)[hidden] == 0)
    assert np.all(np.asarray(out.dmu)[hidden] == 0)
    assert np.all(np.asarray(out.dtarget)[hidden] == 0)
    for i in range(B):
        keep = mask[i] == 1
        if not keep.any():
            want = 0.0
        else:
            sub = cov[np.ix_(keep, keep)]
            want = -scipy.stats.multivariate_normal(mu[i, keep], sub).logpdf(target[i, keep])
        np.testing.assert_allclose(float(out.energy[i]), want, **TOL)
    # Visible units keep the unmasked error signal.
    full = _call(cell, kind, jnp.asarray(target), jnp.asarray(mu), sigma)
    np.testing.assert_allclose(np.asarray(out.dmu)[~hidden], np.asarray(full.dmu)[~hidden], **TOL)


def test_gaussian_full_mask_zeroes_hidden_units_and_follows_documented_energy(x64):
    # For a full covariance the mask hides units from the error, not from Sigma's determinant.
    rng = np.random.default_rng(7)
    cov = _spd(rng, N)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    mask = np.ones((B, N))
    mask[:, 2] = 0
    mask[3, 0] = 0
    out = GaussianErrorCell("full")(
        jnp.asarray(target), jnp.asarray(mu), sigma=jnp.asarray(cov), mask=jnp.asarray(mask)
    )
    hidden = mask == 0
    assert np.all(np.asarray(out.e)[hidden] == 0)
    assert np.all(np.asarray(out.dmu)[hidden] == 0)
    em = (target - mu) * mask
    inv = np.linalg.inv(cov)
    n = mask.sum(1)
    want = (
        0.5 * np.einsum("bi,ij,bj->b", em, inv, em) + 0.5 * np.linalg.slogdet(cov)[1] + 0.5 * n * math.log(2 * math.pi)
    )
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.dmu), (em @ inv) * mask, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_gaussian_modulator_scales_signals_not_energy(kind, x64):
    rng = np.random.default_rng(8)
    sigma, _ = _sigma_for(kind, rng)
    cell = _make_cell(kind)
    target, mu = jnp.asarray(rng.normal(size=(B, N))), jnp.asarray(rng.normal(size=(B, N)))
    mod = jnp.asarray(rng.uniform(0.1, 3.0, size=(B, N)))
    plain = _call(cell, kind, target, mu, sigma)
    out = _call(cell, kind, target, mu, sigma, modulator=mod)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(plain.dmu * mod), **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(plain.dtarget * mod), **TOL)
    np.testing.assert_array_equal(np.asarray(out.energy), np.asarray(plain.energy))
    np.testing.assert_array_equal(np.asarray(out.e), np.asarray(plain.e))


def test_gaussian_invalid_arguments_raise_naming_parameter():
    with pytest.raises(ValueError, match="^covariance"):
        GaussianErrorCell("spherical")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="^sigma"):
            GaussianErrorCell("fixed", sigma=bad)
    x = jnp.zeros((2, 3))
    for kind in ("scalar", "diagonal", "full"):
        with pytest.raises(ValueError, match="^sigma"):
            GaussianErrorCell(kind)(x, x)


def test_gaussian_fixed_default_is_unit_variance(x64):
    rng = np.random.default_rng(9)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    out = GaussianErrorCell()(jnp.asarray(target), jnp.asarray(mu))
    want = 0.5 * np.sum((target - mu) ** 2, 1) + 0.5 * N * math.log(2 * math.pi)
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.dmu), target - mu, **TOL)


# ----------------------------------------------------------------------------------------------
# LaplacianErrorCell
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", (0.5, 1.0, 2.3))
def test_laplacian_energy_and_dmu(scale, x64):
    rng = np.random.default_rng(10)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    cell = LaplacianErrorCell(scale)
    out = cell(jnp.asarray(target), jnp.asarray(mu))
    want = -scipy.stats.laplace(loc=mu, scale=scale).logpdf(target).sum(1)
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)

    def loglik(t, m):
        return -jnp.sum(cell(t, m).energy)

    t, m = jnp.asarray(target), jnp.asarray(mu)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(jax.grad(loglik, 1)(t, m)), **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(jax.grad(loglik, 0)(t, m)), **TOL)
    np.testing.assert_allclose(np.asarray(out.e), target - mu, **TOL)


def test_laplacian_mask_and_modulator(x64):
    rng = np.random.default_rng(11)
    target, mu = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    mask = (rng.uniform(size=(B, N)) < 0.5).astype(float)
    mod = rng.uniform(0.2, 2.0, size=(B, N))
    cell = LaplacianErrorCell(1.3)
    plain = cell(jnp.asarray(target), jnp.asarray(mu))
    out = cell(jnp.asarray(target), jnp.asarray(mu), mask=jnp.asarray(mask), modulator=jnp.asarray(mod))
    hidden = mask == 0
    assert np.all(np.asarray(out.e)[hidden] == 0)
    assert np.all(np.asarray(out.dmu)[hidden] == 0)
    want = np.array(
        [
            -scipy.stats.laplace(loc=mu[i, mask[i] == 1], scale=1.3).logpdf(target[i, mask[i] == 1]).sum()
            for i in range(B)
        ]
    )
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(plain.dmu) * mask * mod, **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(plain.dtarget) * mask * mod, **TOL)
    # The modulator alone leaves the energy alone.
    only_mod = cell(jnp.asarray(target), jnp.asarray(mu), modulator=jnp.asarray(mod))
    np.testing.assert_array_equal(np.asarray(only_mod.energy), np.asarray(plain.energy))


def test_laplacian_bad_scale_raises_naming_parameter():
    for bad in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="^scale"):
            LaplacianErrorCell(bad)


# ----------------------------------------------------------------------------------------------
# BernoulliErrorCell
# ----------------------------------------------------------------------------------------------


def _bernoulli_data(rng, binary=True):
    mu = rng.uniform(0.02, 0.98, size=(B, N))
    target = (rng.uniform(size=(B, N)) < 0.5).astype(float) if binary else rng.uniform(size=(B, N))
    return target, mu


@pytest.mark.parametrize("binary", (True, False))
def test_bernoulli_energy_is_bce(binary, x64):
    target, mu = _bernoulli_data(np.random.default_rng(12), binary)
    out = BernoulliErrorCell()(jnp.asarray(target), jnp.asarray(mu))
    want = -np.sum(target * np.log(mu) + (1 - target) * np.log(1 - mu), axis=1)
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.e), target - mu, **TOL)


def test_bernoulli_energy_clips_saturated_predictions(x64):
    target = jnp.asarray([[1.0, 0.0]])
    mu = jnp.asarray([[0.0, 1.0]])
    out = BernoulliErrorCell(eps=1e-7)(target, mu)
    np.testing.assert_allclose(float(out.energy[0]), -2 * math.log(1e-7), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(out.dmu)))


@pytest.mark.parametrize("binary", (True, False))
def test_bernoulli_dmu_dtarget_match_autodiff(binary, x64):
    target, mu = _bernoulli_data(np.random.default_rng(13), binary)
    cell = BernoulliErrorCell()

    def loglik(t, m):
        return -jnp.sum(cell(t, m).energy)

    t, m = jnp.asarray(target), jnp.asarray(mu)
    out = cell(t, m)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(jax.grad(loglik, 1)(t, m)), **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(jax.grad(loglik, 0)(t, m)), **TOL)


def test_bernoulli_e_is_logit_gradient(x64):
    rng = np.random.default_rng(14)
    logit = jnp.asarray(rng.normal(scale=2.0, size=(B, N)))
    target = jnp.asarray((rng.uniform(size=(B, N)) < 0.5).astype(float))
    cell = BernoulliErrorCell()

    def loglik(z):
        return -jnp.sum(cell(target, jax.nn.sigmoid(z)).energy)

    out = cell(target, jax.nn.sigmoid(logit))
    np.testing.assert_allclose(np.asarray(out.e), np.asarray(jax.grad(loglik)(logit)), rtol=1e-8, atol=1e-10)


def test_bernoulli_mask_and_modulator(x64):
    rng = np.random.default_rng(15)
    target, mu = _bernoulli_data(rng)
    mask = (rng.uniform(size=(B, N)) < 0.5).astype(float)
    mod = rng.uniform(0.2, 2.0, size=(B, N))
    cell = BernoulliErrorCell()
    t, m = jnp.asarray(target), jnp.asarray(mu)
    plain = cell(t, m)
    out = cell(t, m, mask=jnp.asarray(mask), modulator=jnp.asarray(mod))
    hidden = mask == 0
    for field in ("e", "dmu", "dtarget"):
        assert np.all(np.asarray(getattr(out, field))[hidden] == 0), field
    want = -np.sum(mask * (target * np.log(mu) + (1 - target) * np.log(1 - mu)), axis=1)
    np.testing.assert_allclose(np.asarray(out.energy), want, **TOL)
    np.testing.assert_allclose(np.asarray(out.dmu), np.asarray(plain.dmu) * mask * mod, **TOL)
    np.testing.assert_allclose(np.asarray(out.dtarget), np.asarray(plain.dtarget) * mask * mod, **TOL)
    np.testing.assert_allclose(np.asarray(out.e), (target - mu) * mask, **TOL)
    only_mod = cell(t, m, modulator=jnp.asarray(mod))
    np.testing.assert_array_equal(np.asarray(only_mod.energy), np.asarray(plain.energy))
    np.testing.assert_array_equal(np.asarray(only_mod.e), np.asarray(plain.e))


# ----------------------------------------------------------------------------------------------
# whiten
# ----------------------------------------------------------------------------------------------


def test_whiten_with_legacy_precision_symmetric_sigma(x64):
    rng = np.random.default_rng(16)
    a = rng.normal(scale=0.2, size=(N, N))
    sigma = np.eye(N) * 1.5 + (a + a.T) / 2
    cov, prec = legacy_precision(jnp.asarray(sigma))
    cov = np.asarray(cov)
    np.testing.assert_allclose(cov, cov.T, atol=0)  # symmetric input stays symmetric
    e = rng.normal(size=(B, N))
    ew = np.asarray(whiten(jnp.asarray(e), prec))
    np.testing.assert_allclose(ew @ ew.T, e @ np.linalg.inv(cov) @ e.T, rtol=1e-9, atol=1e-10)


def test_whiten_with_legacy_precision_reads_lower_triangle(x64):
    # A non-symmetric Sigma (as the legacy initialiser makes): whitening uses the symmetric matrix
    # built from the lower triangle of Sigma', since that is all the legacy Cholesky reads.
    rng = np.random.default_rng(17)
    sigma = np.eye(N) + rng.uniform(-0.3, 0.3, size=(N, N)) * (1 - np.eye(N))
    cov, prec = legacy_precision(jnp.asarray(sigma))
    cov = np.asarray(cov)
    sym = np.tril(cov) + np.tril(cov, -1).T
    e = rng.normal(size=(B, N))
    ew = np.asarray(whiten(jnp.asarray(e), prec))
    np.testing.assert_allclose(ew @ ew.T, e @ np.linalg.inv(sym) @ e.T, rtol=1e-9, atol=1e-10)
