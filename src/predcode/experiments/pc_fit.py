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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.data import load, to_float, train_val_split
from predcode.experiments.atomic import write_json
from predcode.experiments.checkpoint import save_checkpoint
from predcode.experiments.config import PCFitConfig, build_network
from predcode.experiments.data_files import check_split
from predcode.experiments.fit import (
    Family,
    check_split_batches,
    load_run_tree,
    resume_epoch,
    run_fit,
    write_metrics_csv,
)
from predcode.experiments.loop import epoch_order
from predcode.experiments.plots import curves_for, training_curves
from predcode.experiments.provenance import provenance
from predcode.learning.pc import PCTrainer
from predcode.models.network import PCNetwork
from predcode.schema import ConfigError
from predcode.threads import lapack_threads

__all__ = [
    "input_scaling",
    "NetworkFamily",
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
    """Images ``(n, 784)`` and integer labels for the train, validation and test splits.

    Pixels are in [0, 1] (``data.normalize = "none"``) or ``(pixel - shift) / scale`` for every
    split, with ``shift`` and ``scale`` from :func:`input_scaling` of the training rows.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shift: float = 0.0
    scale: float = 1.0


def input_scaling(normalize: str, x_train: np.ndarray) -> tuple[float, float]:
    """``(shift, scale)`` with ``x -> (x - shift) / scale``: ``"none"`` (0, 1); ``"symmetric"``
    (0.5, 0.5), [0, 1] onto [-1, 1] as PCX's ``Normalize((0.5,), (0.5,))``; ``"standardize"`` the
    training rows' mean pixel and pixel standard deviation (MNIST's 0.1307 and 0.3081, JPC's
    constants), so the training pixels have mean 0 and variance 1."""
    if normalize == "symmetric":
        return 0.5, 0.5
    if normalize == "standardize":
        shift = float(np.mean(x_train, dtype=np.float64))
        scale = float(np.std(x_train, dtype=np.float64))
        if not scale > 0:
            raise ConfigError(
                f'data.normalize: expected training pixels that are not all equal for "standardize", '
                f"got a standard deviation of {scale}",
                key="data.normalize",
            )
        return shift, scale
    return 0.0, 1.0


def load_pc_data(cfg: PCFitConfig) -> PCData:
    """The config's dataset as float32 rows (binarized at 0.5 if asked, then scaled as
    ``data.normalize`` says), validation split seeded."""

    def prepare(images):
        x = to_float(images).reshape(len(images), -1)
        return (x >= 0.5).astype(np.float32) if cfg.data.binarize else x

    images, labels = load(cfg.data.dataset, "train")
    test_images, test_labels = load(cfg.data.dataset, "test")
    check_split(len(images), cfg.data.n_val, f"the {cfg.data.dataset} training set")
    x_tr, y_tr, x_val, y_val = train_val_split(
        prepare(images), labels.astype(np.int32), cfg.data.n_val, seed=cfg.train.seed
    )
    if cfg.data.n_train is not None:
        x_tr, y_tr = x_tr[: cfg.data.n_train], y_tr[: cfg.data.n_train]
    x_test = prepare(test_images)
    shift, scale = input_scaling(cfg.data.normalize, x_tr)
    if (shift, scale) != (0.0, 1.0):
        x_tr, x_val, x_test = (((x - shift) / scale).astype(np.float32) for x in (x_tr, x_val, x_test))
    return PCData(x_tr, y_tr, x_val, y_val, x_test, test_labels.astype(np.int32), shift, scale)


def clamps_for(cfg: PCFitConfig, network: PCNetwork, x: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Clamps of a batch: supervised clamps the image at the first node and the one-hot label at the
    last (the label only when ``y`` is given); generative clamps the image at the last node."""
    names = network.names
    image = network.nodes[-1 if cfg.network.task == "generative" else 0]
    rows = jnp.reshape(jnp.asarray(x), (len(x), *image.shape))  # to the node's shape (an image for conv)
    if cfg.network.task == "generative":
        return {names[-1]: rows}
    clamps = {names[0]: rows}
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
        shape = network.nodes[0].shape
        _FORWARD_CACHE[key] = jax.jit(
            lambda p, x: network.forward(p, {first: jnp.reshape(x, (x.shape[0], *shape))})[last]
        )
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
    test_accuracy: float | None = None  # with train.test_every_epoch only


