"""Configs for general PC networks: a TOML file with a ``[network]`` table (``predcode fit`` dispatches on it).

Sections and keys (every key optional except ``network.task`` and ``network.dims``)::

    out_dir = "runs/pc_supervised"
    [network]    task ("supervised" | "generative"), dims, names, activation, output_activation,
                 bias, cell, covariance, sigma, output_cell, output_covariance, output_sigma,
                 root_cell, root_sigma, hidden ("nodes": inferred value nodes; "transform": the
                 hidden layers are one transform from the first node to the last)
    [inference]  T, optimizer ("sgd" | "momentum" | "adam"), learning_rate, T_eval
    [optimizer]  name ("adam" | "adamw" | "sgd"), learning_rate, weight_decay, schedule ("constant" | "cosine")
    [data]       dataset, n_train, n_val, binarize
    [train]      batch_size, eval_batch_size, epochs, seed

``task = "supervised"`` clamps the image at the first node and the one-hot label at the last
(Whittington & Bogacz 2017); ``task = "generative"`` clamps the image at the last node and infers
the first (the code). Cells are ``"gaussian"`` (``covariance`` fixed, scalar, diagonal or full;
``sigma`` the fixed variance or the learnable one's start), ``"laplacian"`` (``sigma`` is the
scale b) or ``"bernoulli"``; ``root_cell`` ``"none"`` leaves the code without a prior. The shipped
examples are ``configs/pc/mnist_supervised.toml`` and ``configs/pc/mnist_generative.toml``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optax

from predcode.activations import ACTIVATIONS
from predcode.cells import COVARIANCE_KINDS, BernoulliErrorCell, GaussianErrorCell, LaplacianErrorCell
from predcode.data import NAMES
from predcode.experiments.config import ConfigError
from predcode.models.network import Dense, NetworkError, Node, PCNetwork, Sequential

__all__ = [
    "PCFitConfig",
    "build_network",
    "dump_pc_toml",
    "is_pc_toml",
    "parse_pc_toml",
    "pc_config_from_dict",
    "parse_pc_override",
    "pc_with_overrides",
]

TASKS = ("supervised", "generative")
CELLS = ("gaussian", "laplacian", "bernoulli")
STATE_OPTIMIZERS = ("sgd", "momentum", "adam")
HIDDEN = ("nodes", "transform")
SCHEDULES = ("constant", "cosine")
WEIGHT_OPTIMIZERS = ("adam", "adamw", "sgd")


def _check(key: str, value: Any, kind: str, *, choices=(), low=None, allow_none=False) -> Any:
    """Type- and range-check one value; a ConfigError names the key, what was expected and what was got."""
    if value is None or (allow_none and isinstance(value, str) and value.lower() in ("none", "all")):
        if allow_none:
            return None
        raise ConfigError(f"{key}: expected a value, got none", key=key)
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str) and bool(v),
        "ints": lambda v: (
            isinstance(v, list)
            and len(v) >= 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v)
        ),
        "strs": lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v),
    }[kind]
    expected = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "ints": "a list of at least two integers >= 1",
        "strs": "a list of names",
    }[kind]
    if choices:
        expected = "one of " + ", ".join(map(repr, choices))
    if low is not None:
        expected += f" >= {low}" if kind == "int" else f" > {low}"
    if (
        not ok(value)
        or (choices and value not in choices)
        or (low is not None and (value < low if kind == "int" else value <= low))
    ):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}", key=key)
    return float(value) if kind == "float" else value


@dataclass(frozen=True)
class NetworkSection:
    """The network: a chain of Dense transforms and value nodes with their error cells."""

    task: str = "supervised"
    dims: tuple[int, ...] = (784, 256, 256, 10)
    names: tuple[str, ...] | None = None
    activation: str = "relu"
    output_activation: str = "identity"
    bias: bool = True
    cell: str = "gaussian"
    covariance: str = "fixed"
    sigma: float = 1.0
    output_cell: str = "gaussian"
    output_covariance: str = "fixed"
    output_sigma: float = 1.0
    root_cell: str = "none"
    root_sigma: float = 1.0
    hidden: str = "nodes"

    def __post_init__(self) -> None:
        s = "network."
        _check(s + "task", self.task, "str", choices=TASKS)
        _check(s + "hidden", self.hidden, "str", choices=HIDDEN)
        object.__setattr__(self, "dims", tuple(_check(s + "dims", list(self.dims), "ints")))
        n_nodes = 2 if self.hidden == "transform" else len(self.dims)
        if self.names is not None:
            names = _check(s + "names", list(self.names), "strs")
            if len(names) != n_nodes or len(set(names)) != len(names):
                raise ConfigError(
                    f"{s}names: expected {n_nodes} distinct names (one per node; hidden = "
                    f"{self.hidden!r}), got {names!r}",
                    key=s + "names",
                )
            object.__setattr__(self, "names", tuple(names))
        for k in ("activation", "output_activation"):
            _check(s + k, getattr(self, k), "str", choices=tuple(ACTIVATIONS))
        _check(s + "bias", self.bias, "bool")
        for prefix in ("", "output_", "root_"):
            choices = CELLS + (("none",) if prefix == "root_" else ())
            _check(s + prefix + "cell", getattr(self, prefix + "cell"), "str", choices=choices)
            object.__setattr__(
                self, prefix + "sigma", _check(s + prefix + "sigma", getattr(self, prefix + "sigma"), "float", low=0)
            )
        for k in ("covariance", "output_covariance"):
            _check(s + k, getattr(self, k), "str", choices=COVARIANCE_KINDS)

    @property
    def node_names(self) -> tuple[str, ...]:
        if self.names is not None:
            return self.names
        hidden = [] if self.hidden == "transform" else [f"h{i}" for i in range(1, len(self.dims) - 1)]
        return ("x", *hidden, "y") if self.task == "supervised" else ("z", *hidden, "x")


@dataclass(frozen=True)
class InferenceSection:
    """State inference: ``T`` steps of the state optimizer per batch (``T_eval`` to infer codes)."""

    T: int = 20
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    T_eval: int | None = None

    def __post_init__(self) -> None:
        _check("inference.T", self.T, "int", low=0)
        _check("inference.optimizer", self.optimizer, "str", choices=STATE_OPTIMIZERS)
        object.__setattr__(self, "learning_rate", _check("inference.learning_rate", self.learning_rate, "float", low=0))
        _check("inference.T_eval", self.T_eval, "int", low=0, allow_none=True)

    def build(self) -> optax.GradientTransformation:
        """The optax state optimizer (``optimizer_x``)."""
        if self.optimizer == "sgd":
            return optax.sgd(self.learning_rate)
        if self.optimizer == "momentum":
            return optax.sgd(self.learning_rate, momentum=0.9)
        return optax.adam(self.learning_rate)


@dataclass(frozen=True)
class WeightOptimizerSection:
    """The weight optimizer (``optimizer_p``): adam, adamw (with ``weight_decay``) or sgd, with a
    constant learning rate or a cosine decay to 0 over the whole training (``schedule``)."""

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        _check("optimizer.name", self.name, "str", choices=WEIGHT_OPTIMIZERS)
        object.__setattr__(self, "learning_rate", _check("optimizer.learning_rate", self.learning_rate, "float", low=0))
        decay = _check("optimizer.weight_decay", self.weight_decay, "float")
        if decay < 0:
            raise ConfigError(
                f"optimizer.weight_decay: expected a number >= 0, got {decay!r}", key="optimizer.weight_decay"
            )
        object.__setattr__(self, "weight_decay", decay)
        _check("optimizer.schedule", self.schedule, "str", choices=SCHEDULES)

    def build(self, total_steps: int = 1) -> optax.GradientTransformation:
        """The optax weight optimizer; a cosine schedule decays over ``total_steps`` updates."""
        lr = (
            optax.cosine_decay_schedule(self.learning_rate, max(1, total_steps))
            if self.schedule == "cosine"
            else self.learning_rate
        )
        if self.name == "adam":
            return optax.adam(lr)
        if self.name == "adamw":
            return optax.adamw(lr, weight_decay=self.weight_decay)
        return optax.sgd(lr)


@dataclass(frozen=True)
class PCDataSection:
    """A built-in dataset: grey levels in [0, 1] (or binarized), validation split from the training set."""

    dataset: str = "mnist"
    n_train: int | None = None
    n_val: int = 5000
    binarize: bool = False

    def __post_init__(self) -> None:
        _check("data.dataset", self.dataset, "str", choices=NAMES)
        _check("data.n_train", self.n_train, "int", low=1, allow_none=True)
        _check("data.n_val", self.n_val, "int", low=1)
        _check("data.binarize", self.binarize, "bool")


@dataclass(frozen=True)
class PCTrainSection:
    """The training loop: batch sizes, epochs and the seed (split, initialization, shuffles)."""

    batch_size: int = 64
    eval_batch_size: int = 1000
    epochs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("batch_size", "eval_batch_size", "epochs"):
            _check(f"train.{k}", getattr(self, k), "int", low=1)
        _check("train.seed", self.seed, "int", low=0)


@dataclass(frozen=True)
class PCFitConfig:
    """Everything ``predcode fit`` needs to train a general PC network."""

    network: NetworkSection = field(default_factory=NetworkSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    optimizer: WeightOptimizerSection = field(default_factory=WeightOptimizerSection)
    data: PCDataSection = field(default_factory=PCDataSection)
    train: PCTrainSection = field(default_factory=PCTrainSection)
    out_dir: str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        net, image_dim = self.network, 784
        end = 0 if net.task == "supervised" else -1
        if net.dims[end] != image_dim:
            where = "first" if end == 0 else "last"
            raise ConfigError(
                f"network.dims: expected the {where} size to be {image_dim} (the image, "
                f"clamped there for task={net.task!r}), got {net.dims[end]}",
                key="network.dims",
            )
        if net.task == "supervised" and net.dims[-1] != 10:
            raise ConfigError(
                f"network.dims: expected the last size to be 10 (the one-hot label), got {net.dims[-1]}",
                key="network.dims",
            )


_SECTIONS = {
    "network": NetworkSection,
    "inference": InferenceSection,
    "optimizer": WeightOptimizerSection,
    "data": PCDataSection,
    "train": PCTrainSection,
}


def _cell(kind: str, covariance: str, sigma: float):
    if kind == "gaussian":
        return GaussianErrorCell(covariance, sigma=sigma if covariance == "fixed" else 1.0)
    if kind == "laplacian":
        return LaplacianErrorCell(scale=sigma)
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


def pc_config_from_dict(
    doc: Mapping[str, Any], *, source: str | None = None, base_dir: str | os.PathLike | None = None
) -> PCFitConfig:
    """A PCFitConfig from a nested dict in the TOML layout; unknown sections or keys are errors."""
    where = f"{source}: " if source else ""
    parts = {}
    for name, value in doc.items():
        if name == "out_dir":
            continue
        if name not in _SECTIONS:
            raise ConfigError(
                f"{where}unknown section [{name}]; a PC network config has "
                f"{', '.join('[' + s + ']' for s in _SECTIONS)} and out_dir",
                key=name,
            )
        cls = _SECTIONS[name]
        known = {f.name for f in dataclasses.fields(cls)}
        for key in value:
            if key not in known:
                raise ConfigError(
                    f"{where}unknown key {name}.{key}; [{name}] takes {', '.join(sorted(known))}", key=f"{name}.{key}"
                )
        values = dict(value)
        for k in ("dims", "names"):
            if k in values and isinstance(values[k], list):
                values[k] = tuple(values[k])
        try:
            parts[name] = cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{where}{err}", key=err.key) from None
    out_dir = doc.get("out_dir")
    if out_dir is not None:
        _check("out_dir", out_dir, "str")
        if base_dir is not None and not os.path.isabs(out_dir):
            out_dir = os.path.join(base_dir, out_dir)
    try:
        return PCFitConfig(**parts, out_dir=out_dir, source=source)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}", key=err.key) from None


def is_pc_toml(text: str) -> bool:
    """True when TOML text has a ``[network]`` table (a general PC network config)."""
    try:
        return "network" in tomllib.loads(text.removeprefix("\ufeff"))
    except (tomllib.TOMLDecodeError, ValueError):
        return False


def parse_pc_toml(text: str, source: str | None = None, base_dir: str | os.PathLike | None = None) -> PCFitConfig:
    """A PCFitConfig from TOML text (relative ``out_dir`` taken relative to ``base_dir``)."""
    try:
        doc = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source or '<config>'}: TOML syntax error: {err}", source=source) from None
    return pc_config_from_dict(doc, source=source, base_dir=base_dir)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_pc_toml(cfg: PCFitConfig) -> str:
    """The config as TOML, every key written (``none`` for unset optional values)."""
    lines = ["# predcode fit config for a general PC network (predcode.experiments.pc_config)"]
    if cfg.out_dir is not None:
        lines.append(f"out_dir = {_toml_value(cfg.out_dir)}")
    for name in _SECTIONS:
        lines += ["", f"[{name}]"]
        for key, value in dataclasses.asdict(getattr(cfg, name)).items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def pc_with_overrides(cfg: PCFitConfig, **dotted: Any) -> PCFitConfig:
    """A copy of ``cfg`` with dotted keys replaced and validated: ``pc_with_overrides(cfg, **{"train.epochs": 2})``."""
    doc: dict[str, Any] = {name: dataclasses.asdict(getattr(cfg, name)) for name in _SECTIONS}
    for key, value in dotted.items():
        section, _, leaf = key.partition(".")
        if key == "out_dir":
            doc["out_dir"] = value
            continue
        if section not in _SECTIONS or not leaf:
            raise ConfigError(
                f"--set {key}: unknown key; a PC network config has sections {', '.join(_SECTIONS)} and out_dir",
                key=key,
            )
        doc[section][leaf] = value
    doc = {
        k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v) for k, v in doc.items()
    }
    doc.setdefault("out_dir", cfg.out_dir)
    if doc["out_dir"] is None:
        del doc["out_dir"]
    return pc_config_from_dict(doc, source=cfg.source)


def parse_pc_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=2"`` -> ``("train.epochs", 2)``: the value read as TOML, else as a string."""
    key, eq, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key:
        raise ConfigError(f"--set: expected `section.key=value`, got {text!r} (e.g. train.epochs=2)")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except (ValueError, RecursionError):
        return key, value
