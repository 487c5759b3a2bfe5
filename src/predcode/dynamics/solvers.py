"""Solvers for the settling ODE ``dz/dt = f(z)``: Euler (the museum's), Heun, heavy-ball and Nesterov momentum.

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
==========  ==========================================================  =====================

Momentum and Nesterov are state optimizers rather than ODE integrators: for a drive that is minus
the gradient of an energy they descend it faster than Euler with the same ``dt``; ``mu = 0`` gives
Euler back. Nesterov is written in the form optax uses, with one drive evaluation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

SOLVERS = ("euler", "heun", "momentum", "nesterov")


def _check_dt(dt: float) -> None:
    if not dt > 0:
        raise ValueError(f"dt: expected a positive step size, got {dt!r}")


def _check_mu(mu: float) -> None:
    if not 0 <= mu < 1:
        raise ValueError(f"mu: expected a momentum in [0, 1), got {mu!r}")


def _axpy(a: float, x: Any, y: Any) -> Any:
    """``y + a x`` leaf by leaf."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


@dataclass(frozen=True)
class Euler:
    """Explicit Euler: ``z <- z + dt * dz`` (ngc-learn's ``beta`` is ``dt``)."""

    dt: float = 0.1
    evaluations = 1

    def __post_init__(self) -> None:
        _check_dt(self.dt)

    def step(self, states: Any, dz: Any) -> Any:
        """One Euler step ``z + dt * dz``, leaf by leaf."""
        return jax.tree.map(lambda z, d: z + self.dt * d, states, dz)

    def init(self, states: Any) -> Any:
        """The solver's auxiliary state: none (``()``); the method needs only the states."""
        return ()

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and ``aux``."""
        return self.step(states, dz), aux


@dataclass(frozen=True)
class Heun:
    """Heun's method (explicit trapezoid, second order): two drive evaluations per step."""

    dt: float = 0.1
    evaluations = 2

    def __post_init__(self) -> None:
        _check_dt(self.dt)

    def init(self, states: Any) -> Any:
        """The solver's auxiliary state: none (``()``); the method needs only the states."""
        return ()

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One step from ``states`` given their drive ``dz``; returns the new states and ``aux``."""
        dz_pred = field(_axpy(self.dt, dz, states))
        mean = jax.tree.map(lambda a, b: 0.5 * (a + b), dz, dz_pred)
        return _axpy(self.dt, mean, states), aux


@dataclass(frozen=True)
class Momentum:
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


Solver = Euler | Heun | Momentum | Nesterov


def make_solver(name: str, dt: float, mu: float = 0.5) -> Solver:
    """The solver called ``name`` (one of :data:`SOLVERS`) with step ``dt`` (and momentum ``mu``)."""
    if name == "euler":
        return Euler(dt)
    if name == "heun":
        return Heun(dt)
    if name == "momentum":
        return Momentum(dt, mu)
    if name == "nesterov":
        return Nesterov(dt, mu)
    raise ValueError(f"solver: expected one of {SOLVERS}, got {name!r}")
