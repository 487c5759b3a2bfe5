"""Learning rules and constraints: Hebbian, covariance, credit assignment (BP, FA, DFA, PC), optimizers, clipping."""

from predcode.learning.constraints import clip_column_norms
from predcode.learning.covariance import (
    gaussian_nll_sigma_grad,
    init_covariance,
    legacy_precision,
    legacy_sigma_update,
)
from predcode.learning.hebbian import hebbian
from predcode.learning.optim import keras_adam
from predcode.learning.rules import BackProp, DirectFeedbackAlignment, FeedbackAlignment, PredictiveCoding
from predcode.learning.streaming import make_rule_trainer, online
from predcode.learning.trainer import EnergyGradient, Hebbian, make_trainer, training_step

__all__ = [
    "BackProp",
    "DirectFeedbackAlignment",
    "EnergyGradient",
    "FeedbackAlignment",
    "Hebbian",
    "PredictiveCoding",
    "clip_column_norms",
    "gaussian_nll_sigma_grad",
    "hebbian",
    "init_covariance",
    "keras_adam",
    "legacy_precision",
    "legacy_sigma_update",
    "make_rule_trainer",
    "make_trainer",
    "online",
    "training_step",
]
