"""The PC-network family: a ``[network]`` table (a chain of Dense transforms and value nodes) and ``[inference]``.

Keys (docs/config.md)::

    out_dir = "runs/pc_supervised"
    [network]    task ("supervised" | "generative"), dims, names, activation, output_activation,
                 bias, weight_init ("normal" | "uniform"), cell, covariance, sigma, output_cell,
                 output_covariance, output_sigma,
                 root_cell, root_sigma, hidden ("nodes": inferred value nodes; "transform": the
                 hidden layers are one transform from the first node to the last),
                 conv_channels, conv_kernel, conv_padding, pool, pool_size, image_shape
                 (convolutional blocks between the image and dims[1], task = "supervised"),
                 residual, param ("standard" | "mupc": residual_mlp's muPC multipliers)
    [inference]  T, optimizer ("sgd" | "momentum" | "adam" | "adaptive_heun"), learning_rate, momentum,
                 T_eval, rtol, atol (of adaptive_heun), algorithm ("pc" | "ipc"),
                 nudge ("none" | "positive" | "negative" | "centred"), beta, unroll (steps per loop iteration)
    [optimizer]  name ("adam" | "adamw" | "sgd"), learning_rate, eps, weight_decay, schedule
    [data]       dataset, n_train, n_val, binarize, normalize ("none" | "symmetric" | "standardize")
    [train]      batch_size, eval_batch_size, epochs, seed, test_every_epoch (PCX's protocol, reported beside)

``task = "supervised"`` clamps the image at the first node and the one-hot label at the last
(Whittington & Bogacz 2017); ``task = "generative"`` clamps the image at the last node and infers
the first (the code). Cells are ``"gaussian"`` (``covariance`` fixed, scalar, diagonal or full;
``sigma`` the fixed variance or the learnable one's start), ``"laplacian"`` (``sigma`` is the
scale b), ``"bernoulli"`` or ``"categorical"`` (softmax cross-entropy on logits, PCX's PC-CE);
``root_cell`` ``"none"`` leaves the code without a prior. The shipped
examples are ``configs/pc/mnist_supervised.toml`` and ``configs/pc/mnist_generative.toml``.

``conv_channels = [32, 64]`` (supervised only) puts convolutional blocks between the image, clamped
as an ``image_shape`` (default ``[28, 28, 1]``) state, and ``dims[1]``: block ``i`` is
``pool(act(Conv2d(conv_kernel, conv_padding)))`` (``pool`` ``"max"``, ``"avg"`` or ``"none"``,
window and stride ``pool_size``) into an image-shaped node ``c{i}`` (or, with ``hidden =
"transform"``, part of the one transform); the last block is flattened into the Dense layers of
``dims``, whose first size stays the image's (784). ``configs/pc/fashion_mnist_conv.toml``.
"""

# ruff: noqa: RUF009 (sections.table returns a dataclasses.field, as setting does)
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import optax

from predcode.activations import ACTIVATIONS
from predcode.cells import (
    COVARIANCE_KINDS,
    BernoulliErrorCell,
    CategoricalErrorCell,
    GaussianErrorCell,
    LaplacianErrorCell,
)
from predcode.dynamics.adaptive import AdaptiveHeun
from predcode.experiments.config.sections import (
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    check_tables,
    run_folder,
    table,
)
from predcode.models.conv import AvgPool2d, Conv2d, Flatten, MaxPool2d
from predcode.models.network import (
    PARAMETERISATIONS,
    WEIGHT_INITS,
    Dense,
    NetworkError,
    Node,
    PCNetwork,
    Sequential,
    residual_mlp,
)
from predcode.schema import MAX_DIM, MAX_STEPS, ConfigError, bad, setting, validate

__all__ = ["InferenceSection", "NetworkSection", "PCFitConfig", "build_network"]

CELLS = ("gaussian", "laplacian", "bernoulli", "categorical")
_ACTS = tuple(ACTIVATIONS)


def _cell_kind(default: str, help: str, *, root: bool = False) -> Any:
    return setting(default, "str", choices=CELLS + (("none",) if root else ()), help=help, resume="history")


def _sigma(
    help: str = "the fixed variance of a Gaussian cell, the start of a learned one, or a Laplacian's scale",
) -> Any:
    return setting(1.0, "float", low=0, open_low=True, help=help, resume="history")


