"""The figures encode what a reader needs (issue 21, item 6): no pixel comparisons, the drawn data.

Training curves leave the untrained epoch off the axes (its value in the legend), mark the best
epoch where the run took its best model, and name the model and dataset; a PC energy is drawn
relative to its end, not on its constant offset; a PCA plot draws a subsample, translucent, with
one legend entry a class.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from predcode.experiments.config import load_config, with_overrides
from predcode.experiments.plots import (
    MLP_PANELS,
    MUSEUM_PANELS,
    PC_PANELS,
    curves_title,
    pca_scatter,
    training_curves,
)


def _museum_history():
    # epoch 0 is the untrained model, an order of magnitude above the trained epochs
    bce = [570.0, 80.0, 62.0, 57.5, 57.9, 58.3]
    return [
        {"epoch": e, "train_bce": b + 1, "val_bce": b, "train_tod": b / 3, "val_tod": b / 3 - 1, "seconds": 1.0}
        for e, b in enumerate(bce)
    ]


def _lines(ax):
    return [line for line in ax.get_lines()]


def test_museum_curves_leave_out_the_untrained_epoch_and_mark_the_best(tmp_path):
    cfg = with_overrides(load_config("mnist/gncn_pdh"), **{"data.n_train": 1000})
    title = curves_title(cfg, cfg.model.kind)
    fig = training_curves(_museum_history(), tmp_path / "curves.png", MUSEUM_PANELS, title=title, best_epoch=3)
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert fig._suptitle.get_text() == "gncn_pdh on mnist (1,000 training images)"
    bce_ax, tod_ax = fig.axes
    for ax in (bce_ax, tod_ax):
        data_lines = [ln for ln in _lines(ax) if ln.get_label() in ("_best",) or "untrained" in ln.get_label()]
        assert data_lines and all(0 not in np.asarray(ln.get_xdata()) for ln in data_lines)
        marker = [ln for ln in _lines(ax) if ln.get_label() == "best epoch 3"]
        assert len(marker) == 1 and list(marker[0].get_xdata()) == [3, 3]  # the dashed line at the best epoch
    # the BCE axis is the trained epochs' scale, not the untrained model's 570
    assert bce_ax.get_ylim()[1] < 100
    labels = [t.get_text() for t in bce_ax.get_legend().get_texts()]
    assert "validation (untrained: 570)" in labels and "train (untrained: 571)" in labels
    # the star on the validation BCE (what the best model is chosen by), at (3, 57.5); none on ToD
    (star,) = [ln for ln in _lines(bce_ax) if ln.get_label() == "_best"]
    assert list(star.get_xdata()) == [3] and list(star.get_ydata()) == [57.5]
    assert not [ln for ln in _lines(tod_ax) if ln.get_label() == "_best"]


def test_a_pc_energy_is_drawn_relative_to_its_end_not_on_its_constant():
    # 502.71 nats of Gaussian normaliser, and changes of a few thousandths (the flat line)
    history = [
        {"epoch": e, "train_energy": 502.71 + d + 0.0002, "val_energy": 502.71 + d, "val_accuracy": a, "val_mse": None}
        for e, (d, a) in enumerate([(0.0023, 0.5), (0.0021, 0.8), (0.0019, 0.9), (0.0020, 0.85)], start=1)
    ]
    fig = training_curves(history, None, PC_PANELS["supervised"], title="PC network on mnist", best_epoch=3)
    energy_ax, acc_ax = fig.axes
    (val,) = [ln for ln in _lines(energy_ax) if ln.get_label() == "validation"]
    np.testing.assert_allclose(val.get_ydata(), [0.0003, 0.0001, -0.0001, 0.0], atol=2e-6)
    assert "minus 502.712" in energy_ax.get_ylabel() and "epoch 4" in energy_ax.get_ylabel()
    low, high = energy_ax.get_ylim()
    assert high - low < 0.01  # the axis spans the changes, not the offset
    # supervised PC keeps its best model by validation accuracy: the star is on that panel, in percent
    (star,) = [ln for ln in _lines(acc_ax) if ln.get_label() == "_best"]
    assert list(star.get_xdata()) == [3] and list(star.get_ydata()) == [pytest.approx(90.0)]


def test_generative_pc_and_mlp_curves_star_the_metric_they_select_by():
    gen = [{"epoch": e, "train_energy": 800 - 10 * e, "val_energy": 790 - 10 * e, "val_mse": 60 - e} for e in (1, 2)]
    fig = training_curves(gen, None, PC_PANELS["generative"], title="t", best_epoch=2)
    (star,) = [ln for ax in fig.axes for ln in _lines(ax) if ln.get_label() == "_best"]
    assert star.axes is fig.axes[0] and list(star.get_ydata()) == [0.0]  # the validation energy, at its end
    mlp = [{"epoch": e, "train_loss": 2 / e, "val_accuracy": v, "test_accuracy": v} for e, v in ((1, 0.5), (2, 0.7))]
    fig = training_curves(mlp, None, MLP_PANELS, title="t", best_epoch=2)
    (star,) = [ln for ax in fig.axes for ln in _lines(ax) if ln.get_label() == "_best"]
    assert star.axes is fig.axes[1] and list(star.get_ydata()) == [pytest.approx(70.0)]


def test_curves_titles_name_the_model_dataset_and_trial():
    cfg = load_config("mnist/gncn_pdh")
    assert curves_title(cfg, "gncn_pdh", 3) == "gncn_pdh on mnist (all training images, trial 0 of 3)"
    fashion = with_overrides(cfg, **{"data.dataset": "fashion-mnist", "data.n_train": 500})
    assert curves_title(fashion, "gncn_t1") == "gncn_t1 on fashion-mnist (500 training images)"


def test_the_pca_plot_draws_a_translucent_subsample_with_a_legend_of_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 500)
    z = rng.normal(size=(5000, 6)) + 3 * np.eye(10, 6)[labels]
    fig, pca = pca_scatter(z, labels, tmp_path / "pca.png", title="codes", max_points=2000)
    assert (tmp_path / "pca.png").stat().st_size > 0
    (ax,) = fig.axes
    (scatter,) = [c for c in ax.collections if isinstance(c, PathCollection)]  # one, in a shuffled order
    assert len(scatter.get_offsets()) == 2000 and scatter.get_alpha() < 1
    # the colours are drawn mixed: the first 200 points drawn are not all of one class
    first = {tuple(np.round(c, 3)) for c in scatter.get_facecolors()[:200]}
    assert len(first) == 10
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(k) for k in range(10)]
    ev = pca.explained_variance_ratio_
    assert f"{100 * ev[0]:.1f}% of variance" in ax.get_xlabel()
    assert "2000 of 5000 points shown" in ax.get_title()


def test_late_epochs_that_creep_get_an_inset_at_their_own_scale():
    """The walkthrough's run: 146 after epoch 1, then 56 to 57 for twenty epochs (best at 12)."""
    val = [88.2, 70.6, 64.4, 61.3, 59.6, 58.3, 57.4, 56.7, 56.4, 56.2] + [56.12, 56.11, 56.2, 56.3, 56.5] + [56.6] * 7
    history = [{"epoch": 0, "train_bce": 570, "val_bce": 569, "train_tod": 284, "val_tod": 283}] + [
        {"epoch": e, "train_bce": v + 5, "val_bce": v, "train_tod": v / 3, "val_tod": v / 3}
        for e, v in enumerate(val, 1)
    ]
    fig = training_curves(history, None, MUSEUM_PANELS, title="t", best_epoch=12)
    bce_ax = fig.axes[0]
    (inset,) = bce_ax.child_axes
    lines = [ln for ln in inset.get_lines() if ln.get_label() != "_best" and len(ln.get_xdata()) > 2]
    assert list(lines[0].get_xdata()) == list(range(8, 23))  # the last two thirds of 22 epochs
    low, high = inset.get_ylim()
    # the tail at its own scale: train 61 to 65 and validation 56 to 57, inside a main axis of 50 nats
    assert high - low < 10 and bce_ax.get_ylim()[1] - bce_ax.get_ylim()[0] > 30
    (star,) = [ln for ln in inset.get_lines() if ln.get_label() == "_best"]
    assert list(star.get_xdata()) == [12] and list(star.get_ydata()) == [56.11]
    # a run whose epochs keep falling steeply needs none
    steep = [
        {"epoch": e, "train_bce": 100 - 9 * e, "val_bce": 100 - 9 * e, "train_tod": 1, "val_tod": 1}
        for e in range(1, 10)
    ]
    assert not training_curves(steep, None, MUSEUM_PANELS[:1], title="t").axes[0].child_axes
