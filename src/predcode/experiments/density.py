"""Generative use of a trained GNCN: settled latents, a Gaussian-mixture prior, ancestral samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from predcode.activations import get_activation
from predcode.learning.step import pad_batch
from predcode.models.gncn import GNCN, Params


def extract_latents(model: GNCN, params: Params, x: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """Settle every row of ``x`` and return the top layer's ``phi(z_L)`` (n, d_L)."""
    phi = get_activation(model.config.phi).fn

    @jax.jit
    def top(params, xb):
        return phi(model.settle(params, xb).states[-1])

    out = []
    for start in range(0, len(x), batch_size):
        rows = x[start:start + batch_size]
        xb, _ = pad_batch(jnp.asarray(rows), batch_size)
        out.append(np.asarray(top(params, xb))[: len(rows)])
    return np.concatenate(out)


def fit_prior(latents: np.ndarray, *, n_components: int = 75, seed: int = 0,
              covariance_type: str = "full") -> GaussianMixture:
    """Fit the Gaussian-mixture prior on ``phi(z_L)`` (scikit-learn, k-means init, as in GNCN.md)."""
    if not 1 <= n_components <= len(latents):
        raise ValueError(
            f"n_components: expected 1 to {len(latents)} (the number of latents), got {n_components}")
    gmm = GaussianMixture(n_components, covariance_type=covariance_type, random_state=seed,
                          init_params="kmeans", reg_covar=1e-6)
    return gmm.fit(latents)


def sample_images(model: GNCN, params: Params, prior: GaussianMixture, n: int, *, seed: int = 0) -> np.ndarray:
    """Ancestral samples: draw ``phi(z_L)`` from the prior (components drawn by their weights) and project."""
    rng = np.random.default_rng(seed)
    comps = rng.choice(prior.n_components, size=n, p=prior.weights_)
    chol = np.linalg.cholesky(prior.covariances_) if prior.covariance_type == "full" else None
    if chol is None:
        raise ValueError(f"prior: expected a full-covariance mixture, got {prior.covariance_type!r}")
    eps = rng.standard_normal((n, prior.means_.shape[1]))
    s = prior.means_[comps] + np.einsum("nij,nj->ni", chol[comps], eps)
    return np.asarray(model.project(params, jnp.asarray(s, jnp.float32), apply_phi=False))
