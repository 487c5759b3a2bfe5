"""Generative use of a trained GNCN: settled latents, a Gaussian-mixture prior, ancestral samples and
estimates of the marginal log-likelihood ``log p(x)``.

The density model (``shared/reference/GNCN.md``, "Metrics")::

    p(x) = E_{s ~ prior}[ prod_d Bernoulli(x_d; project(s)_d) ],   s = phi(z_L) in phi space,

where ``prior`` is a Gaussian mixture fitted to settled top-layer latents and ``project`` runs the
noise-free top-down predictions (``GNCN.project(params, s, apply_phi=False)``). Probabilities are
clipped to ``[clip, 1 - clip]`` (``clip = 1e-6``, as in legacy).

Three estimators, all returning a :class:`LogLikelihoodEstimate` per image:

* :func:`mc_log_likelihood`, the naive Monte Carlo estimate
  ``log p(x) ~ logsumexp_s log p(x | s_s) - log S`` with ``S`` prior samples (components drawn in
  proportion to their weights). The images of one test batch (``batch_size`` rows) share their
  ``S`` samples, so the ``(batch, chunk)`` log-likelihood matrix is two matmuls
  ``x @ log p^T + (1 - x) @ log(1 - p)^T``; every batch draws fresh samples.
* :func:`stratified_is_log_likelihood` (what ``predcode analyze`` reports), importance sampling
  one mixture component at a time, ``p(x) = sum_k w_k I_k``, with Laplace proposals around the
  posterior modes in the components that explain the image best (the settled latent's own among
  them); no sample needs the mixture density. On trained GNCN models it is tens of nats above the
  naive estimate, whose effective sample size is about 1.
* :func:`is_log_likelihood`, importance sampling with one proposal over the whole mixture, centred
  on the settled latent ``m = phi(z_L(x))`` (see its docstring); every weight needs the mixture
  density (``K`` triangular solves a sample), which makes it slow in 360 dimensions, and on the
  trained models its single mode misses most of the mass.

Both are unbiased for ``p(x)`` (so, by Jensen, biased low for ``log p(x)``, by about ``se^2 / 2``).
``se`` is the delta-method standard error ``sqrt((mean(w^2) / mean(w)^2 - 1) / S)`` of
``log mean(w)``; ``ess = (sum w)^2 / sum w^2`` is the effective sample size.

Legacy bugs that this module does not copy (GNCN.md): ``+log S`` instead of ``-log S``
(:func:`legacy_plus_log_s` reproduces that figure, labelled as such), mixture weights used as
logits, and a second ``tanh`` on the sampled ``phi(z_L)`` of GNCN-t1.

The prior is stored without pickles as ``prior.npz`` (``weights``, ``means``, ``covariances`` plus
scalar metadata) by :meth:`MixturePrior.save`; :meth:`MixturePrior.load` rebuilds the sampler and
the log-density (``score_samples`` equals scikit-learn's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from scipy.linalg import solve_triangular
from sklearn.mixture import GaussianMixture

from predcode import linalg
from predcode.activations import get_activation
from predcode.core import Term
from predcode.dynamics.settle import settle
from predcode.experiments.atomic import atomic_path
from predcode.learning.step import pad_batch
from predcode.models.gncn import GNCN, Params, bce_per_sample, discrepancy_per_sample

__all__ = [
    "LogLikelihoodEstimate",
    "MixturePrior",
    "PriorFileError",
    "Settled",
    "extract_latents",
    "settle_batches",
    "fit_prior",
    "is_log_likelihood",
    "stratified_is_log_likelihood",
    "legacy_plus_log_s",
    "mc_log_likelihood",
    "sample_images",
]

LOG_2PI = math.log(2 * math.pi)
PROB_CLIP = 1e-6
# Pairs (samples x d x d floats) gathered at once when drawing from the mixture: bounds memory.
_GATHER_BUDGET = 2**25


class PriorFileError(ValueError):
    """A ``prior.npz`` cannot be read or does not describe a full-covariance Gaussian mixture."""


# --------------------------------------------------------------------------------------------- prior


class MixturePrior:
    """A full-covariance Gaussian mixture: ``sum_k weights[k] N(means[k], covariances[k])``.

    A pickle-free stand-in for a fitted ``sklearn.mixture.GaussianMixture``: same log-density
    (:meth:`score_samples`, computed like scikit-learn from the precision Cholesky factors, in
    float64), a sampler that draws components in proportion to ``weights``, and ``.npz`` storage.
    """

    def __init__(
        self, weights: Any, means: Any, covariances: Any, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        w = np.asarray(weights, np.float64)
        mu = np.asarray(means, np.float64)
        cov = np.asarray(covariances, np.float64)
        if w.ndim != 1 or len(w) < 1:
            raise ValueError(f"weights: expected a non-empty vector, got shape {w.shape}")
        k = len(w)
        if mu.ndim != 2 or mu.shape[0] != k:
            raise ValueError(f"means: expected shape ({k}, d), got {mu.shape}")
        d = mu.shape[1]
        if cov.shape != (k, d, d):
            raise ValueError(f"covariances: expected shape ({k}, {d}, {d}) (full covariance), got {cov.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
            raise ValueError("weights, means and covariances must be finite")
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
            raise ValueError(f"weights: expected non-negative numbers summing to 1, got sum {w.sum()!r}")
        self.weights = w / w.sum()
        self.means = mu
        self.covariances = cov
        self.metadata = dict(metadata or {})
        try:
            self.chol = np.linalg.cholesky(cov)  # lower: cov = L L^T
        except np.linalg.LinAlgError:
            raise ValueError("covariances: expected symmetric positive-definite matrices") from None
        eye = np.eye(d)
        # scikit-learn's precisions_cholesky_: P = (L^{-1})^T, so precision = P P^T.
        self.prec_chol = np.stack([solve_triangular(c, eye, lower=True).T for c in self.chol])
        self.log_det_prec_chol = np.log(np.diagonal(self.prec_chol, axis1=1, axis2=2)).sum(axis=1)

    # ----- construction, storage --------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """Number of mixture components."""
        return len(self.weights)

    @property
    def dim(self) -> int:
        """Dimension of the latent space the mixture lives in."""
        return self.means.shape[1]

    @classmethod
    def from_sklearn(cls, gmm: GaussianMixture, **metadata: Any) -> MixturePrior:
        """The prior of a fitted full-covariance scikit-learn ``GaussianMixture`` (its fit diagnostics kept)."""
        if getattr(gmm, "covariance_type", None) != "full":
            raise ValueError(
                f"prior: expected a full-covariance mixture, got {getattr(gmm, 'covariance_type', None)!r}"
            )
        meta = {
            "n_iter": int(getattr(gmm, "n_iter_", 0)),
            "converged": bool(getattr(gmm, "converged_", False)),
            "lower_bound": float(getattr(gmm, "lower_bound_", float("nan"))),
        }
        meta.update(metadata)
        return cls(gmm.weights_, gmm.means_, gmm.covariances_, metadata=meta)

    @classmethod
    def coerce(cls, prior: MixturePrior | GaussianMixture) -> MixturePrior:
        """``prior`` itself if it is a :class:`MixturePrior`, else converted with :meth:`from_sklearn`."""
        return prior if isinstance(prior, MixturePrior) else cls.from_sklearn(prior)

    def with_jitter(self, jitter: float) -> MixturePrior:
        """The same mixture with ``jitter * I`` added to each covariance (legacy sampled with 1e-4)."""
        eye = np.eye(self.dim)
        return MixturePrior(
            self.weights,
            self.means,
            self.covariances + jitter * eye,
            metadata={**self.metadata, "jitter": float(jitter)},
        )

    def save(self, path: str | Path) -> Path:
        """Write ``weights``, ``means``, ``covariances`` and scalar metadata as an ``.npz`` (no pickles)."""
        arrays: dict[str, np.ndarray] = {"weights": self.weights, "means": self.means, "covariances": self.covariances}
        for key, value in self.metadata.items():
            a = np.asarray(value)
            if a.dtype.hasobject or a.ndim != 0 or key in arrays:
                raise ValueError(f"prior metadata {key!r}: expected a scalar number, bool or string, got {value!r}")
            arrays[f"meta_{key}"] = a
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MixturePrior:
        """Read a ``prior.npz`` written by :meth:`save` (refuses pickles)."""
        path = Path(path)
        try:
            npz = np.load(path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise PriorFileError(
                    f"{path}: expected an .npz archive of weights, means and covariances, found a single array"
                )
            with npz:
                arrays = {name: npz[name] for name in npz.files}
        except PriorFileError:
            raise
        except FileNotFoundError:
            raise PriorFileError(f"{path}: file not found; run `predcode analyze` to write it") from None
        except Exception as err:  # zipfile, numpy's header parser, ...: any damage is the file's fault
            raise PriorFileError(
                f"{path}: expected an .npz archive without pickles, cannot read it "
                f"({type(err).__name__}: {err}); run `predcode analyze` again to rewrite it"
            ) from None
        not_arrays = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
        if not_arrays:  # numpy hands back raw bytes for a member without the NPY magic
            raise PriorFileError(f"{path}: expected .npy members, got unreadable member(s) {not_arrays}")
        missing = [k for k in ("weights", "means", "covariances") if k not in arrays]
        if missing:
            raise PriorFileError(f"{path}: expected arrays weights, means, covariances; missing {missing}")
        meta = {k[5:]: arrays[k].item() for k in arrays if k.startswith("meta_")}
        try:
            return cls(arrays["weights"], arrays["means"], arrays["covariances"], metadata=meta)
        except ValueError as err:
            raise PriorFileError(f"{path}: {err}") from None

    def to_sklearn(self) -> GaussianMixture:
        """A fitted-looking ``GaussianMixture`` with these parameters (for code that wants one)."""
        gmm = GaussianMixture(self.n_components, covariance_type="full")
        gmm.weights_, gmm.means_, gmm.covariances_ = self.weights, self.means, self.covariances
        gmm.precisions_cholesky_ = self.prec_chol
        gmm.precisions_ = np.einsum("kij,klj->kil", self.prec_chol, self.prec_chol)
        gmm.converged_, gmm.n_iter_ = bool(self.metadata.get("converged", True)), int(self.metadata.get("n_iter", 0))
        gmm.lower_bound_ = float(self.metadata.get("lower_bound", float("nan")))
        gmm.n_features_in_ = self.dim
        return gmm

    # ----- density, sampling ----------------------------------------------------------------
    def component_log_densities(self, x: Any) -> np.ndarray:
        """``log N(x; means[k], covariances[k])`` for every row and component, (n, K), float64."""
        x = np.asarray(x, np.float64)
        y = np.einsum("nd,kde->nke", x, self.prec_chol) - np.einsum("kd,kde->ke", self.means, self.prec_chol)
        return -0.5 * (self.dim * LOG_2PI + np.sum(y * y, axis=-1)) + self.log_det_prec_chol

    def score_samples(self, x: Any) -> np.ndarray:
        """Log-density of each row (n,), as ``GaussianMixture.score_samples``."""
        lp = self.component_log_densities(x) + np.log(self.weights)
        m = lp.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(lp - m).sum(axis=1, keepdims=True)))[:, 0]

    def predict(self, x: Any) -> np.ndarray:
        """The most responsible component of each row (n,)."""
        return np.argmax(self.component_log_densities(x) + np.log(self.weights), axis=1)

    def jax_arrays(self, dtype=jnp.float32) -> dict[str, jax.Array]:
        """The arrays the jitted samplers and densities take (pass them as arguments, not constants)."""
        with np.errstate(divide="ignore"):
            logw = np.log(self.weights)
        return {
            "logw": jnp.asarray(logw, dtype),
            "means": jnp.asarray(self.means, dtype),
            "chol": jnp.asarray(self.chol, dtype),
            "prec_chol": jnp.asarray(self.prec_chol, dtype),
            "log_det": jnp.asarray(self.log_det_prec_chol, dtype),
        }

    def sample(self, n: int, *, seed: int = 0, return_components: bool = False):
        """``n`` draws (n, d) float32: components in proportion to ``weights``, then ``mean + L eps``."""
        pj = self.jax_arrays()
        chunk = max(1, min(n, _GATHER_BUDGET // (self.dim * self.dim)))
        draw = jax.jit(_draw_mixture, static_argnums=1)
        key = jax.random.key(seed)
        samples, comps = [], []
        for i, start in enumerate(range(0, n, chunk)):
            s, c = draw(jax.random.fold_in(key, i), chunk, pj)
            samples.append(np.asarray(s)[: n - start])
            comps.append(np.asarray(c)[: n - start])
        s = np.concatenate(samples) if samples else np.zeros((0, self.dim), np.float32)
        c = np.concatenate(comps) if comps else np.zeros(0, np.int32)
        return (s, c) if return_components else s


def _draw_mixture(key: jax.Array, n: int, pj: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``n`` mixture draws: ``categorical(logits = log weights)`` picks components by their weights."""
    kc, ke = jax.random.split(key)
    comps = jax.random.categorical(kc, pj["logw"], shape=(n,))
    eps = jax.random.normal(ke, (n, pj["means"].shape[1]), pj["means"].dtype)
    s = pj["means"][comps] + jnp.einsum("nij,nj->ni", pj["chol"][comps], eps)
    return s, comps


