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

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from predcode.experiments.atomic import atomic_path, write_json
from predcode.experiments.checkpoint import save_checkpoint
from predcode.experiments.config import ConfigError, MLPFitConfig
from predcode.experiments.config.mlp import MLPModelConfig
from predcode.experiments.credit import RuleRun, load_mnist, save_rule_checkpoint
from predcode.experiments.fit import (
    check_fit_options,
    fit_session,
    load_run_tree,
    prepare_run_folder,
    resume_epoch,
    write_metrics_csv,
)
from predcode.experiments.interrupt import stop_if_interrupted
from predcode.experiments.provenance import provenance
from predcode.experiments.tensorboard import EventWriter

__all__ = ["mlp_config", "mlp_fit", "rule_options"]


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


@fit_session  # Ctrl-C stops at a safe point; the run folder stays locked until the fit returns
def mlp_fit(
    cfg: MLPFitConfig,
    out: Path,
    *,
    n_trials: int = 1,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict, str], None] | None = None,
    log: Sequence[str] = (),
    angle_batch: int = 1000,
) -> dict:
    """Train ``n_trials`` MLPs (seeds ``seed, seed + 1, ...``) of ``cfg`` with its rule into the run folder ``out``.

    Trials train one after another. ``on_batch(b, n, loss)`` reports progress within an epoch,
    ``on_epoch(trial, record, line)`` each finished epoch (``line``: a log line with the angles);
    ``log=("tensorboard",)`` writes TensorBoard event files to ``out/tb/trial{t}/`` (per epoch:
    ``train/loss``, ``val/accuracy``, ``test/accuracy``, ``time/seconds_per_epoch`` and
    ``angle/layer{l}``, the angle in degrees between the rule's update of layer ``l`` and backprop's).
    Returns the summary (also ``out/summary.json``).
    """
    check_fit_options(n_trials, log)
    out = Path(out)
    data = load_mnist(n_val=cfg.data.n_val, seed=cfg.train.seed, n_train=cfg.data.n_train)  # before the folder
    if len(data[0]) < cfg.train.batch_size:
        raise ConfigError(
            f"train.batch_size: expected at most the {len(data[0])} training images, got {cfg.train.batch_size}"
        )
    prepare_run_folder(out, resume, force, cfg)
    results = []
    for t in range(n_trials):
        writer = EventWriter(out / "tb" / f"trial{t}") if "tensorboard" in log else None
        try:
            results.append(_train_trial(cfg, data, out, t, resume, writer, on_batch, on_epoch, angle_batch))
        finally:
            if writer is not None:
                writer.close()
    return _write_summary(out, cfg, data, results)


def _train_trial(cfg, data, out, t, resume, writer, on_batch, on_epoch, angle_batch) -> dict:
    run = RuleRun(cfg.model.rule, data, seed=cfg.train.seed + t, angle_batch=angle_batch, **rule_options(cfg))
    best_score, best_epoch, best_test = None, 0, None
    if resume and resume_epoch(out, t) > 0:
        state, meta = load_run_tree(out / f"state{t}", run.state(), what="MLP or rule")
        run.restore(state, meta["history"])
        best_score, best_epoch, best_test = meta["best_val_accuracy"], meta["best_epoch"], meta["best_test_accuracy"]
    while run.epoch < run.epochs:
        stop_if_interrupted()  # Ctrl-C: after the last epoch's saves (predcode.experiments.interrupt)
        record = run.train_epoch(on_batch)
        if best_score is None or record["val_accuracy"] > best_score:
            best_score, best_epoch, best_test = record["val_accuracy"], record["epoch"], record["test_accuracy"]
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
                best_val_accuracy=best_score,
                best_epoch=best_epoch,
                best_test_accuracy=best_test,
                history=run.history,
            ),
        )
        if writer is not None:
            angles = {f"angle/layer{i + 1}": a for i, a in enumerate(run.history["angles"][-1]["degrees"])}
            writer.add_scalars(
                record["epoch"],
                {
                    "train/loss": record["train_loss"],
                    "val/accuracy": record["val_accuracy"],
                    "test/accuracy": record["test_accuracy"],
                    "time/seconds_per_epoch": record["seconds"],
                    **angles,
                },
            )
        if on_epoch is not None:
            on_epoch(t, record, run.describe(record))
    return {
        "trial": t,
        "seed": run.seed,
        **run.result(),
        "best_epoch": best_epoch,
        "best_val_accuracy": best_score,
        "best_test_accuracy": best_test,
        "train_seconds": float(sum(e["seconds"] for e in run.history["epochs"])),
    }


def _write_summary(out: Path, cfg: MLPFitConfig, data, trials: list[dict]) -> dict:
    write_metrics_csv(out, [{"trial": t["trial"], **r} for t in trials for r in t["epochs"]])
    _curves(trials[0]["epochs"], out / "curves.png")
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
    write_json(out / "summary.json", summary)
    return summary


def _curves(epochs: list[dict], path: Path) -> None:
    from predcode.experiments.plots import new_figure

    x = [r["epoch"] for r in epochs]
    fig = new_figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    axes[0].plot(x, [r["train_loss"] for r in epochs])
    axes[0].set(xlabel="epoch", ylabel="training loss (cross-entropy)")
    axes[1].plot(x, [100 * r["val_accuracy"] for r in epochs], label="validation")
    axes[1].plot(x, [100 * r["test_accuracy"] for r in epochs], label="test")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)")
    axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
