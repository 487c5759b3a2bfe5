"""Adaptive settling: Heun's method with a PID step-size controller and a steady-state stop, by diffrax.

A fixed-step solver (:mod:`predcode.dynamics.solvers`) moves the states by ``dt`` a step for a
fixed number of steps. :class:`AdaptiveHeun` instead hands the whole settle to diffrax's
``diffeqsolve``: Heun's method (second order, its embedded Euler step estimating the local error),
a ``PIDController`` that grows or shrinks each step to keep that error within
``atol + rtol * |z|``, and an ``Event`` that ends the settle once the states are at rest,
``||f(z)|| < atol + rtol * ||z||`` (diffrax's ``steady_state_event``; root-mean-square norms over
every state of the batch). This is how JPC (Innocenti et al. 2024) solves PC inference.

It plugs into the one settle: :func:`predcode.dynamics.settle` (and so ``GNCN.settle``,
:func:`~predcode.dynamics.infer`, ``make_trainer``, ``PCTrainer``) hands a solver with a ``solve``
method the model's :class:`~predcode.core.Term`, and returns the same
:class:`~predcode.core.SettleResult`:

* the settle's ``steps`` bound the work: at most ``steps - 1`` solver steps, accepted or rejected
  (``max_steps`` overrides it), so ``T`` of a network and ``K`` of a museum model keep their
  meaning of a step budget;
* ``energy`` has ``steps`` entries: the initial energy, then the energy after each accepted step,
  the last value repeated once the settle stopped (as a tolerance-stopped fixed-step settle does);
* ``n_steps`` is one more than the accepted steps (the first settle step only predicts, as in the
  fixed-step loop); ``status`` is 1 when the energy became non-finite or diffrax failed.

Each step costs two drive evaluations (Heun), one more for the steady-state test and, with
``trace=True``, one prediction for the energy trace. diffrax is an optional dependency
(``pip install predcode[adaptive]``), imported when a settle first uses this solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from predcode.core import SettleResult, Term

__all__ = ["AdaptiveHeun", "import_diffrax"]

STATUS_OK = 0
STATUS_DIVERGED = 1


def import_diffrax() -> Any:
    """The diffrax module, or one clear error saying how to install it."""
    try:
        import diffrax
    except ImportError as err:  # pragma: no cover - the test environment has it
        raise ImportError(
            "solver: AdaptiveHeun (adaptive_heun) needs diffrax; install it with "
            "pip install 'predcode[adaptive]' (or pip install diffrax)"
        ) from err
    return diffrax


def _positive(value: Any, name: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number > 0{' or None' if optional else ''}, got {value!r}")


@dataclass(frozen=True)
class AdaptiveHeun:
    """Heun's method with diffrax's PID step-size controller and a steady-state stop.

    Args:
        rtol, atol: the controller's relative and absolute tolerances on the local error of a step,
            and the steady-state test ``||f(z)|| < atol + rtol ||z||`` (JPC's defaults: 1e-3).
        dt0: the first step's size (later steps adapt); None lets diffrax choose it.
        max_steps: the most solver steps, accepted or rejected; None: the settle's ``steps - 1``.
        t1: the end of the integration in time; None: no end but the steady state and the step
            budget (JPC integrates to t = 20).
        pcoeff, icoeff, dcoeff: the PID controller's coefficients (diffrax's defaults: an integral
            controller, 0, 1, 0).
        steady_state: stop at the steady state (True) or only at ``t1`` or the step budget.
        trace: record the energy after every accepted step (one prediction a step); False records
            only the initial and the final energy (the trace is the final energy after entry 0).
    """

    rtol: float = 1e-3
    atol: float = 1e-3
    dt0: float | None = 0.1
    max_steps: int | None = None
    t1: float | None = None
    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    steady_state: bool = True
    trace: bool = True
    evaluations = 3  # drive evaluations a step: Heun's two and the steady-state test (trace: +1 predict)

    def __post_init__(self) -> None:
        _positive(self.rtol, "rtol")
        _positive(self.atol, "atol")
        _positive(self.dt0, "dt0", optional=True)
        _positive(self.t1, "t1", optional=True)
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ValueError(f"max_steps: expected an integer >= 1 or None, got {self.max_steps!r}")
        for name in ("pcoeff", "icoeff", "dcoeff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")

    # The fixed-step protocol (init/advance) is not how this solver works; settle() calls solve().
    def init(self, states: Any) -> Any:
        """No auxiliary state: diffrax keeps the controller's."""
        return ()

    def advance(self, states: Any, aux: Any, dz: Any, field: Any) -> tuple[Any, Any]:
        """Not a one-step method: :func:`predcode.dynamics.settle` calls :meth:`solve` instead."""
        raise TypeError("AdaptiveHeun integrates a whole settle: pass it to settle(), which calls its solve()")

    def solve(self, term: Term, init_states: Any, *, steps: int) -> tuple[SettleResult, dict[str, Any]]:
        """The settle of ``term`` from ``init_states`` within the budget of ``steps`` settle steps.

        Returns the :class:`~predcode.core.SettleResult` and diffrax's statistics
        (``num_accepted_steps``, ``num_rejected_steps``, ``num_steps``) with its ``result`` code.
        """
        dfx = import_diffrax()
        predict, drive, energy = term.predict, term.drive, term.energy
        if self.max_steps is None and steps == 1:  # no step to take: the initial prediction alone
            preds, errs, sigs = predict(init_states)
            e = energy(init_states, errs)
            status = jnp.where(jnp.isfinite(e), STATUS_OK, STATUS_DIVERGED).astype(jnp.int32)
            zero = jnp.asarray(0, jnp.int32)
            stats = {"num_accepted_steps": zero, "num_rejected_steps": zero, "num_steps": zero, "result": zero}
            return SettleResult(init_states, preds, errs, sigs, e[None], status, zero + 1), stats
        budget = self.max_steps if self.max_steps is not None else max(1, steps - 1)
        n_trace = budget + 1 if self.max_steps is not None else steps

        def field(t, z, args):
            return drive(z, predict(z)[2])

        subs = [dfx.SubSaveAt(t1=True)]
        if self.trace:
            subs.append(dfx.SubSaveAt(steps=True, fn=lambda t, z, args: energy(z, predict(z)[1])))
        controller = dfx.PIDController(
            rtol=self.rtol, atol=self.atol, pcoeff=self.pcoeff, icoeff=self.icoeff, dcoeff=self.dcoeff
        )
        event = dfx.Event(dfx.steady_state_event()) if self.steady_state else None
        sol = dfx.diffeqsolve(
            dfx.ODETerm(field),
            dfx.Heun(),
            0.0,
            jnp.inf if self.t1 is None else self.t1,
            self.dt0,
            init_states,
            saveat=dfx.SaveAt(subs=subs),
            stepsize_controller=controller,
            event=event,
            max_steps=budget,
            throw=False,
        )
        states = jax.tree.map(lambda a: a[0], sol.ys[0])
        preds, errs, sigs = predict(states)
        first = energy(init_states, predict(init_states)[1])
        last = energy(states, errs)
        accepted = jnp.asarray(sol.stats["num_accepted_steps"], jnp.int32)
        index = jnp.arange(n_trace - 1)
        if self.trace:
            saved = sol.ys[1][: n_trace - 1]
            saved = jnp.pad(saved, (0, n_trace - 1 - saved.shape[0]))
            rest = jnp.where(index < accepted, saved, last)
        else:
            rest = jnp.full((n_trace - 1,), last)
        trace = jnp.concatenate([first[None], rest])
        ok = (
            (sol.result == dfx.RESULTS.successful)
            | (sol.result == dfx.RESULTS.event_occurred)
            | (sol.result == dfx.RESULTS.max_steps_reached)
        )
        finite = jnp.all(jnp.isfinite(trace)) & jnp.isfinite(last)
        status = jnp.where(ok & finite, STATUS_OK, STATUS_DIVERGED).astype(jnp.int32)
        stats = {k: sol.stats[k] for k in ("num_accepted_steps", "num_rejected_steps", "num_steps")}
        stats["result"] = sol.result._value
        stats["t_final"] = sol.ts[0][0]
        return SettleResult(states, preds, errs, sigs, trace, status, accepted + 1), stats