def _stored(record: PCEpochRecord) -> dict[str, Any]:
    """An epoch's row as a checkpoint stores it: without ``test_accuracy`` unless it was measured, so a
    run folder's history reads the same as one written before ``train.test_every_epoch`` existed."""
    row = asdict(record)
    if row["test_accuracy"] is None:
        del row["test_accuracy"]
    return row


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
            mu = net.prediction(params, result.states, image).reshape(len(x[i : i + bs]), -1)
            sq += float(jnp.sum((mu - x[i : i + bs]) ** 2))
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


class NetworkFamily(Family):
    """General PC networks in :func:`~predcode.experiments.fit.run_fit`: the best model by validation
    accuracy (supervised) or energy (generative). ``parallel_trials`` overrides ``train.parallel_trials``."""

    parallel_trials: int | None = None

    def load_data(self, cfg: PCFitConfig) -> PCData:
        return load_pc_data(cfg)

    def check(self, cfg: PCFitConfig, data: PCData, *, data_parallel: bool) -> None:
        check_split_batches(cfg, ("batch_size", "eval_batch_size"), data_parallel)

    def groups(self, cfg: PCFitConfig, data: PCData, out: Path, *, n_trials: int, resume: bool, data_parallel: bool):
        self.network = network = build_network(cfg)
        trainer = make_pc_trainer(cfg, network, n_train=len(data.x_train))
        start = [resume_epoch(out, t) if resume else 0 for t in range(n_trials)]
        limit = self.parallel_trials if self.parallel_trials is not None else cfg.train.parallel_trials
        size = 1 if data_parallel else max(1, min(n_trials, limit or n_trials))
        for first in range(0, n_trials, size):
            members = list(range(first, min(first + size, n_trials)))
            # trials resumed at different epochs train one after another
            for trials in [members] if len({start[t] for t in members}) == 1 else [[t] for t in members]:
                yield _TrialGroup(cfg, trainer, data, out, trials, resume, data_parallel)

    def save(self, cfg: PCFitConfig, out: Path, group: _TrialGroup, i: int, record: PCEpochRecord) -> None:
        s = group.states[i]
        t = s.trial
        if s.best_epoch == record.epoch:
            save_checkpoint(out / f"best{t}", {"params": s.params}, _metadata(cfg, trial=t, **_stored(record)))
        save_checkpoint(
            out / f"state{t}",
            {"params": s.params, "opt_state": s.opt},
            _metadata(
                cfg,
                trial=t,
                epoch=record.epoch,
                best_score=s.best_score,
                best_epoch=s.best_epoch,
                history=[_stored(r) for r in s.history],
            ),
        )

    def rows(self, group: _TrialGroup, i: int) -> list[dict]:
        return [asdict(r) for r in group.states[i].history]

    def scalars(self, group: _TrialGroup, i: int, record: PCEpochRecord) -> dict[str, float]:
        scalars = {"train/energy": record.train_energy, "val/energy": record.val_energy}
        if record.val_accuracy is not None:
            scalars["val/accuracy"] = record.val_accuracy
        if record.val_mse is not None:
            scalars["val/mse"] = record.val_mse
        if record.test_accuracy is not None:
            scalars["test/accuracy"] = record.test_accuracy
        return {**scalars, "time/seconds_per_epoch": record.seconds}

    def epoch_args(self, group: _TrialGroup, i: int, record: PCEpochRecord) -> tuple:
        return ()

    def result(self, group: _TrialGroup, i: int) -> dict:
        return group._result(i, group.trials[i])

    def summary(self, out: Path, cfg: PCFitConfig, data: PCData, results: list[dict], *, write: bool) -> dict:
        return _write_summary(out, cfg, data, self.network, results, write=write)


