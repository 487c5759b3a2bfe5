"""Weight constraints applied after every optimizer step."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def clip_column_norms(w: Array, max_norm: float = 1.0) -> Array:
    """Clip the weight vector arriving at each receiving unit (each column of an (n_from, n_to) matrix)
    to L2 norm ``<= max_norm``; columns already inside the ball are unchanged (TF ``clip_by_norm`` on axis 0)."""
    norm = jnp.sqrt(jnp.sum(w * w, axis=0, keepdims=True))
    return w * (max_norm / jnp.maximum(norm, max_norm))
