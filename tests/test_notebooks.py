"""The tutorial notebooks of docs/notebooks/ run top to bottom (nbclient, a fresh python3 kernel) on
their reduced settings (``PREDCODE_NOTEBOOK_FAST=1``), and what they print is what they claim:
the settle lowers the energy, learning raises the accuracy, the samples are images, the rules
reach sane accuracies. Their cells are the ones ``scripts/make_notebooks.py`` writes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra (nbformat, nbclient, ipykernel) is not installed")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs" / "notebooks"


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebooks_are_the_generated_ones_with_outputs():
    gen = _generator()
    assert sorted(p.stem for p in FOLDER.glob("*.ipynb")) == sorted(gen.NOTEBOOKS)
    for name, cells in gen.NOTEBOOKS.items():
        committed = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
        nbformat.validate(committed)
        expected = gen.build(cells)
        cells_of = lambda nb: [(c.cell_type, c.source) for c in nb.cells]
        assert cells_of(committed) == cells_of(expected), (
            f"{name}.ipynb differs from scripts/make_notebooks.py: run python scripts/make_notebooks.py --execute"
        )
        code = [c for c in committed.cells if c.cell_type == "code"]
        assert all(c.get("outputs") for c in code[-1:]), f"{name}.ipynb was committed without its outputs"
        assert "matplotlib.use" not in "\n".join(c.source for c in code)
        # the docs show the full settings' outputs, not the test's reduced ones
        assert '"fast": false' in _summary_text(committed), name


def _summary_text(nb) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            for line in text.splitlines():
                if line.startswith("SUMMARY "):
                    return line[len("SUMMARY ") :]
    raise AssertionError("the notebook printed no SUMMARY line")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each notebook run on its reduced settings: ``{name: (summary dict, notebook, seconds)}``."""
    from nbclient import NotebookClient

    gen = _generator()
    workdir = tmp_path_factory.mktemp("notebooks")
    old = os.environ.get("PREDCODE_NOTEBOOK_FAST")
    os.environ["PREDCODE_NOTEBOOK_FAST"] = "1"  # the kernel inherits the environment
    out = {}
    try:
        for name in gen.NOTEBOOKS:
            nb = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
            t0 = time.perf_counter()
            client = NotebookClient(
                nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
            )
            client.execute()
            out[name] = (json.loads(_summary_text(nb)), nb, time.perf_counter() - t0)
    finally:
        if old is None:
            os.environ.pop("PREDCODE_NOTEBOOK_FAST", None)
        else:
            os.environ["PREDCODE_NOTEBOOK_FAST"] = old
    return out


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_predictive_coding_in_five_minutes_settles_and_learns(executed):
    s, nb, _ = executed["predictive_coding_in_five_minutes"]
    assert s["fast"] is True
    # a settle lowers the energy, before and after training; the normaliser is a constant below it
    assert s["energy_last"] < s["energy_first"]
    assert s["trained_energy_last"] < s["trained_energy_first"]
    assert s["normaliser"] == pytest.approx(0.5 * (128 + 10) * math.log(2 * math.pi))
    assert s["energy_last"] > s["normaliser"]
    # learning: from chance to well above it on 500 images in one epoch
    assert 0.0 <= s["accuracy_before"] <= 0.3
    assert s["accuracy_after"] > s["accuracy_before"] + 0.2
    assert _images(nb) == 2


def test_the_gncn_walkthrough_trains_samples_and_scores(executed):
    s, nb, _ = executed["gncn_walkthrough"]
    assert s["fast"] is True
    assert s["best_val_bce"] < s["untrained_val_bce"]
    assert s["samples_shape"] == [36, 784] and 0.0 <= s["samples_min"] <= s["samples_max"] <= 1.0
    assert s["latent_dim"] == 36
    # log p(x) of a binary 784-pixel image: negative, and above the uniform model's -784 log 2
    assert -784 * math.log(2) < s["log_px_mean"] < 0
    assert _images(nb) == 2  # curves.png and the samples


def test_credit_assignment_compared_trains_the_four_rules(executed):
    s, nb, _ = executed["credit_assignment_compared"]
    assert s["fast"] is True
    acc = s["test_accuracy"]
    assert set(acc) == {"backprop", "fa", "dfa", "pc"}
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert acc["backprop"] > 0.5 and acc["pc"] > 0.5  # 40 steps of Adam on 1,000 images: well above chance
    angles = s["final_angle"]
    assert angles["backprop"] < 0.5  # backprop against itself: 0 up to float32 rounding of the angle
    assert angles["pc"] < 45 < angles["fa"]  # PC follows the gradient, FA's random feedback does not yet
    assert _images(nb) == 1
