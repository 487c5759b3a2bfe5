"""Dynamics: settling as an ODE solve (Euler steps under ``lax.scan``)."""

from predcode.dynamics.settle import Euler, SettleResult, settle

__all__ = ["Euler", "SettleResult", "settle"]
