"""Convolutional transforms for :class:`~predcode.models.network.PCNetwork`: image-shaped states (NHWC).

Each is a frozen dataclass with the :class:`~predcode.models.network.Transform` protocol: ``in_dim``
is the parent's shape ``(H, W, C)``, ``out_dim`` the shape it gives (computed, so a network is
checked where it is built: a mismatch names both nodes and both shapes), ``init(key)`` its
parameters and ``__call__(params, x)`` the map of a batch ``(N, H, W, C)``.

* :class:`Conv2d`: ``act(conv(in_act(x), w) + b)`` through :func:`jax.lax.conv_general_dilated`,
  weights ``w: (kh, kw, C_in, C_out)`` (HWIO);
* :class:`ConvTranspose2d`: the transposed (fractionally strided) convolution, through
  :func:`jax.lax.conv_transpose`: every input pixel scatters ``x[i, j] @ w[a, b]`` to output pixel
  ``(i * stride + a, j * stride + b)`` (``"VALID"``: output ``(H - 1) * stride + k``; ``"SAME"``:
  ``H * stride``), the top-down map of a generative (deconvolutional) network;
* :class:`MaxPool2d`, :class:`AvgPool2d`: :func:`jax.lax.reduce_window` (no parameters);
* :class:`Flatten` ``(H, W, C) -> H * W * C`` and :class:`Reshape` (any shape to any of the same size).

A discriminative network (image clamped at the root, label at the leaf)::

    net = PCNetwork([
        Node("x", (28, 28, 1)),
        Node("h1", (14, 14, 32), {"x": Sequential((Conv2d((28, 28, 1), 32, activation="relu"),
                                                  MaxPool2d((28, 28, 32))))}),
        Node("h2", 128, {"h1": Sequential((Flatten((14, 14, 32)), Dense(14 * 14 * 32, 128, "relu")))}),
        Node("y", 10, {"h2": Dense(128, 10)}),
    ])

and a generative one, a code predicting the image through transposed convolutions::

    net = PCNetwork([
        Node("z", 64, cell=GaussianErrorCell()),
        Node("h", (7, 7, 16), {"z": Sequential((Dense(64, 784, "relu"), Reshape(784, (7, 7, 16))))}),
        Node("x", (28, 28, 1), {"h": Sequential((ConvTranspose2d((7, 7, 16), 8, 4, 2, "SAME", "relu"),
                                                 ConvTranspose2d((14, 14, 8), 1, 4, 2, "SAME", "sigmoid")))}),
    ])

The energy, inference, the trainer, clamps, trials, data parallelism and checkpoints are the
network's own: nothing there depends on a state being flat (cells score it flattened).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from predcode.activations import get_activation
from predcode.models.network import NetworkError, check_weight_init, describe_shape, initial_weights, shape_of

Array = jax.Array

__all__ = ["AvgPool2d", "Conv2d", "ConvTranspose2d", "Flatten", "MaxPool2d", "Reshape"]

_DIMS = ("NHWC", "HWIO", "NHWC")


def _pair(value: Any, what: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2)`` as it is; anything else an error naming ``what``."""
    items = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if (
        not isinstance(items, (tuple, list))
        or len(items) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items)
    ):
        raise NetworkError(f"{what}: expected an integer >= 1 or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _image_shape(value: Any, what: str) -> tuple[int, int, int]:
    shape = shape_of(value, what)
    if len(shape) != 3:
        raise NetworkError(f"{what}: expected an image shape (H, W, C), got {value!r}")
    return shape[0], shape[1], shape[2]


def _padding(value: Any, what: str, *, explicit: bool = True) -> Any:
    """``"SAME"``/``"VALID"``, an int ``p`` (``p`` pixels each side) or ``((top, bottom), (left, right))``."""
    if isinstance(value, str):
        if value.upper() in ("SAME", "VALID"):
            return value.upper()
    elif explicit and isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return ((int(value), int(value)), (int(value), int(value)))
    elif (
        explicit
        and isinstance(value, (tuple, list))
        and len(value) == 2
        and all(
            isinstance(p, (tuple, list))
            and len(p) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in p)
            for p in value
        )
    ):
        return tuple((int(p[0]), int(p[1])) for p in value)
    choices = '"SAME", "VALID", an int >= 0 or ((top, bottom), (left, right))' if explicit else '"SAME" or "VALID"'
    raise NetworkError(f"{what}: expected {choices}, got {value!r}")


