"""Incremental predictive coding (iPC, Salvatori et al. 2024): the weights move at every inference step.

Plain PC infers the free states for ``T`` steps with the weights fixed, then takes one weight step.
iPC interleaves them: at each of the ``T`` steps the energy's gradients with respect to the states
(summed over the batch, so each sample gets its own) and to the parameters (the batch mean) are
taken at the same point, then the state solver moves the states and the weight optimizer the
parameters, both from those gradients. A batch thus costs ``T`` weight steps.

The rule plugs into :func:`predcode.learning.trainer.training_step` through ``interleaved``: it
applies the optimizer itself, since its updates cannot be one gradient handed back at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from predcode.dynamics.settle import STATUS_DIVERGED, STATUS_OK
from predcode.learning.trainer import EnergyGradient

__all__ = ["Incremental"]


@dataclass(frozen=True, eq=False)
class Incremental:
    """iPC on a :class:`~predcode.models.network.PCNetwork`: ``T`` steps, each one state step (``solver``,
    default ``optax.sgd(0.1)``) and one weight step (the trainer's optimizer), from the gradients of
    the energy at the same states and weights.

    The batch is ``(clamps, masks=None, init=None)``; the free states start from a feedforward sweep.
    ``info`` is ``(energy trace (T + 1,), mean energy per sample at the end, status)``.
    """

    T: int = 20
    solver: Any = None
    unroll: int = 1

    def __post_init__(self) -> None:
        inner = EnergyGradient(self.T, self.solver, self.unroll)  # checks T and unroll, makes the solver
        object.__setattr__(self, "solver", inner.solver)
        object.__setattr__(self, "unroll", inner.unroll)

    def init(self, model: Any, params: Any) -> tuple:
        """No state."""
        return ()

    def infer(self, model: Any, params: Any, clamps: Any, masks: Any = None, init: Any = None, *, T: int | None = None):
        """Inference alone (weights fixed), as evaluation uses it."""
        return EnergyGradient(self.T, self.solver, self.unroll).infer(model, params, clamps, masks, init, T=T)

    def interleaved(
        self,
        model: Any,
        params: Any,
        state: Any,
        opt_state: Any,
        optimizer: optax.GradientTransformation,
        clamps: Any,
        masks: Any = None,
        init: Any = None,
    ):
        """``(params, state, opt_state, (energy_trace, energy, status))`` after the ``T`` interleaved steps."""
        fixed = {k: jnp.asarray(v) for k, v in dict(clamps).items()}
        free = model.init_states(params, (fixed, masks), init=init)
        batch = next(iter(fixed.values())).shape[0]
        solver = self.solver

        def total(p, z):
            return model.energy(p, {**fixed, **z}, masks)

        def body(carry, _):
            p, z, aux, opt = carry
            energy, (gp, gz) = jax.value_and_grad(total, argnums=(0, 1))(p, z)
            field = lambda y: jax.tree.map(jnp.negative, jax.grad(total, argnums=1)(p, y))
            z, aux = solver.advance(z, aux, jax.tree.map(jnp.negative, gz), field)
            updates, opt = optimizer.update(jax.tree.map(lambda g: g / batch, gp), opt, p)
            return (optax.apply_updates(p, updates), z, aux, opt), energy

        (params, free, _, opt_state), trace = jax.lax.scan(
            body,
            (params, free, solver.init(free), opt_state),
            None,
            length=self.T,
            unroll=min(self.unroll, max(self.T, 1)),
        )
        last = total(params, free)
        trace = jnp.append(trace, last)
        status = jnp.where(jnp.all(jnp.isfinite(trace)), STATUS_OK, STATUS_DIVERGED).astype(jnp.int32)
        return params, state, opt_state, (trace, last / batch, status)
