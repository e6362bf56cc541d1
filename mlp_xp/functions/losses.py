"""Deprecated aliases of the NumPy path's losses (old names, positional flags)."""

from ..backend import numpy_path
from ..backend.kernels import LOSS_KERNELS, loss_kernel
from ..backend.scratch import fresh
from ..reference.loss import OUTPUTS, softmax

__all__ = [
    "LOSSES",
    "OUTPUTS",
    "loss_code",
    "sigmoid_binary_cross_entropy",
    "softmax",
    "softmax_cross_entropy",
    "squared_error",
]
LOSSES = {name: code for code, name in enumerate(LOSS_KERNELS)}


def loss_code(name):
    loss_kernel(name)
    return LOSSES[name]


def softmax_cross_entropy(z, y, acc, write_grad=True, smoothing=0.0, class_weight=None, scratch=fresh):
    numpy_path.softmax_xent(
        z, y, acc, write_grad=write_grad, smoothing=smoothing, class_weight=class_weight, scratch=scratch
    )


def sigmoid_binary_cross_entropy(z, y, acc, write_grad=True, scratch=fresh):
    numpy_path.sigmoid_bce(z, y, acc, write_grad=write_grad, scratch=scratch)


def squared_error(z, y, acc, write_grad=True, scratch=fresh):
    numpy_path.squared_error(z, y, acc, write_grad=write_grad, scratch=scratch)
