"""Figures: image grids (samples, reconstructions) and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from predcode.experiments.atomic import atomic_path


def image_grid(
    images: np.ndarray, path: str | Path, *, ncols: int = 10, side: int = 28, title: str | None = None
) -> Path:
    """Write ``images`` (n, side*side) in [0, 1] as a grey-scale grid PNG at ``path``."""
    images = np.asarray(images, np.float32).reshape(-1, side, side)
    n = len(images)
    nrows = -(-n // ncols)
    canvas = np.ones((nrows * (side + 2), ncols * (side + 2)), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (side + 2) + 1 : r * (side + 2) + 1 + side, c * (side + 2) + 1 : c * (side + 2) + 1 + side] = img
    fig, ax = plt.subplots(figsize=(ncols * 0.6, nrows * 0.6 + (0.4 if title else 0)), dpi=100)
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def training_curves(history: list[dict], path: str | Path) -> Path:
    """Plot BCE and ToD per epoch, train and validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for ax, metric, label in ((axes[0], "bce", "BCE (nats/image)"), (axes[1], "tod", "total discrepancy")):
        ax.plot(epochs, [h[f"train_{metric}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{metric}"] for h in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
