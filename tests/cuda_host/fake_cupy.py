"""A CPU model of the part of CuPy that the CUDA backend's thin layer (mlp_xp.backend.cupy_device) calls.

The thin layer runs unmodified on it: ``CupyDevice(0, cupy=FakeCupy(host_kernels))``. Kernels are the
unmodified ``kernels/*.cu`` built for the CPU by :mod:`tests.cuda_host.harness`; memory is host memory. What is
modelled is what the GPU audit found CuPy does, so that the bugs it found fail here:

* **A current device and a current stream per thread and device** (``Device`` as a context manager and
  ``use()``, ``Stream`` likewise, a new thread starting on device 0 and the legacy stream). Allocation, copies,
  fills, sorts, cuBLAS and kernel launches use the current device and stream unless given ``stream=``. Every
  piece of work is logged (:attr:`FakeCupy.log`) with the device and stream it went to, and an array used on
  another device than its own is refused, as the GPU would fault.
* **Pointer arguments as CuPy 13 passes them**: ``None`` is refused (CuPy 13 gives the kernel a garbage
  pointer, cupy/cupy#9046); a zero integer scalar is the null pointer on every version.
* **Stream capture** in CuPy's default relaxed mode: work issued to the capturing stream is recorded, not run;
  work issued to any other stream meanwhile runs at once, as on a GPU, so an empty graph is possible and it is
  the backend's own node-count check that must catch it. CuPy's cuBLAS wrapper raises CuPy's
  NotImplementedError; a synchronization, a blocking copy to the host or a query on the capturing stream raises
  and invalidates the capture, so that ``end_capture`` then fails with cudaErrorStreamCaptureInvalidated.
  What the project forbids on top (allocation, host copies) raises :class:`ProjectRuleError`.
* **Ordering between streams**, as a race detector: each buffer remembers the stream and position of its last
  write; work on another stream that touches it before being ordered after that write (an event waited on,
  a synchronization, the legacy stream's implicit ordering with blocking streams) raises :class:`RaceError`.
  Work itself runs at once, so results are deterministic; what would be a race on a GPU is an error here.
* **NCCL** (``cupy.cuda.nccl``), where :class:`tests.cuda_host.fake_nccl.FakeNccl` is attached: collectives
  across processes over mpi4py on this host memory, on the stream they are given, checked as a GPU would fault.
* **Asynchronous copies to pinned memory** (``get(out=, blocking=False)``) land only when the stream is
  synchronized or an event recorded after them is found done: a reader that does not wait sees stale data.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import weakref
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np


class CUDARuntimeError(RuntimeError):
    """What cupy_backends.cuda.api.runtime raises for a failed CUDA call."""


class ProjectRuleError(RuntimeError):
    """Work the project forbids inside a captured step (allocation, host copies), though CUDA might allow it."""


class RaceError(RuntimeError):
    """Work on one stream touching memory another stream wrote without being ordered after that write."""


ALLOCATION_ALIGNMENT = 512
CUBLAS_CAPTURE_MESSAGE = "calling cuBLAS API during stream capture is currently unsupported"


@dataclass
class Work:
    """One piece of device work as it was issued: what, on which device and stream, and whether captured."""

    kind: str
    name: str
    device: int
    stream: int
    captured: bool


@dataclass
class _Buffer:
    start: int
    end: int
    device: int
    writer: tuple[int, int, int] | None = None  # (stream ptr, its device, position) of the last write


def _aligned_empty(shape, dtype) -> np.ndarray:
    """Host memory aligned as CuPy's pool aligns device allocations (512 bytes)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(n * dtype.itemsize + ALLOCATION_ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALLOCATION_ALIGNMENT
    return raw[offset : offset + n * dtype.itemsize].view(dtype).reshape(shape)


