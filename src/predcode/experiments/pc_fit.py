"""``predcode fit`` for general PC networks: supervised or generative training with checkpoints and resume.

The run folder matches the museum's (:mod:`predcode.experiments.fit`): ``config.toml``, per trial
``t`` the best model ``best{t}.npz/.json`` and the resume state ``state{t}.npz/.json`` (written
atomically after every epoch), and ``metrics.csv``, ``curves.png`` and ``summary.json`` (with
command, commit, date, machine and training time). Model selection is by validation accuracy
(supervised) or validation energy after inference (generative). Epoch ``e`` shuffles with the seed
``(seed, e)``, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.data import load, to_float, train_val_split
from predcode.experiments.atomic import atomic_path, write_json, write_text
from predcode.experiments.checkpoint import load_checkpoint, save_checkpoint
from predcode.experiments.config import PCFitConfig, build_network, dump_toml
from predcode.experiments.fit import RunFolderError
from predcode.experiments.provenance import provenance
from predcode.learning.pc import PCTrainer
from predcode.models.network import PCNetwork

__all__ = [
    "PCData",
    "PCEpochRecord",
    "clamps_for",
    "load_pc_data",
    "make_pc_trainer",
    "params_from_arrays",
    "params_to_arrays",
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
    """The :class:`PCTrainer` of a config (``n_train`` sets the length of a cosine learning-rate schedule)."""
    total = cfg.train.epochs * max(1, (n_train or 0) // cfg.train.batch_size)
    return PCTrainer(
        network or build_network(cfg),
        optimizer_x=cfg.inference.build(),
        optimizer_p=cfg.optimizer.build(total),
        T=cfg.inference.T,
    )


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


def params_to_arrays(params, prefix: str = "p") -> tuple[dict[str, np.ndarray], list[str]]:
    """Flatten a parameter pytree to checkpoint arrays ``{prefix}_{i}`` and their key paths."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    arrays = {f"{prefix}_{i}": np.asarray(v) for i, (_, v) in enumerate(leaves)}
    return arrays, [jax.tree_util.keystr(path) for path, _ in leaves]


def params_from_arrays(template, arrays: dict, paths: list[str], prefix: str = "p"):
    """Rebuild a pytree shaped like ``template`` from :func:`params_to_arrays`' output (paths checked)."""
    leaves = jax.tree_util.tree_flatten_with_path(template)[0]
    want = [jax.tree_util.keystr(path) for path, _ in leaves]
    if want != list(paths):
        raise RunFolderError(
            f"the checkpoint holds parameters {paths} but the config's network has {want}; "
            "it was written for another network (use another --out)"
        )
    return jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(template), [jnp.asarray(arrays[f"{prefix}_{i}"]) for i in range(len(want))]
    )


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


def _prepare_folder(out: Path, resume: bool, force: bool) -> None:
    has_run = (out / "config.toml").exists()
    if resume and not has_run:
        raise RunFolderError(f"--resume: {out} holds no run to resume (no config.toml); drop --resume")
    if has_run and not resume and not force:
        raise RunFolderError(
            f"--out: {out} already holds a run; pass --resume to continue it or --force to overwrite it"
        )
    out.mkdir(parents=True, exist_ok=True)


def _metadata(cfg: PCFitConfig, **extra) -> dict:
    return {"model": "pc_network", "task": cfg.network.task, "network": asdict(cfg.network), **extra}


def pc_fit(
    cfg: PCFitConfig,
    out: Path,
    *,
    n_trials: int = 1,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, PCEpochRecord], None] | None = None,
) -> dict:
    """Train ``n_trials`` networks (seeds ``seed, seed + 1, ...``) of ``cfg`` into the run folder ``out``."""
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials: expected an integer >= 1, got {n_trials!r}")
    out = Path(out)
    data = load_pc_data(cfg)  # fail on data before touching the run folder
    _prepare_folder(out, resume, force)
    if not resume:
        write_text(out / "config.toml", dump_toml(cfg))
    network = build_network(cfg)
    trainer = make_pc_trainer(cfg, network, n_train=len(data.x_train))
    trials = []
    for trial in range(n_trials):
        trials.append(_fit_trial(cfg, trainer, data, out, trial, resume, on_batch, on_epoch))
    return _write_summary(out, cfg, data, network, trials)


