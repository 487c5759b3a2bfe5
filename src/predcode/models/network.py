"""General predictive-coding networks: value nodes joined by transforms, each node with an error cell.

A :class:`PCNetwork` is a small DAG (a stack is the common case) of :class:`Node` s. A node holds a
state ``x_n: (batch, dim)``. A node with inputs predicts its state from its parents,

    mu_n = sum_{p in parents(n)} f_{p->n}(x_p)        (e.g. f = act(x_p @ w + b), a :class:`Dense`)

and its error cell scores the mismatch: ``E_n = -log p(x_n | mu_n)`` (Gaussian with fixed, scalar,
diagonal or full covariance, Laplacian, Bernoulli; :mod:`predcode.cells`). A root node (no inputs)
has no energy unless it is given a cell, which then acts as a zero-mean prior ``-log p(x_n | 0)``.
The network's energy is the sum over nodes and over the batch,

    E(params, states) = sum_b sum_n E_n[b],

and everything else is derived from it with ``jax.grad``: inference settles the free states along
the drive ``-dE/dx`` (:meth:`PCNetwork.term`, integrated by :func:`predcode.dynamics.settle` with
any solver; :func:`predcode.dynamics.infer`), learning moves the weights and learnable covariances
down ``dE/dtheta`` at the inferred states (:class:`predcode.learning.EnergyGradient`). Any node can
be clamped to data (the input, the output, both, or none: an unsupervised code is a free root).

Whittington & Bogacz (2017, *Neural Computation* 29:1229) is the supervised case: image clamped at
the root, label clamped at the leaf; the generative case (a free code predicts the image) is the
one of the Bogacz-lab ``PCLayer`` library.

Parameters are a nested dict::

    params["edges"][child][parent] = transform parameters (Dense: {"w": (in, out), "b": (out,)})
    params["cells"][node]          = learnable covariance of a Gaussian cell:
                                     scalar {"log_var": ()}, diagonal {"log_var": (n,)},
                                     full {"tril": (n, n)} with Sigma = L L^T,
                                     L = tril(tril, -1) + diag(exp(diag(tril)))

States, clamps and masks are dicts ``{node name: (batch, dim) array}``.

>>> net = PCNetwork.chain([784, 256, 10], names=["x", "h", "y"])
>>> params = net.init(jax.random.key(0))
>>> states = net.forward(params, {"x": jnp.zeros((4, 784))})
>>> bool(jnp.allclose(net.energy(params, states), 4 * 266 * 0.5 * math.log(2 * math.pi)))
True

(a forward sweep leaves no error anywhere: only the unit Gaussians' normalizing constant remains).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import jax
import jax.numpy as jnp
import numpy as np

from predcode.activations import get_activation
from predcode.cells import GaussianErrorCell
from predcode.core import ErrorCell, Term
from predcode.schema import MAX_DIM, check_int
from predcode.validation import check_key

Array = jax.Array
Cell = ErrorCell  # any error cell: the built-in ones of predcode.cells or your own

__all__ = ["Dense", "Node", "PCNetwork", "NetworkError", "Sequential", "Transform", "aligned_matmul"]


class NetworkError(ValueError):
    """A network description that cannot work: names, sizes, cells, clamps; the message names the node."""


class Transform(Protocol):
    """What a node's input transform provides (any differentiable function of the parent state works).

    ``in_dim``/``out_dim`` are checked against the nodes it joins; ``init(key)`` returns its parameter
    pytree and ``__call__(params, x)`` maps ``x: (batch, in_dim)`` to ``(batch, out_dim)``.
    """

    @property
    def in_dim(self) -> int:
        """Units taken from the parent."""
        ...

    @property
    def out_dim(self) -> int:
        """Units given to the child."""
        ...

    def init(self, key: Array) -> Any:
        """The transform's parameter pytree, drawn with ``key``."""
        ...

    def __call__(self, params: Any, x: Array) -> Array: ...


def _positive_int(value: Any, what: str) -> int:
    return check_int(what, value, 1, MAX_DIM, error=NetworkError)


@jax.custom_vjp
def aligned_matmul(x: Array, w: Array, feedback: Array) -> Array:
    """``x @ w`` whose gradient with respect to ``x`` goes through ``feedback`` (shaped like ``w``) instead
    of ``w``: ``dx = g feedback^T``, ``dw = x^T g`` (feedback alignment, Lillicrap et al. 2016)."""
    return x @ w


