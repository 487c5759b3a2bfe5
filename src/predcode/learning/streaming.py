"""Training steps for any credit-assignment rule: one jitted batch step, and online learning under scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from predcode.learning.trainer import training_step
from predcode.models.mlp import MLP, MLPParams
from predcode.validation import CheckedFunction, check_opt_state

Array = jax.Array


class RuleTrainer(NamedTuple):
    """A model, a rule and an optimizer wired together.

    ``init(params) -> (rule_state, opt_state)``;
    ``step(params, rule_state, opt_state, x, y) -> (params, rule_state, opt_state, loss)`` (jitted;
    ``loss`` is the batch loss before the update). ``step`` checks its arguments first
    (``ValueError`` naming the argument: shapes, labels, a missing state); ``step.unchecked`` is the
    compiled step alone.
    """

    model: MLP
    rule: Any
    optimizer: optax.GradientTransformation
    init: Callable
    step: Callable


def make_rule_trainer(model: MLP, rule: Any, optimizer: optax.GradientTransformation) -> RuleTrainer:
    """Build the training step of ``model`` under ``rule`` (BackProp(), FeedbackAlignment(key=...), ...)."""
    if isinstance(rule, optax.GradientTransformation):
        raise TypeError(
            "rule: got an optax optimizer; pass it as optimizer= and a learning rule such as "
            "BackProp() or FeedbackAlignment(key=...) as rule="
        )
    for method in ("init", "update"):
        if not callable(getattr(rule, method, None)):
            raise TypeError(
                f"rule: expected a learning rule with init(model, params) and update(model, params, "
                f"state, x, y), e.g. BackProp(); got {type(rule).__name__}"
            )

    core = training_step(model, rule, optimizer)

    def init(params):
        return rule.init(model, params), optimizer.init(params)

    def step(params, rule_state, opt_state, x, y):
        loss = model.loss_fn(params, x, y)
        params, rule_state, opt_state, _ = core(params, rule_state, opt_state, x, y)
        return params, rule_state, opt_state, loss

    def check(params, rule_state, opt_state, x, y):
        model.check_params(params)
        check_state = getattr(rule, "check_state", None)
        if check_state is not None:
            check_state(model, rule_state, parameter="rule_state")
        check_opt_state(opt_state)
        model.check_data(x, y)

    return RuleTrainer(model, rule, optimizer, init, CheckedFunction(check, jax.jit(step)))


class OnlineResult(NamedTuple):
    """``outputs: (T, n_out)`` is the prediction at each step *before* that step's update."""

    params: MLPParams
    rule_state: Any
    opt_state: Any
    outputs: Array


def online(
    model: MLP,
    rule: Any,
    optimizer: optax.GradientTransformation,
    params: MLPParams,
    xs: Array,
    ys: Array,
    *,
    rule_state: Any = None,
    opt_state: Any = None,
) -> OnlineResult:
    """Learn from a stream: one update after every sample (every time step of a signal).

    ``xs: (T, n_in)``, ``ys: (T, n_out)`` (or ``(T,)`` labels). Step ``t`` predicts ``xs[t]``,
    records the prediction, then updates on that single sample; the loop is one ``lax.scan``, so
    60,000 steps of a small network take seconds. ``rule_state``/``opt_state`` continue an earlier
    stream; by default they are initialised from ``params``.
    """
    model.check_params(params)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    if xs.ndim != 2 or xs.shape[1] != model.sizes[0]:
        raise ValueError(f"xs: expected shape (T, {model.sizes[0]}), got {tuple(xs.shape)}")
    if ys.shape[0] != xs.shape[0]:
        raise ValueError(f"ys: expected {xs.shape[0]} targets (one per sample of xs), got {ys.shape[0]}")
    rule_state = rule.init(model, params) if rule_state is None else rule_state
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    core = training_step(model, rule, optimizer)

    @jax.jit
    def run(params, rule_state, opt_state, xs, ys):
        def body(carry, sample):
            params, rule_state, opt_state = carry
            x, y = sample[0][None], sample[1][None]
            out = model.apply(params, x)[0]
            return core(params, rule_state, opt_state, x, y)[:3], out

        (params, rule_state, opt_state), outs = jax.lax.scan(body, (params, rule_state, opt_state), (xs, ys))
        return params, rule_state, opt_state, outs

    return OnlineResult(*run(params, rule_state, opt_state, xs, ys))
