"""Nothing lost: a process SIGKILLed while it writes a checkpoint always leaves the previous one loadable.

A driver process imports predcode once, then, for each iteration, forks a writer that saves a
checkpoint pair (``save_checkpoint``) and a result file (``write_json``) over and over, each save
numbered ``i``. The writer reports every finished save through a pipe. After a random (seeded) delay
the driver SIGKILLs the writer and tells this test which save was the last one reported finished;
the test then loads and verifies the checkpoint and the result file in its own process. They must
hold save ``last`` or the one in flight (``last + 1``), never a mix, never an error. Half of the
writers widen the window between the two renames of a checkpoint save, so that kills land between
them too (the case in which the ``.npz`` is already new and the ``.json`` still old).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np

from predcode.experiments.checkpoint import load_checkpoint, verify_checkpoint

KILLS = 16
SEED = 20261127

DRIVER = r"""
import json, os, random, signal, sys, time, traceback
import numpy as np
from predcode.experiments import checkpoint
from predcode.experiments.atomic import write_json

folder, kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stem, result = os.path.join(folder, "state"), os.path.join(folder, "result.json")
rng = random.Random(seed)
last = -1


def writer(first, widen, done_w):
    if widen:  # hold the window between the npz and the json rename open for 50 ms
        real = os.replace
        def slow_replace(src, dst):
            if str(dst).endswith("state.json"):
                time.sleep(0.05)
            return real(src, dst)
        os.replace = slow_replace
    i = first
    while True:
        arrays = {"W": np.full((256, 256), i, np.float32), "opt_0": np.full((4096,), -i, np.float64)}
        checkpoint.save_checkpoint(stem, arrays, {"i": i})
        write_json(result, {"i": i, "pad": "x" * 65536})
        os.write(done_w, f"{i}\n".encode())
        i += 1


for k in range(kills):
    done_r, done_w = os.pipe()
    widen = k % 2 == 1
    pid = os.fork()
    if pid == 0:
        os.close(done_r)
        try:
            writer(last + 1, widen, done_w)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(done_w)
    buf = b""
    deadline = time.time() + 30
    while b"\n" not in buf and time.time() < deadline:  # let at least one save finish first
        buf += os.read(done_r, 64)
    time.sleep(rng.uniform(0.0, 0.25))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.set_blocking(done_r, False)
    try:
        while chunk := os.read(done_r, 1 << 16):
            buf += chunk
    except BlockingIOError:
        pass
    os.close(done_r)
    done = [int(s) for s in buf.split()]
    last = max(done)
    print(json.dumps({"kill": k, "last_done": last, "widened": widen}), flush=True)
    if sys.stdin.readline().strip() != "go":
        break
    # The test may have read a pair the in-flight save committed: continue numbering after it.
    with open(os.path.join(folder, "next")) as f:
        last = int(f.read())
"""


def _check_iteration(folder, last_done: int) -> tuple[int, bool]:
    """Load and verify what the killed writer left; return (save number found, recovered from .prev)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arrays, meta = load_checkpoint(folder / "state")
        verify_checkpoint(folder / "state")
    i = meta["i"]
    assert i in (last_done, last_done + 1), f"found save {i}, the last finished save was {last_done}"
    np.testing.assert_array_equal(arrays["W"], np.full((256, 256), i, np.float32))  # never a mix
    np.testing.assert_array_equal(arrays["opt_0"], np.full((4096,), -i, np.float64))
    result = json.loads((folder / "result.json").read_text())
    assert result["i"] in (last_done, last_done + 1) and len(result["pad"]) == 65536
    return max(i, result["i"]), any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_sigkill_at_random_moments_never_loses_the_previous_checkpoint(tmp_path):
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(KILLS), str(SEED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kills, recovered, seen = 0, 0, []
    started = time.time()
    try:
        for line in driver.stdout:
            report = json.loads(line)
            found, from_backup = _check_iteration(tmp_path, report["last_done"])
            kills += 1
            recovered += from_backup
            seen.append(found)
            (tmp_path / "next").write_text(str(found))
            driver.stdin.write("go\n")
            driver.stdin.flush()
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
    assert driver.returncode == 0, driver.stderr.read()
    assert kills == KILLS, f"only {kills} of {KILLS} kills were checked"
    assert seen == sorted(seen) and seen[-1] >= KILLS - 1, "the writers made progress between kills"
    # After the last kill, one more ordinary save tidies whatever the kill left behind.
    from predcode.experiments.atomic import write_json
    from predcode.experiments.checkpoint import save_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the last kill may have hit the window
        arrays, meta = load_checkpoint(tmp_path / "state")
    save_checkpoint(tmp_path / "state", arrays, meta)
    write_json(tmp_path / "result.json", {"i": meta["i"]})
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "next")
    assert left == ["result.json", "state.json", "state.npz"], left
    print(
        f"{kills} kills in {time.time() - started:.1f} s; {recovered} loads recovered the previous pair from "
        "state.npz.prev"
    )


STAGES = ("npz-temp", "json-temp", "between-renames", "after-renames")

STAGE_DRIVER = r"""
import os, sys
import numpy as np
from predcode.experiments import checkpoint

folder = sys.argv[1]
for stage in sys.argv[2:]:
    pid = os.fork()
    if pid == 0:  # the writer dies at exactly this stage of its save
        real_replace, real_fsync = os.replace, os.fsync
        fsyncs = []
        def fsync(fd):
            real_fsync(fd)
            fsyncs.append(fd)
            if (stage, len(fsyncs)) in (("npz-temp", 1), ("json-temp", 2)):
                os._exit(9)
        def replace(src, dst):
            if stage == "between-renames" and str(dst).endswith(".json"):
                os._exit(9)
            real_replace(src, dst)
            if stage == "after-renames" and str(dst).endswith(".json"):
                os._exit(9)
        os.fsync, os.replace = fsync, replace
        checkpoint.save_checkpoint(os.path.join(folder, stage, "best"), {"W": np.ones((8, 8), np.float32)}, {"i": 1})
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(stage, os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_kill_at_each_stage_of_a_save_leaves_the_old_or_the_new_pair(tmp_path):
    """The four stages of a save, each hit exactly: the old pair, or the new one, always loads."""
    from predcode.experiments.checkpoint import save_checkpoint

    for stage in STAGES:
        save_checkpoint(tmp_path / stage / "best", {"W": np.zeros((8, 8), np.float32)}, {"i": 0})
    proc = subprocess.run(
        [sys.executable, "-c", STAGE_DRIVER, str(tmp_path), *STAGES], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [w for stage in STAGES for w in (stage, "9")], proc.stdout + proc.stderr
    for stage in STAGES:
        folder = tmp_path / stage
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            arrays, meta = load_checkpoint(folder / "best")
        assert meta["i"] == (1 if stage == "after-renames" else 0), stage
        np.testing.assert_array_equal(arrays["W"], np.full((8, 8), meta["i"], np.float32))
        save_checkpoint(folder / "best", {"W": np.full((8, 8), 2, np.float32)}, {"i": 2})
        assert sorted(p.name for p in folder.iterdir()) == ["best.json", "best.npz"], stage
        assert load_checkpoint(folder / "best")[1]["i"] == 2