def _aligned_fwd(x, w, feedback):
    return x @ w, (x, feedback)


def _aligned_bwd(res, g):
    x, feedback = res
    return g @ feedback.T, x.T @ g, jnp.zeros_like(feedback)


aligned_matmul.defvjp(_aligned_fwd, _aligned_bwd)


@dataclass(frozen=True)
class Dense:
    """``act(in_act(x) @ w + b)``: a dense map from ``in_dim`` to ``out_dim`` units, bias optional.

    ``input_activation`` (default identity) applies a nonlinearity to the parent's state first, as in
    Whittington & Bogacz's ``mu = W f(x)``; e.g. ``"relu"`` on a code makes it a rectified code.

    Weights start at ``N(0, (gain / sqrt(in_dim))^2)`` with ``gain = sqrt(2)`` for ReLU and 1
    otherwise (``init_scale`` replaces ``gain / sqrt(in_dim)``); the bias starts at 0.
    """

    in_dim: int
    out_dim: int
    activation: str = "identity"
    bias: bool = True
    init_scale: float | None = None
    input_activation: str = "identity"

    def __post_init__(self) -> None:
        get_activation(self.input_activation, parameter="Dense.input_activation")
        _positive_int(self.in_dim, "Dense.in_dim")
        _positive_int(self.out_dim, "Dense.out_dim")
        get_activation(self.activation, parameter="Dense.activation")
        if self.init_scale is not None and not self.init_scale > 0:
            raise NetworkError(f"Dense.init_scale: expected a number > 0 or None, got {self.init_scale!r}")

    def init(self, key: Array) -> dict[str, Array]:
        """``{"w": (in_dim, out_dim)}`` plus ``{"b": (out_dim,)}`` with a bias."""
        gain = math.sqrt(2.0) if self.activation == "relu" else 1.0
        scale = self.init_scale if self.init_scale is not None else gain / math.sqrt(self.in_dim)
        params = {"w": scale * jax.random.normal(key, (self.in_dim, self.out_dim))}
        if self.bias:
            params["b"] = jnp.zeros((self.out_dim,))
        return params

    def __call__(self, params: Mapping[str, Array], x: Array) -> Array:
        if self.input_activation != "identity":
            x = get_activation(self.input_activation).fn(x)
        # With a "feedback" matrix (feedback alignment), gradients reach x through it instead of w.
        z = aligned_matmul(x, params["w"], params["feedback"]) if "feedback" in params else x @ params["w"]
        if self.bias:
            z = z + params["b"]
        return get_activation(self.activation).fn(z)


@dataclass(frozen=True)
class Sequential:
    """Transforms applied in turn, e.g. ``Sequential((Dense(64, 256, "tanh"), Dense(256, 784, "sigmoid")))``.

    A node fed through a Sequential has no inferred states in between: the inner layers are part of
    one differentiable prediction (the limit of inferred hidden nodes with vanishing variance).
    Parameters are ``{"0": ..., "1": ...}``, one entry per transform.
    """

    layers: tuple

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise NetworkError("Sequential.layers: expected at least one transform, got none")
        for i in range(1, len(layers)):
            if layers[i].in_dim != layers[i - 1].out_dim:
                raise NetworkError(
                    f"Sequential.layers[{i}]: takes {layers[i].in_dim} units but layers[{i - 1}] "
                    f"gives {layers[i - 1].out_dim}"
                )
        object.__setattr__(self, "layers", layers)

    @property
    def in_dim(self) -> int:
        """Units taken by the first transform."""
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> int:
        """Units given by the last transform."""
        return self.layers[-1].out_dim

    def init(self, key: Array) -> dict[str, Any]:
        """One parameter entry per layer, keyed ``"0"``, ``"1"``, ..."""
        keys = jax.random.split(key, len(self.layers))
        return {str(i): layer.init(k) for i, (layer, k) in enumerate(zip(self.layers, keys, strict=True))}

    def __call__(self, params: Mapping[str, Any], x: Array) -> Array:
        for i, layer in enumerate(self.layers):
            x = layer(params[str(i)], x)
        return x