class _Ptr:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class _DeviceId:
    def __init__(self, i: int) -> None:
        self.id = i


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: host memory behind CuPy's array interface, and nothing more of NumPy's.

    Implicit conversion to NumPy is refused as in CuPy, so code that reads a device array on the host without
    a copy fails here as it would on a GPU.
    """

    __slots__ = ("_a", "_device", "_fake")

    def __init__(self, a: np.ndarray, device: int, fake: FakeCupy) -> None:
        self._a, self._device, self._fake = a, device, fake

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: _DeviceId(self._device))
    data = property(lambda self: _Ptr(self._a.ctypes.data))

    def __len__(self) -> int:
        return len(self._a)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.data.ptr, False), "version": 3}

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype}, device={self._device})"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
            "array explicitly."
        )

    def _view(self, a: np.ndarray) -> ndarray:
        if a.size and not np.shares_memory(a, self._a):
            raise TypeError("the fake device array supports views only (basic slicing and reshape)")
        return ndarray(a, self._device, self._fake)

    def __getitem__(self, key) -> ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return self._view(self._a[(*key, Ellipsis) if Ellipsis not in key else key])  # a 0-d view, not a scalar

    def __setitem__(self, key, value) -> None:
        self[key]._elementwise("setitem", np.copyto, value)

    def __iadd__(self, other) -> ndarray:
        return self._elementwise("iadd", lambda dst, v: np.add(dst, v, out=dst), other)

    def __imul__(self, other) -> ndarray:
        return self._elementwise("imul", lambda dst, v: np.multiply(dst, v, out=dst), other)

    def _elementwise(self, name: str, fn, other) -> ndarray:
        """An in-place elementwise kernel of CuPy's, on the current device and stream."""
        reads = [other] if isinstance(other, ndarray) else []
        value = other._a if isinstance(other, ndarray) else other
        self._fake._issue("elementwise", name, None, [self], reads, lambda: fn(self._a, value))
        return self

    def reshape(self, *shape) -> ndarray:
        return self._view(self._a.reshape(*shape))

    @property
    def T(self) -> ndarray:  # noqa: N802 - CuPy's name
        return self._view(self._a.T)

    def ravel(self) -> ndarray:
        return self._view(self._a.reshape(-1))

    def fill(self, value) -> None:
        self._fake._issue("fill", "fill", None, [self], [], lambda: self._a.fill(value))

    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        return self._fake._to_host(self, stream, out, blocking)

    def set(self, arr, stream=None) -> None:
        """Copy host memory in (CuPy's checks; the source may be reused as soon as this returns)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        s = stream if stream is not None else self._fake.get_current_stream()
        if s.graph is not None:
            raise ProjectRuleError("a copy from the host inside a captured step: the project's rule forbids it")
        src = np.array(arr, order="C", copy=True)
        self._fake._issue("h2d", "set", s, [self], [], lambda: self._a.__setitem__(..., src))


class _Thread(threading.local):
    def __init__(self) -> None:
        self.device = 0
        self.device_stack: list[int] = []
        self.streams: dict[int, list] = {}  # device -> stack of current streams (last is current)


class Stream:
    """cupy.cuda.Stream: made on the current device; current through ``with`` or ``use()``."""

    def __init__(self, fake: FakeCupy, null: bool = False, non_blocking: bool = False, *, device=None) -> None:
        self._fake = fake
        self.device_id = fake.runtime.getDevice() if device is None else device
        self.ptr = 0 if null else next(fake._ptrs)
        self.non_blocking = non_blocking
        self.seq = 0
        self.known: dict[int, int] = {}  # per other stream: the position this stream is ordered after
        self.graph: list | None = None  # the work recorded while capturing
        self.invalidated: str | None = None
        self.pending: list[tuple[int, np.ndarray, object]] = []  # host copies not landed: (position, dst, copy)
        fake._streams[self.ptr, self.device_id] = self

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and (other.ptr, other.device_id) == (self.ptr, self.device_id)

    def __hash__(self) -> int:
        return hash((self.ptr, self.device_id))

    def __repr__(self) -> str:
        return f"<Stream {self.ptr} (device {self.device_id})>"

    def _check_device(self) -> None:
        current = self._fake.runtime.getDevice()
        if self.device_id != current:
            raise RuntimeError(
                f"The device that the stream is created on ({self.device_id}) does not match with the current "
                f"device ({current})"
            )

    def __enter__(self) -> Stream:
        self._check_device()
        self._fake._stack(self.device_id).append(self)
        return self

    def __exit__(self, *exc) -> None:
        self._fake._stack(self.device_id).pop()

    def use(self) -> Stream:
        self._check_device()
        stack = self._fake._stack(self.device_id)
        stack[-1] = self
        return self

    # ---- capture ----
    def begin_capture(self, mode=None) -> None:
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self.graph is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is already capturing")
        self.graph, self.invalidated = [], None

    def end_capture(self) -> Graph:
        if self.graph is None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is not capturing")
        work, why = self.graph, self.invalidated
        self.graph, self.invalidated = None, None
        if why is not None:
            raise CUDARuntimeError(
                f"cudaErrorStreamCaptureInvalidated: operation failed due to a previous error during capture ({why})"
            )
        return Graph(self._fake, work, self.device_id)

    def is_capturing(self) -> bool:
        return self.graph is not None

    def _refuse_in_capture(self, what: str) -> None:
        if self.graph is not None:
            self.invalidated = what
            raise CUDARuntimeError(f"cudaErrorStreamCaptureUnsupported: {what} on a capturing stream")

    # ---- ordering ----
    @property
    def done(self) -> bool:
        self._refuse_in_capture("a stream query")
        self._land(self.seq)
        return True

    def synchronize(self) -> None:
        self._refuse_in_capture("a stream synchronization")
        self._fake.syncs += 1
        self._land(self.seq)
        self._fake._host_known[self.ptr, self.device_id] = self.seq

    def _land(self, upto: int) -> None:
        keep = []
        for seq, dst, copy in self.pending:
            if seq <= upto:
                copy()
            else:
                keep.append((seq, dst, copy))
        self.pending = keep

    def record(self, event=None):
        event = event or Event(self._fake)
        event.record(self)
        return event

    def wait_event(self, event) -> None:
        if event.clock is not None:
            _merge(self.known, event.clock)


def _merge(into: dict, other: dict) -> None:
    for k, v in other.items():
        if into.get(k, -1) < v:
            into[k] = v


class Event:
    """cupy.cuda.Event: records a position of a stream; ``done`` and ``synchronize`` land the copies before it."""

    def __init__(self, fake: FakeCupy, block: bool = False, disable_timing: bool = False, interprocess=False):
        self._fake, self.disable_timing = fake, disable_timing
        self.device = fake.runtime.getDevice()  # an event belongs to the device current when it is made
        self.stream: Stream | None = None
        self.clock: dict | None = None
        self.time = 0.0

    def record(self, stream=None) -> None:
        s = stream if stream is not None else self._fake.get_current_stream()
        if self.device is None:
            self.device = self._fake.runtime.getDevice()
        if s.device_id != self.device:
            raise CUDARuntimeError(
                f"cudaErrorInvalidResourceHandle: an event of device {self.device} recorded on a stream of device "
                f"{s.device_id}"
            )
        self._fake.events_recorded += 1
        self.stream, self.seq = s, s.seq
        self.clock = dict(s.known)
        self.clock[s.ptr, s.device_id] = s.seq
        self.time = self._fake._clock()

    @property
    def done(self) -> bool:
        if self.stream is not None:
            self.stream._refuse_in_capture("an event query")
            self.stream._land(self.seq)
        return True

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream._refuse_in_capture("an event synchronization")
            self._fake.syncs += 1
            self.stream._land(self.seq)
            _merge(self._fake._host_known, self.clock)


class Graph:
    """cupy.cuda.graph.Graph: the work a capture recorded; ``launch`` issues it again on a stream."""

    def __init__(self, fake: FakeCupy, work: list, device: int) -> None:
        self._fake, self.work, self.device = fake, work, device
        handle = next(fake._ptrs)
        fake._graphs[handle] = self
        # The cudaGraph_t: CuPy 13 destroys the definition once instantiated and keeps 0 (graph.pyx, Graph._init)
        self.graph = handle if fake.version >= (14,) else 0
        self.graphExec = next(fake._ptrs)

    def launch(self, stream=None) -> None:
        s = stream if stream is not None else self._fake.get_current_stream()
        if s.device_id != self.device:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: a graph of another device")
        for kind, name, reads, writes, run in self.work:
            self._fake._issue(kind, name, s, writes, reads, run, device=self.device)


class Device:
    """cupy.cuda.Device: ``with Device(i):`` switches the thread's current device and restores it."""

    def __init__(self, fake: FakeCupy, device=None) -> None:
        self._fake = fake
        self.id = fake.runtime.getDevice() if device is None else int(device)
        if not 0 <= self.id < fake.n_devices:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def __enter__(self) -> Device:  # as CuPy: set the device only where it differs
        t = self._fake._t
        t.device_stack.append(t.device)
        if t.device != self.id:
            self._fake.runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc) -> None:  # as CuPy: always cudaSetDevice back, which creates a context there
        self._fake.runtime.setDevice(self._fake._t.device_stack.pop())

    def use(self) -> Device:
        self._fake.runtime.setDevice(self.id)
        return self

    def synchronize(self) -> None:
        self._fake.syncs += 1
        for (ptr, dev), s in list(self._fake._streams.items()):
            if dev == self.id:
                if s.graph is not None:
                    s.invalidated = "a device synchronization"
                    raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: a device synchronization during capture")
                s._land(s.seq)
                self._fake._host_known[ptr, dev] = s.seq


