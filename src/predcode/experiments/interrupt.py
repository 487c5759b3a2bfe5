"""Ctrl-C during a fit stops at a safe point: between steps, never inside an XLA compile or a save.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread is. When that
is while jaxlib compiles a step (the first seconds of every run, and of every resume), the compile
goes on in jaxlib's thread pool while the interpreter shuts down: the garbage collector destroys the
PjRt client under the running compile and the process dies with SIGSEGV instead of exit 130 (the
native stacks: the pool thread in ``xla::ifrt::SingleDeviceSharding::Create`` called from
``PjRtCompiler::CompileAndLoad``, the main thread in ``Py_FinalizeEx`` -> ``~PjRtClient`` ->
``~ThreadPool`` joining it).

Within :func:`deferred_interrupts` (every family's fit and the demo enter it) the first SIGINT
only sets a flag and says so on stderr. The training loops call :func:`stop_if_interrupted` after
every step and after every epoch's saves: once the flag is set it waits for all outstanding device
work and raises ``KeyboardInterrupt`` there, so compiles and checkpoint writes always finish and
the interpreter exits with nothing running. A second SIGINT exits at once with status 130
(``os._exit``, skipping the interpreter's teardown); every file predcode writes is written
atomically, so the last finished epoch on disk is intact either way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

__all__ = ["deferred_interrupts", "interrupt_requested", "stop_if_interrupted"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C

_depth = 0  # nesting of deferred_interrupts() in the main thread (the demo's fit inside the demo)
_requested = False
_previous: Any = None


def interrupt_requested() -> bool:
    """Whether a SIGINT arrived inside :func:`deferred_interrupts` (the run stops at its next safe point)."""
    return _requested


def _on_sigint(signum: int, frame: Any) -> None:
    global _requested
    if _requested:  # the second Ctrl-C: stop now, without the interpreter's teardown
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os.write(2, b"interrupted again: stopping now; the last finished epoch is saved\n")
        os._exit(EXIT_INTERRUPTED)
    _requested = True
    try:
        sys.stderr.write("\ninterrupt: stopping after the current step (Ctrl-C again to stop at once)\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _drain() -> None:
    """Wait for every computation JAX has in flight (nothing may run while the interpreter exits)."""
    if "jax" not in sys.modules:
        return
    import jax

    try:
        jax.block_until_ready(jax.live_arrays())
        jax.effects_barrier()
    except Exception:  # a failed computation raises its own error where its result is read
        pass


def stop_if_interrupted() -> None:
    """A safe point of a training loop: raise ``KeyboardInterrupt`` here if a SIGINT arrived."""
    if _requested:
        _drain()
        raise KeyboardInterrupt("interrupted (SIGINT)")


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within: SIGINT stops the run at the next :func:`stop_if_interrupted` (see the module's doc).

    Re-entrant; a no-op outside the main thread (signals reach only the main thread) and where
    SIGINT is ignored (``nohup``, a background job). On leaving, a SIGINT that arrived after the
    last safe point raises ``KeyboardInterrupt`` too, after the outstanding device work.
    """
    global _depth, _requested, _previous
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        current = signal.getsignal(signal.SIGINT)
        if current in (signal.SIG_IGN, None):
            yield
            return
        _previous, _requested = current, False
        signal.signal(signal.SIGINT, _on_sigint)
    _depth += 1
    try:
        yield
    except BaseException:
        _leave()
        raise
    if _leave():
        _drain()
        raise KeyboardInterrupt("interrupted (SIGINT)")


def _leave() -> bool:
    """Leave one level; at the outermost, restore the previous handler and return whether SIGINT came."""
    global _depth, _requested
    _depth -= 1
    if _depth > 0:
        return False
    signal.signal(signal.SIGINT, _previous)
    came, _requested = _requested, False
    return came