def _out_shape(transform: Any, params: Any) -> tuple[int, ...]:
    """The transform's output shape for one sample, by abstract evaluation (nothing is computed)."""
    x = jax.ShapeDtypeStruct((1, *shape_of(transform.in_dim)), jnp.float32)
    return tuple(jax.eval_shape(transform, params, x).shape[1:])


def _check_activations(owner: str, activation: str, input_activation: str) -> None:
    get_activation(activation, parameter=f"{owner}.activation")
    get_activation(input_activation, parameter=f"{owner}.input_activation")


def _check_out(owner: str, in_dim: Any, out: tuple[int, ...]) -> tuple[int, ...]:
    if any(n < 1 for n in out):
        raise NetworkError(f"{owner}: the input of {describe_shape(in_dim)} is too small for the window: got {out}")
    return out


def _kernel_weights(t: Any, key: Array, fan_in: float) -> dict[str, Array]:
    """A (transposed) convolution's ``{"w": (kh, kw, C_in, C_out)}`` plus ``{"b": (C_out,)}``."""
    kh, kw = t.kernel_size
    return initial_weights(
        key,
        (kh, kw, t.in_dim[2], t.out_channels),
        fan_in,
        weight_init=t.weight_init,
        gain=math.sqrt(2.0) if t.activation == "relu" else 1.0,
        init_scale=t.init_scale,
        bias=t.out_channels if t.bias else None,
    )


@dataclass(frozen=True)
class Conv2d:
    """``act(conv(in_act(x), w) + b)``: a 2-D convolution (cross-correlation, as in every deep-learning
    library) of an ``(H, W, C_in)`` state to ``out_channels`` channels.

    Args:
        in_dim: the input shape ``(H, W, C_in)``.
        out_channels: ``C_out``.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``.
        padding: ``"SAME"`` (output ``ceil(H / s)``), ``"VALID"``, ``p`` pixels of zeros each side or
            ``((top, bottom), (left, right))``.
        activation: applied to the output (``"relu"``, ``"gelu"``, ...); ``input_activation`` to the
            input first.
        bias: a per-channel bias ``b: (C_out,)``.
        init_scale: the weights' standard deviation; default ``gain / sqrt(kh * kw * C_in)``
            (``gain = sqrt(2)`` for ReLU, else 1).
        weight_init: ``"normal"`` (the above, bias 0) or ``"uniform"`` (weights and bias uniform in
            ``+-1 / sqrt(kh * kw * C_in)``, PyTorch's and equinox's default;
            :func:`predcode.models.network.initial_weights`).
    """

    in_dim: Any
    out_channels: int
    kernel_size: Any = 3
    stride: Any = 1
    padding: Any = "SAME"
    activation: str = "identity"
    bias: bool = True
    init_scale: float | None = None
    input_activation: str = "identity"
    weight_init: str = "normal"
    out_dim: tuple[int, int, int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_dim", _image_shape(self.in_dim, "Conv2d.in_dim"))
        if isinstance(self.out_channels, bool) or not isinstance(self.out_channels, (int, np.integer)):
            raise NetworkError(f"Conv2d.out_channels: expected an integer >= 1, got {self.out_channels!r}")
        shape_of(self.out_channels, "Conv2d.out_channels")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "Conv2d.kernel_size"))
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d.stride"))
        object.__setattr__(self, "padding", _padding(self.padding, "Conv2d.padding"))
        _check_activations("Conv2d", self.activation, self.input_activation)
        if self.init_scale is not None and not self.init_scale > 0:
            raise NetworkError(f"Conv2d.init_scale: expected a number > 0 or None, got {self.init_scale!r}")
        check_weight_init(self.weight_init, "Conv2d.weight_init")
        object.__setattr__(self, "out_dim", _check_out("Conv2d", self.in_dim, _out_shape(self, self._shapes())))

    def _shapes(self) -> dict[str, Any]:
        kh, kw = self.kernel_size
        shapes = {"w": jax.ShapeDtypeStruct((kh, kw, self.in_dim[2], self.out_channels), jnp.float32)}
        if self.bias:
            shapes["b"] = jax.ShapeDtypeStruct((self.out_channels,), jnp.float32)
        return shapes

    def init(self, key: Array) -> dict[str, Array]:
        """``{"w": (kh, kw, C_in, C_out)}`` plus ``{"b": (C_out,)}`` with a bias (zeros)."""
        kh, kw = self.kernel_size
        return _kernel_weights(self, key, kh * kw * self.in_dim[2])

    def __call__(self, params: Mapping[str, Array], x: Array) -> Array:
        if self.input_activation != "identity":
            x = get_activation(self.input_activation).fn(x)
        z = lax.conv_general_dilated(x, params["w"], self.stride, self.padding, dimension_numbers=_DIMS)
        if self.bias:
            z = z + params["b"]
        return get_activation(self.activation).fn(z)


