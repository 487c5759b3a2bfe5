"""Error messages from a clamped, linearly predicted layer without forming its error (the Gram form).

A clamped node ``x`` (an image, ``B x n``) predicted linearly from the activity ``a`` (``B x m``) of
the layer above, ``mu = a W``, with a Gaussian error of precision ``P`` (identity by default), sends
the layer above the message ``(x - a W) P W^T`` on every settling step, the minus gradient of its
energy ``0.5 (x - a W) P (x - a W)^T``. Since ``x`` does not move while the states settle,

    (x - a W) P W^T = x P W^T - a (W P W^T)

so the two ``m x n`` matrix products of each step (the prediction and the message) become one
``m x m`` product with the Gram matrix ``G = W P W^T``, after ``x P W^T`` and ``G`` are computed
once per settle. For the usual bottom layer (``n = 784`` pixels under ``m = 360`` units) this cuts
the layer's per-step cost by a factor ``2 n / m`` = 4.4, and the whole step of the 784-360-360-360
benchmark network by 1.67 (``results/peers.md``). The energy comes along from quantities already
computed: ``e P e^T = x P x^T - a . (x P W^T) - a . message``.

The identity is exact; in float32 the message differs from the direct form by rounding only (the
energy subtracts terms of size ``|x|^2``, so its absolute rounding error is ``eps |x|^2``). It
applies only when the prediction of the clamped node is linear in ``a`` (identity output
activation) and its error Gaussian: the museum's GNCN models predict the image through a sigmoid
and so settle in the direct form. After settling, form the error once (:meth:`LinearClamped.error`)
for the weight update.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["LinearClamped"]


class LinearClamped(NamedTuple):
    """A clamped node ``x`` predicted as ``a W``: Gram-form messages and energies (module docstring).

    Build it once per settle with :meth:`build`; ``x``, ``w`` and ``precision`` are kept for
    :meth:`error`. ``xpwt = x P W^T`` (B, m), ``gram = W P W^T`` (m, m), ``xpx`` (B,) the rows'
    ``x P x^T``.
    """

    x: Array
    w: Array
    precision: Array | None
    xpwt: Array
    gram: Array
    xpx: Array

    @classmethod
    def build(cls, x: Array, w: Array, precision: Array | None = None) -> LinearClamped:
        """Precompute ``x P W^T``, ``W P W^T`` and ``x P x^T`` for ``x`` (B, n), ``w`` (m, n), ``P`` (n, n)."""
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(
                f"x, w: expected x (batch, n) and w (m, n) with the same n, got x {tuple(x.shape)} "
                f"and w {tuple(w.shape)}"
            )
        n = w.shape[1]
        if precision is not None and tuple(precision.shape) != (n, n):
            raise ValueError(f"precision: expected shape ({n}, {n}), got {tuple(precision.shape)}")
        xp = x if precision is None else x @ precision
        wp = w if precision is None else w @ precision
        return cls(x, w, precision, xp @ w.T, wp @ w.T, jnp.sum(xp * x, axis=1))

    def message(self, a: Array) -> Array:
        """``(x - a W) P W^T`` (B, m): the message to the layer above, ``-d energy / d a``."""
        return self.xpwt - a @ self.gram

    def sq_error(self, a: Array, message: Array | None = None) -> Array:
        """``e P e^T`` of each row (B,), ``e = x - a W``; pass ``message(a)`` to reuse it."""
        if message is None:
            message = self.message(a)
        return self.xpx - jnp.sum(a * (self.xpwt + message), axis=1)

    def energy(self, a: Array, message: Array | None = None) -> Array:
        """The batch-summed Gaussian energy ``0.5 sum_rows e P e^T``."""
        return 0.5 * jnp.sum(self.sq_error(a, message))

    def error(self, a: Array) -> Array:
        """The error ``e = x - a W`` itself (B, n), formed once after settling for the weight update."""
        return self.x - a @ self.w
