"""``predcode fit`` for the MLP family: an MLP trained by one credit-assignment rule (``[model] family = "mlp"``).

The run folder is the other families' (:mod:`predcode.experiments.fit`,
:mod:`predcode.experiments.pc_fit`): ``config.toml`` (the resolved config), per trial ``t`` the
best model by validation accuracy ``best{t}.npz/.json`` (a :func:`~predcode.experiments.credit.save_rule_checkpoint`
file: weights and, for FA and DFA, the fixed feedback matrices; ``load_rule_checkpoint`` reads it)
and the resume state ``state{t}.npz/.json`` (``params``, ``opt_state`` and ``rule_state`` by key
path, written atomically after every epoch), and ``metrics.csv``, ``curves.png`` and
``summary.json`` (with command, commit, date, machine and training time). Trial ``t`` has the seed
``train.seed + t`` (weights, FA's and DFA's feedback matrices, data order); the validation split is
seeded by ``train.seed``. The loop is :class:`~predcode.experiments.credit.RuleRun`'s, so a resumed
run ends bit-exactly as an uninterrupted one, and every epoch records the angles between the rule's
update and backprop's gradient (the credit-assignment study's measurement).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.experiments.atomic import write_json
from predcode.experiments.checkpoint import save_checkpoint
from predcode.experiments.config import ConfigError, MLPFitConfig
from predcode.experiments.config.mlp import MLPModelConfig
from predcode.experiments.credit import RuleRun, load_mnist, save_rule_checkpoint
from predcode.experiments.fit import (
    Family,
    check_split_batches,
    load_run_tree,
    resume_epoch,
    run_fit,
    write_metrics_csv,
)
from predcode.experiments.loop import TrialGroup
from predcode.experiments.plots import curves_for, training_curves
from predcode.experiments.provenance import provenance

__all__ = ["MLPFamily", "MLPTrials", "mlp_config", "mlp_fit", "rule_options"]


def rule_options(cfg: MLPFitConfig) -> dict[str, Any]:
    """The :class:`~predcode.experiments.credit.RuleRun` options of an MLP config (all but the seed)."""
    m = cfg.model
    return dict(
        sizes=m.sizes,
        activation=m.activation,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        learning_rate=cfg.optimizer.learning_rate,
        pc_steps=m.pc_steps,
        pc_rate=m.pc_rate,
        init_scale=m.init_scale,
    )


def mlp_config(
    *,
    rule: str = "backprop",
    sizes=(784, 256, 256, 10),
    activation: str = "relu",
    epochs: int = 20,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    pc_steps: int = 20,
    pc_rate: float = 0.1,
    init_scale: float = 1.0,
    n_val: int = 5000,
    n_train: int | None = None,
) -> MLPFitConfig:
    """The MLP config of ``predcode credit mnist``'s options (validated as a config file is)."""
    base = MLPFitConfig()
    return MLPFitConfig(
        model=MLPModelConfig(
            sizes=tuple(sizes),
            activation=activation,
            rule=rule,
            pc_steps=pc_steps,
            pc_rate=pc_rate,
            init_scale=init_scale,
        ),
        data=replace(base.data, n_val=n_val, n_train=n_train),
        train=replace(base.train, epochs=epochs, batch_size=batch_size, seed=seed),
        optimizer=replace(base.optimizer, learning_rate=learning_rate),
    )


def _metadata(cfg: MLPFitConfig, **extra) -> dict:
    m = cfg.model
    return {"model": "mlp", "rule": m.rule, "sizes": list(m.sizes), "activation": m.activation, **extra}


def mlp_fit(cfg: MLPFitConfig, out: Path, *, angle_batch: int = 1000, **options: Any) -> dict:
    """Train ``n_trials`` MLPs (seeds ``seed, seed + 1, ...``) of ``cfg`` with its rule into the run folder ``out``.

    :func:`~predcode.experiments.fit.run_fit` with :class:`MLPFamily` (``options``: those of
    ``run_fit``). Trials train together, vmapped in one jitted step (at most
    ``train.parallel_trials`` at a time, default all; a trial that is ahead after a resume, or has
    stopped, waits masked), each with its own weights, feedback matrices, data order, best model
    and early stopping (``train.patience``); the results equal sequential trials up to float
    rounding. ``data_parallel`` splits every batch over all devices (``jax.devices()``) and trains
    the trials one after another. ``on_batch(b, n, loss)`` reports progress within an epoch,
    ``on_epoch(trial, record, line)`` each finished epoch (``line``: a log line with the angles);
    ``log`` names trackers (``tensorboard``: event files in ``out/tb/trial{t}/``; ``mlflow``,
    ``wandb``), which get (per epoch:
    ``train/loss``, ``val/accuracy``, ``test/accuracy``, ``time/seconds_per_epoch`` and
    ``angle/layer{l}``, the angle in degrees between the rule's update of layer ``l`` and backprop's).
    Returns the summary (also ``out/summary.json``).
    """
    family = MLPFamily()
    family.angle_batch = angle_batch
    return run_fit(family, cfg, out, **options)


