"""Data parallelism: the batch split over 2 devices, and over 2 processes, trains like one device.

Both run in subprocesses (tests/parallel_worker.py): the forced CPU device count is read by XLA
when JAX is imported, and jax.distributed joins whole processes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predcode.learning.step import make_trainer

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "parallel_worker.py"
sys.path.insert(0, str(TESTS))
from parallel_worker import problem, train  # noqa: E402


def _single_device_reference():
    model, batches, weights = problem()
    params, _, bces = train(model, make_trainer(model), batches, weights)
    return {k: np.asarray(v) for k, v in params.items()}, np.array(bces)


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDCODE_") or k == "PREDCODE_DATA"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _compare(out: Path, n_devices: int, n_processes: int) -> None:
    got = np.load(out)
    assert int(got["n_devices"]) == n_devices and int(got["n_processes"]) == n_processes
    assert "batch_size: expected a multiple of the 2 devices" in str(got["refused"]), got["refused"]
    want, bces = _single_device_reference()
    np.testing.assert_allclose(got["bces"], bces, rtol=1e-5)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_data_parallel_step_on_two_devices_equals_the_single_device_step(tmp_path):
    out = tmp_path / "two_devices.npz"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)], env=_env(2), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _compare(out, n_devices=2, n_processes=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_train_to_the_weights_of_one(tmp_path):
    out = tmp_path / "two_processes.npz"
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), address, "2", str(pid)],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    _compare(out, n_devices=2, n_processes=2)


def test_bad_mesh_and_process_arguments_name_the_parameter(monkeypatch):
    from predcode.experiments.distributed import initialize
    from predcode.learning.parallel import data_mesh

    with pytest.raises(ValueError, match="devices: expected at least one device"):
        data_mesh([])
    with pytest.raises(ValueError, match=r"process_id: expected an integer in \[0, 1\], got 2"):
        initialize("localhost:1", num_processes=2, process_id=2)
    monkeypatch.setenv("PREDCODE_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="PREDCODE_NUM_PROCESSES: expected an integer, got 'two'"):
        initialize("localhost:1", process_id=0)
