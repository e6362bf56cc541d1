"""Hidden-layer activations h = g(z) beside their derivatives g'(z).

Every derivative here is written in terms of the layer's *output* h, not its input z:

    identity     h = z                      g' = 1
    relu         h = max(z, 0)              g' = 1 if h > 0 else 0
    leaky_relu   h = z if z > 0 else a z    g' = 1 if h > 0 else a      (0 < a < 1 keeps the sign of z)
    sigmoid      h = 1 / (1 + e^-z)         g' = h (1 - h)
    tanh         h = tanh z                 g' = 1 - h^2

so the forward pass may overwrite z with h and the backward pass needs nothing else. The twin kernels
are ``bias_act_fwd`` and ``act_bwd`` in ``kernels/activation.cu``; the integer codes below are theirs.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._scratch import Scratch, constant, fresh

#: Kernel codes of the activations (``kernels/activation.cu`` switches on the same numbers).
ACTIVATIONS: dict[str, int] = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

#: Slope of leaky ReLU for z < 0 unless a model asks for another.
LEAKY_SLOPE = 0.01


def activation_code(name: str) -> int:
    """Return the kernel code of activation ``name``, or raise a ConfigError listing the valid names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}") from None


def bias_act_forward(
    z: np.ndarray, b: np.ndarray, activation: str, slope: float = LEAKY_SLOPE, scratch: Scratch = fresh
) -> None:
    """z <- g(z + b) in place, for a batch z of shape (B, n) and a bias b of shape (n,)."""
    z += b
    if activation == "identity":
        return
    if activation == "relu":
        np.maximum(z, constant(0.0, z.shape, z.dtype), out=z)
    elif activation == "leaky_relu":
        # a z < z exactly where z > 0 (0 < a < 1), so the larger of the two is g(z).
        az = scratch("act", z.shape, z.dtype)
        np.multiply(z, z.dtype.type(slope), out=az)
        np.maximum(z, az, out=z)
    elif activation == "sigmoid":
        sigmoid(z)
    elif activation == "tanh":
        np.tanh(z, out=z)
    else:
        activation_code(activation)


def sigmoid(z: np.ndarray) -> None:
    """z <- sigma(z) in place, as (1 + tanh(z/2)) / 2: unlike 1 / (1 + e^-z) it never overflows."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1
    z *= 0.5


def act_backward(
    dh: np.ndarray, h: np.ndarray, activation: str, slope: float = LEAKY_SLOPE, scratch: Scratch = fresh
) -> None:
    """dz = dh * g'(z), written in place over dh, with g' read off the layer's output h."""
    if activation == "identity":
        return
    gprime = scratch("act", h.shape, h.dtype)
    # g' is built as a float array and multiplied in: NumPy's masked writes (copyto where=) and
    # float-by-bool products are several times slower.
    if activation == "relu":
        np.greater(h, 0, out=gprime)  # 1 where h > 0, else 0
    elif activation == "leaky_relu":
        np.greater(h, 0, out=gprime)
        gprime *= 1 - slope
        gprime += slope  # 1 or a
    elif activation == "sigmoid":
        np.subtract(1, h, out=gprime)  # 1 - h
        gprime *= h  # h (1 - h)
    elif activation == "tanh":
        np.multiply(h, h, out=gprime)  # h^2
        np.subtract(1, gprime, out=gprime)  # 1 - h^2
    else:
        activation_code(activation)
    dh *= gprime
