"""Error cells: the local mismatch signals and energies of predictive coding (as in ngc-learn 3.x).

Each cell compares a ``target`` with a prediction ``mu`` and returns

* ``e``: the raw mismatch ``target - mu`` (masked),
* ``dmu``: the derivative of the log-likelihood with respect to ``mu`` (the error signal sent to
  the units that made the prediction), scaled by ``modulator`` and ``mask``,
* ``dtarget``: the derivative with respect to ``target``, scaled likewise,
* ``energy``: the negative log-likelihood of each sample, summed over the unmasked units, shape (batch,).

``mask`` (0/1, same shape as ``target``) hides units: they carry no error and no energy. ``modulator``
multiplies the error signals only, as in ngc-learn; it does not change the energy.

A cell is any object with this call (the protocol :class:`predcode.core.ErrorCell`): a general
network differentiates its ``energy``, a museum model sends its ``dmu`` up as the error signal. A
new likelihood is one small frozen dataclass; see ``docs/architecture.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from predcode.core import CellOutput

Array = jax.Array

COVARIANCE_KINDS = ("fixed", "scalar", "diagonal", "full")
CELLS = ("gaussian", "bernoulli", "laplacian")  # the image cells a museum model takes

__all__ = [
    "BernoulliErrorCell",
    "CELLS",
    "CategoricalErrorCell",
    "COVARIANCE_KINDS",
    "CellOutput",
    "GaussianErrorCell",
    "LaplacianErrorCell",
    "ScaledCell",
    "make_cell",
    "whiten",
]


def _mask_and_modulate(e: Array, dmu: Array, mask, modulator) -> tuple[Array, Array]:
    if mask is not None:
        e = e * mask
        dmu = dmu * mask
    if modulator is not None:
        dmu = dmu * modulator
    return e, dmu


def whiten(e: Array, precision_factor: Array) -> Array:
    """Whitened error ``e P`` with ``P = (R^{-1})^T``, ``R = cholesky(Sigma)``: ``(eP)(eP)^T = e Sigma^{-1} e^T``."""
    return e @ precision_factor


@dataclass(frozen=True)
class GaussianErrorCell:
    """Gaussian error cell, ``-log N(target; mu, Sigma)``.

    ``covariance`` says what ``sigma`` is when the cell is called: ``"fixed"`` (a Python float
    variance, the default 1), ``"scalar"`` (a 0-d array variance), ``"diagonal"`` (a (n,) vector of
    variances) or ``"full"`` (an (n, n) positive-definite matrix). The energy is the full Gaussian
    negative log-likelihood ``0.5 e Sigma^{-1} e^T + 0.5 log|Sigma| + n/2 log(2 pi)``, so a learnable
    ``sigma`` gets a correct gradient from ``jax.grad``. ``dmu = e Sigma^{-1}``.

    A full covariance may instead be given by its lower-triangular Cholesky factor ``scale_tril``
    (``Sigma = L L^T``, positive diagonal), which skips the factorization; learnable full
    covariances in :mod:`predcode.models.network` are parametrized this way.
    """

    covariance: str = "fixed"
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.covariance not in COVARIANCE_KINDS:
            raise ValueError(f"covariance: expected one of {COVARIANCE_KINDS}, got {self.covariance!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma: expected a positive variance, got {self.sigma!r}")

    def __call__(
        self, target: Array, mu: Array, *, sigma=None, scale_tril=None, mask=None, modulator=None
    ) -> CellOutput:
        if scale_tril is not None and (self.covariance != "full" or sigma is not None):
            raise ValueError(
                f"scale_tril: expected only for covariance='full' without sigma, got it with "
                f"covariance={self.covariance!r}" + (" and sigma" if sigma is not None else "")
            )
        e = target - mu
        if mask is not None:
            e = e * mask
        n = e.shape[-1] if mask is None else jnp.sum(mask, axis=-1)
        kind = self.covariance
        if kind == "fixed":
            sigma = self.sigma if sigma is None else sigma
            # A unit variance keeps dmu the same array as e (a model then carries one array, not two).
            unit = isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma == 1
            scaled = e if unit else e / sigma
            logdet = n * jnp.log(jnp.asarray(sigma, e.dtype))
        elif sigma is None and scale_tril is None:
            raise ValueError(f"sigma: covariance={kind!r} needs the sigma argument, got None")
        elif kind == "scalar":
            scaled = e / sigma
            logdet = n * jnp.log(sigma)
        elif kind == "diagonal":
            scaled = e / sigma
            logdet = jnp.sum(jnp.log(sigma) * (1 if mask is None else mask), axis=-1)
        else:
            # Full covariance: the mask hides units from the error, not from Sigma's determinant.
            chol = jnp.linalg.cholesky(sigma) if scale_tril is None else scale_tril
            scaled = jax.scipy.linalg.cho_solve((chol, True), e.T).T
            logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        energy = 0.5 * jnp.sum(e * scaled, axis=-1) + 0.5 * logdet + 0.5 * n * math.log(2 * math.pi)
        e, dmu = _mask_and_modulate(e, scaled, mask, modulator)
        return CellOutput(e, dmu, -dmu, energy)


@dataclass(frozen=True)
class LaplacianErrorCell:
    """Laplacian error cell, ``-log Laplace(target; mu, b) = |e| / b + log(2 b)``; ``dmu = sign(e) / b``."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale: expected a positive Laplace scale b, got {self.scale!r}")

    def __call__(self, target: Array, mu: Array, *, mask=None, modulator=None) -> CellOutput:
        e = target - mu
        unit = jnp.abs(e) / self.scale + math.log(2 * self.scale)
        if mask is not None:
            unit = unit * mask
        e, dmu = _mask_and_modulate(e, jnp.sign(e) / self.scale, mask, modulator)
        return CellOutput(e, dmu, -dmu, jnp.sum(unit, axis=-1))


