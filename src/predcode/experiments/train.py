"""The training loop: shuffled mini-batches, validation after each epoch, best model, early stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.learning.step import GNCNTrainer, make_trainer, pad_batch
from predcode.models.gncn import GNCN, Params


@dataclass
class EpochRecord:
    """Per-sample means of one epoch: BCE (nats/image) and total discrepancy, train and validation."""

    epoch: int
    train_bce: float
    train_tod: float
    val_bce: float
    val_tod: float
    seconds: float


@dataclass
class TrainResult:
    best_params: Params
    last_params: Params
    best_epoch: int  # 0 = the untrained model was never beaten
    best_val_bce: float
    initial: EpochRecord
    history: list[EpochRecord] = field(default_factory=list)


def _batches(n: int, batch_size: int, order: np.ndarray | None = None):
    idx = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield idx[start:start + batch_size]


def evaluate(trainer: GNCNTrainer, params: Params, x: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Settle every row of ``x`` (no learning); return per-sample mean ``(bce, tod)`` over all rows."""
    total_bce = total_tod = 0.0
    for rows in _batches(len(x), batch_size):
        xb, w = pad_batch(jnp.asarray(x[rows]), batch_size)
        m = trainer.evaluate(params, xb, w)
        total_bce += float(m.bce) * len(rows)
        total_tod += float(m.tod) * len(rows)
    return total_bce / len(x), total_tod / len(x)


def train(
    model: GNCN,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    params: Params | None = None,
    optimizer: optax.GradientTransformation | None = None,
    patience: int | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``x_train`` (n, x_dim) in {0, 1}; keep the parameters of the best validation BCE.

    As in ngc-learn's walkthrough the best model starts as the untrained one and is replaced
    whenever validation BCE improves; training stops after ``patience`` epochs without improvement.
    The last, short batch of an epoch is padded and weighted out, so it reuses the compiled step.
    """
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience: expected an integer >= 1 or None, got {patience!r}")
    trainer = make_trainer(model, optimizer)
    params = model.init(jax.random.key(seed)) if params is None else params
    opt_state = trainer.init(params)
    rng = np.random.default_rng(seed)

    start = time.perf_counter()
    val_bce, val_tod = evaluate(trainer, params, x_val, batch_size)
    train_bce, train_tod = evaluate(trainer, params, x_train, batch_size)
    initial = EpochRecord(0, train_bce, train_tod, val_bce, val_tod, time.perf_counter() - start)
    result = TrainResult(params, params, 0, val_bce, initial)
    if on_epoch:
        on_epoch(initial)
    n_batches = -(-len(x_train) // batch_size)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        sums = np.zeros(2)
        for b, rows in enumerate(_batches(len(x_train), batch_size, rng.permutation(len(x_train)))):
            xb, w = pad_batch(jnp.asarray(x_train[rows]), batch_size)
            params, opt_state, m = trainer.step(params, opt_state, xb, w)
            if int(m.status) != 0:
                raise FloatingPointError(
                    f"training diverged (non-finite energy) in epoch {epoch}, batch {b + 1}; "
                    "lower the learning rate or the settling step beta")
            sums += np.array([float(m.bce), float(m.tod)]) * len(rows)
            if on_batch:
                on_batch(b + 1, n_batches, float(m.bce), float(m.tod))
        val_bce, val_tod = evaluate(trainer, params, x_val, batch_size)
        record = EpochRecord(epoch, *(sums / len(x_train)), val_bce, val_tod, time.perf_counter() - start)
        result.history.append(record)
        result.last_params = params
        if val_bce < result.best_val_bce:
            result.best_params, result.best_epoch, result.best_val_bce = params, epoch, val_bce
        if on_epoch:
            on_epoch(record)
        if patience is not None and epoch - result.best_epoch >= patience:
            break
    return result
