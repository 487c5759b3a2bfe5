"""Run folders across processes and resumes: ``--resume`` with a changed config, and the folder lock.

A resume refuses a change of any key whose ``resume`` class (declared with the key,
``predcode.schema.setting``) is ``"history"``, naming each key with its old and new value, and
accepts the ``"safe"`` ones, writing them into ``config.toml`` and ``resumes.jsonl``. A run folder
is locked by its process (``flock``): a second process is refused with the folder and the holder's
process id, and a SIGKILLed holder leaves no lock behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments.config import FAMILIES, family_specs, load_config, with_overrides
from predcode.experiments.fit import RunFolderBusy, RunFolderError, prepare_run_folder, read_resumes
from predcode.experiments.runlock import LOCK_NAME
from predcode.schema import RESUME, setting

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "gncn": ROOT / "configs/mnist/gncn_pdh.toml",
    "pc": ROOT / "configs/pc/mnist_supervised.toml",
    "mlp": ROOT / "configs/credit/mnist_fa.toml",
}
# Per family: changes that make the history meaningless (refused) and changes that are safe.
REFUSED = {
    "gncn": {"data.dataset": "fashion-mnist", "optimizer.learning_rate": 0.01, "train.seed": 1, "model.K": 20},
    "pc": {"data.n_train": 1000, "network.activation": "tanh", "inference.T": 5, "train.batch_size": 32},
    "mlp": {"model.rule": "dfa", "data.n_val": 100, "train.epochs": 3, "optimizer.learning_rate": 0.01},
}
SAFE = {
    "gncn": {"train.epochs": 3, "train.patience": "none", "train.eval_batch_size": 100},
    "pc": {"train.epochs": 3, "train.eval_batch_size": 100, "train.parallel_trials": 2},
    "mlp": {"out_dir": "elsewhere"},
}


def test_every_key_of_every_family_is_classified_for_resume():
    for cls in FAMILIES.values():
        for key, spec in family_specs(cls).items():
            assert spec.resume in RESUME, key
        specs = family_specs(cls)
        for key in ("data.dataset", "data.n_train", "train.seed", "train.batch_size", "optimizer.learning_rate"):
            assert specs[key].resume == "history", key
        assert specs["train.epochs"].resume == "schedule"
    assert family_specs(FAMILIES["gncn"])["train.patience"].resume == "safe"
    assert all(s.resume == "history" for k, s in family_specs(FAMILIES["pc"]).items() if k.startswith("network."))
    with pytest.raises(TypeError, match="resume"):
        setting(1, "int", low=1, help="a key declared without its resume class")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Spec.resume: expected one of 'safe', 'history', 'schedule', got 'maybe'"):
        setting(1, "int", high=10, resume="maybe")


def _run(tmp_path: Path, family: str, **changes):
    cfg = load_config(SHIPPED[family])
    if family == "pc":  # a constant learning rate, so that train.epochs is safe to change
        cfg = with_overrides(cfg, **{"optimizer.schedule": "constant"})
    out = tmp_path / family
    prepare_run_folder(out, False, False, cfg)
    return cfg, out


@pytest.mark.parametrize("family", ["gncn", "pc", "mlp"])
def test_resume_refuses_every_history_changing_key_naming_old_and_new(tmp_path, family):
    cfg, out = _run(tmp_path, family)
    written = (out / "config.toml").read_text()
    changes = REFUSED[family]
    for key, value in changes.items():  # one at a time, then all at once
        for dotted in ({key: value}, changes):
            with pytest.raises(RunFolderError) as err:
                prepare_run_folder(out, True, False, with_overrides(cfg, **dotted))
            message = str(err.value)
            for k in dotted:
                old = cfg
                for part in k.split("."):
                    old = getattr(old, part)
                assert f"{k}: {old!r} -> " in message, message
            assert message.startswith("--resume: the config changes what the run in") and "another --out" in message
    assert (out / "config.toml").read_text() == written and read_resumes(out) == []


@pytest.mark.parametrize("family", ["gncn", "pc", "mlp"])
def test_resume_accepts_the_safe_keys_and_records_them_in_config_toml_and_resumes_jsonl(tmp_path, family):
    cfg, out = _run(tmp_path, family)
    prepare_run_folder(out, True, False, cfg)  # the same config: recorded, nothing changed
    new = with_overrides(cfg, **SAFE[family])
    prepare_run_folder(out, True, False, new)
    assert load_config(out / "config.toml") == new
    first, second = read_resumes(out)
    assert first["changed"] == {} and set(second["changed"]) == set(SAFE[family])
    for key, change in second["changed"].items():
        assert change["new"] != change["old"], key
    assert second["time"] and second["from_epoch"] == {}  # no epoch trained yet


def test_a_run_of_another_family_and_a_moved_data_file(tmp_path):
    cfg, out = _run(tmp_path, "gncn")
    with pytest.raises(RunFolderError, match="trained from a museum model's config and the config is a PC network"):
        prepare_run_folder(out, True, False, load_config(SHIPPED["pc"]))
    # A path to the same bytes is no change; the old file gone is accepted and noted.
    import numpy as np

    x = (np.random.default_rng(0).random((40, 784)) > 0.5).astype(np.float32)
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, x)
    base = with_overrides(cfg, **{"data.train_file": str(tmp_path / "a.npy"), "data.n_val": 10})
    run = tmp_path / "own"
    prepare_run_folder(run, False, False, base)
    prepare_run_folder(run, True, False, with_overrides(base, **{"data.train_file": str(tmp_path / "b.npy")}))
    assert read_resumes(run)[-1]["changed"] == {}
    np.save(tmp_path / "b.npy", 1 - x)
    with pytest.raises(RunFolderError, match=r"data.train_file: '.*a.npy' -> '.*b.npy'"):
        prepare_run_folder(run, True, False, with_overrides(base, **{"data.train_file": str(tmp_path / "b.npy")}))
    (tmp_path / "a.npy").unlink()
    prepare_run_folder(run, True, False, with_overrides(base, **{"data.train_file": str(tmp_path / "b.npy")}))
    assert "is gone" in read_resumes(run)[-1]["changed"]["data.train_file"]["note"]


TINY = [
    *("--set", "model.z_dims=[12,12,18]", "--set", "model.K=3", "--set", "data.n_train=128"),
    *("--set", "data.n_val=64", "--set", "train.batch_size=64", "--set", "train.eval_batch_size=64"),
]


def test_cli_resume_refuses_new_data_and_trains_on_with_more_epochs(tmp_path):
    """The issue's case: a one-epoch MNIST run resumed with Fashion-MNIST is refused; with train.epochs=2 it
    trains one more epoch and config.toml says 2."""
    out, runner = tmp_path / "run", CliRunner()
    fit = ["fit", "--config", str(SHIPPED["gncn"]), "--out", str(out), "--quiet", *TINY]
    assert runner.invoke(app, [*fit, "--set", "train.epochs=1"]).exit_code == 0
    metrics = (out / "metrics.csv").read_text()
    bad = ["--set", "data.dataset=fashion-mnist", "--set", "optimizer.learning_rate=0.01"]
    result = runner.invoke(app, [*fit, "--set", "train.epochs=1", "--resume", *bad])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "data.dataset: 'mnist' -> 'fashion-mnist'" in text and "optimizer.learning_rate: 0.001 -> 0.01" in text
    assert "Traceback" not in text and (out / "metrics.csv").read_text() == metrics
    result = runner.invoke(app, [*fit, "--set", "train.epochs=2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resume: train.epochs 1 -> 2" in result.output
    assert load_config(out / "config.toml").train.epochs == 2
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3
    (entry,) = read_resumes(out)
    assert entry["changed"] == {"train.epochs": {"old": 1, "new": 2}} and entry["from_epoch"] == {"0": 2}


# ----------------------------------------------------------------------------------- the lock

HOLDER = """
import sys, time
from pathlib import Path
from predcode.experiments.fit import fit_session, prepare_run_folder

@fit_session
def hold(out):
    prepare_run_folder(out, False, True)
    print("locked", flush=True)
    time.sleep(600)

hold(Path(sys.argv[1]))
"""


@dataclass
class _Holder:
    proc: subprocess.Popen

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)


def _hold(out: Path) -> _Holder:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return _Holder(proc)


def test_a_second_process_is_refused_naming_the_folder_and_the_holder_and_a_killed_holder_leaves_no_lock(tmp_path):
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        with pytest.raises(RunFolderBusy) as err:
            prepare_run_folder(out, False, True)
        message = str(err.value)
        assert f"--out: {out} is in use by process {holder.proc.pid}" in message and "choose another --out" in message
        result = CliRunner().invoke(
            app, ["fit", "--config", str(SHIPPED["gncn"]), "--out", str(out), "--force", "--quiet", *TINY]
        )
        assert result.exit_code == 2 and f"is in use by process {holder.proc.pid}" in result.output, result.output
        assert "Traceback" not in result.output
    finally:
        holder.kill()
    assert (out / LOCK_NAME).exists()  # the file stays; the lock went with the process
    prepare_run_folder(out, False, True)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
