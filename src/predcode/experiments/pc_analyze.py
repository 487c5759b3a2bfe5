"""``predcode analyze`` for general PC runs: codes, linear probe, k-NN, 2-D PCA, samples, reconstructions.

The representation of an image is

* generative runs: its code, the first node's state inferred with the learned decoder and the image
  clamped (``inference.T_eval`` steps, default ``inference.T``);
* supervised runs: the last hidden node's state after a forward pass (the image clamped, the label
  free, which is the fixed point of inference).

Codes of training images (a class-balanced sample) train the linear probe and the k-NN memory;
test images are scored. ``report.json`` holds the accuracies (with provenance), ``pca.png`` the
test codes' first two principal components coloured by class; generative runs also get
``reconstructions.png`` (test images above their predictions) and ``samples.png`` (codes drawn
from a Gaussian fitted to the training codes, passed down the network).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from predcode.experiments.analyze import AnalyzeError
from predcode.experiments.atomic import write_json
from predcode.experiments.checkpoint import CheckpointError, check_finite, check_metadata, load_tree
from predcode.experiments.config import NetworkSection, PCFitConfig, build_network, parse_toml
from predcode.experiments.pc_fit import clamps_for, load_pc_data, make_pc_trainer, predict_labels
from predcode.experiments.plots import image_grid
from predcode.experiments.probes import knn_probe, linear_probe
from predcode.experiments.provenance import provenance

__all__ = ["balanced_indices", "gaussian_code_samples", "load_pc_run", "pc_analyze", "pc_codes", "pc_sample"]


def load_pc_run(run: str | Path, trial: int = 0):
    """``(cfg, network, params)`` of a PC run folder's best model ``best{trial}``."""
    run = Path(run)
    cfg = parse_toml((run / "config.toml").read_text(), str(run / "config.toml"))
    network = build_network(cfg)
    tree, meta = load_tree(run / f"best{trial}", {"params": jax.eval_shape(network.init, jax.random.key(0))})
    recorded = meta.get("network")
    if not isinstance(recorded, dict):
        raise CheckpointError(
            f'{run / f"best{trial}.json"}: expected the recorded network (a JSON object under "network"), '
            f"found {recorded!r}; the metadata is damaged or edited, save the checkpoint again (or restore it)"
        )
    check_metadata(recorded, NetworkSection, source=run / f"best{trial}.json", expected=cfg.network)
    check_finite({"params": tree["params"]}, run / f"best{trial}.npz")
    params = tree["params"]
    return cfg, network, params


