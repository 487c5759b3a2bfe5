"""`predcode analyze` / `predcode sample` end to end on a tiny run, plus the probes and the masked-MSE
convention on hand-made cases."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import predcode
from predcode.cli import app
from predcode.data import load_binarized
from predcode.experiments.analyze import (
    balanced_indices,
    half_mask,
    load_run,
    masked_mse,
    settle_batches,
)
from predcode.experiments.config import load_config
from predcode.experiments.density import MixturePrior
from predcode.experiments.fit import fit
from predcode.experiments.probes import knn_probe, linear_probe

SMALL = """
[model]
kind = "gncn_pdh"
z_dims = [36, 36, 36]
K = 10

[data]
dataset = "mnist"
n_train = 600
n_val = 200

[train]
batch_size = 128
eval_batch_size = 200
epochs = 1
seed = 3
"""

runner = CliRunner()


def _cli(*args):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    (folder / "small.toml").write_text(SMALL)
    fit(load_config(folder / "small.toml"), folder / "run")
    return folder / "run"


@pytest.fixture(scope="module")
def analyzed(run):
    result = _cli(
        "analyze",
        "--run",
        str(run),
        "--n-latents",
        "200",
        "--n-components",
        "3",
        "--n-samples",
        "50",
        "--n-is-samples",
        "50",
        "--n-test",
        "200",
        "--batch-size",
        "100",
        "--seed",
        "1",
    )
    assert result.exit_code == 0, result.output
    return run / "analysis0", result.output


def test_analyze_writes_every_file(analyzed):
    out, output = analyzed
    assert "log p(x)" in output and "linear probe" in output and "wrote the analysis" in output
    latents, labels, idx = (
        np.load(out / f, allow_pickle=False) for f in ("latents.npy", "latent_labels.npy", "latent_indices.npy")
    )
    assert latents.shape == (200, 36) and labels.shape == idx.shape == (200,)
    assert np.all(np.isfinite(latents)) and np.all(latents >= 0)  # phi = relu
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [20] * 10)  # class-balanced
    images, train_labels = load_binarized("mnist", "train")
    np.testing.assert_array_equal(labels, train_labels[idx])  # labels stay matched to their images
    loaded = load_run(out.parent, 0)
    again = settle_batches(loaded.model, loaded.params, images[idx[:7]], batch_size=7).latents
    np.testing.assert_allclose(again, latents[:7], atol=1e-4)  # ... and to their latents
    cfg = loaded.config  # no validation image among them (split with train.seed)
    from predcode.data import train_val_split

    _, _, val_idx, _ = train_val_split(np.arange(len(images)), train_labels, cfg.data.n_val, seed=cfg.train.seed)
    assert not set(idx) & set(val_idx)

    prior = MixturePrior.load(out / "prior.npz")
    assert prior.n_components == 3 and prior.dim == 36
    assert np.all(np.isfinite(prior.score_samples(latents)))
    log_px = np.load(out / "log_px.npz", allow_pickle=False)
    assert {"mc", "mc_se", "mc_ess", "importance", "importance_se", "importance_ess", "labels"} <= set(log_px.files)
    assert log_px["mc"].shape == (200,) and np.all(np.isfinite(log_px["importance"]))
    for png in ("samples.png", "reconstructions.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 2000


def test_report_has_every_figure_and_setting(analyzed):
    out, _ = analyzed
    r = json.loads((out / "report.json").read_text())
    assert r["predcode_version"] == predcode.__version__ and r["date"][:2] == "20"
    assert r["command"].startswith("predcode analyze --run") and "--n-samples 50" in r["command"]
    assert r["trial"] == 0 and r["checkpoint"]["file"] == "best0" and r["model"]["kind"] == "gncn_pdh"
    s = r["settings"]
    assert (s["n_components"], s["n_latents"], s["n_samples"], s["n_is_samples"], s["n_test"], s["seed"]) == (
        3,
        200,
        50,
        50,
        200,
        1,
    )
    assert s["latent_class_counts"] == {str(c): 20 for c in range(10)}
    assert s["importance_sampling"]["n_top"] == 2 and 0 < s["importance_sampling"]["defensive"] < 1
    assert s["gmm"]["reg_covar"] == 1e-6 and s["prob_clip_log_px"] == 1e-6
    for key in ("test_bce", "test_tod", "masked_mse", "masked_mse_per_pixel"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert 30 < r["test_bce"] < 784 * math.log(2) + 1 and r["masked_mse_per_pixel"] < 1
    mc, imp = r["log_px_mc"], r["log_px_is"]
    # naive: 50 prior draws; stratified IS: 50 in each of the 3 components (2 top + the settled one's)
    for est, n in ((mc, 50), (imp, 3 * 50)):
        assert est["n_samples"] == n and est["n_images"] == 200
        assert -800 < est["mean"] < 0 and est["mc_se_of_mean"] >= 0 and est["mean_ess"] >= 1
    # log p(x) <= -BCE-ish is not guaranteed, but the legacy figure is exactly 2 log S above the naive one
    assert r["log_px_legacy_plus_log_s"]["mean"] == pytest.approx(mc["mean"] + 2 * math.log(50), abs=1e-6)
    assert "+log S" in r["log_px_legacy_plus_log_s"]["note"]
    for probe in (r["linear_probe"], r["knn"]):
        assert 0 <= probe["error_pct"] <= 100 and probe["n_train"] == 200 and probe["n_test"] == 200
    assert r["linear_probe"]["error_pct"] < 60  # far better than chance (90 %) even after one epoch
    assert r["knn"]["k"] == 5
    assert r["gmm"]["n_iter"] >= 1
    assert set(r["files"]) == {p.name for p in out.iterdir()}


def test_sample_uses_the_prior_of_analyze_or_fits_one(run, analyzed, tmp_path):
    result = _cli("sample", "--run", str(run), "-n", "16", "--out", str(tmp_path / "s.png"), "--seed", "2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").stat().st_size > 1000 and "prior.npz" in result.output
    moved = run / "analysis0" / "prior.npz"
    moved.rename(run / "prior.kept")
    try:
        result = _cli("sample", "--run", str(run), "-n", "4")
        assert result.exit_code == 0, result.output
        assert "10-component" in result.output and (run / "samples0.png").is_file()
    finally:
        (run / "prior.kept").rename(moved)


def test_cli_errors_are_one_clean_message(run, tmp_path):
    cases = [
        (["analyze", "--run", str(tmp_path / "nowhere")], 2, "not a folder"),
        (["analyze", "--run", str(tmp_path)], 2, "config.toml"),
        (["analyze", "--run", str(run), "--trial", "3"], 2, "best3"),
        (["sample", "--run", str(run), "--trial", "1"], 2, "[0]"),
        (["analyze", "--run", str(run), "--n-latents", "5"], 2, "--n-components"),
        (["analyze", "--run", str(run), "--n-latents", "20", "--n-components", "2", "--n-test", "0"], 2, "--n-test"),
    ]
    for args, code, text in cases:
        result = _cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.output and "Traceback" not in result.output, (args, result.output)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.toml", "best0.json"):
        (broken / name).write_bytes((run / name).read_bytes())
    (broken / "best0.npz").write_bytes(b"not an npz")
    result = _cli("analyze", "--run", str(broken), "--n-latents", "20", "--n-components", "2")
    assert result.exit_code == 1 and "SHA-256" in result.output and "Traceback" not in result.output


def test_balanced_indices_draws_per_class_and_is_seeded():
    labels = np.repeat(np.arange(4), [50, 10, 30, 40])
    idx = balanced_indices(labels, 22, seed=0)
    assert len(set(idx)) == 22
    np.testing.assert_array_equal(np.bincount(labels[idx]), [6, 6, 5, 5])
    np.testing.assert_array_equal(idx, balanced_indices(labels, 22, seed=0))
    assert not np.array_equal(idx, balanced_indices(labels, 22, seed=1))


def test_masked_mse_convention_on_a_hand_made_case():
    mask = half_mask(6)
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(half_mask(784).reshape(28, 28)[14:], 0)  # the bottom 14 rows
    x = np.array([[0, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0]], np.float32)
    recon = np.array([[0.9, 0.9, 0.9, 0.5, 1.0, 0.25], [0, 0, 0, 0.1, 0.2, 0.3]], np.float32)
    # visible pixels do not count; hidden: (0.5-1)^2 + 0 + 0.25^2 and 0.01 + 0.04 + 0.09
    np.testing.assert_allclose(masked_mse(x, recon, mask), [0.3125, 0.14], rtol=1e-6)


def test_hidden_pixels_do_not_reach_the_settle(run):
    loaded = load_run(run, 0)
    x, _ = load_binarized("mnist", "test")
    x = x[:4]
    flipped = x.copy()
    flipped[:, 392:] = 1 - flipped[:, 392:]
    mask = half_mask(784)
    a = settle_batches(loaded.model, loaded.params, x, batch_size=4, mask=mask)
    b = settle_batches(loaded.model, loaded.params, flipped, batch_size=4, mask=mask)
    np.testing.assert_array_equal(a.recon, b.recon)


def test_probes_on_separable_clusters_have_no_error():
    rng = np.random.default_rng(0)
    centres = 10 * rng.standard_normal((4, 6))
    y_tr, y_te = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    z_tr = centres[y_tr] + 0.5 * rng.standard_normal((400, 6))
    z_te = centres[y_te] + 0.5 * rng.standard_normal((200, 6))
    lin = linear_probe(z_tr, y_tr, z_te, y_te)
    knn = knn_probe(z_tr, y_tr, z_te, y_te, k=5)
    assert lin["error_pct"] == 0.0 and knn["error_pct"] == 0.0
    assert lin["n_test"] == 200 and knn["k"] == 5
    # and chance level on shuffled labels
    shuffled = linear_probe(z_tr, rng.permutation(y_tr), z_te, y_te)
    assert shuffled["error_pct"] > 50
    with pytest.raises(ValueError, match="labels"):
        linear_probe(z_tr, y_tr[:-1], z_te, y_te)


@pytest.mark.slow  # a tiny demo (GNCN-PDH, 300 images, 1 epoch), then analyze and sample on its folder
def test_demo_writes_a_run_folder_that_analyze_and_sample_read(tmp_path):
    from predcode.experiments.demo import demo_config

    out = tmp_path / "demo"
    tiny = ("--n-train", "300", "--n-val", "100", "--epochs", "1", "--batch-size", "100")
    result = _cli("demo", "--out", str(out), *tiny)
    assert result.exit_code == 0, result.output
    assert "validation BCE" in result.output and "test BCE" in result.output and "wrote config.toml" in result.output
    # the folder of `predcode fit` on the equivalent config: its config.toml, checkpoints, tables
    assert load_config(out / "config.toml") == demo_config(n_train=300, n_val=100, epochs=1, batch_size=100)
    loaded = load_run(out)
    assert loaded.metadata["trial"] == 0 and loaded.metadata["kind"] == "gncn_pdh"
    for name in ("state0.npz", "state0.json", "metrics.csv", "curves.png", "samples.png", "Lx0.npy", "vLx0.npy"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_train"], summary["n_val"], summary["n_trials"]) == (300, 100, 1)
    assert summary["best_epoch"] == summary["trials"][0]["best_epoch"] in (0, 1)
    assert summary["best_val_bce"] <= summary["initial_val_bce"] and 30 < summary["test_bce_first_2000"] < 600
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header, the untrained model, epoch 1

    result = _cli(
        "analyze", "--run", str(out), "--n-latents", "100", "--n-components", "2", "--n-samples", "20",
        "--n-is-samples", "0", "--n-test", "100", "--batch-size", "100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "log p(x)" in result.output and "importance sampling skipped" in result.output
    report = json.loads((out / "analysis0" / "report.json").read_text())
    assert report["model"]["kind"] == "gncn_pdh" and report["settings"]["n_test"] == 100
    result = _cli("sample", "--run", str(out), "-n", "4")
    assert result.exit_code == 0, result.output
    assert "prior.npz" in result.output and (out / "samples0.png").stat().st_size > 500


def test_analyze_and_sample_refuse_a_family_they_do_not_serve_in_one_line(tmp_path):
    from predcode.experiments.config import MLPFitConfig, dump_toml

    run = tmp_path / "mlp"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(MLPFitConfig()))
    for command in ("analyze", "sample"):
        result = _cli(command, "--run", str(run))
        assert result.exit_code == 2, result.output
        for text in (
            "family 'mlp'",
            "an MLP's config",
            f"predcode {command}",
            "gncn (museum models), pc (PC networks)",
        ):
            assert text in result.output, (command, text, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
