"""A feedforward multilayer perceptron: the network the credit-assignment rules are compared on.

Layer ``l = 1..L`` computes ``z_l = W_l h_{l-1} + b_l`` and ``h_l = f(z_l)`` with ``h_0 = x``; the
output ``z_L`` is linear (no output nonlinearity) and the loss is either softmax cross-entropy on
the logits (``loss="cross_entropy"``, labels as integers or one-hot rows) or the squared error
``1/2 ||z_L - y||^2`` (``loss="squared_error"``), both averaged over the batch. Weights are stored
``W_l: (n_out, n_in)`` so that a batch ``h: (batch, n_in)`` maps to ``h @ W_l.T + b_l``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from predcode.activations import Activation, get_activation
from predcode.schema import MAX_DIM, MAX_LAYERS
from predcode.validation import check_array, check_batch, check_key, is_traced

Array = jax.Array

LOSSES = ("cross_entropy", "squared_error")


class Layer(NamedTuple):
    """One affine layer: ``W: (n_out, n_in)``, ``b: (n_out,)``."""

    W: Array
    b: Array


MLPParams = tuple[Layer, ...]


class Forward(NamedTuple):
    """The forward pass of a batch: pre-activations ``z[l]`` and activations ``h[l]``.

    ``h[0]`` is the input; ``z[l]``/``h[l]`` for ``l = 1..L`` are layer ``l``'s (``z[0]`` is the
    input too, so indices line up with the layers); ``h[L] == z[L]`` is the linear output.
    """

    z: tuple[Array, ...]
    h: tuple[Array, ...]

    @property
    def output(self) -> Array:
        """The linear output ``z[L]`` of the last layer, ``(batch, n_out)``."""
        return self.z[-1]


@dataclass(frozen=True)
class MLP:
    """An immutable MLP description.

    Args:
        sizes: layer widths, input first and output last, e.g. ``(784, 256, 256, 10)``.
        activation: hidden nonlinearity, a name from :data:`predcode.activations.ACTIVATIONS`.
        loss: ``"cross_entropy"`` (softmax on the linear output) or ``"squared_error"``.

    >>> net = MLP((2, 100, 1), activation="relu", loss="squared_error")
    >>> params = net.init(jax.random.key(0))
    >>> net.apply(params, jnp.zeros((5, 2))).shape
    (5, 1)
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes) if isinstance(self.sizes, (list, tuple)) else self.sizes
        if (
            not isinstance(sizes, tuple)
            or not 2 <= len(sizes) <= MAX_LAYERS
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_DIM for n in sizes)
        ):
            raise ValueError(
                f"sizes: expected at least two positive integer layer widths (input, ..., output; at most "
                f"{MAX_LAYERS} widths, each <= {MAX_DIM}), e.g. (784, 256, 10); got {self.sizes!r}"
            )
        object.__setattr__(self, "sizes", sizes)
        get_activation(self.activation, parameter="activation")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {self.loss!r}")

    @property
    def n_layers(self) -> int:
        """Number of weight layers ``L`` (hidden layers + 1)."""
        return len(self.sizes) - 1

    @property
    def act(self) -> Activation:
        """The hidden nonlinearity with its derivative."""
        return get_activation(self.activation)

    def init(self, key: Array, *, bias: float = 0.0) -> MLPParams:
        """He (ReLU) or Glorot (other activations) uniform weights, biases ``bias``."""
        check_key(key)
        keys = jax.random.split(key, self.n_layers)
        layers = []
        for k, n_in, n_out in zip(keys, self.sizes[:-1], self.sizes[1:]):
            relu = self.activation == "relu"
            limit = math.sqrt(6.0 / n_in) if relu else math.sqrt(6.0 / (n_in + n_out))
            W = jax.random.uniform(k, (n_out, n_in), jnp.float32, -limit, limit)
            layers.append(Layer(W, jnp.full((n_out,), bias, jnp.float32)))
        return tuple(layers)

    def check_params(self, params: MLPParams, *, parameter: str = "params") -> None:
        """Raise ValueError unless ``params`` has one ``Layer(W, b)`` of the right shape per layer."""
        if not isinstance(params, (tuple, list)) or len(params) != self.n_layers:
            got = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
            raise ValueError(f"{parameter}: expected {self.n_layers} layers for sizes {self.sizes}, got {got}")
        for l, (layer, n_in, n_out) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:]), 1):
            W, b = layer
            if tuple(W.shape) != (n_out, n_in) or tuple(b.shape) != (n_out,):
                raise ValueError(
                    f"{parameter}: layer {l} expected W {(n_out, n_in)} and b {(n_out,)} for sizes "
                    f"{self.sizes}, got W {tuple(W.shape)} and b {tuple(b.shape)}"
                )

    def check_data(self, x: Any, y: Any) -> None:
        """Raise ValueError unless ``(x, y)`` is a batch this network trains on.

        ``x``: ``(batch, sizes[0])`` floats, at least one row, finite. ``y``: one target per row,
        for cross-entropy integer class labels in ``[0, sizes[-1])`` (``(batch,)``) or rows of
        ``sizes[-1]`` class probabilities, for the squared error ``(batch, sizes[-1])`` numbers.
        Shapes are checked always (also under ``jit``), values only for concrete arrays.
        """
        n_out = self.sizes[-1]
        x = check_array(x, "x", shape=(None, self.sizes[0]), fix=f"Pass one input of {self.sizes[0]} values a row")
        n = x.shape[0]
        check_batch(n, "x")
        dt = getattr(y, "dtype", None)
        if dt is None or not hasattr(y, "shape"):
            if not isinstance(y, (list, tuple)):
                raise ValueError(f"y: expected an array of {n} targets (one per row of x), got {type(y).__name__}")
            y = np.asarray(y)
            dt = y.dtype
        shape = tuple(y.shape)
        labels = self.loss == "cross_entropy" and len(shape) == 1
        want = f"({n},) class labels or ({n}, {n_out}) rows" if self.loss == "cross_entropy" else f"({n}, {n_out})"
        if (
            (len(shape) not in (1, 2))
            or shape[0] != n
            or (len(shape) == 2 and shape[1] != n_out)
            or (len(shape) == 1 and not labels)
        ):
            raise ValueError(f"y: expected shape {want} (one target per row of x), got shape {shape}")
        if labels:
            if not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
                raise ValueError(f"y: expected integer class labels in [0, {n_out - 1}], got dtype {dt}")
            if is_traced(y):
                if not jnp.issubdtype(dt, jnp.integer):
                    raise ValueError(f"y: expected integer class labels in [0, {n_out - 1}], got dtype {dt}")
                return
            v = np.asarray(y)
            bad = ~np.isfinite(v) | (v != np.round(v)) if v.dtype.kind == "f" else np.zeros(v.shape, bool)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"y: expected integer class labels in [0, {n_out - 1}], got {v[i].item()!r} at index {i} "
                    f"({int(bad.sum())} non-integer label(s)). Pass the class indices as integers"
                )
            out = (v < 0) | (v >= n_out)
            if out.any():
                i = int(np.argmax(out))
                raise ValueError(
                    f"y: expected class labels in [0, {n_out - 1}] for {n_out} outputs (sizes[-1]), got "
                    f"{v[i].item()!r} at index {i} ({int(out.sum())} label(s) out of range)"
                )
            return
        check_array(y, "y", shape=(n, n_out), fix=f"Pass one target row of {n_out} values per row of x")

    def forward(self, params: MLPParams, x: Array) -> Forward:
        """Run ``x: (batch, sizes[0])`` through the network, keeping every ``z`` and ``h``."""
        f = self.act.fn
        z, h = [x], [x]
        for l, (W, b) in enumerate(params, 1):
            z_l = h[-1] @ W.T + b
            z.append(z_l)
            h.append(z_l if l == self.n_layers else f(z_l))
        return Forward(tuple(z), tuple(h))

    def apply(self, params: MLPParams, x: Array) -> Array:
        """The network's output ``z_L: (batch, sizes[-1])``."""
        return self.forward(params, x).output

    def targets(self, y: Array) -> Array:
        """Integer labels ``(batch,)`` to one-hot rows for cross-entropy; other targets unchanged."""
        if self.loss == "cross_entropy" and y.ndim == 1:
            y = y if jnp.issubdtype(y.dtype, jnp.integer) else y.astype(jnp.int32)  # 2.0: class 2
            return jax.nn.one_hot(y, self.sizes[-1], dtype=jnp.float32)
        return y

    def output_loss(self, output: Array, y: Array) -> Array:
        """Batch-mean loss of the linear output ``(batch, n_out)`` against targets ``y``."""
        y = self.targets(y)
        if self.loss == "cross_entropy":
            return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(output), axis=-1))
        return 0.5 * jnp.mean(jnp.sum((output - y) ** 2, axis=-1))

    def loss_fn(self, params: MLPParams, x: Array, y: Array) -> Array:
        """Batch-mean loss of the network on ``(x, y)``."""
        return self.output_loss(self.apply(params, x), y)

    def accuracy(self, params: MLPParams, x: Array, labels: Array) -> Array:
        """Fraction of rows whose largest output is the label."""
        return jnp.mean(jnp.argmax(self.apply(params, x), axis=-1) == labels)
