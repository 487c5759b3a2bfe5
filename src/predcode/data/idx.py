"""Strict reader for gzip-compressed IDX files (the MNIST family's format)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_FIX = (
    "Delete the file and let predcode download it again, or replace it with the "
    "original file from the dataset's official distribution."
)


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or inconsistent; the message says how to fix it."""


def _fail(path: str | os.PathLike, problem: str) -> DatasetError:
    """Build a DatasetError naming the file, the problem and the fix."""
    return DatasetError(f"{os.fspath(path)}: {problem}. {_FIX}")


def _read_gzip(path: str | os.PathLike) -> bytes:
    """Return the decompressed contents of a gzip file, as DatasetError on any failure."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DatasetError(f"{os.fspath(path)}: file not found.") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _fail(path, f"expected a complete gzip-compressed IDX file, found a broken gzip stream ({e})") from e
    except OSError as e:
        raise DatasetError(f"{os.fspath(path)}: cannot read the file ({e}).") from e


def _header(path: str | os.PathLike, data: bytes, magic: int, ndim: int, kind: str) -> tuple[int, ...]:
    """Check the magic number and return the dimensions that follow it."""
    size = 4 * (1 + ndim)
    if len(data) < size:
        raise _fail(path, f"expected an IDX {kind} header of {size} bytes, found only {len(data)} bytes")
    found, *dims = struct.unpack(f">{1 + ndim}I", data[:size])
    if found != magic:
        raise _fail(path, f"expected IDX {kind} magic number {magic}, found {found}; this is not an IDX {kind} file")
    return tuple(dims)


def _payload(path: str | os.PathLike, data: bytes, offset: int, count: int, what: str) -> np.ndarray:
    """Return the uint8 payload after the header, checking its length exactly."""
    found = len(data) - offset
    if found < count:
        raise _fail(path, f"expected {count} payload bytes for {what}, found {found}: the file is truncated")
    if found > count:
        raise _fail(path, f"expected {count} payload bytes for {what}, found {found}: {found - count} trailing bytes")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=offset).copy()


def read_idx_images(path: str | os.PathLike, *, rows: int | None = 28, cols: int | None = 28) -> np.ndarray:
    """Read a gzipped IDX images file into a uint8 array of shape (n, rows, cols).

    ``rows``/``cols`` are the required image size; pass None to accept any.
    """
    data = _read_gzip(path)
    n, r, c = _header(path, data, IMAGES_MAGIC, 3, "images")
    if (rows is not None and r != rows) or (cols is not None and c != cols):
        raise _fail(path, f"expected {rows}x{cols} images, found {r}x{c}")
    return _payload(path, data, 16, n * r * c, f"{n} images of {r}x{c}").reshape(n, r, c)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX labels file into a uint8 array of shape (n,)."""
    data = _read_gzip(path)
    (n,) = _header(path, data, LABELS_MAGIC, 1, "labels")
    return _payload(path, data, 8, n, f"{n} labels")


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX images and labels files, checking that their counts agree."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DatasetError(
            f"{os.fspath(images_path)} holds {len(images)} images but {os.fspath(labels_path)} holds "
            f"{len(labels)} labels; expected equal counts. The two files do not belong together: "
            "replace both with the original files of the same split."
        )
    return images, labels
