"""The thin layer of the CUDA backend: every real CuPy call, and nothing that decides anything.

:class:`CupyDevice` allocates, copies, runs cuBLAS GEMMs, sorts, records events and captures graphs on one
device; :class:`RawModuleKernels` compiles ``kernels/*.cu`` with ``cupy.RawModule`` (NVRTC) on first use and
launches them. :class:`mlp_xp.backend.cupy_ops.CupyOps` makes every decision above them.

Every call here names its device and stream: the backend's work goes to its own non-blocking stream on its
own device, whatever the calling thread has made current (another backend, another device, a ``with
cupy.cuda.Stream()`` of the user's), and it never changes what is current for the caller. CuPy would otherwise
use the thread's current device and stream for allocation, kernels, cuBLAS and copies (see ARCHITECTURE.md,
"The CUDA layer").

Only this module needs a real GPU: the ``gpu``-marked tests, ``mlp-xp doctor`` and
``benchmarks/gpu_check.py`` exercise it there. Everywhere else it runs unmodified on the CPU model of CuPy in
``tests/cuda_host/fake_cupy.py``.
"""

from __future__ import annotations

import ctypes
import threading
import warnings

import numpy as np

from ..errors import BackendUnavailable, ConfigError, DeviceMemoryError, install_hint
from . import kernels

#: cuBLAS workspace for GEMMs inside a graph: 32 MiB is what cuBLAS asks for on Hopper (4 MiB before).
GRAPH_GEMM_WORKSPACE = 32 << 20


class GraphCaptureError(RuntimeError):
    """A CUDA graph capture that did not record the step's work."""


class _On:
    """``with dev.on:`` makes the backend's device (and, unless ``stream`` is False, its stream) current for CuPy
    calls, and restores the caller's.

    The device is switched only when it is not current already, and switched back only to a device that has a
    CUDA context: ``cudaSetDevice`` creates one, so restoring device 0 to a thread that never used it (every new
    thread reports device 0) would cost a context on GPU 0 for a backend on cuda:1, and fail outright where GPU 0
    is exclusive to another process (PyTorch's MaybeSetDevice does the same).
    """

    __slots__ = ("dev", "stream", "_stack")

    def __init__(self, dev: CupyDevice, stream: bool = True) -> None:
        self.dev, self.stream, self._stack = dev, stream, []

    def __enter__(self) -> None:
        runtime = self.dev.cp.cuda.runtime
        before = runtime.getDevice()
        if before != self.dev.index:
            runtime.setDevice(self.dev.index)
        self._stack.append(before)
        if self.stream:
            self.dev.stream.__enter__()

    def __exit__(self, *exc) -> None:
        if self.stream:
            self.dev.stream.__exit__(*exc)
        before = self._stack.pop()
        if before != self.dev.index and self.dev.driver.has_context(before):
            self.dev.cp.cuda.runtime.setDevice(before)


#: CUstreamCaptureStatus of cuda.h: the capture is running (not invalidated).
CU_STREAM_CAPTURE_STATUS_ACTIVE = 1


