"""Deprecated aliases: :mod:`mlp_xp.reference.layer` and the NumPy path's bias_act and act_backward."""

from ..backend import numpy_path
from ..backend.kernels import ACTIVATION_CODES as ACTIVATIONS
from ..backend.kernels import activation_code
from ..backend.scratch import fresh
from ..reference.layer import LEAKY_SLOPE

__all__ = ["ACTIVATIONS", "LEAKY_SLOPE", "act_backward", "activation_code", "bias_act_forward", "sigmoid"]
sigmoid = numpy_path.sigmoid


def bias_act_forward(z, b, activation, slope=LEAKY_SLOPE, scratch=fresh):
    activation_code(activation)
    numpy_path.bias_act(z, b, activation, slope, scratch)


def act_backward(dh, h, activation, slope=LEAKY_SLOPE, scratch=fresh):
    activation_code(activation)
    numpy_path.act_backward(dh, h, activation, slope, scratch)
