"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, err: OSError) -> OSError:
    """``err`` (same type) with a message that names ``path`` and its folder, not a temporary file."""
    folder = path.parent if str(path.parent) else Path(".")
    reason = err.strerror or str(err)
    return type(err)(
        f"{path}: cannot write the file ({reason}, in the folder {folder}); choose a folder you can write to"
    )


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Leftover temporary files of an earlier, killed write of the same path are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(path, err) from None
    # Temporary files of an earlier write of this path that was killed (SIGKILL, power loss).
    # One writer per path is assumed, as for any file written in place.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # the temporary file's name means nothing to the user: name the target
        raise _write_error(path, err) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise _write_error(path, err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file, fsync, then rename); return the path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON with sorted keys to ``path`` atomically; return the path."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
