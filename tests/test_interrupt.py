"""Ctrl-C (SIGINT) ends ``predcode fit`` and ``predcode demo`` with exit 130 at any moment, leaving a
loadable state that ``--resume`` completes (predcode.experiments.interrupt).

The moments: during the first compile, before any state file (a PC network, an MLP, the demo);
right after the first state file appears (the museum's training step compiling: the moment that
used to end in SIGSEGV); mid-epoch and inside a checkpoint save (these two sent by
``interrupt_driver.py`` from inside the process). Each family trains a tiny version of its shipped
config. The processes interrupted while XLA compiles compile for real; the others share a
persistent compilation cache to save time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from predcode.experiments.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "interrupt_driver.py"

MUSEUM = [
    "--config",
    str(ROOT / "configs/mnist/gncn_pdh.toml"),
    *("--set", "model.z_dims=[12,12,18]", "--set", "model.K=5", "--set", "data.n_train=256"),
    *("--set", "data.n_val=64", "--set", "train.batch_size=64", "--set", "train.eval_batch_size=64"),
    *("--set", "train.epochs=3", "--set", "train.patience=none"),
]
FAMILIES = {
    "pc": [
        "--config",
        str(ROOT / "configs/pc/mnist_supervised.toml"),
        *("--set", "network.dims=[784,16,10]", "--set", 'network.names=["x","h","y"]', "--set", "inference.T=2"),
        *("--set", "data.n_train=256", "--set", "data.n_val=100", "--set", "train.batch_size=64"),
        *("--set", "train.eval_batch_size=100", "--set", "train.epochs=2"),
    ],
    "mlp": [
        "--config",
        str(ROOT / "configs/credit/mnist_fa.toml"),
        *("--set", "model.sizes=[784,16,10]", "--set", "data.n_train=256", "--set", "data.n_val=100"),
        *("--set", "train.batch_size=64", "--set", "train.epochs=2"),
    ],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def _start(tmp_path: Path, args: list[str], moment: str = "none", cache: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"}
    if cache is not None:  # a process whose compiles are not the point may take them from the cache
        env.update(
            JAX_COMPILATION_CACHE_DIR=str(cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    return subprocess.Popen(
        [sys.executable, str(DRIVER), moment, *args, *(["--quiet"] if args[0] == "fit" else [])],
        cwd=tmp_path,
        env=env,
        # As a terminal would: a test run in the background (nohup, `&`) inherits SIGINT ignored,
        # and a process that starts with SIGINT ignored rightly keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _sigint_when(proc: subprocess.Popen, path: Path) -> None:
    """Send SIGINT as soon as ``path`` exists (the process is then compiling its next step)."""
    deadline = time.monotonic() + 600
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the process ended before {path.name} appeared: {proc.communicate()[0]}"
    proc.send_signal(signal.SIGINT)


def _finish(proc: subprocess.Popen, rc: int) -> str:
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == rc, output
    assert "Traceback" not in output and "Fatal Python error" not in output, output
    if rc == 130:
        assert "interrupted: " in output, output
    return output


def _epoch(folder: Path) -> int:
    """The epoch of the state checkpoint, loaded and verified (-1: none saved yet)."""
    if not (folder / "state0.json").exists():
        return -1
    return int(load_checkpoint(folder / "state0")[1]["epoch"])


def test_ctrl_c_at_every_moment_of_a_museum_fit_exits_130_and_the_run_resumes(tmp_path, cache):
    out = tmp_path / "run"
    # Right after the first state file appears: the training step is compiling (this used to
    # end in SIGSEGV). The compile and the first step finish, then the run stops.
    proc = _start(tmp_path, ["fit", *MUSEUM, "--out", str(out)])
    _sigint_when(proc, out / "state0.json")
    _finish(proc, 130)
    assert _epoch(out) == 0
    # Mid-epoch (the second batch of the resumed epoch 1): the last finished epoch stays on disk.
    _finish(_start(tmp_path, ["fit", *MUSEUM, "--out", str(out), "--resume"], "batch:2", cache), 130)
    assert _epoch(out) == 0
    # Inside the first save of epoch 1: the save completes, then the run stops.
    _finish(_start(tmp_path, ["fit", *MUSEUM, "--out", str(out), "--resume"], "save:1", cache), 130)
    assert _epoch(out) == 1
    _finish(_start(tmp_path, ["fit", *MUSEUM, "--out", str(out), "--resume"], cache=cache), 0)
    assert _epoch(out) == 3
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 4  # epochs 0..3, none twice
    assert json.loads((out / "summary.json").read_text())["trials"][0]["epochs_run"] == 3


@pytest.mark.parametrize("family", ["pc", "mlp"])
def test_ctrl_c_while_compiling_and_inside_a_save_exits_130_for_every_family(tmp_path, cache, family):
    args, out = FAMILIES[family], tmp_path / "run"
    proc = _start(tmp_path, ["fit", *args, "--out", str(out)])
    _sigint_when(proc, out / "config.toml")  # the training step is compiling, before any state file
    _finish(proc, 130)
    assert _epoch(out) in (-1, 1)
    _finish(_start(tmp_path, ["fit", *args, "--out", str(out), "--resume"], "save:1", cache), 130)
    assert _epoch(out) == 1  # epoch 1's first save was interrupted: it completed, then the run stopped
    _finish(_start(tmp_path, ["fit", *args, "--out", str(out), "--resume"], cache=cache), 0)
    assert _epoch(out) == 2 and (out / "summary.json").exists()


def test_ctrl_c_while_the_demo_compiles_exits_130(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--kind", "gncn_t1", "--n-train", "128", "--n-val", "64"]
    proc = _start(tmp_path, [*args, "--epochs", "1", "--batch-size", "64"])
    _sigint_when(proc, out / "config.toml")
    _finish(proc, 130)
    assert _epoch(out) in (-1, 0) and not (out / "samples.png").exists()