@lapack_threads()  # jaxlib's CPU Cholesky (full-covariance cells) on one OpenBLAS thread for this call only
def pc_fit(cfg: PCFitConfig, out: Path, *, parallel_trials: int | None = None, **options: Any) -> dict:
    """Train ``n_trials`` networks (seeds ``seed, seed + 1, ...``) of ``cfg`` into the run folder ``out``.

    :func:`~predcode.experiments.fit.run_fit` with :class:`NetworkFamily` (``options``: those of
    ``run_fit``). As for the museum: trials train together, vmapped in one jitted step (at most
    ``parallel_trials`` at a time, default ``train.parallel_trials``, else all; trials resumed at
    different epochs train one after another), each with its own data order, best model, early
    stopping and checkpoints; ``on_batch(b, n, energy)``, ``on_epoch(trial, record)`` (a
    :class:`PCEpochRecord`); ``log`` names trackers (``tensorboard``: event files in
    ``out/tb/trial{t}/``; ``mlflow``, ``wandb``), which get (per epoch: ``train/energy``,
    ``val/energy``, ``val/accuracy`` or ``val/mse``, ``time/seconds_per_epoch``); ``data_parallel``
    splits every batch over all devices (trials then run one after another).
    """
    family = NetworkFamily()
    family.parallel_trials = parallel_trials
    return run_fit(family, cfg, out, **options)


@dataclass
class _PCTrial:
    """One trial's training state: parameters, optimizer state, records and best model."""

    trial: int
    seed: int
    params: Any
    opt: Any
    history: list[PCEpochRecord] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int = 0
    best_params: Any = None  # of this process's epochs; else on disk (best{t})

    @property
    def epoch(self) -> int:
        return len(self.history)