class MLPFamily(Family):
    """MLPs trained by a credit-assignment rule in :func:`~predcode.experiments.fit.run_fit`: the best
    model by validation accuracy; ``angle_batch`` training rows probe the angle to backprop."""

    angle_batch: int = 1000

    def load_data(self, cfg: MLPFitConfig):
        return load_mnist(n_val=cfg.data.n_val, seed=cfg.train.seed, n_train=cfg.data.n_train)

    def check(self, cfg: MLPFitConfig, data, *, data_parallel: bool) -> None:
        if len(data[0]) < cfg.train.batch_size:
            raise ConfigError(
                f"train.batch_size: expected at most the {len(data[0])} training images, got {cfg.train.batch_size}"
            )
        check_split_batches(cfg, ("batch_size",), data_parallel)

    def groups(self, cfg: MLPFitConfig, data, out: Path, *, n_trials: int, resume: bool, data_parallel: bool):
        size = 1 if data_parallel else cfg.train.parallel_trials or n_trials
        for first in range(0, n_trials, size):
            trials = list(range(first, min(first + size, n_trials)))
            yield MLPTrials(cfg, data, out, trials, resume, self.angle_batch, data_parallel)

    def save(self, cfg: MLPFitConfig, out: Path, group: MLPTrials, i: int, record: dict) -> None:
        group.save(i, record)

    def rows(self, group: MLPTrials, i: int) -> list[dict]:
        return list(group.states[i].run.history["epochs"])

    def scalars(self, group: MLPTrials, i: int, record: dict) -> dict[str, float]:
        run = group.states[i].run
        angles = {f"angle/layer{k + 1}": a for k, a in enumerate(run.history["angles"][-1]["degrees"])}
        return {
            "train/loss": record["train_loss"],
            "val/accuracy": record["val_accuracy"],
            "test/accuracy": record["test_accuracy"],
            "time/seconds_per_epoch": record["seconds"],
            **angles,
        }

    def epoch_args(self, group: MLPTrials, i: int, record: dict) -> tuple:
        return (group.states[i].run.describe(record),)

    def result(self, group: MLPTrials, i: int) -> dict:
        return group.result(i)

    def summary(self, out: Path, cfg: MLPFitConfig, data, results: list[dict], *, write: bool) -> dict:
        return _write_summary(out, cfg, data, results, write=write)


@dataclass
class _MLPTrial:
    """One trial: its :class:`~predcode.experiments.credit.RuleRun` and its best model's epoch and scores."""

    trial: int
    run: RuleRun
    best_score: float | None = None
    best_epoch: int = 0
    best_test: float | None = None

    @property
    def epoch(self) -> int:
        return self.run.epoch


