"""The training loop: shuffled mini-batches, validation after each epoch, best model, early stopping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.experiments.interrupt import stop_if_interrupted
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
class TrainState:
    """Everything needed to continue training after ``epoch`` (saved by ``predcode fit`` each epoch)."""

    params: Params
    opt_state: Any
    epoch: int
    best_params: Params
    best_epoch: int  # 0 = the untrained model was never beaten
    best_val_bce: float
    initial: EpochRecord
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def last_params(self) -> Params:
        """The parameters after the last finished epoch (``params``; the best ones are ``best_params``)."""
        return self.params


TrainResult = TrainState


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch, a function of (seed, epoch) alone, so a resumed run repeats it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _batches(n: int, batch_size: int, order: np.ndarray | None = None):
    idx = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield idx[start : start + batch_size]


def evaluate(
    trainer: GNCNTrainer, params: Params, x: np.ndarray, batch_size: int, *, name: str = "x"
) -> tuple[float, float]:
    """Settle every row of ``x`` (no learning); return per-sample mean ``(bce, tod)`` over all rows.

    Raises ``FloatingPointError`` naming ``name``, the rows and the layer if a settle diverges.
    """
    trainer.model.check_params(params)
    trainer.model.check_input(x, name.split(" ")[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    total_bce = total_tod = 0.0
    for rows in _batches(len(x), batch_size):
        xb, w = pad_batch(jnp.asarray(x[rows]), batch_size)
        m = trainer.evaluate.unchecked(params, xb, w)  # x was checked whole, by the caller or train()
        if int(m.status) != 0:
            raise FloatingPointError(
                f"settling diverged while evaluating {name}, rows {rows[0]}..{rows[-1]}: "
                f"{describe_nonfinite(trainer.model, params, m)}. Lower the settling step beta."
            )
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
    eval_batch_size: int | None = None,
    seed: int = 0,
    params: Params | None = None,
    optimizer: optax.GradientTransformation | None = None,
    patience: int | None = None,
    state: TrainState | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    on_epoch: Callable[[EpochRecord, TrainState], None] | None = None,
    trainer: GNCNTrainer | None = None,
) -> TrainState:
    """Train ``model`` on ``x_train`` (n, x_dim) in {0, 1}; keep the parameters of the best validation BCE.

    As in ngc-learn's walkthrough the best model starts as the untrained one and is replaced
    whenever validation BCE improves; training stops after ``patience`` epochs without improvement.
    The last, short batch of an epoch is padded and weighted out, so it reuses the compiled step.
    Pass a saved ``state`` to continue a run; ``on_epoch(record, state)`` runs after every epoch
    (epoch 0 is the evaluation of the starting model) and is where a caller saves checkpoints.
    ``trainer`` (default ``make_trainer(model, optimizer)``) may be another trainer of ``model``,
    e.g. a data-parallel one (``predcode.learning.parallel``).
    """
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if patience is not None and (
        not isinstance(patience, (int, np.integer)) or isinstance(patience, bool) or patience < 1
    ):
        raise ValueError(f"patience: expected an integer >= 1 or None, got {patience!r}")
    # The data are checked once here (shape, finite, range); the loop then calls the compiled step.
    model.check_input(x_train, "x_train")
    model.check_input(x_val, "x_val")
    for name, x in (("x_train", x_train), ("x_val", x_val)):
        if len(x) == 0:
            raise ValueError(f"{name}: expected at least one row, got shape {tuple(x.shape)}")
    eval_batch_size = eval_batch_size or batch_size
    trainer = make_trainer(model, optimizer) if trainer is None else trainer
    if state is None:
        params = model.init(jax.random.key(seed)) if params is None else model.check_params(params)
        start = time.perf_counter()
        val_bce, val_tod = evaluate(trainer, params, x_val, eval_batch_size, name="x_val (the starting model)")
        train_bce, train_tod = evaluate(trainer, params, x_train, eval_batch_size, name="x_train (the starting model)")
        initial = EpochRecord(0, train_bce, train_tod, val_bce, val_tod, time.perf_counter() - start)
        state = TrainState(params, trainer.init(params), 0, params, 0, val_bce, initial)
        if on_epoch:
            on_epoch(initial, state)
    n_batches = -(-len(x_train) // batch_size)
    while state.epoch < epochs and not (patience is not None and state.epoch - state.best_epoch >= patience):
        stop_if_interrupted()  # Ctrl-C: after the last epoch's saves (predcode.experiments.interrupt)
        epoch = state.epoch + 1
        params, opt_state = state.params, state.opt_state
        start = time.perf_counter()
        sums = np.zeros(2)
        for b, rows in enumerate(_batches(len(x_train), batch_size, epoch_order(len(x_train), seed, epoch))):
            xb, w = pad_batch(jnp.asarray(x_train[rows]), batch_size)
            params, opt_state, m = trainer.step.unchecked(params, opt_state, xb, w)
            if int(m.status) != 0:
                raise FloatingPointError(
                    f"training diverged in epoch {epoch}, batch {b + 1} of {n_batches}: "
                    f"{describe_nonfinite(model, params, m)}; the best checkpoint on disk is intact. "
                    "Lower the learning rate or the settling step beta."
                )
            sums += np.array([float(m.bce), float(m.tod)]) * len(rows)
            stop_if_interrupted()  # between steps
            if on_batch:
                on_batch(b + 1, n_batches, float(m.bce), float(m.tod))
        val_bce, val_tod = evaluate(trainer, params, x_val, eval_batch_size, name=f"x_val (after epoch {epoch})")
        epoch_bce, epoch_tod = sums / len(x_train)
        record = EpochRecord(epoch, epoch_bce, epoch_tod, val_bce, val_tod, time.perf_counter() - start)
        state.history.append(record)
        state.params, state.opt_state, state.epoch = params, opt_state, epoch
        if val_bce < state.best_val_bce:
            state.best_params, state.best_epoch, state.best_val_bce = params, epoch, val_bce
        if on_epoch:
            on_epoch(record, state)
    return state


def describe_nonfinite(model: GNCN, params: Params, metrics) -> str:
    """Say which layer's states or which parameter first became NaN or infinite."""
    layers = [f"z{l + 1}" for l, ok in enumerate(np.asarray(metrics.finite_states)) if not ok]
    arrays = [k for k, v in sorted(params.items()) if not bool(jnp.all(jnp.isfinite(v)))]
    parts = []
    # A finite Sigma{l} with a non-finite Prec{l}: the Cholesky factor of the floored covariance
    # failed in float32, i.e. the learned covariance stopped being positive definite.
    not_pd = [
        f"Sigma{k[4:]}"
        for k in arrays
        if k.startswith("Prec") and f"Sigma{k[4:]}" not in arrays and f"Sigma{k[4:]}" in params
    ]
    for name in not_pd:
        cov = np.asarray(params[name], np.float64)
        low = np.linalg.eigvalsh(0.5 * (cov + cov.T)).min()
        parts.append(
            f"the learned covariance {name} is no longer positive definite or overflowed float32 "
            f"(smallest eigenvalue of its symmetric part {low:.3g}), so its Cholesky factor "
            f"failed and the precision Prec{name[5:]} is NaN"
        )
    arrays = [k for k in arrays if not (k.startswith("Prec") and f"Sigma{k[4:]}" in not_pd)]
    if layers:
        parts.append(f"non-finite states in layer(s) {', '.join(layers)}")
    if arrays:
        parts.append(f"non-finite weights in {', '.join(arrays)}")
    return "; ".join(parts) or "a non-finite energy"
