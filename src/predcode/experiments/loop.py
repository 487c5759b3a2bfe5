"""The one epoch loop of every family: which trials train in which epoch, batches, early stopping.

:func:`run_epochs` drives a :class:`TrialGroup`, the trials of one family that train together
(one trial, or several stacked in one ``vmap``-ped step). The loop owns the schedule, the same for
every family: an epoch runs for every trial that wants more (fewer than ``epochs`` finished and,
with ``patience``, an improvement within the last ``patience`` epochs); a trial that has stopped,
or that is ahead after a resume of trials saved at different epochs, is left out of the epoch
(``active`` is False: the group computes its step but keeps its state). The group owns what differs
between families: the step, the evaluation, the best model and the records.

Epoch ``e`` of a trial with seed ``s`` visits the training rows in :func:`epoch_order` ``(n, s, e)``,
a function of ``(s, e)`` alone, so a run resumed after any epoch ends as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from predcode.experiments.interrupt import stop_if_interrupted
from predcode.limits import MAX_EPOCHS

__all__ = ["TrialGroup", "TrialProgress", "epoch_order", "run_epochs"]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch, a function of (seed, epoch) alone, so a resumed run repeats it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class TrialProgress(Protocol):
    """What the loop reads of a trial: epochs finished and the epoch of its best model (0: none yet)."""

    @property
    def epoch(self) -> int:
        """Epochs finished."""
        ...

    @property
    def best_epoch(self) -> int:
        """The epoch of the best model so far (0: the untrained model, or none yet)."""
        ...


class TrialGroup(Protocol):
    """The trials of one family that train together, as :func:`run_epochs` drives them."""

    @property
    def states(self) -> Sequence[TrialProgress]:
        """One progress per trial of the group, in order."""
        ...

    n_batches: int  # training batches per epoch

    def start(self) -> list[tuple[int, Any]]:
        """Records of trials that start fresh with an evaluation of their untrained model (epoch 0)."""
        ...

    def begin_epoch(self, epoch: int, active: np.ndarray) -> None:
        """Prepare epoch ``epoch`` for the trials where ``active`` (bool, one per trial) is True."""
        ...

    def train_batch(self, b: int) -> tuple[float, ...] | None:
        """Train batch ``b`` of the epoch; the progress numbers to report, or None to report nothing.

        Raises ``FloatingPointError`` naming the trial, epoch and batch if training diverged.
        """
        ...

    def end_epoch(self, epoch: int) -> list[tuple[int, Any]]:
        """Evaluate the active trials, update their states and best models; ``(trial index, record)`` each."""
        ...


def run_epochs(
    group: TrialGroup,
    *,
    epochs: int,
    patience: int | None = None,
    on_batch: Callable[..., None] | None = None,
    on_epoch: Callable[[int, Any], None] | None = None,
) -> None:
    """Train ``group`` until every trial has ``epochs`` epochs or has stopped early.

    ``on_batch(b, n_batches, *progress)`` runs after every batch whose progress the group reports;
    ``on_epoch(i, record)`` after each finished epoch of the group's trial ``i`` (where a caller
    saves checkpoints and logs), and first for every record of :meth:`TrialGroup.start`.
    """
    for name, value in (("epochs", epochs), ("patience", patience)):
        if name == "patience" and value is None:
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= MAX_EPOCHS:
            expected = f"an integer in [1, {MAX_EPOCHS}]" + (" or None" if name == "patience" else "")
            raise ValueError(f"{name}: expected {expected}, got {value!r}")

    for i, record in group.start():
        if on_epoch is not None:
            on_epoch(i, record)
    stop_if_interrupted()  # after the untrained models' evaluation and saves

    def wants_more(s: TrialProgress) -> bool:
        return s.epoch < epochs and not (patience is not None and s.epoch - s.best_epoch >= patience)

    while True:
        waiting = [s.epoch for s in group.states if wants_more(s)]
        if not waiting:
            return
        epoch = min(waiting) + 1
        active = np.array([wants_more(s) and s.epoch + 1 == epoch for s in group.states])
        group.begin_epoch(epoch, active)
        n_batches = group.n_batches
        for b in range(n_batches):
            progress = group.train_batch(b)
            stop_if_interrupted()  # Ctrl-C: here, between steps (predcode.experiments.interrupt)
            if on_batch is not None and progress is not None:
                on_batch(b + 1, n_batches, *progress)
        for i, record in group.end_epoch(epoch):
            if on_epoch is not None:
                on_epoch(i, record)
        stop_if_interrupted()  # and after the epoch's saves
