"""predcode: predictive-coding neural networks in JAX."""

__version__ = "0.1.0"

from predcode.cells import BernoulliErrorCell, GaussianErrorCell, LaplacianErrorCell
from predcode.dynamics import Euler, SettleResult, settle
from predcode.learning.optim import keras_adam
from predcode.learning.pc import PCTrainer
from predcode.learning.step import GNCNTrainer, make_trainer, pad_batch
from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, bce, total_discrepancy
from predcode.models.network import Dense, Node, PCNetwork

__all__ = [
    "BernoulliErrorCell",
    "Dense",
    "Euler",
    "GNCN",
    "GNCNConfig",
    "GNCNTrainer",
    "GaussianErrorCell",
    "LaplacianErrorCell",
    "MUSEUM",
    "Node",
    "PCNetwork",
    "PCTrainer",
    "SettleResult",
    "__version__",
    "bce",
    "keras_adam",
    "make_trainer",
    "pad_batch",
    "settle",
    "total_discrepancy",
]
