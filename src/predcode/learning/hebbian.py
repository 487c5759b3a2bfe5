"""Hebbian (two-factor) weight updates: pre-synaptic activity times post-synaptic error."""

from __future__ import annotations

import jax

Array = jax.Array


def hebbian(pre: Array, post: Array, weights: Array | None = None) -> Array:
    """Batch-averaged outer product ``pre^T post / B``: (batch, n_pre), (batch, n_post) -> (n_pre, n_post).

    ``weights`` (batch,) down-weights samples (0 for padding rows); the average is then over their sum.
    This is an *ascent* direction on the negative energy; pass its negative to an optax optimizer.
    """
    if weights is None:
        return pre.T @ post / pre.shape[0]
    return pre.T @ (post * weights[:, None]) / weights.sum()