@dataclass(frozen=True)
class Node:
    """A value node: ``name``, ``dim`` units, its input transforms and its error cell.

    Args:
        name: unique name (states, clamps and parameters are keyed by it).
        dim: number of units.
        inputs: ``{parent name: transform}``; the prediction is the sum of the transforms' outputs.
            Empty for a root (an input or a top-most code).
        cell: the error cell scoring the state against its prediction. ``None`` means a Gaussian with
            fixed unit variance for a node with inputs and no energy for a root; a root given a cell
            gets the zero-mean prior ``cell(x, 0)``.
        sigma_init: initial covariance of a learnable Gaussian cell (``covariance`` scalar, diagonal
            or full): a positive number, a (dim,) vector of variances or a (dim, dim)
            positive-definite matrix; ``None`` is the identity.
    """

    name: str
    dim: int
    inputs: Mapping[str, Transform] = field(default_factory=dict)
    cell: Cell | None = None
    sigma_init: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise NetworkError(f"Node.name: expected a non-empty string, got {self.name!r}")
        _positive_int(self.dim, f"node {self.name!r}: dim")
        if not isinstance(self.inputs, Mapping):
            raise NetworkError(
                f"node {self.name!r}: inputs: expected a dict {{parent name: transform}}, "
                f"got {type(self.inputs).__name__}"
            )
        object.__setattr__(self, "inputs", dict(self.inputs))
        if self.cell is not None and not callable(self.cell):
            raise NetworkError(
                f"node {self.name!r}: cell: expected an error cell (GaussianErrorCell(), "
                f"LaplacianErrorCell(), BernoulliErrorCell() or any callable cell(target, mu, *, mask) "
                f"returning a CellOutput with an energy) or None, got {type(self.cell).__name__}"
            )
        if self.sigma_init is not None and not self.learnable_covariance:
            raise NetworkError(
                f"node {self.name!r}: sigma_init: expected None for a cell without a learnable "
                f"covariance ({self.cell!r}); use GaussianErrorCell('scalar'|'diagonal'|'full')"
            )
        if self.learnable_covariance:
            self._check_sigma_init()

    @property
    def learnable_covariance(self) -> bool:
        """True for a Gaussian cell whose covariance is a parameter (scalar, diagonal or full)."""
        return isinstance(self.cell, GaussianErrorCell) and self.cell.covariance != "fixed"

    @property
    def effective_cell(self) -> Cell | None:
        """The cell that scores this node: the default unit Gaussian for a non-root without one."""
        if self.cell is None and self.inputs:
            return GaussianErrorCell()
        return self.cell

    def _check_sigma_init(self) -> np.ndarray:
        assert isinstance(self.cell, GaussianErrorCell)  # called only for a learnable covariance
        kind, n, where = self.cell.covariance, self.dim, f"node {self.name!r}: sigma_init"
        s = np.asarray(1.0 if self.sigma_init is None else self.sigma_init, np.float64)
        if kind == "scalar":
            if s.shape != () or not np.isfinite(s) or s <= 0:
                raise NetworkError(f"{where}: expected a positive variance for covariance='scalar', got {s!r}")
        elif kind == "diagonal":
            s = np.broadcast_to(s, (n,)) if s.shape == () else s
            if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
                raise NetworkError(
                    f"{where}: expected positive variances of shape ({n},) for "
                    f"covariance='diagonal', got shape {s.shape} with min {np.min(s)!r}"
                )
        else:
            s = s * np.eye(n) if s.shape == () else s
            if s.shape != (n, n) or not np.all(np.isfinite(s)):
                raise NetworkError(
                    f"{where}: expected a finite ({n}, {n}) covariance for covariance='full', got shape {s.shape}"
                )
            if not np.allclose(s, s.T, rtol=1e-6, atol=1e-8):
                raise NetworkError(
                    f"{where}: expected a symmetric covariance, got max |S - S^T| = {np.max(np.abs(s - s.T)):.3g}"
                )
            low = float(np.linalg.eigvalsh(s)[0])
            if not low > 0:
                raise NetworkError(
                    f"{where}: expected a positive-definite covariance, got smallest "
                    f"eigenvalue {low:.4g} (add a multiple of the identity)"
                )
        return s

    def init_cell(self) -> dict[str, Array]:
        """The learnable covariance parameters of this node's cell ({} without one)."""
        if not self.learnable_covariance:
            return {}
        s = self._check_sigma_init()
        assert isinstance(self.cell, GaussianErrorCell)  # learnable_covariance says so
        if self.cell.covariance in ("scalar", "diagonal"):
            return {"log_var": jnp.asarray(np.log(s))}
        chol = np.linalg.cholesky(s)
        tril = np.tril(chol, -1) + np.diag(np.log(np.diag(chol)))
        return {"tril": jnp.asarray(tril)}

    def cell_energy(self, cell_params: Mapping[str, Array], target: Array, mu: Array, mask=None) -> Array:
        """Per-sample energy ``(batch,)`` of ``target`` under this node's cell given ``mu``."""
        cell = self.effective_cell
        if cell is None:
            raise NetworkError(
                f"node {self.name!r}: a root without a cell has no energy; give it a cell "
                "(a prior) or leave it out of the energy"
            )
        if self.learnable_covariance:
            assert isinstance(cell, GaussianErrorCell)  # learnable_covariance says so
            kind = cell.covariance
            if kind == "full":
                t = cell_params["tril"]
                chol = jnp.tril(t, -1) + jnp.diag(jnp.exp(jnp.diagonal(t)))
                return cell(target, mu, scale_tril=chol, mask=mask).energy
            return cell(target, mu, sigma=jnp.exp(cell_params["log_var"]), mask=mask).energy
        return cell(target, mu, mask=mask).energy


