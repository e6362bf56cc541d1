"""A layer's forward and backward pass: matrix product, bias + activation, activation derivative, bias gradient.

The notes write one sample as a column, z = W h + b. Here a batch holds one sample per row and W is stored
(fan_in, fan_out), the notes' W transposed, so the same equations read, for a batch of rows:

    forward    z = h_prev W + b           h = g(z)
    backward   dW = h_prev^T g            db = sum of g over the rows
               dh_prev = g W^T            g_prev = dh_prev * g'(z_prev)

where g is dL/dz of the layer. The activations and their derivatives, g' written in terms of the output h
(so that the forward pass may overwrite z with h and the backward pass needs nothing else):

    identity     h = z                      g' = 1
    relu         h = max(z, 0)              g' = 1 if h > 0 else 0
    leaky_relu   h = z if z > 0 else a z    g' = 1 if h > 0 else a      (0 < a < 1 keeps the sign of z)
    sigmoid      h = 1 / (1 + e^-z)         g' = h (1 - h)
    tanh         h = tanh z                 g' = 1 - h^2
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")

#: Slope a of leaky ReLU for z < 0 unless a model asks for another.
LEAKY_SLOPE = 0.01


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z); for z << 0, e^-z = inf gives 0, as it should."""
    with np.errstate(over="ignore", under="ignore"):
        return 1 / (1 + np.exp(-z))


def activate(z: np.ndarray, activation: str, slope: float = LEAKY_SLOPE) -> np.ndarray:
    """h = g(z). Implementations: ``k_activate`` in kernels/common.cuh (the compiled loops and the CUDA kernels
    share it, but for the compiled loops' sigmoid and tanh: ``sigmoid_v`` and ``tanh_v`` in kernels/cpu.cpp,
    which vectorize); the NumPy path's ``bias_act`` in mlp_xp/backend/numpy_path.py."""
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if activation == "sigmoid":
        return sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    return z


def derivative(h: np.ndarray, activation: str, slope: float = LEAKY_SLOPE) -> np.ndarray:
    """g'(z), read off the output h = g(z). For relu and leaky_relu it is a comparison, exactly 1 where h > 0 and
    0 (or a) elsewhere, a NaN h included (it compares false); see ``act_backward`` for NaN and infinity.
    Implementations: ``k_derivative`` in kernels/common.cuh (ReLU's and leaky ReLU's built with ``select_bits`` in
    kernels/cpu.cpp, the same values); the NumPy path's ``act_backward`` in mlp_xp/backend/numpy_path.py."""
    if activation == "relu":
        return np.where(h > 0, 1.0, 0.0)
    if activation == "leaky_relu":
        return np.where(h > 0, 1.0, slope)
    if activation == "sigmoid":
        return h * (1 - h)
    if activation == "tanh":
        return 1 - h**2
    return np.ones_like(h)


def matmul(a, b, out, *, trans_a: bool = False, trans_b: bool = False, accumulate: float = 0.0) -> None:
    """out <- op(a) op(b) + accumulate out, op(x) = x^T where its flag is set.

    Implementations: ``matmul`` in mlp_xp/backend/numpy_ops.py (NumPy's matmul, or NumPy's BLAS called directly
    by ``matmul`` in mlp_xp/backend/blas.py); on CUDA cuBLAS, inside a captured graph called directly by
    ``GraphGemm.gemm`` in mlp_xp/backend/cublas_graph.py, and ``gemm`` in kernels/gemm.cu (with gemm="kernel", or
    in a graph where cuBLAS cannot be called directly).
    """
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    out[...] = product + accumulate * out if accumulate else product


def bias_act(z, b, activation: str, slope: float = LEAKY_SLOPE) -> None:
    """z <- g(z + b), in place.

    Implementations: ``bias_act`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/activation.cu.
    """
    z[...] = activate(z + b, activation, slope)


def act_backward(dh, h, activation: str, slope: float = LEAKY_SLOPE) -> None:
    """dh <- dh * g'(z), in place, g' read off the layer's output h.

    NaN and infinity, in dh or in h: the result is the product dh * g'(h) as IEEE arithmetic gives it, with g'
    as ``derivative`` gives it (relu: 1 where h > 0, else 0; leaky_relu: 1 or a; sigmoid h (1 - h); tanh
    1 - h^2; identity leaves dh as it is), in the arrays' precision (here relu's and leaky_relu's g' is float64
    and the product is rounded once into dh: the same special values). So:

    * a NaN in dh gives NaN, whatever h (NaN * 0 is NaN);
    * an infinite dh gives NaN where g' is 0 (inf * 0: where a ReLU is off) or NaN, an infinity elsewhere;
    * a NaN in h gives NaN for sigmoid and tanh; for relu and leaky_relu it compares false, so g' is 0 or a
      and a finite dh gives a finite result. That NaN is not hidden: it came from the forward pass, which
      carried it on into the loss (the trainer's divergence check reads the loss) and into the next layer's
      dW = h^T g, and back, through the loss gradient of its row, into dh of that row;
    * an infinite h gives g' = 1 or 0 (a) for relu and leaky_relu, and -inf for sigmoid and tanh.

    Chosen so that a NaN or infinite gradient never becomes a finite number: a diverging run must not look
    like a converging one. The alternative, bitwise masks that zero dh where a ReLU is off, would hide them.
    Every implementation gives exactly this (tests/test_activation_nonfinite.py), zeros' signs included; a
    NaN's payload and sign are unspecified.

    Implementations: ``act_backward`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/activation.cu.
    """
    dh[...] = dh * derivative(h, activation, slope)


def bias_grad(g, out, *, accumulate: float = 0.0) -> None:
    """out <- db + accumulate out, db = sum of g over the rows.

    Implementations: ``bias_grad`` in mlp_xp/backend/numpy_ops.py, kernels/cpu.cpp, kernels/activation.cu.
    """
    db = g.sum(axis=0)
    out[...] = db + accumulate * out if accumulate else db