class _Runtime:
    def __init__(self, fake: FakeCupy) -> None:
        self._fake = fake
        self.mem_get_info_calls = 0

    def getDeviceCount(self) -> int:  # noqa: N802 - CuPy's names
        return self._fake.n_devices

    def getDevice(self) -> int:  # noqa: N802
        return self._fake._t.device

    def setDevice(self, i: int) -> None:  # noqa: N802
        # CUDA 12+: cudaSetDevice initializes the device's primary context at once
        self._fake._t.device = i
        self._fake.contexts.add(i)

    def getDeviceProperties(self, i: int) -> dict:  # noqa: N802
        return {"name": b"CPU harness", "major": 9, "minor": 0}

    def memGetInfo(self) -> tuple[int, int]:  # noqa: N802
        self.mem_get_info_calls += 1
        return self._fake.free_bytes, self._fake.total_bytes

    def driverGetVersion(self) -> int:  # noqa: N802
        return 13000

    def runtimeGetVersion(self) -> int:  # noqa: N802
        return 13000

    def streamIsCapturing(self, ptr: int) -> bool:  # noqa: N802
        s = self._fake._streams.get((ptr, self.getDevice()))
        return s is not None and s.graph is not None


class _Pool:
    def free_bytes(self) -> int:
        return 0