class LibcudaDriver:
    """The CUDA driver calls CuPy does not wrap, through ``libcuda.so.1`` (which CuPy has loaded already).

    Prototypes, from ``cuda.h`` of CUDA 13.0 (CUDA_VERSION 13000); each symbol has been exported under this name
    since the CUDA version given, and still is:

    - ``CUresult cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
      cuuint64_t *id_out, CUgraph *graph_out, const CUgraphNode **dependencies_out, size_t *numDependencies_out);``
      (11.3): the graph a stream is capturing into, while it captures. CuPy 13 destroys a graph's definition
      as soon as it is instantiated (its ``Graph.graph`` is 0), so the nodes are counted before ``end_capture``.
    - ``CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes);`` (10.0): with ``nodes``
      NULL, the count.
    - ``CUresult cuDeviceGet(CUdevice *device, int ordinal);`` and ``CUresult cuDevicePrimaryCtxGetState(CUdevice
      dev, unsigned int *flags, int *active);`` (7.0): whether a device has a context already.
    """

    def __init__(self, path: str = "libcuda.so.1") -> None:
        lib = ctypes.CDLL(path)
        p, i, u = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
        self._capture_info = self._bind(
            lib,
            "cuStreamGetCaptureInfo_v2",
            [
                p,
                ctypes.POINTER(i),
                ctypes.POINTER(ctypes.c_uint64),
                ctypes.POINTER(p),
                ctypes.POINTER(p),
                ctypes.POINTER(ctypes.c_size_t),
            ],
        )
        self._get_nodes = self._bind(lib, "cuGraphGetNodes", [p, p, ctypes.POINTER(ctypes.c_size_t)])
        self._device_get = self._bind(lib, "cuDeviceGet", [ctypes.POINTER(i), i])
        self._ctx_state = self._bind(lib, "cuDevicePrimaryCtxGetState", [i, ctypes.POINTER(u), ctypes.POINTER(i)])

    @staticmethod
    def _bind(lib, name: str, argtypes: list):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, argtypes
        return fn

    @staticmethod
    def _check(status: int, call: str) -> None:
        if status != 0:
            raise GraphCaptureError(f"{call} failed with CUresult {status}")

    def graph_node_count(self, graph_handle: int) -> int:
        """The nodes of a graph (a ``cudaGraph_t``)."""
        count = ctypes.c_size_t(0)
        self._check(self._get_nodes(ctypes.c_void_p(graph_handle), None, ctypes.byref(count)), "cuGraphGetNodes")
        return int(count.value)

    def capture_node_count(self, stream_handle: int) -> int:
        """The nodes recorded so far by the capture running on a stream; -1 where the capture was invalidated."""
        status, graph = ctypes.c_int(0), ctypes.c_void_p(0)
        ident, deps, ndeps = ctypes.c_uint64(0), ctypes.c_void_p(0), ctypes.c_size_t(0)
        self._check(
            self._capture_info(
                ctypes.c_void_p(stream_handle),
                ctypes.byref(status),
                ctypes.byref(ident),
                ctypes.byref(graph),
                ctypes.byref(deps),
                ctypes.byref(ndeps),
            ),
            "cuStreamGetCaptureInfo_v2",
        )
        if status.value != CU_STREAM_CAPTURE_STATUS_ACTIVE or not graph.value:
            return -1
        return self.graph_node_count(graph.value)

    def has_context(self, ordinal: int) -> bool:
        """Whether device ``ordinal`` has its primary context already (True where that cannot be told)."""
        dev, flags, active = ctypes.c_int(0), ctypes.c_uint(0), ctypes.c_int(0)
        if self._device_get(ctypes.byref(dev), ordinal) != 0:
            return True
        if self._ctx_state(dev, ctypes.byref(flags), ctypes.byref(active)) != 0:
            return True
        return bool(active.value)