@dataclass(frozen=True)
class NetworkSection:
    """The network: a chain of Dense transforms and value nodes with their error cells."""

    SECTION: ClassVar[str] = "network"

    task: str = setting(
        "supervised",
        "str",
        choices=("supervised", "generative"),
        help="clamp image and label, or infer a code for the image",
        resume="history",
    )
    dims: tuple[int, ...] = setting(
        (784, 256, 256, 10),
        "ints",
        min_len=2,
        high=MAX_DIM,
        help="node sizes from the first to the last",
        resume="history",
    )
    names: tuple[str, ...] | None = setting(
        None, "strs", optional=True, help="one distinct name per node", resume="history"
    )
    activation: str = setting("relu", "str", choices=_ACTS, help="the hidden transforms' activation", resume="history")
    output_activation: str = setting(
        "identity", "str", choices=_ACTS, help="the last transform's activation", resume="history"
    )
    bias: bool = setting(True, "bool", help="Dense transforms with a bias", resume="history")
    weight_init: str = setting(
        "normal",
        "str",
        choices=WEIGHT_INITS,
        help='"normal": N(0, gain^2 / fan_in), bias 0; "uniform": weights and bias in +-1/sqrt(fan_in) '
        "(PyTorch's and equinox's default, PCX's layers)",
        resume="history",
    )
    cell: str = _cell_kind("gaussian", "the hidden nodes' error cell")
    covariance: str = setting(
        "fixed", "str", choices=COVARIANCE_KINDS, help="a Gaussian cell's covariance", resume="history"
    )
    sigma: float = _sigma()
    output_cell: str = _cell_kind("gaussian", "the last node's error cell")
    output_covariance: str = setting(
        "fixed", "str", choices=COVARIANCE_KINDS, help="the last node's Gaussian covariance", resume="history"
    )
    output_sigma: float = _sigma()
    root_cell: str = _cell_kind("none", "the first node's prior; none: no prior", root=True)
    root_sigma: float = _sigma()
    hidden: str = setting(
        "nodes",
        "str",
        choices=("nodes", "transform"),
        help='"nodes": inferred value nodes; "transform": the hidden layers are one transform',
        resume="history",
    )
    conv_channels: tuple[int, ...] | None = setting(
        None,
        "ints",
        optional=True,
        high=MAX_DIM,
        none_means="no convolutional blocks",
        help="the channels of each convolutional block between the image and dims[1]",
        resume="history",
    )
    conv_kernel: int = setting(3, "int", low=1, high=MAX_DIM, help="the blocks' square kernel size", resume="history")
    conv_padding: str = setting(
        "same", "str", choices=("same", "valid"), help="the blocks' convolution padding", resume="history"
    )
    pool: str = setting(
        "max", "str", choices=("max", "avg", "none"), help="the pooling after each block's activation", resume="history"
    )
    pool_size: int = setting(2, "int", low=1, high=MAX_DIM, help="the pooling window and stride", resume="history")
    image_shape: tuple[int, ...] = setting(
        (28, 28, 1),
        "ints",
        min_len=3,
        high=MAX_DIM,
        help="the image as (height, width, channels) for the blocks",
        resume="history",
    )
    residual: bool = setting(
        False, "bool", help="identity skips around the hidden-to-hidden transforms (a residual MLP)", resume="history"
    )
    param: str = setting(
        "standard",
        "str",
        choices=PARAMETERISATIONS,
        help='"mupc": muPC\'s width- and depth-dependent multipliers and N(0, 1) weights (residual_mlp)',
        resume="history",
    )

    def __post_init__(self) -> None:
        validate(self)
        if len(self.image_shape) != 3:
            raise bad("network.image_shape", "three sizes [height, width, channels]", list(self.image_shape))
        if self.conv_channels is not None:
            if self.task != "supervised":
                raise bad(
                    "network.conv_channels",
                    'none for task = "generative" (convolutional blocks in a config are supervised; '
                    "build a generative conv network in Python with predcode.models.conv)",
                    list(self.conv_channels),
                )
            if self.dims[0] != self.image_shape[0] * self.image_shape[1] * self.image_shape[2]:
                raise bad(
                    "network.dims",
                    f"the first size to be the image's {self.image_shape[0]}*{self.image_shape[1]}*"
                    f"{self.image_shape[2]} units (network.image_shape)",
                    self.dims[0],
                )
        n_conv = len(self.conv_channels or ())
        n_nodes = 2 if self.hidden == "transform" else len(self.dims) + n_conv
        if self.residual or self.param != "standard":
            if self.conv_channels is not None:
                raise bad(
                    "network.conv_channels",
                    "none for a residual or muPC network (residual_mlp is dense)",
                    list(self.conv_channels),
                )
            if self.hidden != "nodes":
                raise bad("network.hidden", '"nodes" for a residual or muPC network', self.hidden)
            if self.weight_init != "normal":
                raise bad(
                    "network.weight_init",
                    '"normal" for a residual or muPC network (residual_mlp draws its own weights)',
                    self.weight_init,
                )
            if len(self.dims) < 3 or len(set(self.dims[1:-1])) != 1:
                raise bad(
                    "network.dims",
                    "hidden sizes all equal (the width) for a residual or muPC network",
                    list(self.dims),
                )
            if self.output_activation != "identity" or self.covariance != "fixed" or self.output_covariance != "fixed":
                raise bad(
                    "network",
                    "output_activation = identity and fixed covariances for a residual or muPC network",
                    {
                        "output_activation": self.output_activation,
                        "covariance": self.covariance,
                        "output_covariance": self.output_covariance,
                    },
                )
        if self.names is not None and (len(self.names) != n_nodes or len(set(self.names)) != n_nodes):
            raise bad(
                "network.names",
                f"{n_nodes} distinct names (one per node; hidden = {self.hidden!r})",
                list(self.names),
            )

    @property
    def node_names(self) -> tuple[str, ...]:
        """``names``, else ``x, h1, ..., y`` (supervised) or ``z, h1, ..., x`` (generative)."""
        if self.names is not None:
            return self.names
        hidden = [] if self.hidden == "transform" else [f"h{i}" for i in range(1, len(self.dims) - 1)]
        if self.hidden != "transform" and self.conv_channels:
            hidden = [f"c{i}" for i in range(1, len(self.conv_channels) + 1)] + hidden
        return ("x", *hidden, "y") if self.task == "supervised" else ("z", *hidden, "x")

    def conv_blocks(self) -> list[Any]:
        """The convolutional blocks, one transform each (``Sequential(conv, pool)`` or the conv alone),
        from the image shape on; empty without ``conv_channels``."""
        blocks: list[Any] = []
        shape: Any = tuple(self.image_shape)
        for ch in self.conv_channels or ():
            conv = Conv2d(
                shape,
                ch,
                self.conv_kernel,
                1,
                self.conv_padding.upper(),
                self.activation,
                self.bias,
                weight_init=self.weight_init,
            )
            block: Any = conv
            if self.pool != "none":
                pool_cls = MaxPool2d if self.pool == "max" else AvgPool2d
                block = Sequential((conv, pool_cls(conv.out_dim, self.pool_size)))
            blocks.append(block)
            shape = block.out_dim
        return blocks


