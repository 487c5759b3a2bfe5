"""The command line's progress display (compiling, images/s, time left), flags and shell completion."""

from types import SimpleNamespace

import pytest
from rich.progress import Progress
from typer.testing import CliRunner

import predcode.cli as cli


def test_throughput_counts_from_the_first_batch_of_each_epoch(monkeypatch):
    clock = iter([100.0, 101.0, 101.5, 104.0, 200.0, 200.5, 300.0, 310.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    rate = cli._Throughput(50)
    assert rate(1, 5) == ""  # the first batch may include compiling: nothing to say yet
    assert rate(2, 5) == "  50 img/s  ETA 0:03"  # 1 s a batch, 3 batches left
    assert rate(4, 5) == "  100 img/s  ETA 0:00"  # 3 batches in 1.5 s since batch 1
    assert rate(5, 5) == "  50 img/s  ETA 0:00  validating"
    assert rate(1, 5) == ""  # a new epoch starts the count again
    assert rate(3, 5) == "  200 img/s  ETA 0:00"
    per_trial = cli._Throughput(20, per_trial=True)
    assert per_trial(1, 300) == "" and per_trial(11, 300) == "  20 img/s per trial  ETA 4:49"


def test_fit_says_compiling_then_shows_images_per_second_and_eta(monkeypatch, tmp_path):
    progress = Progress(cli.TextColumn("{task.fields[info]}"), disable=True)
    monkeypatch.setattr(cli, "_progress", lambda quiet: progress)
    seen = {}

    def fake_fit(cfg, folder, *, on_batch, on_epoch, **kwargs):
        info = lambda: progress.tasks[0].fields["info"]
        seen["start"] = info()
        record = SimpleNamespace(epoch=0, train_bce=1.0, train_tod=1.0, val_bce=1.0, val_tod=1.0, seconds=1.0)
        on_epoch(0, record)
        seen["after epoch 0"] = info()
        for b in range(1, 4):
            on_batch(b, 3, 57.0, 20.0)
            seen[f"batch {b}"] = info()
        on_epoch(0, SimpleNamespace(**{**vars(record), "epoch": 1}))
        seen["after epoch 1"] = info()
        return {"best_val_bce_mean": 1.0, "best_val_bce_std": 0.0, "best_val_tod_mean": 1.0, "seconds_per_epoch": 1.0}

    monkeypatch.setattr("predcode.experiments.fit.fit", fake_fit)
    result = CliRunner().invoke(cli.app, ["fit", "--config", "mnist/gncn_t1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert seen["start"] == "compiling, then evaluating the untrained model ..."
    assert seen["after epoch 0"] == "compiling the training step ..."
    assert seen["batch 1"] == "BCE   57.00  ToD   20.00"
    assert "img/s  ETA 0:0" in seen["batch 2"] and seen["batch 3"].endswith("validating")
    assert seen["after epoch 1"] == ""


@pytest.mark.parametrize("flag", ["resume", "force", "quiet", "data-parallel", "distributed"])
def test_boolean_flags_have_a_negative_form(flag):
    result = CliRunner().invoke(cli.app, ["fit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    (line,) = [line for line in result.output.splitlines() if f"--{flag} " in line]
    assert f"--no-{flag}" in line and "<bool>" not in line


def test_shell_completion_is_offered():
    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in result.output and "--show-completion" in result.output