@dataclass(frozen=True)
class ConvTranspose2d:
    """``act(conv_transpose(in_act(x), w) + b)``: the transposed convolution, ``(H, W, C_in)`` to
    ``out_channels`` channels on a grid ``stride`` times finer.

    Every input pixel ``(i, j)`` adds ``x[i, j] @ w[a, b]`` to output pixel ``(i * sh + a, j * sw + b)``
    (``w: (kh, kw, C_in, C_out)``); ``"VALID"`` keeps the whole scatter, ``((H - 1) * sh + kh, ...)``,
    ``"SAME"`` its centre, ``(H * sh, W * sw)``. Arguments as :class:`Conv2d` (``padding`` is
    ``"SAME"`` or ``"VALID"``); the default scale is ``gain / sqrt(kh * kw * C_in / (sh * sw))``, the
    number of terms an output pixel sums.
    """

    in_dim: Any
    out_channels: int
    kernel_size: Any = 3
    stride: Any = 1
    padding: str = "SAME"
    activation: str = "identity"
    bias: bool = True
    init_scale: float | None = None
    input_activation: str = "identity"
    weight_init: str = "normal"
    out_dim: tuple[int, int, int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_dim", _image_shape(self.in_dim, "ConvTranspose2d.in_dim"))
        if isinstance(self.out_channels, bool) or not isinstance(self.out_channels, (int, np.integer)):
            raise NetworkError(f"ConvTranspose2d.out_channels: expected an integer >= 1, got {self.out_channels!r}")
        shape_of(self.out_channels, "ConvTranspose2d.out_channels")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "ConvTranspose2d.kernel_size"))
        object.__setattr__(self, "stride", _pair(self.stride, "ConvTranspose2d.stride"))
        object.__setattr__(self, "padding", _padding(self.padding, "ConvTranspose2d.padding", explicit=False))
        _check_activations("ConvTranspose2d", self.activation, self.input_activation)
        if self.init_scale is not None and not self.init_scale > 0:
            raise NetworkError(f"ConvTranspose2d.init_scale: expected a number > 0 or None, got {self.init_scale!r}")
        check_weight_init(self.weight_init, "ConvTranspose2d.weight_init")
        object.__setattr__(self, "out_dim", _out_shape(self, self._shapes()))

    def _shapes(self) -> dict[str, Any]:
        kh, kw = self.kernel_size
        shapes = {"w": jax.ShapeDtypeStruct((kh, kw, self.in_dim[2], self.out_channels), jnp.float32)}
        if self.bias:
            shapes["b"] = jax.ShapeDtypeStruct((self.out_channels,), jnp.float32)
        return shapes

    def init(self, key: Array) -> dict[str, Array]:
        """``{"w": (kh, kw, C_in, C_out)}`` plus ``{"b": (C_out,)}`` with a bias (zeros)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return _kernel_weights(self, key, max(1.0, kh * kw * self.in_dim[2] / (sh * sw)))

    def __call__(self, params: Mapping[str, Array], x: Array) -> Array:
        if self.input_activation != "identity":
            x = get_activation(self.input_activation).fn(x)
        # lax.conv_transpose (transpose_kernel=False) correlates the dilated input with the kernel as
        # given; flipping it spatially makes the map the scatter described above.
        # "VALID" is the whole scatter: k - 1 zeros each side of the dilated input (lax's own "VALID"
        # adds max(k - s, 0) in all instead, which differs when the stride exceeds the kernel).
        w = params["w"][::-1, ::-1]
        (kh, kw) = self.kernel_size
        pad = ((kh - 1, kh - 1), (kw - 1, kw - 1)) if self.padding == "VALID" else self.padding
        z = lax.conv_transpose(x, w, self.stride, pad, dimension_numbers=_DIMS)
        if self.bias:
            z = z + params["b"]
        return get_activation(self.activation).fn(z)


@dataclass(frozen=True)
class _Pool:
    in_dim: Any
    window: Any = 2
    stride: Any = None
    padding: str = "VALID"
    out_dim: tuple[int, int, int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "in_dim", _image_shape(self.in_dim, f"{owner}.in_dim"))
        object.__setattr__(self, "window", _pair(self.window, f"{owner}.window"))
        stride = self.window if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, f"{owner}.stride"))
        object.__setattr__(self, "padding", _padding(self.padding, f"{owner}.padding", explicit=False))
        object.__setattr__(self, "out_dim", _check_out(owner, self.in_dim, _out_shape(self, {})))

    def init(self, key: Array) -> dict[str, Array]:
        """No parameters: ``{}``."""
        return {}

    def _reduce(self, x: Array, init: Any, op: Any) -> Array:
        (wh, ww), (sh, sw) = self.window, self.stride
        return lax.reduce_window(x, init, op, (1, wh, ww, 1), (1, sh, sw, 1), self.padding)


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """The maximum over each ``window`` (default 2 x 2) moved by ``stride`` (default: the window), per
    channel; ``padding`` ``"VALID"`` (default) or ``"SAME"`` (pads with -inf)."""

    def __call__(self, params: Any, x: Array) -> Array:
        return self._reduce(x, -jnp.inf, lax.max)


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """The mean over each ``window`` (default 2 x 2) moved by ``stride`` (default: the window), per
    channel; with ``padding="SAME"`` the mean is over the window's pixels inside the image."""

    def __call__(self, params: Any, x: Array) -> Array:
        total = self._reduce(x, 0.0, lax.add)
        if self.padding == "VALID":
            return total / (self.window[0] * self.window[1])
        ones = jnp.ones((1, *self.in_dim[:2], 1), x.dtype)
        return total / self._reduce(ones, 0.0, lax.add)