def _component_logpdf(s: jax.Array, pj: Mapping[str, jax.Array]) -> jax.Array:
    """``log N(s; mean_k, cov_k)`` for rows ``s`` (n, d): (n, K); one component at a time (memory n*d)."""
    d = s.shape[-1]

    def one(args):
        mu, prec_chol, log_det = args
        y = (s - mu) @ prec_chol
        return -0.5 * (d * LOG_2PI + jnp.sum(y * y, axis=-1)) + log_det

    return jax.lax.map(one, (pj["means"], pj["prec_chol"], pj["log_det"])).T


def _mixture_logpdf(s: jax.Array, pj: Mapping[str, jax.Array]) -> jax.Array:
    return logsumexp(_component_logpdf(s, pj) + pj["logw"], axis=-1)


def fit_prior(
    latents: np.ndarray,
    *,
    n_components: int = 75,
    seed: int = 0,
    covariance_type: str = "full",
    max_iter: int = 100,
    reg_covar: float = 1e-6,
) -> GaussianMixture:
    """Fit the Gaussian-mixture prior on ``phi(z_L)`` (scikit-learn, k-means init, as in GNCN.md)."""
    if not 1 <= n_components <= len(latents):
        raise ValueError(f"n_components: expected 1 to {len(latents)} (the number of latents), got {n_components}")
    gmm = GaussianMixture(
        n_components,
        covariance_type=covariance_type,
        random_state=seed,
        init_params="kmeans",
        reg_covar=reg_covar,
        max_iter=max_iter,
    )
    return gmm.fit(latents)


