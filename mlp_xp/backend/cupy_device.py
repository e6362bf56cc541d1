"""The thin layer of the CUDA backend: every real CuPy call, and nothing that decides anything.

:class:`CupyDevice` allocates, copies, runs cuBLAS GEMMs, sorts, records events and captures graphs on one
device; :class:`RawModuleKernels` compiles ``kernels/*.cu`` with ``cupy.RawModule`` (NVRTC) on first use and
launches them. :class:`mlp_xp.backend.cupy_ops.CupyOps` makes every decision above them. Only this module
needs a real GPU: the ``gpu``-marked tests and ``mlp-xp doctor`` exercise it, and ``tests/cuda_host`` stands in
for it everywhere else (``HostDevice`` for CupyDevice, ``HostKernels`` for RawModuleKernels).
"""

from __future__ import annotations

import numpy as np

from ..errors import DeviceMemoryError
from . import kernels


class CupyDevice:
    """Allocation, transfers, GEMM, sorting and timing on one CUDA device, through CuPy."""

    def __init__(self, index: int) -> None:
        import cupy
        import cupy.cublas  # loads cuBLAS now, not inside the first step

        self.cp = cupy
        self.xp = cupy
        self.index = index
        self.device = cupy.cuda.Device(index)
        self.device.use()
        # All of this backend's work goes to one non-blocking stream (the current stream of this thread):
        # a CUDA graph can only be captured from such a stream.
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.stream.use()
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self._peek: dict[int, tuple] = {}

    def device_of(self, a) -> int | None:
        return a.device.id

    def allocate(self, shape, dtype, *, zero: bool):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        try:
            return (self.cp.zeros if zero else self.cp.empty)(shape, dtype)
        except MemoryError:
            raise self._oom(
                nbytes, f"an array of shape {tuple(np.atleast_1d(shape))} ({np.dtype(dtype).name})"
            ) from None

    def from_host(self, arr, dtype):
        free, total = self.memory()
        if arr.size * dtype.itemsize > free:
            raise self._oom(arr.size * dtype.itemsize, f"data of shape {arr.shape} ({dtype.name})")
        try:
            if isinstance(arr, self.cp.ndarray):  # a copy, never an alias of the caller's
                return self.cp.array(arr, dtype=dtype, order="C", copy=True)
            return self.cp.asarray(np.ascontiguousarray(arr, dtype=dtype))
        except MemoryError:
            raise self._oom(arr.size * dtype.itemsize, f"data of shape {arr.shape} ({dtype.name})") from None

    def memory(self) -> tuple[int, int]:
        free, total = self.cp.cuda.runtime.memGetInfo()
        return free + self.cp.get_default_memory_pool().free_bytes(), total

    def _oom(self, nbytes: int, what: str) -> DeviceMemoryError:
        free, total = self.memory()
        mib = 1 << 20
        return DeviceMemoryError(
            f"cuda:{self.index} ran out of memory: {what} needs {nbytes / mib:,.1f} MiB but only "
            f"{free / mib:,.1f} MiB of {total / mib:,.1f} MiB are free; use a smaller batch size or model, or "
            "train on a subset of the data"
        )

    def to_host(self, a) -> np.ndarray:
        return self.cp.asnumpy(a)

    def peek(self, a) -> np.ndarray:
        # An asynchronous copy into pinned memory; the value returned is the newest copy that has already
        # landed, so the host never waits for the device.
        import cupyx

        key = (a.data.ptr, a.shape, a.dtype.str)  # the memory, not the view object (views come and go)
        slot = self._peek.get(key)
        if slot is None:
            host = cupyx.empty_pinned(a.shape, a.dtype)
            host[...] = 0
            slot = self._peek[key] = (host, None)
        host, event = slot
        if event is None or event.done:
            a.get(out=host, blocking=False)
            event = self.cp.cuda.Event(disable_timing=True)
            event.record()
            self._peek[key] = (host, event)
        return host

    def gemm(self, a, b, out, *, trans_a: bool, trans_b: bool, accumulate: float) -> None:
        # cupy.cublas.gemm takes C- or F-contiguous operands without copying and honours beta in place.
        self.cp.cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", a, b, out=out, alpha=1.0, beta=accumulate)

    def argsort(self, keys):
        return self.cp.argsort(keys)

    def copy(self, dst, src) -> None:
        self.cp.copyto(dst, src)

    def fill(self, a, value) -> None:
        a.fill(value)

    def capture(self, fn):
        self.stream.begin_capture()
        try:
            fn()
        finally:
            graph = self.stream.end_capture()
        return graph

    def replay(self, graph) -> None:
        graph.launch(self.stream)

    def timestamp(self):
        event = self.cp.cuda.Event()
        event.record()
        return event

    def seconds_between(self, start, end) -> float:
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end) / 1000.0

    def synchronize(self) -> None:
        self.device.synchronize()


class RawModuleKernels:
    """kernels/*.cu compiled by CuPy's RawModule (NVRTC), one module per file, on first use, once per process."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._modules: dict[str, object] = {}
        self._functions: dict[str, object] = {}

    def function(self, name: str):
        fn = self._functions.get(name)
        if fn is None:
            import cupy

            fname = kernels.file_of(name)
            module = self._modules.get(fname)
            if module is None:
                module = self._modules[fname] = cupy.RawModule(
                    code=kernels.source(fname), options=("--std=c++17",), name_expressions=kernels.KERNELS[fname]
                )
            fn = self._functions[name] = module.get_function(name)
        return fn

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        self.function(name)(grid, block, args, shared_mem=shared_mem)

    def preload(self, names) -> None:
        for name in names:
            self.function(name)
