"""``predcode fit`` for general PC networks: supervised or generative training with checkpoints and resume.

The run folder matches the museum's (:mod:`predcode.experiments.fit`): ``config.toml``, per trial
``t`` the best model ``best{t}.npz/.json`` and the resume state ``state{t}.npz/.json`` (written
atomically after every epoch), and ``metrics.csv``, ``curves.png`` and ``summary.json`` (with
command, commit, date, machine and training time). Model selection is by validation accuracy
(supervised) or validation energy after inference (generative). Epoch ``e`` shuffles with the seed
``(seed, e)``, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.data import load, to_float, train_val_split
from predcode.experiments.atomic import atomic_path, write_json, write_text
from predcode.experiments.checkpoint import save_checkpoint
from predcode.experiments.config import ConfigError, PCFitConfig, build_network, dump_toml
from predcode.experiments.fit import (
    check_fit_options,
    load_run_tree,
    prepare_run_folder,
    resume_epoch,
    write_metrics_csv,
)
from predcode.experiments.provenance import provenance
from predcode.experiments.tensorboard import EventWriter
from predcode.learning.pc import PCTrainer
from predcode.models.network import PCNetwork
from predcode.threads import lapack_threads

__all__ = [
    "PCData",
    "PCEpochRecord",
    "clamps_for",
    "load_pc_data",
    "make_pc_trainer",
    "pc_fit",
    "predict_labels",
]


@dataclass(frozen=True)
class PCData:
    """Images ``(n, 784)`` in [0, 1] and integer labels for the train, validation and test splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_pc_data(cfg: PCFitConfig) -> PCData:
    """The config's dataset as float32 rows (binarized at 0.5 if asked), validation split seeded."""

    def prepare(images):
        x = to_float(images).reshape(len(images), -1)
        return (x >= 0.5).astype(np.float32) if cfg.data.binarize else x

    images, labels = load(cfg.data.dataset, "train")
    test_images, test_labels = load(cfg.data.dataset, "test")
    x_tr, y_tr, x_val, y_val = train_val_split(
        prepare(images), labels.astype(np.int32), cfg.data.n_val, seed=cfg.train.seed
    )
    if cfg.data.n_train is not None:
        x_tr, y_tr = x_tr[: cfg.data.n_train], y_tr[: cfg.data.n_train]
    return PCData(x_tr, y_tr, x_val, y_val, prepare(test_images), test_labels.astype(np.int32))


