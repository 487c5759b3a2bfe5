"""Run JAX's CPU LAPACK kernels (Cholesky, triangular solve) on one thread, for the work that needs it.

On CPU, jaxlib's ``cholesky`` and ``triangular_solve`` call LAPACK through SciPy's bundled
OpenBLAS. For the small matrices of predcode's models (a 360 x 360 covariance) OpenBLAS's own
thread pool does not pay: its threads synchronise at every panel and compete with XLA's thread
pool, and on a loaded machine one descheduled thread stalls the others. Measured on the 2-core
benchmark machine with other jobs running: the two Cholesky factorisations + inverses of a
GNCN-PDH training step took 10 to 680 ms with OpenBLAS's default 2 threads and 4.5 to 6 ms with
one (see results/train_step.md).

:func:`lapack_threads` is a context manager (and decorator) that sets SciPy's OpenBLAS (not
NumPy's, which ``numpy`` matmuls use) to one thread for the work inside it and restores the
previous count on exit, so importing predcode changes nothing. ``predcode fit``, ``demo``,
``analyze`` and ``sample`` (the functions behind them in ``predcode.experiments``) run inside it;
code that drives a covariance model's trainer directly wraps its loop in ``with
predcode.lapack_threads():``. The user's choice wins: with ``OPENBLAS_NUM_THREADS`` or
``OMP_NUM_THREADS`` set nothing changes; ``PREDCODE_LAPACK_THREADS`` gives the count (``0``
leaves OpenBLAS alone). OpenBLAS's count is one setting for the whole process, so work on other
threads during the block sees it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["lapack_threads"]


def _wanted(n: int | None) -> int | None:
    """The thread count to set, or ``None`` for "leave OpenBLAS alone"."""
    env = os.environ.get("PREDCODE_LAPACK_THREADS")
    if n is None:
        if env is not None:
            try:
                n = int(env)
            except ValueError:
                raise ValueError(f"PREDCODE_LAPACK_THREADS: expected an integer >= 0, got {env!r}") from None
            if n < 0:
                raise ValueError(f"PREDCODE_LAPACK_THREADS: expected an integer >= 0, got {env!r}")
        elif "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
            return None
        else:
            n = 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected an integer >= 0 (0 leaves OpenBLAS alone), got {n!r}")
    return n or None


def _scipy_blas() -> list:
    """threadpoolctl's controllers of SciPy's bundled OpenBLAS (empty if it is not a separate library)."""
    import scipy.linalg.cython_lapack  # noqa: F401  (loads the OpenBLAS that jaxlib's LAPACK calls)
    from threadpoolctl import ThreadpoolController

    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(lib.filepath))
    ]


@contextmanager
def lapack_threads(n: int | None = None) -> Iterator[int | None]:
    """Within the block, SciPy's OpenBLAS (jaxlib's CPU LAPACK) runs ``n`` threads (default 1).

    Yields the count set, or ``None`` when nothing was changed (the environment decides, ``n`` is
    0, or SciPy's OpenBLAS is not a separate library here). On exit the previous counts come back.
    Blocks nest; usable as a decorator (``@lapack_threads()``).
    """
    wanted = _wanted(n)
    libs = _scipy_blas() if wanted is not None else []
    before = [(lib, lib.num_threads) for lib in libs]
    for lib, _ in before:
        lib.set_num_threads(wanted)
    try:
        yield wanted if before else None
    finally:
        for lib, count in before:
            lib.set_num_threads(count)
