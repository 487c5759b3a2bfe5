"""Dynamics: settling as an ODE solve, one ``lax.scan``/``while_loop`` over the steps of any solver."""

from predcode.dynamics.adaptive import AdaptiveHeun
from predcode.dynamics.clamped import LinearClamped
from predcode.dynamics.settle import InferenceResult, SettleResult, infer, settle, settle_model
from predcode.dynamics.solvers import (
    SOLVERS,
    AbstractSolver,
    Euler,
    Heun,
    Momentum,
    Nesterov,
    StateOptimizer,
    as_solver,
    make_solver,
)

__all__ = [
    "AbstractSolver",
    "AdaptiveHeun",
    "Euler",
    "Heun",
    "InferenceResult",
    "LinearClamped",
    "Momentum",
    "Nesterov",
    "SOLVERS",
    "SettleResult",
    "StateOptimizer",
    "as_solver",
    "infer",
    "make_solver",
    "settle",
    "settle_model",
]
