"""Read TensorBoard event files back with tensorboard's own reader (the tests' oracle for EventWriter)."""

import pytest


def read_scalars(logdir):
    """``{tag: [(step, value, wall_time), ...]}`` of the scalars in ``logdir`` (skips without tensorboard)."""
    accumulator_mod = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="the tensorboard package (test extra) is not installed",
    )
    acc = accumulator_mod.EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
