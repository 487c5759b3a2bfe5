"""The museum family: a GNCN model (``[model]``, :class:`GNCNConfig`) and the shared data, train, optimizer tables."""

# ruff: noqa: RUF009 (sections.table returns a dataclasses.field, as setting does)
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from predcode.experiments.config.sections import (
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    check_tables,
    run_folder,
    table,
)
from predcode.models.gncn import GNCNConfig
from predcode.schema import ConfigError, bad, closest, coerce, specs

__all__ = ["FitConfig", "IMAGE_DIM", "model_config"]

IMAGE_DIM = 784  # every dataset in predcode.data.NAMES holds 28 x 28 images


@dataclass(frozen=True)
class FitConfig:
    """Everything ``predcode fit`` needs to train a museum model. ``source`` (the file read) is not compared."""

    family: ClassVar[str] = "gncn"
    title: ClassVar[str] = "a museum model's config"

    model: GNCNConfig = table(GNCNConfig)
    data: DataConfig = table(DataConfig, keys=("dataset", "n_train", "n_val", "train_file", "val_file", "binarize"))
    train: TrainConfig = table(
        TrainConfig, keys=("batch_size", "eval_batch_size", "epochs", "patience", "seed", "parallel_trials")
    )
    optimizer: OptimizerConfig = table(
        OptimizerConfig, keys=("name", "learning_rate", "eps"), choices={"name": ("keras_adam", "adam", "sgd")}
    )
    out_dir: str | None = run_folder()
    source: str | None = field(default=None, compare=False)  # the file read; not compared

    def __post_init__(self) -> None:
        check_tables(self, self.title)
        if self.data.train_file is not None:
            return
        if not self.data.binarize:
            raise bad(
                "data.binarize",
                f"true for dataset {self.data.dataset!r}",
                self.data.binarize,
                "the built-in datasets are always binarized at 0.5; set data.train_file to train on grey levels",
            )
        if self.model.x_dim != IMAGE_DIM:
            raise bad(
                "model.x_dim",
                f"{IMAGE_DIM} for dataset {self.data.dataset!r}",
                self.model.x_dim,
                "its images are 28 x 28",
            )

    @staticmethod
    def rebase(cfg: FitConfig, doc: dict[str, Any], dotted: dict[str, Any]) -> None:
        """Before overrides: a new ``model.kind`` brings its own ``phi``, ``g_hidden`` and ``lmbda``
        unless they were set apart from the old kind's defaults or are overridden too."""
        from predcode.models.gncn import MUSEUM

        new_kind = dotted.get("model.kind", cfg.model.kind)
        if new_kind != cfg.model.kind:
            old = MUSEUM[cfg.model.kind]
            for name in ("phi", "g_hidden", "lmbda"):
                if f"model.{name}" not in dotted and doc["model"][name] == old[name]:
                    doc["model"][name] = None


def model_config(**values: Any) -> GNCNConfig:
    """A :class:`GNCNConfig` from keyword values as a file gives them (``"none"`` words allowed).

    Errors are :class:`ConfigError` on ``model.<key>``. ``None`` for ``lmbda``, ``phi`` or
    ``g_hidden`` takes the museum model's default.
    """
    known = specs(GNCNConfig)
    for name in values:
        if name not in known:
            near = closest(name, known)
            raise ConfigError(
                f"unknown key 'model.{name}'" + (f"; did you mean 'model.{near}'?" if near else ""), key=f"model.{name}"
            )
    return GNCNConfig(**{k: coerce(f"model.{k}", known[k], v) for k, v in values.items()})
