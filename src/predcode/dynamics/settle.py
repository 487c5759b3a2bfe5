"""Settling: integrate the latent states of a predictive-coding model with ``lax.scan``.

A model plugs in two pure functions:

* ``predict(states) -> (predictions, errors, signals)``: the stateless prediction and error units
  for the current states (``signals`` are the error messages the drive uses, e.g. whitened errors);
* ``drive(states, signals) -> dz``: the right-hand side ``dz/dt`` of every free state, leak and
  priors included.

The legacy ngc-learn order within one step is: all states (from the previous step's errors), then
all predictions, then all errors. States start at the model's initial value with zero errors, so
the first of ``steps`` steps only computes predictions; ``steps - 1`` Euler steps move the states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
STATUS_OK = 0
STATUS_DIVERGED = 1


@dataclass(frozen=True)
class Euler:
    """Explicit Euler: ``z <- z + dt * dz`` (ngc-learn's ``beta`` is ``dt``)."""

    dt: float = 0.1

    def step(self, states: Any, dz: Any) -> Any:
        return jax.tree.map(lambda z, d: z + self.dt * d, states, dz)


class SettleResult(NamedTuple):
    """What a settle returns. ``energy`` has one entry per step; ``status`` is 0 (ok) or 1 (diverged)."""

    states: Any
    predictions: Any
    errors: Any
    signals: Any
    energy: Array
    status: Array


def settle(
    predict: Callable[[Any], tuple[Any, Any, Any]],
    drive: Callable[[Any, Any], Any],
    energy: Callable[[Any, Any], Array],
    init_states: Any,
    *,
    steps: int,
    solver: Euler = Euler(),
) -> SettleResult:
    """Run ``steps`` steps of the settling dynamics and return the final units and energy trace.

    ``energy(states, errors)`` is evaluated after every step (a scalar), giving the trace a user
    plots to see convergence. A non-finite energy sets ``status`` to ``STATUS_DIVERGED``.
    """
    if steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    preds, errs, sigs = predict(init_states)
    first = energy(init_states, errs)

    def body(carry, _):
        states, _, _, sigs = carry
        states = solver.step(states, drive(states, sigs))
        preds, errs, sigs = predict(states)
        return (states, preds, errs, sigs), energy(states, errs)

    (states, preds, errs, sigs), trace = jax.lax.scan(
        body, (init_states, preds, errs, sigs), None, length=steps - 1
    )
    trace = jnp.concatenate([first[None], trace])
    status = jnp.where(jnp.all(jnp.isfinite(trace)), STATUS_OK, STATUS_DIVERGED).astype(jnp.int32)
    return SettleResult(states, preds, errs, sigs, trace, status)