class CupyDevice:
    """Allocation, transfers, GEMM, sorting, timing and graphs on one CUDA device, through CuPy.

    A backend is used from one thread at a time (the trainer's); a capture holds a lock, so a second thread's
    capture on the same backend fails at once instead of interleaving its work into the graph.

    Parameters
    ----------
    index : int
        The CUDA device.
    cupy : module, optional
        The ``cupy`` module (tests pass the CPU model of ``tests/cuda_host/fake_cupy.py``).
    driver, cublas_library : optional
        The node counter of captured graphs (default :class:`LibcudaDriver`) and the cuBLAS library for GEMMs
        inside graphs (default: the libcublas CuPy loaded, through :mod:`mlp_xp.backend.cublas_graph`).
    """

    #: How ``on`` and ``on_device`` switch device and stream (a class attribute, so that tests can swap it).
    switch = _On

    def __init__(self, index: int, *, cupy=None, driver=None, cublas_library=None) -> None:
        if cupy is None:
            import cupy

            try:
                import cupy.cublas  # noqa: F401 - loads cuBLAS now, not inside the first step
            except ImportError as e:
                raise BackendUnavailable(
                    f"CUDA backend unavailable: CuPy cannot load cuBLAS ({e}): install the CUDA libraries of "
                    f"your CuPy build (for CUDA 12 {install_hint('cuda12')}; for CUDA 13 {install_hint('cuda13')}), "
                    "or use --device cpu"
                ) from None
        self.cp = self.xp = cupy
        self.index = index
        self._driver, self._cublas_library = driver, cublas_library
        self.device = cupy.cuda.Device(index)
        self.on_device = self.switch(self, stream=False)
        with self.on_device:
            self.stream = cupy.cuda.Stream(non_blocking=True)
            # A non-blocking stream is not ordered after the legacy stream: wait for what the caller queued
            # before this backend existed (an upload of X with cupy.asarray, say).
            self.stream.wait_event(cupy.cuda.get_current_stream().record())
            props = cupy.cuda.runtime.getDeviceProperties(index)
        self.on = self.switch(self)
        name = props["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self._graph_gemm = None
        self._capture_lock = threading.Lock()
        self._peek: dict[tuple, list] = {}
        self._graph_nodes: dict[int, int] = {}  # id(graph) -> its node count, counted during the capture

    @property
    def driver(self):
        """The driver calls of :class:`LibcudaDriver` (made on first use)."""
        if self._driver is None:
            self._driver = LibcudaDriver()
        return self._driver

    def device_of(self, a) -> int | None:
        return a.device.id

    # ---- memory and transfers ----
    def allocate(self, shape, dtype, *, zero: bool):
        try:
            with self.on:
                return (self.cp.zeros if zero else self.cp.empty)(shape, dtype)
        except MemoryError:
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            what = f"an array of shape {tuple(np.atleast_1d(shape))} ({np.dtype(dtype).name})"
            raise self._oom(nbytes, what) from None

    def from_host(self, arr, dtype):
        """A new device array holding ``arr`` (NumPy, or a CuPy array of this device), never an alias of it."""
        try:
            if isinstance(arr, self.cp.ndarray):
                # The caller's array may still be being written on the caller's current stream.
                with self.on_device:
                    ready = self.cp.cuda.get_current_stream().record()
                self.stream.wait_event(ready)
                with self.on:
                    return self.cp.array(arr, dtype=dtype, copy=True, order="C")
            host = np.ascontiguousarray(arr, dtype=dtype)
            with self.on:
                # empty + set, not cupy.array: under CUPY_ENABLE_UMP=1 cupy.array wraps host memory without a
                # copy, even with copy=True; and set() does not stage through CuPy's pinned pool, which rounds a
                # staging buffer up to a power of two and keeps it for the life of the process.
                out = self.cp.empty(host.shape, dtype)
                out.set(host, stream=self.stream)
                return out
        except MemoryError:
            raise self._oom(arr.size * dtype.itemsize, f"data of shape {arr.shape} ({dtype.name})") from None

    def memory(self) -> tuple[int, int]:
        """Free (including the pool's cached blocks) and total bytes of the device."""
        with self.on_device:
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
        with self.on_device:
            return a.get(stream=self.stream)

    def foreign_to_host(self, a) -> np.ndarray:
        """A copy of another device's array, made on that device's current stream (so ordered after what was
        queued there for it), waiting for it."""
        with self.cp.cuda.Device(a.device.id):
            return a.get()

    def peek(self, a) -> np.ndarray:
        """The newest copy of ``a`` that has landed on the host, without waiting for the device.

        Two pinned buffers per array: a copy is queued into one while the other, whose copy has landed, is
        returned; the result is valid until the next ``peek`` of the same array (the progress bar reads it at
        once). Zeros until a first copy has landed.
        """
        key = (a.data.ptr, a.shape, a.dtype.str)  # the memory, not the view object (views come and go)
        slots = self._peek.get(key)
        if slots is None:
            cupyx = getattr(self.cp, "cupyx", None)  # the CPU model of CuPy carries its own
            if cupyx is None:
                import cupyx
            if len(self._peek) >= 8:  # one entry per fit's sums array: keep only the newest few
                for _, event in self._peek.pop(next(iter(self._peek))):
                    if event is not None:  # the pool may hand the buffer out again: no copy may be landing in it
                        event.synchronize()
            slots = self._peek[key] = [[cupyx.empty_pinned(a.shape, a.dtype), None] for _ in range(2)]
            for host, _ in slots:
                host[...] = 0
        landed, queued = slots
        if queued[1] is not None and not queued[1].done:
            return landed[0]  # the copy in flight has not landed: the older value is the newest there is
        if queued[1] is not None:
            slots.reverse()  # the queued copy has landed: it is returned, and the next copy goes to the other
            landed, queued = slots
        with self.on:
            a.get(stream=self.stream, out=queued[0], blocking=False)
            event = self.cp.cuda.Event(disable_timing=True)
            event.record(self.stream)
        queued[1] = event
        return landed[0]

    # ---- compute ----
    def gemm(self, a, b, out, *, trans_a: bool, trans_b: bool, accumulate: float) -> None:
        # cupy.cublas.gemm takes C- or F-contiguous operands without copying and honours beta in place.
        with self.on:
            self.cp.cublas.gemm(
                "T" if trans_a else "N", "T" if trans_b else "N", a, b, out=out, alpha=1.0, beta=accumulate
            )

    def graph_gemm(self, a, b, out, *, trans_a: bool, trans_b: bool, accumulate: float) -> None:
        """The same product through a dedicated cuBLAS handle, which a stream capture can record."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        gemm = self.capturable_gemm()
        with self.on_device:  # a cuBLAS handle belongs to the device current when it was made
            gemm.gemm(
                a.data.ptr,
                b.data.ptr,
                out.data.ptr,
                out.dtype,
                m,
                n,
                k,
                a.shape[1],
                b.shape[1],
                n,
                bool(trans_a),
                bool(trans_b),
                1.0,
                float(accumulate),
            )

    def capturable_gemm(self):
        """The dedicated cuBLAS handle of graph steps: on this backend's stream, with its own workspace (made
        on first use, outside any capture)."""
        if self._graph_gemm is None:
            from .cublas_graph import CublasLibrary, GraphGemm, find_libcublas

            lib = self._cublas_library
            if lib is None:
                lib = ctypes.CDLL(find_libcublas())
            workspace = self.allocate((GRAPH_GEMM_WORKSPACE,), np.uint8, zero=False)
            with self.on_device:
                gemm = GraphGemm(CublasLibrary(lib), self.stream.ptr, workspace.data.ptr, GRAPH_GEMM_WORKSPACE)
            self._graph_gemm = (gemm, workspace)  # the workspace lives as long as the handle
        return self._graph_gemm[0]

    def argsort(self, keys):
        with self.on:
            return self.cp.argsort(keys)

    def copy(self, dst, src) -> None:
        with self.on:
            self.cp.copyto(dst, src)

    def fill(self, a, value) -> None:
        with self.on:
            a.fill(value)

    # ---- graphs ----
    def capture(self, fn, launched) -> object:
        """Capture ``fn()`` on this backend's stream as a CUDA graph; ``launched()`` is how many launches the
        step issued (checked against the nodes the capture recorded, so that a capture of work that went to
        another stream fails loudly instead of replaying as nothing)."""
        if not self._capture_lock.acquire(blocking=False):
            raise ConfigError(f"cuda:{self.index} is already capturing a graph in another thread")
        try:
            with self.on:
                self.stream.begin_capture()
                try:
                    fn()
                    nodes = self.driver.capture_node_count(self.stream.ptr)
                except BaseException:
                    try:
                        self.stream.end_capture()
                    except Exception:  # noqa: S110 - the capture broke because of the error raised below
                        pass
                    raise
                graph = self.stream.end_capture()
            expected = launched()
            if nodes < max(1, expected):
                raise GraphCaptureError(
                    f"the CUDA graph holds {nodes} node(s) for the step's {expected} launches: its work ran "
                    "outside the capture (on another stream), so replaying the graph would not repeat it; train "
                    "without cuda_graph and report this"
                )
            self._graph_nodes[id(graph)] = nodes
            return graph
        finally:
            self._capture_lock.release()

    def graph_nodes(self, graph) -> int:
        """The node count of a graph this backend captured."""
        if getattr(graph, "graph", 0):  # CuPy 14 keeps the definition; CuPy 13 frees it (Graph.graph == 0)
            with self.on_device:
                return self.driver.graph_node_count(graph.graph)
        return self._graph_nodes[id(graph)]

    def replay(self, graph) -> None:
        with self.on_device:
            graph.launch(self.stream)

    # ---- collectives (NCCL) ----
    def nccl(self):
        """CuPy's NCCL module (``cupy.cuda.nccl``), or None where CuPy has none."""
        module = getattr(self.cp.cuda, "nccl", None)
        if module is None:
            try:
                import importlib

                module = importlib.import_module(f"{self.cp.__name__}.cuda.nccl")
            except Exception:
                return None
        return module

    def nccl_communicator(self, nccl, size: int, uid, rank: int):
        """NCCL's communicator of this rank, made on this device (NCCL takes the current one)."""
        with self.on_device:
            return nccl.NcclCommunicator(size, uid, rank)

    def collective(self, fn, buf) -> None:
        """``fn(buf, stream_ptr)``, a collective on ``buf``, queued on this backend's stream and device."""
        with self.on_device:
            fn(buf, self.stream.ptr)

    # ---- timing and synchronization ----
    def timestamp(self):
        with self.on_device:
            event = self.cp.cuda.Event()
            event.record(self.stream)
        return event

    def seconds_between(self, start, end) -> float:
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end) / 1000.0

    def synchronize(self) -> None:
        with self.on_device:
            self.stream.synchronize()


