"""Checks for arrays handed to predcode's public API: shape, dtype, finite values and range.

The checks run at the Python boundary, before a jitted function is called. Under ``jax.jit`` (or
``make_jaxpr``) the arguments are tracers: then only the static checks (shape, dtype) run, at trace
time, so a compiled step pays nothing for them. Every failed check raises ``ValueError`` whose
message names the parameter, what was expected, what was got, and how to fix it::

    check_array(x, "x", shape=(None, 784), low=0.0, high=1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_array", "describe_shape", "is_traced"]


def is_traced(value: Any) -> bool:
    """True for a JAX tracer (inside ``jit``/``vmap``/``grad``): its values are not known yet."""
    return isinstance(value, jax.core.Tracer)


def describe_shape(shape: Sequence[int | None], names: Sequence[str] | None = None) -> str:
    """``(None, 784)`` -> ``"(batch, 784)"``: a wildcard dimension shown by name."""
    names = names or ["batch", "n", "m", "k"]
    return (
        "("
        + ", ".join(str(d) if d is not None else names[min(i, len(names) - 1)] for i, d in enumerate(shape))
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _stats(x: Any) -> tuple[int, int, int, float, float]:
    """(#NaN, #inf, flat index of the first non-finite entry, finite min, finite max), in NumPy.

    A JAX array is copied to the host once (free on CPU); NumPy needs no compilation per shape.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        x = x.astype(np.float64)
    finite = np.isfinite(x)
    fin = x[finite]
    return (
        int(np.isnan(x).sum()),
        int(np.isinf(x).sum()),
        int(np.argmin(finite.ravel())),
        float(fin.min()) if fin.size else np.inf,
        float(fin.max()) if fin.size else -np.inf,
    )


def check_array(
    value: Any,
    name: str,
    *,
    shape: Sequence[int | None] | None = None,
    dtype: str = "floating",
    finite: bool = True,
    low: float | None = None,
    high: float | None = None,
    why: str = "",
    fix: str = "",
    nonfinite_fix: str = "Remove or replace them (e.g. drop the rows) before calling predcode",
) -> Any:
    """Check one array argument; return it unchanged (NumPy or JAX), or raise ``ValueError``.

    Args:
        value: the argument (a NumPy or JAX array; a tracer gets the static checks only).
        name: the parameter's name, used in the message (``"x"``, ``"params['W1']"``).
        shape: the expected shape; ``None`` entries match any size.
        dtype: ``"floating"`` (any float dtype), ``"any"`` or a NumPy dtype name.
        finite: refuse NaN and +-inf.
        low, high: the closed range every (finite) value must lie in.
        why: a reason appended to the range expectation (``"probabilities of a Bernoulli output"``).
        fix: appended to the shape, dtype and range messages.
        nonfinite_fix: appended to the message about NaN or infinite values.
    """
    suffix = f". {fix}" if fix else ""
    dt = getattr(value, "dtype", None)
    if dt is None or not hasattr(value, "shape"):
        if isinstance(value, (list, tuple, int, float, np.number)):
            value = np.asarray(value)
            dt = value.dtype
        else:
            raise ValueError(f"{name}: expected an array, got {type(value).__name__} {_short(value)}{suffix}")
    if dtype == "floating":
        if not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(
                f"{name}: expected a floating-point array (float32), got dtype {dt}"
                + (suffix or ". Convert it with .astype(np.float32)")
            )
    elif dtype != "any" and np.dtype(dt) != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {dtype}, got dtype {dt}{suffix}")
    if shape is not None:
        got = tuple(value.shape)
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"{name}: expected shape {describe_shape(shape)}, got shape {got}{suffix}")
    if is_traced(value) or not (finite or low is not None or high is not None):
        return value
    if np.prod(value.shape) == 0:
        return value
    n_nan, n_inf, first, lo, hi = _stats(value)
    if finite and n_nan + n_inf:
        where = np.unravel_index(first, value.shape) if value.ndim else ()
        raise ValueError(
            f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite "
            f"value(s) (first at index {tuple(int(i) for i in where)}). {nonfinite_fix}"
        )
    if (low is not None and lo < low) or (high is not None and hi > high):
        rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(
            f"{name}: expected values in {rng}"
            + (f" ({why})" if why else "")
            + f", got values from {lo:g} to {hi:g}{suffix}"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
