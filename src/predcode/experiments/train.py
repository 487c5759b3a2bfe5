"""The training loop: shuffled mini-batches, validation after each epoch, best model, early stopping."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.experiments.loop import TrialGroup, epoch_order, run_epochs
from predcode.learning.step import GNCNTrainer, make_trainer, pad_batch
from predcode.limits import MAX_BATCH, MAX_EPOCHS
from predcode.models.gncn import GNCN, Params
from predcode.schema import check_int


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
    check_int("epochs", epochs, 1, MAX_EPOCHS)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
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
    trainer = make_trainer(model, optimizer) if trainer is None else trainer
    group = MuseumTrials(
        trainer,
        x_train,
        x_val,
        seeds=[seed],
        batch_size=batch_size,
        eval_batch_size=eval_batch_size or batch_size,
        states=[state],
        params=params,
    )
    run_epochs(
        group,
        epochs=epochs,
        patience=patience,
        on_batch=on_batch,
        on_epoch=(lambda t, record: on_epoch(record, group.states[t])) if on_epoch else None,
    )
    return group.states[0]


class MuseumTrials(TrialGroup):
    """The museum's :class:`~predcode.experiments.loop.TrialGroup`: one trial, or several vmapped together.

    One trial trains with the trainer's own step (``trainer.step``: plain, or data-parallel);
    several train in one compiled step ``vmap``-ped over the trials
    (:func:`predcode.experiments.trials.vmapped_steps`), each with its own data order, best model
    and early-stopping counter; a trial left out of an epoch keeps its parameters.
    ``states`` start fresh (None: the untrained model is evaluated as epoch 0 and is the first
    best model, as in ngc-learn's walkthrough) or resume saved :class:`TrainState` s.
    """

    def __init__(
        self,
        trainer: GNCNTrainer,
        x_train: np.ndarray,
        x_val: np.ndarray,
        *,
        seeds: Sequence[int],
        batch_size: int,
        eval_batch_size: int,
        states: Sequence[TrainState | None],
        params: Params | None = None,
    ):
        self.trainer, self.model = trainer, trainer.model
        self.x_train, self.x_val, self.seeds = x_train, x_val, [int(s) for s in seeds]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.trials: list[int] = list(range(len(self.seeds)))  # the trials' numbers in their run
        self.vmapped = len(self.seeds) > 1
        if self.vmapped:
            from predcode.experiments.trials import vmapped_steps

            self._vstep, self._veval = vmapped_steps(trainer)
        slots = list(states)
        fresh = [t for t, s in enumerate(slots) if s is None]
        self.initial: list[tuple[int, EpochRecord]] = []
        if fresh:
            start = time.perf_counter()
            if self.vmapped:
                from predcode.experiments.trials import stack_trials

                starting = [self.model.init(jax.random.key(self.seeds[t])) for t in fresh]
                stacked = stack_trials(starting)
                val = self._evaluate(stacked, x_val, "x_val (the starting model)", fresh)
                tr = self._evaluate(stacked, x_train, "x_train (the starting model)", fresh)
            else:
                p0 = self.model.init(jax.random.key(self.seeds[0])) if params is None else params
                starting = [self.model.check_params(p0)]
                val = self._evaluate(starting[0], x_val, "x_val (the starting model)")
                tr = self._evaluate(starting[0], x_train, "x_train (the starting model)")
            seconds = (time.perf_counter() - start) / len(fresh)
            for i, t in enumerate(fresh):
                p = starting[i]
                initial = EpochRecord(0, float(tr[i, 0]), float(tr[i, 1]), float(val[i, 0]), float(val[i, 1]), seconds)
                slots[t] = TrainState(p, trainer.init(p), 0, p, 0, float(val[i, 0]), initial)
                self.initial.append((t, initial))
        self._states: list[TrainState] = [s for s in slots if s is not None]
        self.n_batches = -(-len(x_train) // batch_size)  # the last, short batch is padded
        if self.vmapped:
            from predcode.experiments.trials import stack_trials

            self.params = stack_trials([s.params for s in self._states])
            self.opt_state = stack_trials([s.opt_state for s in self._states])

    @property
    def states(self) -> list[TrainState]:
        return self._states

    def start(self) -> list[tuple[int, EpochRecord]]:
        return self.initial

    def _evaluate(self, params, x: np.ndarray, name: str, trials: Sequence[int] | None = None) -> np.ndarray:
        """Per-trial mean ``(bce, tod)`` over ``x``, shape (trials, 2)."""
        if self.vmapped:
            from predcode.experiments.trials import _evaluate

            n = len(trials) if trials is not None else len(self._states)
            return _evaluate(
                self._veval, params, x, self.eval_batch_size, n, model=self.model, name=name, trials=trials
            )
        return np.array([evaluate(self.trainer, params, x, self.eval_batch_size, name=name)])

    def begin_epoch(self, epoch: int, active: np.ndarray) -> None:
        self.epoch, self.active = epoch, np.asarray(active, bool)
        self.orders = [epoch_order(len(self.x_train), seed, epoch) for seed in self.seeds]
        if not self.vmapped:
            self.params, self.opt_state = self._states[0].params, self._states[0].opt_state
        self.sums = np.zeros((len(self.seeds), 2))
        self.started = time.perf_counter()

    def train_batch(self, b: int) -> tuple[float, float]:
        bs = self.batch_size
        rows = [order[b * bs : (b + 1) * bs] for order in self.orders]
        if self.vmapped:
            padded = [pad_batch(jnp.asarray(self.x_train[r]), bs) for r in rows]
            xb, w = jnp.stack([p[0] for p in padded]), jnp.stack([p[1] for p in padded])
            self.params, self.opt_state, m = self._vstep(self.params, self.opt_state, xb, w, jnp.asarray(self.active))
            bad = np.flatnonzero(self.active & (np.asarray(m.status) != 0))
            batch = np.stack([np.asarray(m.bce, np.float64), np.asarray(m.tod, np.float64)], axis=1)
        else:
            xb, w = pad_batch(jnp.asarray(self.x_train[rows[0]]), bs)
            self.params, self.opt_state, m = self.trainer.step.unchecked(self.params, self.opt_state, xb, w)
            bad = np.flatnonzero(np.array([int(m.status) != 0]))
            batch = np.array([[float(m.bce), float(m.tod)]])
        if bad.size:
            t = int(bad[0])
            params, metrics = (_take(self.params, t), _take(m, t)) if self.vmapped else (self.params, m)
            which = f"trial {t} (seed {self.seeds[t]}), " if self.vmapped else ""
            raise FloatingPointError(
                f"training diverged in {which}epoch {self.epoch}, batch {b + 1} of {self.n_batches}: "
                f"{describe_nonfinite(self.model, params, metrics)}; the best checkpoint on disk is intact. "
                "Lower the learning rate or the settling step beta."
            )
        self.sums += batch * len(rows[0])
        mean = batch[self.active].mean(axis=0)
        return float(mean[0]), float(mean[1])

    def end_epoch(self, epoch: int) -> list[tuple[int, EpochRecord]]:
        val = self._evaluate(self.params, self.x_val, f"x_val (after epoch {epoch})")
        running = np.flatnonzero(self.active)
        seconds = (time.perf_counter() - self.started) / len(running)
        out = []
        for t in map(int, running):
            s = self._states[t]
            train_bce, train_tod = map(float, self.sums[t] / len(self.x_train))
            record = EpochRecord(epoch, train_bce, train_tod, float(val[t, 0]), float(val[t, 1]), float(seconds))
            s.history.append(record)
            if self.vmapped:
                s.params, s.opt_state = _take(self.params, t), _take(self.opt_state, t)
            else:
                s.params, s.opt_state = self.params, self.opt_state
            s.epoch = epoch
            if record.val_bce < s.best_val_bce:
                s.best_params, s.best_epoch, s.best_val_bce = s.params, epoch, record.val_bce
            out.append((t, record))
        return out


def _take(tree: Any, t: int) -> Any:
    return jax.tree.map(lambda a: a[t], tree)


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
