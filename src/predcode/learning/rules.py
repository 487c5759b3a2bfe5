"""Credit-assignment rules for an MLP as init/update pairs: backprop, FA, DFA and predictive coding.

Every rule has the shape of an optax transform, with the network and the batch in place of the
incoming gradients::

    state = rule.init(model, params)
    grads, state = rule.update(model, params, state, x, y)   # a descent direction shaped like params
    updates, opt_state = optimizer.update(grads, opt_state, params)

so a training step takes ``rule=BackProp()``, ``FeedbackAlignment(key=...)``,
``DirectFeedbackAlignment(key=...)`` or ``PredictiveCoding(steps=T)`` and any optax optimizer
without other changes. Every rule returns updates for the biases as well as the weights.

With the MLP of :mod:`predcode.models.mlp` (``z_l = W_l h_{l-1} + b_l``, ``h_l = f(z_l)``, linear
output ``z_L``), the output error is ``e = dLoss/dz_L`` and the layer errors ``delta_l`` give
``dW_l = delta_l^T h_{l-1}``, ``db_l = sum_batch delta_l``:

- backprop:  ``delta_l = f'(z_l) * (delta_{l+1} W_{l+1})``, the exact gradient;
- FA (Lillicrap et al. 2016): ``delta_l = f'(z_l) * (delta_{l+1} B_{l+1}^T)`` with fixed random
  ``B_{l+1}: (n_l, n_{l+1})``, the shape of ``W_{l+1}^T`` (``B = W^T`` is backprop);
- DFA (Nokland 2016): ``delta_l = f'(z_l) * (e D_l^T)`` with fixed random ``D_l: (n_l, n_L)``;
- PC (Whittington & Bogacz 2017): hidden states ``s_l`` start at the forward pass ``z_l`` and
  descend the energy ``E = sum_{l<L} 1/2 ||s_l - mu_l||^2 + beta Loss(mu_L, y)``,
  ``mu_l = W_l f(s_{l-1}) + b_l`` (``f(s_0) = x``), for ``steps`` Euler steps of size
  ``inference_rate``; the weights then follow ``-(1/beta) dE/dW`` at the settled states, which only needs
  each layer's own error and input (a local, Hebbian update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from predcode.core import Term
from predcode.dynamics.settle import settle
from predcode.dynamics.solvers import Euler
from predcode.models.mlp import MLP, Layer, MLPParams
from predcode.models.network import Dense, PCNetwork

Array = jax.Array

__all__ = [
    "BackProp",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "FeedbackState",
    "PredictiveCoding",
    "alignment_angles",
    "hidden_error_angles",
]


class FeedbackState(NamedTuple):
    """The fixed random feedback matrices of FA or DFA, drawn once by ``init``."""

    B: tuple[Array, ...]


def _check_model(rule: str, model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(
            f"model: {rule} serves a feedforward predcode.models.mlp.MLP, got "
            f"{type(model).__name__}; describe the network as MLP(sizes=(...), activation=...)"
        )
    return model


def _backward(model: MLP, params: MLPParams, x: Array, y: Array, feedback) -> MLPParams:
    """Layer errors from the output error and a feedback map, then ``dW = delta^T h``, ``db``.

    ``feedback(l, delta_next, e)`` returns the signal reaching hidden layer ``l`` (before the
    nonlinearity's derivative) from the error ``delta_next`` of layer ``l + 1`` or the output
    error ``e``.
    """
    fw = model.forward(params, x)
    e = jax.grad(model.output_loss)(fw.output, y)  # (batch, n_L), already divided by the batch
    deriv = model.act.deriv
    deltas = {model.n_layers: e}
    for l in range(model.n_layers - 1, 0, -1):
        deltas[l] = deriv(fw.z[l]) * feedback(l, deltas[l + 1], e)
    return tuple(Layer(deltas[l].T @ fw.h[l - 1], jnp.sum(deltas[l], axis=0)) for l in range(1, model.n_layers + 1))


@dataclass(frozen=True)
class BackProp:
    """Exact backpropagation: the gradient of the batch-mean loss, built layer by layer."""

    name: str = field(default="backprop", init=False)

    def init(self, model: MLP, params: MLPParams) -> tuple:
        """No state: backprop reads the forward weights themselves."""
        _check_model("BackProp", model).check_params(params)
        return ()

    def update(self, model: MLP, params: MLPParams, state: tuple, x: Array, y: Array):
        """Return ``(grads, state)``; ``grads`` equals ``jax.grad(model.loss_fn)(params, x, y)``."""
        _check_model("BackProp", model)
        grads = _backward(model, params, x, y, lambda l, d, e: d @ params[l][0])
        return grads, state


def _as_key(key: Any, rule: str) -> Array:
    if key is None:
        raise ValueError(
            f"key: {rule} draws its fixed random feedback matrices from a key; pass "
            f"{rule}(key=jax.random.key(0)) (or feedback=[...] with the matrices themselves)"
        )
    if isinstance(key, int) and not isinstance(key, bool):
        return jax.random.key(key)
    return key


def _uniform(key: Array, shape: tuple[int, int], fan: int, scale: float) -> Array:
    # Variance scale^2 / fan: the backward map keeps the error's magnitude, as He/LeCun do forwards.
    limit = scale * float(np.sqrt(3.0 / fan))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


class _FixedFeedback:
    """Shared machinery of FA and DFA: draw, validate, save and load the feedback matrices."""

    key: Any
    scale: float
    feedback: Any

    def shapes(self, model: MLP) -> list[tuple[int, int]]:
        """Shapes of the fixed feedback matrices for ``model``, in the order of :meth:`names`."""
        raise NotImplementedError

    def names(self, model: MLP) -> list[str]:
        """Names of the fixed feedback matrices (``B{l}`` for FA, ``D{l}`` for DFA), as saved in checkpoints."""
        raise NotImplementedError

    def _check_network(self, model: MLP) -> MLP:
        rule = type(self).__name__
        _check_model(rule, model)
        if model.n_layers < 2:
            raise ValueError(
                f"model: {rule} sends errors to hidden layers, but sizes {model.sizes} has none; "
                "with no hidden layer every rule is the delta rule, so use BackProp()"
            )
        return model

    def init(self, model: MLP, params: MLPParams) -> FeedbackState:
        """Draw the fixed feedback matrices (or take ``feedback``), checked against the network."""
        if isinstance(model, PCNetwork):
            if not isinstance(self, FeedbackAlignment):
                raise TypeError(
                    f"model: {type(self).__name__} serves an MLP; on a PCNetwork use FeedbackAlignment, "
                    "EnergyGradient or BackProp"
                )
            return self._init_network(model, params)
        self._check_network(model).check_params(params)
        shapes = self.shapes(model)
        if self.feedback is not None:
            state = FeedbackState(tuple(jnp.asarray(B, jnp.float32) for B in self.feedback))
            self.check_state(model, state, parameter="feedback")
            return state
        keys = jax.random.split(_as_key(self.key, type(self).__name__), len(shapes))
        return FeedbackState(tuple(_uniform(k, s, s[1], self.scale) for k, s in zip(keys, shapes)))

    def check_state(self, model: MLP, state: Any, *, parameter: str = "state") -> None:
        """Raise ValueError unless ``state`` holds one matrix of the right shape per feedback path."""
        rule = type(self).__name__
        shapes, names = self.shapes(model), self.names(model)
        B = state.B if isinstance(state, FeedbackState) else state
        if not isinstance(B, (tuple, list)) or len(B) != len(shapes):
            got = len(B) if isinstance(B, (tuple, list)) else type(B).__name__
            raise ValueError(
                f"{parameter}: {rule} on sizes {model.sizes} expected {len(shapes)} feedback "
                f"matrices {dict(zip(names, shapes))}, got {got}; draw them with "
                f"{rule}(key=...).init(model, params)"
            )
        for name, M, shape in zip(names, B, shapes):
            if tuple(np.shape(M)) != shape:
                raise ValueError(
                    f"{parameter}: {rule} feedback matrix {name} expected shape {shape} for sizes "
                    f"{model.sizes}, got {tuple(np.shape(M))}; the matrices belong to another "
                    "network: draw them again with init(model, params)"
                )

    def state_from_arrays(self, model: MLP, arrays: dict[str, Any], *, source: str = "arrays") -> FeedbackState:
        """Rebuild the state from the matrices by name (``B2``, ... for FA, ``D1``, ... for DFA), checking
        names and shapes (checkpoints store the state by key path, ``rule_state/B/0``, ...)."""
        names = self.names(model)
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(
                f"{source}: {type(self).__name__} on sizes {model.sizes} expected feedback "
                f"matrices {names}, missing {missing}"
            )
        state = FeedbackState(tuple(jnp.asarray(arrays[n]) for n in names))
        self.check_state(model, state, parameter=source)
        return state


@dataclass(frozen=True, eq=False)
class FeedbackAlignment(_FixedFeedback):
    """Feedback alignment: errors travel back through fixed random ``B_l`` instead of ``W_l^T``.

    Args:
        key: draws the matrices ``B_l: (n_{l-1}, n_l)``, ``l = 2..L`` (uniform, variance
            ``scale^2 / n_l``) once, at ``init``; an int is taken as a seed.
        scale: multiplies the matrices.
        feedback: the matrices themselves instead of a key (e.g. ``[W.T for W, b in params[1:]]``,
            which turns FA into backprop).
    """

    key: Any = None
    scale: float = 1.0
    feedback: Any = None
    name: str = field(default="fa", init=False)

    def shapes(self, model: MLP) -> list[tuple[int, int]]:
        return [(model.sizes[l - 1], model.sizes[l]) for l in range(2, model.n_layers + 1)]

    def names(self, model: MLP) -> list[str]:
        return [f"B{l}" for l in range(2, model.n_layers + 1)]

    def update(self, model: MLP, params: MLPParams, state: FeedbackState, x: Array, y: Array | None = None, init=None):
        """Return ``(updates, state)``: backprop's form with ``B_{l+1}`` in place of ``W_{l+1}^T``.

        On a :class:`~predcode.models.PCNetwork` the batch is ``(clamps, masks=None, init=None)``
        (``init`` unused: the feedforward sweep sets the free states); see :meth:`network_update`.
        """
        if isinstance(model, PCNetwork):
            return self.network_update(model, params, state, x, y)
        if y is None:
            raise TypeError("y: FeedbackAlignment on an MLP takes the batch (x, y); got no targets")
        self._check_network(model)
        self.check_state(model, state)
        grads = _backward(model, params, x, y, lambda l, d, e: d @ state.B[l - 1].T)
        return grads, state

    def _init_network(self, network: PCNetwork, params: Any) -> FeedbackState:
        """One fixed matrix per dense edge below the top (shaped like its ``w``), in the network's edge order."""
        edges = _dense_edges(network)
        if not edges:
            raise ValueError(
                "model: FeedbackAlignment on a PCNetwork sends errors back through its Dense edges, "
                f"but {network!r} has none; use EnergyGradient or BackProp"
            )
        ws = [params["edges"][c][p]["w"] for c, p in edges]
        shapes = [tuple(np.shape(w)) for w in ws]
        if self.feedback is not None:
            B = tuple(jnp.asarray(m, jnp.result_type(w)) for m, w in zip(self.feedback, ws))
            got = [tuple(np.shape(m)) for m in B]
            if got != shapes:
                raise ValueError(f"feedback: expected matrices of shapes {shapes} (edges {edges}), got {got}")
            return FeedbackState(B)
        keys = jax.random.split(_as_key(self.key, "FeedbackAlignment"), len(shapes))
        return FeedbackState(tuple(_uniform(k, s, s[1], self.scale) for k, s in zip(keys, shapes)))

    def network_update(self, network: PCNetwork, params: Any, state: FeedbackState, clamps: Any, masks: Any = None):
        """FA on a general network: the feedforward sweep from the clamps, its energy (the clamped
        nodes' errors; the free nodes sit at their predictions), and the gradient of its batch mean
        with every dense edge's ``w^T`` replaced by its fixed matrix on the way back. With the
        matrices equal to the weights this is backprop's gradient of the same loss (tested)."""
        edges = _dense_edges(network)
        if len(state.B) != len(edges):
            raise ValueError(f"state: expected {len(edges)} feedback matrices (edges {edges}), got {len(state.B)}")
        feedback = dict(zip(edges, state.B))
        batch = network.check_clamps(clamps)

        def with_feedback(p):
            out = {"edges": {c: dict(ps) for c, ps in p["edges"].items()}, "cells": p["cells"]}
            for (c, par), B in feedback.items():
                out["edges"][c][par] = {**p["edges"][c][par], "feedback": jax.lax.stop_gradient(B)}
            return out

        def loss(p):
            q = with_feedback(p)
            return network.energy(q, network.forward(q, clamps), masks) / batch

        return jax.grad(loss)(params), state


def _dense_edges(network: PCNetwork) -> list[tuple[str, str]]:
    """The ``(child, parent)`` edges of ``network`` whose transform is a :class:`Dense`."""
    return [(n.name, par) for n in network.nodes for par, t in n.inputs.items() if isinstance(t, Dense)]


@dataclass(frozen=True, eq=False)
class DirectFeedbackAlignment(_FixedFeedback):
    """Direct feedback alignment: the output error reaches every hidden layer through fixed ``D_l``.

    Args:
        key: draws ``D_l: (n_l, n_L)``, ``l = 1..L-1`` (uniform, variance ``scale^2 / n_L``) once.
        scale: multiplies the matrices.
        feedback: the matrices themselves instead of a key.
    """

    key: Any = None
    scale: float = 1.0
    feedback: Any = None
    name: str = field(default="dfa", init=False)

    def shapes(self, model: MLP) -> list[tuple[int, int]]:
        return [(model.sizes[l], model.sizes[-1]) for l in range(1, model.n_layers)]

    def names(self, model: MLP) -> list[str]:
        return [f"D{l}" for l in range(1, model.n_layers)]

    def update(self, model: MLP, params: MLPParams, state: FeedbackState, x: Array, y: Array):
        """Return ``(updates, state)`` with ``delta_l = f'(z_l) * (e D_l^T)``."""
        self._check_network(model)
        self.check_state(model, state)
        grads = _backward(model, params, x, y, lambda l, d, e: e @ state.B[l - 1].T)
        return grads, state


@dataclass(frozen=True)
class PredictiveCoding:
    """Predictive coding's local learning (Whittington & Bogacz 2017) on an MLP.

    Args:
        steps: inference steps ``T`` on the hidden states before the weight update (``T = 0``
            updates only the output layer, whose error is the loss gradient).
        inference_rate: Euler step ``gamma`` of ``s <- s - gamma dE/ds``; stable for ``gamma < 1``.
        output_precision: ``beta``, the weight of the loss in the energy
            ``E = sum_{l<L} 1/2 ||s_l - mu_l||^2 + beta Loss(mu_L, y)``. The returned update is
            ``dE/dparams / beta``, on the loss's scale (with ``T = 0`` the output layer's update is
            the loss gradient for any ``beta``). As ``beta -> 0`` (a weakly clamped output) the
            settled update tends to backprop's gradient (Whittington & Bogacz 2017); at
            ``beta = 1`` it differs from it by a factor of order one in the hidden layers.
    """

    steps: int = 20
    inference_rate: float = 0.1
    output_precision: float = 1.0
    name: str = field(default="pc", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps: expected a non-negative integer, got {self.steps!r}")
        if not self.output_precision > 0:
            raise ValueError(f"output_precision: expected a positive number, got {self.output_precision!r}")
        if not 0 < self.inference_rate < 1:
            raise ValueError(
                f"inference_rate: expected 0 < gamma < 1 (larger steps overshoot the unit-precision "
                f"errors and diverge), got {self.inference_rate!r}"
            )

    def init(self, model: MLP, params: MLPParams) -> tuple:
        """No state: the hidden states live only within one update."""
        _check_model("PredictiveCoding", model).check_params(params)
        return ()

    def energy(self, model: MLP, params: MLPParams, states: tuple[Array, ...], x: Array, y: Array) -> Array:
        """Batch-mean ``E = 1/2 sum_{l<L} ||s_l - mu_l||^2 + beta Loss(mu_L, y)``; ``states``: ``s_1..s_{L-1}``."""
        f = model.act.fn
        below = x
        total: float | Array = 0.0
        for l, (W, b) in enumerate(params[:-1], 1):
            mu = below @ W.T + b
            total = total + 0.5 * jnp.mean(jnp.sum((states[l - 1] - mu) ** 2, axis=-1))
            below = f(states[l - 1])
        W, b = params[-1]
        return total + self.output_precision * model.output_loss(below @ W.T + b, y)

    def term(self, model: MLP, params: MLPParams, x: Array, y: Array) -> Term:
        """The settling vector field of the hidden states: ``-dE/ds`` of each sample's energy.

        ``predict`` evaluates the energy and its gradient in one pass (errors: the batch-summed
        energy; signals: the drive); the settle is :func:`predcode.dynamics.settle`'s.
        """
        batch = x.shape[0]
        # Each sample's states descend its own energy: the batch-mean energy's gradient times batch.
        total = jax.value_and_grad(lambda s: batch * self.energy(model, params, s, x, y))

        def predict(s):
            e, g = total(s)
            return (), e, tuple(-gi for gi in g)

        return Term(predict, lambda s, sig: sig, lambda s, e: e)

    def settle(self, model: MLP, params: MLPParams, x: Array, y: Array) -> tuple[Array, ...]:
        """Hidden states after ``steps`` Euler steps of size ``inference_rate`` from the forward pass."""
        states = tuple(model.forward(params, x).z[1:-1])
        term = self.term(model, params, x, y)
        return settle(term, states, steps=self.steps + 1, solver=Euler(self.inference_rate)).states

    def update(self, model: MLP, params: MLPParams, state: tuple, x: Array, y: Array):
        """Return ``(dE/dparams at the settled states, state)``: local errors times local inputs."""
        _check_model("PredictiveCoding", model)
        states = jax.lax.stop_gradient(self.settle(model, params, x, y))
        grads = jax.grad(lambda p: self.energy(model, p, states, x, y))(params)
        return tuple(Layer(g.W / self.output_precision, g.b / self.output_precision) for g in grads), state


def alignment_angles(updates: MLPParams, reference: MLPParams) -> Array:
    """Angle in degrees between two rules' updates, per layer (``W`` and ``b`` flattened together).

    ``(L,)``; 0 means the same direction, 90 orthogonal. The last layer's update is the same for
    backprop, FA and DFA, so the hidden layers carry the comparison.
    """
    angles = []
    for u, r in zip(updates, reference):
        a = jnp.concatenate([u[0].ravel(), u[1].ravel()])
        b = jnp.concatenate([r[0].ravel(), r[1].ravel()])
        cos = jnp.dot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-30)
        angles.append(jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))))
    return jnp.stack(angles)


