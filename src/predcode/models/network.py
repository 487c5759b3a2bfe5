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

States, clamps and masks are dicts ``{node name: (batch, dim) array}``; a node declared with a shape
(``Node("h", (14, 14, 32), ...)``) holds an image-shaped state ``(batch, 14, 14, 32)`` (NHWC), fed
by the convolutional transforms of :mod:`predcode.models.conv`.

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

__all__ = [
    "PARAMETERISATIONS",
    "Dense",
    "NetworkError",
    "Node",
    "PCNetwork",
    "Residual",
    "Sequential",
    "Transform",
    "aligned_matmul",
    "describe_shape",
    "mupc_scales",
    "residual_mlp",
    "shape_of",
]


class NetworkError(ValueError):
    """A network description that cannot work: names, sizes, cells, clamps; the message names the node."""


class Transform(Protocol):
    """What a node's input transform provides (any differentiable function of the parent state works).

    ``in_dim``/``out_dim`` are checked against the nodes it joins: an int (a flat state) or a shape
    such as ``(H, W, C)`` (an image-shaped state, NHWC; :mod:`predcode.models.conv`). ``init(key)``
    returns its parameter pytree and ``__call__(params, x)`` maps ``x: (batch, *in_shape)`` to
    ``(batch, *out_shape)``.
    """

    @property
    def in_dim(self) -> Any:
        """Units (an int) or the shape taken from the parent."""
        ...

    @property
    def out_dim(self) -> Any:
        """Units (an int) or the shape given to the child."""
        ...

    def init(self, key: Array) -> Any:
        """The transform's parameter pytree, drawn with ``key``."""
        ...

    def __call__(self, params: Any, x: Array) -> Array: ...


def _positive_int(value: Any, what: str) -> int:
    return check_int(what, value, 1, MAX_DIM, error=NetworkError)


def shape_of(dim: Any, what: str = "dim") -> tuple[int, ...]:
    """A node's or transform's size as a shape: ``784 -> (784,)``, ``(28, 28, 1)`` stays as it is.

    A state is ``(batch, *shape)``: a flat vector for an int, an ``(H, W, C)`` image (NHWC) for a
    3-tuple. Anything but a positive int or a non-empty sequence of them is an error naming ``what``.
    """
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        return (_positive_int(dim, what),)
    if isinstance(dim, (tuple, list)) and dim:
        return tuple(_positive_int(d, what) for d in dim)
    raise NetworkError(f"{what}: expected an integer >= 1 or a shape (a tuple of them, e.g. (28, 28, 1)), got {dim!r}")


def describe_shape(dim: Any) -> str:
    """``"784 units"`` for a flat size, ``"shape (28, 28, 1)"`` for an image-shaped one."""
    shape = shape_of(dim)
    return f"{shape[0]} units" if len(shape) == 1 else f"shape {shape}"


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

WEIGHT_INITS = ("normal", "uniform")


def initial_weights(
    key: Array,
    shape: tuple[int, ...],
    fan_in: float,
    *,
    weight_init: str,
    gain: float,
    init_scale: float | None,
    bias: int | None,
) -> dict[str, Array]:
    """The starting ``{"w": shape}`` (plus ``{"b": (bias,)}``) of a Dense or convolutional transform.

    ``"normal"``: ``w ~ N(0, s^2)`` with ``s = init_scale`` or ``gain / sqrt(fan_in)``, the bias 0.
    ``"uniform"``: ``w`` and ``b`` uniform in ``(-s, s)`` with ``s = init_scale`` or ``1 / sqrt(fan_in)``,
    the default of PyTorch's and equinox's ``Linear`` and ``Conv`` (PCX's layers), whatever the activation.
    """
    if weight_init == "uniform":
        s = init_scale if init_scale is not None else 1.0 / math.sqrt(fan_in)
        kw, kb = jax.random.split(key)
        params = {"w": jax.random.uniform(kw, shape, minval=-s, maxval=s)}
        if bias is not None:
            params["b"] = jax.random.uniform(kb, (bias,), minval=-s, maxval=s)
        return params
    s = init_scale if init_scale is not None else gain / math.sqrt(fan_in)
    params = {"w": s * jax.random.normal(key, shape)}
    if bias is not None:
        params["b"] = jnp.zeros((bias,))
    return params


def check_weight_init(value: Any, parameter: str) -> None:
    """Refuse a ``weight_init`` other than ``"normal"`` or ``"uniform"``, naming ``parameter``."""
    if value not in WEIGHT_INITS:
        raise NetworkError(f"{parameter}: expected one of 'normal', 'uniform', got {value!r}")


