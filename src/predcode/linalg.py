"""Dense linear algebra that stays safe under ``vmap`` on XLA:CPU.

On CPU, jaxlib runs a *batched* Cholesky, triangular solve or LU (what ``vmap`` makes of one) as a
LAPACK custom call that splits the batch over XLA's intra-op thread pool and then blocks its own
pool thread until the pieces finish (``jax::ParallelBatchMap``, jax 0.10). When two such calls are
independent in one program (two learned-covariance layers, or trials stacked by
:mod:`predcode.experiments.trials`), XLA runs them at the same time; on a machine with as many
cores as concurrent calls (2 here) every pool thread ends up blocked waiting for pieces that no
thread is left to run, and the program hangs forever at 0% CPU. The native stacks of the hang
(gdb) and a 20-line reproducer are in ``docs/reliability.md``.

The functions here compute the same thing as their ``jnp`` / ``jax.scipy`` counterparts for one
matrix; under ``vmap`` on CPU they loop over the batch with :func:`jax.lax.map`, so each LAPACK
call is unbatched and never waits on the pool. On GPU (cuSOLVER) the batch stays one call.
They carry no differentiation rule: use them where the result is not differentiated (predcode's
GNCN precision and Sigma updates, the importance-sampling proposal).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

__all__ = ["cholesky", "inv", "inverse_cholesky", "inverse_lower", "sequential_on_cpu"]


def sequential_on_cpu(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``fn`` of one array, batched under ``vmap`` by a sequential ``lax.map`` on CPU.

    Off CPU (and for an unbatched call) the result is ``fn`` itself, vmapped as usual.
    """
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, a):
        (batched,) = in_batched
        if not batched:
            return wrapped(a), False
        if jax.default_backend() == "cpu":
            return lax.map(wrapped, a), True
        return jax.vmap(fn)(a), True

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _inverse_lower(chol: Array) -> Array:
    eye = jnp.eye(chol.shape[-1], dtype=chol.dtype)
    return jax.scipy.linalg.solve_triangular(chol, eye, lower=True)


@sequential_on_cpu
def inverse_cholesky(cov: Array) -> Array:
    """``R^{-1}`` with ``R`` the lower Cholesky factor of ``cov`` (only its lower triangle is read)."""
    return _inverse_lower(jnp.linalg.cholesky(cov, symmetrize_input=False))


@sequential_on_cpu
def cholesky(a: Array) -> Array:
    """The lower Cholesky factor of the symmetrized ``a`` (``jnp.linalg.cholesky``; NaN if not PD)."""
    return jnp.linalg.cholesky(a)


@sequential_on_cpu
def inverse_lower(chol: Array) -> Array:
    """The inverse of the lower-triangular ``chol`` (a triangular solve against the identity)."""
    return _inverse_lower(chol)


@sequential_on_cpu
def inv(a: Array) -> Array:
    """The inverse of the square matrix ``a`` (``jnp.linalg.inv``)."""
    return jnp.linalg.inv(a)
