"""Optimizers with the exact arithmetic of the legacy code, as optax gradient transformations."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasAdamState(NamedTuple):
    """State of :func:`keras_adam`: the step count and the first and second moment estimates."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's ScaleByAdamState does
    mu: optax.Updates
    nu: optax.Updates


def keras_adam(
    learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> optax.GradientTransformation:
    """Adam as Keras (and so legacy ngc-learn) computes it.

    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``: the epsilon is added to the
    *uncorrected* ``sqrt(v)``, unlike ``optax.adam``, and the legacy default ``eps`` is 1e-7.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")

    def init(params):
        return KerasAdamState(
            jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params)
        )

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        t = count.astype(jnp.float32)
        lr_t = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: (-lr_t * m / (jnp.sqrt(v) + eps)).astype(m.dtype), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)
