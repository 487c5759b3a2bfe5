"""Figures: image grids (samples, reconstructions), training curves and PCA scatter plots.

Every figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas: no pyplot, so importing
or calling predcode never changes matplotlib's backend (Jupyter's inline plots keep working) and
leaves no figure in pyplot's registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

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


@dataclass(frozen=True)
class Series:
    """One line of a curves panel: the record key, its legend label, and a factor (100 for percent)."""

    key: str
    label: str
    scale: float = 1.0


@dataclass(frozen=True)
class Panel:
    """One axes of :func:`training_curves`.

    ``series``: the lines. ``selects_best``: the run keeps its best model by this panel's last
    series (validation BCE, accuracy or energy), which gets a star at the best epoch.
    ``relative_to_end``: plot each value minus the last series' value at the last epoch, for an
    energy that carries a large constant (a Gaussian cell's ``0.5 n log(2 pi sigma^2)``): the
    curve's shape is then visible instead of a flat line on an offset.
    """

    ylabel: str
    series: tuple[Series, ...]
    selects_best: bool = False
    relative_to_end: bool = False


# The panels of each model family's curves.png.
MUSEUM_PANELS = (
    Panel("BCE (nats/image)", (Series("train_bce", "train"), Series("val_bce", "validation")), selects_best=True),
    Panel("total discrepancy", (Series("train_tod", "train"), Series("val_tod", "validation"))),
)
PC_SUPERVISED_PANELS = (
    Panel(
        "energy per sample (nats)",
        (Series("train_energy", "train (last batch)"), Series("val_energy", "validation")),
        relative_to_end=True,
    ),
    Panel("validation accuracy (%)", (Series("val_accuracy", "validation", 100.0),), selects_best=True),
)
PC_GENERATIVE_PANELS = (
    Panel(
        "energy per sample (nats)",
        (Series("train_energy", "train (last batch)"), Series("val_energy", "validation")),
        selects_best=True,
        relative_to_end=True,
    ),
    Panel("validation MSE", (Series("val_mse", "validation"),)),
)
MLP_PANELS = (
    Panel("training loss (cross-entropy)", (Series("train_loss", "train"),)),
    Panel(
        "accuracy (%)",
        (Series("test_accuracy", "test", 100.0), Series("val_accuracy", "validation", 100.0)),
        selects_best=True,
    ),
)
PC_PANELS = {"supervised": PC_SUPERVISED_PANELS, "generative": PC_GENERATIVE_PANELS}


def curves_title(cfg: Any, model: str, n_trials: int = 1) -> str:
    """``"<model> on <dataset> (<n> training images)"``, and which trial when there are several.

    ``cfg`` is a fit config of any family (its ``[data]`` table names the dataset, or the ``.npy``
    file trained on).
    """
    data = cfg.data
    dataset = Path(data.train_file).name if getattr(data, "train_file", None) else data.dataset
    size = "all training images" if data.n_train is None else f"{data.n_train:,} training images"
    trial = f", trial 0 of {n_trials}" if n_trials > 1 else ""
    return f"{model} on {dataset} ({size}{trial})"


def curves_for(cfg: Any, n_trials: int = 1) -> dict[str, Any]:
    """The ``panels`` and ``title`` of :func:`training_curves` for a fit config of any family."""
    family = type(cfg).family
    if family == "gncn":
        return {"panels": MUSEUM_PANELS, "title": curves_title(cfg, cfg.model.kind, n_trials)}
    if family == "pc":
        net = cfg.network
        return {"panels": PC_PANELS[net.task], "title": curves_title(cfg, pc_model_name(cfg), n_trials)}
    if family == "mlp":
        model = f"MLP {list(cfg.model.sizes)} trained by {cfg.model.rule}"
        return {"panels": MLP_PANELS, "title": curves_title(cfg, model, n_trials)}
    raise ValueError(f"curves: no panels for the config family {family!r}")


def pc_model_name(cfg: Any) -> str:
    """``"PC network [784, 256, 10] (supervised)"``: a PC fit config's network, for titles."""
    return f"PC network {list(cfg.network.dims)} ({cfg.network.task})"


def redraw_curves(run: str | Path, out: str | Path | None = None, trial: int = 0) -> Figure:
    """Draw ``curves.png`` of a run folder of any family again from its ``config.toml``,
    ``metrics.csv`` and ``summary.json`` (a run written by an earlier predcode gets today's figure).

    ``out`` defaults to ``<run>/curves.png``; ``trial`` picks the trial's rows and best epoch.
    """
    import csv
    import json

    from predcode.experiments.config import load_config

    run = Path(run)
    cfg = load_config(run / "config.toml")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r.get("trial", 0)) == trial]

    def number(text: str) -> Any:
        return None if text in ("", "None") else float(text)

    history = [{k: int(v) if k == "epoch" else number(v) for k, v in r.items() if k != "trial"} for r in rows]
    best = next((t.get("best_epoch") for t in summary.get("trials", []) if t.get("trial", 0) == trial), None)
    return training_curves(
        history, out or run / "curves.png", **curves_for(cfg, int(summary.get("n_trials", 1))), best_epoch=best
    )


