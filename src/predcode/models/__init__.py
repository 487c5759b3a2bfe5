"""Model descriptions: the GNCN museum (one class, four configurations), general PC networks with
dense and convolutional transforms, and the MLP of the credit-assignment studies."""

from predcode.models.conv import AvgPool2d, Conv2d, ConvTranspose2d, Flatten, MaxPool2d, Reshape
from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig, lateral_matrix
from predcode.models.mlp import MLP
from predcode.models.network import Dense, NetworkError, Node, PCNetwork, Residual, Sequential, residual_mlp

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "ConvTranspose2d",
    "Dense",
    "Flatten",
    "GNCN",
    "GNCNConfig",
    "MLP",
    "MUSEUM",
    "MaxPool2d",
    "NetworkError",
    "Node",
    "PCNetwork",
    "Reshape",
    "Residual",
    "Sequential",
    "lateral_matrix",
    "residual_mlp",
]