@dataclass(frozen=True)
class Dense:
    """``act(in_act(x) @ w + b)``: a dense map from ``in_dim`` to ``out_dim`` units, bias optional.

    ``input_activation`` (default identity) applies a nonlinearity to the parent's state first, as in
    Whittington & Bogacz's ``mu = W f(x)``; e.g. ``"relu"`` on a code makes it a rectified code.

    Weights start at ``N(0, (gain / sqrt(in_dim))^2)`` with ``gain = sqrt(2)`` for ReLU and 1
    otherwise (``init_scale`` replaces ``gain / sqrt(in_dim)``); the bias starts at 0. With
    ``weight_init = "uniform"`` weights and bias start uniform in ``+-1 / sqrt(in_dim)`` (PyTorch's and
    equinox's ``Linear``; :func:`initial_weights`).

    ``scale`` (default 1) multiplies the product before the bias: ``act(scale * (in_act(x) @ w) + b)``.
    It is a fixed multiplier, not a parameter: muPC (:func:`residual_mlp`) draws ``w`` from
    ``N(0, 1)`` (``init_scale = 1``) and puts its width- and depth-dependent factors here, so the
    weights stay O(1) whatever the width and depth.
    """

    in_dim: int
    out_dim: int
    activation: str = "identity"
    bias: bool = True
    init_scale: float | None = None
    input_activation: str = "identity"
    scale: float = 1.0
    weight_init: str = "normal"

    def __post_init__(self) -> None:
        get_activation(self.input_activation, parameter="Dense.input_activation")
        check_weight_init(self.weight_init, "Dense.weight_init")
        _positive_int(self.in_dim, "Dense.in_dim")
        _positive_int(self.out_dim, "Dense.out_dim")
        get_activation(self.activation, parameter="Dense.activation")
        if self.init_scale is not None and not self.init_scale > 0:
            raise NetworkError(f"Dense.init_scale: expected a number > 0 or None, got {self.init_scale!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale > 0:
            raise NetworkError(f"Dense.scale: expected a number > 0, got {self.scale!r}")

    def init(self, key: Array) -> dict[str, Array]:
        """``{"w": (in_dim, out_dim)}`` plus ``{"b": (out_dim,)}`` with a bias."""
        return initial_weights(
            key,
            (self.in_dim, self.out_dim),
            self.in_dim,
            weight_init=self.weight_init,
            gain=math.sqrt(2.0) if self.activation == "relu" else 1.0,
            init_scale=self.init_scale,
            bias=self.out_dim if self.bias else None,
        )

    def __call__(self, params: Mapping[str, Array], x: Array) -> Array:
        if self.input_activation != "identity":
            x = get_activation(self.input_activation).fn(x)
        # With a "feedback" matrix (feedback alignment), gradients reach x through it instead of w.
        z = aligned_matmul(x, params["w"], params["feedback"]) if "feedback" in params else x @ params["w"]
        if self.scale != 1.0:
            z = self.scale * z
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
            if shape_of(layers[i].in_dim) != shape_of(layers[i - 1].out_dim):
                raise NetworkError(
                    f"Sequential.layers[{i}]: takes {describe_shape(layers[i].in_dim)} but layers[{i - 1}] "
                    f"gives {describe_shape(layers[i - 1].out_dim)}"
                )
        object.__setattr__(self, "layers", layers)

    @property
    def in_dim(self) -> Any:
        """Units (or the shape) taken by the first transform."""
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> Any:
        """Units (or the shape) given by the last transform."""
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
class Residual:
    """``x + branch(x)``: an identity skip around a transform that keeps the size (``in_dim == out_dim``).

    The parameters are the branch's own (``{"w": ...}`` for a :class:`Dense` branch), so a residual
    edge is checkpointed, and learned by every rule, like a plain one.
    """

    branch: Any

    def __post_init__(self) -> None:
        for attr in ("in_dim", "out_dim", "init"):
            if not hasattr(self.branch, attr) or not callable(self.branch):
                raise NetworkError(
                    f"Residual.branch: expected a transform with in_dim, out_dim, init and __call__ "
                    f"(e.g. Dense), got {type(self.branch).__name__}"
                )
        if self.branch.in_dim != self.branch.out_dim:
            raise NetworkError(
                f"Residual.branch: expected a transform that keeps the size for the identity skip, got "
                f"{self.branch.in_dim} -> {self.branch.out_dim} units"
            )

    @property
    def in_dim(self) -> int:
        """Units taken (and given)."""
        return int(self.branch.in_dim)

    @property
    def out_dim(self) -> int:
        """Units given: as many as taken."""
        return int(self.branch.out_dim)

    def init(self, key: Array) -> Any:
        """The branch's parameters."""
        return self.branch.init(key)

    def __call__(self, params: Any, x: Array) -> Array:
        return x + self.branch(params, x)


PARAMETERISATIONS = ("standard", "mupc")


def mupc_scales(depth: int, width: int, in_dim: int, *, residual: bool = True) -> tuple[float, float, float]:
    """muPC's fixed multipliers ``(input, hidden, output)`` of a ``depth``-layer MLP of ``width`` units.

    Innocenti et al. 2025 ("muPC: scaling predictive coding to 100+ layer networks"), as JPC
    implements it: ``1 / sqrt(in_dim)`` on the input layer, ``1 / sqrt(width * depth)`` on every
    residual branch (``1 / sqrt(width)`` without skips), ``1 / width`` on the output layer, with
    every weight drawn from ``N(0, 1)``. ``depth`` counts the weight matrices.
    """
    hidden = 1.0 / math.sqrt(width * depth) if residual else 1.0 / math.sqrt(width)
    return 1.0 / math.sqrt(in_dim), hidden, 1.0 / width


def residual_mlp(
    depth: int,
    width: int,
    *,
    in_dim: int = 784,
    out_dim: int = 10,
    activation: str = "relu",
    param: str = "mupc",
    residual: bool = True,
    bias: bool = False,
    names: Sequence[str] | None = None,
    cell: Cell | None = None,
    output_cell: Cell | None = None,
    root_cell: Cell | None = None,
) -> PCNetwork:
    """A chain of ``depth`` weight layers, ``in_dim -> width -> ... -> width -> out_dim``, with a value
    node after each (``depth - 1`` hidden nodes of ``width`` units), as muPC's residual networks.

    Node ``h1`` predicts ``a_1 W_1 x`` (no activation on the input); every later hidden node predicts
    ``h_{l-1} + a_l W_l act(h_{l-1})`` (a :class:`Residual` edge; a plain ``a_l W_l act(h_{l-1})``
    with ``residual=False``); the output ``a_L W_L act(h_{L-1})``. The skips skip neither the input
    layer nor the output layer, as in JPC's ``make_skip_model``.

    ``param="mupc"`` is muPC (:func:`mupc_scales`): weights ``N(0, 1)``, multipliers
    ``a_1 = 1/sqrt(in_dim)``, ``a_l = 1/sqrt(width * depth)``, ``a_L = 1/width``; with them the
    hidden states stay O(1) at initialisation whatever the depth (in expectation a residual branch
    adds ``1/(2 depth)`` of a symmetric state's variance through the ReLU, so the last hidden node's
    variance is at most ``e^(1/2)`` times the first's, up to finite-width fluctuations).
    ``param="standard"`` is the same network without the parameterisation: multipliers 1 and the
    :class:`Dense` default initialisation ``N(0, 1/fan_in)``.

    muPC also prescribes the learning rates that transfer across width and depth; JPC's MNIST
    example uses Adam (lr 0.1) on the weights and gradient descent on the states with step 0.5 on
    the *batch-mean* energy, i.e. ``dt = 0.5 / batch`` on predcode's batch-summed energy
    (``configs/pc/mnist_mupc.toml``).
    """
    depth = _positive_int(depth, "depth")
    width = _positive_int(width, "width")
    if depth < 2:
        raise NetworkError(f"depth: expected at least 2 weight layers (one hidden node), got {depth}")
    if param not in PARAMETERISATIONS:
        raise NetworkError(f"param: expected one of {PARAMETERISATIONS}, got {param!r}")
    get_activation(activation, parameter="activation")
    names = ["x", *[f"h{i}" for i in range(1, depth)], "y"] if names is None else list(names)
    if len(names) != depth + 1:
        raise NetworkError(f"names: expected {depth + 1} names (one per node), got {len(names)}")
    if param == "mupc":
        a_in, a_hidden, a_out = mupc_scales(depth, width, in_dim, residual=residual)
        init: float | None = 1.0
    else:
        a_in = a_hidden = a_out = 1.0
        init = None
    nodes = [Node(names[0], in_dim, cell=root_cell)]
    nodes.append(Node(names[1], width, {names[0]: Dense(in_dim, width, bias=bias, init_scale=init, scale=a_in)}, cell))
    for i in range(2, depth):
        branch = Dense(width, width, bias=bias, init_scale=init, input_activation=activation, scale=a_hidden)
        nodes.append(Node(names[i], width, {names[i - 1]: Residual(branch) if residual else branch}, cell=cell))
    last = Dense(width, out_dim, bias=bias, init_scale=init, input_activation=activation, scale=a_out)
    nodes.append(Node(names[-1], out_dim, {names[-2]: last}, cell=output_cell if output_cell is not None else cell))
    return PCNetwork(nodes)


@dataclass(frozen=True)
class Node:
    """A value node: ``name``, ``dim`` units (or an image shape), its input transforms and its error cell.

    Args:
        name: unique name (states, clamps and parameters are keyed by it).
        dim: number of units, or a shape such as ``(H, W, C)`` for an image-shaped state
            ``(batch, H, W, C)`` (NHWC, fed by the transforms of :mod:`predcode.models.conv`). The
            cell scores the state flattened to ``(batch, H * W * C)``.
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
    dim: Any
    inputs: Mapping[str, Transform] = field(default_factory=dict)
    cell: Cell | None = None
    sigma_init: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise NetworkError(f"Node.name: expected a non-empty string, got {self.name!r}")
        shape = shape_of(self.dim, f"node {self.name!r}: dim")
        object.__setattr__(self, "dim", shape[0] if isinstance(self.dim, (int, np.integer)) else shape)
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
    def shape(self) -> tuple[int, ...]:
        """The state's shape without the batch axis: ``(dim,)`` or the image shape."""
        return shape_of(self.dim)

    @property
    def size(self) -> int:
        """The number of units: ``dim``, or the product of the shape."""
        return math.prod(self.shape)

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
        kind, n, where = self.cell.covariance, self.size, f"node {self.name!r}: sigma_init"
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
        """Per-sample energy ``(batch,)`` of ``target`` under this node's cell given ``mu``.

        An image-shaped state is scored flattened: ``(batch, H, W, C)`` as ``(batch, H * W * C)``
        (``mu`` and ``mask`` broadcast to the state's shape first)."""
        cell = self.effective_cell
        if jnp.ndim(target) > 2:
            full = jnp.shape(target)
            flat = lambda a: jnp.broadcast_to(a, full).reshape(full[0], -1)
            target, mu = flat(target), flat(mu)
            mask = None if mask is None else flat(mask)
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
                if shape_of(transform.in_dim) != seen[parent].shape:
                    raise NetworkError(
                        f"node {node.name!r}: the transform from {parent!r} takes "
                        f"{_size_words(transform.in_dim, seen[parent].dim)} but node {parent!r} has "
                        f"{_size_words(seen[parent].dim, transform.in_dim, bare=True)}"
                    )
                if shape_of(transform.out_dim) != node.shape:
                    raise NetworkError(
                        f"node {node.name!r}: the transform from {parent!r} gives "
                        f"{_size_words(transform.out_dim, node.dim)} but node {node.name!r} has "
                        f"{_size_words(node.dim, transform.out_dim, bare=True)}"
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
        weight_init: str = "normal",
    ) -> PCNetwork:
        """A stack ``dims[0] -> dims[1] -> ... -> dims[-1]`` of :class:`Dense` transforms.

        Hidden nodes use ``activation`` and ``cell``; the last node ``output_activation`` and
        ``output_cell`` (default: ``cell``); the root gets ``root_cell`` (default none: no prior).
        Names default to ``x0, x1, ...``. For supervised PC the root is the image and the last node
        the label; for generative PC the root is the code and the last node the image.
        ``weight_init`` is every Dense's (``"normal"`` or ``"uniform"``, :func:`initial_weights`).
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
                    {names[i - 1]: Dense(dims[i - 1], dims[i], act, bias, weight_init=weight_init)},
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
        parts = [
            f"{n.name}({n.dim if isinstance(n.dim, int) else 'x'.join(map(str, n.dim))}"
            + (" <- " + ", ".join(n.inputs) if n.inputs else "")
            + ")"
            for n in self.nodes
        ]
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
        return jnp.exp(p["log_var"]) * jnp.eye(node.size)

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
        """Validate clamps (known nodes, ``(batch, dim)`` or ``(batch, *shape)`` shapes, one batch size);
        return the batch size."""
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
            want = self.by_name[name].shape
            shape = tuple(jnp.shape(value))
            if len(shape) != 1 + len(want) or shape[1:] != want:
                expected = "(batch, " + ", ".join(map(str, want)) + ")"
                raise NetworkError(f"clamp on node {name!r}: expected shape {expected}, got {shape}")
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
                states[node.name] = jnp.zeros((batch, *node.shape))
        return states


def _size_words(dim: Any, other: Any, *, bare: bool = False) -> str:
    """``"784 units"``/``"784"`` when both sides are flat (the words of flat networks), else the shape."""
    if len(shape_of(dim)) == 1 and len(shape_of(other)) == 1:
        n = shape_of(dim)[0]
        return str(n) if bare else f"{n} units"
    return describe_shape(dim)


def _network_batch(batch: Any) -> tuple[Mapping[str, Array], Mapping[str, Array] | None]:
    """``(clamps, masks)`` from a network batch: the clamps dict alone or ``(clamps, masks)``."""
    if isinstance(batch, (tuple, list)):
        clamps, masks = (*batch, None)[:2]
        return clamps, masks
    return batch, None