class PCNetwork:
    """An immutable predictive-coding network over :class:`Node` s listed parents-first.

    Build a stack with :meth:`chain`, or any DAG from nodes. Sizes are checked on construction:
    every transform must take its parent's ``dim`` and give its node's ``dim``.
    """

    def __init__(self, nodes: Sequence[Node]):
        nodes = tuple(nodes)
        if not nodes or not all(isinstance(n, Node) for n in nodes):
            raise NetworkError(f"nodes: expected a non-empty sequence of Node, got {nodes!r}")
        seen: dict[str, Node] = {}
        for node in nodes:
            if node.name in seen:
                raise NetworkError(f"node {node.name!r}: the name is used twice; names must be unique")
            for parent, transform in node.inputs.items():
                if parent not in seen:
                    where = (
                        "is listed after it"
                        if any(n.name == parent for n in nodes)
                        else f"does not exist (nodes: {[n.name for n in nodes]})"
                    )
                    raise NetworkError(
                        f"node {node.name!r}: input {parent!r} {where}; list every node "
                        "after the nodes it takes input from"
                    )
                for attr in ("in_dim", "out_dim", "init"):
                    if not hasattr(transform, attr) or not callable(transform):
                        raise NetworkError(
                            f"node {node.name!r}: input {parent!r}: expected a transform with "
                            f"in_dim, out_dim, init and __call__ (e.g. Dense), got "
                            f"{type(transform).__name__}"
                        )
                if transform.in_dim != seen[parent].dim:
                    raise NetworkError(
                        f"node {node.name!r}: the transform from {parent!r} takes "
                        f"{transform.in_dim} units but node {parent!r} has {seen[parent].dim}"
                    )
                if transform.out_dim != node.dim:
                    raise NetworkError(
                        f"node {node.name!r}: the transform from {parent!r} gives "
                        f"{transform.out_dim} units but node {node.name!r} has {node.dim}"
                    )
            seen[node.name] = node
        self.nodes: tuple[Node, ...] = nodes
        self.by_name: dict[str, Node] = seen

    @classmethod
    def chain(
        cls,
        dims: Sequence[int],
        *,
        names: Sequence[str] | None = None,
        activation: str = "relu",
        output_activation: str = "identity",
        bias: bool = True,
        cell: Cell | None = None,
        output_cell: Cell | None = None,
        root_cell: Cell | None = None,
        output_sigma_init: Any = None,
    ) -> PCNetwork:
        """A stack ``dims[0] -> dims[1] -> ... -> dims[-1]`` of :class:`Dense` transforms.

        Hidden nodes use ``activation`` and ``cell``; the last node ``output_activation`` and
        ``output_cell`` (default: ``cell``); the root gets ``root_cell`` (default none: no prior).
        Names default to ``x0, x1, ...``. For supervised PC the root is the image and the last node
        the label; for generative PC the root is the code and the last node the image.
        """
        dims = list(dims)
        if len(dims) < 2:
            raise NetworkError(f"dims: expected at least two layer sizes, got {dims!r}")
        names = [f"x{i}" for i in range(len(dims))] if names is None else list(names)
        if len(names) != len(dims):
            raise NetworkError(f"names: expected {len(dims)} names (one per size in dims), got {len(names)}")
        nodes = [Node(names[0], dims[0], cell=root_cell)]
        for i in range(1, len(dims)):
            last = i == len(dims) - 1
            act = output_activation if last else activation
            node_cell = (output_cell if output_cell is not None else cell) if last else cell
            nodes.append(
                Node(
                    names[i],
                    dims[i],
                    {names[i - 1]: Dense(dims[i - 1], dims[i], act, bias)},
                    cell=node_cell,
                    sigma_init=output_sigma_init if last else None,
                )
            )
        return cls(nodes)

    @property
    def names(self) -> tuple[str, ...]:
        """The node names, in the order the network was described."""
        return tuple(n.name for n in self.nodes)

    def __repr__(self) -> str:
        parts = [f"{n.name}({n.dim}" + (" <- " + ", ".join(n.inputs) if n.inputs else "") + ")" for n in self.nodes]
        return "PCNetwork(" + ", ".join(parts) + ")"

    def init(self, key: Array) -> dict[str, dict]:
        """Fresh parameters: ``{"edges": {child: {parent: ...}}, "cells": {node: ...}}``."""
        check_key(key)
        edges: dict[str, dict[str, Any]] = {}
        cells: dict[str, dict[str, Array]] = {}
        keys = jax.random.split(key, max(1, sum(len(n.inputs) for n in self.nodes)))
        k = 0
        for node in self.nodes:
            if node.inputs:
                edges[node.name] = {}
                for parent, transform in node.inputs.items():
                    edges[node.name][parent] = transform.init(keys[k])
                    k += 1
            cell_params = node.init_cell()
            if cell_params:
                cells[node.name] = cell_params
        return {"edges": edges, "cells": cells}

    def covariance(self, params: Mapping, name: str) -> Array | None:
        """The current covariance matrix of node ``name``'s learnable Gaussian cell (None otherwise)."""
        node = self.node(name)
        if not node.learnable_covariance:
            return None
        p = params["cells"][name]
        assert isinstance(node.cell, GaussianErrorCell)  # learnable_covariance says so
        if node.cell.covariance == "full":
            t = p["tril"]
            chol = jnp.tril(t, -1) + jnp.diag(jnp.exp(jnp.diagonal(t)))
            return chol @ chol.T
        return jnp.exp(p["log_var"]) * jnp.eye(node.dim)

    def node(self, name: str) -> Node:
        """The node called ``name``; a clear error naming the nodes that exist otherwise."""
        try:
            return self.by_name[name]
        except KeyError:
            raise NetworkError(f"node {name!r} does not exist; the network has {list(self.names)}") from None

    def prediction(self, params: Mapping, states: Mapping[str, Array], name: str) -> Array:
        """``mu`` of node ``name``: the sum of its transforms of the parents' states."""
        node = self.by_name[name]
        return cast(Array, sum(t(params["edges"][name][p], states[p]) for p, t in node.inputs.items()))

    def units(
        self, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """The predictions ``{name: mu}`` of the nodes with inputs and the per-sample energies
        ``{name: (batch,)}`` of the nodes that have a cell."""
        masks = masks or {}
        preds, out = {}, {}
        for node in self.nodes:
            x = states[node.name]
            if node.inputs:
                preds[node.name] = self.prediction(params, states, node.name)
            if node.effective_cell is None:
                continue
            mu = preds[node.name] if node.inputs else jnp.zeros_like(x)
            out[node.name] = node.cell_energy(params["cells"].get(node.name, {}), x, mu, masks.get(node.name))
        return preds, out

    def energies(
        self, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """Per-node, per-sample energies ``{name: (batch,)}`` of the nodes that have a cell."""
        return self.units(params, states, masks)[1]

    # ----- the settling protocol (predcode.core.SettlingModel) ----------------------------------
    def init_states(self, params: Mapping, batch: Any, init: Mapping[str, Array] | None = None) -> dict[str, Array]:
        """Initial free states for ``batch = clamps`` or ``(clamps, masks)``: a feedforward sweep
        (:meth:`forward`), ``init`` where given, free roots at zero."""
        clamps, _ = _network_batch(batch)
        for name in init or {}:
            self.node(name)
        states = self.forward(params, clamps, init)
        return {k: states[k] for k in self.names if k not in clamps}

    def term(self, params: Mapping, batch: Any) -> Term:
        """The settling vector field of the free states given ``batch = clamps`` or ``(clamps, masks)``.

        ``predict`` evaluates the energy and its gradient with respect to the free states in one
        pass: predictions ``{node: mu}``, errors = per-node energies ``{node: (batch,)}``, signals
        ``-dE/dx``; ``drive`` is the signals themselves and ``energy`` the total (batch-summed).
        """
        clamps, masks = _network_batch(batch)
        fixed = {k: jnp.asarray(v) for k, v in clamps.items()}

        def total(free):
            preds, energies = self.units(params, {**fixed, **free}, masks)
            return jnp.sum(sum(energies.values())), (preds, energies)

        def predict(free):
            (_, (preds, energies)), grad = jax.value_and_grad(total, has_aux=True)(free)
            return preds, energies, jax.tree.map(jnp.negative, grad)

        return Term(predict, lambda free, sig: sig, lambda free, energies: jnp.sum(sum(energies.values())))

    def energy_per_sample(
        self, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None
    ) -> Array:
        """The energy of each sample, ``(batch,)``: the sum over nodes."""
        return cast(Array, sum(self.energies(params, states, masks).values()))

    def energy(self, params: Mapping, states: Mapping[str, Array], masks: Mapping[str, Array] | None = None) -> Array:
        """The total energy, a scalar: summed over nodes and over the batch.

        Summing over the batch makes ``jax.grad`` with respect to the states give each sample its
        own gradient; learning divides by the batch size (:mod:`predcode.learning.pc`).
        """
        return jnp.sum(self.energy_per_sample(params, states, masks))

    def check_clamps(self, clamps: Mapping[str, Array]) -> int:
        """Validate clamps (known nodes, ``(batch, dim)`` shapes, one batch size); return the batch size."""
        if not isinstance(clamps, Mapping) or not clamps:
            raise NetworkError(f"clamps: expected a non-empty dict {{node name: (batch, dim) array}}, got {clamps!r}")
        batch = None
        for name, value in clamps.items():
            if name not in self.by_name:
                near = [n for n in self.names if n.lower() == str(name).lower()]
                raise NetworkError(
                    f"clamp on node {name!r}: no such node; the network has {list(self.names)}"
                    + (f" (did you mean {near[0]!r}?)" if near else "")
                )
            dim = self.by_name[name].dim
            shape = tuple(jnp.shape(value))
            if len(shape) != 2 or shape[1] != dim:
                raise NetworkError(f"clamp on node {name!r}: expected shape (batch, {dim}), got {shape}")
            if batch is not None and shape[0] != batch:
                raise NetworkError(
                    f"clamp on node {name!r}: batch size {shape[0]} differs from {batch} of the other clamps"
                )
            batch = shape[0]
        assert batch is not None  # clamps is not empty
        if batch < 1:
            raise NetworkError(f"clamps: expected a batch of at least 1 row, got {batch} rows (shape {shape})")
        return batch

    def forward(
        self, params: Mapping, clamps: Mapping[str, Array], init: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """States from one feedforward sweep: clamped nodes take their data, free roots ``init`` (or
        zeros), every other free node its prediction. With only roots clamped this is the fixed point
        of inference (every error is zero), i.e. the network's feedforward output.
        """
        batch = self.check_clamps(clamps)
        init = init or {}
        states: dict[str, Array] = {}
        for node in self.nodes:
            if node.name in clamps:
                states[node.name] = jnp.asarray(clamps[node.name])
            elif node.name in init:
                states[node.name] = jnp.asarray(init[node.name])
            elif node.inputs:
                states[node.name] = self.prediction(params, states, node.name)
            else:
                states[node.name] = jnp.zeros((batch, node.dim))
        return states


def _network_batch(batch: Any) -> tuple[Mapping[str, Array], Mapping[str, Array] | None]:
    """``(clamps, masks)`` from a network batch: the clamps dict alone or ``(clamps, masks)``."""
    if isinstance(batch, (tuple, list)):
        clamps, masks = (*batch, None)[:2]
        return clamps, masks
    return batch, None
