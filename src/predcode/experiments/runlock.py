"""One process at a time in a run folder: an OS lock (``flock``) on ``<run>/.predcode.lock``.

The lock belongs to an open file of the process that holds it, so it goes when that process ends
however it ends (SIGKILL, a crash, power loss): a killed run never leaves a stale lock, and the
file that stays behind means nothing by itself. The holder writes its process id, host, start time
and command into the file for the message another process gets.

A lock is held for a :func:`lock_scope` (every family's fit and the demo are one, through
:func:`predcode.experiments.fit.fit_session`): :func:`acquire` inside a scope keeps the lock until
the scope ends, and a nested scope of the same thread that asks for the same folder again (the demo's
fit inside the demo) reuses it. Another thread or process asking for it is refused.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FolderLocked", "RunFolderLock", "acquire", "lock_scope", "scoped"]

LOCK_NAME = ".predcode.lock"


class FolderLocked(Exception):
    """Another process (or thread) holds the run folder; ``holder`` is what it wrote in the lock file."""

    def __init__(self, folder: Path, holder: dict) -> None:
        super().__init__(str(folder))
        self.folder, self.holder = folder, holder


class RunFolderLock:
    """An exclusive ``flock`` on ``<folder>/.predcode.lock``; :meth:`release` (or process exit) frees it."""

    def __init__(self, folder: Path, fd: int | None) -> None:
        self.folder, self.fd = folder, fd

    def release(self) -> None:
        """Free the lock (closing the file; the file itself stays). A second call does nothing."""
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the flock
            self.fd = None


_SCOPES: contextvars.ContextVar[tuple[dict[str, RunFolderLock], ...]] = contextvars.ContextVar(
    "predcode_run_locks", default=()
)


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _read_holder(path: Path) -> dict:
    for _ in range(20):  # the holder writes its details right after taking the lock
        try:
            text = path.read_text()
        except OSError:
            text = ""
        if text.strip():
            try:
                holder = json.loads(text)
                return holder if isinstance(holder, dict) else {}
            except ValueError:
                return {}
        time.sleep(0.01)
    return {}


def acquire(folder: Path) -> RunFolderLock:
    """Lock the existing folder ``folder`` for this process; raise :class:`FolderLocked` if another holds it."""
    folder = Path(folder)
    scopes = _SCOPES.get()
    key = _key(folder)
    for scope in scopes:
        if key in scope:
            return scope[key]
    if fcntl is None:  # pragma: no cover
        lock = RunFolderLock(folder, None)
    else:
        path = folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderLocked(folder, _read_holder(path)) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        lock = RunFolderLock(folder, fd)
    if scopes:
        scopes[-1][key] = lock
    return lock


def scoped() -> bool:
    """Whether a :func:`lock_scope` is active (in this thread's context)."""
    return bool(_SCOPES.get())


@contextmanager
def lock_scope() -> Iterator[None]:
    """Hold every run-folder lock :func:`acquire` takes within until the end of the block."""
    held: dict[str, RunFolderLock] = {}
    token = _SCOPES.set((*_SCOPES.get(), held))
    try:
        yield
    finally:
        _SCOPES.reset(token)
        for lock in held.values():
            lock.release()
