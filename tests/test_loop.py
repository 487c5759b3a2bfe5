"""The one epoch loop (``predcode.experiments.loop.run_epochs``): its schedule on a scripted group,
and early stopping and vmapped trials in every family's fit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments.checkpoint import load_checkpoint
from predcode.experiments.loop import epoch_order, run_epochs


@dataclass
class _Trial:
    scores: list[float]  # the validation score of epoch e is scores[e - 1]; higher is better
    epoch: int = 0
    best_epoch: int = 0
    best: float = -np.inf
    trained: list[int] = field(default_factory=list)  # epochs this trial trained
    steps: int = 0


class _Scripted:
    """A group whose trials score as scripted: the loop's schedule is all that is tested."""

    n_batches = 3

    def __init__(self, *scores, start=None):
        self.states = [_Trial(list(s)) for s in scores]
        for s, e in zip(self.states, start or [0] * len(scores), strict=True):
            s.epoch = s.best_epoch = e
        self.calls: list[tuple[int, list[bool]]] = []

    def start(self):
        return []

    def begin_epoch(self, epoch, active):
        self.epoch, self.active = epoch, list(map(bool, active))
        self.calls.append((epoch, self.active))

    def train_batch(self, b):
        for s, on in zip(self.states, self.active, strict=True):
            s.steps += on
        return (float(b),) if b == self.n_batches - 1 else None

    def end_epoch(self, epoch):
        out = []
        for i, (s, on) in enumerate(zip(self.states, self.active, strict=True)):
            if not on:
                continue
            s.epoch, score = epoch, s.scores[epoch - 1]
            s.trained.append(epoch)
            if score > s.best:
                s.best, s.best_epoch = score, epoch
            out.append((i, score))
        return out


def test_run_epochs_stops_each_trial_after_patience_epochs_without_improvement():
    group = _Scripted([1, 2, 2, 2, 5, 6], [1, 2, 3, 4, 5, 6])
    seen, batches = [], []
    run_epochs(
        group,
        epochs=6,
        patience=2,
        on_epoch=lambda i, r: seen.append((i, r)),
        on_batch=lambda *a: batches.append(a),
    )
    # Trial 0's best is epoch 2; epochs 3 and 4 do not beat it, so it stops after epoch 4.
    assert group.states[0].trained == [1, 2, 3, 4] and group.states[1].trained == [1, 2, 3, 4, 5, 6]
    assert [a for _, a in group.calls] == [[True, True]] * 4 + [[False, True]] * 2
    assert group.states[0].steps == 4 * 3 and group.states[1].steps == 6 * 3
    assert [i for i, _ in seen] == [0, 1] * 4 + [1, 1]
    assert batches == [(3, 3, 2.0)] * 6  # only the batches whose progress the group reports


def test_run_epochs_without_patience_trains_every_epoch_and_lets_a_trial_behind_catch_up():
    group = _Scripted([1, 1, 1, 1], [1, 1, 1, 1], start=[2, 0])  # trial 0 resumed after epoch 2
    run_epochs(group, epochs=4)
    assert [(e, a) for e, a in group.calls] == [
        (1, [False, True]),
        (2, [False, True]),
        (3, [True, True]),
        (4, [True, True]),
    ]
    assert group.states[0].trained == [3, 4] and group.states[1].trained == [1, 2, 3, 4]
    run_epochs(group, epochs=4)  # nothing left to do
    assert len(group.calls) == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", 10**6 + 1, 10**20])
def test_run_epochs_names_a_bad_epochs_or_patience(bad):
    with pytest.raises(ValueError, match=r"epochs: expected an integer in \[1, 1000000\]"):
        run_epochs(_Scripted([1]), epochs=bad)
    with pytest.raises(ValueError, match=r"patience: expected an integer in \[1, 1000000\] or None"):
        run_epochs(_Scripted([1]), epochs=1, patience=bad)


