"""Figures: image grids (samples, reconstructions) and training curves.

Every figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas: no pyplot, so importing
or calling predcode never changes matplotlib's backend (Jupyter's inline plots keep working) and
leaves no figure in pyplot's registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from predcode.experiments.atomic import atomic_path


def figure_format(path: str | Path) -> str:
    """The file format a figure's name asks for (its suffix: ``.png``, ``.jpg``, ``.pdf``, ``.svg``, ...).

    Raises ``ValueError`` naming the path and the suffixes matplotlib's Agg canvas writes (JPEG,
    TIFF and WebP through Pillow, a dependency of matplotlib).
    """
    suffix = Path(path).suffix.lower()
    formats = sorted(new_figure().canvas.get_supported_filetypes())
    if suffix[1:] not in formats:
        raise ValueError(
            f"{path}: expected a file name ending in one of {', '.join('.' + f for f in formats)} (the "
            f"suffix chooses the image format), got {('suffix ' + repr(Path(path).suffix)) if suffix else 'no suffix'}"
        )
    return suffix[1:]


def save_figure(fig: Figure, path: str | Path, **kwargs: Any) -> Path:
    """Write ``fig`` atomically in the format its suffix names (:func:`figure_format`); return the path."""
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return Path(path)


def new_figure(**kwargs: Any) -> Figure:
    """A figure on its own Agg canvas (``Figure(**kwargs)``), outside pyplot and its backend."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def image_grid(
    images: np.ndarray, path: str | Path, *, ncols: int = 10, side: int = 28, title: str | None = None
) -> Path:
    """Write ``images`` (n, side*side) in [0, 1] as a grey-scale grid at ``path`` (format from its suffix)."""
    images = np.asarray(images, np.float32).reshape(-1, side, side)
    n = len(images)
    nrows = -(-n // ncols)
    canvas = np.ones((nrows * (side + 2), ncols * (side + 2)), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (side + 2) + 1 : r * (side + 2) + 1 + side, c * (side + 2) + 1 : c * (side + 2) + 1 + side] = img
    fig = new_figure(figsize=(ncols * 0.6, nrows * 0.6 + (0.4 if title else 0)), dpi=100)
    ax = fig.subplots()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")


def training_curves(history: list[dict], path: str | Path) -> Path:
    """Plot BCE and ToD per epoch, train and validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(figsize=(9, 3.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "bce", "BCE (nats/image)"), (axes[1], "tod", "total discrepancy")):
        ax.plot(epochs, [h[f"train_{metric}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{metric}"] for h in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
