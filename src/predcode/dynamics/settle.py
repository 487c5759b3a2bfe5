"""Settling: integrate the latent states of a predictive-coding model with ``lax.scan``.

A model plugs in two pure functions:

* ``predict(states) -> (predictions, errors, signals)``: the stateless prediction and error units
  for the current states (``signals`` are the error messages the drive uses, e.g. whitened errors);
* ``drive(states, signals) -> dz``: the right-hand side ``dz/dt`` of every free state, leak and
  priors included.

The legacy ngc-learn order within one step is: all states (from the previous step's errors), then
all predictions, then all errors. States start at the model's initial value with zero errors, so
the first of ``steps`` steps only computes predictions; ``steps - 1`` solver steps move the states.
The solver (``predcode.dynamics.solvers``) is explicit Euler by default; with a tolerance ``tol``
the settle stops early, for the whole batch, once the states have stopped moving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp

from predcode.dynamics.solvers import Euler, Solver

Array = jax.Array
STATUS_OK = 0
STATUS_DIVERGED = 1


class SettleResult(NamedTuple):
    """What a settle returns. ``energy`` has one entry per step; ``status`` is 0 (ok) or 1 (diverged).

    ``n_steps`` is the number of steps run (``steps`` unless a tolerance stopped the settle early;
    the energy trace then repeats its last value, as the states no longer move).
    """

    states: Any
    predictions: Any
    errors: Any
    signals: Any
    energy: Array
    status: Array
    n_steps: Array | None = None


def _sq_norm(tree: Any) -> Array:
    return cast(Array, sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class _AliasMismatch(Exception):
    """A later ``predict`` call shared arrays between its outputs differently from the first one."""


class _Units:
    """The ``(predictions, errors, signals)`` loop variables with shared arrays carried once.

    Models often return one array in two places (the errors of a layer without a learned covariance
    *are* its signals). As two loop variables, XLA would copy that array on every settling step
    (the while loop needs a buffer for each); carrying it once removes the copy. Arrays count as
    shared when they are the same object, in the first ``predict`` call and in every later one
    (``pack`` raises :class:`_AliasMismatch` otherwise, and :func:`settle` falls back to carrying
    everything).
    """

    def __init__(self, units: Any, dedupe: bool):
        leaves, self.treedef = jax.tree.flatten(units)
        first: dict[int, int] = {}
        self.index = [first.setdefault(id(v), i) if dedupe else i for i, v in enumerate(leaves)]
        self.keep = [i for i, j in enumerate(self.index) if i == j]

    def pack(self, units: Any) -> tuple:
        leaves = self.treedef.flatten_up_to(units)  # type: ignore[attr-defined]  # compiled jaxlib PyTreeDef, no stub
        if any(i != j and leaves[i] is not leaves[j] for i, j in enumerate(self.index)):
            raise _AliasMismatch
        return tuple(leaves[i] for i in self.keep)

    def unpack(self, packed: tuple) -> Any:
        by = dict(zip(self.keep, packed))
        return jax.tree.unflatten(self.treedef, [by[j] for j in self.index])


def settle(
    predict: Callable[[Any], tuple[Any, Any, Any]],
    drive: Callable[[Any, Any], Any],
    energy: Callable[[Any, Any], Array],
    init_states: Any,
    *,
    steps: int,
    solver: Solver = Euler(),  # noqa: B008 (a frozen dataclass: sharing the default is safe)
    tol: float | None = None,
) -> SettleResult:
    """Run ``steps`` steps of the settling dynamics and return the final units and energy trace.

    ``energy(states, errors)`` is evaluated after every step (a scalar), giving the trace a user
    plots to see convergence. A non-finite energy sets ``status`` to ``STATUS_DIVERGED``.

    ``tol`` (None: always run ``steps`` steps) stops the settle once one step moves the states by
    at most ``tol`` relative to their size, ``||z_new - z|| <= tol * ||z_new||`` (Euclidean norm
    over all layers and rows), checked after each step; the settle then costs only the steps run.
    """
    if steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol: expected a positive relative tolerance or None, got {tol!r}")
    preds, errs, sigs = predict(init_states)
    first = energy(init_states, errs)

    def field(states):
        return drive(states, predict(states)[2])

    def advance(states, aux, sigs):
        states, aux = solver.advance(states, aux, drive(states, sigs), field)
        preds, errs, sigs = predict(states)
        return states, aux, preds, errs, sigs

    def loop(units: _Units):
        if tol is None:

            def body(carry, _):
                states, aux, packed = carry
                states, aux, preds, errs, sigs = advance(states, aux, units.unpack(packed)[2])
                return (states, aux, units.pack((preds, errs, sigs))), energy(states, errs)

            (states, _, packed), trace = jax.lax.scan(
                body,
                (init_states, solver.init(init_states), units.pack((preds, errs, sigs))),
                None,
                length=steps - 1,
            )
            return states, packed, jnp.concatenate([first[None], trace]), jnp.asarray(steps, jnp.int32)

        def cond(carry):
            i, done = carry[0], carry[1]
            return (i < steps) & ~done

        def body_while(carry):
            i, _, states, aux, packed, trace = carry
            new, aux, preds, errs, sigs = advance(states, aux, units.unpack(packed)[2])
            moved = _sq_norm(jax.tree.map(jnp.subtract, new, states))
            done = moved <= tol * tol * _sq_norm(new)
            e = energy(new, errs)
            trace = jnp.where(jnp.arange(steps) >= i, e, trace)  # fill the rest: states stay put
            return i + 1, done, new, aux, units.pack((preds, errs, sigs)), trace

        carry = (
            jnp.asarray(1, jnp.int32),
            jnp.asarray(False),
            init_states,
            solver.init(init_states),
            units.pack((preds, errs, sigs)),
            jnp.full((steps,), first),
        )
        n_steps, _, states, _, packed, trace = jax.lax.while_loop(cond, body_while, carry)
        return states, packed, trace, n_steps

    try:
        units = _Units((preds, errs, sigs), dedupe=True)
        states, packed, trace, n_steps = loop(units)
    except _AliasMismatch:
        units = _Units((preds, errs, sigs), dedupe=False)
        states, packed, trace, n_steps = loop(units)
    preds, errs, sigs = units.unpack(packed)
    status = jnp.where(jnp.all(jnp.isfinite(trace)), STATUS_OK, STATUS_DIVERGED).astype(jnp.int32)
    return SettleResult(states, preds, errs, sigs, trace, status, n_steps)
