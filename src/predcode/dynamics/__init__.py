"""Dynamics: settling as an ODE solve (``lax.scan`` over the steps of a solver)."""

from predcode.dynamics.clamped import LinearClamped
from predcode.dynamics.inference import InferenceResult, infer
from predcode.dynamics.settle import SettleResult, settle
from predcode.dynamics.solvers import SOLVERS, Euler, Heun, Momentum, Nesterov, make_solver

__all__ = [
    "Euler",
    "Heun",
    "InferenceResult",
    "LinearClamped",
    "infer",
    "Momentum",
    "Nesterov",
    "SOLVERS",
    "SettleResult",
    "make_solver",
    "settle",
]