@dataclass(frozen=True)
class BernoulliErrorCell:
    """Bernoulli error cell on probabilities ``mu``: energy is the binary cross-entropy.

    ``dmu = target / p - (1 - target) / (1 - p)``, ``dtarget = log p - log(1 - p)``, with
    ``p = clip(mu, eps, 1 - eps)``. The raw mismatch ``e = target - mu`` is also the log-likelihood's
    derivative with respect to the logit of ``mu``, which is the signal GNCN models send up from a
    sigmoid output.
    """

    eps: float = 1e-7

    def __call__(self, target: Array, mu: Array, *, mask=None, modulator=None) -> CellOutput:
        p = jnp.clip(mu, self.eps, 1 - self.eps)
        unit = -(target * jnp.log(p) + (1 - target) * jnp.log1p(-p))
        if mask is not None:
            unit = unit * mask
        e, dmu = _mask_and_modulate(target - mu, target / p - (1 - target) / (1 - p), mask, modulator)
        _, dtarget = _mask_and_modulate(e, jnp.log(p) - jnp.log1p(-p), mask, modulator)
        return CellOutput(e, dmu, dtarget, jnp.sum(unit, axis=-1))


@dataclass(frozen=True)
class CategoricalErrorCell:
    """Categorical (softmax cross-entropy) cell on logits ``mu``: PCX's PC-CE output energy.

    The energy is the cross-entropy ``-sum_k target_k log softmax(mu)_k`` of a one-hot label (or any
    distribution) ``target``; ``e = target - softmax(mu)``; ``dmu = target - softmax(mu) sum_k target_k``
    (the log-likelihood's gradient in the logits, ``target - p`` for a distribution) and
    ``dtarget = log softmax(mu)``. A ``mask`` hides classes from the sum (the softmax is over all of
    them); ``modulator`` scales ``dmu`` and ``dtarget``.
    """

    def __call__(self, target: Array, mu: Array, *, mask=None, modulator=None) -> CellOutput:
        logp = jax.nn.log_softmax(mu, axis=-1)
        t = target if mask is None else target * mask
        p = jnp.exp(logp)
        e = target - p if mask is None else (target - p) * mask
        dmu = t - p * jnp.sum(t, axis=-1, keepdims=True)
        dtarget = logp if mask is None else logp * mask
        if modulator is not None:
            dmu, dtarget = dmu * modulator, dtarget * modulator
        return CellOutput(e, dmu, dtarget, -jnp.sum(t * logp, axis=-1))


@dataclass(frozen=True)
class ScaledCell:
    """A cell whose energy (and error signals) are multiplied by ``scale``: the nudged output of
    :class:`predcode.learning.nudging.Nudged` (``scale = beta``). The raw mismatch ``e`` is unchanged."""

    cell: object
    scale: float

    def __call__(self, target: Array, mu: Array, *, mask=None, modulator=None) -> CellOutput:
        out = self.cell(target, mu, mask=mask, modulator=modulator)  # type: ignore[operator]
        s = self.scale
        return CellOutput(out.e, s * out.dmu, s * out.dtarget, s * out.energy)


def make_cell(name: str, *, parameter: str = "cell") -> GaussianErrorCell | BernoulliErrorCell | LaplacianErrorCell:
    """The built-in cell called ``name`` (one of :data:`CELLS`) with its default settings, for configs."""
    if name == "gaussian":
        return GaussianErrorCell()
    if name == "bernoulli":
        return BernoulliErrorCell()
    if name == "laplacian":
        return LaplacianErrorCell()
    raise ValueError(f"{parameter}: expected one of {CELLS}, got {name!r}")
