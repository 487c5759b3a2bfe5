"""Inference in a general PC network: T optimizer steps of the free states down the energy gradient.

The free states (every node not clamped) move by any optax optimizer on ``dE/dx``, the gradient of
:meth:`PCNetwork.energy <predcode.models.network.PCNetwork.energy>`; with ``optax.sgd(dt)`` this is
the Euler solve of ``dx/dt = -dE/dx``. The loop is one ``lax.scan``, so T costs no compile time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

__all__ = ["InferenceResult", "infer", "state_gradient"]


class InferenceResult(NamedTuple):
    """Inferred ``states`` (all nodes, clamps included) and the total energy before each step and
    after the last: ``energy: (T + 1,)``. ``status`` is 0, or 1 if the energy became non-finite."""

    states: dict[str, Array]
    energy: Array
    status: Array


def state_gradient(
    network,
    params: Mapping,
    states: Mapping[str, Array],
    free: tuple[str, ...],
    masks: Mapping[str, Array] | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Total energy and its gradient with respect to the ``free`` states only."""
    fixed = {k: v for k, v in states.items() if k not in free}

    def energy_of(free_states):
        return network.energy(params, {**fixed, **free_states}, masks)

    return jax.value_and_grad(energy_of)({k: states[k] for k in free})


def infer(
    network,
    params: Mapping,
    clamps: Mapping[str, Array],
    *,
    T: int,
    optimizer: optax.GradientTransformation | None = None,
    init: Mapping[str, Array] | None = None,
    masks: Mapping[str, Array] | None = None,
) -> InferenceResult:
    """Infer the free states of ``network`` given ``clamps``: ``T`` steps of ``optimizer`` on ``dE/dx``.

    Args:
        network: a :class:`predcode.models.network.PCNetwork`.
        params: its parameters.
        clamps: ``{node: (batch, dim)}`` data held fixed.
        T: number of state steps (0 returns the initial states).
        optimizer: the state optimizer (the seed's ``optimizer_x``); default ``optax.sgd(0.1)``.
            Its state starts fresh for every call.
        init: initial values of free states; the rest start from a feedforward sweep
            (:meth:`PCNetwork.forward`), free roots at zero.
        masks: ``{node: 0/1 mask}`` hiding units from their cell's error and energy.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 0:
        raise ValueError(f"T: expected an integer >= 0 (inference steps), got {T!r}")
    optimizer = optax.sgd(0.1) if optimizer is None else optimizer
    for name in init or {}:
        network.node(name)
    states = network.forward(params, clamps, init)
    free = tuple(n for n in network.names if n not in clamps)
    fixed = {k: v for k, v in states.items() if k not in free}
    x = {k: states[k] for k in free}
    opt_state = optimizer.init(x)

    def step(carry, _):
        x, opt_state = carry
        e, g = state_gradient(network, params, {**fixed, **x}, free, masks)
        updates, opt_state = optimizer.update(g, opt_state, x)
        return (optax.apply_updates(x, updates), opt_state), e

    (x, _), trace = jax.lax.scan(step, (x, opt_state), None, length=T)
    final = network.energy(params, {**fixed, **x}, masks)
    trace = jnp.concatenate([trace, final[None]])
    status = jnp.where(jnp.all(jnp.isfinite(trace)), 0, 1)
    return InferenceResult({**fixed, **x}, trace, status)
