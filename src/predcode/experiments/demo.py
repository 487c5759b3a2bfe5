"""The README's demo: a brief ``predcode fit`` of a GNCN on MNIST, then a test BCE and samples.

The demo is the museum fit (:func:`predcode.experiments.fit.fit`) of the config
:func:`demo_config` builds, so its folder is a run folder like any other (``config.toml``,
``best0`` and ``state0`` checkpoints, ``metrics.csv``, ``curves.png``, ``summary.json``, the
walkthrough's ``Lx0.npy`` ...) and ``predcode analyze --run`` / ``predcode sample --run`` work on
it. The demo adds ``samples.png`` and the test BCE of the best model in ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from predcode.data import load_binarized
from predcode.experiments.analyze import load_run
from predcode.experiments.atomic import write_json
from predcode.experiments.config import FitConfig, with_overrides
from predcode.experiments.density import extract_latents, fit_prior, sample_images
from predcode.experiments.fit import fit, fit_session, load_fit_data, prepare_run_folder
from predcode.experiments.interrupt import stop_if_interrupted
from predcode.experiments.plots import curves_title, image_grid
from predcode.experiments.train import EpochRecord, evaluate
from predcode.learning.step import make_trainer
from predcode.threads import lapack_threads

__all__ = ["demo_config", "run_demo"]


def demo_config(
    *,
    kind: str = "gncn_pdh",
    dataset: str = "mnist",
    n_train: int = 5000,
    n_val: int = 1000,
    epochs: int = 5,
    batch_size: int = 200,
    seed: int = 69,
) -> FitConfig:
    """The museum fit config of the demo: no early stopping, evaluation in batches of ``batch_size``."""
    return with_overrides(
        FitConfig(),
        **{
            "model.kind": kind,
            "data.dataset": dataset,
            "data.n_train": n_train,
            "data.n_val": n_val,
            "train.epochs": epochs,
            "train.batch_size": batch_size,
            "train.eval_batch_size": batch_size,
            "train.patience": None,
            "train.seed": seed,
        },
    )


@fit_session  # Ctrl-C stops at a safe point; the run folder stays locked for the whole demo
@lapack_threads()  # jaxlib's CPU Cholesky on one OpenBLAS thread for this call only
def run_demo(
    out: Path,
    cfg: FitConfig | None = None,
    *,
    n_components: int = 10,
    on_batch: Callable | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> dict:
    """Fit ``cfg`` (default :func:`demo_config`) into ``out`` (a run in it is overwritten), then add the
    test BCE of the best model on the first 2,000 test images and ``samples.png`` (a
    ``n_components``-component mixture prior fitted to the latents of the first 2,000 training images).

    The training images are the first ``data.n_train`` of the dataset's training split after
    ``data.n_val`` validation images are split off with ``train.seed``, as ``predcode fit`` takes
    them. Returns ``summary.json``'s content.
    """
    out = Path(out)
    started = time.time()
    cfg = demo_config() if cfg is None else cfg
    kind, batch_size = cfg.model.kind, cfg.train.batch_size
    records: dict[int, EpochRecord] = {}

    def on_fit_epoch(trial: int, record: EpochRecord) -> None:
        records[record.epoch] = record
        if on_epoch:
            on_epoch(record)

    prepare_run_folder(out, resume=False, force=True)  # locked now, for the fit and the samples after it
    fitted = fit(cfg, out, force=True, on_batch=on_batch, on_epoch=on_fit_epoch)
    stop_if_interrupted()
    run = load_run(out)  # the best model, read back as analyze reads it
    model, params = run.model, run.params
    test_x, _ = load_binarized(cfg.data.dataset, "test")
    test_bce, test_tod = evaluate(make_trainer(model), params, test_x[:2000], batch_size)

    x_tr, _ = load_fit_data(cfg)
    seed = cfg.train.seed
    stop_if_interrupted()
    prior = fit_prior(extract_latents(model, params, x_tr[:2000]), n_components=n_components, seed=seed)
    stop_if_interrupted()
    samples = sample_images(model, params, prior, 100, seed=seed)
    title = f"{curves_title(cfg, kind)}\nsamples from a {n_components}-component GMM prior"
    image_grid(samples, out / "samples.png", title=title)

    trial = fitted["trials"][0]
    summary = {
        **fitted,
        "initial_val_bce": records[0].val_bce,
        "best_val_bce": trial["best_val_bce"],
        "best_epoch": trial["best_epoch"],
        "test_bce_first_2000": test_bce,
        "test_tod_first_2000": test_tod,
        "seconds": round(time.time() - started, 1),
        "files": [
            "config.toml",
            "best0.npz",
            "state0.npz",
            "metrics.csv",
            "summary.json",
            "curves.png",
            "samples.png",
        ],
    }
    write_json(out / "summary.json", summary)
    return summary
