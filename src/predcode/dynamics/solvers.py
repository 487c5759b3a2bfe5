"""Solvers for the settling ODE ``dz/dt = f(z)``: Euler (the museum's), Heun, momentum, and any optax optimizer.

A solver advances the latent states by one step. It sees the drive ``dz = f(z)`` already computed
for the current states (the settle needs the predictions and errors of ``z`` anyway) and, for
solvers that need more evaluations per step, ``field(z) -> f(z)`` to evaluate the drive elsewhere.
Solvers with memory (momentum) carry it in ``aux``, which starts as ``init(states)``.

==========  ==========================================================  =====================
solver      one step                                                    drive evaluations
==========  ==========================================================  =====================
Euler       ``z <- z + dt f(z)``                                        1
Heun        ``z~ = z + dt f(z)``, ``z <- z + dt/2 (f(z) + f(z~))``       2
Momentum    ``v <- mu v + f(z)``, ``z <- z + dt v`` (Polyak)            1
Nesterov    ``v <- mu v + f(z)``, ``z <- z + dt (mu v + f(z))``         1
StateOpt.   an optax optimizer on the descent direction ``-f(z)``       1
==========  ==========================================================  =====================

Every solver derives from :class:`AbstractSolver` (``init`` and ``advance``), so a new solver is one
class, and every model settles with every solver. The adaptive solver,
:class:`~predcode.dynamics.AdaptiveHeun` (``predcode.dynamics.adaptive``: diffrax's Heun with a PID
step-size controller and a steady-state stop), is the exception: it integrates a whole settle
(its ``solve``), which :func:`~predcode.dynamics.settle` hands it. :class:`StateOptimizer` turns an optax optimizer
(``optax.sgd``, ``optax.adam``, ...) into a solver: for a drive that is minus an energy gradient,
``StateOptimizer(optax.sgd(dt))`` is ``Euler(dt)`` to the last bit.

Momentum and Nesterov are state optimizers rather than ODE integrators: for a drive that is minus
the gradient of an energy they descend it faster than Euler with the same ``dt``; ``mu = 0`` gives
Euler back. Nesterov is written in the form optax uses, with one drive evaluation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import optax

SOLVERS = ("euler", "heun", "momentum", "nesterov", "adaptive_heun")


def _check_dt(dt: float) -> None:
    if not dt > 0:
        raise ValueError(f"dt: expected a positive step size, got {dt!r}")


def _check_mu(mu: float) -> None:
    if not 0 <= mu < 1:
        raise ValueError(f"mu: expected a momentum in [0, 1), got {mu!r}")


def _axpy(a: float, x: Any, y: Any) -> Any:
    """``y + a x`` leaf by leaf."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


