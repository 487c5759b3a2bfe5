"""Run JAX's CPU LAPACK kernels (Cholesky, triangular solve) on one thread.

On CPU, jaxlib's ``cholesky`` and ``triangular_solve`` call LAPACK through SciPy's bundled
OpenBLAS. For the small matrices of predcode's models (a 360 x 360 covariance) OpenBLAS's own
thread pool does not pay: its threads synchronise at every panel and compete with XLA's thread
pool, and on a loaded machine one descheduled thread stalls the others. Measured on the 2-core
benchmark machine with other jobs running: the two Cholesky factorisations + inverses of a
GNCN-PDH training step took 10 to 680 ms with OpenBLAS's default 2 threads and 4.5 to 6 ms with
one (see results/train_step.md).

:func:`limit_lapack_threads` sets SciPy's OpenBLAS (not NumPy's, which ``numpy`` matmuls use) to
one thread, unless the user chose a thread count through ``OPENBLAS_NUM_THREADS`` or
``OMP_NUM_THREADS`` (then nothing changes), or set ``PREDCODE_LAPACK_THREADS`` (that count is
used; ``0`` leaves OpenBLAS alone). predcode calls it once, when its covariance module is imported.
"""

from __future__ import annotations

import os

__all__ = ["limit_lapack_threads"]

_DONE: list[int] = []


def limit_lapack_threads(n: int | None = None) -> int | None:
    """Set the thread count of SciPy's OpenBLAS (jaxlib's CPU LAPACK) to ``n`` (default 1).

    Returns the count set, or ``None`` when nothing was changed (the environment decides, or
    threadpoolctl / SciPy's OpenBLAS is not available). Safe to call more than once.
    """
    env = os.environ.get("PREDCODE_LAPACK_THREADS")
    if n is None:
        if env is not None:
            try:
                n = int(env)
            except ValueError:
                raise ValueError(f"PREDCODE_LAPACK_THREADS: expected an integer >= 0, got {env!r}") from None
        elif "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
            return None
        else:
            n = 1
    if n < 0:
        raise ValueError(f"n: expected an integer >= 0 (0 leaves OpenBLAS alone), got {n!r}")
    if n == 0:
        return None
    try:
        import scipy.linalg.cython_lapack  # noqa: F401  (loads the OpenBLAS that jaxlib's LAPACK calls)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    changed = None
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(lib.filepath)):
            lib.set_num_threads(n)
            changed = n
    if changed is not None:
        _DONE.append(n)
    return changed
