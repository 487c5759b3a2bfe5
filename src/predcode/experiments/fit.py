"""``predcode fit``: train a museum model from a config, with trials, checkpoints and resume.

A run folder holds, for each trial ``t``::

    Lx{t}.npy, ToD{t}.npy, vLx{t}.npy, vToD{t}.npy   per-epoch train/validation BCE and ToD
                                                      (entry 0 is the untrained model, as in the walkthrough)
    best{t}.npz + best{t}.json                        the best model by validation BCE (checkpoint format)
    state{t}.npz + state{t}.json                      everything needed to resume after the last epoch

and, once: ``config.toml`` (the resolved config), ``metrics.csv`` (all trials, wall time per epoch),
``curves.png`` and ``summary.json`` (mean and standard deviation over trials of the best validation
BCE and ToD).
"""

from __future__ import annotations

import csv
import filecmp
import functools
import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.data import load_binarized, train_val_split
from predcode.experiments import runlock
from predcode.experiments.atomic import atomic_path, write_json, write_text
from predcode.experiments.checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    load_tree,
    save_checkpoint,
    tree_from_arrays,
    upgrade_arrays,
)
from predcode.experiments.config import (
    ConfigError,
    FitConfig,
    config_to_dict,
    dump_toml,
    family_specs,
    load_config,
)
from predcode.experiments.interrupt import deferred_interrupts
from predcode.experiments.plots import training_curves
from predcode.experiments.provenance import provenance
from predcode.experiments.runlock import lock_scope
from predcode.experiments.tensorboard import EventWriter, epoch_scalars
from predcode.experiments.train import EpochRecord, TrainState, train
from predcode.experiments.trials import parallel_trials, train_trials
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN
from predcode.threads import lapack_threads

LOGGERS = ("csv", "tensorboard")  # csv: metrics.csv, always written


class RunFolderError(ValueError):
    """The output folder holds another run (use ``--resume`` or ``--force``) or no run to resume."""


