"""Learning rules and constraints: Hebbian updates, the covariance rule, optimizers, norm clipping."""

from predcode.learning.constraints import clip_column_norms
from predcode.learning.covariance import (
    gaussian_nll_sigma_grad,
    init_covariance,
    legacy_precision,
    legacy_sigma_update,
)
from predcode.learning.hebbian import hebbian
from predcode.learning.optim import keras_adam

__all__ = [
    "clip_column_norms",
    "gaussian_nll_sigma_grad",
    "hebbian",
    "init_covariance",
    "keras_adam",
    "legacy_precision",
    "legacy_sigma_update",
]
