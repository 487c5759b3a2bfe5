"""The PC-network family: a ``[network]`` table (a chain of Dense transforms and value nodes) and ``[inference]``.

Keys (docs/config.md)::

    out_dir = "runs/pc_supervised"
    [network]    task ("supervised" | "generative"), dims, names, activation, output_activation,
                 bias, cell, covariance, sigma, output_cell, output_covariance, output_sigma,
                 root_cell, root_sigma, hidden ("nodes": inferred value nodes; "transform": the
                 hidden layers are one transform from the first node to the last)
    [inference]  T, optimizer ("sgd" | "momentum" | "adam"), learning_rate, momentum, T_eval,
                 algorithm ("pc" | "ipc"), nudge ("none" | "positive" | "negative" | "centred"), beta
    [optimizer]  name ("adam" | "adamw" | "sgd"), learning_rate, eps, weight_decay, schedule
    [data]       dataset, n_train, n_val, binarize
    [train]      batch_size, eval_batch_size, epochs, seed

``task = "supervised"`` clamps the image at the first node and the one-hot label at the last
(Whittington & Bogacz 2017); ``task = "generative"`` clamps the image at the last node and infers
the first (the code). Cells are ``"gaussian"`` (``covariance`` fixed, scalar, diagonal or full;
``sigma`` the fixed variance or the learnable one's start), ``"laplacian"`` (``sigma`` is the
scale b), ``"bernoulli"`` or ``"categorical"`` (softmax cross-entropy on logits, PCX's PC-CE);
``root_cell`` ``"none"`` leaves the code without a prior. The shipped
examples are ``configs/pc/mnist_supervised.toml`` and ``configs/pc/mnist_generative.toml``.
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
from predcode.experiments.config.sections import (
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    check_tables,
    run_folder,
    table,
)
from predcode.models.network import Dense, NetworkError, Node, PCNetwork, Sequential
from predcode.schema import ConfigError, bad, setting, validate

__all__ = ["InferenceSection", "NetworkSection", "PCFitConfig", "build_network"]

CELLS = ("gaussian", "laplacian", "bernoulli", "categorical")
_ACTS = tuple(ACTIVATIONS)


def _cell_kind(default: str, help: str, *, root: bool = False) -> Any:
    return setting(default, "str", choices=CELLS + (("none",) if root else ()), help=help)


def _sigma(
    help: str = "the fixed variance of a Gaussian cell, the start of a learned one, or a Laplacian's scale",
) -> Any:
    return setting(1.0, "float", low=0, open_low=True, help=help)


@dataclass(frozen=True)
class NetworkSection:
    """The network: a chain of Dense transforms and value nodes with their error cells."""

    SECTION: ClassVar[str] = "network"

    task: str = setting(
        "supervised",
        "str",
        choices=("supervised", "generative"),
        help="clamp image and label, or infer a code for the image",
    )
    dims: tuple[int, ...] = setting(
        (784, 256, 256, 10), "ints", min_len=2, help="node sizes from the first to the last"
    )
    names: tuple[str, ...] | None = setting(None, "strs", optional=True, help="one distinct name per node")
    activation: str = setting("relu", "str", choices=_ACTS, help="the hidden transforms' activation")
    output_activation: str = setting("identity", "str", choices=_ACTS, help="the last transform's activation")
    bias: bool = setting(True, "bool", help="Dense transforms with a bias")
    cell: str = _cell_kind("gaussian", "the hidden nodes' error cell")
    covariance: str = setting("fixed", "str", choices=COVARIANCE_KINDS, help="a Gaussian cell's covariance")
    sigma: float = _sigma()
    output_cell: str = _cell_kind("gaussian", "the last node's error cell")
    output_covariance: str = setting(
        "fixed", "str", choices=COVARIANCE_KINDS, help="the last node's Gaussian covariance"
    )
    output_sigma: float = _sigma()
    root_cell: str = _cell_kind("none", "the first node's prior; none: no prior", root=True)
    root_sigma: float = _sigma()
    hidden: str = setting(
        "nodes",
        "str",
        choices=("nodes", "transform"),
        help='"nodes": inferred value nodes; "transform": the hidden layers are one transform',
    )

    def __post_init__(self) -> None:
        validate(self)
        n_nodes = 2 if self.hidden == "transform" else len(self.dims)
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
        return ("x", *hidden, "y") if self.task == "supervised" else ("z", *hidden, "x")


@dataclass(frozen=True)
class InferenceSection:
    """State inference: ``T`` steps of the state optimizer per batch (``T_eval`` to infer codes)."""

    SECTION: ClassVar[str] = "inference"

    T: int = setting(20, "int", low=0, help="inference steps per batch")
    optimizer: str = setting("sgd", "str", choices=("sgd", "momentum", "adam"), help="the state optimizer")
    learning_rate: float = setting(0.1, "float", low=0, open_low=True, help="the state optimizer's step")
    momentum: float = setting(
        0.9, "float", low=0, high=1, open_high=True, help='the momentum of optimizer = "momentum"'
    )
    T_eval: int | None = setting(
        None, "int", low=0, optional=True, none_means="T", help="inference steps to infer codes"
    )
    algorithm: str = setting(
        "pc",
        "str",
        choices=("pc", "ipc"),
        help='"pc": T state steps, then one weight step; "ipc": a weight step at every state step',
    )
    nudge: str = setting(
        "none",
        "str",
        choices=("none", "positive", "negative", "centred"),
        help="none: the label clamped; else the output energy weighted by +beta, -beta or both",
    )
    beta: float = setting(1.0, "float", low=0, open_low=True, help="the nudging strength (with nudge)")

    def __post_init__(self) -> None:
        validate(self)
        if self.algorithm == "ipc" and self.nudge != "none":
            raise bad("inference.nudge", '"none" with algorithm = "ipc" (iPC clamps the label)', self.nudge)

    def rule(self) -> Any:
        """The learning rule: :class:`EnergyGradient`, :class:`Nudged` or :class:`Incremental`."""
        from predcode.learning.incremental import Incremental
        from predcode.learning.nudging import Nudged
        from predcode.learning.trainer import EnergyGradient

        if self.algorithm == "ipc":
            return Incremental(self.T, self.build())
        if self.nudge != "none":
            return Nudged(self.T, self.build(), beta=self.beta, mode=self.nudge)
        return EnergyGradient(self.T, self.build())

    def build(self) -> optax.GradientTransformation:
        """The optax state optimizer (``optimizer_x``)."""
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
    data: DataConfig = table(DataConfig, keys=("dataset", "n_train", "n_val", "binarize"), n_val=5000, binarize=False)
    train: TrainConfig = table(
        TrainConfig,
        keys=("batch_size", "eval_batch_size", "epochs", "seed", "parallel_trials"),
        batch_size=64,
        eval_batch_size=1000,
        epochs=10,
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
    """The :class:`PCNetwork` a config describes (a chain of Dense transforms)."""
    n = cfg.network
    learn = lambda kind, cov, s: s if kind == "gaussian" and cov != "fixed" else None
    root_cell = None if n.root_cell == "none" else _cell(n.root_cell, "fixed", n.root_sigma)
    if n.hidden == "transform":
        acts = [n.activation] * (len(n.dims) - 2) + [n.output_activation]
        layers = tuple(Dense(a, b, act, n.bias) for a, b, act in zip(n.dims[:-1], n.dims[1:], acts, strict=True))
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
