"""TensorBoard event files: CRC32C against published test vectors, files read back by tensorboard's own reader."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.experiments.tensorboard import EventWriter, crc32c, event_record, masked_crc32c
from tensorboard_reader import read_scalars


def test_crc32c_matches_the_published_check_values():
    # the CRC catalogue's check value, and the RFC 3720 (iSCSI) appendix B.4 vectors
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_masked_crc_is_the_rotation_plus_the_tfrecord_constant():
    crc = crc32c(b"abc")
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    assert masked_crc32c(b"abc") == (rotated + 0xA282EAD8) % 2**32


def test_record_framing_is_length_crc_data_crc():
    data = b"predictive coding"
    record = event_record(data)
    assert struct.unpack("<Q", record[:8])[0] == len(data)
    assert struct.unpack("<I", record[8:12])[0] == masked_crc32c(record[:8])
    assert record[12:-4] == data
    assert struct.unpack("<I", record[-4:])[0] == masked_crc32c(data)


def test_tensorboards_reader_reads_back_what_the_writer_wrote(tmp_path):
    with EventWriter(tmp_path / "tb") as tb:
        tb.add_scalars(0, {"train/bce": 569.75, "val/bce": 569.48}, wall_time=1000.0)
        tb.add_scalars(1, {"train/bce": 145.93, "val/bce": 88.16}, wall_time=1001.5)
        tb.add_scalar("val/bce", -1e-3, 2**40)  # a step past int32, a negative value
    assert tb.path.name.startswith("events.out.tfevents.")
    scalars = read_scalars(tmp_path / "tb")
    assert sorted(scalars) == ["train/bce", "val/bce"]
    assert scalars["train/bce"] == [(0, np.float32(569.75), 1000.0), (1, np.float32(145.93), 1001.5)]
    assert [(s, v) for s, v, _ in scalars["val/bce"]] == [
        (0, np.float32(569.48)),
        (1, np.float32(88.16)),
        (2**40, np.float32(-1e-3)),
    ]


def test_writer_refuses_a_step_that_is_not_an_integer_and_writes_after_close(tmp_path):
    tb = EventWriter(tmp_path)
    with pytest.raises(TypeError, match="step: expected an integer"):
        tb.add_scalars(1.5, {"a": 1.0})
    tb.close()
    with pytest.raises(ValueError, match="after close"):
        tb.add_scalar("a", 1.0, 0)


def test_fit_log_tensorboard_writes_the_metrics_csv_curves(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", (rng.random((40, 784)) < 0.2).astype(np.float32))
    np.save(tmp_path / "val.npy", (rng.random((20, 784)) < 0.2).astype(np.float32))
    (tmp_path / "tiny.toml").write_text(
        '[model]\nkind = "gncn_t1"\nz_dims = [8, 8, 8]\nK = 5\n\n'
        '[data]\ntrain_file = "train.npy"\nval_file = "val.npy"\n\n'
        "[train]\nepochs = 2\nbatch_size = 20\neval_batch_size = 20\n"
    )
    from predcode.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["fit", "--config", str(tmp_path / "tiny.toml"), "--out", str(out), "--quiet", "--log", "tensorboard"]
    )
    assert result.exit_code == 0, result.output
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    scalars = read_scalars(out / "tb" / "trial0")
    assert [s for s, _, _ in scalars["val/bce"]] == [0, 1, 2]
    for key, tag in (
        ("train_bce", "train/bce"),
        ("train_tod", "train/tod"),
        ("val_bce", "val/bce"),
        ("val_tod", "val/tod"),
    ):
        np.testing.assert_allclose([v for _, v, _ in scalars[tag]], [float(r[key]) for r in rows], rtol=1e-6)
    assert [s for s, _, _ in scalars["time/seconds_per_epoch"]] == [1, 2]
