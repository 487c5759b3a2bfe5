"""Activation functions with the derivatives the settling dynamics use."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Activation(NamedTuple):
    """A nonlinearity ``fn`` and its elementwise derivative ``deriv`` (both of the pre-activation)."""

    name: str
    fn: Callable[[Array], Array]
    deriv: Callable[[Array], Array]


def _relu_deriv(z: Array) -> Array:
    # Legacy ngc-learn convention: the derivative is 1 at z = 0. With JAX's 0 at 0 the states of
    # GNCN-t1-Sigma, which start at exactly 0, would never move.
    return (z >= 0).astype(z.dtype)


def _sigmoid_deriv(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


_GELU_C = 0.7978845608028654  # sqrt(2 / pi)


def _gelu_deriv(z: Array) -> Array:
    # d/dz of jax.nn.gelu's tanh form 0.5 z (1 + tanh(c (z + 0.044715 z^3))).
    t = jnp.tanh(_GELU_C * (z + 0.044715 * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * z * z)


def _leaky_relu_deriv(z: Array) -> Array:
    # jax.nn.leaky_relu's default negative slope, 0.01.
    return jnp.where(z >= 0, 1.0, 0.01).astype(z.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", lambda z: z, jnp.ones_like),
    "relu": Activation("relu", jax.nn.relu, _relu_deriv),
    "tanh": Activation("tanh", jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2),
    "sigmoid": Activation("sigmoid", jax.nn.sigmoid, _sigmoid_deriv),
    "softplus": Activation("softplus", jax.nn.softplus, jax.nn.sigmoid),
    # GELU in its tanh form (jax.nn.gelu's default; the activation of PCX's VGG and MLP benchmarks).
    "gelu": Activation("gelu", jax.nn.gelu, _gelu_deriv),
    "leaky_relu": Activation("leaky_relu", jax.nn.leaky_relu, _leaky_relu_deriv),
}


def get_activation(name: str, *, parameter: str = "activation") -> Activation:
    """Look up an activation by name; ``parameter`` names the setting in the error message."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"{parameter}: expected one of {sorted(ACTIVATIONS)}, got {name!r}") from None
