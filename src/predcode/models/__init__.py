"""Model descriptions: the GNCN museum (one class, four configurations)."""

from predcode.models.gncn import GNCN, GNCNConfig, MUSEUM, lateral_matrix

__all__ = ["GNCN", "GNCNConfig", "MUSEUM", "lateral_matrix"]
