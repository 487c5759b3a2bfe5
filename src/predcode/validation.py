"""Checks for arrays handed to predcode's public API: shape, dtype, finite values and range.

The checks run at the Python boundary, before a jitted function is called. Under ``jax.jit`` (or
``make_jaxpr``) the arguments are tracers: then only the static checks (shape, dtype) run, at trace
time, so a compiled step pays nothing for them. Every failed check raises ``ValueError`` whose
message names the parameter, what was expected, what was got, and how to fix it::

    check_array(x, "x", shape=(None, 784), low=0.0, high=1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CheckedFunction",
    "check_array",
    "check_batch",
    "check_key",
    "check_opt_state",
    "describe_shape",
    "is_traced",
]


class CheckedFunction:
    """A jitted function behind input checks (``ValueError`` on bad arrays, see predcode.validation).

    Calling it runs ``check(*args)`` and then the compiled function; ``.unchecked`` is the compiled
    function itself, for loops whose data were checked once. Other attributes (``lower``, ``trace``)
    are the compiled function's.
    """

    def __init__(self, check: Callable, jitted: Callable):
        self.check, self.unchecked = check, jitted

    def __call__(self, *args):
        self.check(*args)
        return self.unchecked(*args)

    def __getattr__(self, name: str):
        return getattr(self.unchecked, name)


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
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = np.asarray(value)
            dt = value.dtype
        elif isinstance(value, (list, tuple)):  # a caller would go on with the list, not the array
            raise ValueError(
                f"{name}: expected an array, got a Python {type(value).__name__} of {len(value)} item(s). "
                f"Convert it first: np.asarray({name}, np.float32){suffix}"
            )
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


def check_batch(n_rows: int, name: str, *, weights: Any = None, weights_name: str = "weights", fix: str = "") -> None:
    """Refuse a degenerate batch: 0 rows, or (``weights`` given) every row weighted 0 (all padding).

    Such a batch has no sample to average over, so a step on it would divide by zero and return
    NaN weights. The row count is static (a shape), so this costs nothing under ``jit``; the
    weights' values are read only when they are concrete (not a tracer).
    """
    suffix = f". {fix}" if fix else ""
    if n_rows < 1:
        raise ValueError(f"{name}: expected a batch of at least 1 row, got {n_rows} rows{suffix}")
    if weights is None or is_traced(weights):
        return
    w = np.asarray(weights)
    if w.size and not np.any(w > 0):
        raise ValueError(
            f"{weights_name}: expected at least one real row (weight > 0) in the batch of {name}, got all "
            f"{w.size} rows weighted 0 (padding only){suffix or '. Drop the empty batch instead of padding it'}"
        )


def check_key(key: Any, name: str = "key") -> Any:
    """Refuse anything but a JAX random key (``jax.random.key(seed)``, or a legacy ``PRNGKey``: uint32 (2,)).

    Static (dtype and shape), so it also runs on a traced key under ``jit``.
    """
    dt, shape = getattr(key, "dtype", None), tuple(getattr(key, "shape", (None,)))
    if dt is not None and (
        (jnp.issubdtype(dt, jax.dtypes.prng_key) and shape == ()) or (dt == np.uint32 and shape == (2,))
    ):
        return key
    got = f"{type(key).__name__} {_short(key)}" if dt is None else f"an array of dtype {dt} and shape {shape}"
    raise ValueError(f"{name}: expected a JAX random key, got {got}. Pass jax.random.key(seed), e.g. jax.random.key(0)")


def check_opt_state(opt_state: Any, name: str = "opt_state") -> Any:
    """Refuse a missing optimizer state (``None``): a trainer step needs the state of ``trainer.init``."""
    if opt_state is None:
        raise ValueError(
            f"{name}: expected the optimizer state that trainer.init(params) returns, got None. "
            "Call trainer.init(params) once and pass its result to every step"
        )
    return opt_state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
