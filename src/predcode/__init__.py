"""predcode: predictive-coding neural networks in JAX."""

__version__ = "0.1.0"

from predcode.cells import BernoulliErrorCell, GaussianErrorCell, LaplacianErrorCell
from predcode.core import CellOutput, ErrorCell, Rule, SettlingModel, Solver, Term
from predcode.dynamics import AbstractSolver, Euler, Heun, SettleResult, StateOptimizer, settle, settle_model
from predcode.learning.optim import keras_adam
from predcode.learning.pc import PCTrainer
from predcode.learning.rules import BackProp, DirectFeedbackAlignment, FeedbackAlignment, PredictiveCoding
from predcode.learning.step import GNCNTrainer, pad_batch
from predcode.learning.streaming import make_rule_trainer
from predcode.learning.trainer import EnergyGradient, Hebbian, make_trainer
from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, bce, total_discrepancy
from predcode.models.mlp import MLP
from predcode.models.network import Dense, Node, PCNetwork

__all__ = [
    "AbstractSolver",
    "BackProp",
    "BernoulliErrorCell",
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
    "make_rule_trainer",
    "make_trainer",
    "pad_batch",
    "settle",
    "settle_model",
    "total_discrepancy",
]
