"""predcode: predictive-coding neural networks in JAX."""

__version__ = "0.1.0"

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
    "make_rule_trainer",
    "make_trainer",
    "pad_batch",
    "settle",
    "total_discrepancy",
]
