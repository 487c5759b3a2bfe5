"""The one trainer: a rule's update, an optax step on the learned parameters, the model's constraints.

:func:`make_trainer` builds the jitted training step of any model family from a learning rule
(an init/update pair, :class:`predcode.core.Rule`) and an optax optimizer:

==================  ========================  ==============================================
model               default rule              batch
==================  ========================  ==============================================
``GNCN``            :class:`Hebbian`          ``(x, weights)``
``PCNetwork``       :class:`EnergyGradient`   ``(clamps, masks)``
``MLP``             (required: ``BackProp()``,  ``(x, y)``
                    ``FeedbackAlignment`` ...)
==================  ========================  ==============================================

Every family's step is the same function, :func:`training_step`: ``grads, rule_state =
rule.update(model, params, rule_state, *batch)``, then the optimizer on the parameters the rule
returned gradients for, then ``model.apply_constraints`` where the model has constraints. What is
reported per step differs by family (the museum's total discrepancy and BCE, a network's energy,
an MLP's loss), so :func:`make_trainer` wraps the step in the family's familiar trainer object
(:class:`~predcode.learning.step.GNCNTrainer`, :class:`~predcode.learning.pc.PCTrainer`,
:class:`~predcode.learning.streaming.RuleTrainer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import optax

from predcode.core import SettleResult
from predcode.dynamics.settle import check_unroll, infer
from predcode.dynamics.solvers import as_solver
from predcode.schema import MAX_STEPS, check_int

Array = jax.Array

__all__ = ["EnergyGradient", "Hebbian", "make_trainer", "training_step", "update_with_info", "weight_gradient"]


def update_with_info(rule: Any, model: Any, params: Any, state: Any, *batch: Any) -> tuple[Any, Any, Any]:
    """``(grads, state, info)``: the rule's ``update_with_info`` if it has one, else ``update`` and no info.

    ``info`` is what the rule computed on the way that a trainer reports (the museum's settle, a
    network's inference energies); a rule that has nothing to report needs only ``update``.
    """
    with_info = getattr(rule, "update_with_info", None)
    if with_info is not None:
        return with_info(model, params, state, *batch)
    grads, state = rule.update(model, params, state, *batch)
    return grads, state, None


def training_step(
    model: Any, rule: Any, optimizer: optax.GradientTransformation, *, constrain: bool = True
) -> Callable[..., tuple[Any, Any, Any, Any]]:
    """The step every trainer jits: ``(params, rule_state, opt_state, *batch) -> (params, rule_state,
    opt_state, info)``.

    The optimizer sees only the parameters the rule returned gradients for (a dict rule over a
    dict of parameters: the museum's learned arrays, not its fixed precisions and lateral
    matrices); the model's ``apply_constraints`` (if any) runs on the updated parameters unless
    ``constrain`` is False (a caller that compiles the constraints as a program of their own).
    """
    constraints = getattr(model, "apply_constraints", None) if constrain else None
    # A rule with ``interleaved(model, params, state, opt_state, optimizer, *batch) -> (params, state,
    # opt_state, info)`` applies the optimizer within its own update (incremental PC steps the weights
    # at every inference step); every other rule returns one gradient the step applies here.
    interleaved = getattr(rule, "interleaved", None)

    def step(params, rule_state, opt_state, *batch):
        if interleaved is not None:
            params, rule_state, opt_state, info = interleaved(model, params, rule_state, opt_state, optimizer, *batch)
            return (constraints(params) if constraints is not None else params), rule_state, opt_state, info
        grads, rule_state, info = update_with_info(rule, model, params, rule_state, *batch)
        if isinstance(params, Mapping) and isinstance(grads, Mapping) and set(grads) != set(params):
            sub = {k: params[k] for k in grads}
            updates, opt_state = optimizer.update(grads, opt_state, sub)
            params = {**params, **optax.apply_updates(sub, updates)}
        else:
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        if constraints is not None:
            params = constraints(params)
        return params, rule_state, opt_state, info

    return step


@dataclass(frozen=True)
class Hebbian:
    """The museum's learning rule: settle, then the local Hebbian updates of ``GNCN.calc_updates``.

    ``W_l`` (and ``M_l``) follow ``phi(z_l)^T e~_{l-1}``, the learned feedback ``E_l`` the same update
    transposed, ``Sigma_l`` the legacy covariance rule (or the Gaussian NLL gradient); returned
    negated, as the gradient an optax optimizer descends. ``solver`` (default: the config's) settles
    the states. The batch is ``(x, weights)``.
    """

    solver: Any = None

    def init(self, model: Any, params: Any) -> tuple:
        """No state."""
        return ()

    def learned_names(self, model: Any) -> tuple[str, ...]:
        """The arrays this rule updates: the model's learnable arrays."""
        return tuple(model.learnable_names())

    def update_with_info(self, model: Any, params: Any, state: Any, x: Array, weights: Array | None = None):
        """``(grads, state, settle result)`` for the batch ``x`` (rows weighted by ``weights``)."""
        result: SettleResult = model.settle(params, x, weights=weights, solver=self.solver)
        return model.calc_updates(params, result, weights), state, result

    def update(self, model: Any, params: Any, state: Any, x: Array, weights: Array | None = None):
        """``(grads, state)``."""
        grads, state, _ = self.update_with_info(model, params, state, x, weights)
        return grads, state


def weight_gradient(
    network: Any, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None
) -> tuple[Array, dict]:
    """Mean energy per sample at fixed ``states`` and its gradient with respect to ``params``.

    This is the PC weight update direction (negated): with states at equilibrium and T large it
    approaches the backprop gradient of the output loss (Whittington & Bogacz 2017).
    """
    states = jax.lax.stop_gradient(dict(states))
    batch = next(iter(states.values())).shape[0]
    return jax.value_and_grad(lambda p: network.energy(p, states, masks) / batch)(params)


@dataclass(frozen=True, eq=False)
class EnergyGradient:
    """Predictive coding on a general network: settle the free states ``T`` steps, then descend the
    energy's batch mean in the parameters (weights and learnable covariances) at the settled states.

    ``solver`` is the state solver: any solver or optax optimizer (default ``optax.sgd(0.1)``, the
    seeds' ``optimizer_x``). ``unroll``: state steps per iteration of the compiled settling loop
    (:func:`~predcode.dynamics.settle`; ``T`` unrolls it all, about twice as fast for a conv net on
    CPU). The batch is ``(clamps, masks=None, init=None)``; ``info`` is ``(energy trace (T + 1,),
    mean energy per sample before the update, status)``.
    """

    T: int = 20
    solver: Any = None
    unroll: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "T", check_int("T", self.T, 0, MAX_STEPS, "inference steps per batch"))
        object.__setattr__(self, "solver", as_solver(optax.sgd(0.1) if self.solver is None else self.solver))
        object.__setattr__(self, "unroll", check_unroll(self.unroll))

    def init(self, model: Any, params: Any) -> tuple:
        """No state: the free states live only within one update."""
        return ()

    def infer(self, model: Any, params: Any, clamps: Any, masks: Any = None, init: Any = None, *, T: int | None = None):
        """The inference of one update (``T`` defaults to the rule's)."""
        T = self.T if T is None else T
        return infer(model, params, clamps, T=T, optimizer=self.solver, init=init, masks=masks, unroll=self.unroll)

    def update_with_info(self, model: Any, params: Any, state: Any, clamps: Any, masks: Any = None, init: Any = None):
        """``(grads, state, (energy_trace, energy, status))``."""
        result = self.infer(model, params, clamps, masks, init)
        energy, grads = weight_gradient(model, params, result.states, masks)
        return grads, state, (result.energy, energy, result.status)

    def update(self, model: Any, params: Any, state: Any, clamps: Any, masks: Any = None, init: Any = None):
        """``(grads, state)``."""
        grads, state, _ = self.update_with_info(model, params, state, clamps, masks, init)
        return grads, state


def make_trainer(
    model: Any,
    optimizer: optax.GradientTransformation | None = None,
    *,
    rule: Any = None,
    solver: Any = None,
    T: int | None = None,
) -> Any:
    """The jitted trainer of ``model`` under ``rule`` and ``optimizer``, for any model family.

    Args:
        model: a :class:`~predcode.models.GNCN`, :class:`~predcode.models.PCNetwork` or
            :class:`~predcode.models.MLP` (or any model a ``rule`` serves).
        optimizer: the parameter optimizer; default: legacy Adam (Keras form, lr 1e-3) for the
            museum, ``optax.adam(1e-3)`` for a network. Required for an MLP.
        rule: the learning rule; default :class:`Hebbian` for the museum and
            :class:`EnergyGradient` for a network. Required for an MLP.
        solver: the state solver of the default rule (a solver or an optax optimizer).
        T: inference steps of the network's default rule (default 20).

    Returns the family's trainer: a ``GNCNTrainer`` (``step(params, opt_state, x, weights)``), a
    ``PCTrainer`` (``step(params, opt_state, clamps)``) or a ``RuleTrainer`` (``step(params,
    rule_state, opt_state, x, y)``), each built on :func:`training_step`.
    """
    from predcode.learning.pc import PCTrainer
    from predcode.learning.step import make_gncn_trainer
    from predcode.learning.streaming import make_rule_trainer
    from predcode.models.gncn import GNCN
    from predcode.models.network import PCNetwork

    if isinstance(model, GNCN):
        if T is not None:
            raise ValueError("T: a museum model settles for its config's K steps; set GNCNConfig(K=...) instead")
        return make_gncn_trainer(model, optimizer, rule=rule if rule is not None else Hebbian(solver))
    if isinstance(model, PCNetwork):
        if rule is not None and (solver is not None or T is not None):
            raise ValueError("solver, T: give them to the rule (EnergyGradient(T=..., solver=...)), not beside it")
        return PCTrainer(model, optimizer_p=optimizer, rule=rule, optimizer_x=solver, T=20 if T is None else T)
    if rule is None or optimizer is None:
        raise TypeError(
            f"rule, optimizer: a {type(model).__name__} needs both, e.g. make_trainer(mlp, optax.sgd(0.1), "
            "rule=BackProp())"
        )
    return make_rule_trainer(model, rule, optimizer)
