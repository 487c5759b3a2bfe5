"""Nudged predictive coding: the output pulled toward its label with a strength ``beta`` (PCX's PC-PN, PC-NN).

In equilibrium-propagation form (Scellier & Bengio 2017): the free states settle on the energy
``F_beta = E_rest + beta * E_out``, where ``E_out`` is the output node's cell energy with the label
clamped there (the squared error or the cross-entropy of the prediction) and ``E_rest`` the energy
of every other node. At ``beta = 0`` the equilibrium is the feedforward pass (every hidden error is
zero), and the weight update

* positive nudging: ``dF_beta/dtheta / beta`` at the ``+beta`` equilibrium,
* negative nudging: ``dF_-beta/dtheta / (-beta)`` at the ``-beta`` equilibrium,
* centred nudging: ``(dF_beta/dtheta - dF_-beta/dtheta) / (2 beta)``, two inferences,

tends to backprop's gradient of the output loss as ``beta -> 0`` (the one-sided ones with an error of
order ``beta``, the centred one of order ``beta^2``; ``tests/test_pcx_algos.py`` checks this on a
float64 network). ``beta = 1`` positive is plain supervised PC with the label clamped.

PCX itself nudges by moving the output's clamped target to ``u - beta (u - y)`` (``u`` the
feedforward prediction) and dividing the update by ``beta``; to first order in ``beta`` its output
error is the same, ``beta (y - u)``, and at ``beta = 1`` both are the clamped label.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax

from predcode.cells import ScaledCell
from predcode.learning.trainer import EnergyGradient, weight_gradient
from predcode.models.network import NetworkError, PCNetwork

__all__ = ["NUDGES", "Nudged", "nudged_network"]

NUDGES = ("positive", "negative", "centred")


def nudged_network(network: PCNetwork, output: str, beta: float) -> PCNetwork:
    """``network`` with node ``output``'s cell energy multiplied by ``beta`` (its other nodes as they are)."""
    node = network.node(output)
    if node.learnable_covariance:
        raise NetworkError(
            f"node {output!r}: nudging expected an output cell without a learnable covariance "
            f"(its energy is scaled by beta), got {node.cell!r}"
        )
    cell = node.effective_cell
    if cell is None:
        raise NetworkError(f"node {output!r}: nudging expected an output node with a cell, got a root without one")
    nodes = [dataclasses.replace(n, cell=ScaledCell(cell, beta)) if n.name == output else n for n in network.nodes]
    return PCNetwork(nodes)


@dataclass(frozen=True, eq=False)
class Nudged:
    """Nudged PC on a :class:`PCNetwork`: infer ``T`` steps on ``E_rest + beta E_out``, then the
    weight update of ``mode`` (``"positive"``, ``"negative"`` or ``"centred"``), divided by ``beta``.

    ``beta`` is a number > 0 or a JAX scalar (to sweep it under one ``jit``). ``output`` is the
    nudged node (default: the network's last node); it must be clamped to the
    label in every batch. ``solver`` is the state solver (default ``optax.sgd(0.1)``). The batch is
    ``(clamps, masks=None, init=None)``; ``info`` is that of the (first) nudged inference: ``(energy
    trace (T + 1,), mean nudged energy per sample, status)``.
    """

    T: int = 20
    solver: Any = None
    beta: float = 1.0
    mode: str = "positive"
    output: str | None = None
    unroll: int = 1

    def __post_init__(self) -> None:
        inner = EnergyGradient(self.T, self.solver, self.unroll)  # checks T and unroll, makes the solver
        object.__setattr__(self, "solver", inner.solver)
        object.__setattr__(self, "unroll", inner.unroll)
        traced = isinstance(self.beta, jax.Array) and self.beta.shape == ()  # e.g. a beta swept under jit
        if not traced and (isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta > 0):
            raise ValueError(
                f"beta: expected a number > 0 (the nudging strength; mode sets its sign), got {self.beta!r}"
            )
        if self.mode not in NUDGES:
            raise ValueError(f"mode: expected one of {NUDGES}, got {self.mode!r}")

    def init(self, model: Any, params: Any) -> tuple:
        """No state."""
        return ()

    def _output(self, model: PCNetwork, clamps: Any) -> str:
        out = self.output if self.output is not None else model.names[-1]
        model.node(out)
        if out not in clamps:
            raise NetworkError(
                f"clamp on node {out!r}: nudging expected the label clamped at the nudged output, "
                f"got clamps on {sorted(clamps)}"
            )
        return out

    def infer(self, model: Any, params: Any, clamps: Any, masks: Any = None, init: Any = None, *, T: int | None = None):
        """Inference with the label clamped and not nudged (``beta = 1``), as evaluation uses it."""
        return EnergyGradient(self.T, self.solver, self.unroll).infer(model, params, clamps, masks, init, T=T)

    def _at(self, model: PCNetwork, output: str, beta: float, params, clamps, masks, init):
        net = nudged_network(model, output, beta)
        result = EnergyGradient(self.T, self.solver, self.unroll).infer(net, params, clamps, masks, init)
        energy, grads = weight_gradient(net, params, result.states, masks)
        return grads, (result.energy, energy, result.status)

    def update_with_info(self, model: Any, params: Any, state: Any, clamps: Any, masks: Any = None, init: Any = None):
        """``(grads, state, (energy_trace, energy, status))``."""
        out, b = self._output(model, clamps), self.beta
        if self.mode == "positive":
            grads, info = self._at(model, out, b, params, clamps, masks, init)
            return jax.tree.map(lambda g: g / b, grads), state, info
        if self.mode == "negative":
            grads, info = self._at(model, out, -b, params, clamps, masks, init)
            return jax.tree.map(lambda g: g / -b, grads), state, info
        plus, info = self._at(model, out, b, params, clamps, masks, init)
        minus, info_minus = self._at(model, out, -b, params, clamps, masks, init)
        grads = jax.tree.map(lambda p, m: (p - m) / (2 * b), plus, minus)
        return grads, state, (info[0], info[1], info[2] | info_minus[2])

    def update(self, model: Any, params: Any, state: Any, clamps: Any, masks: Any = None, init: Any = None):
        """``(grads, state)``."""
        grads, state, _ = self.update_with_info(model, params, state, clamps, masks, init)
        return grads, state