def _read_design_matrix(path: str, x_dim: int, what: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{what}: file {path} does not exist; fix the path in the config") from None
    except (ValueError, OSError) as err:
        raise ConfigError(f"{what}: {path} is not a readable .npy array without pickles ({err})") from None
    if x.ndim != 2 or x.shape[1] != x_dim:
        raise ConfigError(
            f"{what}: expected a design matrix of shape (n, {x_dim}) (one image a row, "
            f"model.x_dim = {x_dim}), got shape {x.shape} in {path}"
        )
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ConfigError(
            f"{what}: expected finite values in [0, 1] in {path}, got range [{np.nanmin(x)}, {np.nanmax(x)}]"
        )
    return x


def load_fit_data(cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation design matrices (n, x_dim) in {0, 1} (or [0, 1] without binarize)."""
    d, x_dim = cfg.data, cfg.model.x_dim
    if d.train_file:
        x_tr = _read_design_matrix(d.train_file, x_dim, "data.train_file")
        if d.val_file:
            x_val = _read_design_matrix(d.val_file, x_dim, "data.val_file")
        else:
            x_tr, _, x_val, _ = train_val_split(x_tr, np.zeros(len(x_tr)), d.n_val, seed=cfg.train.seed)
        if d.binarize:
            x_tr, x_val = (x_tr >= 0.5).astype(np.float32), (x_val >= 0.5).astype(np.float32)
    else:
        images, labels = load_binarized(d.dataset, "train")
        x_tr, _, x_val, _ = train_val_split(images, labels, d.n_val, seed=cfg.train.seed)
    if d.n_train is not None:
        x_tr = x_tr[: d.n_train]
    return x_tr, x_val


def _model_metadata(model: GNCN, **extra) -> dict:
    return {"model": model.config.kind, **model.config.to_dict(), **extra}


def _save_state(path: Path, model: GNCN, state: TrainState, trial: int) -> None:
    arrays = {"params": state.params, "opt_state": state.opt_state}
    meta = _model_metadata(
        model,
        trial=trial,
        epoch=state.epoch,
        best_epoch=state.best_epoch,
        best_val_bce=state.best_val_bce,
        initial=asdict(state.initial),
        history=[asdict(r) for r in state.history],
    )
    save_checkpoint(path, arrays, meta)


def _load_state(folder: Path, model: GNCN, trainer, trial: int) -> TrainState:
    arrays, meta = load_checkpoint(folder / f"state{trial}")
    best, best_meta = load_checkpoint(folder / f"best{trial}")
    if meta.get("kind") != model.config.kind:
        raise RunFolderError(
            f"state{trial}: it was written for model {meta.get('kind')!r}, "
            f"the config asks for {model.config.kind!r}; use another --out"
        )
    zeros = {k: jnp.zeros(s, jnp.float32) for k, s in model.param_shapes().items()}
    trees = {}
    try:
        for name, stored, stored_meta, like in (
            ("state", arrays, meta, {"params": zeros, "opt_state": trainer.init(zeros)}),
            ("best", best, best_meta, {"params": zeros}),
        ):
            source = str(folder / f"{name}{trial}.npz")
            stored = upgrade_arrays(stored, stored_meta, like, source=source)  # format version 1 too
            # the model's own check first: its message names the array and both shapes
            model.check_params({k[7:]: jnp.asarray(v) for k, v in stored.items() if k.startswith("params/")})
            trees[name] = tree_from_arrays(stored, like, source=source)
    except ValueError as err:
        raise RunFolderError(
            f"--resume: the run in {folder} does not match the config's model ({err}); "
            "resume with the run's own config.toml, or start a new run in another --out"
        ) from None
    return TrainState(
        params=trees["state"]["params"],
        opt_state=trees["state"]["opt_state"],
        epoch=int(meta["epoch"]),
        best_params=trees["best"]["params"],
        best_epoch=int(meta["best_epoch"]),
        best_val_bce=float(meta["best_val_bce"]),
        initial=EpochRecord(**meta["initial"]),
        history=[EpochRecord(**r) for r in meta["history"]],
    )


_RUN_FILES = ("config.toml", "summary.json", "metrics.csv", "best*.json", "state*.json", "Lx*.npy")
RESUMES = "resumes.jsonl"  # one line a --resume: its time, the keys it changed and the epoch they took effect


class RunFolderBusy(RunFolderError):
    """Another process (or thread) is training in the run folder (``predcode fit`` exits 2)."""


def fit_session(fn: Callable) -> Callable:
    """Decorate a family's fit: Ctrl-C stops it at a safe point (:mod:`~predcode.experiments.interrupt`)
    and the run folder it prepares stays locked until it returns (:mod:`~predcode.experiments.runlock`)."""

    @functools.wraps(fn)
    def session(*args: Any, **kwargs: Any) -> Any:
        with deferred_interrupts(), lock_scope():
            return fn(*args, **kwargs)

    return session


def prepare_run_folder(out: Path, resume: bool, force: bool, cfg: Any = None) -> None:
    """Check ``out`` for a fit of any family (``resume`` needs a run there, ``force`` overwrites one),
    create it and lock it for this process; with ``cfg``, write its ``config.toml`` or, on resume,
    check the config against the run's (:func:`resume_changes`) and record the change.

    The lock (``out/.predcode.lock``, see :mod:`predcode.experiments.runlock`) is held until the
    :func:`fit_session` around the caller ends (without one, until this function returns); another
    process, or another thread, gets :class:`RunFolderBusy`.
    """
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out: expected a folder for the run, got the existing file {out}; choose another --out")
    if resume and not (out / "config.toml").exists():
        raise RunFolderError(f"--resume: {out} holds no run to resume (no config.toml); drop --resume")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(
            f"--out: cannot create the folder {out} ({err.strerror or err}); choose another --out"
        ) from None
    try:
        lock = runlock.acquire(out)
    except runlock.FolderLocked as err:
        h = err.holder
        who = f"process {h['pid']}" if "pid" in h else "another process"
        if h.get("host") and h["host"] != socket.gethostname():
            who += f" on {h['host']}"
        since = f", since {h['started']}" if h.get("started") else ""
        command = f": {h['command']}" if h.get("command") else ""
        raise RunFolderBusy(
            f"--out: {out} is in use by {who}{since}{command}; wait for it to end or stop it, "
            "or choose another --out (the lock goes with the process, however it ends)"
        ) from None
    except OSError as err:
        raise RunFolderError(
            f"--out: cannot lock the folder {out} ({err.strerror or err}); choose another --out"
        ) from None
    try:  # the checks under the lock: no other process can be writing the folder now
        has_run = (out / "config.toml").exists()
        if not has_run and not force:
            found = sorted(p.name for pattern in _RUN_FILES for p in out.glob(pattern))
            if found:
                raise RunFolderError(
                    f"--out: {out} holds files of an earlier run ({', '.join(found[:4])}) but "
                    "no config.toml to resume it from; pass --force to overwrite them or "
                    "choose another --out"
                )
        if resume and not has_run:
            raise RunFolderError(f"--resume: {out} holds no run to resume (no config.toml); drop --resume")
        if has_run and not resume and not force:
            raise RunFolderError(
                f"--out: {out} already holds a run; pass --resume to continue it or --force to overwrite it"
            )
        if cfg is not None and not resume:
            write_text(out / "config.toml", dump_toml(cfg))
        elif cfg is not None:
            record_resume(out, cfg)
    finally:
        if not runlock.scoped():  # in a fit_session the lock is held until the session ends
            lock.release()


def _same_value(spec: Any, old: Any, new: Any) -> tuple[bool, str]:
    """Whether a key's old and new values are the same; a path names the same file if its content is equal."""
    if old == new:
        return True, ""
    if spec.kind == "path" and old is not None and new is not None:
        a, b = Path(old), Path(new)
        if not a.exists():
            return True, f"the old file {a} is gone; the new one's content was not compared"
        try:
            if b.exists() and (os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)):
                return True, ""
        except OSError:
            pass
    return False, ""


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"epochs": 2}, "out_dir": None}`` -> ``{"train.epochs": 2, "out_dir": None}``."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def resume_changes(out: Path, cfg: Any) -> tuple[dict[str, dict], list[str]]:
    """The keys ``cfg`` changes against the run's ``config.toml``: ``(accepted, refused)``.

    ``accepted`` maps each safe change (``train.epochs``, ``train.patience``, ...; the key's
    ``resume`` class in :mod:`predcode.schema`) to ``{"old": ..., "new": ...}``; ``refused`` lists
    ``"key: old -> new"`` for every change that would make the epochs already trained meaningless.
    """
    path = out / "config.toml"
    try:
        old = load_config(path)
    except ConfigError as err:
        raise RunFolderError(
            f"--resume: cannot read the run's config ({err}); repair {path} or start a new run in another --out"
        ) from None
    if type(old) is not type(cfg):
        raise RunFolderError(
            f"--resume: the run in {out} was trained from {old.title} and the config is {cfg.title}; "
            f"resume with the run's own config ({path}) or start a new run in another --out"
        )
    specs = family_specs(type(cfg))
    before, after = _flat(config_to_dict(old)), _flat(config_to_dict(cfg))
    cosine = getattr(old.optimizer, "schedule", "constant") == "cosine"
    accepted: dict[str, dict] = {}
    refused: list[str] = []
    for key, spec in specs.items():
        same, note = _same_value(spec, before.get(key), after.get(key))
        if same and not note:
            continue
        change = {"old": before.get(key), "new": after.get(key), **({"note": note} if note else {})}
        if same or spec.resume == "safe" or (spec.resume == "schedule" and not cosine):
            accepted[key] = change
        elif spec.resume == "schedule":
            refused.append(
                f"{key}: {change['old']!r} -> {change['new']!r} (optimizer.schedule = 'cosine' "
                f"decays the learning rate over {key}, so the remaining steps would change)"
            )
        else:
            refused.append(f"{key}: {change['old']!r} -> {change['new']!r}")
    return accepted, refused


