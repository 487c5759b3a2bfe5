"""Experiment trackers: every family's fit logs through one interface; the runs are read back with
each library's own reader (MLflow's MlflowClient on the file store, TensorBoard's EventAccumulator,
the offline W&B transaction log decoded with wandb's protobuf schema) and compared with metrics.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments import tracking
from predcode.experiments.tracking import CsvTracker, MLflowTracker, TrackerError, check_loggers
from tensorboard_reader import read_scalars
from wandb_reader import offline_runs, read_offline_run


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network: W&B offline and quiet, no error reports or telemetry, caches inside tmp_path."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_ARTIFACT_DIR": str(tmp_path / "wandb-artifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _mlflow_client(folder):
    pytest.importorskip("mlflow", reason="mlflow (the track extra) is not installed")
    from mlflow.tracking import MlflowClient

    uri = (folder / "mlruns").resolve().as_uri()
    with tracking._file_store_allowed(uri):  # MLflow 3 asks for MLFLOW_ALLOW_FILE_STORE
        return MlflowClient(uri)


def _mlflow_run(folder, trial=0):
    """The MLflow run of ``trial`` in the run folder's store, read by MLflow's own client."""
    client = _mlflow_client(folder)
    run_id = json.loads((folder / "tracking.json").read_text())["mlflow"][str(trial)]
    with tracking._file_store_allowed(client.tracking_uri):
        run = client.get_run(run_id)
        history = {
            key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
            for key in run.data.metrics
        }
        artifacts = sorted(a.path for a in client.list_artifacts(run_id))
    return run, history, artifacts


def _metrics_csv(folder, trial=0):
    with open(folder / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if int(r["trial"]) == trial]


def _wandb_history(folder, run_id):
    """Every offline W&B run folder of ``run_id`` (a resumed run adds one), joined by step."""
    rows = {}
    for path in offline_runs(folder):
        run = read_offline_run(path)
        if run["id"] == run_id:
            assert run["exit_code"] == 0
            for row in run["history"]:
                rows[row["_step"]] = row
    return [rows[s] for s in sorted(rows)]


def _fit(*args):
    return CliRunner().invoke(app, ["fit", "--quiet", *args])


def _museum_config(tmp_path, epochs=1):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", (rng.random((40, 784)) < 0.2).astype(np.float32))
    np.save(tmp_path / "val.npy", (rng.random((20, 784)) < 0.2).astype(np.float32))
    path = tmp_path / "tiny.toml"
    path.write_text(
        '[model]\nkind = "gncn_t1"\nz_dims = [8, 8, 8]\nK = 5\n\n'
        '[data]\ntrain_file = "train.npy"\nval_file = "val.npy"\n\n'
        f"[train]\nepochs = {epochs}\nbatch_size = 20\neval_batch_size = 20\n"
    )
    return path


def test_loggers_are_checked_by_name_and_a_missing_package_names_the_track_extra(monkeypatch, tmp_path):
    assert tracking.LOGGERS == ("csv", "tensorboard", "mlflow", "wandb")
    assert check_loggers(["tensorboard", "csv", "tensorboard"]) == ("tensorboard", "csv")
    with pytest.raises(TrackerError, match="--log: expected one of csv, tensorboard, mlflow, wandb, got 'neptune'"):
        check_loggers(["neptune"])
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(TrackerError, match=r'--log wandb: the wandb package is not installed.*"predcode\[track\]"'):
        check_loggers(["wandb"])
    result = _fit("--config", str(_museum_config(tmp_path)), "--out", str(tmp_path / "run"), "--log", "wandb")
    assert result.exit_code == 2 and 'pip install "predcode[track]"' in result.output, result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written
    result = _fit("--config", str(_museum_config(tmp_path)), "--out", str(tmp_path / "run"), "--log", "mlflw")
    assert (
        result.exit_code == 2 and "--log: expected one of csv, tensorboard, mlflow, wandb, got 'mlflw'" in result.output
    )


def test_csv_tracker_writes_a_long_table_and_a_restart_appends(tmp_path):
    path = tmp_path / "t" / "m.csv"
    for steps in ((0, 1), (2,)):
        tracker = CsvTracker(path)
        tracker.start("x", {})
        for s in steps:
            tracker.log_metrics(s, {"val/bce": 1.0 / (s + 1), "n": s})
        tracker.close()
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "metric", "value"]
    assert [(int(s), k, float(v)) for s, k, v in rows[1:]] == [
        (0, "val/bce", 1.0),
        (0, "n", 0.0),
        (1, "val/bce", 0.5),
        (1, "n", 1.0),
        (2, "val/bce", 1 / 3),
        (2, "n", 2.0),
    ]
    tracker = CsvTracker(tmp_path / "y.csv")
    with pytest.raises(ValueError, match="log_metrics before start"):
        tracker.log_metrics(0, {})
    tracker.start("y", {})
    with pytest.raises(TypeError, match="step: expected an integer >= 0, got 1.5"):
        tracker.log_metrics(1.5, {})  # type: ignore[arg-type]
    tracker.close()


def test_mlflow_tracker_honours_the_tracking_uri_variable(monkeypatch, tmp_path):
    client = _mlflow_client(tmp_path / "elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sweeps")
    tracker = MLflowTracker(tmp_path / "run")
    tracker.start("r", {"model": {"K": 20, "z_dims": [8, 8]}, "train": {"patience": None}})
    tracker.log_metrics(3, {"val/bce": 88.25})
    tracker.close()
    assert not (tmp_path / "run").exists()
    with tracking._file_store_allowed(client.tracking_uri):
        run = client.get_run(tracker.run_id)
        assert client.get_experiment(run.info.experiment_id).name == "sweeps"
        assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "val/bce")] == [(3, 88.25)]
    assert run.data.params == {"model.K": "20", "model.z_dims": "[8, 8]", "train.patience": "null"}
    assert run.info.status == "FINISHED"


def test_museum_fit_logs_to_mlflow_wandb_and_tensorboard_and_resume_continues_the_same_runs(tmp_path):
    config, out = _museum_config(tmp_path, epochs=1), tmp_path / "run"
    logs = ["--log", "mlflow", "--log", "wandb", "--log", "tensorboard"]
    assert _fit("--config", str(config), "--out", str(out), *logs).exit_code == 0
    first = json.loads((out / "tracking.json").read_text())
    result = _fit("--config", str(config), "--out", str(out), "--resume", "--set", "train.epochs=2", *logs)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "tracking.json").read_text()) == first  # the same MLflow and W&B runs
    rows = _metrics_csv(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    columns = {"train/bce": "train_bce", "train/tod": "train_tod", "val/bce": "val_bce", "val/tod": "val_tod"}

    run, history, artifacts = _mlflow_run(out)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model.kind"] == "gncn_t1" and run.data.params["model.z_dims"] == "[8, 8, 8]"
    assert run.data.params["train.epochs"] == "1" and run.data.tags["predcode.resumed.train.epochs"] == "2"
    for tag, column in columns.items():
        assert history[tag] == [(int(r["epoch"]), float(r[column])) for r in rows], tag
    assert [s for s, _ in history["time/seconds_per_epoch"]] == [1, 2]
    assert artifacts == ["config.toml", "curves.png", "metrics.csv", "summary.json"]

    wandb_rows = _wandb_history(out, first["wandb"]["0"])
    assert [h["_step"] for h in wandb_rows] == [0, 1, 2]
    for tag, column in columns.items():
        assert [h[tag] for h in wandb_rows] == [float(r[column]) for r in rows], tag
    last = read_offline_run(offline_runs(out)[-1])
    assert last["config"]["model"]["kind"] == "gncn_t1" and last["config"]["train"]["epochs"] == 2
    assert last["name"] == "run" and last["project"] == "predcode"
    assert sorted(a.split("-", 1)[1] for a in last["artifacts"]) == [
        "config.toml",
        "curves.png",
        "metrics.csv",
        "summary.json",
    ]

    scalars = read_scalars(out / "tb" / "trial0")  # TensorBoard as before: one event file per session
    for tag, column in columns.items():
        np.testing.assert_allclose([v for _, v, _ in scalars[tag]], [float(r[column]) for r in rows], rtol=1e-6)


PC = """
[network]
task = "supervised"
dims = [784, 16, 10]
activation = "tanh"
output_activation = "identity"
output_sigma = 100.0

