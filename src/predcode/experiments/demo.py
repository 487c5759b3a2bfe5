"""The README's demo: train a GNCN briefly on MNIST, then write metrics, a checkpoint and samples."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from predcode.data import load_binarized, train_val_split
from predcode.experiments.atomic import write_json, write_text
from predcode.experiments.checkpoint import save_checkpoint
from predcode.experiments.density import extract_latents, fit_prior, sample_images
from predcode.experiments.plots import image_grid, training_curves
from predcode.experiments.provenance import provenance
from predcode.experiments.train import EpochRecord, evaluate, train
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig
from predcode.threads import lapack_threads


@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def run_demo(
    out: Path,
    *,
    kind: str = "gncn_pdh",
    dataset: str = "mnist",
    n_train: int = 5000,
    n_val: int = 1000,
    epochs: int = 5,
    batch_size: int = 200,
    seed: int = 69,
    n_components: int = 10,
    on_batch: Callable | None = None,
    on_epoch: Callable[[EpochRecord, object], None] | None = None,
) -> dict:
    """Train on the first ``n_train + n_val`` training images (seeded split), write everything to ``out``."""
    out = Path(out)
    started = time.time()
    images, labels = load_binarized(dataset, "train")
    x_tr, _, x_val, _ = train_val_split(images[: n_train + n_val], labels[: n_train + n_val], n_val, seed=seed)
    x_test, _ = load_binarized(dataset, "test")
    model = GNCN(GNCNConfig(kind=kind))
    result = train(
        model, x_tr, x_val, epochs=epochs, batch_size=batch_size, seed=seed, on_batch=on_batch, on_epoch=on_epoch
    )
    params = result.best_params

    history = [asdict(result.initial)] + [asdict(r) for r in result.history]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text(out / "metrics.csv", buf.getvalue())
    training_curves(history, out / "curves.png")

    test_bce, test_tod = evaluate(make_trainer(model), params, x_test[:2000], batch_size)

    latents = extract_latents(model, params, x_tr[:2000])
    prior = fit_prior(latents, n_components=n_components, seed=seed)
    samples = sample_images(model, params, prior, 100, seed=seed)
    image_grid(samples, out / "samples.png", title=f"{kind}: samples from a {n_components}-component GMM prior")

    save_checkpoint(
        out / "model",
        {"params": params},
        {"model": kind, **model.config.to_dict(), "best_epoch": result.best_epoch},
    )
    summary = {
        **provenance(),
        "model": kind,
        "dataset": dataset,
        "n_train": len(x_tr),
        "n_val": len(x_val),
        "epochs_run": len(result.history),
        "batch_size": batch_size,
        "seed": seed,
        "initial_val_bce": result.initial.val_bce,
        "best_val_bce": result.best_val_bce,
        "best_epoch": result.best_epoch,
        "test_bce_first_2000": test_bce,
        "test_tod_first_2000": test_tod,
        "seconds": round(time.time() - started, 1),
        "files": ["metrics.csv", "metrics.json", "curves.png", "samples.png", "model.npz", "model.json"],
        "history": history,
    }
    write_json(out / "metrics.json", summary)
    return summary
