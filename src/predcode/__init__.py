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
    from predcode.cells import BernoulliErrorCell, GaussianErrorCell, LaplacianErrorCell
    from predcode.dynamics import Euler, SettleResult, settle
    from predcode.learning.optim import keras_adam
    from predcode.learning.pc import PCTrainer
    from predcode.learning.rules import BackProp, DirectFeedbackAlignment, FeedbackAlignment, PredictiveCoding
    from predcode.learning.step import GNCNTrainer, make_trainer, pad_batch
    from predcode.learning.streaming import make_rule_trainer
    from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, bce, total_discrepancy
    from predcode.models.mlp import MLP
    from predcode.models.network import Dense, Node, PCNetwork
    from predcode.threads import lapack_threads

# public name -> the module that defines it
_LAZY = {
    "lapack_threads": "predcode.threads",
    "BernoulliErrorCell": "predcode.cells",
    "GaussianErrorCell": "predcode.cells",
    "LaplacianErrorCell": "predcode.cells",
    "Euler": "predcode.dynamics",
    "SettleResult": "predcode.dynamics",
    "settle": "predcode.dynamics",
    "keras_adam": "predcode.learning.optim",
    "PCTrainer": "predcode.learning.pc",
    "BackProp": "predcode.learning.rules",
    "DirectFeedbackAlignment": "predcode.learning.rules",
    "FeedbackAlignment": "predcode.learning.rules",
    "PredictiveCoding": "predcode.learning.rules",
    "GNCNTrainer": "predcode.learning.step",
    "make_trainer": "predcode.learning.step",
    "pad_batch": "predcode.learning.step",
    "make_rule_trainer": "predcode.learning.streaming",
    "GNCN": "predcode.models.gncn",
    "GNCNConfig": "predcode.models.gncn",
    "MUSEUM": "predcode.models.gncn",
    "bce": "predcode.models.gncn",
    "total_discrepancy": "predcode.models.gncn",
    "MLP": "predcode.models.mlp",
    "Dense": "predcode.models.network",
    "Node": "predcode.models.network",
    "PCNetwork": "predcode.models.network",
}

__all__ = [
    "BackProp",
    "BernoulliErrorCell",
    "Dense",
    "DirectFeedbackAlignment",
    "Euler",
    "FeedbackAlignment",
    "GNCN",
    "GNCNConfig",
    "GNCNTrainer",
    "GaussianErrorCell",
    "LaplacianErrorCell",
    "MLP",
    "MUSEUM",
    "Node",
    "PCNetwork",
    "PCTrainer",
    "PredictiveCoding",
    "SettleResult",
    "__version__",
    "bce",
    "keras_adam",
    "lapack_threads",
    "make_rule_trainer",
    "make_trainer",
    "pad_batch",
    "settle",
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
