"""A NumPy stand-in for the CuPy backend's thin device layer (mlp_xp.backend.cupy_device.CupyDevice).

With it and ``HostKernels``, ``CupyOps`` runs its own code (checks, geometry, dtypes, argument order) on
the CPU. Each method here does what the CuPy call it replaces does, in NumPy.
"""

from __future__ import annotations

import time

import numpy as np


class CaptureError(RuntimeError):
    """What CuPy raises for work that a CUDA graph cannot hold (cuBLAS calls, syncs) during stream capture."""


class HostDevice:
    """Stands in for CupyDevice. ``capture`` records kernel launches instead of running them, and refuses
    everything a CUDA stream capture under CuPy would refuse or that a step must not do (cuBLAS, host
    copies, allocation, sorting): a captured step that passes here holds only kernel launches."""

    xp = np
    name = "CPU harness"

    def __init__(self, kernels) -> None:
        self.kernels = kernels
        self.capturing = False

    def _no_capture(self, what: str) -> None:
        if self.capturing:
            raise CaptureError(f"{what} during stream capture")

    def capture(self, fn):
        self.kernels.recording, self.capturing = [], True
        try:
            fn()
            return list(self.kernels.recording)
        finally:
            self.kernels.recording, self.capturing = None, False

    def replay(self, graph) -> None:
        for call in graph:
            call()

    def device_of(self, a) -> None:
        return None

    def allocate(self, shape, dtype, *, zero: bool):
        self._no_capture("allocation")
        return (np.zeros if zero else np.empty)(shape, dtype)

    def from_host(self, arr, dtype):
        self._no_capture("host-to-device copy")
        return np.array(arr, dtype=dtype, order="C", copy=True)

    def to_host(self, a) -> np.ndarray:
        self._no_capture("device-to-host copy")
        return np.array(a, copy=True)

    def peek(self, a) -> np.ndarray:
        return a

    def gemm(self, a, b, out, *, trans_a, trans_b, accumulate) -> None:
        self._no_capture("cuBLAS call")
        prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if accumulate:
            out *= accumulate
            out += prod
        else:
            out[...] = prod

    def argsort(self, keys):
        self._no_capture("sort")
        # cupy.argsort of integer keys is Thrust's stable radix sort.
        return np.argsort(keys, kind="stable")

    def copy(self, dst, src) -> None:
        self._no_capture("device copy")
        np.copyto(dst, src)

    def fill(self, a, value) -> None:
        self._no_capture("fill")
        a.fill(value)

    def timestamp(self):
        return time.perf_counter()

    def seconds_between(self, start, end) -> float:
        return end - start

    def synchronize(self) -> None:
        pass
