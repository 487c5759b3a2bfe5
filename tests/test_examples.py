"""Every script under examples/ runs on its reduced setting and writes what its page promises.

Each example runs in a fresh interpreter, as a user would run it (``python examples/X.py --out DIR
--reduced``); a check per example then reads its outputs. A new example without a check fails
``test_every_example_has_a_check``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


def run_example(name: str, out: Path) -> float:
    """Run ``examples/<name>.py --out out --reduced``; return its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out", str(out), "--reduced"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"examples/{name}.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print(f"examples/{name}.py --reduced: {seconds:.1f} s")
    return seconds


def _png_shape(path: Path) -> tuple[int, ...]:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, f"{path}: not an image figure"
    return image.shape


def check_walkthrough1(out: Path) -> None:
    """Fit, analyze and sample outputs are there and agree with an independent recomputation."""
    import jax.numpy as jnp

    from predcode.data import load_binarized
    from predcode.experiments.analyze import load_run

    figures = json.loads((out / "walkthrough1.json").read_text())
    assert figures["reduced"] is True
    metrics = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    assert list(metrics["epoch"]) == [0, 1]  # untrained model + 1 epoch
    assert metrics["val_bce"][1] < metrics["val_bce"][0] - 50  # one epoch of 300 images already learns
    assert figures["best_val_bce"] == pytest.approx(metrics["val_bce"].min(), rel=1e-6)

    report = json.loads((out / "analysis0" / "report.json").read_text())
    assert report["settings"]["n_test"] == 100 and report["settings"]["n_latents"] == 200
    mc = report["log_px_mc"]
    assert np.isfinite(mc["mean"]) and mc["mean"] < 0 and mc["n_samples"] == 50
    assert np.load(out / "analysis0" / "latents.npy").shape[0] == 200
    # test BCE recomputed from the saved best model with the textbook formula, in NumPy
    run = load_run(out)
    x_test = load_binarized("mnist", "test")[0][:100]
    mu0 = np.asarray(run.model.settle(run.params, jnp.asarray(x_test)).predictions[0], np.float64)
    p = np.clip(mu0, 1e-7, 1 - 1e-7)
    bce = -np.mean(np.sum(x_test * np.log(p) + (1 - x_test) * np.log(1 - p), axis=1))
    assert report["test_bce"] == pytest.approx(bce, rel=1e-4)
    assert figures["test_bce"] == report["test_bce"]
    _png_shape(out / "samples.png")
    _png_shape(out / "analysis0" / "samples.png")
    _png_shape(out / "curves.png")


def check_custom_network(out: Path) -> None:
    """Learning and inference both lower the energy; the probes ran on both codes and the pixels."""
    figures = json.loads((out / "custom_network.json").read_text())
    assert figures["reduced"] is True and "z(32)" in figures["network"]
    assert figures["test_energy"] < figures["initial_test_energy"] - 50  # nats per image on held-out images
    trace = figures["inference_energy"]
    assert len(trace) == figures["settings"]["T"] + 1 and trace[-1] < trace[0]
    probes = figures["probe_error_pct"]
    assert set(probes) == {"pixels_linear", "z_linear", "z_5nn", "h_linear", "h_5nn"}
    assert all(0 <= v <= 100 for v in probes.values())
    assert probes["pixels_linear"] < 30  # the probe itself works: pixels are linearly separable enough
    _png_shape(out / "custom_network.png")


def check_supervised_pc(out: Path) -> None:
    """PC learns to classify, close to backprop on the same batches (Whittington & Bogacz 2017)."""
    figures = json.loads((out / "supervised_pc.json").read_text())
    pc, bp = figures["pc_test_accuracy"], figures["backprop_test_accuracy"]
    assert figures["epoch"] == [0, 1] and pc[0] == bp[0] < 0.3  # the same untrained network
    assert pc[-1] > 0.6 and bp[-1] > 0.6
    assert abs(pc[-1] - bp[-1]) < 0.1
    trace = figures["inference_energy"]
    assert trace[-1] < trace[0]
    _png_shape(out / "supervised_pc.png")


def check_credit_assignment(out: Path) -> None:
    """Every rule trained; PC's update stays near backprop's gradient, FA's starts near orthogonal."""
    figures = json.loads((out / "credit_assignment.json").read_text())
    rules = figures["rules"]
    assert set(rules) == {"backprop", "fa", "dfa", "pc"}
    assert rules["backprop"]["test_accuracy"] > 0.6 and rules["pc"]["test_accuracy"] > 0.6
    assert all(0 <= r["test_accuracy"] <= 1 for r in rules.values())
    assert max(rules["backprop"]["angles"][-1]["degrees"]) < 1e-2  # backprop against itself
    assert max(rules["pc"]["angles"][-1]["degrees"]) < 30
    assert 60 < rules["fa"]["angles"][0]["degrees"][0] < 120  # random feedback: about orthogonal at first
    _png_shape(out / "credit_assignment.png")


def check_nengo_feedback_alignment(out: Path) -> None:
    """Every rule ran; the scores are recomputed from the saved traces; encoder learning helps at 30 neurons."""
    figures = json.loads((out / "nengo_feedback_alignment.json").read_text())
    assert figures["reduced"] is True
    s = figures["settings"]
    runs = {r["rule"]: r for r in figures["runs"]}
    assert set(runs) == {"pes", "backprop", "fa"}
    for r in runs.values():
        assert r["neurons"] == 30 and 0 < r["nmse_last"] < 1.5 and r["nmse_frozen"] > 0
        assert r["frozen_ratio"] == pytest.approx(r["nmse_frozen"] / r["nmse_last"])
        t, y, out_ = (np.array(r["trace"][k]) for k in ("t", "target", "output"))
        assert t[0] > s["learn_s"] - s["window_s"] and t[-1] == pytest.approx(s["learn_s"] + s["frozen_s"], abs=0.01)
        frozen = t > s["learn_s"]
        recomputed = np.mean((out_[~frozen] - y[~frozen]) ** 2) / np.var(y[~frozen])  # every 5th step, probe lag
        assert recomputed == pytest.approx(r["nmse_last"], rel=0.2)
    assert runs["pes"]["encoder_change"] == 0 and runs["pes"]["bias_change"] == 0
    for rule in ("backprop", "fa"):  # the encoders and the bias learned, and it already shows after 6 s
        assert runs[rule]["encoder_change"] > 1e-3 and runs[rule]["bias_change"] > 1e-3
        assert runs[rule]["nmse_last"] < runs["pes"]["nmse_last"]
    _png_shape(out / "nengo_feedback_alignment.png")


CHECKS = {
    "walkthrough1": check_walkthrough1,
    "custom_network": check_custom_network,
    "supervised_pc": check_supervised_pc,
    "credit_assignment": check_credit_assignment,
    "nengo_feedback_alignment": check_nengo_feedback_alignment,
}


def test_every_example_has_a_check():
    assert EXAMPLES, "examples/ holds no script"
    assert set(EXAMPLES) <= set(CHECKS), f"examples without a check in this file: {set(EXAMPLES) - set(CHECKS)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_on_its_reduced_setting(name, tmp_path):
    out = tmp_path / name
    run_example(name, out)
    CHECKS[name](out)
