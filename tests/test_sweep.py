"""``predcode sweep``: a 2x2 grid on a tiny config trains, is resumable (an interrupted point resumes, a
second call trains nothing), and its table holds each run's summary.json values; bad specs exit 2."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments.config import load_config
from predcode.experiments.registry import fit_run
from predcode.experiments.sweep import (
    SweepError,
    SweepResult,
    parse_grid,
    parse_points,
    plan_sweep,
    point_name,
    run_sweep,
    sweep_figure,
)


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", (rng.random((40, 784)) < 0.2).astype(np.float32))
    np.save(tmp_path / "val.npy", (rng.random((20, 784)) < 0.2).astype(np.float32))
    path = tmp_path / "tiny.toml"
    path.write_text(
        '[model]\nkind = "gncn_t1"\nz_dims = [8, 8, 8]\nK = 5\n\n'
        '[data]\ntrain_file = "train.npy"\nval_file = "val.npy"\n\n'
        "[train]\nepochs = 2\nbatch_size = 20\neval_batch_size = 20\n"
    )
    return path


def _sweep(*args):
    return CliRunner().invoke(app, ["sweep", "--quiet", *args])


def test_grid_and_list_specs_parse_and_name_the_points():
    assert parse_grid(["optimizer.learning_rate=1e-3,3e-4", "model.z_dims=[8,8],[16, 16]"]) == [
        ("optimizer.learning_rate", [1e-3, 3e-4]),
        ("model.z_dims", [[8, 8], [16, 16]]),
    ]
    assert parse_points(["optimizer.learning_rate=1e-3,model.K=20"]) == [
        {"optimizer.learning_rate": 1e-3, "model.K": 20}
    ]
    assert point_name({"optimizer.learning_rate": 1e-3, "model.K": 20}) == "lr=0.001_K=20"
    assert point_name({"model.z_dims": [8, 8], "data.binarize": False}) == "z_dims=8x8_binarize=false"
    # two keys with the same last part are named in full
    assert point_name({"optimizer.learning_rate": 3e-4, "inference.learning_rate": 0.1}) == (
        "optimizer.learning_rate=0.0003_inference.learning_rate=0.1"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "model.K"], "--grid: expected `section.key=value1,value2,...` (e.g. model.K=20,50), got 'model.K'"),
        (["--grid", "model.K=20,"], "--grid: expected `section.key=value1,value2,...`"),
        (["--grid", "model.KK=20,50"], "--grid: "),
        (["--grid", "model.K=20,20"], "--grid: expected distinct values of model.K, got 'model.K=20,20'"),
        (["--grid", "model.K=20", "--grid", "model.K=50"], "--grid: expected each key once, got model.K twice"),
        (["--grid", "model.K=20,0"], "--grid: the point K=0: "),
        (["--list", "model.K"], "--list: expected one point as `key=value,key=value,...`"),
        (["--grid", "model.K=3,5", "--set", "model.K=4"], "--set: expected keys the sweep does not vary, got model.K"),
        ([], "--grid/--list: expected at least one, got neither"),
        (["--grid", "model.K=3,5", "--goal", "best"], "--goal: expected min or max, got 'best'"),
        (["--grid", "model.K=3,5", "--metric", "val bce"], "--metric: expected one of"),
    ],
)
def test_bad_sweep_specs_exit_2_naming_the_option(tiny, tmp_path, args, message):
    result = _sweep("--config", str(tiny), "--out", str(tmp_path / "sw"), *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not any((tmp_path / "sw").glob("*=*"))  # nothing trained


def test_a_2x2_sweep_trains_resumes_an_interrupted_point_and_then_trains_nothing(tiny, tmp_path, monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    out = tmp_path / "sw"
    points = plan_sweep(load_config(tiny), grid=parse_grid(["optimizer.learning_rate=1e-3,3e-2", "model.K=3,5"]))
    names = [p.name for p in points]
    assert names == ["lr=0.001_K=3", "lr=0.001_K=5", "lr=0.03_K=3", "lr=0.03_K=5"]

    def interrupt(trial, record):
        if record.epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C after epoch 1 of the last point is saved

    def fit(cfg, folder, *, resume, force):
        stop = interrupt if folder.name == names[-1] else None
        return fit_run(cfg, folder, resume=resume, force=force, on_epoch=stop)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(points, out, metric="val_bce", fit=fit)
    assert json.loads((out / names[-1] / "state0.json").read_text())["epoch"] == 1
    assert not (out / names[-1] / "summary.json").exists()

    # The command line: three points finished and skipped, the interrupted one resumed (and logged
    # to the sweep's one MLflow store, experiment "sw").
    grid = ["--grid", "optimizer.learning_rate=1e-3,3e-2", "--grid", "model.K=3,5"]
    logs = ["--log", "mlflow"] if importlib.util.find_spec("mlflow") else []
    result = _sweep("--config", str(tiny), "--out", str(out), "--metric", "val_bce", *grid, *logs)
    assert result.exit_code == 0, result.output
    if logs:
        from mlflow.tracking import MlflowClient

        from predcode.experiments.tracking import _file_store_allowed

        uri = (out / "mlruns").resolve().as_uri()
        with _file_store_allowed(uri):
            client = MlflowClient(uri)
            (run,) = client.search_runs([client.get_experiment_by_name("sw").experiment_id])
            history = client.get_metric_history(run.info.run_id, "val/bce")
        with open(out / names[-1] / "metrics.csv") as f:
            last = list(csv.DictReader(f))[-1]
        assert run.info.run_name == names[-1] and run.info.status == "FINISHED"
        assert [(m.step, m.value) for m in history] == [(2, float(last["val_bce"]))]  # the epoch it resumed with
    for name in names[:3]:
        assert f"{name}: finished, skipped" in result.output
    assert f"{names[-1]}: resuming" in result.output
    assert json.loads((out / names[-1] / "state0.json").read_text())["epoch"] == 2
    assert "best: " in result.output and "best_val_bce_mean" in result.output

    # The table holds each run's summary.json value; the best is the lowest.
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == names
    assert list(rows[0]) == ["point", "optimizer.learning_rate", "model.K", "best_val_bce_mean", "best", "status"]
    values = {}
    for r in rows:
        summary = json.loads((out / r["point"] / "summary.json").read_text())
        assert float(r["best_val_bce_mean"]) == summary["best_val_bce_mean"]
        assert float(r["optimizer.learning_rate"]) == summary_lr(out / r["point"])
        values[r["point"]] = summary["best_val_bce_mean"]
    best = min(values, key=values.get)
    assert [r["point"] for r in rows if r["best"] == "True"] == [best]
    assert json.loads((out / "sweep.json").read_text())["best"] == best
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A third call trains nothing: every point is finished.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    again = run_sweep(points, out, metric="val_bce", fit=no_training)
    assert [r["status"] for r in again.rows] == ["done"] * 4
    assert {r["point"]: r["best_val_bce_mean"] for r in again.rows} == values


def summary_lr(folder):
    return load_config(folder / "config.toml").optimizer.learning_rate


def test_a_sweep_folder_holding_another_config_is_refused(tiny, tmp_path):
    out = tmp_path / "sw"
    (out / "K=3").mkdir(parents=True)
    (out / "K=3" / "config.toml").write_text(tiny.read_text().replace("K = 5", "K = 7"))
    result = _sweep("--config", str(tiny), "--out", str(out), "--grid", "model.K=3,4")
    assert result.exit_code == 2, result.output
    assert "holds a run of another config (model.K = 7, the sweep asks for 3)" in " ".join(result.output.split())


MLP = """
[model]
family = "mlp"
sizes = [784, 16, 10]
rule = "backprop"