def record_resume(out: Path, cfg: Any) -> dict:
    """Check ``cfg`` against the run in ``out`` (:func:`resume_changes`; a refused change is a
    :class:`RunFolderError` naming each key), then write the accepted changes into ``config.toml``
    and append the resume (time, changes, the epoch they take effect per trial) to ``resumes.jsonl``."""
    accepted, refused = resume_changes(out, cfg)
    if refused:
        cosine = getattr(cfg.optimizer, "schedule", "constant") == "cosine"
        specs = family_specs(type(cfg)).items()
        safe = sorted(k for k, s in specs if s.resume == "safe" or (s.resume == "schedule" and not cosine))
        raise RunFolderError(
            f"--resume: the config changes what the run in {out} was trained with: {'; '.join(refused)}. "
            f"These would make its history meaningless; resume with the run's own config "
            f"(--config {out / 'config.toml'}) or start a new run in another --out "
            f"(keys a resume may change: {', '.join(safe)})"
        )
    trials = sorted(int(p.name[5:-5]) for p in out.glob("state*.json") if p.name[5:-5].isdigit())
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "changed": accepted,
        "from_epoch": {str(t): resume_epoch(out, t) + 1 for t in trials},
        "command": " ".join(sys.argv),
    }
    if accepted:
        write_text(out / "config.toml", dump_toml(cfg))
    previous = (out / RESUMES).read_text() if (out / RESUMES).exists() else ""
    write_text(out / RESUMES, previous + json.dumps(entry, sort_keys=True) + "\n")
    return entry


