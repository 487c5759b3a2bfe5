"""Read an offline W&B run back: its ``.wandb`` transaction log, decoded with wandb's own protobuf schema.

wandb (0.31) ships no Python reader of the ``.wandb`` file any more (its Go core writes and syncs it).
The file is a LevelDB log (google/leveldb doc/log_format.md): a 7-byte header (``:W&B``, magic
0xBEE1, version 0), then 32 KiB blocks of chunks ``crc32 (uint32) | length (uint16) | type (uint8) |
data``, where types FULL, FIRST, MIDDLE and LAST join chunks into records and the CRC is zlib's
CRC-32 of the type byte and the data. Each record is a ``wandb.proto.wandb_internal_pb2.Record``:
its ``history`` items, ``config`` updates and ``run`` fields are what the tests compare.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes):
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"not a .wandb file: header {data[:7]!r}")
    pos, parts = CHUNK_HEADER, []
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # a block's zero trailer
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise ValueError(f"CRC mismatch in the .wandb file at byte {pos}")
        pos += CHUNK_HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            parts = [payload]
        elif kind == MIDDLE:
            parts.append(payload)
        elif kind == LAST:
            yield b"".join([*parts, payload])
            parts = []


def read_offline_run(run_dir: str | Path) -> dict:
    """``{"id", "name", "group", "project", "config": {key: value}, "history": [{"_step": s, key: value}],
    "artifacts": [names], "exit_code"}`` of the offline run folder ``run_dir`` (skips without wandb)."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="wandb (the track extra) is not installed")
    (path,) = Path(run_dir).glob("run-*.wandb")
    out: dict = {"config": {}, "history": [], "artifacts": [], "exit_code": None}
    for raw in _records(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group)
            out["project"] = record.run.project
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            if record.history.HasField("step"):
                row["_step"] = record.history.step.num
            out["history"].append(row)
        elif kind == "artifact":
            out["artifacts"].append(record.artifact.name)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def offline_runs(folder: str | Path) -> list[Path]:
    """The offline run folders under ``folder/wandb``, oldest first."""
    return sorted((Path(folder) / "wandb").glob("offline-run-*"))
