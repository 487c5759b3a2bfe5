"""Several trials (seeds) trained together: one jitted step ``vmap``-ped over the trials.

:func:`train_trials` is :func:`predcode.experiments.train.train` for ``N`` seeds at once. The
parameters and optimizer states of all trials are stacked on a leading axis and every batch runs
one compiled, vmapped step; each trial still sees its own data order (``epoch_order(n, seed, e)``),
keeps its own best model and its own early-stopping counter. A trial that has stopped (or that is
ahead, after a resume of trials saved at different epochs) is *masked*: its step is computed but its
parameters and optimizer state are kept, so it stops changing while the others continue. The
result equals ``N`` sequential :func:`train` runs up to float rounding (batched matrix products
may round differently from single ones).

:func:`parallel_trials` says how many trials fit in memory together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.experiments.loop import run_epochs
from predcode.experiments.train import EpochRecord, MuseumTrials, TrainState, _take, describe_nonfinite
from predcode.learning.step import GNCNTrainer, all_finite, gncn_metrics, make_trainer, pad_batch
from predcode.learning.trainer import Hebbian, training_step
from predcode.limits import MAX_BATCH, MAX_EPOCHS
from predcode.models.gncn import GNCN, Params
from predcode.schema import check_int

__all__ = ["parallel_trials", "stack_trials", "train_trials", "trial_bytes", "vmapped_steps"]


def trial_bytes(model: GNCN, batch_size: int) -> int:
    """Rough device memory one trial of a vmapped step needs: parameters, Adam moments, best copy, batch.

    Parameters count five times (current, updated, best, two Adam moments); the batch's units
    (``x``, every layer's states, predictions, errors and signals) a few times over.
    """
    c = model.config
    n_params = sum(int(np.prod(s)) for s in model.param_shapes().values())
    n_units = batch_size * (c.x_dim + sum(c.z_dims))
    return 4 * (5 * n_params + 8 * n_units)


def _memory_budget() -> int:
    """Half the memory of the default device (an accelerator's limit, else the host's RAM)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # backends without memory_stats
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 2
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 2**31


def parallel_trials(model: GNCN, batch_size: int, n_trials: int, limit: int | None = None) -> int:
    """How many of ``n_trials`` to vmap together: all that fit in half the device memory, at most ``limit``."""
    fit = max(1, _memory_budget() // max(1, trial_bytes(model, batch_size)))
    return max(1, min(n_trials, fit, limit or n_trials))


def vmapped_steps(trainer: GNCNTrainer) -> tuple[Callable, Callable]:
    """The trainer's step and evaluation for stacked trials, jitted ``vmap`` s.

    ``step(params, opt_state, x, weights, active)``: everything has a leading trial axis (``x``
    (trials, batch, x_dim)); a trial whose ``active`` is False keeps its parameters and optimizer
    state. ``evaluate(params, x, weights)``: stacked parameters, one batch shared by all trials.

    The step is the trainer's (settle, Hebbian updates, optimizer, constraints), compiled as two
    programs: the settle and optimizer step, then the constraints. The precision's Cholesky and
    triangular solve go through :mod:`predcode.linalg`, which keeps them unbatched under this
    ``vmap`` on CPU: batched, two of them at once deadlocked XLA:CPU's thread pool
    (``docs/reliability.md``, section 6).
    """
    model = trainer.model
    core = training_step(model, trainer.rule or Hebbian(), trainer.optimizer, constrain=False)

    def keep(active, new, old):
        return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)

    def learn(params, opt_state, x, weights, active):
        new, _, new_opt, result = core(params, (), opt_state, x, weights)
        return new, keep(active, new_opt, opt_state), gncn_metrics(x, result, weights)

    def constrain(old, new, active, metrics):
        params = model.apply_constraints(new)
        ok = (metrics.status == 0) & all_finite(params)
        return keep(active, params, old), metrics._replace(status=(~ok).astype(jnp.int32))

    learn_v, constrain_v = jax.jit(jax.vmap(learn)), jax.jit(jax.vmap(constrain))

    def step(params, opt_state, x, weights, active):
        new, opt_state, partial = learn_v(params, opt_state, x, weights, active)
        params, metrics = constrain_v(params, new, active, partial)
        return params, opt_state, metrics

    return step, jax.jit(jax.vmap(trainer.evaluate, in_axes=(0, None, None)))


def stack_trials(trees: Sequence[Any]) -> Any:
    """Pytrees of one trial each, stacked leaf by leaf on a new leading trial axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _evaluate(
    veval,
    params: Params,
    x: np.ndarray,
    batch_size: int,
    n_trials: int,
    *,
    model: GNCN | None = None,
    name: str = "x",
    trials: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-trial mean ``(bce, tod)`` over all rows of ``x``, shape (n_trials, 2).

    Raises ``FloatingPointError`` naming ``name``, the trial, the rows and the layer if a settle diverges.
    """
    totals = np.zeros((n_trials, 2))
    for start in range(0, len(x), batch_size):
        rows = min(batch_size, len(x) - start)
        xb, w = pad_batch(jnp.asarray(x[start : start + rows]), batch_size)
        m = veval(params, xb, w)
        bad = np.flatnonzero(np.asarray(m.status) != 0)
        if bad.size and model is not None:
            t = int(bad[0])
            raise FloatingPointError(
                f"settling diverged in trial {t if trials is None else trials[t]} while evaluating {name}, "
                f"rows {start}..{start + rows - 1}: "
                f"{describe_nonfinite(model, _take(params, t), _take(m, t))}. Lower the settling step beta."
            )
        totals += np.stack([np.asarray(m.bce, np.float64), np.asarray(m.tod, np.float64)], axis=1) * rows
    return totals / len(x)


def train_trials(
    model: GNCN,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    eval_batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    patience: int | None = None,
    states: Sequence[TrainState | None] | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    on_epoch: Callable[[int, EpochRecord, TrainState], None] | None = None,
) -> list[TrainState]:
    """Train one trial per seed in ``seeds`` together; return their states in the order of ``seeds``.

    Arguments are those of :func:`~predcode.experiments.train.train`; ``states`` (one per seed,
    ``None`` for a fresh trial) resumes trials, possibly saved at different epochs.
    ``on_epoch(t, record, state)`` runs for trial index ``t`` after each of its epochs (epoch 0 is
    its untrained model); ``on_batch`` gets the batch means over the trials that are training.
    """
    n = len(seeds)
    if n < 1:
        raise ValueError(f"seeds: expected at least one seed, got {list(seeds)!r}")
    check_int("epochs", epochs, 1, MAX_EPOCHS)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    if patience is not None and (not isinstance(patience, (int, np.integer)) or patience < 1):
        raise ValueError(f"patience: expected an integer >= 1 or None, got {patience!r}")
    slots: list[TrainState | None] = list(states) if states is not None else [None] * n
    if len(slots) != n:
        raise ValueError(f"states: expected one state (or None) per seed, {n} in all, got {len(slots)}")
    model.check_input(x_train, "x_train")  # once, here: the compiled loop does not check its inputs
    model.check_input(x_val, "x_val")
    group = MuseumTrials(
        make_trainer(model, optimizer),
        x_train,
        x_val,
        seeds=seeds,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size or batch_size,
        states=slots,
    )
    run_epochs(
        group,
        epochs=epochs,
        patience=patience,
        on_batch=on_batch,
        on_epoch=(lambda t, record: on_epoch(t, record, group.states[t])) if on_epoch else None,
    )
    return group.states
