"""``predcode fit`` / ``predcode analyze`` for general PC networks: run folder, resume, configs, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments.checkpoint import load_checkpoint
from predcode.experiments.config import (
    ConfigError,
    PCFitConfig,
    build_network,
    dump_toml,
    load_config,
    parse_toml,
    with_overrides,
)

SMALL = """
[network]
task = "{task}"
dims = {dims}
activation = "tanh"
output_activation = "{out_act}"
output_sigma = {out_sigma}

[inference]
T = 4
learning_rate = 0.1

[optimizer]
name = "adam"
learning_rate = 0.001

[data]
n_train = 256
n_val = 100

[train]
batch_size = 64
eval_batch_size = 100
epochs = {epochs}
seed = 3
"""


def _write(tmp_path, task="supervised", epochs=2):
    dims = "[784, 16, 10]" if task == "supervised" else "[8, 16, 784]"
    out_act = "identity" if task == "supervised" else "sigmoid"
    path = tmp_path / f"{task}.toml"
    path.write_text(
        SMALL.format(
            task=task, dims=dims, out_act=out_act, out_sigma=100.0 if task == "supervised" else 1.0, epochs=epochs
        )
    )
    return path


def test_network_table_dispatches_to_a_pc_config_that_round_trips(tmp_path):
    cfg = load_config(_write(tmp_path))
    assert isinstance(cfg, PCFitConfig) and cfg.network.dims == (784, 16, 10)
    assert parse_toml(dump_toml(cfg)) == cfg
    net = build_network(cfg)
    assert net.names == ("x", "h1", "y") and net.nodes[-1].cell.sigma == 100.0


def test_hidden_transform_puts_the_hidden_layers_in_one_transform():
    cfg = parse_toml('[network]\ntask = "generative"\ndims = [8, 16, 784]\nhidden = "transform"\n')
    net = build_network(cfg)
    assert net.names == ("z", "x") and [d.out_dim for d in net.nodes[1].inputs["z"].layers] == [16, 784]
    with pytest.raises(ConfigError, match=r"network.names: expected 2 distinct names"):
        parse_toml(
            '[network]\ntask = "generative"\ndims = [8, 16, 784]\nhidden = "transform"\nnames = ["z", "h", "x"]\n'
        )


def test_shipped_pc_configs_load():
    for name in ("mnist_supervised", "mnist_generative"):
        cfg = load_config(f"configs/pc/{name}.toml")
        build_network(cfg)


@pytest.mark.parametrize(
    "text, match",
    [
        ('[network]\ntask = "supervised"\ndims = [784, 16, 12]\n', r"network.dims: expected the last size to be 10"),
        ('[network]\ntask = "generative"\ndims = [8, 16, 700]\n', r"network.dims: expected the last size to be 784"),
        ('[network]\ntask = "unsupervised"\n', r"network.task: expected one of 'supervised', 'generative'"),
        ('[network]\ncell = "cauchy"\n', r"network.cell: expected one of 'gaussian', 'laplacian', 'bernoulli'"),
        (
            "[network]\n[inference]\nsteps = 3\n",
            r"unknown key 'inference.steps' in <config>, line 3; \[inference\] takes T, T_eval",
        ),
        ("[network]\n[inference]\nT = -1\n", r"inference.T: expected an integer in \[0, 100000\], got -1"),
    ],
)
def test_bad_pc_configs_name_the_key(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_toml(text)


@pytest.mark.slow  # four short CLI trainings on MNIST data
def test_fit_writes_the_run_folder_and_resume_matches_an_uninterrupted_run(tmp_path):
    runner = CliRunner()
    straight, split = tmp_path / "straight", tmp_path / "split"
    result = runner.invoke(app, ["fit", "--config", str(_write(tmp_path)), "--out", str(straight), "--quiet"])
    assert result.exit_code == 0, result.output
    for name in (
        "config.toml",
        "metrics.csv",
        "curves.png",
        "summary.json",
        "best0.npz",
        "best0.json",
        "state0.npz",
        "state0.json",
    ):
        assert (straight / name).exists(), name
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["task"] == "supervised" and 0.0 <= summary["test_accuracy_forward_mean"] <= 1.0
    assert {"command", "commit", "date", "machine", "train_seconds_total"} <= set(summary)
    result = runner.invoke(app, ["fit", "--config", str(_write(tmp_path)), "--out", str(straight), "--quiet"])
    assert result.exit_code == 2 and "already holds a run" in result.output
    result = runner.invoke(app, ["sample", "--run", str(straight)])  # a supervised network generates nothing
    assert result.exit_code == 2 and "needs a generative PC network" in result.output, result.output
    # One epoch, then --resume with two: the same weights as two epochs in one go.
    (tmp_path / "one").mkdir()
    cfg1 = _write(tmp_path / "one", epochs=1)
    assert runner.invoke(app, ["fit", "--config", str(cfg1), "--out", str(split), "--quiet"]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "fit",
            "--config",
            str(_write(tmp_path)),
            "--out",
            str(split),
            "--quiet",
            "--resume",
            "--set",
            "train.epochs=2",
        ],
    )
    assert result.exit_code == 0, result.output
    a, meta_a = load_checkpoint(straight / "state0")
    b, meta_b = load_checkpoint(split / "state0")
    assert meta_a["epoch"] == meta_b["epoch"] == 2
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow  # a CLI training and analysis on MNIST data
def test_generative_fit_then_analyze_writes_probe_knn_pca_and_grids(tmp_path):
    runner = CliRunner()
    run = tmp_path / "gen"
    result = runner.invoke(
        app, ["fit", "--config", str(_write(tmp_path, "generative", epochs=1)), "--out", str(run), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["analyze", "--run", str(run), "--n-latents", "200", "--n-test", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "analysis0" / "report.json").read_text())
    assert report["representation"] == "code" and report["dim"] == 8
    # --n-latents 200 asks for 20 a class; the 256 training images hold fewer of some classes.
    assert 150 < report["linear_probe"]["n_train"] <= 200 and report["knn"]["n_test"] == 100
    assert 10.0 < report["linear_probe"]["accuracy_pct"] <= 100.0
    for name in ("pca.png", "reconstructions.png", "samples.png"):
        assert (run / "analysis0" / name).stat().st_size > 1000, name
    result = runner.invoke(app, ["sample", "--run", str(run), "-n", "9", "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert "Gaussian fitted to the codes of 256 training images" in result.output
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_trials_train_vmapped_like_one_after_another_and_write_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from predcode.experiments.pc_fit import pc_fit

    cfg = load_config(_write(tmp_path, epochs=1))
    together = pc_fit(cfg, tmp_path / "together", n_trials=2, log=("tensorboard",))
    apart = pc_fit(cfg, tmp_path / "apart", n_trials=2, parallel_trials=1)
    for t in range(2):
        a = load_checkpoint(tmp_path / "together" / f"state{t}")[0]
        b = load_checkpoint(tmp_path / "apart" / f"state{t}")[0]
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=f"trial {t} {name}")
        assert together["trials"][t]["seed"] == 3 + t
        events = EventAccumulator(str(tmp_path / "together" / "tb" / f"trial{t}"))
        events.Reload()
        assert {"train/energy", "val/energy", "val/accuracy"} <= set(events.Tags()["scalars"])
        acc = events.Scalars("val/accuracy")
        assert [e.step for e in acc] == [1]
        np.testing.assert_allclose(acc[0].value, together["trials"][t]["best_val_score"], rtol=1e-6)
    # the two trials differ (their own seeds and data orders)
    a0 = load_checkpoint(tmp_path / "together" / "state0")[0]
    a1 = load_checkpoint(tmp_path / "together" / "state1")[0]
    assert any(not np.allclose(a0[k], a1[k]) for k in a0)
    assert apart["test_accuracy_forward_mean"] == pytest.approx(together["test_accuracy_forward_mean"], abs=0.01)


@pytest.mark.slow
def test_pc_fit_data_parallel_on_two_devices_trains_like_one_device(tmp_path):
    import os
    import subprocess
    import sys

    path = _write(tmp_path, epochs=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDCODE_") or k == "PREDCODE_DATA"}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "predcode", "fit", "--config", str(path), "--quiet", "--n-trials", "2"]
    two = subprocess.run([*cmd, "--out", str(tmp_path / "two"), "--data-parallel"], env=env, capture_output=True)
    assert two.returncode == 0, two.stdout.decode()[-2000:] + two.stderr.decode()[-2000:]
    one = CliRunner().invoke(
        app, ["fit", "--config", str(path), "--quiet", "--n-trials", "2", "--out", str(tmp_path / "one")]
    )
    assert one.exit_code == 0, one.output
    for t in range(2):
        a = load_checkpoint(tmp_path / "two" / f"state{t}")[0]
        b = load_checkpoint(tmp_path / "one" / f"state{t}")[0]
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=f"trial {t} {name}")
    odd = _write(tmp_path, epochs=1).read_text().replace("batch_size = 64", "batch_size = 63")
    (tmp_path / "odd.toml").write_text(odd)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "predcode",
            "fit",
            "--config",
            str(tmp_path / "odd.toml"),
            "--quiet",
            "--data-parallel",
            "--out",
            str(tmp_path / "odd"),
        ],
        env=env,
        capture_output=True,
    )
    assert bad.returncode == 2 and b"train.batch_size: expected a multiple of the 2 devices" in bad.stdout + bad.stderr


def test_test_every_epoch_records_pcx_protocol_beside_the_best_validation_model(tmp_path):
    """Each epoch's test accuracy is that epoch's weights on the test set: the best-validation
    model's test accuracy (computed from its saved weights) is the one in its epoch's row, and the
    summary's maximum is the maximum of the column (PCX's protocol)."""
    import csv

    from predcode.experiments.pc_fit import pc_fit

    cfg = with_overrides(load_config(_write(tmp_path, epochs=3)), **{"train.test_every_epoch": True})
    summary = pc_fit(cfg, tmp_path / "run", n_trials=2)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 6 and all(0.0 < float(r["test_accuracy"]) <= 1.0 for r in rows)
    for t, trial in enumerate(summary["trials"]):
        column = {int(r["epoch"]): float(r["test_accuracy"]) for r in rows if int(r["trial"]) == t}
        assert trial["test_accuracy_forward"] == pytest.approx(column[trial["best_epoch"]], abs=1e-12)
        assert trial["test_accuracy_max_over_epochs"] == max(column.values())
        assert column[trial["test_accuracy_max_epoch"]] == max(column.values())
    tops = [t["test_accuracy_max_over_epochs"] for t in summary["trials"]]
    assert summary["test_accuracy_max_over_epochs_mean"] == pytest.approx(np.mean(tops))
    # without the option: no column, no maximum
    plain = pc_fit(load_config(_write(tmp_path, epochs=1)), tmp_path / "plain")
    assert "test_accuracy_max_over_epochs" not in plain["trials"][0]
    assert "test_accuracy_max_over_epochs_mean" not in plain
    # changing it on resume is refused (it changes what the history holds)
    config, folder = str(_write(tmp_path, epochs=2)), str(tmp_path / "plain")
    args = ["fit", "--config", config, "--out", folder, "--resume", "--quiet", "--set", "train.test_every_epoch=true"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "train.test_every_epoch" in result.output, result.output


def test_the_museum_and_the_mlp_do_not_take_test_every_epoch():
    for path in ("configs/mnist/gncn_pdh.toml", "configs/credit/mnist_fa.toml"):
        with pytest.raises(ConfigError, match="train.test_every_epoch"):
            with_overrides(load_config(path), **{"train.test_every_epoch": True})