def training_curves(
    history: list[dict],
    path: str | Path | None,
    panels: tuple[Panel, ...] = MUSEUM_PANELS,
    *,
    title: str,
    best_epoch: int | None = None,
) -> Figure:
    """Per-epoch curves of a run, side by side, one :class:`Panel` each; written to ``path`` (a PNG).

    The untrained model's record (epoch 0, e.g. a BCE of 570 against 57 after training) is left
    off the axes, which would otherwise be its scale, and its values go into the legend labels.
    ``best_epoch`` (the epoch whose model is ``best{t}``) is marked in every panel by a dashed line
    and, on the panel that ``selects_best``, on its last series by a star. When the last two thirds
    of the epochs span under a sixth of a panel's axis, an inset shows them at their own scale.
    ``title`` (model and dataset) heads the figure. Returns the figure (``fig.axes``: one axes per
    panel, in order; an inset is in its axes' ``child_axes``).
    """
    trained = [r for r in history if r["epoch"] != 0] or list(history)
    untrained = next((r for r in history if r["epoch"] == 0), None) if len(trained) < len(history) else None
    epochs = [r["epoch"] for r in trained]
    fig = new_figure(figsize=(4.6 * len(panels), 4.3), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        offset = 0.0
        if panel.relative_to_end:
            offset = panel.series[-1].scale * float(trained[-1][panel.series[-1].key])
        drawn = []
        for s in panel.series:
            values = [np.nan if r.get(s.key) is None else s.scale * float(r[s.key]) - offset for r in trained]
            label = s.label
            if untrained is not None and untrained.get(s.key) is not None:
                label += f" (untrained: {s.scale * float(untrained[s.key]):.4g})"
            line = ax.plot(epochs, values, "o-", ms=3, label=label)[0]
            drawn.append((values, line.get_color(), s is panel.series[-1] and panel.selects_best))
        _mark_best(ax, epochs, drawn, best_epoch, legend=True)
        _zoom_on_the_tail(ax, epochs, drawn, best_epoch)
        ylabel = panel.ylabel
        if panel.relative_to_end:
            ylabel = f"{ylabel}\nminus {offset:.6g} (its {panel.series[-1].label} value at epoch {epochs[-1]})"
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        # below the axes, where it hides no point and no inset
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def _mark_best(ax: Any, epochs: list[int], drawn: list, best_epoch: int | None, legend: bool) -> None:
    """A dashed line at the best epoch and a star on the series the best model was chosen by."""
    if best_epoch is None or best_epoch not in epochs:
        return
    for values, color, selects in drawn:
        if selects:
            y = values[epochs.index(best_epoch)]
            ax.plot([best_epoch], [y], "*", ms=13, color=color, markeredgecolor="k", zorder=5, label="_best")
    ax.axvline(best_epoch, color="0.45", ls="--", lw=1, label=f"best epoch {best_epoch}" if legend else "_nolegend_")


def _zoom_on_the_tail(ax: Any, epochs: list[int], drawn: list, best_epoch: int | None) -> None:
    """An inset of the last two thirds of the epochs when they span under a sixth of the axis.

    A run that learns fast and then creeps (a BCE of 146 after epoch 1 and 56 to 57 for twenty
    epochs) would otherwise show its late epochs, where the best model and any overfitting are, as
    a flat line.
    """
    if len(epochs) < 6:
        return
    start = len(epochs) // 3
    every = np.array([v for values, _, _ in drawn for v in values], float)
    tail = np.array([v for values, _, _ in drawn for v in values[start:]], float)
    if not (np.isfinite(every).any() and np.isfinite(tail).any()):
        return
    full, late = np.nanmax(every) - np.nanmin(every), np.nanmax(tail) - np.nanmin(tail)
    if full <= 0 or late >= full / 6:
        return
    last = [v for v in drawn[-1][0] if np.isfinite(v)]
    falling = len(last) > 1 and last[0] > last[-1]  # the tail lies low: put the inset above it, else below
    inset = ax.inset_axes((0.4, 0.46, 0.56, 0.4) if falling else (0.4, 0.1, 0.56, 0.4))
    for values, color, _ in drawn:
        inset.plot(epochs[start:], values[start:], "o-", ms=2, lw=1, color=color)
    _mark_best(inset, epochs[start:], [(v[start:], c, b) for v, c, b in drawn], best_epoch, legend=False)
    inset.set_title(f"epochs {epochs[start]} to {epochs[-1]}", fontsize=7)
    inset.tick_params(labelsize=7)
    inset.xaxis.set_major_locator(MaxNLocator(integer=True))
    inset.grid(alpha=0.3)


def pca_scatter(
    z: np.ndarray, labels: np.ndarray, path: str | Path | None, *, title: str, max_points: int = 2000, seed: int = 0
) -> tuple[Figure, Any]:
    """The first two principal components of ``z`` (n, d), coloured by class; ``(figure, fitted PCA)``.

    The PCA is fitted on every row; at most ``max_points`` rows (a seeded random subset) are drawn,
    small, translucent and in a shuffled order, so no class hides the others; the legend names each
    class and the axis labels give the variance each component explains.
    """
    from sklearn.decomposition import PCA

    z, labels = np.asarray(z), np.asarray(labels)
    pca = PCA(n_components=2).fit(z)
    shown = np.arange(len(z))
    if len(z) > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
    p = pca.transform(z[shown])
    fig = new_figure(figsize=(6.8, 5), dpi=100)
    ax = fig.subplots()
    classes = np.unique(labels)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    size, alpha = (14, 0.75) if len(shown) <= 1000 else (6, 0.45)  # fewer points: larger and more opaque
    colour = {c: cmap(k % cmap.N) for k, c in enumerate(classes)}
    # one scatter in a shuffled order, so no class is drawn over all the others
    order = np.random.default_rng(seed + 1).permutation(len(shown))
    ax.scatter(p[order, 0], p[order, 1], s=size, alpha=alpha, c=[colour[c] for c in labels[shown][order]], linewidths=0)
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=colour[c], label=str(c)) for c in classes]
    ax.legend(handles=handles, title="class", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ev = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC 1 ({100 * ev[0]:.1f}% of variance)", ylabel=f"PC 2 ({100 * ev[1]:.1f}% of variance)")
    ax.set_title(f"{title}\n{len(shown)} of {len(z)} points shown", fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig, pca