def test_epoch_order_is_a_function_of_seed_and_epoch_alone():
    a = epoch_order(50, 3, 2)
    assert sorted(a) == list(range(50))
    np.testing.assert_array_equal(a, epoch_order(50, 3, 2))
    assert not np.array_equal(a, epoch_order(50, 3, 3)) and not np.array_equal(a, epoch_order(50, 4, 2))


PC = """
[network]
task = "supervised"
dims = [784, 16, 10]
activation = "tanh"
output_sigma = 100.0

[inference]
T = 4
learning_rate = 0.1

[optimizer]
name = "sgd"
learning_rate = {lr}

[data]
n_train = 128
n_val = 100

[train]
batch_size = 64
eval_batch_size = 100
epochs = 5
patience = 1
seed = 3
"""

MLP = """
[model]
family = "mlp"
sizes = [784, 16, 10]
rule = "backprop"

[data]
n_train = 200
n_val = 100

[train]
batch_size = 50
epochs = 5
patience = 1
seed = 3

[optimizer]
name = "adam"
learning_rate = {lr}
"""


@pytest.mark.parametrize("family", ["pc", "mlp"])
def test_fit_stops_early_in_every_family(tmp_path, family):
    """With a vanishing learning rate the validation accuracy never improves after epoch 1, so
    ``train.patience = 1`` stops each trial after epoch 2 (the museum's early stopping is tested in
    test_training.py)."""
    config = tmp_path / f"{family}.toml"
    config.write_text((PC if family == "pc" else MLP).format(lr=1e-12))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["fit", "--quiet", "--config", str(config), "--out", str(out), "--n-trials", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [t["epochs_run"] if family == "pc" else len(t["epochs"]) for t in summary["trials"]] == [2, 2]
    assert [t["best_epoch"] for t in summary["trials"]] == [1, 1]
    assert json.loads((out / "state1.json").read_text())["epoch"] == 2


def test_mlp_trials_train_vmapped_like_one_after_another(tmp_path):
    config = tmp_path / "mlp.toml"
    config.write_text(MLP.format(lr=3e-3).replace("patience = 1", "patience = 5"))
    runs = {}
    for name, extra in (("together", []), ("apart", ["--set", "train.parallel_trials=1"])):
        out = tmp_path / name
        args = ["fit", "--quiet", "--config", str(config), "--out", str(out), "--n-trials", "2", *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        runs[name] = out
    for t in range(2):
        a, b = (load_checkpoint(runs[n] / f"state{t}")[0] for n in ("together", "apart"))
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=f"trial {t} {key}")
    # Different seeds: the two trials' weights differ.
    a0, a1 = (load_checkpoint(runs["together"] / f"state{t}")[0] for t in range(2))
    key = next(k for k in a0 if k.startswith("params"))
    assert not np.allclose(a0[key], a1[key])


@pytest.mark.slow
def test_mlp_fit_data_parallel_on_two_devices_trains_like_one_device(tmp_path):
    import os
    import subprocess
    import sys

    config = tmp_path / "mlp.toml"
    config.write_text(MLP.format(lr=3e-3).replace("epochs = 5", "epochs = 1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDCODE_") or k == "PREDCODE_DATA"}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "predcode", "fit", "--config", str(config), "--quiet"]
    two = subprocess.run([*cmd, "--out", str(tmp_path / "two"), "--data-parallel"], env=env, capture_output=True)
    assert two.returncode == 0, two.stdout.decode()[-2000:] + two.stderr.decode()[-2000:]
    one = CliRunner().invoke(app, ["fit", "--config", str(config), "--quiet", "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    a, b = load_checkpoint(tmp_path / "two" / "state0")[0], load_checkpoint(tmp_path / "one" / "state0")[0]
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    odd = subprocess.run(
        [*cmd, "--out", str(tmp_path / "odd"), "--data-parallel", "--set", "train.batch_size=49"],
        env=env,
        capture_output=True,
    )
    assert odd.returncode == 2 and b"train.batch_size: expected a multiple of the 2 devices" in odd.stdout + odd.stderr
