"""Dynamics: settling as an ODE solve (Euler steps under ``lax.scan``)."""

from predcode.dynamics.inference import InferenceResult, infer
from predcode.dynamics.settle import Euler, SettleResult, settle

__all__ = ["Euler", "InferenceResult", "SettleResult", "infer", "settle"]