class _Cuda:
    """The ``cupy.cuda`` namespace."""

    def __init__(self, fake: FakeCupy) -> None:
        self._fake = fake
        self.runtime = fake.runtime
        self.Device = lambda device=None: Device(fake, device)  # noqa: N802
        self.Stream = lambda null=False, non_blocking=False: Stream(fake, null, non_blocking)  # noqa: N802
        self.Event = lambda block=False, disable_timing=False, interprocess=False: Event(fake, block, disable_timing)  # noqa: N802

    def get_current_stream(self, device_id: int = -1) -> Stream:
        return self._fake.get_current_stream(device_id)

    def get_elapsed_time(self, start: Event, end: Event) -> float:
        if start.disable_timing or end.disable_timing:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: an event made with disable_timing")
        return (end.time - start.time) * 1000.0


class _Cublas:
    """``cupy.cublas``: gemm on the current device and stream, refused while that stream captures (CuPy's rule)."""

    def __init__(self, fake: FakeCupy) -> None:
        self._fake = fake

    def gemm(self, transa, transb, a, b, out=None, alpha=1.0, beta=0.0):
        fake = self._fake
        s = fake.get_current_stream()
        if s.graph is not None:
            raise NotImplementedError(CUBLAS_CAPTURE_MESSAGE)
        A = a._a.T if transa == "T" else a._a
        B = b._a.T if transb == "T" else b._a

        def run():
            # As cuBLAS computes it for C-contiguous operands (CuPy passes them swapped, column-major): C^T = B^T A^T,
            # so that this and the direct cuBLAS of fake_cublas.py round alike.
            prod = alpha * (B.T @ A.T)
            out._a.T[...] = prod if beta == 0 else prod + beta * out._a.T

        fake._issue("cublas", "gemm", s, [out], [a, b], run)
        return out


