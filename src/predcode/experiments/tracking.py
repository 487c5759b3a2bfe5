"""Experiment trackers: one small interface that every family's fit logs its epochs through.

A :class:`Tracker` has four methods::

    tracker.start(run_name, config)         # config: a nested dict (the TOML layout)
    tracker.log_metrics(step, {"val/bce": 88.2, ...})
    tracker.log_artifact("runs/pdh/summary.json")
    tracker.close()                          # close(failed=True) after an error or Ctrl-C

:data:`TRACKERS` makes one by name (``TRACKERS[name](folder, trial, resume=...)``):

- ``csv``: a long table ``step,metric,value`` (:class:`CsvTracker`). ``predcode fit`` always
  writes its family's own ``metrics.csv``, so in a fit ``--log csv`` is that table and opens no
  tracker;
- ``tensorboard``: event files in ``<run>/tb/trial<t>/`` (:class:`TensorBoardTracker`, written by
  :mod:`predcode.experiments.tensorboard`, no TensorFlow needed);
- ``mlflow``: one MLflow run per trial (:class:`MLflowTracker`), by default in the local file store
  ``<run>/mlruns`` (``MLFLOW_TRACKING_URI`` overrides it; ``MLFLOW_EXPERIMENT_NAME`` names the
  experiment, default ``predcode``);
- ``wandb``: one Weights & Biases run per trial (:class:`WandbTracker`), offline by default
  (``WANDB_MODE`` overrides it) in ``<run>/wandb`` (``WANDB_DIR`` overrides it; ``WANDB_PROJECT``
  names the project, default ``predcode``).

MLflow and wandb are imported only when chosen; without them :func:`check_loggers` raises
:class:`TrackerError` naming the ``track`` extra (``pip install "predcode[track]"``). The fits
open their trackers through :func:`open_trackers`, which keeps one set per trial and remembers
each tracker's run id in ``<run>/tracking.json``, so ``--resume`` continues the same MLflow and
W&B runs.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from predcode.experiments.atomic import write_json

__all__ = [
    "LOGGERS",
    "TRACKERS",
    "CsvTracker",
    "MLflowTracker",
    "RunTrackers",
    "TensorBoardTracker",
    "Tracker",
    "TrackerError",
    "WandbTracker",
    "check_loggers",
    "flatten_config",
    "open_trackers",
]

EXTRA_HINT = 'pip install "predcode[track]"'
RUN_ARTIFACTS = ("config.toml", "summary.json", "metrics.csv", "curves.png")  # logged at the end of a fit


class TrackerError(ValueError):
    """A tracker that is unknown or whose package is not installed (a usage error: exit 2)."""


@runtime_checkable
class Tracker(Protocol):
    """What a fit logs through: a run with a config, scalars per step, files, an end."""

    def start(self, run_name: str, config: Mapping[str, Any]) -> None:
        """Open the run ``run_name`` and record ``config`` (a nested dict, the TOML layout)."""
        ...

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the scalars ``metrics`` (name -> value) at ``step`` (an integer >= 0: the epoch)."""
        ...

    def log_artifact(self, path: str | os.PathLike) -> None:
        """Keep the file ``path`` with the run (where the tracker stores files)."""
        ...

    def close(self, failed: bool = False) -> None:
        """End the run, as failed after an error or an interruption."""
        ...


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"K": 20}}`` -> ``{"model.K": 20}`` (lists stay lists)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TypeError(f"step: expected an integer >= 0, got {step!r}")
    return step


