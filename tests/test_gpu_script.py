"""benchmarks/gpu.sh --dry-run: the GPU script's whole logic on the CPU at tiny sizes.

The dry run writes gpu.json and gpu.md to a temporary folder (never under results/); both must hold
an entry for every figure of issue 22, each with its command, commit, date and device, and say
plainly that they are a dry run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_bench  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-dry")
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(out))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_dry_run_writes_every_figure_with_its_provenance(dry_run):
    out, _ = dry_run
    rep = json.loads((out / "gpu.json").read_text())
    assert rep["dry_run"] is True and "DRY RUN" in rep["title"]
    assert set(rep["figures"]) == set(gpu_bench.FIGURES)
    for name, fig in rep["figures"].items():
        assert fig["figure"] == name
        assert fig["dry_run"] is True, name
        assert fig["status"] == "ok", (name, fig.get("log_tail", "")[-1500:])
        for key in ("command", "commit", "date", "device"):
            assert isinstance(fig[key], str) and fig[key], (name, key)
        assert "cpu" in fig["device"].lower(), (name, fig["device"])


def test_dry_run_figures_hold_their_numbers(dry_run):
    out, _ = dry_run
    f = json.loads((out / "gpu.json").read_text())["figures"]
    assert f["peak"]["highest"]["tflops"] > 0 and f["peak"]["default"]["tflops"] > 0
    e = f["epoch"]
    assert e["epoch_s"] > 0 and e["params_finite"] and e["step_matmul_flops"] > 0
    assert e["hlo"]["n_while"] >= 1 and e["hlo"]["while_bodies"][0]["launch_like"] > 0  # the settle loop was found
    assert [r["trials"] for r in f["trials"]["rows"]] == [1, 2]
    assert f["trials"]["rows"][0]["time_vs_one_trial"] == 1.0
    for n in ("peers_b512", "peers_b4096"):
        assert {"predcode", "predcode_gram"} <= set(f[n]["impls"]), n
        for v in f[n]["impls"].values():
            assert v["samples_per_s"] > 0 and v["check_rel_dW_of_update"] < 1e-3
    for v in gpu_bench.VARIANTS:
        s = f[f"settle_{v}"]
        assert s["settle_within_tolerance"], (v, s["settle_rel_err_vs_float64"])
        if v != "default":  # the CPU ignores the GPU flags: the same step as the default's
            assert s["params_rel_diff_vs_default"] < 1e-5, v
    # the environment each variant ran under is on record
    assert "WHILE" in f["settle_command_buffer_while"]["command"]
    assert "JAX_DEFAULT_MATMUL_PRECISION=default" in f["settle_tf32"]["command"]


def test_dry_run_markdown_says_dry_run_and_lists_every_figure(dry_run):
    out, _ = dry_run
    md = (out / "gpu.md").read_text()
    assert md.startswith("# ") and "DRY RUN" in md.splitlines()[0]
    assert "These numbers are not results" in md
    prov = md[md.index("## Provenance of every figure") :]
    for name in gpu_bench.FIGURES:
        assert f"| {name} | ok (dry run) |" in prov, name


def test_dry_run_refuses_results_folder():
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(ROOT / "results")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "does not write under results/" in proc.stderr


def test_a_failed_step_leaves_an_entry_saying_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDCODE_GPU_DRY_RUN", "1")
    log = tmp_path / "epoch.log"
    log.write_text("Traceback ...\nRuntimeError: out of memory\n")
    gpu_bench.main(
        [
            "failed",
            "--out",
            str(tmp_path / "epoch.json"),
            "--figure",
            "epoch",
            "--status",
            "timeout",
            "--rc",
            "124",
            "--log",
            str(log),
            "--command",
            "python gpu_bench.py epoch",
        ]
    )
    gpu_bench.main(
        ["report", "--work", str(tmp_path), "--json", str(tmp_path / "gpu.json"), "--md", str(tmp_path / "gpu.md")]
    )
    rep = json.loads((tmp_path / "gpu.json").read_text())
    assert rep["figures"]["epoch"]["status"] == "timeout" and "out of memory" in rep["figures"]["epoch"]["log_tail"]
    assert rep["figures"]["peak"]["status"] == "not run"
    md = (tmp_path / "gpu.md").read_text()
    assert "Not measured: peak (not run), epoch (timeout)" in md
