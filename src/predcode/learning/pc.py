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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from predcode.learning.trainer import EnergyGradient, training_step, weight_gradient
from predcode.validation import check_opt_state

Array = jax.Array

__all__ = ["PCStepMetrics", "PCTrainer", "weight_gradient"]


class PCStepMetrics(NamedTuple):
    """Per-step diagnostics: the inference energy trace ``(T + 1,)`` (batch sums), the mean energy per
    sample at the inferred states (before the weight step), and the inference status (0 ok)."""

    energy_trace: Array
    energy: Array
    status: Array


class PCTrainer:
    """Trains a :class:`~predcode.models.network.PCNetwork`: ``step`` = ``T`` state steps + 1 weight step.

    The step is :func:`predcode.learning.trainer.training_step` under the rule
    :class:`~predcode.learning.trainer.EnergyGradient` (or ``rule``).

    Args:
        network: the network.
        optimizer_x: the state solver, fresh every batch: an optax optimizer (default ``sgd(0.1)``)
            or any solver (``Euler(0.1)``, ``Heun(0.05)``, your own :class:`AbstractSolver`).
        optimizer_p: optax optimizer of the parameters; default ``adam(1e-3)``.
        T: inference steps per batch.
        rule: a learning rule over the network instead (``optimizer_x``, ``T`` and ``unroll`` then unused).
        unroll: state steps per iteration of the compiled settling loop (``T``: all of them; about
            twice as fast for a convolutional network on CPU, ``results/conv_pc.md``).

    ``init(params)`` gives the parameter optimizer's state; ``step(params, opt_state, clamps,
    masks=None, init=None)`` (jitted) returns ``(params, opt_state, PCStepMetrics)``; ``infer(params,
    clamps, ...)`` (jitted) runs inference alone, with ``T`` overridable.
    """

    def __init__(
        self,
        network,
        *,
        optimizer_x: Any = None,
        optimizer_p: optax.GradientTransformation | None = None,
        T: int = 20,
        rule: Any = None,
        unroll: int = 1,
    ):
        self.network = network
        self.rule = EnergyGradient(T, optimizer_x, unroll) if rule is None else rule
        self.optimizer_x = getattr(self.rule, "solver", None)
        self.optimizer_p = optax.adam(1e-3) if optimizer_p is None else optimizer_p
        self.T = getattr(self.rule, "T", T)
        self.unroll = getattr(self.rule, "unroll", unroll)
        self._core = training_step(network, self.rule, self.optimizer_p)
        self.rule_state: Any = None
        self._step = jax.jit(self._step_impl)
        self._infer = jax.jit(self._infer_impl, static_argnames=("T",))
        # Trials: parameters, optimizer states and batches stacked on a leading axis, the rule's
        # state (e.g. FA's fixed matrices) shared.
        self._trials_step = jax.jit(jax.vmap(self._step_impl, in_axes=(0, None, 0, 0), out_axes=(0, None, 0, 0)))
        self._data_parallel: Any = None

    def init(self, params: Mapping) -> optax.OptState:
        """The parameter optimizer's initial state (the rule's state, e.g. FA's fixed feedback
        matrices, is drawn here too and kept by the trainer)."""
        self.rule_state = self.rule.init(self.network, params)
        return self.optimizer_p.init(params)

    def _infer_impl(self, params, clamps, masks=None, init=None, *, T):
        return EnergyGradient(T, self.optimizer_x, self.unroll).infer(self.network, params, clamps, masks, init)

    def _step_impl(self, params, rule_state, opt_state, clamps, masks=None, init=None):
        new, rule_state, opt_state, info = self._core(params, rule_state, opt_state, clamps, masks, init)
        if info is None:  # a rule that does not report its inference: infer again for the metrics
            info = EnergyGradient(self.T, self.optimizer_x, self.unroll).update_with_info(
                self.network, params, (), clamps, masks, init
            )[2]
        return new, rule_state, opt_state, PCStepMetrics(*info)

    def step(self, params, opt_state, clamps, masks=None, init=None):
        """One training step on a batch: infer the free states (``T`` steps), then update the weights."""
        check_opt_state(opt_state)
        self.network.check_clamps(clamps)
        params, self.rule_state, opt_state, metrics = self._step(
            params, self._state_for(params), opt_state, dict(clamps), masks, init
        )
        return params, opt_state, metrics

    def _state_for(self, params) -> Any:
        """The rule's state, drawn from ``params`` (one trial's) if :meth:`init` was not called."""
        if self.rule_state is None:
            self.rule_state = self.rule.init(self.network, params)
        return self.rule_state

    def trials_step(self, params, opt_state, clamps):
        """One step of several trials at once, vmapped: ``params``, ``opt_state`` and every clamp carry
        a leading trial axis (``clamps[name]: (trials, batch, dim)``); returns the stacked results."""
        state = self._state_for(jax.tree.map(lambda a: a[0], params))
        params, self.rule_state, opt_state, metrics = self._trials_step(params, state, opt_state, clamps)
        return params, opt_state, metrics

    def data_parallel_step(self, params, opt_state, clamps, mesh=None):
        """:meth:`step` with the batch's rows split over the devices of ``mesh`` (default: all devices);
        parameters and optimizer state replicated. The batch size must be a multiple of the devices."""
        from predcode.learning.parallel import sharded

        if self._data_parallel is None:
            self._data_parallel = sharded(self._step_impl, mesh, n_replicated=3, n_rows=1)
        params, self.rule_state, opt_state, metrics = self._data_parallel(
            params, self._state_for(params), opt_state, dict(clamps)
        )
        return params, opt_state, metrics

    def infer(self, params, clamps, masks=None, init=None, *, T: int | None = None):
        """Jitted inference with this trainer's state optimizer (``T`` defaults to the trainer's)."""
        self.network.check_clamps(clamps)
        return self._infer(params, dict(clamps), masks, init, T=self.T if T is None else T)

    def evaluate_energy(self, params, clamps, masks=None) -> Array:
        """Mean energy per sample after inference (no learning)."""
        result = self.infer(params, clamps, masks)
        batch = next(iter(result.states.values())).shape[0]
        return jnp.sum(result.energy[-1]) / batch