def hidden_error_angles(model: MLP, rule: Any, params: MLPParams, state: Any, x: Array, y: Array) -> Array:
    """Mean per-sample angle (degrees) between the hidden-layer errors of ``rule`` and backprop.

    Each sample's error ``delta_l`` is its bias update as a batch of one, so the measure serves
    every rule (for PC it is the settled error). ``(L - 1,)``, one per hidden layer; samples whose
    error vector is zero in either rule (every unit off) are left out. This is the angle
    Lillicrap et al. (2016) plot for the hidden-unit updates.
    """

    def errors(r, s):
        per_sample = lambda xi, yi: [g.b for g in r.update(model, params, s, xi[None], yi[None])[0][:-1]]
        return jax.vmap(per_sample)(x, y)

    angles = []
    for a, b in zip(errors(rule, state), errors(BackProp(), ())):
        na, nb = jnp.linalg.norm(a, axis=-1), jnp.linalg.norm(b, axis=-1)
        valid = (na > 0) & (nb > 0)
        cos = jnp.sum(a * b, axis=-1) / jnp.where(valid, na * nb, 1.0)
        deg = jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))
        angles.append(jnp.sum(jnp.where(valid, deg, 0.0)) / jnp.maximum(jnp.sum(valid), 1))
    return jnp.stack(angles)