def balanced_indices(labels: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` random indices of each class (sorted)."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def pc_codes(
    cfg: PCFitConfig, trainer, params, x: np.ndarray, *, batch_size: int = 1000, T: int | None = None
) -> np.ndarray:
    """The representation of each image (see the module docstring), ``(n, code dim)``."""
    net = trainer.network
    if cfg.network.task == "supervised":
        hidden = net.names[-2]
        fn = jax.jit(lambda p, xb: net.forward(p, {net.names[0]: xb})[hidden])
        return np.concatenate(
            [np.asarray(fn(params, jnp.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
        )
    T = T if T is not None else (cfg.inference.T_eval if cfg.inference.T_eval is not None else cfg.inference.T)
    out = []
    for i in range(0, len(x), batch_size):
        states = trainer.infer(params, clamps_for(cfg, net, x[i : i + batch_size]), T=T).states
        out.append(np.asarray(states[net.names[0]]))
    return np.concatenate(out)


def _run_name(cfg) -> str:
    from predcode.experiments.plots import curves_title, pc_model_name

    return curves_title(cfg, pc_model_name(cfg))


def _pca_plot(z: np.ndarray, labels: np.ndarray, path: Path, title: str) -> dict:
    from predcode.experiments.plots import pca_scatter

    _, pca = pca_scatter(z, labels, path, title=title)
    return {"explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_]}


def pc_analyze(
    run: str | Path,
    *,
    trial: int = 0,
    n_per_class: int | None = None,
    n_test: int | None = None,
    k: int = 5,
    seed: int = 0,
    out: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict:
    """Probe, k-NN and PCA of a PC run's representations; figures and ``report.json`` in ``out``.

    ``n_per_class`` training images a class feed the probes (default: all training images);
    ``n_test`` limits the test images (default: all).
    """
    say = on_stage or (lambda msg: None)
    run = Path(run)
    out = Path(out) if out is not None else run / f"analysis{trial}"
    out.mkdir(parents=True, exist_ok=True)
    cfg, network, params = load_pc_run(run, trial)
    trainer = make_pc_trainer(cfg, network)
    data = load_pc_data(cfg)
    idx = (
        np.arange(len(data.x_train)) if n_per_class is None else balanced_indices(data.y_train, n_per_class, seed=seed)
    )
    x_test, y_test = data.x_test[:n_test], data.y_test[:n_test]
    say(f"inferring the representations of {len(idx)} training and {len(x_test)} test images")
    z_train = pc_codes(cfg, trainer, params, data.x_train[idx])
    z_test = pc_codes(cfg, trainer, params, x_test)
    say("fitting the linear probe and the k-NN classifier")
    probe = linear_probe(z_train, data.y_train[idx], z_test, y_test, seed=seed)
    knn = knn_probe(z_train, data.y_train[idx], z_test, y_test, k=k)
    what = "code" if cfg.network.task == "generative" else f"hidden state {network.names[-2]!r}"
    report = {
        **provenance(),
        "run": str(run),
        "trial": trial,
        "task": cfg.network.task,
        "representation": what,
        "dim": int(z_train.shape[1]),
        "linear_probe": {**probe, "accuracy_pct": 100 - probe["error_pct"]},
        "knn": {**knn, "accuracy_pct": 100 - knn["error_pct"]},
        "pca": _pca_plot(
            z_test,
            y_test,
            out / "pca.png",
            f"{_run_name(cfg)}\n{what} of the test images, first two principal components",
        ),
    }
    if cfg.network.task == "supervised":
        report["test_accuracy_forward"] = float(np.mean(predict_labels(network, params, x_test) == y_test))
    else:
        report.update(_generative_figures(cfg, trainer, params, z_train, x_test, out, seed))
    report["out"] = str(out)
    write_json(out / "report.json", report)
    return report


def _generative_figures(cfg, trainer, params, z_train, x_test, out: Path, seed: int) -> dict:
    net = trainer.network
    code, image = net.names[0], net.names[-1]
    T = cfg.inference.T_eval if cfg.inference.T_eval is not None else cfg.inference.T
    shown = x_test[:30]
    states = trainer.infer(params, clamps_for(cfg, net, shown), T=T).states
    recon = np.asarray(net.prediction(params, states, image))
    # Reconstruction through the code alone: a forward sweep from the inferred code.
    through_code = np.asarray(net.forward(params, {code: states[code]})[image])
    rows = np.concatenate([shown[:10], recon[:10], through_code[:10], shown[10:20], recon[10:20], through_code[10:20]])
    image_grid(
        np.clip(rows, 0, 1),
        out / "reconstructions.png",
        title=f"{_run_name(cfg)}\nrows: test images, predictions at the inferred states, forward sweep from the code",
    )
    samples = gaussian_code_samples(net, params, z_train, 50, seed)
    image_grid(samples, out / "samples.png", title=f"{_run_name(cfg)}\ncodes from a Gaussian fitted to training codes")
    mse = float(np.mean(np.sum((through_code - shown) ** 2, axis=1)))
    return {
        "reconstruction_sse_forward_from_code_first30": mse,
        "files": ["pca.png", "reconstructions.png", "samples.png"],
    }


def gaussian_code_samples(net, params, z_train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` images (clipped to [0, 1]): codes drawn from a Gaussian fitted to ``z_train``, passed down the network."""
    code, image = net.names[0], net.names[-1]
    mean, cov = z_train.mean(0), np.cov(z_train, rowvar=False)
    draws = np.random.default_rng(seed).multivariate_normal(mean, cov, size=n).astype(np.float32)
    return np.clip(np.asarray(net.forward(params, {code: jnp.asarray(draws)})[image]), 0, 1)


def pc_sample(run: str | Path, *, n: int = 64, out: str | Path | None = None, trial: int = 0, seed: int = 0) -> dict:
    """``n`` samples of a generative PC run as a PNG grid (default ``<run>/samples{trial}.png``).

    The codes come from a Gaussian fitted to the inferred codes of the first 2,000 training images.
    Returns ``{"path", "prior"}``; a supervised run has no generative model (:class:`AnalyzeError`).
    """
    run = Path(run)
    cfg, network, params = load_pc_run(run, trial)
    if cfg.network.task != "generative":
        raise AnalyzeError(
            f"--run: sampling needs a generative PC network, the run in {run} is {cfg.network.task!r}; "
            "`predcode analyze --run` probes its hidden states"
        )
    x_train = load_pc_data(cfg).x_train[:2000]
    z_train = pc_codes(cfg, make_pc_trainer(cfg, network), params, x_train)
    path = Path(out) if out is not None else run / f"samples{trial}.png"
    image_grid(
        gaussian_code_samples(network, params, z_train, n, seed),
        path,
        ncols=min(n, math.ceil(math.sqrt(n))),
        title=f"{_run_name(cfg)}\n{n} samples (seed {seed})",
    )
    return {"path": str(path), "prior": f"Gaussian fitted to the codes of {len(x_train)} training images"}