def read_resumes(out: Path) -> list[dict]:
    """The run's resumes, oldest first (``resumes.jsonl``; empty for a run never resumed)."""
    path = Path(out) / RESUMES
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@fit_session  # Ctrl-C stops at a safe point; the run folder stays locked until the fit returns
@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def fit(
    cfg: FitConfig,
    out: Path,
    *,
    n_trials: int = 1,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable | None = None,
    on_epoch: Callable[[int, EpochRecord], None] | None = None,
    log: Sequence[str] = (),
    data_parallel: bool = False,
) -> dict:
    """Run ``n_trials`` trainings (seeds ``seed, seed + 1, ...``) of ``cfg`` into the folder ``out``.

    Trials train together, vmapped in one jitted step, as many at a time as memory allows (at most
    ``cfg.train.parallel_trials``; 1 trains them one after another); the results agree up to float
    rounding. Every trial is saved after each of its epochs, so ``resume`` continues them all.

    ``metrics.csv`` is always written; ``log=("tensorboard",)`` also writes TensorBoard event files
    to ``out/tb/trial{t}/`` (per epoch: ``train/bce``, ``train/tod``, ``val/bce``, ``val/tod``,
    ``time/seconds_per_epoch``; step 0 is the untrained model).

    ``data_parallel`` splits every batch over all devices of all processes (``jax.devices()``;
    several processes once ``predcode.experiments.distributed.initialize`` has joined them, see
    ``docs/distributed.md``) and trains the trials one after another; only process 0 writes files.
    """
    check_fit_options(n_trials, log)
    out = Path(out)
    x_tr, x_val = load_fit_data(cfg)  # fail on data before touching the run folder
    writes = jax.process_index() == 0  # in a multi-process run the others compute the same and write nothing
    if writes:
        prepare_run_folder(out, resume, force, cfg)
    model = GNCN(cfg.model)
    optimizer = cfg.optimizer.build()
    if data_parallel:
        from predcode.learning.parallel import data_mesh, make_data_parallel_trainer

        mesh = data_mesh()
        trainer = make_data_parallel_trainer(model, optimizer, mesh)
        for name, size in (("batch_size", cfg.train.batch_size), ("eval_batch_size", cfg.train.eval_batch_size)):
            if size % mesh.size:
                raise ConfigError(
                    f"train.{name}: expected a multiple of the {mesh.size} devices "
                    f"the batches are split over, got {size}"
                )
    else:
        trainer = make_trainer(model, optimizer)
    states: list[TrainState | None] = [
        _load_state(out, model, trainer, t) if resume and (out / f"state{t}.json").exists() else None
        for t in range(n_trials)
    ]
    writers = [
        EventWriter(out / "tb" / f"trial{t}") if "tensorboard" in log and writes else None for t in range(n_trials)
    ]

    histories: dict[int, list[EpochRecord]] = {}

    def on_epoch_end(trial: int, record: EpochRecord, state: TrainState) -> None:
        if not writes:
            return
        if state.best_epoch == record.epoch:
            save_checkpoint(
                out / f"best{trial}",
                {"params": state.best_params},
                _model_metadata(model, trial=trial, epoch=record.epoch, val_bce=record.val_bce, val_tod=record.val_tod),
            )
        _save_state(out / f"state{trial}", model, state, trial)
        records = [state.initial, *state.history]
        histories[trial] = records  # metrics.csv after every epoch: an interrupted run keeps its table too
        write_metrics_csv(out, [{"trial": t, **asdict(r)} for t in sorted(histories) for r in histories[t]])
        for name, key in (("Lx", "train_bce"), ("ToD", "train_tod"), ("vLx", "val_bce"), ("vToD", "val_tod")):
            with atomic_path(out / f"{name}{trial}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.array([getattr(r, key) for r in records], np.float32), allow_pickle=False)
        writer = writers[trial]
        if writer is not None:  # a fresh run starts with the untrained model's record, epoch 0
            writer.add_scalars(record.epoch, epoch_scalars(record))
        if on_epoch:
            on_epoch(trial, record)

    def on_group_epoch(trials: list[int], i: int, record: EpochRecord, state: TrainState) -> None:
        on_epoch_end(trials[i], record, state)  # i: the trial's index within its vmapped group

    # Trials run in groups vmapped together (as many as memory allows, at most train.parallel_trials);
    # a group of one is the plain training loop.
    group = 1 if data_parallel else parallel_trials(model, cfg.train.batch_size, n_trials, cfg.train.parallel_trials)
    common: dict[str, Any] = dict(
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        optimizer=optimizer,
        eval_batch_size=cfg.train.eval_batch_size,
        patience=cfg.train.patience,
        on_batch=on_batch,
    )
    try:
        for first in range(0, n_trials, group):
            trials = list(range(first, min(first + group, n_trials)))
            if len(trials) == 1:
                t = trials[0]
                states[t] = train(
                    model,
                    x_tr,
                    x_val,
                    seed=cfg.train.seed + t,
                    state=states[t],
                    trainer=trainer,
                    on_epoch=functools.partial(on_epoch_end, t),
                    **common,
                )
            else:
                done = train_trials(
                    model,
                    x_tr,
                    x_val,
                    seeds=[cfg.train.seed + t for t in trials],
                    states=[states[t] for t in trials],
                    on_epoch=functools.partial(on_group_epoch, trials),
                    **common,
                )
                for t, trained in zip(trials, done):
                    states[t] = trained
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()
    summaries = []
    for trial, state in enumerate(states):
        assert state is not None  # every trial was trained above
        best = [state.initial, *state.history][state.best_epoch]
        summaries.append(
            {
                "trial": trial,
                "seed": cfg.train.seed + trial,
                "epochs_run": state.epoch,
                "best_epoch": state.best_epoch,
                "best_val_bce": best.val_bce,
                "best_val_tod": best.val_tod,
                "history": [asdict(r) for r in [state.initial, *state.history]],
            }
        )
    return _write_summary(out, cfg, summaries, len(x_tr), len(x_val), write=writes)


def write_metrics_csv(out: Path, rows: list[dict]) -> None:
    """``out/metrics.csv``: one row a dict (the first row's keys are the columns), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "metrics.csv", buf.getvalue())


def _write_summary(out: Path, cfg: FitConfig, trials: list[dict], n_train: int, n_val: int, write: bool = True) -> dict:
    if write:
        write_metrics_csv(out, [{"trial": t["trial"], **r} for t in trials for r in t["history"]])
        training_curves(trials[0]["history"], out / "curves.png")
    bces = np.array([t["best_val_bce"] for t in trials])
    tods = np.array([t["best_val_tod"] for t in trials])
    summary = {
        **provenance(),
        "model": cfg.model.kind,
        "n_trials": len(trials),
        "n_train": n_train,
        "n_val": n_val,
        "best_val_bce_mean": float(bces.mean()),
        "best_val_bce_std": float(bces.std()),
        "best_val_tod_mean": float(tods.mean()),
        "best_val_tod_std": float(tods.std()),
        "seconds_per_epoch": float(np.mean([r["seconds"] for t in trials for r in t["history"][1:]] or [0.0])),
        "trials": [{k: v for k, v in t.items() if k != "history"} for t in trials],
    }
    if write:
        write_json(out / "summary.json", summary)
    return summary


def check_fit_options(n_trials: Any, log: Sequence[str] | str) -> None:
    """Every family's fit: ``n_trials`` an integer >= 1, ``log`` names among :data:`LOGGERS` (ValueError)."""
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials: expected an integer >= 1, got {n_trials!r}")
    unknown = [name for name in ([log] if isinstance(log, str) else log) if name not in LOGGERS]
    if unknown:
        raise ValueError(f"log: expected names among {', '.join(LOGGERS)}, got {unknown[0]!r}")


def resume_epoch(out: Path, trial: int) -> int:
    """The last finished epoch of ``trial`` in the run folder ``out`` (0 if it has no state yet)."""
    path = out / f"state{trial}.json"
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text()).get("epoch", 0))
    except (ValueError, TypeError, AttributeError):
        return 0  # an unreadable state: loading it says what is wrong


def load_run_tree(path: Path, like: dict, what: str = "network") -> tuple[dict, dict]:
    """:func:`~predcode.experiments.checkpoint.load_tree`; a checkpoint of another model is a RunFolderError."""
    try:
        return load_tree(path, like)
    except CheckpointMismatch as err:
        raise RunFolderError(f"{err}; it was written for another {what} (use another --out)") from None


__all__ = [
    "LOGGERS",
    "RESUMES",
    "RunFolderBusy",
    "RunFolderError",
    "check_fit_options",
    "fit",
    "fit_session",
    "load_fit_data",
    "load_run_tree",
    "prepare_run_folder",
    "read_resumes",
    "record_resume",
    "resume_changes",
    "resume_epoch",
    "write_metrics_csv",
]