[data]
n_train = 100
n_val = 100

[train]
batch_size = 50
epochs = 1
seed = 3
"""


def test_an_mlp_list_sweep_uses_the_fit_entry_of_its_family(tmp_path):
    (tmp_path / "mlp.toml").write_text(MLP)
    out = tmp_path / "sw"
    point = "model.rule=fa,optimizer.learning_rate=0.003"
    result = _sweep("--config", str(tmp_path / "mlp.toml"), "--out", str(out), "--list", point)
    assert result.exit_code == 0, result.output
    with open(out / "sweep.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["point"] == "rule=fa_lr=0.003" and row["status"] == "trained" and row["best"] == "True"
    summary = json.loads((out / row["point"] / "summary.json").read_text())
    assert summary["rule"] == row["model.rule"] == "fa"
    assert float(row["best_val_accuracy_mean"]) == summary["best_val_accuracy_mean"]
    assert load_config(out / row["point"] / "config.toml").optimizer.learning_rate == 0.003


def _result(tmp_path, keys, rows, goal="min"):
    scored = [r for r in rows if r["m"] is not None]
    best = (min if goal == "min" else max)(scored, key=lambda r: r["m"])
    return SweepResult(rows, "m", goal, keys, best, tmp_path)


@pytest.mark.parametrize("shape", ["one key", "list"])
def test_the_figure_draws_one_key_as_a_curve_and_points_as_bars(tmp_path, shape):
    if shape == "one key":
        rows = [{"point": f"lr={v:g}", "lr": v, "m": m} for v, m in ((1e-4, 3.0), (1e-3, 1.0), (1e-2, math.nan))]
        result = _result(tmp_path, ["lr"], rows)
    else:
        rows = [{"point": f"p{i}", "a": i, "b": i % 2, "m": 500.0 + i} for i in range(3)]
        result = _result(tmp_path, ["a", "b"], rows, goal="max")
    path = sweep_figure(result, tmp_path / "s.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_sweep_rejects_a_list_key_in_the_grid_too(tiny):
    with pytest.raises(SweepError, match="--grid: expected keys that --list does not set, got model.K in both"):
        plan_sweep(load_config(tiny), grid=[("model.K", [3, 5])], points=[{"model.K": 3}])
