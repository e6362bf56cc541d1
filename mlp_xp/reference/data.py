"""Epoch permutations and batch gathers.

A permutation is the argsort of one 64-bit hash per row, key_i = mix(base + i GAMMA), with
base = mix(mix(seed + GAMMA) ^ epoch) and mix the SplitMix64 finalizer. The keys are a pure function of
(seed, epoch, i), so every backend computes the same permutation without drawing from a random generator and
without copying indices across: the same seed gives the same batches everywhere.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(x: int) -> int:
    """SplitMix64's finalizer on a Python int."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _M1) & MASK64
    x = ((x ^ (x >> 27)) * _M2) & MASK64
    return x ^ (x >> 31)


def epoch_base(seed: int, epoch: int) -> int:
    """The per-epoch offset of the key stream (a kernel takes it as an unsigned 64-bit scalar)."""
    return mix64((mix64(seed + GAMMA) ^ epoch) & MASK64)


def shuffle_keys(n: int, seed: int, epoch: int) -> np.ndarray:
    """key_i = mix(base + i GAMMA) for i < n, as uint64 (wrapping arithmetic, as in C).

    Implementations: ``shuffle_keys`` in kernels/data.cu.
    """
    keys = np.arange(n, dtype=np.uint64) * np.uint64(GAMMA) + np.uint64(epoch_base(seed, epoch))
    keys ^= keys >> np.uint64(30)
    keys *= np.uint64(_M1)
    keys ^= keys >> np.uint64(27)
    keys *= np.uint64(_M2)
    keys ^= keys >> np.uint64(31)
    return keys


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of ``epoch``: the (stable) argsort of the keys.

    Implementations: ``permutation`` in mlp_xp/backend/numpy_ops.py (this function) and
    mlp_xp/backend/cupy_ops.py (``shuffle_keys`` in kernels/data.cu, then CuPy's argsort).
    """
    return np.argsort(shuffle_keys(n, seed, epoch), kind="stable")


def gather_rows(X, Y, idx, xb, yb, W=None, wb=None) -> None:
    """xb <- X[idx], yb <- Y[idx] (and wb <- W[idx], the rows' weights, where W is given): one mini-batch.

    Implementations: ``gather_rows`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp (a row copy), kernels/data.cu;
    for a SciPy CSR X, ``gather_rows`` in mlp_xp/backend/numpy_ops.py (the batch's rows densified).
    """
    xb[...] = X[idx]
    yb[...] = Y[idx]
    if W is not None:
        wb[...] = W[idx]