[inference]
T = 4
learning_rate = 0.1

[data]
n_train = 128
n_val = 100

[train]
batch_size = 64
eval_batch_size = 100
epochs = 2
seed = 3
"""

MLP = """
[model]
family = "mlp"
sizes = [784, 16, 10]
rule = "fa"

[data]
n_train = 100
n_val = 100

[train]
batch_size = 50
epochs = 2
seed = 3
"""


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        (PC, {"train/energy": "train_energy", "val/energy": "val_energy", "val/accuracy": "val_accuracy"}),
        (MLP, {"train/loss": "train_loss", "val/accuracy": "val_accuracy", "test/accuracy": "test_accuracy"}),
    ],
    ids=["pc-network", "mlp"],
)
def test_pc_network_and_mlp_fits_log_to_mlflow_and_wandb(tmp_path, text, columns):
    (tmp_path / "c.toml").write_text(text)
    out = tmp_path / "run"
    result = _fit("--config", str(tmp_path / "c.toml"), "--out", str(out), "--log", "mlflow", "--log", "wandb")
    assert result.exit_code == 0, result.output
    rows = _metrics_csv(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    run, history, artifacts = _mlflow_run(out)
    assert run.info.status == "FINISHED" and "summary.json" in artifacts
    ids = json.loads((out / "tracking.json").read_text())
    wandb_rows = _wandb_history(out, ids["wandb"]["0"])
    for tag, column in columns.items():
        expected = [(int(r["epoch"]), float(r[column])) for r in rows]
        assert history[tag] == expected, tag
        assert [(h["_step"], h[tag]) for h in wandb_rows] == expected, tag


def test_a_tracker_that_cannot_start_is_one_error_naming_it(monkeypatch, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow (the track extra) is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")  # refused by MLflow, no network
    trackers = tracking.RunTrackers(["tensorboard", "mlflow"], tmp_path / "run", {"model": {"K": 5}})
    with pytest.raises(TrackerError, match=r"--log mlflow: could not start its run \(\w+Exception: .*nosuchscheme"):
        trackers.log_metrics(0, 0, {"val/bce": 1.0})
    trackers.close(failed=True)  # the TensorBoard file it had opened is closed, nothing raised over the error
    assert len(read_scalars(tmp_path / "run" / "tb" / "trial0")) == 0