class _TrialGroup:
    """Trials of one run that train together (one vmapped step), a :class:`~predcode.experiments.loop.TrialGroup`."""

    def __init__(self, cfg, trainer, data, out, trials, resume, data_parallel):
        self.cfg, self.trainer, self.data, self.out, self.trials = cfg, trainer, data, out, trials
        self.data_parallel = data_parallel
        net = trainer.network
        self.seeds = [cfg.train.seed + t for t in trials]
        self._states = []
        for t, seed in zip(trials, self.seeds, strict=True):
            params = net.init(jax.random.key(seed))
            s = _PCTrial(t, seed, params, trainer.init(params))
            if resume and (out / f"state{t}.json").exists():
                state, meta = load_run_tree(out / f"state{t}", {"params": s.params, "opt_state": s.opt})
                s.params, s.opt = state["params"], state["opt_state"]
                s.history = [PCEpochRecord(**r) for r in meta["history"]]
                s.best_score, s.best_epoch = meta["best_score"], meta["best_epoch"]
            self._states.append(s)
        n, bs = len(data.x_train), cfg.train.batch_size
        self.n_batches = n // bs
        if self.n_batches < 1:
            raise ValueError(f"train.batch_size: expected at most the {n} training images, got {bs}")

    def start(self) -> list:
        return []  # trials start with their first epoch

    @property
    def states(self) -> list[_PCTrial]:
        return self._states

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

    def begin_epoch(self, epoch: int, active: np.ndarray) -> None:
        self.epoch, self.active = epoch, np.asarray(active, bool)
        self.perms = [epoch_order(len(self.data.x_train), seed, epoch) for seed in self.seeds]
        self.started = time.perf_counter()

    def train_batch(self, b: int) -> tuple[float] | None:
        cfg, data, net, bs = self.cfg, self.data, self.trainer.network, self.cfg.train.batch_size
        clamps = [
            clamps_for(cfg, net, data.x_train[perm[b * bs : (b + 1) * bs]], data.y_train[perm[b * bs : (b + 1) * bs]])
            for perm in self.perms
        ]
        params, opt, metrics = self._step([s.params for s in self._states], [s.opt for s in self._states], clamps)
        for s, p, o, on in zip(self._states, params, opt, self.active, strict=True):
            if on:  # a trial left out of this epoch (stopped, or ahead) keeps its state
                s.params, s.opt = p, o
        if not (b % 50 == 0 or b == self.n_batches - 1):
            return None
        self.energies = energies = np.asarray(metrics.energy, np.float64)
        status = np.asarray(metrics.status)
        for i, t in enumerate(self.trials):
            if self.active[i] and (not np.isfinite(energies[i]) or int(status[i]) != 0):
                raise FloatingPointError(
                    f"trial {t}, epoch {self.epoch}, batch {b}: the energy became "
                    f"{energies[i]} (inference or learning diverged); lower "
                    "inference.learning_rate or optimizer.learning_rate"
                )
        return (float(energies[np.flatnonzero(self.active)[0]]),)

    def end_epoch(self, epoch: int) -> list[tuple[int, PCEpochRecord]]:
        running = np.flatnonzero(self.active)
        seconds = (time.perf_counter() - self.started) / len(running)
        return [(int(i), self._end_epoch(int(i), epoch, float(self.energies[i]), seconds)) for i in running]

    def _end_epoch(self, i: int, epoch: int, train_energy: float, seconds: float) -> PCEpochRecord:
        cfg, s = self.cfg, self._states[i]
        ev = _evaluate(cfg, self.trainer, s.params, self.data.x_val, self.data.y_val)
        record = PCEpochRecord(epoch, train_energy, ev["val_energy"], ev["val_accuracy"], ev["val_mse"], seconds)
        if cfg.train.test_every_epoch and cfg.network.task == "supervised":
            net, bs = self.trainer.network, cfg.train.eval_batch_size
            predicted = predict_labels(net, s.params, self.data.x_test, batch_size=bs)
            record.test_accuracy = float(np.mean(predicted == self.data.y_test))
        s.history.append(record)
        if _better(cfg, record, s.best_score):
            s.best_score, s.best_epoch, s.best_params = _score(cfg, record), epoch, s.params
        return record

    def _best(self, i: int, t: int) -> Any:
        """The best parameters of the group's trial ``i`` (from this run, else from its checkpoint)."""
        s = self._states[i]
        if s.best_params is not None:
            return s.best_params
        return load_run_tree(self.out / f"best{t}", {"params": s.params})[0]["params"]

    def _result(self, i: int, t: int) -> dict:
        cfg, data, net = self.cfg, self.data, self.trainer.network
        history = self._states[i].history
        best_score, best_epoch = self._states[i].best_score, self._states[i].best_epoch
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
            tested = [r for r in history if r.test_accuracy is not None]
            if tested:  # PCX's "best accuracy": the maximum over epochs, selected on the test set itself
                top = max(tested, key=lambda r: r.test_accuracy or 0.0)
                result["test_accuracy_max_over_epochs"] = top.test_accuracy
                result["test_accuracy_max_epoch"] = top.epoch
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
        training_curves(
            trials[0]["history"], out / "curves.png", **curves_for(cfg, len(trials)), best_epoch=trials[0]["best_epoch"]
        )
    summary = {
        **provenance(),
        "model": "pc_network",
        "task": cfg.network.task,
        "network": repr(network),
        "n_trials": len(trials),
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "input_scaling": {"normalize": cfg.data.normalize, "shift": data.shift, "scale": data.scale},
        "train_seconds_total": float(sum(t["train_seconds"] for t in trials)),
        "trials": [{k: v for k, v in t.items() if k != "history"} for t in trials],
    }
    if cfg.network.task == "supervised":
        accs = np.array([t["test_accuracy_forward"] for t in trials])
        summary.update(test_accuracy_forward_mean=float(accs.mean()), test_accuracy_forward_std=float(accs.std()))
        if all("test_accuracy_max_over_epochs" in t for t in trials):
            tops = np.array([t["test_accuracy_max_over_epochs"] for t in trials])
            summary.update(
                test_accuracy_max_over_epochs_mean=float(tops.mean()),
                test_accuracy_max_over_epochs_std=float(tops.std()),
            )
    if write:
        write_json(out / "summary.json", summary)
    return summary
