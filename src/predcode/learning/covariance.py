"""Learned covariance of an error layer: the legacy ngc-learn rule and the exact Gaussian gradient.

The error ``e`` of a layer with covariance ``Sigma`` is whitened as ``e~ = e P`` with
``P = (R^{-1})^T`` and ``R = cholesky(Sigma)`` (lower), so ``e~ e~^T = e Sigma^{-1} e^T``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from predcode.linalg import inv, inverse_cholesky

Array = jax.Array

# jaxlib's CPU Cholesky / triangular solve run on SciPy's OpenBLAS, whose thread pool only slows
# 360 x 360 factorisations down (badly on a loaded machine): predcode.experiments' fit, demo and
# analyze run under predcode.lapack_threads() (one thread, unless the user chose); nothing is set
# when this module is imported.

SIGMA_FLOOR_JITTER = 0.00025


def init_covariance(key: Array, n: int, spread: float = 0.01, dtype=jnp.float32) -> Array:
    """Legacy initial covariance: ``I`` plus ``U(-spread, spread)`` off the diagonal (not symmetric)."""
    noise = jax.random.uniform(key, (n, n), dtype, -spread, spread)
    eye = jnp.eye(n, dtype=dtype)
    return eye + noise * (1 - eye)


def legacy_precision(sigma: Array) -> tuple[Array, Array]:
    """ngc-learn's ``compute_precision``: returns ``(Sigma', P)``.

    ``Sigma' = max(1, diag) I + offdiag + 0.00025`` (the jitter is added to *every* entry, on every
    call, and persists), ``R = cholesky`` of the lower triangle of ``Sigma'`` (TensorFlow reads only
    the lower triangle), and ``P = (R^{-1})^T``.
    """
    eye = jnp.eye(sigma.shape[0], dtype=sigma.dtype)
    cov = jnp.maximum(1.0, sigma) * eye + sigma * (1 - eye) + SIGMA_FLOOR_JITTER
    # predcode.linalg: under vmap (stacked trials) the LAPACK calls run one matrix at a time on CPU,
    # where batched ones can deadlock XLA's thread pool.
    return cov, inverse_cholesky(cov).T


def legacy_sigma_update(e_white: Array, prec: Array, weights: Array | None = None) -> Array:
    """Legacy covariance update, as a gradient for the optimizer: ``-0.5 (e~^T e~ - P) / B``.

    ``e~^T e~`` is summed over the batch and ``P`` is divided by ``B`` as well, exactly as
    ngc-learn's ``calc_updates`` scales every delta by ``1/B``.
    """
    count: int | Array
    if weights is None:
        outer, count = e_white.T @ e_white, e_white.shape[0]
    else:
        outer, count = e_white.T @ (e_white * weights[:, None]), weights.sum()
    return -0.5 * (outer - prec) / count


def gaussian_nll_sigma_grad(e: Array, sigma: Array, weights: Array | None = None) -> Array:
    """Exact gradient with respect to ``Sigma`` of the batch-mean ``0.5 e Sigma^{-1} e^T + 0.5 log|Sigma|``.

    ``Sigma`` is treated as a general matrix, so the result equals ``jax.grad`` of that loss:
    ``0.5 (Sigma^{-T} - Sigma^{-T} S^T Sigma^{-T})`` with ``S`` the (weighted) mean of ``e^T e``.
    """
    if weights is None:
        s = e.T @ e / e.shape[0]
    else:
        s = e.T @ (e * weights[:, None]) / weights.sum()
    inv_t = inv(sigma).T
    return 0.5 * (inv_t - inv_t @ s.T @ inv_t)
