"""``predcode analyze`` and ``predcode sample``: what a trained run folder's model does on test data.

:func:`analyze` loads ``<run>/config.toml`` and the checkpoint ``<run>/best{trial}``, then writes to
``<run>/analysis{trial}/`` (or ``out``):

``latents.npy``, ``latent_labels.npy``, ``latent_indices.npy``
    settled ``phi(z_L)`` of a class-balanced sample of training images (``n_latents / n_classes``
    per class, the remainder to the lowest classes), drawn with ``seed`` from the run's training
    split (validation images excluded); labels and indices (into the dataset's training set) are
    kept row-aligned with the latents.
``prior.npz``
    the Gaussian-mixture prior fitted to them (:class:`~predcode.experiments.density.MixturePrior`).
``log_px.npz``
    per test image: the naive and importance-sampled ``log p(x)`` with standard errors and ESS.
``report.json``
    every figure with its settings, the command, predcode version and date.
``samples.png``, ``reconstructions.png``
    100 ancestral samples from the prior; test images, their reconstructions and half-image
    completions.

Conventions: BCE and ToD are per image after settling (``K`` steps) on the full image, probabilities
clipped to ``[1e-7, 1 - 1e-7]`` for BCE (as in training). Masked MSE hides the second half of the
pixel vector (the bottom 14 rows of a 28 x 28 image): the settle runs with those pixels' errors
masked (their values never reach the model), then ``sum over hidden pixels (mu_0 - x)^2`` is
averaged over images (``masked_mse``; ``masked_mse_per_pixel`` divides by the hidden pixels).
The test set is the first ``n_test`` images of the dataset's test split.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import predcode
from predcode.data import load_binarized, train_val_split
from predcode.experiments.atomic import atomic_path, write_json
from predcode.experiments.checkpoint import CheckpointMismatch, check_finite, load_tree
from predcode.experiments.config import FitConfig, load_config
from predcode.experiments.density import (
    PROB_CLIP,
    LogLikelihoodEstimate,
    MixturePrior,
    Settled,
    fit_prior,
    legacy_plus_log_s,
    mc_log_likelihood,
    sample_images,
    settle_batches,
    stratified_is_log_likelihood,
)
from predcode.experiments.fit import check_museum_metadata
from predcode.experiments.plots import curves_title, image_grid
from predcode.experiments.probes import knn_probe, linear_probe
from predcode.models.gncn import GNCN, Params
from predcode.threads import lapack_threads

__all__ = [
    "AnalyzeError",
    "LoadedRun",
    "Settled",
    "analyze",
    "balanced_indices",
    "half_mask",
    "importance_estimate",
    "importance_settings",
    "load_run",
    "masked_mse",
    "run_config_file",
    "sample",
    "settle_batches",
    "training_pool",
]

BCE_CLIP = 1e-7
IS_SAMPLES = 64  # importance samples per searched mixture component (--n-is-samples)
IS_TOP = 4  # components searched besides the settled latent's own
IS_PILOT = 16  # pilot draws per component
IS_DEFENSIVE = 0.1
IS_REFINE_STEPS = 100
IS_REFINE_LR = 0.05


class AnalyzeError(ValueError):
    """The run folder, the trial or a setting does not allow the analysis (message says why and the fix)."""


class LoadedRun(NamedTuple):
    """A trained run read back: its resolved config, the rebuilt model, the best parameters and their metadata."""

    config: FitConfig
    model: GNCN
    params: Params
    metadata: dict


# --------------------------------------------------------------------------------------------- inputs


def run_config_file(run: str | Path) -> Path:
    """``<run>/config.toml``, after checking that ``run`` is a folder holding one (:class:`AnalyzeError` if not)."""
    run = Path(run)
    if not run.is_dir():
        raise AnalyzeError(f"--run: {run} is not a folder; pass a run folder written by `predcode fit`")
    if not (run / "config.toml").is_file():
        raise AnalyzeError(
            f"--run: {run} holds no config.toml, so it is not a run folder written by "
            "`predcode fit`; pass the folder given to `predcode fit --out`"
        )
    return run / "config.toml"


def load_run(run: str | Path, trial: int = 0) -> LoadedRun:
    """Read ``<run>/config.toml`` and the checkpoint ``<run>/best{trial}``; rebuild the model."""
    run = Path(run)
    cfg = load_config(run_config_file(run))
    if getattr(cfg, "family", None) == "mlp":
        raise AnalyzeError(
            f'--run: {run} is an MLP run (its config.toml has [model] family = "mlp"), not a museum model '
            "run; `predcode analyze` does not analyze MLP runs: read its summary.json (accuracies, angles "
            "to backprop) or load best<t> with predcode.experiments.credit.load_rule_checkpoint"
        )
    if not isinstance(cfg, FitConfig):
        raise AnalyzeError(
            f"--run: {run} is a general PC network run (its config.toml has a [network] table), "
            "not a museum model run; `predcode analyze --run` handles PC network runs"
        )
    if not (run / f"best{trial}.json").is_file():
        trials = sorted(int(p.stem[4:]) for p in run.glob("best*.json") if p.stem[4:].isdigit())
        hint = (
            f"trials with a best model here: {trials}; pass one of them to --trial"
            if trials
            else "no trial has a best model yet: let `predcode fit` finish at least one epoch"
        )
        raise AnalyzeError(f"--trial: {run} holds no best{trial} checkpoint ({hint})")
    model = GNCN(cfg.model)
    try:
        tree, meta = load_tree(run / f"best{trial}", {"params": jax.eval_shape(model.init, jax.random.key(0))})
    except CheckpointMismatch as err:
        raise AnalyzeError(f"{err} (the model in config.toml); the checkpoint belongs to another config") from None
    check_museum_metadata(meta, run / f"best{trial}.json", cfg.model)
    check_finite({"params": tree["params"]}, run / f"best{trial}.npz")
    return LoadedRun(cfg, model, tree["params"], meta)


def training_pool(cfg: FitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Labelled training images to draw latents from: ``(images, labels, indices, description)``.

    ``indices`` index the dataset's training set. For a built-in dataset this is the run's training
    split (the ``data.n_val`` validation images split off with ``train.seed`` are excluded). A run
    trained on ``data.train_file`` has no labels, so its pool is the whole training set of
    ``data.dataset``.
    """
    d = cfg.data
    if cfg.model.x_dim != 784:
        raise AnalyzeError(
            f"model.x_dim: analyze needs labelled 28 x 28 images (x_dim 784), the run has x_dim {cfg.model.x_dim}"
        )
    images, labels = load_binarized(d.dataset, "train")
    if d.train_file is None:
        idx, y, _, _ = train_val_split(np.arange(len(images)), labels, d.n_val, seed=cfg.train.seed)
        note = (
            f"{d.dataset} training split of the run ({len(idx)} images; the {d.n_val} validation "
            f"images split off with seed {cfg.train.seed} excluded)"
        )
    else:
        idx, y = np.arange(len(images)), labels
        note = (
            f"all {len(idx)} {d.dataset} training images (the run trained on data.train_file, whose labels are unknown)"
        )
    return images[idx], y, idx, note


def balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` positions into ``labels``, ``n // C`` per class (the remainder to the lowest classes), shuffled."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not len(classes) <= n:
        raise AnalyzeError(f"--n-latents: expected at least {len(classes)} (one per class), got {n}")
    per, extra = divmod(n, len(classes))
    rng = np.random.default_rng(seed)
    picks = []
    for i, c in enumerate(classes):
        where = np.flatnonzero(labels == c)
        want = per + (i < extra)
        if want > len(where):
            raise AnalyzeError(
                f"--n-latents: {n} asks for {want} images of class {c}, the training pool "
                f"has {len(where)}; lower --n-latents"
            )
        picks.append(rng.choice(where, size=want, replace=False))
    out = np.concatenate(picks)
    return out[rng.permutation(len(out))]


def half_mask(x_dim: int) -> np.ndarray:
    """1 for the visible first half of the pixel vector, 0 for the hidden second half (bottom rows)."""
    mask = np.ones(x_dim, np.float32)
    mask[x_dim // 2 :] = 0.0
    return mask


def masked_mse(x: np.ndarray, recon: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image: ``sum over hidden pixels (mask == 0) of (recon - x)^2``, shape (n,)."""
    x, recon = np.asarray(x, np.float64), np.asarray(recon, np.float64)
    hidden = 1.0 - np.broadcast_to(np.asarray(mask, np.float64), x.shape)
    return np.sum(hidden * (recon - x) ** 2, axis=-1)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)


def _check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"from {low} to {high}"
        raise AnalyzeError(f"{name}: expected an integer {rng}, got {value!r}")


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------- analyze


def _is_plan(prior: MixturePrior) -> tuple[int, bool]:
    """``(n_top, centred)``: components searched by their pilot estimates, and whether the settled
    latent's own component is searched besides (not for a one-component prior)."""
    if prior.n_components == 1:
        return 1, False
    return min(IS_TOP, prior.n_components - 1), True


def importance_settings(prior: MixturePrior) -> dict[str, Any]:
    """The settings of :func:`importance_estimate` for ``prior``, as recorded in ``report.json``."""
    return {
        "method": "stratified by mixture component (predcode.experiments.density."
        "stratified_is_log_likelihood): p(x) = sum_k w_k I_k, each I_k = E_{u~N(0,I)} "
        "p(x | mean_k + L_k u) estimated on its own in the component's whitened coordinates; the "
        "component most responsible for the settled phi(z_L) of the test image and the n_top "
        "components with the largest pilot estimates are searched: Adam (refine_steps, "
        "refine_lr) from the best of their pilot draws or the whitened settled latent to the "
        "mode of -|u|^2/2 + log p(x|u), proposal defensive * N(0, I) + (1 - defensive) * "
        "N(mode, H^-1) with the Gauss-Newton Hessian H = I + J^T diag(1/(p(1-p))) J, "
        "n_is_samples draws each; every other component keeps the mean of n_pilot prior draws "
        "(a second, independent pilot set). Unbiased for p(x) whatever the search finds",
        "n_top": _is_plan(prior)[0],
        "n_pilot": IS_PILOT,
        "defensive": IS_DEFENSIVE,
        "refine_steps": IS_REFINE_STEPS,
        "refine_lr": IS_REFINE_LR,
    }


def importance_estimate(
    model: GNCN,
    params: Params,
    prior: MixturePrior,
    test_x: np.ndarray,
    latents: np.ndarray,
    n_is_samples: int = IS_SAMPLES,
    seed: int = 1,
    batch_size: int = 100,
) -> LogLikelihoodEstimate:
    """The importance-sampled ``log p(x)`` of ``predcode analyze`` (settings: :func:`importance_settings`)."""
    n_top, centred = _is_plan(prior)
    centres = np.where(np.isfinite(latents), latents, 0.0)  # any centre keeps the estimate unbiased
    return stratified_is_log_likelihood(
        model,
        params,
        prior,
        test_x,
        centres if centred else None,
        n_samples=n_is_samples,
        n_top=n_top,
        n_pilot=IS_PILOT,
        seed=seed,
        batch_size=min(batch_size, 100),  # the proposals' Jacobians grow with the batch
        defensive=IS_DEFENSIVE,
        refine_steps=IS_REFINE_STEPS,
        refine_lr=IS_REFINE_LR,
    )


@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def analyze(
    run: str | Path,
    *,
    trial: int = 0,
    n_components: int = 75,
    n_latents: int = 18000,
    n_samples: int = 5000,
    n_is_samples: int | None = None,
    seed: int = 0,
    n_test: int | None = None,
    batch_size: int = 500,
    out: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict:
    """Run the full analysis of ``<run>/best{trial}``; write the files listed in the module doc; return the report."""
    started = time.time()
    stage_times: dict[str, float] = {}
    say = on_stage or (lambda msg: None)
    _check_int("--trial", trial, 0)
    for name, v in (
        ("--n-components", n_components),
        ("--n-latents", n_latents),
        ("--n-samples", n_samples),
        ("--batch-size", batch_size),
    ):
        _check_int(name, v)
    n_is_samples = IS_SAMPLES if n_is_samples is None else n_is_samples
    _check_int("--n-is-samples", n_is_samples, 0)  # 0 skips the importance-sampled estimate
    if n_is_samples == 1:
        raise AnalyzeError("--n-is-samples: expected 0 (skip) or an integer >= 2, got 1")
    _check_int("--seed", seed, 0)
    if n_components > n_latents:
        raise AnalyzeError(f"--n-components: expected at most --n-latents = {n_latents}, got {n_components}")
    run = Path(run)
    loaded = load_run(run, trial)
    cfg, model, params = loaded.config, loaded.model, loaded.params
    out = Path(out) if out is not None else run / f"analysis{trial}"
    command = (
        f"predcode analyze --run {run} --trial {trial} --n-components {n_components} "
        f"--n-latents {n_latents} --n-samples {n_samples} --n-is-samples {n_is_samples} --seed {seed} "
        f"--n-test {'all' if n_test is None else n_test} --batch-size {batch_size} --out {out}"
    )

    def lap(name: str, t0: float) -> None:
        stage_times[name] = round(time.time() - t0, 2)

    test_x, test_y = load_binarized(cfg.data.dataset, "test")
    n_test_used = len(test_x) if n_test is None else n_test
    _check_int("--n-test", n_test_used, 1, len(test_x))
    test_x, test_y = test_x[:n_test_used], test_y[:n_test_used]

    # ----- latents of a class-balanced training sample, and the prior ------------------------
    t0 = time.time()
    say(f"settling {n_latents} class-balanced training images")
    pool_x, pool_y, pool_idx, pool_note = training_pool(cfg)
    pick = balanced_indices(pool_y, n_latents, seed)
    latent_x, latent_y, latent_idx = pool_x[pick], pool_y[pick], pool_idx[pick]
    latents = settle_batches(model, params, latent_x, batch_size=batch_size).latents
    if not np.all(np.isfinite(latents)):
        raise FloatingPointError("the settled training latents are not finite: the model diverges on them")
    out.mkdir(parents=True, exist_ok=True)
    _save_npy(out / "latents.npy", latents.astype(np.float32))
    _save_npy(out / "latent_labels.npy", latent_y.astype(np.int64))
    _save_npy(out / "latent_indices.npy", latent_idx.astype(np.int64))
    lap("latents", t0)

    t0 = time.time()
    say(f"fitting a {n_components}-component Gaussian mixture to {len(latents)} latents")
    gmm = fit_prior(latents.astype(np.float64), n_components=n_components, seed=seed)
    prior = MixturePrior.from_sklearn(gmm, seed=seed, trial=trial, n_latents=len(latents))
    prior.save(out / "prior.npz")
    lap("prior", t0)

    # ----- test set: settle, BCE, ToD, masked MSE -------------------------------------------
    t0 = time.time()
    say(f"settling {n_test_used} test images (full, then half-masked)")
    full = settle_batches(model, params, test_x, batch_size=batch_size)
    mask = half_mask(cfg.model.x_dim)
    masked = settle_batches(model, params, test_x, batch_size=batch_size, mask=mask)
    mmse = masked_mse(test_x, masked.recon, mask)
    lap("test_settle", t0)

    # ----- log p(x) ----------------------------------------------------------------------------
    t0 = time.time()
    say(f"naive Monte Carlo log p(x): {n_samples} prior samples per image")
    mc = mc_log_likelihood(model, params, prior, test_x, n_samples=n_samples, seed=seed, batch_size=batch_size)
    lap("log_px_mc", t0)
    imp = None
    if n_is_samples > 0:
        t0 = time.time()
        n_top, centred = _is_plan(prior)
        say(
            f"importance-sampled log p(x): {n_is_samples} samples in each of {n_top + centred} searched mixture "
            f"components per image, {IS_PILOT} in each other"
        )
        imp = importance_estimate(model, params, prior, test_x, full.latents, n_is_samples, seed + 1, batch_size)
        lap("log_px_is", t0)
    legacy = legacy_plus_log_s(mc)
    is_arrays = {} if imp is None else dict(importance=imp.log_px, importance_se=imp.se, importance_ess=imp.ess)
    _save_npz(out / "log_px.npz", mc=mc.log_px, mc_se=mc.se, mc_ess=mc.ess, labels=test_y.astype(np.int64), **is_arrays)

    # ----- probes -----------------------------------------------------------------------------
    t0 = time.time()
    say("linear probe and 5-NN on the latents")
    if np.all(np.isfinite(full.latents)):
        probe = linear_probe(latents, latent_y, full.latents, test_y, seed=seed)
        knn = knn_probe(latents, latent_y, full.latents, test_y, k=min(5, len(latents)))
    else:
        probe = knn = {"error_pct": None, "note": "the settled test latents are not finite"}
    lap("probes", t0)

    # ----- figures ----------------------------------------------------------------------------
    t0 = time.time()
    samples = sample_images(model, params, prior, 100, seed=seed)
    image_grid(
        samples,
        out / "samples.png",
        title=f"{curves_title(cfg, cfg.model.kind)}\n100 samples from the {n_components}-component prior (mu_0)",
    )
    k = min(10, n_test_used)
    shown_mask = np.where(mask > 0, test_x[:k], 0.5)
    grid = np.concatenate([test_x[:k], full.recon[:k], shown_mask, masked.recon[:k]])
    image_grid(
        grid,
        out / "reconstructions.png",
        ncols=k,
        title=f"{curves_title(cfg, cfg.model.kind)}\nrows: test images, reconstructions (mu_0), "
        "bottom half hidden, completions",
    )
    lap("figures", t0)

    def mean(a):
        return float(np.mean(a))

    files = [
        "latents.npy",
        "latent_labels.npy",
        "latent_indices.npy",
        "prior.npz",
        "log_px.npz",
        "report.json",
        "samples.png",
        "reconstructions.png",
    ]
    report = {
        "command": command,
        "predcode_version": predcode.__version__,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "machine": f"{platform.node()} {platform.machine()}",
        "run": str(run.resolve()),
        "trial": trial,
        "checkpoint": {
            "file": f"best{trial}",
            "epoch": loaded.metadata.get("epoch"),
            "val_bce": loaded.metadata.get("val_bce"),
        },
        "model": cfg.model.to_dict(),
        "dataset": cfg.data.dataset,
        "settings": {
            "n_components": n_components,
            "n_latents": len(latents),
            "n_samples": n_samples,
            "n_is_samples": n_is_samples,
            "seed": seed,
            "n_test": n_test_used,
            "batch_size": batch_size,
            "latent_pool": pool_note,
            "latent_class_counts": {str(c): int(n) for c, n in zip(*np.unique(latent_y, return_counts=True))},
            "gmm": {
                "covariance_type": "full",
                "init_params": "kmeans",
                "reg_covar": 1e-6,
                "max_iter": 100,
                "random_state": seed,
            },
            "test_images": f"the first {n_test_used} images of the {cfg.data.dataset} test split",
            "prob_clip_log_px": PROB_CLIP,
            "prob_clip_bce": BCE_CLIP,
            "mc": "naive Monte Carlo: logsumexp_s log Bernoulli(x; project(s_s)) - log S, s_s from the prior "
            "(components drawn by their weights); the images of one batch share their S samples, "
            "each batch draws fresh ones",
            "importance_sampling": {**importance_settings(prior), "seed": seed + 1},
            "se": "delta-method standard error of log mean(w): sqrt((mean(w^2)/mean(w)^2 - 1) / S); it "
            "understates the error where the effective sample size (sum w)^2 / sum w^2 is small "
            "(see frac_images_ess_below_10); mc_se_of_mean = sqrt(sum se_i^2) / n",
            "masked_mse": "second half of the pixel vector (bottom 14 rows) hidden: settle with those errors "
            "masked, then sum over hidden pixels of (mu_0 - x)^2, averaged over images",
        },
        "test_bce": mean(full.bce),
        "test_tod": mean(full.tod),
        "masked_mse": mean(mmse),
        "masked_mse_per_pixel": mean(mmse) / float(np.sum(mask == 0)),
        "log_px_mc": mc.summary(),
        "log_px_is": imp.summary() if imp is not None else {"skipped": "--n-is-samples 0"},
        "log_px_legacy_plus_log_s": {
            "mean": mean(legacy),
            "note": "the naive estimate as legacy ngc-learn would print it, with its +log S sign error "
            "(= log_px_mc + 2 log S); legacy's other bugs are not reproduced. Not a valid estimate.",
        },
        "linear_probe": probe,
        "knn": knn,
        "gmm": {
            "converged": bool(gmm.converged_),
            "n_iter": int(gmm.n_iter_),
            "lower_bound": _finite(float(gmm.lower_bound_)),
        },
        "seconds": {**stage_times, "total": round(time.time() - started, 2)},
        "out": str(out),
        "files": files,
    }
    write_json(out / "report.json", report)
    return report


# --------------------------------------------------------------------------------------------- sample


@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def sample(run: str | Path, *, n: int = 64, out: str | Path | None = None, trial: int = 0, seed: int = 0) -> dict:
    """Write ``n`` ancestral samples as a PNG grid; the prior is ``analysis{trial}/prior.npz`` if present.

    Without it, a 10-component prior is fitted to the latents of 2,000 class-balanced training images.
    Returns ``{"path", "prior"}``.
    """
    _check_int("-n", n)
    _check_int("--seed", seed, 0)
    _check_int("--trial", trial, 0)
    run = Path(run)
    loaded = load_run(run, trial)
    prior_file = run / f"analysis{trial}" / "prior.npz"
    if prior_file.is_file():
        prior = MixturePrior.load(prior_file)
        source = str(prior_file)
    else:
        x, y, _, _ = training_pool(loaded.config)
        pick = balanced_indices(y, min(2000, len(y)), seed)
        latents = settle_batches(loaded.model, loaded.params, x[pick], batch_size=500).latents
        prior = MixturePrior.from_sklearn(fit_prior(latents.astype(np.float64), n_components=10, seed=seed))
        source = f"10-component mixture fitted to {len(pick)} training latents (no {prior_file})"
    images = sample_images(loaded.model, loaded.params, prior, n, seed=seed)
    path = Path(out) if out is not None else run / f"samples{trial}.png"
    image_grid(
        images,
        path,
        ncols=min(n, math.ceil(math.sqrt(n))),
        title=f"{curves_title(loaded.config, loaded.config.model.kind)}\n{n} samples (seed {seed})",
    )
    return {"path": str(path), "prior": source}
