"""Model descriptions: the GNCN museum (one class, four configurations)."""

from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, lateral_matrix
from predcode.models.mlp import MLP
from predcode.models.network import Dense, NetworkError, Node, PCNetwork

__all__ = ["Dense", "GNCN", "GNCNConfig", "MLP", "MUSEUM", "NetworkError", "Node", "PCNetwork", "lateral_matrix"]
