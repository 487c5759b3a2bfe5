"""The museum's trainer: the one training step (:mod:`predcode.learning.trainer`) with its metrics and input checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from predcode.learning.optim import keras_adam
from predcode.learning.trainer import make_trainer, training_step
from predcode.models.gncn import GNCN, Params, bce, total_discrepancy
from predcode.schema import MAX_BATCH, check_int
from predcode.validation import CheckedFunction, check_array, check_batch, check_opt_state

__all__ = ["CheckedFunction", "GNCNTrainer", "StepMetrics", "make_gncn_trainer", "make_trainer", "pad_batch"]

Array = jax.Array


class StepMetrics(NamedTuple):
    """Per-sample means over the real (non-padding) rows of the batch, from the settle before the update."""

    tod: Array
    bce: Array
    status: Array  # 0 ok, 1 non-finite energy, states or updated weights
    finite_states: Array  # (L,) bool, one per latent layer


class TrainerFunction(Protocol):
    """``step`` or ``evaluate`` of a :class:`GNCNTrainer`: callable with checks, ``unchecked`` without."""

    def __call__(self, *args: Any) -> Any: ...

    @property
    def unchecked(self) -> Callable[..., Any]:
        """The compiled function without the input checks."""
        ...


class GNCNTrainer(NamedTuple):
    """Jitted training and evaluation steps of one model and optimizer.

    ``step(params, opt_state, x, weights) -> (params, opt_state, StepMetrics)`` and
    ``evaluate(params, x, weights) -> StepMetrics``. ``weights`` (batch,) is 1 for real rows and
    0 for padding, so the last, short batch of an epoch reuses the compiled step. Both check their
    arrays first (``ValueError`` naming the argument); ``step.unchecked`` skips the checks.
    """

    model: GNCN
    optimizer: optax.GradientTransformation
    init: Callable[[Params], Any]
    step: TrainerFunction
    evaluate: TrainerFunction
    rule: Any = None


def all_finite(params: Params) -> Array:
    """True when every array of ``params`` is finite (a scalar bool array)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in params.values()]))


def gncn_metrics(x: Array, result: Any, weights: Array | None, params: Params | None = None) -> StepMetrics:
    """The museum's step metrics from a settle: ToD, BCE, status (non-finite states or weights), finite layers."""
    finite = jnp.stack([jnp.all(jnp.isfinite(z)) for z in result.states])
    ok = jnp.all(finite) & (result.status == 0)
    if params is not None:
        ok = ok & all_finite(params)
    return StepMetrics(
        total_discrepancy(result.errors, weights),
        bce(x, result.predictions[0], weights),
        (~ok).astype(jnp.int32),
        finite,
    )


def make_gncn_trainer(model: GNCN, optimizer: optax.GradientTransformation | None = None, *, rule: Any) -> GNCNTrainer:
    """The museum's trainer (built by :func:`make_trainer`): the one training step under ``rule``.

    The default optimizer is legacy Adam (Keras form, lr 1e-3, eps 1e-7). ``rule`` must report its
    settle as ``info`` (``update_with_info``), as :class:`~predcode.learning.trainer.Hebbian` does, or
    the step settles once more for its metrics.
    """
    optimizer = keras_adam(1e-3) if optimizer is None else optimizer
    core = training_step(model, rule, optimizer)
    learned = getattr(rule, "learned_names", lambda m: m.learnable_names())(model)

    def step(params, opt_state, x, weights):
        new, _, opt_state, result = core(params, (), opt_state, x, weights)
        if result is None:  # a rule that does not report its settle: settle again for the metrics
            result = model.settle(params, x, weights=weights)
        return new, opt_state, gncn_metrics(x, result, weights, new)

    def evaluate(params, x, weights):
        return gncn_metrics(x, model.settle(params, x, weights=weights, solver=getattr(rule, "solver", None)), weights)

    def init(params):
        return optimizer.init({k: params[k] for k in learned})

    def check_args(params, x, weights):
        # The params' values are not read here (a device-to-host copy per step): a step that makes
        # them non-finite reports it in its status, and settle/train check the values they are given.
        model.check_params(params, values=False)
        model.check_input(x)
        model.check_weights(weights, x)

    return GNCNTrainer(
        model,
        optimizer,
        init,
        CheckedFunction(lambda p, o, x, w: (check_opt_state(o), check_args(p, x, w)), jax.jit(step)),
        CheckedFunction(check_args, jax.jit(evaluate)),
        rule,
    )


def pad_batch(x: Array, batch_size: int) -> tuple[Array, Array]:
    """Pad ``x`` (n <= batch_size rows) with zero rows to ``batch_size``; return it and the 0/1 weights."""
    batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH, "rows of the padded batch")
    x = check_array(x, "x", dtype="any", finite=False)
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of rows (batch, ...), got shape {tuple(x.shape)}")
    n = x.shape[0]
    check_batch(n, "x", fix="A batch needs real rows: skip an empty slice instead of padding it")
    if n > batch_size:
        raise ValueError(f"x: expected at most batch_size={batch_size} rows, got {n}")
    weights = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(batch_size - n, jnp.float32)])
    if n < batch_size:
        x = jnp.concatenate([x, jnp.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
    return x, weights
