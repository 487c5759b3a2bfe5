"""The PC learning step for general networks: T state steps, then one weight step, in one jit.

As in the Bogacz-lab ``PCTrainer``, states and weights have their own optax optimizers
(``optimizer_x`` and ``optimizer_p``). Both follow the gradient of the one energy
(:meth:`PCNetwork.energy <predcode.models.network.PCNetwork.energy>`): the states its sum over the
batch, the weights (and learnable covariances) its batch mean at the inferred states, which for a
dense layer is the local rule ``dE/dw = -x_parent^T (eps * act'(...))`` of Whittington & Bogacz.

>>> trainer = PCTrainer(net, optimizer_x=optax.sgd(0.1), optimizer_p=optax.adam(1e-3), T=20)
>>> opt_state = trainer.init(params)
>>> params, opt_state, metrics = trainer.step(params, opt_state, {"x": images, "y": onehot})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from predcode.dynamics.inference import infer

Array = jax.Array

__all__ = ["PCStepMetrics", "PCTrainer", "weight_gradient"]


class PCStepMetrics(NamedTuple):
    """Per-step diagnostics: the inference energy trace ``(T + 1,)`` (batch sums), the mean energy per
    sample at the inferred states (before the weight step), and the inference status (0 ok)."""

    energy_trace: Array
    energy: Array
    status: Array


def weight_gradient(
    network, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None
) -> tuple[Array, dict]:
    """Mean energy per sample at fixed ``states`` and its gradient with respect to ``params``.

    This is the PC weight update direction (negated): with states at equilibrium and T large it
    approaches the backprop gradient of the output loss (Whittington & Bogacz 2017).
    """
    states = jax.lax.stop_gradient(dict(states))
    batch = next(iter(states.values())).shape[0]
    return jax.value_and_grad(lambda p: network.energy(p, states, masks) / batch)(params)


class PCTrainer:
    """Trains a :class:`~predcode.models.network.PCNetwork`: ``step`` = ``T`` state steps + 1 weight step.

    Args:
        network: the network.
        optimizer_x: optax optimizer of the states (fresh state every batch); default ``sgd(0.1)``.
        optimizer_p: optax optimizer of the parameters; default ``adam(1e-3)``.
        T: inference steps per batch.

    ``init(params)`` gives the parameter optimizer's state; ``step(params, opt_state, clamps,
    masks=None, init=None)`` (jitted) returns ``(params, opt_state, PCStepMetrics)``; ``infer(params,
    clamps, ...)`` (jitted) runs inference alone, with ``T`` overridable.
    """

    def __init__(
        self,
        network,
        *,
        optimizer_x: optax.GradientTransformation | None = None,
        optimizer_p: optax.GradientTransformation | None = None,
        T: int = 20,
    ):
        if isinstance(T, bool) or not isinstance(T, int) or T < 0:
            raise ValueError(f"T: expected an integer >= 0 (inference steps per batch), got {T!r}")
        self.network = network
        self.optimizer_x = optax.sgd(0.1) if optimizer_x is None else optimizer_x
        self.optimizer_p = optax.adam(1e-3) if optimizer_p is None else optimizer_p
        self.T = T
        self._step = jax.jit(self._step_impl)
        self._infer = jax.jit(self._infer_impl, static_argnames=("T",))

    def init(self, params: Mapping) -> optax.OptState:
        """The parameter optimizer's initial state."""
        return self.optimizer_p.init(params)

    def _infer_impl(self, params, clamps, masks=None, init=None, *, T):
        return infer(self.network, params, clamps, T=T, optimizer=self.optimizer_x, init=init, masks=masks)

    def _step_impl(self, params, opt_state, clamps, masks=None, init=None):
        result = infer(self.network, params, clamps, T=self.T, optimizer=self.optimizer_x, init=init, masks=masks)
        energy, grads = weight_gradient(self.network, params, result.states, masks)
        updates, opt_state = self.optimizer_p.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, PCStepMetrics(result.energy, energy, result.status)

    def step(self, params, opt_state, clamps, masks=None, init=None):
        """One training step on a batch: infer the free states (``T`` steps), then update the weights."""
        self.network.check_clamps(clamps)
        return self._step(params, opt_state, dict(clamps), masks, init)

    def infer(self, params, clamps, masks=None, init=None, *, T: int | None = None):
        """Jitted inference with this trainer's state optimizer (``T`` defaults to the trainer's)."""
        self.network.check_clamps(clamps)
        return self._infer(params, dict(clamps), masks, init, T=self.T if T is None else T)

    def evaluate_energy(self, params, clamps, masks=None) -> Array:
        """Mean energy per sample after inference (no learning)."""
        result = self.infer(params, clamps, masks)
        batch = next(iter(result.states.values())).shape[0]
        return jnp.sum(result.energy[-1]) / batch
