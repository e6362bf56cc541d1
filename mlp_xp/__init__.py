"""mlp_xp: multilayer perceptrons with hand-derived backpropagation on NumPy (CPU) or CuPy (CUDA)."""

from .backend import get_backend
from .errors import (
    BackendUnavailable,
    ConfigError,
    DataError,
    DatasetNotFound,
    DeviceMemoryError,
    DivergenceError,
    MLPXPError,
    ModelFileError,
)
from .model import MLP
from .trainer import History, TrainConfig, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "TrainConfig",
    "History",
    "fit",
    "evaluate",
    "get_backend",
    "MLPXPError",
    "ConfigError",
    "DataError",
    "DatasetNotFound",
    "DeviceMemoryError",
    "DivergenceError",
    "BackendUnavailable",
    "ModelFileError",
]
