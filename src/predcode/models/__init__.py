"""Model descriptions: the GNCN museum (one class, four configurations)."""

from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, lateral_matrix
from predcode.models.mlp import MLP
from predcode.models.network import Dense, NetworkError, Node, PCNetwork, Residual, residual_mlp

__all__ = [
    "Dense",
    "GNCN",
    "GNCNConfig",
    "MLP",
    "MUSEUM",
    "NetworkError",
    "Node",
    "PCNetwork",
    "Residual",
    "lateral_matrix",
    "residual_mlp",
]