@dataclass(frozen=True)
class InferenceSection:
    """State inference: ``T`` steps of the state optimizer per batch (``T_eval`` to infer codes)."""

    SECTION: ClassVar[str] = "inference"

    T: int = setting(
        20,
        "int",
        low=0,
        high=MAX_STEPS,
        help="inference steps per batch (adaptive_heun: the most solver steps)",
        resume="history",
    )
    optimizer: str = setting(
        "sgd",
        "str",
        choices=("sgd", "momentum", "adam", "adaptive_heun"),
        help="the state optimizer, or adaptive_heun: diffrax's Heun with a PID step controller and a steady-state stop",
        resume="history",
    )
    learning_rate: float = setting(
        0.1,
        "float",
        low=0,
        open_low=True,
        help="the state optimizer's step (adaptive_heun: the first step)",
        resume="history",
    )
    momentum: float = setting(
        0.9, "float", low=0, high=1, open_high=True, help='the momentum of optimizer = "momentum"', resume="history"
    )
    T_eval: int | None = setting(
        None,
        "int",
        low=0,
        high=MAX_STEPS,
        optional=True,
        none_means="T",
        help="inference steps to infer codes",
        resume="history",
    )
    rtol: float = setting(
        1e-3, "float", low=0, open_low=True, help="adaptive_heun's relative tolerance", resume="history"
    )
    atol: float = setting(
        1e-3, "float", low=0, open_low=True, help="adaptive_heun's absolute tolerance", resume="history"
    )
    algorithm: str = setting(
        "pc",
        "str",
        choices=("pc", "ipc"),
        help='"pc": T state steps, then one weight step; "ipc": a weight step at every state step',
        resume="history",
    )
    nudge: str = setting(
        "none",
        "str",
        choices=("none", "positive", "negative", "centred"),
        help="none: the label clamped; else the output energy weighted by +beta, -beta or both",
        resume="history",
    )
    beta: float = setting(
        1.0, "float", low=0, open_low=True, help="the nudging strength (with nudge)", resume="history"
    )
    unroll: int = setting(
        1,
        "int",
        low=1,
        high=MAX_STEPS,
        help=(
            "state steps per iteration of the compiled inference loop; T or more: all of them (the same "
            "result up to float rounding; about twice as fast for a conv net on CPU, longer to compile)"
        ),
        resume="safe",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.algorithm == "ipc" and self.nudge != "none":
            raise bad("inference.nudge", '"none" with algorithm = "ipc" (iPC clamps the label)', self.nudge)
        if self.optimizer == "adaptive_heun" and self.unroll != 1:
            raise bad(
                "inference.unroll", '1 with optimizer = "adaptive_heun" (it stops at its own steady state)', self.unroll
            )

    def rule(self) -> Any:
        """The learning rule: :class:`EnergyGradient`, :class:`Nudged` or :class:`Incremental`."""
        from predcode.learning.incremental import Incremental
        from predcode.learning.nudging import Nudged
        from predcode.learning.trainer import EnergyGradient

        if self.algorithm == "ipc":
            return Incremental(self.T, self.build(), unroll=self.unroll)
        if self.nudge != "none":
            return Nudged(self.T, self.build(), beta=self.beta, mode=self.nudge, unroll=self.unroll)
        return EnergyGradient(self.T, self.build(), self.unroll)

    def build(self) -> Any:
        """The state solver (``optimizer_x``): an optax optimizer, or an :class:`AdaptiveHeun`."""
        if self.optimizer == "adaptive_heun":
            return AdaptiveHeun(rtol=self.rtol, atol=self.atol, dt0=self.learning_rate)
        if self.optimizer == "sgd":
            return optax.sgd(self.learning_rate)
        if self.optimizer == "momentum":
            return optax.sgd(self.learning_rate, momentum=self.momentum)
        return optax.adam(self.learning_rate)


@dataclass(frozen=True)
class PCFitConfig:
    """Everything ``predcode fit`` needs to train a general PC network."""

    family: ClassVar[str] = "pc"
    title: ClassVar[str] = "a PC network's config"

    network: NetworkSection = table(NetworkSection)
    inference: InferenceSection = table(InferenceSection)
    optimizer: OptimizerConfig = table(
        OptimizerConfig,
        keys=("name", "learning_rate", "eps", "weight_decay", "schedule"),
        choices={"name": ("adam", "adamw", "sgd")},
        name="adam",
        eps=1e-8,
    )
    data: DataConfig = table(
        DataConfig, keys=("dataset", "n_train", "n_val", "binarize", "normalize"), n_val=5000, binarize=False
    )
    train: TrainConfig = table(
        TrainConfig,
        keys=("batch_size", "eval_batch_size", "epochs", "patience", "seed", "parallel_trials", "test_every_epoch"),
        batch_size=64,
        eval_batch_size=1000,
        epochs=10,
        patience=None,
        seed=0,
    )
    out_dir: str | None = run_folder()
    source: str | None = field(default=None, compare=False)  # the file read; not compared

    def __post_init__(self) -> None:
        check_tables(self, self.title)
        net, image_dim = self.network, 784
        end = 0 if net.task == "supervised" else -1
        if net.dims[end] != image_dim:
            where = "first" if end == 0 else "last"
            raise bad(
                "network.dims",
                f"the {where} size to be {image_dim} (the image, clamped there for task={net.task!r})",
                net.dims[end],
            )
        if net.task == "supervised" and net.dims[-1] != 10:
            raise bad("network.dims", "the last size to be 10 (the one-hot label)", net.dims[-1])
        if self.inference.nudge != "none" and net.task != "supervised":
            raise bad("inference.nudge", '"none" for task = "generative" (nudging pulls a label)', self.inference.nudge)
        if self.inference.nudge != "none" and net.output_cell == "gaussian" and net.output_covariance != "fixed":
            raise bad(
                "inference.nudge",
                '"none" with a learnable output covariance (nudging scales the output energy)',
                self.inference.nudge,
            )


def _cell(kind: str, covariance: str, sigma: float):
    if kind == "gaussian":
        return GaussianErrorCell(covariance, sigma=sigma if covariance == "fixed" else 1.0)
    if kind == "laplacian":
        return LaplacianErrorCell(scale=sigma)
    if kind == "categorical":
        return CategoricalErrorCell()
    return BernoulliErrorCell()


def build_network(cfg: PCFitConfig) -> PCNetwork:
    """The :class:`PCNetwork` a config describes (a chain of Dense transforms, after the
    convolutional blocks of ``conv_channels`` if any)."""
    n = cfg.network
    if n.conv_channels:
        try:
            return _conv_network(n)
        except NetworkError as err:
            raise ConfigError(f"network: {err}", key="network") from None
    learn = lambda kind, cov, s: s if kind == "gaussian" and cov != "fixed" else None
    root_cell = None if n.root_cell == "none" else _cell(n.root_cell, "fixed", n.root_sigma)
    if n.hidden == "transform":
        acts = [n.activation] * (len(n.dims) - 2) + [n.output_activation]
        layers = tuple(
            Dense(a, b, act, n.bias, weight_init=n.weight_init)
            for a, b, act in zip(n.dims[:-1], n.dims[1:], acts, strict=True)
        )
        first, last = n.node_names
        try:
            return PCNetwork(
                [
                    Node(first, n.dims[0], cell=root_cell),
                    Node(
                        last,
                        n.dims[-1],
                        {first: Sequential(layers)},
                        cell=_cell(n.output_cell, n.output_covariance, n.output_sigma),
                        sigma_init=learn(n.output_cell, n.output_covariance, n.output_sigma),
                    ),
                ]
            )
        except NetworkError as err:
            raise ConfigError(f"network: {err}", key="network") from None
    if n.residual or n.param != "standard":
        try:
            net = residual_mlp(
                len(n.dims) - 1,
                n.dims[1],
                in_dim=n.dims[0],
                out_dim=n.dims[-1],
                activation=n.activation,
                param=n.param,
                residual=n.residual,
                bias=n.bias,
                names=n.node_names,
                cell=_cell(n.cell, n.covariance, n.sigma),
                output_cell=_cell(n.output_cell, n.output_covariance, n.output_sigma),
                root_cell=root_cell,
            )
        except NetworkError as err:
            raise ConfigError(f"network: {err}", key="network") from None
        return net
    try:
        net = PCNetwork.chain(
            n.dims,
            names=n.node_names,
            activation=n.activation,
            output_activation=n.output_activation,
            bias=n.bias,
            cell=_cell(n.cell, n.covariance, n.sigma),
            output_cell=_cell(n.output_cell, n.output_covariance, n.output_sigma),
            root_cell=root_cell,
            output_sigma_init=learn(n.output_cell, n.output_covariance, n.output_sigma),
            weight_init=n.weight_init,
        )
    except NetworkError as err:
        raise ConfigError(f"network: {err}", key="network") from None
    if n.covariance != "fixed" and n.cell == "gaussian":  # hidden learnable covariances start at sigma
        nodes = [
            dataclasses.replace(node, sigma_init=n.sigma) if 0 < i < len(net.nodes) - 1 else node
            for i, node in enumerate(net.nodes)
        ]
        net = PCNetwork(nodes)
    return net


def _conv_network(n: NetworkSection) -> PCNetwork:
    """Image node ``(H, W, C)``, the convolutional blocks, then the Dense chain of ``dims[1:]``."""
    blocks = n.conv_blocks()
    last = blocks[-1].out_dim
    flat = Flatten(last)
    acts = [n.activation] * (len(n.dims) - 2) + [n.output_activation]
    dense = [
        Dense(a, b, act, n.bias, weight_init=n.weight_init)
        for a, b, act in zip((flat.out_dim, *n.dims[1:-1]), n.dims[1:], acts, strict=True)
    ]
    hidden_cell = _cell(n.cell, n.covariance, n.sigma)
    out_cell = _cell(n.output_cell, n.output_covariance, n.output_sigma)
    learn = lambda kind, cov, s: s if kind == "gaussian" and cov != "fixed" else None
    root_cell = None if n.root_cell == "none" else _cell(n.root_cell, "fixed", n.root_sigma)
    names = n.node_names
    image = Node(names[0], tuple(n.image_shape), cell=root_cell)
    out_sigma = learn(n.output_cell, n.output_covariance, n.output_sigma)
    if n.hidden == "transform":
        transform = Sequential((*blocks, flat, *dense))
        return PCNetwork(
            [image, Node(names[-1], n.dims[-1], {names[0]: transform}, cell=out_cell, sigma_init=out_sigma)]
        )
    hidden_sigma = learn(n.cell, n.covariance, n.sigma)
    nodes = [image]
    for name, block in zip(names[1 : 1 + len(blocks)], blocks, strict=True):
        nodes.append(Node(name, block.out_dim, {nodes[-1].name: block}, cell=hidden_cell, sigma_init=hidden_sigma))
    edges: list[Any] = [Sequential((flat, dense[0])), *dense[1:]]
    for i, (name, edge) in enumerate(zip(names[1 + len(blocks) :], edges, strict=True)):
        out = i == len(edges) - 1
        nodes.append(
            Node(
                name,
                n.dims[i + 1],
                {nodes[-1].name: edge},
                cell=out_cell if out else hidden_cell,
                sigma_init=out_sigma if out else hidden_sigma,
            )
        )
    return PCNetwork(nodes)
