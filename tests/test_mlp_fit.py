"""``predcode fit`` on an MLP config (``[model] family = "mlp"``) and ``predcode credit mnist`` as its alias.

A tiny MLP (784-32-10, 300 MNIST training images, batch 50, 2 epochs) trained by backprop and by
feedback alignment: the run folder, bit-exact resume against an uninterrupted run, TensorBoard
events read back by tensorboard's own reader, and the usage errors.
"""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments.checkpoint import load_checkpoint, load_tree
from predcode.experiments.config import MLPFitConfig, load_config
from predcode.experiments.credit import RuleRun, load_mnist, load_rule_checkpoint
from predcode.experiments.mlp_fit import mlp_fit
from predcode.learning.rules import FeedbackAlignment
from tensorboard_reader import read_scalars

TINY = """
[model]
family = "mlp"
sizes = [784, 32, 10]
rule = "{rule}"

[data]
dataset = "mnist"
n_train = 300
n_val = 100

[train]
batch_size = 50
epochs = 2
seed = 3

[optimizer]
name = "adam"
learning_rate = 0.003
schedule = "cosine"
"""


def _config(tmp_path, rule: str):
    path = tmp_path / f"tiny_{rule}.toml"
    path.write_text(TINY.format(rule=rule))
    return path


def _fit(*args: str):
    return CliRunner().invoke(app, ["fit", "--quiet", *args])


@pytest.mark.parametrize("rule", ["backprop", "fa"])
def test_fit_trains_an_mlp_config_into_a_run_folder(tmp_path, rule):
    config, out = _config(tmp_path, rule), tmp_path / "run"
    result = _fit("--config", str(config), "--out", str(out), "--n-trials", "2", "--log", "tensorboard")
    assert result.exit_code == 0, result.output
    assert f"trial 1 {rule:8s} epoch  2" in result.output and "angle to backprop" in result.output
    for name in ("config.toml", "metrics.csv", "summary.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    for t in (0, 1):
        for stem in (f"best{t}", f"state{t}"):
            assert (out / f"{stem}.npz").is_file() and (out / f"{stem}.json").is_file()
    # config.toml is the resolved config: it reads back as the same config.
    assert load_config(out / "config.toml") == load_config(config)

    summary = json.loads((out / "summary.json").read_text())
    for key in ("command", "commit", "date", "machine", "jax_version"):
        assert summary[key], key
    assert (summary["model"], summary["rule"], summary["n_trials"]) == ("mlp", rule, 2)
    assert (summary["n_train"], summary["n_val"]) == (300, 100)
    assert [t["seed"] for t in summary["trials"]] == [3, 4]
    trial0 = summary["trials"][0]
    assert [e["epoch"] for e in trial0["epochs"]] == [1, 2]
    assert trial0["angles"][0]["step"] == 0 and trial0["angles"][-1]["epoch"] == 2.0
    assert len(trial0["angles"][-1]["degrees"]) == 2 and len(trial0["angles"][-1]["error_degrees"]) == 1
    best = max(trial0["epochs"], key=lambda e: e["val_accuracy"])
    assert trial0["best_val_accuracy"] == best["val_accuracy"]
    assert trial0["best_test_accuracy"] == best["test_accuracy"]
    if rule == "backprop":
        assert summary["test_accuracy_mean"] > 0.5  # 12 Adam steps on 300 images: far above chance (0.1)
        assert max(trial0["angles"][-1]["degrees"]) < 0.1
    else:
        assert trial0["angles"][-1]["degrees"][0] > 1  # FA's first-layer update is not backprop's

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["epoch"]) for r in rows] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert float(rows[1]["test_accuracy"]) == trial0["test_accuracy"]

    # best{t}: a rule checkpoint with the trial's seeded feedback matrices; state{t}: params, opt_state, rule_state.
    model, loaded_rule, params, rule_state, meta = load_rule_checkpoint(out / "best1")
    assert (
        loaded_rule.name == rule
        and model.sizes == (784, 32, 10)
        and meta["epoch"] == summary["trials"][1]["best_epoch"]
    )
    data = load_mnist(n_val=100, seed=3, n_train=300)
    assert model.accuracy(params, data[4], data[5]) == pytest.approx(summary["trials"][1]["best_test_accuracy"])
    arrays, state_meta = load_checkpoint(out / "state1")
    assert state_meta["epoch"] == 2 and any(k.startswith("opt_state/") for k in arrays)
    if rule == "fa":
        fresh = FeedbackAlignment(key=jax.random.key(4 + 1000)).init(model, params)
        for a, b in zip(rule_state.B, fresh.B):
            np.testing.assert_array_equal(a, b)
        assert [k for k in arrays if k.startswith("rule_state/")] == ["rule_state/B/0"]

    scalars = read_scalars(out / "tb" / "trial0")
    for tag in ("train/loss", "val/accuracy", "test/accuracy", "time/seconds_per_epoch", "angle/layer1"):
        assert [s for s, *_ in scalars[tag]] == [1, 2], tag
    for tag, key in (("train/loss", "train_loss"), ("val/accuracy", "val_accuracy")):
        np.testing.assert_allclose([v for _, v, _ in scalars[tag]], [e[key] for e in trial0["epochs"]], rtol=1e-6)
    np.testing.assert_allclose(
        [v for _, v, _ in scalars["angle/layer1"]],
        [trial0["angles"][-2]["degrees"][0], trial0["angles"][-1]["degrees"][0]],
    )
    assert set(read_scalars(out / "tb" / "trial1")) >= {"train/loss", "val/accuracy"}
    refused = CliRunner().invoke(app, ["analyze", "--run", str(out)])
    assert refused.exit_code == 2 and "is an MLP run" in refused.output and "load_rule_checkpoint" in refused.output


