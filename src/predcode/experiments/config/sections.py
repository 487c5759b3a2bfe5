"""The ``[data]``, ``[train]`` and ``[optimizer]`` tables every family shares, and how a family picks its keys.

Each key means the same in every family (``train.epochs`` is the number of passes over the training
set for a museum model, a PC network and an MLP). A family's config class declares which keys of a
shared table it serves, its own defaults and any narrower choices with :func:`table`; a key it does
not serve is an unknown key in its files and must keep its default in Python.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import optax

from predcode.data import NAMES
from predcode.learning.optim import keras_adam
from predcode.limits import SEED_MAX
from predcode.schema import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_ROWS,
    MAX_TRIALS,
    Spec,
    bad,
    closest,
    coerce,
    setting,
    specs,
    validate,
)

NORMALIZATIONS = ("none", "symmetric", "standardize")

__all__ = [
    "NORMALIZATIONS",
    "DataConfig",
    "OptimizerConfig",
    "Table",
    "TrainConfig",
    "check_tables",
    "family_specs",
    "run_folder",
    "table",
    "tables",
]


@dataclass(frozen=True)
class DataConfig:
    """Training data: a built-in dataset (validation split from its training set) or .npy files."""

    SECTION: ClassVar[str] = "data"

    dataset: str = setting(
        "mnist", "str", expected="a dataset name", help="one of " + ", ".join(map(repr, NAMES)), resume="history"
    )
    n_train: int | None = setting(
        None,
        "int",
        low=1,
        high=MAX_ROWS,
        optional=True,
        none_words=("all", "none"),
        help="training images; all: every one left",
        resume="history",
    )
    n_val: int = setting(
        2000, "int", low=1, high=MAX_ROWS, help="validation images split from the training set", resume="history"
    )
    train_file: str | None = setting(
        None,
        "path",
        optional=True,
        expected="a path to a .npy file",
        help="a (n, 784) design matrix in [0, 1]",
        resume="history",
    )
    val_file: str | None = setting(
        None,
        "path",
        optional=True,
        expected="a path to a .npy file",
        help="validation rows beside data.train_file",
        resume="history",
    )
    binarize: bool = setting(True, "bool", help="pixels / 255 >= 0.5", resume="history")
    normalize: str = setting(
        "none",
        "str",
        choices=NORMALIZATIONS,
        help='pixel scaling: "none" keeps [0, 1]; "symmetric" maps to [-1, 1] (PCX); "standardize" '
        "subtracts the training rows' mean pixel and divides by their pixel standard deviation (JPC)",
        resume="history",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.train_file is None and self.val_file is not None:
            raise bad(
                "data.val_file",
                "no value without data.train_file",
                self.val_file,
                "a built-in dataset's validation images are split from its training set "
                "(data.n_val); set data.train_file too, or drop data.val_file",
            )


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: batches, epochs, early stopping and the seed (data split, init, shuffles)."""

    SECTION: ClassVar[str] = "train"

    batch_size: int = setting(
        512,
        "int",
        low=1,
        high=MAX_BATCH,
        help="images per update; the walkthrough uses 512, the paper 200",
        resume="history",
    )
    eval_batch_size: int = setting(512, "int", low=1, high=MAX_BATCH, help="images per evaluation batch", resume="safe")
    epochs: int = setting(100, "int", low=1, high=MAX_EPOCHS, help="passes over the training set", resume="schedule")
    patience: int | None = setting(
        10,
        "int",
        low=1,
        high=MAX_EPOCHS,
        optional=True,
        help=(
            "epochs without a better validation score (museum: BCE; PC network: accuracy, or energy "
            'if generative; MLP: accuracy) before stopping; "none" never stops early'
        ),
        resume="safe",
    )
    seed: int = setting(
        69, "int", low=0, high=SEED_MAX, help="seeds the data split, the initial weights and shuffles", resume="history"
    )
    test_every_epoch: bool = setting(
        False,
        "bool",
        help=(
            "also the test accuracy after every epoch (metrics.csv, summary.json's maximum over epochs: "
            "PCX's benchmark protocol, which selects on the test set; the best-validation model stays the report)"
        ),
        resume="history",
    )
    parallel_trials: int | None = setting(
        None,
        "int",
        low=1,
        high=MAX_TRIALS,
        optional=True,
        none_words=("auto", "none"),
        help="trials vmapped together in one step; auto: all that fit in memory",
        resume="safe",
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class OptimizerConfig:
    """The weight optimizer: Keras-form Adam (legacy), Adam, AdamW or SGD, constant or cosine-decayed."""

    SECTION: ClassVar[str] = "optimizer"

    name: str = setting(
        "keras_adam",
        "str",
        choices=("keras_adam", "adam", "adamw", "sgd"),
        help="the weight optimizer",
        resume="history",
    )
    learning_rate: float = setting(
        1e-3, "float", low=0, open_low=True, help="the walkthrough uses 0.001", resume="history"
    )
    eps: float = setting(
        1e-7, "float", low=0, open_low=True, help="Keras' and legacy ngc-learn's Adam use 1e-7", resume="history"
    )
    weight_decay: float = setting(0.0, "float", low=0, help="adamw's decoupled weight decay", resume="history")
    schedule: str = setting(
        "constant",
        "str",
        choices=("constant", "cosine", "warmup_cosine"),
        help="a constant learning rate, a cosine decay to 0 over the whole training, or PCX's warmup-cosine",
        resume="history",
    )

    def __post_init__(self) -> None:
        validate(self)

    def build(self, total_steps: int = 1) -> optax.GradientTransformation:
        """The optax transformation; a cosine schedule decays over ``total_steps`` updates."""
        lr: Any = self.learning_rate
        if self.schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.learning_rate, max(1, total_steps))
        elif self.schedule == "warmup_cosine":
            # PCX's benchmark schedule: from lr up to 1.1 lr over the first 10 % of the updates, then a
            # cosine decay to 0.1 lr at the end of training.
            lr = optax.warmup_cosine_decay_schedule(
                self.learning_rate,
                1.1 * self.learning_rate,
                max(1, total_steps // 10),
                max(2, total_steps),
                0.1 * self.learning_rate,
            )
        if self.name == "keras_adam":
            return keras_adam(lr, eps=self.eps)
        if self.name == "adam":
            return optax.adam(lr, eps=self.eps)
        if self.name == "adamw":
            return optax.adamw(lr, eps=self.eps, weight_decay=self.weight_decay)
        return optax.sgd(lr)


# ----- a family's tables ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Table:
    """A table of a family's config: its class, the keys the family serves, its defaults and choices."""

    cls: type
    keys: tuple[str, ...]
    defaults: dict[str, Any]
    choices: dict[str, tuple[str, ...]]

    def spec(self, name: str) -> Spec:
        """The field's spec, with the family's narrower choices where it has them."""
        s = specs(self.cls)[name]
        return dataclasses.replace(s, choices=self.choices[name]) if name in self.choices else s

    def default(self, name: str) -> Any:
        """The family's default of field ``name`` (the class's where the family sets none)."""
        if name in self.defaults:
            return self.defaults[name]
        return next(f.default for f in dataclasses.fields(self.cls) if f.name == name)


def table(
    cls: type, *, keys: tuple[str, ...] | None = None, choices: dict[str, tuple[str, ...]] | None = None, **defaults
) -> Any:
    """A config-class field holding table ``cls``, of which the family serves ``keys`` (default: all)
    with its ``defaults`` and narrower ``choices``."""
    t = Table(cls, keys or tuple(specs(cls)), defaults, choices or {})
    return dataclasses.field(default_factory=lambda: cls(**defaults), metadata={"table": t})


def run_folder() -> Any:
    """The top-level ``out_dir`` setting every family's config has."""
    return setting(
        None,
        "path",
        optional=True,
        expected="a path to a folder",
        help="the run folder (relative: to the config file's folder)",
        resume="safe",
    )


def tables(config_cls: type) -> dict[str, Table]:
    """The tables of a family's config class, by section name, in declaration (and TOML) order."""
    return {f.name: f.metadata["table"] for f in dataclasses.fields(config_cls) if "table" in f.metadata}


def family_specs(config_cls: type) -> dict[str, Spec]:
    """Every key a family's files take (``"train.epochs"``, ``"out_dir"``), with its spec."""
    out = {f"{name}.{k}": t.spec(k) for name, t in tables(config_cls).items() for k in t.keys}
    return out | specs(config_cls)


def check_tables(cfg: Any, title: str) -> None:
    """What every family's config checks on construction: table types, the family's choices, unserved
    keys left at their defaults, the built-in dataset's name, and the top-level settings (``out_dir``)."""
    for name, t in tables(type(cfg)).items():
        value = getattr(cfg, name)
        if not isinstance(value, t.cls):
            raise bad(name, f"a {t.cls.__name__}", value)
        for k in specs(t.cls):
            v, key = getattr(value, k), f"{name}.{k}"
            if k not in t.keys and v != t.default(k):
                raise bad(key, f"{t.default(k)!r}", v, f"{title} does not use {key}; leave it out")
            if k in t.choices:
                coerce(key, t.spec(k), v, words=False)
        if isinstance(value, DataConfig) and value.train_file is None and value.dataset not in NAMES:
            near = closest(value.dataset, NAMES)
            fix = f"did you mean {near!r}?" if near else ""
            if "train_file" in t.keys:
                fix += (" " if fix else "") + "or set data.train_file to train on your own .npy design matrix"
            raise bad("data.dataset", "one of " + ", ".join(map(repr, NAMES)), value.dataset, fix)
    validate(cfg)
    if getattr(cfg, "source", None) is not None:
        object.__setattr__(cfg, "source", str(cfg.source))