class RawModuleKernels:
    """kernels/*.cu compiled by CuPy's RawModule (NVRTC), one module per file, on first use, once per process;
    launched on the device and stream of a :class:`CupyDevice`."""

    def __init__(self, dev: CupyDevice) -> None:
        if isinstance(dev, int):  # the old signature, RawModuleKernels(index)
            warnings.warn(
                "RawModuleKernels(index) is deprecated: pass the CupyDevice whose device and stream it launches on, "
                "RawModuleKernels(CupyDevice(index))",
                FutureWarning,
                stacklevel=2,
            )
            dev = CupyDevice(dev)
        self.dev = dev
        self.index = dev.index
        self._modules: dict[str, object] = {}
        self._functions: dict[str, object] = {}

    def function(self, name: str):
        fn = self._functions.get(name)
        if fn is None:
            fname = kernels.file_of(name)
            with self.dev.on_device:  # RawModule loads a module per device: on the current one
                module = self._modules.get(fname)
                if module is None:
                    module = self._modules[fname] = self.dev.cp.RawModule(
                        code=kernels.source(fname), options=("--std=c++17",), name_expressions=kernels.KERNELS[fname]
                    )
                fn = self._functions[name] = module.get_function(name)
        return fn

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        if any(a is None for a in args):  # CuPy 13 passes None as a garbage pointer (cupy/cupy#9046)
            raise TypeError(f"{name}: a None argument; pass kernels.NULL for a null pointer")
        fn = self.function(name)
        with self.dev.on_device:
            fn(grid, block, args, shared_mem=shared_mem, stream=self.dev.stream)

    def preload(self, names) -> None:
        for name in names:
            self.function(name)
