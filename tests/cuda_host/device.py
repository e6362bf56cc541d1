"""A NumPy stand-in for the CuPy backend's thin device layer (mlp_xp.backend.cupy_ops.CupyDevice).

With it and ``HostKernels``, ``CupyOps`` runs its own code (checks, geometry, dtypes, argument order) on
the CPU. Each method here does what the CuPy call it replaces does, in NumPy.
"""

from __future__ import annotations

import time

import numpy as np


class HostDevice:
    xp = np
    name = "CPU harness"

    def device_of(self, a) -> None:
        return None

    def allocate(self, shape, dtype, zero: bool):
        return (np.zeros if zero else np.empty)(shape, dtype)

    def from_host(self, arr, dtype):
        return np.array(arr, dtype=dtype, order="C", copy=True)

    def to_host(self, a) -> np.ndarray:
        return np.array(a, copy=True)

    def peek(self, a) -> np.ndarray:
        return a

    def gemm(self, a, b, out, trans_a, trans_b, beta) -> None:
        prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if beta:
            out *= beta
            out += prod
        else:
            out[...] = prod

    def argsort(self, keys):
        # cupy.argsort of integer keys is Thrust's stable radix sort.
        return np.argsort(keys, kind="stable")

    def copy(self, dst, src) -> None:
        np.copyto(dst, src)

    def timestamp(self):
        return time.perf_counter()

    def seconds_between(self, start, end) -> float:
        return end - start

    def synchronize(self) -> None:
        pass