def _fit_trial(cfg, trainer, data, out, trial, resume, on_batch, on_epoch) -> dict:
    net, seed, bs = trainer.network, cfg.train.seed + trial, cfg.train.batch_size
    params = net.init(jax.random.key(seed))
    opt_state = trainer.init(params)
    history: list[PCEpochRecord] = []
    best_score, best_epoch = None, 0
    if resume and (out / f"state{trial}.json").exists():
        arrays, meta = load_checkpoint(out / f"state{trial}")
        params = params_from_arrays(params, arrays, meta["param_paths"], "p")
        opt_state = params_from_arrays(opt_state, arrays, meta["opt_paths"], "opt")
        history = [PCEpochRecord(**r) for r in meta["history"]]
        best_score, best_epoch = meta["best_score"], meta["best_epoch"]
    n = len(data.x_train)
    n_batches = n // bs
    if n_batches < 1:
        raise ValueError(f"train.batch_size: expected at most the {n} training images, got {bs}")
    for epoch in range(len(history) + 1, cfg.train.epochs + 1):
        start = time.perf_counter()
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        for b in range(n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            clamps = clamps_for(cfg, net, data.x_train[idx], data.y_train[idx])
            params, opt_state, metrics = trainer.step(params, opt_state, clamps)
            if b % 50 == 0 or b == n_batches - 1:
                energy = float(metrics.energy)
                if not np.isfinite(energy) or int(metrics.status) != 0:
                    raise FloatingPointError(
                        f"trial {trial}, epoch {epoch}, batch {b}: the energy became "
                        f"{energy} (inference or learning diverged); lower "
                        "inference.learning_rate or optimizer.learning_rate"
                    )
                if on_batch:
                    on_batch(b + 1, n_batches, energy)
        train_energy = float(metrics.energy)
        ev = _evaluate(cfg, trainer, params, data.x_val, data.y_val)
        record = PCEpochRecord(
            epoch, train_energy, ev["val_energy"], ev["val_accuracy"], ev["val_mse"], time.perf_counter() - start
        )
        history.append(record)
        if _better(cfg, record, best_score):
            best_score, best_epoch = _score(cfg, record), epoch
            arrays, paths = params_to_arrays(params)
            save_checkpoint(
                out / f"best{trial}", arrays, _metadata(cfg, trial=trial, param_paths=paths, **asdict(record))
            )
        arrays, paths = params_to_arrays(params)
        opt_arrays, opt_paths = params_to_arrays(opt_state, "opt")
        save_checkpoint(
            out / f"state{trial}",
            {**arrays, **opt_arrays},
            _metadata(
                cfg,
                trial=trial,
                epoch=epoch,
                param_paths=paths,
                opt_paths=opt_paths,
                best_score=best_score,
                best_epoch=best_epoch,
                history=[asdict(r) for r in history],
            ),
        )
        if on_epoch:
            on_epoch(trial, record)
    result = {
        "trial": trial,
        "seed": seed,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_val_score": best_score,
        "train_seconds": float(sum(r.seconds for r in history)),
        "history": [asdict(r) for r in history],
    }
    if cfg.network.task == "supervised":
        arrays, meta = load_checkpoint(out / f"best{trial}")
        best = params_from_arrays(net.init(jax.random.key(0)), arrays, meta["param_paths"])
        result["test_accuracy_forward"] = float(np.mean(predict_labels(net, best, data.x_test) == data.y_test))
        result["test_accuracy_inference"] = _inference_accuracy(cfg, trainer, best, data.x_test, data.y_test)
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


def _write_summary(out: Path, cfg: PCFitConfig, data: PCData, network: PCNetwork, trials: list[dict]) -> dict:
    rows = [{"trial": t["trial"], **r} for t in trials for r in t["history"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "metrics.csv", buf.getvalue())
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
    write_json(out / "summary.json", summary)
    return summary


def _curves(history: list[dict], path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
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
    plt.close(fig)