@dataclass(frozen=True)
class Reshape:
    """A state of shape ``in_dim`` as one of shape ``out_dim`` (same number of units, row-major):
    e.g. ``Reshape(784, (28, 28, 1))`` from a dense layer to an image. No parameters."""

    in_dim: Any
    out_dim: Any

    def __post_init__(self) -> None:
        owner = type(self).__name__
        src = shape_of(self.in_dim, f"{owner}.in_dim")
        dst = shape_of(self.out_dim, f"{owner}.out_dim")
        if math.prod(src) != math.prod(dst):
            raise NetworkError(
                f"{owner}: in_dim {src} has {math.prod(src)} units but out_dim {dst} has {math.prod(dst)}"
            )

    def init(self, key: Array) -> dict[str, Array]:
        """No parameters: ``{}``."""
        return {}

    def __call__(self, params: Any, x: Array) -> Array:
        return jnp.reshape(x, (x.shape[0], *shape_of(self.out_dim)))


@dataclass(frozen=True)
class Flatten(Reshape):
    """``(H, W, C) -> H * W * C`` (row-major, as ``x.reshape(N, -1)``), e.g. before a :class:`Dense` head."""

    in_dim: Any
    out_dim: Any = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dim", math.prod(shape_of(self.in_dim, "Flatten.in_dim")))
        super().__post_init__()
