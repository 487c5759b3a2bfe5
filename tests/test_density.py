"""Density estimators against oracles: grid quadrature of log p(x), constant likelihoods, mixture
sampling frequencies and the pickle-free prior file."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture

from predcode.experiments.density import (
    MixturePrior,
    PriorFileError,
    extract_latents,
    is_log_likelihood,
    legacy_plus_log_s,
    mc_log_likelihood,
    sample_images,
    stratified_is_log_likelihood,
)
from predcode.models.gncn import GNCN, GNCNConfig

D = 8
MEAN = np.array([0.3, -0.2])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])


def _tiny(d=D, scale=1.2, seed=0):
    """L = 1, z in R^2, phi = identity: p(x) = int N(s; MEAN, COV) prod_d Bern(x_d; sigmoid(s W)_d) ds."""
    model = GNCN(GNCNConfig(kind="gncn_t1", x_dim=d, z_dims=(2,), phi="identity", K=50))
    w = scale * np.random.default_rng(seed).standard_normal((2, d))
    return model, {"W1": jnp.asarray(w, jnp.float32)}, w


def _quadrature_log_px(w, x, mean=MEAN, cov=COV, n=801, width=9.0, clip=1e-6):
    """Dense-grid quadrature of log p(x) in float64 NumPy."""
    sd = np.sqrt(np.diag(cov))
    g0 = np.linspace(mean[0] - width * sd[0], mean[0] + width * sd[0], n)
    g1 = np.linspace(mean[1] - width * sd[1], mean[1] + width * sd[1], n)
    s = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2)
    diff = s - mean
    log_prior = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) - 0.5 * np.log(
        np.linalg.det(2 * np.pi * cov)
    )
    parts = []
    for i in range(0, len(s), 65536):  # grid chunks: memory O(chunk * pixels)
        p = np.clip(1 / (1 + np.exp(-(s[i : i + 65536] @ w))), clip, 1 - clip)
        a = log_prior[i : i + 65536, None] + np.log(p) @ x.T + np.log1p(-p) @ (1 - x).T  # (chunk, n_x)
        m = a.max(0)
        parts.append(m + np.log(np.exp(a - m).sum(0)))
    return np.logaddexp.reduce(np.array(parts), axis=0) + np.log((g0[1] - g0[0]) * (g1[1] - g1[0]))


def _posterior_means(w, x, n=401, width=7.0):
    """E[s | x] by grid quadrature (float64)."""
    sd = np.sqrt(np.diag(COV))
    axes = [np.linspace(MEAN[i] - width * sd[i], MEAN[i] + width * sd[i], n) for i in range(2)]
    s = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    diff = s - MEAN
    log_prior = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(COV), diff)
    p = np.clip(1 / (1 + np.exp(-(s @ w))), 1e-6, 1 - 1e-6)
    a = log_prior[:, None] + np.log(p) @ x.T.astype(np.float64) + np.log1p(-p) @ (1 - x.T.astype(np.float64))
    post = np.exp(a - a.max(0))
    return (s.T @ (post / post.sum(0))).T.astype(np.float32)


def _problem(d, scale):
    model, params, w = _tiny(d, scale)
    rng = np.random.default_rng(1)
    x = (rng.random((6, d)) < 0.5).astype(np.float32)
    # two images the model likes: thresholded predictions at two latent points
    s = np.array([[1.0, 0.5], [-1.0, 0.0]])
    x = np.concatenate([x, (1 / (1 + np.exp(-(s @ w))) > 0.5).astype(np.float32)])
    prior = MixturePrior(np.ones(1), MEAN[None], COV[None])
    return model, params, w, x, prior, _quadrature_log_px(w, x.astype(np.float64))


@pytest.fixture(scope="module", params=["flat", "sharp"])
def tiny(request):
    """ "flat": 8 pixels, a likelihood about as wide as the prior; "sharp": 40 pixels, a narrow posterior."""
    return _problem(D, 1.2) if request.param == "flat" else _problem(40, 2.0)


def test_quadrature_oracle_is_converged(tiny):
    _, _, w, x, _, exact = tiny
    coarse = _quadrature_log_px(w, x.astype(np.float64), n=401, width=7.0)
    np.testing.assert_allclose(coarse, exact, atol=1e-6)


def test_naive_monte_carlo_matches_quadrature_within_its_standard_error(tiny):
    model, params, _, x, prior, exact = tiny
    est = mc_log_likelihood(model, params, prior, x, n_samples=20000, seed=3, batch_size=4, chunk=1000)
    assert est.n_samples == 20000 and est.log_px.shape == (len(x),)
    assert np.all(est.se > 0) and np.all(est.se < 0.5)
    z = (est.log_px - exact) / est.se
    assert np.all(np.abs(z) < 4.5), f"MC {est.log_px} vs quadrature {exact}, z = {z}"
    # the ESS of the naive estimator is S / (mean(L^2) / mean(L)^2)
    assert np.all((est.ess > 1) & (est.ess <= 20000 + 1e-3))


@pytest.mark.parametrize("centre, proposal", [("far", "laplace"), ("settled", "component"), ("far", "component")])
def test_importance_sampling_matches_quadrature(tiny, centre, proposal):
    model, params, w, x, prior, exact = tiny
    centres = extract_latents(model, params, x, batch_size=8)
    if centre == "far":  # a poor start: unbiased still, thanks to the defensive prior part
        centres = centres + np.array([3.0, -2.0], np.float32)
    est = is_log_likelihood(
        model, params, prior, x, centres, n_samples=2000, seed=5, batch_size=3, chunk=100, proposal=proposal
    )
    z = (est.log_px - exact) / np.maximum(est.se, 1e-4)
    assert np.all(np.abs(z) < 4.5), f"IS {est.log_px} vs quadrature {exact}, z = {z}"


def test_laplace_proposal_beats_the_naive_estimate(tiny):
    model, params, w, x, prior, exact = tiny
    centres = extract_latents(model, params, x, batch_size=8)
    naive = mc_log_likelihood(model, params, prior, x, n_samples=2000, seed=5)
    z_naive = (naive.log_px - exact) / naive.se
    assert np.all(np.abs(z_naive) < 4.5), z_naive
    est = is_log_likelihood(model, params, prior, x, centres, n_samples=2000, seed=5)
    assert np.all(np.abs(est.log_px - exact) < 4.5 * est.se + 1e-3), (est.log_px, exact)
    assert np.all(est.se < 0.5 * naive.se), (est.se, naive.se)
    assert np.all(est.ess > np.minimum(3 * naive.ess, 0.8 * 2000)), (est.ess, naive.ess)
    # with a narrow posterior the settled latent alone is a poor centre; the mode search fixes it
    if x.shape[1] > D:
        good = is_log_likelihood(
            model, params, prior, x, _posterior_means(w, x), n_samples=2000, seed=5, proposal="component", scales=(0.3,)
        )
        assert np.mean(est.ess) > 0.5 * np.mean(good.ess)


def test_log_s_has_the_right_sign_for_a_constant_likelihood():
    model = GNCN(GNCNConfig(kind="gncn_t1", x_dim=D, z_dims=(2,), phi="identity"))
    params = {"W1": jnp.zeros((2, D), jnp.float32)}  # p = sigmoid(0) = 1/2 for every sample
    x = (np.random.default_rng(0).random((5, D)) < 0.5).astype(np.float32)
    prior = MixturePrior(np.ones(1), MEAN[None], COV[None])
    exact = D * math.log(0.5)
    for s in (50, 100):
        est = mc_log_likelihood(model, params, prior, x, n_samples=s, seed=s, chunk=32)
        np.testing.assert_allclose(est.log_px, exact, atol=1e-4)
        np.testing.assert_allclose(est.se, 0.0, atol=1e-3)
        np.testing.assert_allclose(est.ess, s, rtol=1e-3)
        np.testing.assert_allclose(legacy_plus_log_s(est), exact + 2 * math.log(s), atol=1e-4)


def test_mixture_components_are_drawn_in_proportion_to_their_weights():
    weights = np.array([0.6, 0.3, 0.1])
    means = np.array([[-50.0, 0.0], [0.0, 0.0], [50.0, 0.0]])
    prior = MixturePrior(weights, means, np.stack([np.eye(2)] * 3))
    n = 20000
    s, comps = prior.sample(n, seed=7, return_components=True)
    nearest = np.argmin(np.abs(s[:, :1] - means[None, :, 0]), axis=1)
    np.testing.assert_array_equal(nearest, comps)  # each sample comes from its reported component
    counts = np.bincount(nearest, minlength=3)
    assert stats.chisquare(counts, weights * n).pvalue > 1e-3, counts
    softmax = np.exp(weights) / np.exp(weights).sum()  # legacy bug: weights used as logits
    assert stats.chisquare(counts, softmax * n).pvalue < 1e-10
    # and the covariance is honoured
    np.testing.assert_allclose(np.std(s[nearest == 0], axis=0), [1, 1], atol=0.05)


def test_prior_npz_round_trip_reproduces_sklearn_score_samples(tmp_path):
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(c, 0.3 + i * 0.2, (200, 4)) for i, c in enumerate((-2, 0, 3))])
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(data)
    path = MixturePrior.from_sklearn(gmm, seed=0, source="test").save(tmp_path / "prior.npz")
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        assert {"weights", "means", "covariances"} <= set(npz.files)
    prior = MixturePrior.load(path)
    probe = rng.normal(0, 3, (50, 4))
    np.testing.assert_allclose(prior.score_samples(probe), gmm.score_samples(probe), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(prior.predict(probe), gmm.predict(probe))
    np.testing.assert_allclose(prior.to_sklearn().score_samples(probe), gmm.score_samples(probe), rtol=1e-10)
    assert prior.metadata["seed"] == 0 and prior.metadata["source"] == "test"
    assert prior.metadata["converged"] == gmm.converged_


def test_prior_file_errors_are_clear(tmp_path):
    with pytest.raises(PriorFileError, match="not found"):
        MixturePrior.load(tmp_path / "missing.npz")
    np.save(tmp_path / "bad.npy", np.zeros(3))
    (tmp_path / "bad.npz").write_bytes((tmp_path / "bad.npy").read_bytes())
    with pytest.raises(PriorFileError):
        MixturePrior.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", weights=np.ones(1))
    with pytest.raises(PriorFileError, match="missing"):
        MixturePrior.load(tmp_path / "partial.npz")


def test_sample_images_accepts_sklearn_or_prior(tiny):
    model, params, w, _, prior, _ = tiny
    imgs = sample_images(model, params, prior.to_sklearn(), 5, seed=0)
    assert imgs.shape == (5, w.shape[1]) and np.all((imgs > 0) & (imgs < 1))
    s = prior.sample(5, seed=0)
    np.testing.assert_allclose(imgs, 1 / (1 + np.exp(-(s @ w))), atol=1e-5)


def test_laplace_proposal_recovers_from_a_settled_latent_outside_a_degenerate_prior():
    # ReLU latents make the fitted prior nearly degenerate (variance ~reg_covar where a component's
    # training latents are 0); a test image's settled latent then lies many standard deviations off
    # it, beyond the reach of a local mode search. The proposal must start from a better candidate
    # (a component mean or the best prior draw) and still sample the posterior well.
    mean, cov = np.array([0.3, 0.0]), np.diag([1.0, 1e-4])
    model, params, w = _tiny(40, 2.0)
    rng = np.random.default_rng(4)
    s = np.stack([rng.normal(0.3, 1.0, 4), np.zeros(4)], 1)
    x = (1 / (1 + np.exp(-(s @ w))) > 0.5).astype(np.float32)
    exact = _quadrature_log_px(w, x.astype(np.float64), mean=mean, cov=cov)
    prior = MixturePrior(np.ones(1), mean[None], cov[None])
    far = np.asarray(extract_latents(model, params, x, batch_size=4)) + np.array([0.0, 0.5], np.float32)  # 50 sd
    est = is_log_likelihood(model, params, prior, x, far, n_samples=2000, seed=5, batch_size=4)
    assert np.all(np.abs(est.log_px - exact) < 4.5 * est.se + 1e-3), (est.log_px, exact)
    assert np.all(est.ess > 0.3 * 2000), est.ess


# ----- stratified (per-component) importance sampling ---------------------------------------------
MIX_W = np.array([0.5, 0.3, 0.2])
MIX_MEANS = np.array([[0.3, -0.2], [-1.5, 1.0], [1.2, 1.4]])
MIX_COVS = np.array([COV, [[0.2, -0.05], [-0.05, 0.1]], [[0.05, 0.0], [0.0, 0.6]]])


def _mixture_problem(d=40, scale=2.0):
    model, params, w = _tiny(d, scale)
    rng = np.random.default_rng(7)
    s = np.concatenate([MIX_MEANS, rng.normal(0.0, 1.0, (3, 2))])
    x = (1 / (1 + np.exp(-(s @ w))) > 0.5).astype(np.float32)
    x[-1] = (rng.random(d) < 0.5).astype(np.float32)  # one image no latent explains well
    quads = [_quadrature_log_px(w, x.astype(np.float64), mean=m, cov=c) for m, c in zip(MIX_MEANS, MIX_COVS)]
    exact = np.logaddexp.reduce(np.log(MIX_W)[:, None] + np.array(quads), axis=0)
    return model, params, w, x, MixturePrior(MIX_W, MIX_MEANS, MIX_COVS), exact


@pytest.mark.parametrize("with_centres", [True, False])
def test_stratified_importance_sampling_matches_quadrature_on_a_mixture_prior(with_centres):
    model, params, _, x, prior, exact = _mixture_problem()
    centres = extract_latents(model, params, x, batch_size=6) if with_centres else None
    est = stratified_is_log_likelihood(
        model,
        params,
        prior,
        x,
        centres,
        n_samples=400,
        n_top=1 if with_centres else 2,
        n_pilot=50,
        seed=2,
        batch_size=4,
    )
    assert est.log_px.shape == (len(x),) and np.all(est.se > 0)
    assert est.n_samples == 50 + 2 * 400
    z = (est.log_px - exact) / est.se
    assert np.all(np.abs(z) < 4.5), f"IS {est.log_px} vs quadrature {exact}, z = {z}"
    assert np.all(np.abs(est.log_px - exact) < 0.25), (est.log_px, exact)


def test_stratified_importance_sampling_agrees_with_the_naive_estimate_and_is_tighter(tiny):
    model, params, _, x, prior, exact = tiny
    naive = mc_log_likelihood(model, params, prior, x, n_samples=2000, seed=5)
    est = stratified_is_log_likelihood(model, params, prior, x, None, n_samples=200, n_top=1, n_pilot=10, seed=5)
    gap = est.log_px - naive.log_px
    assert np.all(np.abs(gap) < 4.5 * np.hypot(est.se, naive.se)), gap
    assert np.all(np.abs(est.log_px - exact) < 4.5 * est.se + 1e-3), (est.log_px, exact)
    # 10x fewer samples, yet a smaller standard error than the naive estimate
    assert np.all(est.se < naive.se), (est.se, naive.se)


def test_stratified_importance_sampling_beats_the_naive_estimate_on_a_degenerate_prior():
    # ReLU-like prior: each component nearly degenerate (variance 1e-4 across its support), images
    # explained by a narrow posterior that prior draws rarely hit: the naive estimate falls short of
    # the exact value by nats, the stratified one does not.
    mean, cov = np.array([[0.3, 0.0], [-0.8, 0.9]]), np.array([np.diag([1.0, 1e-4]), np.diag([1e-4, 0.5])])
    model, params, w = _tiny(200, 3.0)
    rng = np.random.default_rng(4)
    s = np.stack([rng.normal(0.3, 1.0, 4), np.full(4, 0.001)], 1)
    x = (1 / (1 + np.exp(-(s @ w))) > 0.5).astype(np.float32)
    prior = MixturePrior(np.array([0.5, 0.5]), mean, cov)
    quads = [_quadrature_log_px(w, x.astype(np.float64), mean=m, cov=c) for m, c in zip(mean, cov)]
    exact = np.logaddexp.reduce(np.log(0.5) + np.array(quads), axis=0)
    est = stratified_is_log_likelihood(model, params, prior, x, None, n_samples=200, n_top=1, n_pilot=50, seed=1)
    naive = mc_log_likelihood(model, params, prior, x, n_samples=est.n_samples, seed=1)  # as many samples
    assert np.all(np.abs(est.log_px - exact) < 4.5 * est.se + 0.05), (est.log_px, exact)
    assert np.all(exact - naive.log_px > 1.0), (naive.log_px, exact)
    assert np.all(est.log_px > naive.log_px + 1.0), (est.log_px, naive.log_px)
    assert np.all(est.se < 0.2 * naive.se), (est.se, naive.se)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n_top": 3}, "n_top: expected at most the prior's 3 components less the settled latent's own, got 3"),
        ({"n_top": 1, "n_samples": 1}, "n_samples: expected an integer >= 2, got 1"),
        ({"n_top": 1, "defensive": 0.0}, "defensive: expected a fraction in (0, 1), got 0.0"),
        ({"n_top": 1, "refine_lr": -1.0}, "refine_lr: expected a positive learning rate, got -1.0"),
    ],
)
def test_stratified_importance_sampling_rejects_bad_settings(kw, message):
    model, params, _, x, prior, _ = _mixture_problem()
    with pytest.raises(ValueError) as err:
        stratified_is_log_likelihood(model, params, prior, x, np.zeros((len(x), 2), np.float32), **kw)
    assert str(err.value) == message


def test_stratified_importance_sampling_checks_the_centres_shape():
    model, params, _, x, prior, _ = _mixture_problem()
    with pytest.raises(ValueError, match=r"centres: expected shape \(6, 2\), got \(6, 3\)"):
        stratified_is_log_likelihood(model, params, prior, x, np.zeros((6, 3), np.float32), n_top=1)