class MLPTrials(TrialGroup):
    """The MLP family's :class:`~predcode.experiments.loop.TrialGroup`: rule runs trained together.

    One run trains with its trainer's step (or that step split over all devices); several in one
    ``vmap`` of it over their stacked weights, rule and optimizer states and batches.
    """

    def __init__(
        self,
        cfg: MLPFitConfig,
        data,
        out: Path,
        trials: list[int],
        resume: bool,
        angle_batch: int,
        data_parallel: bool = False,
    ):
        self.cfg, self.out, self.trials = cfg, out, trials
        self._states = []
        for t in trials:
            run = RuleRun(cfg.model.rule, data, seed=cfg.train.seed + t, angle_batch=angle_batch, **rule_options(cfg))
            s = _MLPTrial(t, run)
            if resume and resume_epoch(out, t) > 0:
                state, meta = load_run_tree(out / f"state{t}", run.state(), what="MLP or rule")
                run.restore(state, meta["history"])
                s.best_score, s.best_epoch = meta["best_val_accuracy"], meta["best_epoch"]
                s.best_test = meta["best_test_accuracy"]
            self._states.append(s)
        first = self._states[0].run
        self.n_batches = first.steps_per_epoch
        self._step: Callable | None = None
        if len(trials) > 1:
            self._step = jax.jit(jax.vmap(first.trainer.step))
        elif data_parallel:
            from predcode.learning.parallel import sharded

            self._step = sharded(first.trainer.step, n_replicated=3, n_rows=2)

    def start(self) -> list:
        return []  # trials start with their first epoch

    @property
    def states(self) -> list[_MLPTrial]:
        return self._states

    def begin_epoch(self, epoch: int, active: np.ndarray) -> None:
        self.active = np.asarray(active, bool)
        self.runs = [s.run for s, on in zip(self._states, self.active, strict=True) if on]
        for run in self.runs:
            run.begin_epoch()

    def train_batch(self, b: int) -> tuple[float] | None:
        runs = self.runs
        if self._step is None:
            loss = runs[0].train_batch(b)
        elif len(self.trials) == 1:  # data-parallel
            run = runs[0]
            x, y = run.batch(b)
            run.params, run.rule_state, run.opt_state, loss = self._step(
                run.params, run.rule_state, run.opt_state, jnp.asarray(x), jnp.asarray(y)
            )
            run.after_step(loss)
        else:
            # Every trial's step is computed (one compiled shape); one left out of the epoch keeps its state.
            runs = [s.run for s in self._states]
            stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
            stand_in = self.runs[0].batch(b)
            batches = [run.batch(b) if on else stand_in for run, on in zip(runs, self.active, strict=True)]
            p, r, o, losses = self._step(
                stack([run.params for run in runs]),
                stack([run.rule_state for run in runs]),
                stack([run.opt_state for run in runs]),
                jnp.stack([jnp.asarray(x) for x, _ in batches]),
                jnp.stack([jnp.asarray(y) for _, y in batches]),
            )
            for i, run in enumerate(runs):
                if not self.active[i]:
                    continue
                take = lambda tree, i=i: jax.tree.map(lambda a: a[i], tree)
                run.params, run.rule_state, run.opt_state = take(p), take(r), take(o)
                run.after_step(losses[i])
            loss = losses[int(np.flatnonzero(self.active)[0])]
        if b % 50 == 0 or b == self.n_batches - 1:
            return (float(loss),)
        return None

    def end_epoch(self, epoch: int) -> list[tuple[int, dict]]:
        out = []
        for i in map(int, np.flatnonzero(self.active)):
            s = self._states[i]
            record = s.run.finish_epoch()
            if s.best_score is None or record["val_accuracy"] > s.best_score:
                s.best_score, s.best_epoch, s.best_test = record["val_accuracy"], epoch, record["test_accuracy"]
            out.append((i, record))
        return out

    def save(self, i: int, record: dict) -> None:
        """Checkpoint trial ``i`` after its epoch ``record`` (its best model if it improved)."""
        s, cfg, out = self._states[i], self.cfg, self.out
        run, t = s.run, s.trial
        if s.best_epoch == record["epoch"]:
            save_rule_checkpoint(
                out / f"best{t}", run.model, run.rule, run.params, run.rule_state, _metadata(cfg, trial=t, **record)
            )
        save_checkpoint(
            out / f"state{t}",
            run.state(),
            _metadata(
                cfg,
                trial=t,
                epoch=record["epoch"],
                best_val_accuracy=s.best_score,
                best_epoch=s.best_epoch,
                best_test_accuracy=s.best_test,
                history=run.history,
            ),
        )

    def result(self, i: int) -> dict:
        """The finished trial ``i``'s entry of the summary: the rule run's results and its best model."""
        s = self._states[i]
        run = s.run
        return {
            "trial": s.trial,
            "seed": run.seed,
            **run.result(),
            "best_epoch": s.best_epoch,
            "best_val_accuracy": s.best_score,
            "best_test_accuracy": s.best_test,
            "train_seconds": float(sum(e["seconds"] for e in run.history["epochs"])),
        }


def _write_summary(out: Path, cfg: MLPFitConfig, data, trials: list[dict], write: bool = True) -> dict:
    if write:
        write_metrics_csv(out, [{"trial": t["trial"], **r} for t in trials for r in t["epochs"]])
        training_curves(
            trials[0]["epochs"], out / "curves.png", **curves_for(cfg, len(trials)), best_epoch=trials[0]["best_epoch"]
        )
    tests = np.array([t["test_accuracy"] for t in trials])
    summary = {
        **provenance(),
        "model": "mlp",
        "rule": cfg.model.rule,
        "sizes": list(cfg.model.sizes),
        "n_trials": len(trials),
        "n_train": len(data[0]),
        "n_val": len(data[2]),
        "train_seconds_total": float(sum(t["train_seconds"] for t in trials)),
        "test_accuracy_mean": float(tests.mean()),  # the last epoch's, as the credit study reports it
        "test_accuracy_std": float(tests.std()),
        "best_val_accuracy_mean": float(np.mean([t["best_val_accuracy"] for t in trials])),
        "trials": trials,
    }
    if write:
        write_json(out / "summary.json", summary)
    return summary