def clamps_for(cfg: PCFitConfig, network: PCNetwork, x: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Clamps of a batch: supervised clamps the image at the first node and the one-hot label at the
    last (the label only when ``y`` is given); generative clamps the image at the last node."""
    names = network.names
    if cfg.network.task == "generative":
        return {names[-1]: jnp.asarray(x)}
    clamps = {names[0]: jnp.asarray(x)}
    if y is not None:
        clamps[names[-1]] = jax.nn.one_hot(jnp.asarray(y), network.nodes[-1].dim)
    return clamps


def make_pc_trainer(cfg: PCFitConfig, network: PCNetwork | None = None, *, n_train: int | None = None) -> PCTrainer:
    """The :class:`PCTrainer` of a config, its rule from ``[inference]`` (``n_train`` sets the length of a
    learning-rate schedule: the number of weight steps, ``T`` per batch for iPC)."""
    total = cfg.train.epochs * max(1, (n_train or 0) // cfg.train.batch_size)
    if cfg.inference.algorithm == "ipc":  # iPC takes a weight step at every inference step
        total *= max(1, cfg.inference.T)
    return PCTrainer(network or build_network(cfg), optimizer_p=cfg.optimizer.build(total), rule=cfg.inference.rule())


def predict_labels(network: PCNetwork, params, x: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Class predictions by a forward pass (the fixed point of inference with the label free)."""
    forward = _forward_fn(network)
    out = [np.asarray(forward(params, jnp.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    return np.argmax(np.concatenate(out), axis=1)


_FORWARD_CACHE: dict[int, Callable] = {}


def _forward_fn(network: PCNetwork) -> Callable:
    key = id(network)
    if key not in _FORWARD_CACHE:
        first, last = network.names[0], network.names[-1]
        _FORWARD_CACHE[key] = jax.jit(lambda p, x: network.forward(p, {first: x})[last])
    return _FORWARD_CACHE[key]


@dataclass
class PCEpochRecord:
    """One epoch: mean training energy per sample (at the inferred states), validation metrics, time."""

    epoch: int
    train_energy: float
    val_energy: float
    val_accuracy: float | None
    val_mse: float | None
    seconds: float


def _evaluate(cfg: PCFitConfig, trainer: PCTrainer, params, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Validation: energy per sample after inference (label clamped if supervised), accuracy or MSE."""
    net, bs = trainer.network, cfg.train.eval_batch_size
    T = cfg.inference.T_eval if cfg.inference.T_eval is not None else cfg.inference.T
    energy, sq = 0.0, 0.0
    for i in range(0, len(x), bs):
        result = trainer.infer(params, clamps_for(cfg, net, x[i : i + bs], y[i : i + bs]), T=T)
        energy += float(result.energy[-1])
        if cfg.network.task == "generative":
            image = net.names[-1]
            sq += float(jnp.sum((net.prediction(params, result.states, image) - x[i : i + bs]) ** 2))
    out = {"val_energy": energy / len(x), "val_accuracy": None, "val_mse": None}
    if cfg.network.task == "supervised":
        out["val_accuracy"] = float(np.mean(predict_labels(net, params, x, batch_size=bs) == y))
    else:
        out["val_mse"] = sq / len(x)
    return out


def _better(cfg: PCFitConfig, record: PCEpochRecord, best: float | None) -> bool:
    if best is None:
        return True
    if cfg.network.task == "supervised":
        return _score(cfg, record) > best
    return record.val_energy < best


def _score(cfg: PCFitConfig, record: PCEpochRecord) -> float:
    if cfg.network.task == "supervised":
        assert record.val_accuracy is not None  # every supervised record has an accuracy
        return record.val_accuracy
    return record.val_energy


def _metadata(cfg: PCFitConfig, **extra) -> dict:
    return {"model": "pc_network", "task": cfg.network.task, "network": asdict(cfg.network), **extra}


@lapack_threads()  # jaxlib's CPU Cholesky (full-covariance cells) on one OpenBLAS thread for this call only
def pc_fit(
    cfg: PCFitConfig,
    out: Path,
    *,
    n_trials: int = 1,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, PCEpochRecord], None] | None = None,
    log: Sequence[str] = (),
    data_parallel: bool = False,
    parallel_trials: int | None = None,
) -> dict:
    """Train ``n_trials`` networks (seeds ``seed, seed + 1, ...``) of ``cfg`` into the run folder ``out``.

    As for the museum (:func:`predcode.experiments.fit.fit`): trials train together, vmapped in one
    jitted step (at most ``parallel_trials`` at a time, default ``train.parallel_trials``, else all;
    trials resumed at different epochs train one after another), each with its own data order, best
    model and checkpoints;
    ``log=("tensorboard",)`` writes TensorBoard event files to ``out/tb/trial{t}/`` (per epoch:
    ``train/energy``, ``val/energy``, ``val/accuracy`` or ``val/mse``, ``time/seconds_per_epoch``);
    ``data_parallel`` splits every batch over all devices (trials then run one after another).
    """
    check_fit_options(n_trials, log)
    out = Path(out)
    data = load_pc_data(cfg)  # fail on data before touching the run folder
    if data_parallel:
        n_dev = jax.device_count()
        for name in ("batch_size", "eval_batch_size"):
            size = getattr(cfg.train, name)
            if size % n_dev:
                raise ConfigError(
                    f"train.{name}: expected a multiple of the {n_dev} devices the batches are split over, got {size}"
                )
    writes = jax.process_index() == 0  # in a multi-process run the others compute the same and write nothing
    if writes:
        prepare_run_folder(out, resume, force)
        if not resume:
            write_text(out / "config.toml", dump_toml(cfg))
    network = build_network(cfg)
    trainer = make_pc_trainer(cfg, network, n_train=len(data.x_train))
    start = [resume_epoch(out, t) if resume else 0 for t in range(n_trials)]
    limit = parallel_trials if parallel_trials is not None else cfg.train.parallel_trials
    group = 1 if data_parallel else max(1, min(n_trials, limit or n_trials))
    writers = [
        EventWriter(out / "tb" / f"trial{t}") if "tensorboard" in log and writes else None for t in range(n_trials)
    ]
    results: dict[int, dict] = {}
    try:
        for first in range(0, n_trials, group):
            members = list(range(first, min(first + group, n_trials)))
            groups = [members] if len({start[t] for t in members}) == 1 else [[t] for t in members]
            for trials in groups:
                run = _TrialGroup(cfg, trainer, data, out, trials, resume, writers, data_parallel, writes)
                results.update(run.train(on_batch, on_epoch))
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()
    return _write_summary(out, cfg, data, network, [results[t] for t in range(n_trials)], write=writes)


class _TrialGroup:
    """Trials of one run that train together: one after another's batch in one vmapped step."""

    def __init__(self, cfg, trainer, data, out, trials, resume, writers, data_parallel, writes=True):
        self.cfg, self.trainer, self.data, self.out, self.trials = cfg, trainer, data, out, trials
        self.writers, self.data_parallel, self.writes = writers, data_parallel, writes
        self.best_params: list[Any] = [None for _ in trials]
        net = trainer.network
        self.seeds = [cfg.train.seed + t for t in trials]
        self.params = [net.init(jax.random.key(seed)) for seed in self.seeds]
        self.opt = [trainer.init(p) for p in self.params]
        self.history: list[list[PCEpochRecord]] = [[] for _ in trials]
        self.best: list[tuple[float | None, int]] = [(None, 0) for _ in trials]
        for i, t in enumerate(trials):
            if resume and (out / f"state{t}.json").exists():
                like = {"params": self.params[i], "opt_state": self.opt[i]}
                state, meta = load_run_tree(out / f"state{t}", like)
                self.params[i], self.opt[i] = state["params"], state["opt_state"]
                self.history[i] = [PCEpochRecord(**r) for r in meta["history"]]
                self.best[i] = (meta["best_score"], meta["best_epoch"])

    def _step(self, params, opt, clamps):
        trainer = self.trainer
        if len(self.trials) > 1:
            stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
            p, o, m = trainer.trials_step(stack(params), stack(opt), stack(clamps))
            unstack = lambda tree, i: jax.tree.map(lambda a: a[i], tree)
            return [unstack(p, i) for i in range(len(params))], [unstack(o, i) for i in range(len(params))], m
        step = trainer.data_parallel_step if self.data_parallel else trainer.step
        p, o, m = step(params[0], opt[0], clamps[0])
        return [p], [o], jax.tree.map(lambda a: a[None], m)

    def train(self, on_batch, on_epoch) -> dict[int, dict]:
        cfg, data, net, bs = self.cfg, self.data, self.trainer.network, self.cfg.train.batch_size
        n = len(data.x_train)
        n_batches = n // bs
        if n_batches < 1:
            raise ValueError(f"train.batch_size: expected at most the {n} training images, got {bs}")
        for epoch in range(len(self.history[0]) + 1, cfg.train.epochs + 1):
            started = time.perf_counter()
            perms = [np.random.default_rng([seed, epoch]).permutation(n) for seed in self.seeds]
            params, opt = self.params, self.opt
            for b in range(n_batches):
                clamps = [
                    clamps_for(
                        cfg, net, data.x_train[perm[b * bs : (b + 1) * bs]], data.y_train[perm[b * bs : (b + 1) * bs]]
                    )
                    for perm in perms
                ]
                params, opt, metrics = self._step(params, opt, clamps)
                if b % 50 == 0 or b == n_batches - 1:
                    energies = np.asarray(metrics.energy, np.float64)
                    status = np.asarray(metrics.status)
                    for i, t in enumerate(self.trials):
                        if not np.isfinite(energies[i]) or int(status[i]) != 0:
                            raise FloatingPointError(
                                f"trial {t}, epoch {epoch}, batch {b}: the energy became "
                                f"{energies[i]} (inference or learning diverged); lower "
                                "inference.learning_rate or optimizer.learning_rate"
                            )
                    if on_batch:
                        on_batch(b + 1, n_batches, float(energies[0]))
            self.params, self.opt = params, opt
            seconds = (time.perf_counter() - started) / len(self.trials)
            for i, t in enumerate(self.trials):
                self._end_epoch(i, t, epoch, float(energies[i]), seconds, on_epoch)
        return {t: self._result(i, t) for i, t in enumerate(self.trials)}

    def _end_epoch(self, i: int, t: int, epoch: int, train_energy: float, seconds: float, on_epoch) -> None:
        cfg, out, params = self.cfg, self.out, self.params[i]
        ev = _evaluate(cfg, self.trainer, params, self.data.x_val, self.data.y_val)
        record = PCEpochRecord(epoch, train_energy, ev["val_energy"], ev["val_accuracy"], ev["val_mse"], seconds)
        self.history[i].append(record)
        best_score, best_epoch = self.best[i]
        if _better(cfg, record, best_score):
            best_score, best_epoch = _score(cfg, record), epoch
            self.best_params[i] = params
            if self.writes:
                save_checkpoint(out / f"best{t}", {"params": params}, _metadata(cfg, trial=t, **asdict(record)))
        self.best[i] = (best_score, best_epoch)
        if not self.writes:
            return
        save_checkpoint(
            out / f"state{t}",
            {"params": params, "opt_state": self.opt[i]},
            _metadata(
                cfg,
                trial=t,
                epoch=epoch,
                best_score=best_score,
                best_epoch=best_epoch,
                history=[asdict(r) for r in self.history[i]],
            ),
        )
        writer = self.writers[t]
        if writer is not None:
            scalars = {"train/energy": record.train_energy, "val/energy": record.val_energy}
            if record.val_accuracy is not None:
                scalars["val/accuracy"] = record.val_accuracy
            if record.val_mse is not None:
                scalars["val/mse"] = record.val_mse
            writer.add_scalars(epoch, {**scalars, "time/seconds_per_epoch": record.seconds})
        if on_epoch:
            on_epoch(t, record)

    def _best(self, i: int, t: int) -> Any:
        """The best parameters of the group's trial ``i`` (from this run, else from its checkpoint)."""
        if self.best_params[i] is not None:
            return self.best_params[i]
        return load_run_tree(self.out / f"best{t}", {"params": self.params[i]})[0]["params"]

    def _result(self, i: int, t: int) -> dict:
        cfg, data, net = self.cfg, self.data, self.trainer.network
        history = self.history[i]
        best_score, best_epoch = self.best[i]
        result = {
            "trial": t,
            "seed": self.seeds[i],
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "best_val_score": best_score,
            "train_seconds": float(sum(r.seconds for r in history)),
            "history": [asdict(r) for r in history],
        }
        if cfg.network.task == "supervised":
            best = self._best(i, t)
            result["test_accuracy_forward"] = float(np.mean(predict_labels(net, best, data.x_test) == data.y_test))
            result["test_accuracy_inference"] = _inference_accuracy(cfg, self.trainer, best, data.x_test, data.y_test)
        return result


def _inference_accuracy(cfg, trainer, params, x, y) -> float:
    """Accuracy of the label node after inference with the label free (the image clamped)."""
    net, bs = trainer.network, cfg.train.eval_batch_size
    T = cfg.inference.T_eval if cfg.inference.T_eval is not None else cfg.inference.T
    preds = []
    for i in range(0, len(x), bs):
        states = trainer.infer(params, clamps_for(cfg, net, x[i : i + bs]), T=T).states
        preds.append(np.argmax(np.asarray(states[net.names[-1]]), axis=1))
    return float(np.mean(np.concatenate(preds) == y))


def _write_summary(
    out: Path, cfg: PCFitConfig, data: PCData, network: PCNetwork, trials: list[dict], *, write: bool = True
) -> dict:
    if write:
        write_metrics_csv(out, [{"trial": t["trial"], **r} for t in trials for r in t["history"]])
        _curves(trials[0]["history"], out / "curves.png", cfg.network.task)
    summary = {
        **provenance(),
        "model": "pc_network",
        "task": cfg.network.task,
        "network": repr(network),
        "n_trials": len(trials),
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "train_seconds_total": float(sum(t["train_seconds"] for t in trials)),
        "trials": [{k: v for k, v in t.items() if k != "history"} for t in trials],
    }
    if cfg.network.task == "supervised":
        accs = np.array([t["test_accuracy_forward"] for t in trials])
        summary.update(test_accuracy_forward_mean=float(accs.mean()), test_accuracy_forward_std=float(accs.std()))
    if write:
        write_json(out / "summary.json", summary)
    return summary


def _curves(history: list[dict], path: Path, task: str) -> None:
    from predcode.experiments.plots import new_figure

    epochs = [r["epoch"] for r in history]
    fig = new_figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    axes[0].plot(epochs, [r["train_energy"] for r in history], label="train (last batch)")
    axes[0].plot(epochs, [r["val_energy"] for r in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="energy per sample (nats)")
    axes[0].legend()
    key, label = ("val_accuracy", "validation accuracy") if task == "supervised" else ("val_mse", "validation MSE")
    axes[1].plot(epochs, [r[key] for r in history])
    axes[1].set(xlabel="epoch", ylabel=label)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
