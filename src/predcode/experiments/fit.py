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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from predcode.data import load_binarized, train_val_split
from predcode.experiments import runlock
from predcode.experiments.atomic import atomic_path, write_json, write_text
from predcode.experiments.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    check_metadata,
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
from predcode.experiments.data_files import check_split, read_data_file
from predcode.experiments.interrupt import deferred_interrupts
from predcode.experiments.loop import TrialGroup, run_epochs
from predcode.experiments.plots import curves_for, training_curves
from predcode.experiments.provenance import provenance
from predcode.experiments.runlock import lock_scope
from predcode.experiments.tensorboard import epoch_scalars
from predcode.experiments.tracking import LOGGERS, check_loggers, open_trackers
from predcode.experiments.train import EpochRecord, MuseumTrials, TrainState
from predcode.experiments.trials import parallel_trials
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig
from predcode.threads import lapack_threads


class RunFolderError(ValueError):
    """The output folder holds another run (use ``--resume`` or ``--force``) or no run to resume."""


def _read_design_matrix(path: str, x_dim: int, what: str) -> np.ndarray:
    return read_data_file(path, what, width=x_dim)


def load_fit_data(cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation design matrices (n, x_dim) in {0, 1} (or [0, 1] without binarize)."""
    d, x_dim = cfg.data, cfg.model.x_dim
    if d.train_file:
        x_tr = _read_design_matrix(d.train_file, x_dim, "data.train_file")
        if d.val_file:
            x_val = _read_design_matrix(d.val_file, x_dim, "data.val_file")
        else:
            check_split(len(x_tr), d.n_val, f"data.train_file {d.train_file}")
            x_tr, _, x_val, _ = train_val_split(x_tr, np.zeros(len(x_tr)), d.n_val, seed=cfg.train.seed)
        if d.binarize:
            x_tr, x_val = (x_tr >= 0.5).astype(np.float32), (x_val >= 0.5).astype(np.float32)
    else:
        images, labels = load_binarized(d.dataset, "train")
        check_split(len(images), d.n_val, f"the {d.dataset} training set")
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


def check_museum_metadata(meta: dict, source: str | Path, expected: GNCNConfig | None = None) -> None:
    """Validate a museum checkpoint's metadata as a ``[model]`` table (and against ``expected``): CheckpointError."""
    check_metadata(meta, GNCNConfig, source=source)
    if "model" in meta and "kind" in meta and meta["model"] != meta["kind"]:
        raise CheckpointError(
            f'{source}: expected "model" to equal "kind" (both name the museum model), found model '
            f"{meta['model']!r} and kind {meta['kind']!r}; the metadata is damaged or edited, save the "
            "checkpoint again (or restore it)"
        )
    if expected is not None:
        check_metadata(meta, GNCNConfig, source=source, expected=expected)


def _load_state(folder: Path, model: GNCN, trainer, trial: int) -> TrainState:
    arrays, meta = load_checkpoint(folder / f"state{trial}")
    best, best_meta = load_checkpoint(folder / f"best{trial}")
    for name, m in (("state", meta), ("best", best_meta)):
        check_museum_metadata(m, folder / f"{name}{trial}.json")
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


class FitGroup(TrialGroup, Protocol):
    """A :class:`~predcode.experiments.loop.TrialGroup` of a run: ``trials`` are its trials' numbers in the run."""

    trials: list[int]


class Family(Protocol):
    """One model family of ``predcode fit``: its data, trial groups, checkpoints, logged scalars and summary.

    :func:`run_fit` is the one fit of every family; a family says only what differs. A record is
    the family's per-epoch result (a dataclass or dict with an ``epoch``).
    """

    def load_data(self, cfg: Any) -> Any:
        """The config's data (read before the run folder is touched, so bad data changes nothing)."""
        ...

    def check(self, cfg: Any, data: Any, *, data_parallel: bool) -> None:
        """Refuse (``ConfigError``) what the config cannot train on this data or these devices."""
        ...

    def groups(
        self, cfg: Any, data: Any, out: Path, *, n_trials: int, resume: bool, data_parallel: bool
    ) -> Iterator[FitGroup]:
        """The run's trials in groups that train together, each made when its turn comes."""
        ...

    def save(self, cfg: Any, out: Path, group: Any, i: int, record: Any) -> None:
        """Checkpoint the group's trial ``i`` after ``record`` (its best model if it improved, its state)."""
        ...

    def rows(self, group: Any, i: int) -> list[dict]:
        """The ``metrics.csv`` rows of the group's trial ``i`` so far."""
        ...

    def scalars(self, group: Any, i: int, record: Any) -> dict[str, float]:
        """What the loggers record for ``record`` (TensorBoard tags)."""
        ...

    def epoch_args(self, group: Any, i: int, record: Any) -> tuple:
        """Extra arguments of ``on_epoch(trial, record, *extra)``."""
        ...

    def result(self, group: Any, i: int) -> dict:
        """The finished trial ``i``'s entry of the summary."""
        ...

    def summary(self, out: Path, cfg: Any, data: Any, results: list[dict], *, write: bool) -> dict:
        """The run's summary (written to ``summary.json``, with the final ``metrics.csv`` and ``curves.png``)."""
        ...


def _epoch(record: Any) -> int:
    return int(record["epoch"] if isinstance(record, dict) else record.epoch)


@fit_session  # Ctrl-C stops at a safe point; the run folder stays locked until the fit returns
def run_fit(
    family: Family,
    cfg: Any,
    out: Path,
    *,
    n_trials: int = 1,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable | None = None,
    on_epoch: Callable | None = None,
    log: Sequence[str] = (),
    data_parallel: bool = False,
) -> dict:
    """Train ``n_trials`` trials (seeds ``train.seed + t``) of ``cfg`` into the run folder ``out``: every family's fit.

    The data are read and checked first; then the run folder is prepared and locked for the
    whole fit (``resume`` continues the run there, refusing config changes that would make its
    history meaningless and recording the safe ones; ``force`` overwrites it) and the resolved
    config written to ``config.toml``. Ctrl-C stops the fit at a safe point (between steps, after
    an epoch's saves; :mod:`predcode.experiments.interrupt`).
    The family's trial groups train through :func:`~predcode.experiments.loop.run_epochs`
    (``train.epochs``, early stopping after ``train.patience`` epochs without improvement); after
    every epoch of every trial its checkpoints and ``metrics.csv`` are written, the trackers
    (``log``: names among :data:`LOGGERS`, :mod:`predcode.experiments.tracking`: ``tensorboard``
    event files in ``out/tb/trial{t}/``, ``mlflow`` and ``wandb`` runs, one a trial) get the family's
    scalars, and ``on_epoch(trial, record, *extra)`` runs. In a multi-process run only process 0 writes.
    """
    check_fit_options(n_trials, log)
    out = Path(out)
    data = family.load_data(cfg)  # fail on data before touching the run folder
    family.check(cfg, data, data_parallel=data_parallel)
    writes = jax.process_index() == 0  # in a multi-process run the others compute the same and write nothing
    if writes:
        prepare_run_folder(out, resume, force, cfg)  # writes config.toml, or checks a resume's changes
    trackers = open_trackers(log, out, cfg, n_trials=n_trials, resume=resume, writes=writes)
    rows: dict[int, list[dict]] = {}
    results: dict[int, dict] = {}
    try:
        for group in family.groups(cfg, data, out, n_trials=n_trials, resume=resume, data_parallel=data_parallel):

            def end(i: int, record: Any, group: FitGroup = group) -> None:
                t = group.trials[i]
                if writes:
                    family.save(cfg, out, group, i, record)
                    rows[t] = family.rows(group, i)  # after every epoch: an interrupted run keeps its table
                    write_metrics_csv(out, [{"trial": k, **r} for k in sorted(rows) for r in rows[k]])
                    if trackers:
                        trackers.log_metrics(t, _epoch(record), family.scalars(group, i, record))
                if on_epoch is not None:
                    on_epoch(t, record, *family.epoch_args(group, i, record))

            run_epochs(group, epochs=cfg.train.epochs, patience=cfg.train.patience, on_batch=on_batch, on_epoch=end)
            results.update({t: family.result(group, i) for i, t in enumerate(group.trials)})
    except BaseException:
        trackers.close(failed=True)
        raise
    summary = family.summary(out, cfg, data, [results[t] for t in range(n_trials)], write=writes)
    trackers.close(artifacts=out)
    return summary


class MuseumFamily(Family):
    """The GNCN museum in :func:`run_fit`: trials vmapped as memory allows, the best model by validation BCE."""

    def load_data(self, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
        return load_fit_data(cfg)

    def check(self, cfg: FitConfig, data, *, data_parallel: bool) -> None:
        check_split_batches(cfg, ("batch_size", "eval_batch_size"), data_parallel)

    def groups(self, cfg: FitConfig, data, out: Path, *, n_trials: int, resume: bool, data_parallel: bool):
        x_tr, x_val = data
        self.model = model = GNCN(cfg.model)
        optimizer = cfg.optimizer.build()
        if data_parallel:
            from predcode.learning.parallel import make_data_parallel_trainer

            trainer = make_data_parallel_trainer(model, optimizer)
        else:
            trainer = make_trainer(model, optimizer)
        # The data are checked once here (shape, finite, range); the loop then calls the compiled step.
        for name, x in (("x_train", x_tr), ("x_val", x_val)):
            model.check_input(x, name)
            if len(x) == 0:
                raise ValueError(f"{name}: expected at least one row, got shape {tuple(x.shape)}")
        # Trials run in groups vmapped together (as many as memory allows, at most train.parallel_trials).
        size = 1 if data_parallel else parallel_trials(model, cfg.train.batch_size, n_trials, cfg.train.parallel_trials)
        for first in range(0, n_trials, size):
            trials = list(range(first, min(first + size, n_trials)))
            states = [
                _load_state(out, model, trainer, t) if resume and (out / f"state{t}.json").exists() else None
                for t in trials
            ]
            group = MuseumTrials(
                trainer,
                x_tr,
                x_val,
                seeds=[cfg.train.seed + t for t in trials],
                batch_size=cfg.train.batch_size,
                eval_batch_size=cfg.train.eval_batch_size,
                states=states,
            )
            group.trials = trials
            yield group

    def save(self, cfg: FitConfig, out: Path, group: MuseumTrials, i: int, record: EpochRecord) -> None:
        state, trial = group.states[i], group.trials[i]
        if state.best_epoch == record.epoch:
            meta = _model_metadata(
                self.model, trial=trial, epoch=record.epoch, val_bce=record.val_bce, val_tod=record.val_tod
            )
            save_checkpoint(out / f"best{trial}", {"params": state.best_params}, meta)
        _save_state(out / f"state{trial}", self.model, state, trial)
        records = [state.initial, *state.history]
        for name, key in (("Lx", "train_bce"), ("ToD", "train_tod"), ("vLx", "val_bce"), ("vToD", "val_tod")):
            with atomic_path(out / f"{name}{trial}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.array([getattr(r, key) for r in records], np.float32), allow_pickle=False)

    def rows(self, group: MuseumTrials, i: int) -> list[dict]:
        state = group.states[i]
        return [asdict(r) for r in [state.initial, *state.history]]

    def scalars(self, group: MuseumTrials, i: int, record: EpochRecord) -> dict[str, float]:
        return epoch_scalars(record)  # a fresh run starts with the untrained model's record, epoch 0

    def epoch_args(self, group: MuseumTrials, i: int, record: EpochRecord) -> tuple:
        return ()

    def result(self, group: MuseumTrials, i: int) -> dict:
        state, trial = group.states[i], group.trials[i]
        best = [state.initial, *state.history][state.best_epoch]
        return {
            "trial": trial,
            "seed": group.seeds[i],
            "epochs_run": state.epoch,
            "best_epoch": state.best_epoch,
            "best_val_bce": best.val_bce,
            "best_val_tod": best.val_tod,
            "history": self.rows(group, i),
        }

    def summary(self, out: Path, cfg: FitConfig, data, results: list[dict], *, write: bool) -> dict:
        return _write_summary(out, cfg, results, len(data[0]), len(data[1]), write=write)


@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def fit(cfg: FitConfig, out: Path, **options: Any) -> dict:
    """Run ``n_trials`` trainings (seeds ``seed, seed + 1, ...``) of a museum config ``cfg`` into the folder ``out``.

    :func:`run_fit` with :class:`MuseumFamily` (``options``: those of :func:`run_fit`). Trials
    train together, vmapped in one jitted step, as many at a time as memory allows (at most
    ``cfg.train.parallel_trials``; 1 trains them one after another); the results agree up to
    float rounding. Every trial is saved after each of its epochs, so ``resume`` continues them all.
    ``on_batch(b, n, bce, tod)``, ``on_epoch(trial, record)`` (a :class:`EpochRecord`; epoch 0
    is the untrained model).

    ``metrics.csv`` is always written; ``log`` names trackers of :mod:`predcode.experiments.tracking`
    (``tensorboard``: event files in ``out/tb/trial{t}/``; ``mlflow``, ``wandb``: a run per trial)
    that get per epoch ``train/bce``, ``train/tod``, ``val/bce``, ``val/tod`` and
    ``time/seconds_per_epoch`` (step 0 is the untrained model).

    ``data_parallel`` splits every batch over all devices of all processes (``jax.devices()``;
    several processes once ``predcode.experiments.distributed.initialize`` has joined them, see
    ``docs/distributed.md``) and trains the trials one after another; only process 0 writes files.
    """
    return run_fit(MuseumFamily(), cfg, out, **options)


def check_split_batches(cfg: Any, names: Sequence[str], data_parallel: bool) -> None:
    """With ``data_parallel``, each ``train.<name>`` must split evenly over the devices (ConfigError)."""
    if not data_parallel:
        return
    n_dev = jax.device_count()
    for name in names:
        size = getattr(cfg.train, name)
        if size % n_dev:
            raise ConfigError(
                f"train.{name}: expected a multiple of the {n_dev} devices the batches are split over, got {size}"
            )


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
        training_curves(
            trials[0]["history"], out / "curves.png", **curves_for(cfg, len(trials)), best_epoch=trials[0]["best_epoch"]
        )
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
    check_loggers(log)  # TrackerError (a ValueError) naming the tracker, or the extra to install


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
    "Family",
    "FitGroup",
    "MuseumFamily",
    "RESUMES",
    "RunFolderBusy",
    "RunFolderError",
    "check_fit_options",
    "check_split_batches",
    "fit",
    "fit_session",
    "load_fit_data",
    "load_run_tree",
    "prepare_run_folder",
    "read_resumes",
    "record_resume",
    "resume_changes",
    "resume_epoch",
    "run_fit",
    "write_metrics_csv",
]