# --------------------------------------------------------------------------------------------- latents, samples


class Settled(NamedTuple):
    """Per-image results of settling: top latents ``phi(z_L)``, ``mu_0``, BCE and ToD."""

    latents: np.ndarray
    recon: np.ndarray
    bce: np.ndarray
    tod: np.ndarray


@functools.lru_cache(maxsize=8)  # one compiled settle per model
def _settle_fn(model: GNCN):
    assert model.config.phi is not None  # GNCNConfig fills it from the museum model
    phi = get_activation(model.config.phi).fn

    @jax.jit
    def run(params, xb, mb):
        r = model.settle(params, xb * mb, mask=mb)
        mu0 = r.predictions[0]
        return phi(r.states[-1]), mu0, bce_per_sample(xb, mu0), discrepancy_per_sample(r.errors)

    return run


def settle_batches(
    model: GNCN, params: Params, x: np.ndarray, *, batch_size: int = 500, mask: np.ndarray | None = None
) -> Settled:
    """Settle every row of ``x`` (``mask``, (x_dim,), 0 hides a pixel's error); per-image results."""
    x = np.asarray(x, np.float32)
    batch_size = min(batch_size, max(len(x), 1))
    run = _settle_fn(model)
    m = jnp.ones(x.shape[1], jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
    parts = []
    for start in range(0, len(x), batch_size):
        rows = x[start : start + batch_size]
        xb, _ = pad_batch(jnp.asarray(rows), batch_size)
        out = run(params, xb, jnp.broadcast_to(m, xb.shape))
        parts.append([np.asarray(o)[: len(rows)] for o in out])
    return Settled(*(np.concatenate(cols) for cols in zip(*parts)))


def extract_latents(model: GNCN, params: Params, x: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """Settle every row of ``x`` and return the top layer's ``phi(z_L)`` (n, d_L)."""
    return settle_batches(model, params, x, batch_size=batch_size).latents


def sample_images(
    model: GNCN, params: Params, prior: MixturePrior | GaussianMixture, n: int, *, seed: int = 0
) -> np.ndarray:
    """Ancestral samples: draw ``phi(z_L)`` from the prior (components drawn by their weights) and project.

    Returns the Bernoulli means ``mu_0`` (n, x_dim).
    """
    s = MixturePrior.coerce(prior).sample(n, seed=seed)
    return np.asarray(model.project(params, jnp.asarray(s, jnp.float32), apply_phi=False))


# --------------------------------------------------------------------------------------------- log p(x)


class LogLikelihoodEstimate(NamedTuple):
    """Per-image estimates of ``log p(x)`` (nats) from ``n_samples`` weighted samples each."""

    log_px: np.ndarray  # (n,) log of the mean importance weight
    se: np.ndarray  # (n,) delta-method standard error of log_px
    ess: np.ndarray  # (n,) effective sample size (sum w)^2 / sum w^2
    n_samples: int

    def summary(self) -> dict[str, float]:
        """Mean over images, its Monte Carlo standard error, and the spread over images."""
        n = len(self.log_px)
        return {
            "mean": float(np.mean(self.log_px)),
            # assumes independent errors across images (exact across test batches; within one
            # batch the naive estimator shares its samples, so this is an approximation there)
            "mc_se_of_mean": float(np.sqrt(np.sum(self.se**2)) / n),
            "mean_se_per_image": float(np.mean(self.se)),
            "max_se_per_image": float(np.max(self.se)),
            "sd_over_images": float(np.std(self.log_px)),
            "se_of_mean_over_images": float(np.std(self.log_px, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "mean_ess": float(np.mean(self.ess)),
            "min_ess": float(np.min(self.ess)),
            # where one weight dominates (ESS near 1) the delta-method se is meaningless (capped near 1)
            "frac_images_ess_below_10": float(np.mean(self.ess < 10)),
            "n_samples": int(self.n_samples),
            "n_images": int(n),
        }


def legacy_plus_log_s(estimate: LogLikelihoodEstimate) -> np.ndarray:
    """What legacy would print for the naive estimate: ``logsumexp + log S``, i.e. ``log_px + 2 log S``.

    Only the sign error is reproduced (legacy's other bugs are not): the figure is
    ``2 log S`` nats (17.03 for S = 5,000) above the correct estimate.
    """
    return estimate.log_px + 2.0 * math.log(estimate.n_samples)


def _finish(a1: np.ndarray, a2: np.ndarray, n_samples: int) -> LogLikelihoodEstimate:
    """From ``a1 = logsumexp(log w)``, ``a2 = logsumexp(2 log w)`` to the estimate, se and ess."""
    a1, a2 = np.asarray(a1, np.float64), np.asarray(a2, np.float64)
    log_s = math.log(n_samples)
    log_px = a1 - log_s
    # mean(w^2) / mean(w)^2 = exp(a2 - log S - 2 (a1 - log S))
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(a2 + log_s - 2.0 * a1)
        se = np.sqrt(np.maximum(ratio - 1.0, 0.0) / n_samples)
        ess = np.exp(2.0 * a1 - a2)
    return LogLikelihoodEstimate(log_px, se, ess, int(n_samples))


def _check_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _check_counts(n_samples: int, batch_size: int, chunk: int) -> None:
    for name, v in (("n_samples", n_samples), ("batch_size", batch_size), ("chunk", chunk)):
        _check_int(name, v)


def _balanced_chunks(n_samples: int, chunk: int) -> tuple[int, int]:
    """``(n_chunks, chunk)`` with ``n_chunks * chunk >= n_samples`` and the last chunk never empty."""
    n_chunks = -(-n_samples // chunk)
    return n_chunks, -(-n_samples // n_chunks)


def _batches(x: np.ndarray, batch_size: int):
    for b, start in enumerate(range(0, len(x), batch_size)):
        yield b, start, min(start + batch_size, len(x))


def mc_log_likelihood(
    model: GNCN,
    params: Params,
    prior: MixturePrior | GaussianMixture,
    x: np.ndarray,
    *,
    n_samples: int = 5000,
    seed: int = 0,
    batch_size: int = 500,
    chunk: int = 256,
    clip: float = PROB_CLIP,
) -> LogLikelihoodEstimate:
    """Naive Monte Carlo ``log p(x) ~ logsumexp_s log p(x | s_s) - log S`` with ``S`` prior samples.

    ``x`` (n, x_dim). Test images are processed ``batch_size`` at a time; each batch draws its own
    ``n_samples`` prior samples (shared by the images of that batch), ``chunk`` at a time inside a
    ``lax.scan``, so memory is ``O(batch_size * chunk + chunk * d^2)`` whatever ``n_samples`` is.
    """
    _check_counts(n_samples, batch_size, chunk)
    prior = MixturePrior.coerce(prior)
    x = np.asarray(x, np.float32)
    d = prior.dim
    chunk = max(1, min(chunk, _GATHER_BUDGET // (d * d)))
    n_chunks, chunk = _balanced_chunks(n_samples, chunk)

    def run(params, pj, xb, key):
        def body(carry, i):
            a1, a2 = carry
            s, _ = _draw_mixture(jax.random.fold_in(key, i), chunk, pj)
            p = jnp.clip(model.project(params, s.astype(xb.dtype), apply_phi=False), clip, 1 - clip)
            ll = xb @ jnp.log(p).T + (1 - xb) @ jnp.log1p(-p).T  # (batch, chunk)
            valid = i * chunk + jnp.arange(chunk) < n_samples
            ll = jnp.where(valid[None, :], ll, -jnp.inf)
            return (jnp.logaddexp(a1, logsumexp(ll, axis=1)), jnp.logaddexp(a2, logsumexp(2 * ll, axis=1))), None

        init = jnp.full((xb.shape[0],), -jnp.inf, xb.dtype)
        (a1, a2), _ = jax.lax.scan(body, (init, init), jnp.arange(n_chunks))
        return a1, a2

    return _run_batches(jax.jit(run), params, prior, x, batch_size, seed, n_samples)


def _run_batches(
    fn, params, prior: MixturePrior, x: np.ndarray, batch_size: int, seed: int, n_samples: int, *extra: np.ndarray
) -> LogLikelihoodEstimate:
    """``fn(params, pj, xb, *extra_b, key) -> (a1, a2)`` over padded batches of ``x``, then :func:`_finish`."""
    a1, a2 = _map_batches(fn, params, prior, x, batch_size, seed, *extra)
    return _finish(a1, a2, n_samples)


def _map_batches(fn, params, prior: MixturePrior, x: np.ndarray, batch_size: int, seed: int, *extra: np.ndarray):
    """The per-image outputs of ``fn`` over padded batches of ``x`` (a key folded in per batch), concatenated."""
    pj = prior.jax_arrays()
    key = jax.random.key(seed)
    batch_size = min(batch_size, max(len(x), 1))
    outs: list[list[np.ndarray]] = []
    with jax.default_matmul_precision("highest"):  # no TF32: the sums over pixels need float32
        for b, start, stop in _batches(x, batch_size):
            xb, _ = pad_batch(jnp.asarray(x[start:stop]), batch_size)
            rest = [pad_batch(jnp.asarray(e[start:stop]), batch_size)[0] for e in extra]
            res = fn(params, pj, xb, *rest, jax.random.fold_in(key, b))
            outs.append([np.asarray(r)[: stop - start] for r in res])
    return tuple(np.concatenate(parts) for parts in zip(*outs))


PROPOSALS = ("laplace", "component")
_PROPOSAL_SUB_BATCH = 50
_DEFAULT_SCALES = {"laplace": (1.0,), "component": (0.1, 0.3, 1.0)}


def _climb(ascent: Any, u0: jax.Array, optimizer: optax.GradientTransformation, steps: int) -> jax.Array:
    """``steps`` optimizer steps up ``ascent(u)`` (the gradient of a log density) from ``u0``: a
    settle of the latent ``u`` (:func:`predcode.dynamics.settle`) with the optimizer as its solver."""
    term = Term(lambda u: ((), (), ascent(u)), lambda u, g: g, lambda u, errors: jnp.zeros(()))
    return settle(term, u0, steps=steps + 1, solver=optimizer).states


def _log_joint(model: GNCN, params: Params, pj, s: jax.Array, x: jax.Array, clip: float) -> jax.Array:
    """``log prior(s) + log p(x | s)`` for one latent ``s`` (d,) and image ``x`` (D,)."""
    p = jnp.clip(model.project(params, s[None], apply_phi=False)[0], clip, 1 - clip)
    return _mixture_logpdf(s[None], pj)[0] + jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))


def _proposal(
    model: GNCN,
    params: Params,
    pj,
    xb: jax.Array,
    mb: jax.Array,
    alt: jax.Array,
    *,
    kind: str,
    steps: int,
    lr: float,
    clip: float,
):
    """Per-image Gaussian proposal ``N(c, C C^T)`` with ``(C C^T)^{-1} = P P^T``: ``(c, C, P, log det P)``.

    ``mb`` (b, d) are the settled latents, ``alt`` (b, d) other candidate starts (the best of a set of
    prior draws for each image); the Laplace proposal starts its mode search from the best candidate.
    """

    def nearest(s):
        return jnp.argmax(_component_logpdf(s, pj) + pj["logw"], axis=-1)

    comp = nearest(mb)
    if kind == "component":
        return mb, pj["chol"][comp], pj["prec_chol"][comp], pj["log_det"][comp]
    # 1. the start: whichever of the settled latent, the component means and the best prior draw has
    #    the largest log joint. With ReLU latents the prior is nearly degenerate (most coordinates of
    #    a component are 0 with variance ~reg_covar), and a settled latent of a test image usually
    #    lies far outside it (log prior in the -1e3..-1e5 range), where no local search reaches the
    #    posterior's mass; the prior draws find the component that explains the image best.
    means = pj["means"]
    lj_means = jax.vmap(lambda x: jax.vmap(lambda m: _log_joint(model, params, pj, m, x, clip))(means))(xb)
    best_k = jnp.argmax(lj_means, axis=1)
    cands = jnp.stack([mb, means[best_k], alt], axis=1)  # (b, 3, d)
    scores = jnp.stack(
        [
            _log_joint_batch(model, params, pj, mb, xb, clip),
            jnp.max(lj_means, axis=1),
            _log_joint_batch(model, params, pj, alt, xb, clip),
        ],
        axis=1,
    )
    mb = jnp.take_along_axis(cands, jnp.argmax(scores, axis=1)[:, None, None], axis=1)[:, 0]
    comp = nearest(mb)
    # 2. the posterior mode: maximise log prior(s) + log p(x|s) from there, with Adam in the whitened
    #    coordinates u of that component (s = m + L_k u).
    chol0 = pj["chol"][comp]
    loss = jax.vmap(jax.grad(lambda u, m, chol, x: -_log_joint(model, params, pj, m + chol @ u, x, clip)))
    u = _climb(lambda u: -loss(u, mb, chol0, xb), jnp.zeros_like(mb), optax.adam(lr), steps)
    mode = mb + jnp.einsum("bij,bj->bi", chol0, u)
    start, end = _log_joint_batch(model, params, pj, mb, xb, clip), _log_joint_batch(model, params, pj, mode, xb, clip)
    better = end >= start  # keep the settled latent where the search made things worse
    mode = jnp.where(better[:, None], mode, mb)
    # 3. Laplace (Gauss-Newton) precision at the mode: the nearest component's precision plus the
    #    Bernoulli Fisher information J^T diag(1 / (p (1 - p))) J of the projection p = project(s).
    k = nearest(mode)
    prec_chol = pj["prec_chol"][k]
    proj = jax.vmap(lambda s: model.project(params, s[None], apply_phi=False)[0])
    jac = jax.vmap(jax.jacfwd(lambda s: model.project(params, s[None], apply_phi=False)[0]))(mode)  # (b, D, d)
    p = jnp.clip(proj(mode), clip, 1 - clip)
    hess = jnp.einsum("bij,bkj->bik", prec_chol, prec_chol) + jnp.einsum(
        "bDi,bD,bDj->bij", jac, 1.0 / (p * (1 - p)), jac
    )
    hess = 0.5 * (hess + jnp.swapaxes(hess, 1, 2))
    # batched LAPACK through predcode.linalg: sequential on CPU (XLA:CPU can deadlock otherwise)
    r = jax.vmap(linalg.cholesky)(hess)  # hess = R R^T; covariance R^{-T} R^{-1}
    r_inv = jax.vmap(linalg.inverse_lower)(r)
    ok = jnp.all(jnp.isfinite(r), axis=(1, 2)) & jnp.all(jnp.isfinite(r_inv), axis=(1, 2))
    # 4. where the Cholesky failed (float32), fall back to the component proposal at the mode
    c_fb, p_fb, ld_fb = pj["chol"][k], prec_chol, pj["log_det"][k]
    sel = ok[:, None, None]
    cov_factor = jnp.where(sel, jnp.swapaxes(r_inv, 1, 2), c_fb)
    prec_factor = jnp.where(sel, r, p_fb)
    log_det = jnp.where(ok, jnp.sum(jnp.log(jnp.abs(jnp.diagonal(r, axis1=1, axis2=2))), axis=-1), ld_fb)
    return mode, cov_factor, prec_factor, log_det


def _log_joint_batch(model, params, pj, s, x, clip):
    return jax.vmap(lambda a, b: _log_joint(model, params, pj, a, b, clip))(s, x)


def is_log_likelihood(
    model: GNCN,
    params: Params,
    prior: MixturePrior | GaussianMixture,
    x: np.ndarray,
    centres: np.ndarray,
    *,
    n_samples: int = 5000,
    seed: int = 0,
    batch_size: int = 500,
    chunk: int = 64,
    clip: float = PROB_CLIP,
    proposal: str = "laplace",
    scales: Sequence[float] | None = None,
    defensive: float = 0.1,
    refine_steps: int = 200,
    refine_lr: float = 0.05,
    n_search: int = 1000,
) -> LogLikelihoodEstimate:
    """Importance-sampled ``log p(x)`` with a per-image proposal built from the settled latent.

    ``centres`` (n, d) are the settled ``m = phi(z_L(x))``. For each image the proposal is the
    defensive mixture

        q(s) = defensive * prior(s) + (1 - defensive) / J * sum_j N(s; c, scales[j]^2 Sigma),

    with ``(c, Sigma)`` chosen by ``proposal``:

    * ``"laplace"`` (default): ``c`` is the posterior mode found by ``refine_steps`` Adam steps
      (learning rate ``refine_lr``) on ``log prior(s) + log p(x|s)``, in the whitened coordinates of
      the prior component nearest to the start, from the best (by that log joint) of ``m``, the
      component means and ``n_search`` prior draws shared by each batch; ``Sigma`` is the inverse Gauss-Newton
      Hessian there: the precision of the component nearest to ``c`` plus the Bernoulli Fisher
      information ``J^T diag(1 / (p (1 - p))) J`` of ``p = project(s)``. Default ``scales = (1,)``.
      (The settled latent itself is a poor centre: the settling fits ``x`` through the free
      lower layers, not through ``project``.)
    * ``"component"``: ``c = m`` and ``Sigma`` the covariance of the prior component most
      responsible for ``m``; default ``scales = (0.1, 0.3, 1.0)``.

    Samples are allocated deterministically to the ``J + 1`` parts in those proportions and weighted
    with the balance heuristic ``w = prior(s) p(x | s) / q(s)``, unbiased for ``p(x)`` whatever the
    proposal; the prior part bounds every weight by ``p(x | s) / defensive``, so the estimate can
    never be much worse than the naive one. The prior draws are shared by the images of a batch.
    """
    _check_counts(n_samples, batch_size, chunk)
    prior = MixturePrior.coerce(prior)
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal: expected one of {PROPOSALS}, got {proposal!r}")
    scales = tuple(float(t) for t in (_DEFAULT_SCALES[proposal] if scales is None else scales))
    if not scales or any(not t > 0 for t in scales):
        raise ValueError(f"scales: expected one or more positive numbers, got {scales!r}")
    if not 0 <= defensive < 1:
        raise ValueError(f"defensive: expected a fraction in [0, 1), got {defensive!r}")
    _check_int("n_search", n_search)
    _check_int("refine_steps", refine_steps, 0)
    x = np.asarray(x, np.float32)
    centres = np.asarray(centres, np.float32)
    if centres.shape != (len(x), prior.dim):
        raise ValueError(f"centres: expected shape ({len(x)}, {prior.dim}), got {centres.shape}")
    d = prior.dim
    n_chunks, chunk = _balanced_chunks(n_samples, chunk)

    # Which part of the proposal each position of a chunk samples: 0 = the prior, j >= 1 = scales[j-1].
    n_prior = 0 if defensive == 0 else min(chunk, max(1, round(defensive * chunk)))
    n_local = chunk - n_prior  # 0 only for a chunk of 1: then the proposal is the prior alone
    part = np.concatenate([np.zeros(n_prior, np.int32), 1 + np.arange(n_local, dtype=np.int32) % len(scales)])
    valid = (np.arange(n_chunks)[:, None] * chunk + np.arange(chunk)[None, :]) < n_samples
    counts = np.array([np.sum(valid & (part[None, :] == j)) for j in range(len(scales) + 1)], np.float64)
    with np.errstate(divide="ignore"):
        log_frac = np.log(counts / n_samples)
    local_tau = jnp.asarray(np.array(scales, np.float32)[part[n_prior:] - 1])
    log_tau = np.log(np.array(scales, np.float64))

    def run(params, pj, xb, mb, key):
        b = xb.shape[0]
        # built a few images at a time: the Laplace proposal's Jacobians and Hessians are (sub, D, d)
        sub = next(n for n in range(min(_PROPOSAL_SUB_BATCH, b), 0, -1) if b % n == 0)
        # the best of n_search prior draws (shared by the batch) for each image: a candidate start
        ks, key = jax.random.split(key)
        draws, _ = _draw_mixture(ks, n_search, pj)
        pd = jnp.clip(model.project(params, draws, apply_phi=False), clip, 1 - clip)
        joint = xb @ jnp.log(pd).T + (1 - xb) @ jnp.log1p(-pd).T + _mixture_logpdf(draws, pj)[None, :]
        alt = draws[jnp.argmax(joint, axis=1)]
        built = jax.lax.map(
            lambda a: _proposal(
                model, params, pj, a[0], a[1], a[2], kind=proposal, steps=int(refine_steps), lr=refine_lr, clip=clip
            ),
            (xb.reshape(b // sub, sub, -1), mb.reshape(b // sub, sub, d), alt.reshape(b // sub, sub, d)),
        )
        centre, cov_factor, prec_factor, log_det = (a.reshape(b, *a.shape[2:]) for a in built)

        def body(carry, i):
            a1, a2 = carry
            kp, kl = jax.random.split(jax.random.fold_in(key, i))
            sp, _ = _draw_mixture(kp, n_prior, pj)  # (n_prior, d), shared by the batch
            eps = jax.random.normal(kl, (b, n_local, d), xb.dtype)
            sl = centre[:, None, :] + local_tau[None, :, None] * jnp.einsum("bij,bcj->bci", cov_factor, eps)
            s = jnp.concatenate([jnp.broadcast_to(sp[None], (b, n_prior, d)), sl], axis=1)  # (b, chunk, d)
            flat = s.reshape(b * chunk, d)
            log_prior = _mixture_logpdf(flat, pj).reshape(b, chunk)
            y = jnp.einsum("bcd,bde->bce", s - centre[:, None, :], prec_factor)
            r2 = jnp.sum(y * y, axis=-1)  # (b, chunk)
            log_local = [
                -0.5 * (d * LOG_2PI + r2 / scales[j] ** 2) + log_det[:, None] - d * log_tau[j]
                for j in range(len(scales))
            ]
            parts = jnp.stack([log_prior, *log_local]) + jnp.asarray(log_frac, xb.dtype)[:, None, None]
            log_q = logsumexp(parts, axis=0)
            p = jnp.clip(model.project(params, flat, apply_phi=False), clip, 1 - clip).reshape(b, chunk, -1)
            ll = jnp.sum(xb[:, None, :] * jnp.log(p) + (1 - xb[:, None, :]) * jnp.log1p(-p), axis=-1)
            logw = log_prior + ll - log_q
            ok = i * chunk + jnp.arange(chunk) < n_samples
            logw = jnp.where(ok[None, :], logw, -jnp.inf)
            return (jnp.logaddexp(a1, logsumexp(logw, axis=1)), jnp.logaddexp(a2, logsumexp(2 * logw, axis=1))), None

        init = jnp.full((b,), -jnp.inf, xb.dtype)
        (a1, a2), _ = jax.lax.scan(body, (init, init), jnp.arange(n_chunks))
        return a1, a2

    return _run_batches(jax.jit(run), params, prior, x, batch_size, seed, n_samples, centres)


def stratified_is_log_likelihood(
    model: GNCN,
    params: Params,
    prior: MixturePrior | GaussianMixture,
    x: np.ndarray,
    centres: np.ndarray | None = None,
    *,
    n_samples: int = 64,
    n_top: int = 4,
    n_pilot: int = 16,
    seed: int = 0,
    batch_size: int = 100,
    sub_batch: int = 10,
    clip: float = PROB_CLIP,
    defensive: float = 0.1,
    refine_steps: int = 100,
    refine_lr: float = 0.05,
) -> LogLikelihoodEstimate:
    """Importance-sampled ``log p(x)``, one mixture component at a time (stratified by component).

    The mixture prior splits the marginal exactly into one integral per component ``k``; in the
    component's whitened coordinates ``s = mean_k + L_k u`` (``cov_k = L_k L_k^T``)::

        p(x) = sum_k weight_k I_k,    I_k = E_{u ~ N(0, I)}[ p(x | mean_k + L_k u) ].

    Every ``I_k`` is estimated without bias on its own, so no sample ever needs the mixture's density
    (75 triangular solves a sample in 360 dimensions, what makes a mixture proposal slow):

    1. two independent pilot sets draw ``n_pilot`` ``u`` per component (shared by a batch of images);
    2. the ``n_top`` components with the largest pilot estimates ``weight_k mean p(x | s)`` of set A,
       and the component most responsible for the settled latent ``centres[i]`` if given, are
       *searched*: from the best of their pilot draws (or the whitened settled latent, whichever
       has the larger log joint) ``refine_steps`` Adam steps climb ``-|u|^2 / 2 + log p(x | s(u))``
       to the mode ``u*``; the proposal is the defensive mixture
       ``q = defensive N(0, I) + (1 - defensive) N(u*, H^{-1})`` with the Laplace (Gauss-Newton)
       precision ``H = I + J^T diag(1 / (p (1 - p))) J``, ``J = d project / d u`` at ``u*``; ``I_k``
       is the mean of ``N(u; 0, I) p(x | s(u)) / q(u)`` over ``n_samples`` draws (deterministic
       allocation: ``round(defensive * n_samples)`` from ``N(0, I)``);
    3. every other component keeps the plain mean of its ``n_pilot`` draws of set B (independent of
       the selection, so the sum stays unbiased).

    The estimate of ``p(x)`` is unbiased whatever the pilots find; ``se`` is the delta-method
    standard error from the per-component variances and ``ess = (sum c)^2 / sum c^2`` over the
    contributions ``c = weight_k w / n_k`` of all samples that enter the estimate, whose number is
    ``n_samples`` in the returned estimate: ``(K - J) n_pilot + J n_samples`` for ``K`` components
    and ``J = n_top`` (``n_top + 1`` with ``centres``) searched ones; the selection pilot (set A) is
    not counted. Images are processed ``batch_size`` at a time and their proposals ``sub_batch`` at a
    time (the Jacobians take ``sub_batch * J * D * d`` floats).
    """
    prior = MixturePrior.coerce(prior)
    for name, v, low in (
        ("n_samples", n_samples, 2),
        ("n_top", n_top, 1),
        ("n_pilot", n_pilot, 1),
        ("batch_size", batch_size, 1),
        ("sub_batch", sub_batch, 1),
        ("refine_steps", refine_steps, 0),
    ):
        _check_int(name, v, low)
    k_all, d = prior.n_components, prior.dim
    has_centres = centres is not None
    n_search = n_top + int(has_centres)
    if n_search > k_all:
        own = " less the settled latent's own" if has_centres else ""
        raise ValueError(f"n_top: expected at most the prior's {k_all} components{own}, got {n_top}")
    if not 0 < defensive < 1:
        raise ValueError(f"defensive: expected a fraction in (0, 1), got {defensive!r}")
    if not refine_lr > 0:
        raise ValueError(f"refine_lr: expected a positive learning rate, got {refine_lr!r}")
    x = np.asarray(x, np.float32)
    if has_centres:
        centres = np.asarray(centres, np.float32)
        if centres.shape != (len(x), d):
            raise ValueError(f"centres: expected shape ({len(x)}, {d}), got {centres.shape}")
    else:
        centres = np.zeros((len(x), d), np.float32)
    n_def = min(n_samples - 1, max(1, round(defensive * n_samples)))
    log_fd, log_fl = math.log(n_def / n_samples), math.log1p(-n_def / n_samples)

    def run(params, pj, xb, mb, key):
        def project(s):
            return jnp.clip(model.project(params, s, apply_phi=False), clip, 1 - clip)

        def log_lik(xb, p):  # (b, D) images, (n, D) probabilities -> (b, n)
            return xb @ jnp.log(p).T + (1 - xb) @ jnp.log1p(-p).T

        def log_joint(u, k, xi):  # -|u|^2/2 + log p(x | mean_k + L_k u) for one u (d,)
            p = project((pj["means"][k] + pj["chol"][k] @ u)[None])[0]
            return -0.5 * jnp.sum(u * u) + jnp.sum(xi * jnp.log(p) + (1 - xi) * jnp.log1p(-p))

        b = xb.shape[0]
        ka, kb, kl = jax.random.split(key, 3)

        def pilot(k):  # n_pilot whitened draws per component, shared by the batch
            u = jax.random.normal(k, (k_all, n_pilot, d), xb.dtype)
            s = pj["means"][:, None, :] + jnp.einsum("kij,knj->kni", pj["chol"], u)
            return u, log_lik(xb, project(s.reshape(-1, d))).reshape(b, k_all, n_pilot)

        u_a, ll_a = pilot(ka)
        _, ll_b = pilot(kb)
        log_i = logsumexp(ll_b, axis=2) - math.log(n_pilot)  # (b, K): plain stratified estimates
        log_m2 = logsumexp(2 * ll_b, axis=2) - math.log(n_pilot)  # log mean of squared draws
        count = jnp.full((b, k_all), float(n_pilot), xb.dtype)
        score = pj["logw"] + logsumexp(ll_a, axis=2)
        if has_centres:  # the settled latent's component is searched first
            k_c = jnp.argmax(_component_logpdf(mb, pj) + pj["logw"], axis=1)
            score = score.at[jnp.arange(b), k_c].set(jnp.inf)
        top = jax.lax.top_k(score, n_search)[1]  # (b, n_search)
        best = jnp.argmax(jnp.take_along_axis(ll_a, top[:, :, None], axis=1), axis=2)
        u0 = u_a[top, best]  # (b, n_search, d)
        lj = jax.vmap(jax.vmap(log_joint, (0, 0, None)), (0, 0, 0))
        if has_centres:  # the whitened settled latent competes with the best pilot draw
            u_c = jnp.einsum("bi,bij->bj", mb - pj["means"][top[:, 0]], pj["prec_chol"][top[:, 0]])
            u_c = jnp.where(jnp.all(jnp.isfinite(u_c), axis=1, keepdims=True), u_c, u0[:, 0])
            pick = lj(u_c[:, None], top[:, :1], xb)[:, 0] > lj(u0[:, :1], top[:, :1], xb)[:, 0]
            u0 = u0.at[:, 0].set(jnp.where(pick[:, None], u_c, u0[:, 0]))
        # mode search, all images and components at once
        grad = jax.vmap(jax.vmap(jax.grad(log_joint), (0, 0, None)), (0, 0, 0))
        u = _climb(lambda u: grad(u, top, xb), u0, optax.adam(refine_lr), refine_steps)
        mode = jnp.where((lj(u, top, xb) >= lj(u0, top, xb))[..., None], u, u0)

        def sample_one(args):  # one image: Laplace proposals of its searched components, IS draws
            xi, modes, ks, key = args

            def one(mode, k, key):
                f = lambda u: project((pj["means"][k] + pj["chol"][k] @ u)[None])[0]
                jac, p = jax.jacfwd(f)(mode), f(mode)
                h = jnp.eye(d, dtype=xb.dtype) + (jac.T * (1.0 / (p * (1 - p)))) @ jac
                r = linalg.cholesky(0.5 * (h + h.T))  # h = r r^T
                r_inv = linalg.inverse_lower(r)
                ok = jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(r_inv))
                eye = jnp.eye(d, dtype=xb.dtype)
                r, r_inv = jnp.where(ok, r, eye), jnp.where(ok, r_inv, eye)  # fallback: N(mode, I)
                eps = jax.random.normal(key, (n_samples, d), xb.dtype)
                u = jnp.concatenate([eps[:n_def], mode + eps[n_def:] @ r_inv])  # r^{-T} eps as rows
                log_n0 = -0.5 * jnp.sum(u * u, axis=1)
                y = (u - mode) @ r
                log_lap = -0.5 * jnp.sum(y * y, axis=1) + jnp.sum(jnp.log(jnp.diagonal(r)))
                log_q = jnp.logaddexp(log_fd + log_n0, log_fl + log_lap)  # both without the 2 pi term
                s = pj["means"][k] + u @ pj["chol"][k].T
                pu = project(s)
                ll = jnp.log(pu) @ xi + jnp.log1p(-pu) @ (1 - xi)
                logw = log_n0 + ll - log_q
                return logsumexp(logw) - math.log(n_samples), logsumexp(2 * logw) - math.log(n_samples)

            return jax.vmap(one)(modes, ks, jax.random.split(key, n_search))

        sub = next(n for n in range(min(sub_batch, b), 0, -1) if b % n == 0)
        keys = jax.random.split(kl, b)
        li, lm2 = jax.lax.map(
            lambda a: jax.vmap(sample_one)(a),
            (
                xb.reshape(b // sub, sub, -1),
                mode.reshape(b // sub, sub, n_search, d),
                top.reshape(b // sub, sub, n_search),
                keys.reshape(b // sub, sub),
            ),
        )
        rows = jnp.arange(b)[:, None]
        log_i = log_i.at[rows, top].set(li.reshape(b, n_search))
        log_m2 = log_m2.at[rows, top].set(lm2.reshape(b, n_search))
        count = count.at[rows, top].set(float(n_samples))
        log_px = logsumexp(pj["logw"] + log_i, axis=1)
        # Var(p_hat) = sum_k weight_k^2 (m2_k - I_k^2) / n_k; sum c^2 = sum_k weight_k^2 m2_k / n_k
        log_c2 = logsumexp(2 * pj["logw"] + log_m2 - jnp.log(count), axis=1)
        log_i2 = logsumexp(2 * pj["logw"] + 2 * log_i - jnp.log(count), axis=1)
        rel_var = jnp.maximum(jnp.exp(log_c2 - 2 * log_px) - jnp.exp(log_i2 - 2 * log_px), 0.0)
        ess = jnp.exp(2 * log_px - log_c2)
        return log_px, jnp.sqrt(rel_var), ess

    log_px, se, ess = _map_batches(jax.jit(run), params, prior, x, batch_size, seed, centres)
    total = (k_all - n_search) * n_pilot + n_search * n_samples
    return LogLikelihoodEstimate(
        np.asarray(log_px, np.float64), np.asarray(se, np.float64), np.asarray(ess, np.float64), total
    )
