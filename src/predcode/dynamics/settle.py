"""Settling: the one loop that integrates the free states of every predictive-coding model.

A model plugs in its vector field as a :class:`~predcode.core.Term` of three pure functions:

* ``predict(states) -> (predictions, errors, signals)``: the stateless prediction and error units
  for the current states (``signals`` are the error messages the drive uses, e.g. whitened errors,
  or the gradient of an energy);
* ``drive(states, signals) -> dz``: the right-hand side ``dz/dt`` of every free state, leak and
  priors included;
* ``energy(states, errors) -> scalar``: the quantity traced after every step.

The legacy ngc-learn order within one step is: all states (from the previous step's errors), then
all predictions, then all errors. States start at the model's initial value with zero errors, so
the first of ``steps`` steps only computes predictions; ``steps - 1`` solver steps move the states.
The solver (``predcode.dynamics.solvers``: any :class:`~predcode.dynamics.AbstractSolver` or optax
optimizer) is explicit Euler by default; with a tolerance ``tol`` the settle stops early, for the
whole batch, once the states have stopped moving.

:func:`settle` is the loop; :func:`settle_model` settles any :class:`~predcode.core.SettlingModel`
(it asks the model for its term and initial states) and :func:`infer` is the general-network form
of it, ``T`` state steps given the clamps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp

from predcode.core import SettleResult, Term
from predcode.dynamics.solvers import Euler, as_solver
from predcode.schema import MAX_STEPS, check_int

Array = jax.Array
STATUS_OK = 0
STATUS_DIVERGED = 1

__all__ = [
    "InferenceResult",
    "STATUS_DIVERGED",
    "STATUS_OK",
    "SettleResult",
    "check_unroll",
    "infer",
    "settle",
    "settle_model",
]


def check_unroll(unroll: Any) -> int:
    """``unroll`` as an integer >= 1 (steps per iteration of the settling loop); a clear error otherwise."""
    return check_int("unroll", unroll, 1, MAX_STEPS, "settling steps unrolled per loop iteration")


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
    predict: Callable[[Any], tuple[Any, Any, Any]] | Term,
    drive: Callable[[Any, Any], Any] | Any = None,
    energy: Callable[[Any, Any], Array] | None = None,
    init_states: Any = None,
    *,
    steps: int,
    solver: Any = Euler(),  # noqa: B008 (a frozen dataclass: sharing the default is safe)
    tol: float | None = None,
    unroll: int = 1,
) -> SettleResult:
    """Run ``steps`` steps of the settling dynamics and return the final units and energy trace.

    Called as ``settle(term, init_states, steps=...)`` with a :class:`~predcode.core.Term`, or as
    ``settle(predict, drive, energy, init_states, steps=...)`` with its three functions.
    ``solver`` is any solver (:class:`~predcode.dynamics.AbstractSolver`) or an optax optimizer
    (wrapped in :class:`~predcode.dynamics.StateOptimizer`).

    ``energy(states, errors)`` is evaluated after every step (a scalar), giving the trace a user
    plots to see convergence. A non-finite energy sets ``status`` to ``STATUS_DIVERGED``.

    ``tol`` (None: always run ``steps`` steps) stops the settle once one step moves the states by
    at most ``tol`` relative to their size, ``||z_new - z|| <= tol * ||z_new||`` (Euclidean norm
    over all layers and rows), checked after each step; the settle then costs only the steps run.

    A solver with a ``solve(term, init_states, steps=...)`` method integrates the whole settle
    itself (:class:`~predcode.dynamics.AdaptiveHeun`: diffrax's Heun with a PID step-size
    controller and a steady-state stop, at most ``steps - 1`` solver steps); it returns the same
    result, and takes no ``tol`` (its ``rtol`` and ``atol`` decide when the states are at rest).

    ``unroll`` (default 1) is how many steps one iteration of the compiled loop holds
    (:func:`jax.lax.scan`'s ``unroll``); ``steps - 1`` or more unrolls the whole settle. The result is
    the same up to float rounding; a fully unrolled settle of a convolutional network runs about
    twice as fast on CPU (``results/conv_pc.md``) and compiles in time growing with ``steps``. It
    applies to the fixed-step loop only: with ``tol`` or an adaptive solver it must be 1.
    """
    if isinstance(predict, Term):
        if energy is not None or init_states is not None:
            raise TypeError("settle: with a Term, pass only the initial states: settle(term, init_states, steps=...)")
        term: Term = predict
        predict, drive, energy, init_states = term.predict, term.drive, term.energy, drive
    if drive is None or energy is None:
        raise TypeError(
            "settle: expected settle(term, init_states, ...) or settle(predict, drive, energy, init_states, ...)"
        )
    solver = as_solver(solver)
    steps = check_int("steps", steps, 1, MAX_STEPS, "settling steps")
    unroll = check_unroll(unroll)
    if tol is not None and not tol > 0:
        raise ValueError(f"tol: expected a positive relative tolerance or None, got {tol!r}")
    adaptive = callable(getattr(solver, "solve", None))
    if unroll != 1 and (tol is not None or adaptive):
        raise ValueError(
            f"unroll: expected 1 with {'tol' if tol is not None else type(solver).__name__} (a loop that "
            f"stops early is not unrolled), got {unroll!r}"
        )
    if adaptive:  # an adaptive solver integrates the whole settle
        if tol is not None:
            raise ValueError(
                f"tol: expected None with {type(solver).__name__}, which stops at its own steady state "
                f"(rtol, atol), got {tol!r}"
            )
        return solver.solve(Term(predict, drive, energy), init_states, steps=steps)[0]
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
                unroll=min(unroll, max(steps - 1, 1)),
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


def settle_model(
    model: Any,
    params: Any,
    batch: Any,
    *,
    steps: int,
    solver: Any = Euler(),  # noqa: B008 (a frozen dataclass: sharing the default is safe)
    tol: float | None = None,
    init: Any = None,
    unroll: int = 1,
) -> SettleResult:
    """Settle any :class:`~predcode.core.SettlingModel` on ``batch``: its term, from its initial states.

    ``init`` replaces the model's initial states (same structure as ``model.init_states``).
    """
    states0 = model.init_states(params, batch) if init is None else init
    return settle(model.term(params, batch), states0, steps=steps, solver=solver, tol=tol, unroll=unroll)


class InferenceResult(NamedTuple):
    """Inferred ``states`` (all nodes, clamps included) and the total energy before each step and
    after the last: ``energy: (T + 1,)``. ``status`` is 0, or 1 if the energy became non-finite."""

    states: dict[str, Array]
    energy: Array
    status: Array


def infer(
    network: Any,
    params: Mapping,
    clamps: Mapping[str, Array],
    *,
    T: int,
    optimizer: Any = None,
    init: Mapping[str, Array] | None = None,
    masks: Mapping[str, Array] | None = None,
    unroll: int = 1,
) -> InferenceResult:
    """Infer the free states of a general network given ``clamps``: ``T`` steps of one solver.

    The settle of :meth:`PCNetwork.term <predcode.models.network.PCNetwork.term>`, whose drive is
    ``-dE/dx`` of the free states, with ``T + 1`` settle steps (``T`` moves).

    Args:
        network: a :class:`predcode.models.network.PCNetwork`.
        params: its parameters.
        clamps: ``{node: (batch, dim)}`` data held fixed.
        T: number of state steps (0 returns the initial states).
        optimizer: the state solver: an optax optimizer (the seed's ``optimizer_x``, default
            ``optax.sgd(0.1)``) or any solver (``Euler(0.1)``, ``Heun(0.05)``, ...). Its state
            starts fresh for every call.
        init: initial values of free states; the rest start from a feedforward sweep
            (:meth:`PCNetwork.forward`), free roots at zero.
        masks: ``{node: 0/1 mask}`` hiding units from their cell's error and energy.
        unroll: state steps per iteration of the compiled loop (:func:`settle`); ``T``: all of them.
    """
    T = check_int("T", T, 0, MAX_STEPS, "inference steps")
    batch = (dict(clamps), masks)
    solver = Euler(0.1) if optimizer is None else optimizer
    free0 = network.init_states(params, batch, init=init)
    result = settle(network.term(params, batch), free0, steps=T + 1, solver=solver, unroll=unroll)
    states = {**{k: jnp.asarray(v) for k, v in clamps.items()}, **result.states}
    return InferenceResult({n: states[n] for n in network.names}, result.energy, result.status)
