"""TensorBoard event files without TensorFlow or PyTorch: scalars per epoch for ``predcode fit --log tensorboard``.

An event file is a sequence of TFRecords, each ``uint64 length | uint32 masked_crc32c(length) |
data | uint32 masked_crc32c(data)`` (little endian), where ``data`` is a serialized ``Event``
protocol buffer. predcode writes the two kinds TensorBoard needs for scalar curves:

* the header ``Event{wall_time, file_version = "brain.Event:2"}``;
* ``Event{wall_time, step, summary = Summary{value = [Value{tag, simple_value}, ...]}}``.

The protocol-buffer fields are encoded by hand (field numbers from TensorBoard's ``event.proto`` and
``summary.proto``); CRC32C is the Castagnoli polynomial, masked as TFRecord prescribes. Files
are named ``events.out.tfevents.<seconds>.<host>.<pid>.<n>`` so that ``tensorboard --logdir`` finds
them; each writer opens a new file, so a resumed run appends a second file to the same folder.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["EventWriter", "crc32c", "epoch_scalars", "event_record", "masked_crc32c", "scalar_event"]

_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reversed


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()
_COUNTER = itertools.count()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus ``0xA282EAD8`` (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement, ten bytes
    out = bytearray()
    while True:
        bits, n = n & 0x7F, n >> 7
        out.append(bits | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def scalar_event(step: int, scalars: Mapping[str, float], wall_time: float | None = None) -> bytes:
    """A serialized ``Event`` holding one ``simple_value`` per tag of ``scalars`` at ``step``."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step: expected an integer, got {step!r}")
    values = b""
    for tag, value in scalars.items():
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"scalars: expected non-empty string tags, got {tag!r}")
        value_msg = _length_delimited(1, tag.encode("utf-8")) + _field(2, 5, struct.pack("<f", float(value)))
        values += _length_delimited(1, value_msg)  # Summary.value (repeated)
    wall = time.time() if wall_time is None else float(wall_time)
    return _field(1, 1, struct.pack("<d", wall)) + _field(2, 0, _varint(step)) + _length_delimited(5, values)


def _header_event(wall_time: float) -> bytes:
    return _field(1, 1, struct.pack("<d", wall_time)) + _length_delimited(3, b"brain.Event:2")


def event_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends scalar events to a new event file in ``logdir`` (created if missing); flushed after each write.

    Use as a context manager or call :meth:`close`::

        with EventWriter("runs/pdh/tb/trial0") as tb:
            tb.add_scalars(1, {"train/bce": 145.9, "val/bce": 88.2})
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        self.logdir = Path(logdir)
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"tensorboard log folder {self.logdir}: cannot create it ({err.strerror or err})") from None
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.{next(_COUNTER)}"
        self.path = self.logdir / name
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(event_record(_header_event(now)))
        self._file.flush()

    def add_scalars(self, step: int, scalars: Mapping[str, float], wall_time: float | None = None) -> None:
        """Write the ``scalars`` (tag -> value) of ``step``; non-finite values are written as they are."""
        if self._file.closed:
            raise ValueError(f"EventWriter for {self.path}: add_scalars after close")
        self._file.write(event_record(scalar_event(step, scalars, wall_time)))
        self._file.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Write one scalar ``value`` under ``tag`` at ``step``."""
        self.add_scalars(step, {tag: value}, wall_time)

    def close(self) -> None:
        """Flush, sync to disk and close the file (idempotent)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def epoch_scalars(record) -> dict[str, float]:
    """The TensorBoard scalars of one epoch record of the training loop (``EpochRecord``)."""
    scalars = {
        "train/bce": record.train_bce,
        "train/tod": record.train_tod,
        "val/bce": record.val_bce,
        "val/tod": record.val_tod,
    }
    if record.epoch > 0 and math.isfinite(record.seconds):
        scalars["time/seconds_per_epoch"] = record.seconds
    return scalars