class _Stop(Exception):
    pass


def test_an_interrupted_mlp_fit_resumes_bit_exactly(tmp_path):
    config = _config(tmp_path, "fa")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _fit("--config", str(config), "--out", str(whole), "--n-trials", "2").exit_code == 0

    def stop_after_first_epoch(trial, record, line):
        raise _Stop  # after trial 0's epoch 1 is saved: trial 0 half done, trial 1 not started

    with pytest.raises(_Stop):
        mlp_fit(load_config(config), cut, n_trials=2, on_epoch=stop_after_first_epoch)
    assert json.loads((cut / "state0.json").read_text())["epoch"] == 1 and not (cut / "state1.json").exists()
    again = _fit("--config", str(config), "--out", str(cut), "--n-trials", "2")
    assert again.exit_code == 2 and "pass --resume to continue it or --force to overwrite it" in again.output
    resumed = _fit("--config", str(config), "--out", str(cut), "--n-trials", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "trial 0 fa       epoch  1" not in resumed.output and "trial 0 fa       epoch  2" in resumed.output

    for stem in ("state0", "state1", "best0", "best1"):
        a, meta_a = load_checkpoint(whole / stem)
        b, meta_b = load_checkpoint(cut / stem)
        assert sorted(a) == sorted(b), stem
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{stem} {key}")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    with open(whole / "metrics.csv") as f, open(cut / "metrics.csv") as g:
        assert drop(csv.DictReader(f)) == drop(csv.DictReader(g))
    sw, sc = (json.loads((p / "summary.json").read_text()) for p in (whole, cut))
    for tw, tc in zip(sw["trials"], sc["trials"]):
        assert tw["angles"] == tc["angles"] and tw["best_epoch"] == tc["best_epoch"]

    # The restored state is the one RuleRun continues from: its template's tree, nothing missing or extra.
    cfg = load_config(config)
    assert isinstance(cfg, MLPFitConfig)
    run = RuleRun("fa", load_mnist(n_val=100, seed=3, n_train=300), seed=3, sizes=(784, 32, 10), batch_size=50)
    tree, _ = load_tree(cut / "state0", run.state())
    assert set(tree) == {"params", "opt_state", "rule_state"}


def test_fit_on_an_mlp_config_refuses_bad_input_with_exit_2(tmp_path):
    config = _config(tmp_path, "fa")
    bad = _fit("--config", str(config), "--out", str(tmp_path / "x"), "--set", "model.rule=sgd")
    assert bad.exit_code == 2
    assert "model.rule: expected one of 'backprop', 'fa', 'dfa', 'pc', got 'sgd'" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "x").exists()
    in_file = tmp_path / "bad.toml"
    in_file.write_text(TINY.format(rule="feedback_alignment"))
    bad = _fit("--config", str(in_file), "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2
    assert "line 5: model.rule: expected one of 'backprop', 'fa', 'dfa', 'pc', got 'feedback_alignment'" in bad.output
    bad = _fit("--config", str(config), "--out", str(tmp_path / "x"), "--set", "train.patience=0")
    assert bad.exit_code == 2 and "train.patience: expected an integer in [1, 1000000]" in bad.output
    bad = _fit("--config", str(config), "--out", str(tmp_path / "x"), "--set", "train.batch_size=301")
    assert bad.exit_code == 2 and "train.batch_size: expected at most the 300 training images, got 301" in bad.output
    assert not (tmp_path / "x").exists()  # refused before the run folder was made
    bad = _fit("--config", str(config), "--out", str(tmp_path / "y"), "--resume")
    assert bad.exit_code == 2 and "holds no run to resume" in bad.output


def test_credit_mnist_is_fit_per_rule_and_report_joins_the_rules(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["credit", "mnist", "--rules", "backprop,fa", "--sizes", "784,32,10", "--epochs", "1"]
    args += ["--n-train", "300", "--batch-size", "50", "--out", str(results), "--checkpoints", str(runs)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("backprop", "fa"):
        res = json.loads((results / f"{name}.json").read_text())
        assert res["rule"] == name and res["settings"]["sizes"] == [784, 32, 10]
        assert res["provenance"]["commit"] and res["checkpoint"] == str(runs / name / "best0")
        summary = json.loads((runs / name / "summary.json").read_text())  # a `predcode fit` run folder
        assert summary["trials"][0]["test_accuracy"] == res["test_accuracy"]
        assert load_config(runs / name / "config.toml").model.rule == name
        assert load_rule_checkpoint(runs / name / "best0")[1].name == name
    report = CliRunner().invoke(app, ["credit", "report", "--folder", str(results), "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "r.md").read_text()
    assert "| FeedbackAlignment |" in text and "not recorded" not in text  # provenance came with the runs
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already holds a run" in again.output
    bad = CliRunner().invoke(app, ["credit", "mnist", "--sizes", "784,x,10"])
    assert bad.exit_code == 2 and "--sizes: expected integers, got 'x'" in bad.output
    bad = CliRunner().invoke(app, ["credit", "mnist", "--set", "model.rule=fa"])
    assert bad.exit_code == 2 and "--set: needs --config" in bad.output
    missing = CliRunner().invoke(app, ["credit", "report", "--folder", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "no per-rule results" in missing.output
