"""The MLP family: a feedforward network trained by a credit-assignment rule (``[model] family = "mlp"``).

``rule`` picks backprop, feedback alignment (``fa``), direct feedback alignment (``dfa``) or
predictive coding (``pc``, with ``pc_steps`` inference steps of size ``pc_rate``); the images are
standardized by the training set's pixel mean and deviation. ``predcode fit --config
credit/mnist_fa`` trains one (``configs/credit/``; :mod:`predcode.experiments.mlp_fit`).
"""

# ruff: noqa: RUF009 (sections.table returns a dataclasses.field, as setting does)
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from predcode.activations import ACTIVATIONS
from predcode.experiments.config.sections import (
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    check_tables,
    run_folder,
    table,
)
from predcode.models.mlp import LOSSES
from predcode.schema import MAX_DIM, MAX_STEPS, bad, setting, validate

__all__ = ["MLPFitConfig", "MLPModelConfig", "RULES"]

RULES = ("backprop", "fa", "dfa", "pc")


@dataclass(frozen=True)
class MLPModelConfig:
    """The MLP and its learning rule."""

    SECTION: ClassVar[str] = "model"

    family: str = setting(
        "mlp",
        "str",
        choices=("mlp",),
        help="only mlp: a museum model's [model] has no family key, a PC network is a [network] table",
        resume="history",
    )
    sizes: tuple[int, ...] = setting(
        (784, 256, 256, 10),
        "ints",
        min_len=2,
        high=MAX_DIM,
        help="layer widths from the input (784 pixels) to the output (10 classes)",
        resume="history",
    )
    activation: str = setting(
        "relu", "str", choices=tuple(ACTIVATIONS), help="the hidden nonlinearity", resume="history"
    )
    loss: str = setting(
        "cross_entropy",
        "str",
        choices=LOSSES[:1],
        help="softmax cross-entropy on the integer labels (the credit study's)",
        resume="history",
    )
    rule: str = setting(
        "backprop", "str", choices=RULES, help="backprop, feedback alignment, direct FA or PC", resume="history"
    )
    pc_steps: int = setting(20, "int", low=1, high=MAX_STEPS, help="inference steps T of the pc rule", resume="history")
    pc_rate: float = setting(
        0.1, "float", low=0, open_low=True, help="inference step size of the pc rule", resume="history"
    )
    init_scale: float = setting(
        1.0, "float", low=0, open_low=True, help="multiplies the initial forward weights", resume="history"
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class MLPFitConfig:
    """Everything needed to train an MLP with one credit-assignment rule on a built-in dataset."""

    family: ClassVar[str] = "mlp"
    title: ClassVar[str] = "an MLP's config"

    model: MLPModelConfig = table(MLPModelConfig)
    data: DataConfig = table(DataConfig, keys=("dataset", "n_train", "n_val"), n_val=5000, binarize=False)
    train: TrainConfig = table(
        TrainConfig,
        keys=("batch_size", "epochs", "patience", "seed", "parallel_trials"),
        batch_size=128,
        epochs=20,
        patience=None,
        seed=0,
    )
    optimizer: OptimizerConfig = table(
        OptimizerConfig,
        keys=("name", "learning_rate", "schedule"),
        choices={"name": ("adam",), "schedule": ("cosine",)},
        name="adam",
        eps=1e-8,
        schedule="cosine",
    )
    out_dir: str | None = run_folder()
    source: str | None = field(default=None, compare=False)  # the file read; not compared

    def __post_init__(self) -> None:
        check_tables(self, self.title)
        if self.data.dataset != "mnist":
            raise bad("data.dataset", "'mnist' for an MLP", self.data.dataset, "the credit study trains on MNIST")
        if self.model.sizes[0] != 784 or self.model.sizes[-1] != 10:
            raise bad("model.sizes", "784 inputs and 10 outputs (MNIST)", list(self.model.sizes))
