"""``predcode`` that sends itself SIGINT at a chosen moment (for tests/test_interrupt.py).

    python interrupt_driver.py MOMENT ARGS...

``MOMENT`` is ``none``, ``batch:N`` (when the N-th training batch of the process is reported: mid
epoch) or ``save:N`` (inside the N-th checkpoint save, after its files are written and before
they are renamed into place). The signal is the one a terminal's Ctrl-C sends; everything else is
the real command line.
"""

import os
import signal
import sys

moment, args = sys.argv[1], sys.argv[2:]
kind, _, nth = moment.partition(":")
calls = [0]


def _fire() -> None:
    calls[0] += 1
    if calls[0] == int(nth):
        os.kill(os.getpid(), signal.SIGINT)


if kind == "save":
    import predcode.experiments.checkpoint as checkpoint

    swap_in = checkpoint._swap_in

    def _swap_in(*a, **k):
        _fire()
        return swap_in(*a, **k)

    checkpoint._swap_in = _swap_in
elif kind == "batch":
    import predcode.cli as cli

    rate = cli._Throughput.__call__

    def _rate(self, b, n):
        _fire()
        return rate(self, b, n)

    cli._Throughput.__call__ = _rate
elif kind != "none":
    raise SystemExit(f"unknown moment {moment!r}")

from predcode.cli import app  # noqa: E402

app(args, prog_name="predcode")