class AbstractSolver:
    """Base class of the settling solvers: subclass it and write ``advance`` (and ``init`` for memory).

    ``advance(states, aux, dz, field)`` gets the drive ``dz = f(states)`` already evaluated (the
    settle needs the predictions and errors of ``states`` anyway) and ``field(z) -> f(z)`` for
    further evaluations; it returns the new states and the new ``aux``. ``evaluations`` counts the
    drive evaluations a step costs (for benchmarks).
    """

    evaluations: int = 1

    def init(self, states: Any) -> Any:
        """The solver's auxiliary state: none (``()``); the method needs only the states."""
        return ()

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and ``aux``."""
        raise NotImplementedError(f"{type(self).__name__}.advance: a solver must define advance")


@dataclass(frozen=True)
class Euler(AbstractSolver):
    """Explicit Euler: ``z <- z + dt * dz`` (ngc-learn's ``beta`` is ``dt``)."""

    dt: float = 0.1
    evaluations = 1

    def __post_init__(self) -> None:
        _check_dt(self.dt)

    def step(self, states: Any, dz: Any) -> Any:
        """One Euler step ``z + dt * dz``, leaf by leaf."""
        return jax.tree.map(lambda z, d: z + self.dt * d, states, dz)

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and ``aux``."""
        return self.step(states, dz), aux


@dataclass(frozen=True)
class Heun(AbstractSolver):
    """Heun's method (explicit trapezoid, second order): two drive evaluations per step."""

    dt: float = 0.1
    evaluations = 2

    def __post_init__(self) -> None:
        _check_dt(self.dt)

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and ``aux``."""
        dz_pred = field(_axpy(self.dt, dz, states))
        mean = jax.tree.map(lambda a, b: 0.5 * (a + b), dz, dz_pred)
        return _axpy(self.dt, mean, states), aux


@dataclass(frozen=True)
class Momentum(AbstractSolver):
    """Heavy-ball (Polyak) momentum on the states: ``v <- mu v + dz``, ``z <- z + dt v``; ``v`` starts at 0."""

    dt: float = 0.1
    mu: float = 0.5
    evaluations = 1

    def __post_init__(self) -> None:
        _check_dt(self.dt)
        _check_mu(self.mu)

    def init(self, states: Any) -> Any:
        """The velocity ``v``, zeros shaped like the states."""
        return jax.tree.map(lambda z: z * 0, states)

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and velocity."""
        v = _axpy(self.mu, aux, dz)
        return _axpy(self.dt, v, states), v


@dataclass(frozen=True)
class Nesterov(Momentum):
    """Nesterov momentum on the states (optax's form): ``v <- mu v + dz``, ``z <- z + dt (mu v + dz)``."""

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and velocity."""
        v = _axpy(self.mu, aux, dz)
        return _axpy(self.dt, _axpy(self.mu, v, dz), states), v


@dataclass(frozen=True, eq=False)
class StateOptimizer(AbstractSolver):
    """An optax optimizer as a solver: the states descend ``-dz`` (for a PC network, ``dE/dz``).

    ``StateOptimizer(optax.sgd(0.1))`` is ``Euler(0.1)``; ``optax.sgd(lr, momentum=mu)``, ``optax.adam``
    and any other ``GradientTransformation`` work the same way. The optimizer's state starts fresh
    for every settle (``init``), as the seeds' ``optimizer_x`` does for every batch.
    """

    optimizer: optax.GradientTransformation

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                f"optimizer: expected an optax GradientTransformation (e.g. optax.sgd(0.1)), got "
                f"{type(self.optimizer).__name__}"
            )

    def init(self, states: Any) -> Any:
        """The optimizer's state for ``states``."""
        return self.optimizer.init(states)

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One optimizer step on the gradient ``-dz``; returns the new states and optimizer state."""
        updates, aux = self.optimizer.update(jax.tree.map(lambda d: -d, dz), aux, states)
        return optax.apply_updates(states, updates), aux


Solver = AbstractSolver


def as_solver(solver: Any) -> AbstractSolver:
    """``solver`` itself if it is a solver; an optax optimizer wrapped in :class:`StateOptimizer`.

    Anything with ``init`` and ``advance`` counts as a solver (the protocol
    :class:`predcode.core.Solver`), so user-defined solvers need not derive from the base class.
    """
    if isinstance(solver, optax.GradientTransformation):
        return StateOptimizer(solver)
    if callable(getattr(solver, "advance", None)) and callable(getattr(solver, "init", None)):
        return solver
    raise TypeError(
        f"solver: expected a solver (Euler(dt), Heun(dt), a subclass of AbstractSolver) or an optax "
        f"optimizer, got {type(solver).__name__}"
    )


def make_solver(name: str, dt: float, mu: float = 0.5, *, rtol: float = 1e-3, atol: float = 1e-3) -> Any:
    """The solver called ``name`` (one of :data:`SOLVERS`) with step ``dt`` (and momentum ``mu``).

    ``"adaptive_heun"`` is :class:`~predcode.dynamics.AdaptiveHeun` (diffrax) with first step ``dt``
    and tolerances ``rtol``, ``atol``.
    """
    if name == "adaptive_heun":
        from predcode.dynamics.adaptive import AdaptiveHeun

        return AdaptiveHeun(rtol=rtol, atol=atol, dt0=dt)
    if name == "euler":
        return Euler(dt)
    if name == "heun":
        return Heun(dt)
    if name == "momentum":
        return Momentum(dt, mu)
    if name == "nesterov":
        return Nesterov(dt, mu)
    raise ValueError(f"solver: expected one of {SOLVERS}, got {name!r}")