def _import(package: str, tracker: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise TrackerError(
            f"--log {tracker}: the {package} package is not installed ({err}); install the track extra: {EXTRA_HINT}"
        ) from None


# ----- csv and tensorboard ---------------------------------------------------------------------


class CsvTracker:
    """A long CSV table ``step,metric,value`` at ``path`` (appended to, so a resumed run continues it).

    For loops of one's own; ``predcode fit`` writes its family's ``metrics.csv`` itself.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: Any = None

    def start(self, run_name: str, config: Mapping[str, Any]) -> None:
        """Open the table (its header once); the config is not written (it is in config.toml)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed by close())
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(["step", "metric", "value"])
            self._file.flush()

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append one row ``step,metric,value`` per metric (flushed)."""
        if self._file is None:
            raise ValueError(f"CsvTracker for {self.path}: log_metrics before start")
        step = _step(step)
        self._writer.writerows([step, key, repr(float(value))] for key, value in metrics.items())
        self._file.flush()

    def log_artifact(self, path: str | os.PathLike) -> None:
        """A CSV table holds numbers only: the file stays where it is (nothing is copied)."""

    def close(self, failed: bool = False) -> None:
        """Close the file (idempotent)."""
        if self._file is not None and not self._file.closed:
            self._file.close()


class TensorBoardTracker:
    """TensorBoard event files in ``logdir`` (:class:`~predcode.experiments.tensorboard.EventWriter`).

    A resumed run appends a new event file to the same folder; TensorBoard merges them.
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        self.logdir = Path(logdir)
        self._writer: Any = None

    def start(self, run_name: str, config: Mapping[str, Any]) -> None:
        """Open a new event file in ``logdir`` (scalars only: the config is not written)."""
        from predcode.experiments.tensorboard import EventWriter

        self._writer = EventWriter(self.logdir)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One scalar event per metric at ``step``."""
        if self._writer is None:
            raise ValueError(f"TensorBoardTracker for {self.logdir}: log_metrics before start")
        self._writer.add_scalars(_step(step), metrics)

    def log_artifact(self, path: str | os.PathLike) -> None:
        """TensorBoard's event files hold scalars: the file stays in the run folder (nothing is copied)."""

    def close(self, failed: bool = False) -> None:
        """Sync and close the event file."""
        if self._writer is not None:
            self._writer.close()


# ----- mlflow ----------------------------------------------------------------------------------


def _is_local_uri(uri: str) -> bool:
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith(("databricks", "sqlite:")))


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set: allow it for a local
    store while predcode talks to it (a value the user set is kept)."""
    if not _is_local_uri(uri) or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, bool)) or value is None else str(value)


class MLflowTracker:
    """One MLflow run through :class:`mlflow.tracking.MlflowClient` (not the fluent API, so a run the
    caller has active is left alone).

    ``tracking_uri``: default ``MLFLOW_TRACKING_URI``, else the file store ``<folder>/mlruns``.
    ``run_id``: continue that run (a resumed fit), else start a new one in ``experiment`` (default
    ``MLFLOW_EXPERIMENT_NAME``, else ``predcode``). The config becomes the run's parameters (dotted
    keys); a resumed run whose config changed records the new values as tags
    ``predcode.resumed.<key>`` (MLflow keeps a parameter's first value).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.tracking_uri = (
            tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or (Path(folder) / "mlruns").resolve().as_uri()
        )
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "predcode"
        self.run_id = run_id
        self.tags = dict(tags or {})
        self._client: Any = None

    def start(self, run_name: str, config: Mapping[str, Any]) -> None:
        """Create the run (or reopen ``run_id``) and log the config as parameters."""
        _import("mlflow", "mlflow")
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        params = {k: _param_value(v)[:500] for k, v in flatten_config(config).items()}
        with _file_store_allowed(self.tracking_uri):
            client = MlflowClient(self.tracking_uri)
            old = None
            if self.run_id is not None:
                try:
                    old = client.get_run(self.run_id)
                except MlflowException:
                    old = None  # the store no longer has it: start a new run
            if old is not None:
                run_id: str = old.info.run_id
                client.update_run(run_id, status="RUNNING")
                kept = old.data.params
                new = [Param(k, v) for k, v in params.items() if k not in kept]
                changed = [RunTag(f"predcode.resumed.{k}", v) for k, v in params.items() if k in kept and kept[k] != v]
            else:
                exp = client.get_experiment_by_name(self.experiment)
                exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
                run_id = client.create_run(exp_id, run_name=run_name, tags=self.tags).info.run_id
                new, changed = [Param(k, v) for k, v in params.items()], []
            for i in range(0, max(len(new), len(changed)), 100):  # MLflow takes 100 parameters a batch
                client.log_batch(run_id, params=new[i : i + 100], tags=changed[i : i + 100])
        self.run_id, self._client = run_id, client

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One ``log_batch`` of the metrics at ``step``."""
        from mlflow.entities import Metric

        if self._client is None:
            raise ValueError("MLflowTracker: log_metrics before start")
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, _step(step)) for key, value in metrics.items()]
        with _file_store_allowed(self.tracking_uri):
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | os.PathLike) -> None:
        """Copy the file into the run's artifact store."""
        if self._client is None:
            raise ValueError("MLflowTracker: log_artifact before start")
        with _file_store_allowed(self.tracking_uri):
            self._client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        """Mark the run FINISHED (or FAILED)."""
        if self._client is not None:
            with _file_store_allowed(self.tracking_uri):
                self._client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
            self._client = None