class RawKernel:
    """A function of a RawModule: launched on the current device (which must have loaded the module) and stream."""

    def __init__(self, module: RawModule, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None) -> None:
        fake = self.module._fake
        dev = fake.runtime.getDevice()
        self.module._load(dev)
        s = stream if stream is not None else fake.get_current_stream()
        if s.device_id != dev:
            raise CUDARuntimeError(
                f"CUDA_ERROR_INVALID_HANDLE: {self.name} launched on device {dev} into a stream of device {s.device_id}"
            )
        if not (isinstance(grid, tuple) and isinstance(block, tuple)):
            raise TypeError(
                f"Argument 'grid' and 'block' must be tuples, got {type(grid).__name__}, {type(block).__name__}"
            )
        params, reads_only = fake.kernels.parameters(self.name)
        if len(args) != len(params):
            raise TypeError(f"{self.name} takes {len(params)} arguments, got {len(args)}")
        host_args, reads, writes = [], [], []
        for (pname, ctype), a in zip(params, args, strict=True):
            if ctype.endswith("*"):
                if a is None and fake.version < (14,):
                    raise CUDARuntimeError(
                        f"{self.name}: argument {pname} is None, which CuPy {fake.version_text} passes as a garbage "
                        "non-NULL pointer (cupy/cupy#9046; the kernel would fault with cudaErrorIllegalAddress): "
                        "pass a zero integer for a null pointer"
                    )
                if a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool) and int(a) == 0):
                    host_args.append(None)
                    continue
                if not isinstance(a, ndarray):
                    raise TypeError(f"{self.name}: argument {pname} must be a device array, got {type(a).__name__}")
                if a._device != dev:
                    raise CUDARuntimeError(
                        f"cudaErrorIllegalAddress: {self.name} on device {dev} was given {pname} of device {a._device}"
                    )
                host_args.append(a._a)
                (reads if pname in reads_only else writes).append(a)
            else:
                host_args.append(a)
        run = fake.kernels.prepare(self.name, tuple(grid), tuple(block), tuple(host_args), shared_mem)
        fake._issue("kernel", self.name, s, writes, reads, run)


class RawModule:
    """cupy.RawModule: the source compiled once per device on first use (here: the harness's g++ build)."""

    def __init__(self, fake: FakeCupy, code: str, options=(), name_expressions=None) -> None:
        self._fake, self.code, self.options = fake, code, options
        self.name_expressions = tuple(name_expressions or ())

    def get_function(self, name: str) -> RawKernel:
        if name not in self.name_expressions:
            raise CUDARuntimeError(f"named symbol not found: {name!r} is not one of the name expressions")
        self._fake.kernels.preload([name])
        self._load(self._fake.runtime.getDevice())  # CuPy's get_function loads the module on the current device
        return RawKernel(self, name)

    def _load(self, device: int) -> None:
        if (id(self), device) not in self._fake.loaded:  # compiled and loaded once per device
            self._fake.loaded[id(self), device] = True
            self._fake.compiles += 1


