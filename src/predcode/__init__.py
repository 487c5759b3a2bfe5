"""predcode: predictive-coding neural networks in JAX.

The names below load on first use (a module ``__getattr__``), so ``import predcode`` and
``predcode --version`` / ``--help`` do not import JAX, and importing predcode changes no global
state (matplotlib's backend, BLAS thread counts, ``jax.config``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from predcode.cells import BernoulliErrorCell, CategoricalErrorCell, GaussianErrorCell, LaplacianErrorCell
    from predcode.core import CellOutput, ErrorCell, Rule, SettlingModel, Solver, Term
    from predcode.dynamics import (
        AbstractSolver,
        AdaptiveHeun,
        Euler,
        Heun,
        SettleResult,
        StateOptimizer,
        settle,
        settle_model,
    )
    from predcode.learning.optim import keras_adam
    from predcode.learning.pc import PCTrainer
    from predcode.learning.rules import BackProp, DirectFeedbackAlignment, FeedbackAlignment, PredictiveCoding
    from predcode.learning.step import GNCNTrainer, pad_batch
    from predcode.learning.streaming import make_rule_trainer
    from predcode.learning.trainer import EnergyGradient, Hebbian, make_trainer
    from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, bce, total_discrepancy
    from predcode.models.mlp import MLP
    from predcode.models.network import Dense, Node, PCNetwork, residual_mlp
    from predcode.threads import lapack_threads

# public name -> the module that defines it
_LAZY = {
    "lapack_threads": "predcode.threads",
    "BernoulliErrorCell": "predcode.cells",
    "CategoricalErrorCell": "predcode.cells",
    "GaussianErrorCell": "predcode.cells",
    "LaplacianErrorCell": "predcode.cells",
    "CellOutput": "predcode.core",
    "ErrorCell": "predcode.core",
    "Rule": "predcode.core",
    "SettlingModel": "predcode.core",
    "Solver": "predcode.core",
    "Term": "predcode.core",
    "AbstractSolver": "predcode.dynamics",
    "AdaptiveHeun": "predcode.dynamics",
    "Euler": "predcode.dynamics",
    "Heun": "predcode.dynamics",
    "SettleResult": "predcode.dynamics",
    "StateOptimizer": "predcode.dynamics",
    "settle": "predcode.dynamics",
    "settle_model": "predcode.dynamics",
    "keras_adam": "predcode.learning.optim",
    "PCTrainer": "predcode.learning.pc",
    "BackProp": "predcode.learning.rules",
    "DirectFeedbackAlignment": "predcode.learning.rules",
    "FeedbackAlignment": "predcode.learning.rules",
    "PredictiveCoding": "predcode.learning.rules",
    "GNCNTrainer": "predcode.learning.step",
    "pad_batch": "predcode.learning.step",
    "make_rule_trainer": "predcode.learning.streaming",
    "EnergyGradient": "predcode.learning.trainer",
    "Hebbian": "predcode.learning.trainer",
    "make_trainer": "predcode.learning.trainer",
    "GNCN": "predcode.models.gncn",
    "MUSEUM": "predcode.models.gncn",
    "GNCNConfig": "predcode.models.gncn",
    "bce": "predcode.models.gncn",
    "total_discrepancy": "predcode.models.gncn",
    "MLP": "predcode.models.mlp",
    "Dense": "predcode.models.network",
    "Node": "predcode.models.network",
    "PCNetwork": "predcode.models.network",
    "residual_mlp": "predcode.models.network",
}

__all__ = [
    "AbstractSolver",
    "AdaptiveHeun",
    "BackProp",
    "BernoulliErrorCell",
    "CategoricalErrorCell",
    "CellOutput",
    "Dense",
    "DirectFeedbackAlignment",
    "EnergyGradient",
    "ErrorCell",
    "Euler",
    "FeedbackAlignment",
    "GNCN",
    "GNCNConfig",
    "GNCNTrainer",
    "GaussianErrorCell",
    "Hebbian",
    "Heun",
    "LaplacianErrorCell",
    "MLP",
    "MUSEUM",
    "Node",
    "PCNetwork",
    "PCTrainer",
    "PredictiveCoding",
    "Rule",
    "SettleResult",
    "SettlingModel",
    "Solver",
    "StateOptimizer",
    "Term",
    "__version__",
    "bce",
    "keras_adam",
    "lapack_threads",
    "make_rule_trainer",
    "make_trainer",
    "pad_batch",
    "residual_mlp",
    "settle",
    "settle_model",
    "total_discrepancy",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'predcode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