# ----- wandb -----------------------------------------------------------------------------------


def _wandb_settings(wandb: Any) -> Any:
    """Quiet settings: no console capture (the progress bar stays the terminal's), no git or code
    snapshot, no system-metrics sampler where the version has the switch."""
    public = dict(console="off", silent=True, disable_git=True, save_code=False)
    try:
        return wandb.Settings(**public, x_disable_stats=True)
    except (TypeError, ValueError):  # a version without the private switch (pydantic's error is a ValueError)
        return wandb.Settings(**public)


class WandbTracker:
    """One Weights & Biases run (``wandb.init(reinit="create_new")``, so trials can be open together).

    ``mode``: default ``WANDB_MODE``, else ``offline`` (nothing leaves the machine; ``wandb sync``
    uploads later). ``dir``: default ``WANDB_DIR``, else ``folder`` (W&B writes ``<dir>/wandb/``).
    ``run_id``: resume that run (``resume="allow"``). The config is logged nested, as in the TOML.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        mode: str | None = None,
        dir: str | os.PathLike | None = None,
        project: str | None = None,
        group: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = Path(dir or os.environ.get("WANDB_DIR") or folder)
        self.project = project or os.environ.get("WANDB_PROJECT") or "predcode"
        self.group = group
        self.run_id = run_id
        self._run: Any = None

    def start(self, run_name: str, config: Mapping[str, Any]) -> None:
        """``wandb.init`` the run (resuming ``run_id`` if given) with the nested config."""
        wandb = _import("wandb", "wandb")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=self.project,
            name=run_name,
            group=self.group,
            id=self.run_id,
            resume="allow" if self.run_id else None,
            dir=str(self.dir),
            mode=self.mode,
            config=dict(config),
            allow_val_change=True,  # a resumed run may change e.g. train.epochs
            reinit="create_new",
            settings=_wandb_settings(wandb),
        )
        self.run_id = self._run.id

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """``run.log(metrics, step=step)``."""
        if self._run is None:
            raise ValueError("WandbTracker: log_metrics before start")
        self._run.log({k: float(v) for k, v in metrics.items()}, step=_step(step))

    def log_artifact(self, path: str | os.PathLike) -> None:
        """Log the file as a W&B artifact of type ``predcode-run-file``."""
        if self._run is None:
            raise ValueError("WandbTracker: log_artifact before start")
        import wandb

        path = Path(path)
        name = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{self._run.id}-{path.name}")
        artifact = wandb.Artifact(name, type="predcode-run-file")
        artifact.add_file(str(path))
        self._run.log_artifact(artifact)

    def close(self, failed: bool = False) -> None:
        """``run.finish`` with exit code 0 (1 if failed)."""
        if self._run is not None:
            self._run.finish(exit_code=1 if failed else 0)
            self._run = None


# ----- the registry and a fit's trackers -------------------------------------------------------

Factory = Callable[..., Tracker]


def _tensorboard(folder: Path, trial: int, **_: Any) -> Tracker:
    return TensorBoardTracker(folder / "tb" / f"trial{trial}")


def _csv(folder: Path, trial: int, **_: Any) -> Tracker:
    return CsvTracker(folder / "tracking" / f"trial{trial}.csv")


def _mlflow(folder: Path, trial: int, *, run_id: str | None = None, **_: Any) -> Tracker:
    tags = {"predcode.trial": str(trial), "predcode.run_folder": str(folder.resolve())}
    return MLflowTracker(folder, run_id=run_id, tags=tags)


def _wandb(folder: Path, trial: int, *, run_id: str | None = None, **_: Any) -> Tracker:
    return WandbTracker(folder, group=folder.resolve().name, run_id=run_id)


# name -> factory(folder, trial, *, run_id=None): the tracker of one trial of the run in ``folder``
TRACKERS: dict[str, Factory] = {"csv": _csv, "tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}
LOGGERS = tuple(TRACKERS)  # the names --log takes
_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # trackers of the track extra
_IN_FIT = ("csv",)  # a fit writes metrics.csv itself


def check_loggers(log: Sequence[str] | str) -> tuple[str, ...]:
    """The tracker names of ``log`` checked: known, and their package installed (:class:`TrackerError`)."""
    names = (log,) if isinstance(log, str) else tuple(log)
    for name in names:
        if name not in TRACKERS:
            raise TrackerError(f"--log: expected one of {', '.join(LOGGERS)}, got {name!r}")
        package = _PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise TrackerError(
                f"--log {name}: the {package} package is not installed; install the track extra: {EXTRA_HINT}"
            )
    return tuple(dict.fromkeys(names))


class RunTrackers:
    """The trackers of one fit: for each trial, one of each name chosen, started on its first metrics.

    ``log_metrics(trial, step, metrics)`` after each epoch; ``close(artifacts=folder)`` at the end logs
    the run folder's :data:`RUN_ARTIFACTS` to every started tracker and closes them;
    ``close(failed=True)`` after an error. With ``writes=False`` (a process other than 0 of a
    multi-process run) nothing is opened.
    """

    def __init__(
        self,
        log: Sequence[str],
        folder: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        n_trials: int = 1,
        resume: bool = False,
        writes: bool = True,
    ) -> None:
        self.names = [n for n in check_loggers(log) if n not in _IN_FIT] if writes else []
        self.folder = Path(folder)
        self.config = dict(config)
        self.n_trials = n_trials
        self.resume = resume
        self._open: dict[int, list[tuple[str, Tracker]]] = {}
        self._ids_path = self.folder / "tracking.json"
        self._ids: dict[str, dict[str, str]] = {}
        if resume and self._ids_path.exists():
            with contextlib.suppress(ValueError, OSError):
                self._ids = json.loads(self._ids_path.read_text())

    def __bool__(self) -> bool:
        return bool(self.names)

    def run_name(self, trial: int) -> str:
        """The run folder's name, with ``/trial<t>`` when the fit has several trials."""
        name = self.folder.resolve().name
        return name if self.n_trials == 1 else f"{name}/trial{trial}"

    def _trackers(self, trial: int) -> list[tuple[str, Tracker]]:
        if trial not in self._open:
            self._open[trial] = opened = []
            for name in self.names:
                run_id = self._ids.get(name, {}).get(str(trial)) if self.resume else None
                tracker = TRACKERS[name](self.folder, trial, run_id=run_id)
                with _tracker_errors(name, "start its run"):
                    tracker.start(self.run_name(trial), {**self.config, "trial": trial})
                opened.append((name, tracker))
                new_id = getattr(tracker, "run_id", None)
                if new_id is not None and new_id != run_id:
                    self._ids.setdefault(name, {})[str(trial)] = new_id
                    write_json(self._ids_path, self._ids)
        return self._open[trial]

    def log_metrics(self, trial: int, step: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch of ``trial`` (non-finite values too) to each of its trackers."""
        if not self.names:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        for name, tracker in self._trackers(trial):
            with _tracker_errors(name, f"log epoch {step}"):
                tracker.log_metrics(step, clean)

    def close(self, failed: bool = False, artifacts: str | os.PathLike | None = None) -> None:
        """Close every started tracker; unless ``failed``, log the files of ``artifacts`` (a run folder) first.

        After a failure (``failed=True``) a tracker's own error is not raised over the one that
        stopped the fit.
        """
        files = [] if failed or artifacts is None else [Path(artifacts) / n for n in RUN_ARTIFACTS]
        trackers, self._open = self._open, {}
        first: TrackerError | None = None
        for trial in sorted(trackers):
            for name, tracker in trackers[trial]:
                try:
                    with _tracker_errors(name, "close its run"):
                        try:
                            for path in files:
                                if path.is_file():
                                    tracker.log_artifact(path)
                        finally:
                            tracker.close(failed=failed)
                except TrackerError as err:
                    first = first or err
        if first is not None and not failed:
            raise first


@contextlib.contextmanager
def _tracker_errors(name: str, what: str) -> Iterator[None]:
    """A tracker library's error as one :class:`TrackerError` naming the tracker (the CLI: exit 1)."""
    try:
        yield
    except TrackerError:
        raise
    except Exception as err:
        raise TrackerError(f"--log {name}: could not {what} ({type(err).__name__}: {err})") from err


def open_trackers(
    log: Sequence[str],
    folder: str | os.PathLike,
    cfg: Any,
    *,
    n_trials: int = 1,
    resume: bool = False,
    writes: bool = True,
) -> RunTrackers:
    """The :class:`RunTrackers` of a fit of ``cfg`` (any family's config) into ``folder``."""
    from predcode.experiments.config import config_to_dict

    return RunTrackers(
        log, folder, {**config_to_dict(cfg), "n_trials": n_trials}, n_trials=n_trials, resume=resume, writes=writes
    )