class FakeCupy:
    """The ``cupy`` module as the thin layer sees it, over ``n_devices`` fake devices on this CPU.

    ``version``: the CuPy version modelled, ``"13.6.0"`` (the strictest, the default: None pointers refused,
    argsort synchronizes) or ``"14.2.0"``.
    """

    def __init__(
        self,
        kernels,
        n_devices: int = 1,
        version: str = "13.6.0",
        total_bytes: int = 8 << 30,
        ump: bool = False,
        lazy_cublas: bool = True,
    ) -> None:
        self.ump = ump  # CUPY_ENABLE_UMP=1 on a system with HMM/ATS: cupy.array of host memory may alias it
        self.contexts: set[int] = set()  # the devices with a primary context (made by setDevice or any work)
        # lazy_cublas: cuBLAS loads its kernels on first use and the driver refuses that inside a capture (< 12.3)
        self.lazy_cublas, self.cublas_loaded = lazy_cublas, False
        self.kernels = kernels
        self.n_devices = n_devices
        self.version_text = version
        self.__version__ = version
        self.version = tuple(int(p) for p in version.split(".")[:2])
        self.total_bytes, self.used_bytes = total_bytes, 0
        self._t = _Thread()
        self._ptrs = itertools.count(0x1000, 0x10)
        self._streams: dict[tuple[int, int], Stream] = {}
        self._graphs: dict[int, Graph] = {}
        self._host_known: dict[tuple[int, int], int] = {}
        self._buffers: list[_Buffer] = []  # sorted by start
        self._lock = threading.Lock()
        self._tick = itertools.count()
        self.log: list[Work] = []
        self.compiles = 0
        self.loaded: dict = {}
        self.events_recorded = 0
        self.syncs = 0  # host waits for the device: stream, event and device synchronizations
        self.runtime = _Runtime(self)
        self.cuda = _Cuda(self)
        self.cublas = _Cublas(self)
        self.ndarray = ndarray
        self.cupyx = SimpleNamespace(empty_pinned=lambda shape, dtype=float: np.empty(shape, dtype))
        self._legacy = [Stream(self, null=True, device=d) for d in range(n_devices)]
        self.RawModule = lambda code, options=(), name_expressions=None: RawModule(  # noqa: N802
            self, code, options, name_expressions
        )

    # ---- per thread: the current device's stream stack ----
    def _stack(self, device: int) -> list:
        stacks = self._t.streams
        if device not in stacks:
            stacks[device] = [self._legacy[device]]
        return stacks[device]

    def get_current_stream(self, device_id: int = -1) -> Stream:
        return self._stack(self.runtime.getDevice() if device_id == -1 else device_id)[-1]

    def _clock(self) -> float:
        return next(self._tick) * 1e-6

    def capturing(self, device: int | None = None) -> list[Stream]:
        """The streams capturing now (on ``device``, or on any)."""
        return [s for (_, d), s in self._streams.items() if s.graph is not None and device in (None, d)]

    # ---- memory ----
    @property
    def free_bytes(self) -> int:
        """What memGetInfo reports free: the total less the live allocations."""
        return self.total_bytes - self.used_bytes

    def _register(self, a: np.ndarray, device: int) -> None:
        start = a.ctypes.data
        buf = _Buffer(start, start + max(a.nbytes, 1), device)
        with self._lock:
            i = bisect.bisect_left([b.start for b in self._buffers], start)
            self._buffers.insert(i, buf)
            self.used_bytes += buf.end - buf.start
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        weakref.finalize(root, self._unregister, buf)  # freed host memory is reused: forget what it was

    def _unregister(self, buf: _Buffer) -> None:
        with self._lock:
            self._buffers = [b for b in self._buffers if b is not buf]
            self.used_bytes -= buf.end - buf.start

    def _buffer(self, x: ndarray) -> _Buffer | None:
        addr = x._a.ctypes.data
        starts = [b.start for b in self._buffers]
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and self._buffers[i].start <= addr < self._buffers[i].end:
            return self._buffers[i]
        return None

    def _new(self, shape, dtype, fill=None) -> ndarray:
        dev = self.runtime.getDevice()
        if self.capturing(dev):
            raise ProjectRuleError(
                "allocation inside a captured step: the project's rule is that a step allocates nothing (its "
                "buffers are made before the capture, so the graph never points at memory the pool reuses)"
            )
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        self.contexts.add(dev)
        if nbytes > self.free_bytes:
            raise MemoryError(f"Out of memory allocating {nbytes:,} bytes (fake device {dev})")
        a = ndarray(_aligned_empty(shape, dtype), dev, self)
        self._register(a._a, dev)
        if fill is not None:
            self._issue("memset", "zeros", None, [a], [], lambda: a._a.fill(fill))
        return a

    def empty(self, shape, dtype=float) -> ndarray:
        return self._new(shape, dtype)

    def zeros(self, shape, dtype=float) -> ndarray:
        return self._new(shape, dtype, 0)

    def array(self, obj, dtype=None, copy=True, order="K") -> ndarray:
        if isinstance(obj, ndarray):
            out = self._new(obj.shape, dtype or obj.dtype)
            if obj._device != out._device:
                raise CUDARuntimeError("peer copies are not modelled: copy through the host")
            self._issue("copy", "array", None, [out], [obj], lambda: out._a.__setitem__(..., obj._a))
            return out
        if self.ump:  # CuPy's UMP path wraps the host array whatever copy= says (core.pyx, array)
            return self.asarray(obj, dtype)
        return self.asarray(np.array(obj, dtype=dtype, copy=True, order="C"))

    def asarray(self, obj, dtype=None) -> ndarray:
        if isinstance(obj, ndarray) and (dtype is None or obj.dtype == dtype):
            return obj
        if isinstance(obj, ndarray):
            return self.array(obj, dtype)
        host = np.asarray(obj, dtype=dtype)
        if self.ump and host.flags.c_contiguous:  # CuPy's zero-copy path: the device array is the host memory
            alias = ndarray(host, self.runtime.getDevice(), self)
            self._register(host, alias._device)
            return alias
        s = self.get_current_stream()
        if s.graph is not None:
            raise ProjectRuleError("a copy from the host inside a captured step: the project's rule forbids it")
        out = self._new(host.shape, host.dtype)
        src = np.array(host, order="C", copy=True)  # CuPy stages through pinned memory: the copy is taken now
        self._issue("h2d", "asarray", s, [out], [], lambda: out._a.__setitem__(..., src))
        return out

    def asnumpy(self, a, stream=None, out=None, blocking=True) -> np.ndarray:
        if isinstance(a, np.ndarray):
            return a
        return a.get(stream=stream, out=out, blocking=blocking)

    def _to_host(self, a: ndarray, stream, out, blocking) -> np.ndarray:
        s = stream if stream is not None else self.get_current_stream()
        if s.graph is not None:  # CuPy checks before any CUDA call: the capture itself stays valid
            raise RuntimeError("the current stream is capturing, so D2H transfers are disallowed")
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != a.dtype or out.shape != a.shape):
            raise TypeError(f"out must be a numpy array of dtype {a.dtype} and shape {a.shape}")
        dst = out if out is not None else np.empty(a.shape, a.dtype)
        snapshot = {}

        def take():
            snapshot["v"] = a._a.copy()

        self._issue("d2h", "get", s, [], [a], take)
        if blocking:
            s.synchronize()
            dst[...] = snapshot["v"]
        else:
            s.pending.append((s.seq, dst, lambda: dst.__setitem__(..., snapshot["v"])))
        return dst

    def copyto(self, dst: ndarray, src) -> None:
        dev = self.runtime.getDevice()
        if dst._device != dev or (isinstance(src, ndarray) and src._device != dev):
            raise ValueError("Array device must be same as the current device")
        reads = [src] if isinstance(src, ndarray) else []
        value = src._a if isinstance(src, ndarray) else src
        self._issue("copy", "copyto", None, [dst], reads, lambda: np.copyto(dst._a, value))

    def argsort(self, keys: ndarray) -> ndarray:
        out = self._new(keys.shape, np.int64)
        self._issue(
            "sort", "argsort", None, [out], [keys], lambda: out._a.__setitem__(..., np.argsort(keys._a, kind="stable"))
        )
        if self.version < (14,):  # Thrust's cuda::par synchronizes the stream (CuPy 13)
            self.get_current_stream().synchronize()
        return out

    def get_default_memory_pool(self) -> _Pool:
        return _Pool()

    # ---- issuing work ----
    def cublas_dispatch(self, stream_ptr: int, run) -> None:
        """Where FakeCublas sends a GEMM: to the stream its handle was given, recorded there while it captures."""
        s = next((st for (p, _), st in self._streams.items() if p == stream_ptr and p != 0), None)
        if s is None:
            s = self._legacy[self.runtime.getDevice()]
        if self.lazy_cublas and not self.cublas_loaded:
            if s.graph is not None:  # a driver before 12.3 cannot load a module while a stream captures
                s.invalidated = "cuBLAS loading its kernel (lazy loading) during the capture"
                raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: module loading during stream capture")
            self.cublas_loaded = True
        self._issue("cublas-direct", "gemm", s, [], [], run, device=s.device_id)

    def _issue(self, kind: str, name: str, stream, writes: list, reads: list, run, device: int | None = None) -> None:
        s = stream if stream is not None else self.get_current_stream()
        dev = self.runtime.getDevice() if device is None else device
        for a in (*writes, *reads):
            if a._device != s.device_id and kind not in ("d2h", "h2d"):  # a copy may use another device's stream
                raise CUDARuntimeError(
                    f"cudaErrorIllegalAddress: {name} on a stream of device {s.device_id} touches memory of device "
                    f"{a._device}"
                )
        captured = s.graph is not None
        self.contexts.add(dev)
        self.log.append(Work(kind, name, dev, s.ptr, captured))
        if captured:
            s.graph.append((kind, name, reads, writes, run))
            return
        self._order(s, name, reads, writes)
        run()

    def _order(self, s: Stream, name: str, reads: list, writes: list) -> None:
        key = (s.ptr, s.device_id)
        _merge(s.known, self._host_known)  # work issued after the host saw a stream finish is ordered after it
        if s.ptr == 0:  # the legacy stream waits for every blocking stream of its device, and they for it
            for (p, d), other in self._streams.items():
                if d == s.device_id and p != 0 and not other.non_blocking:
                    _merge(s.known, {**other.known, (p, d): other.seq})
        elif not s.non_blocking:
            legacy = self._legacy[s.device_id]
            _merge(s.known, {**legacy.known, (0, s.device_id): legacy.seq})
        for a in (*reads, *writes):
            buf = self._buffer(a)
            if buf is None or buf.writer is None:
                continue
            wp, wdev, wseq = buf.writer
            if (wp, wdev) != key and s.known.get((wp, wdev), -1) < wseq:
                raise RaceError(
                    f"{name} on stream {s.ptr} (device {s.device_id}) uses memory that stream {wp} wrote without "
                    "waiting for it (record an event there and wait for it, or synchronize)"
                )
        s.seq += 1
        for a in writes:
            buf = self._buffer(a)
            if buf is not None:
                buf.writer = (s.ptr, s.device_id, s.seq)


@dataclass
class FakeDriver:
    """The CUDA driver calls the thin layer makes itself (LibcudaDriver), over the fake's graphs and contexts."""

    fake: FakeCupy
    calls: list = field(default_factory=list)

    def graph_node_count(self, graph_handle: int) -> int:
        self.calls.append(("cuGraphGetNodes", graph_handle))
        if not graph_handle:
            raise RuntimeError("cuGraphGetNodes failed with CUresult 1 (CUDA_ERROR_INVALID_VALUE: a NULL graph)")
        return len(self.fake._graphs[graph_handle].work)

    def capture_node_count(self, stream_handle: int) -> int:
        self.calls.append(("cuStreamGetCaptureInfo_v2", stream_handle))
        s = next(st for (ptr, _), st in self.fake._streams.items() if ptr == stream_handle)
        if s.graph is None:
            raise RuntimeError("cuStreamGetCaptureInfo_v2: the stream is not capturing")
        return -1 if s.invalidated else len(s.graph)

    def has_context(self, ordinal: int) -> bool:
        return ordinal in self.fake.contexts
