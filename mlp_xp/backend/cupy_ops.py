"""The CUDA backend: the op vocabulary on CuPy arrays, the hot spots in the fused kernels of ``kernels/``.

Two layers, so that almost all of it runs in CI on machines without a GPU:

* ``CupyOps`` (this class) decides everything: argument checks, dtype and instantiation choice, launch
  geometry, argument order, in-place contracts. CI runs it with the CPU harness of ``tests/cuda_host``
  standing in for the GPU.
* ``CupyDevice`` and ``RawModuleKernels`` are the thin layer of actual ``cupy`` calls: allocation,
  transfers, cuBLAS GEMM, argsort, events, and compiling ``kernels/*.cu`` with ``cupy.RawModule``.
  Only they need a real GPU; the ``gpu``-marked tests and ``mlp-xp doctor`` exercise them.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError, DeviceMemoryError
from ..functions.activations import activation_code
from ..functions.losses import loss_code
from ..functions.optimizers import adam_corrections
from ..functions.shuffle import epoch_base
from . import kernels
from .base import Ops

#: Threads per block of the elementwise kernels, and the most blocks a grid-stride launch uses.
THREADS = 256
MAX_BLOCKS = 8192
#: Logits a thread keeps in registers in softmax_xent (K_CACHE in kernels/loss.cu).
K_CACHE = 4
#: Threads per block of the row kernels (softmax_xent, sigmoid_bce); at most 256 rows per block.
ROW_BLOCK_THREADS = 128


def grid_1d(n: int, threads: int = THREADS) -> tuple[tuple[int], tuple[int]]:
    """Grid and block of a grid-stride kernel over n elements."""
    return (max(1, min(MAX_BLOCKS, math.ceil(n / threads))),), (threads,)


def row_geometry(rows: int, width: int, per_thread: int = 1) -> tuple[tuple[int], tuple[int, int]]:
    """Grid and block of a row kernel: blockDim.x threads share a row of ``width`` values (each thread
    taking ``per_thread`` of them before looping), blockDim.y rows share a block."""
    need = max(1, math.ceil(width / per_thread))
    bx = min(256, 1 << (need - 1).bit_length())
    by = max(1, min(256, ROW_BLOCK_THREADS // bx))
    return (math.ceil(rows / by),), (bx, by)


class CupyOps(Ops):
    """Ops on CUDA device arrays.

    Parameters
    ----------
    index : int
        CUDA device number.
    gemm : {"cublas", "kernel"}
        Matrix products through cuBLAS (fastest), or through the ``gemm`` kernel of ``kernels/gemm.cu``, which
        a CUDA graph can capture (CuPy refuses cuBLAS calls during stream capture).
    device, kernels : optional
        The device layer and the kernel launcher. Default: ``CupyDevice(index)`` and
        ``RawModuleKernels()``. Tests pass the CPU harness instead.
    """

    kind = "cuda"

    def __init__(self, index: int = 0, *, gemm: str = "cublas", device=None, kernels=None) -> None:
        super().__init__()
        if gemm not in ("cublas", "kernel"):
            raise ConfigError(f"gemm must be 'cublas' or 'kernel', got {gemm!r}")
        self.index, self.gemm = index, gemm
        self.dev = device if device is not None else CupyDevice(index)
        self.kernels = kernels if kernels is not None else RawModuleKernels(index)
        self.xp = self.dev.xp
        self.name = f"cuda:{index} ({self.dev.name})"
        self._keys: dict[int, object] = {}
        self._capturing = False

    # ---- checks: nothing reaches a kernel on the wrong device, of the wrong dtype or layout ----
    def _arr(self, a, dtype, what: str, ndim: int | None = None):
        if not isinstance(a, self.xp.ndarray):
            hint = (
                "copy it to the device first with ops.asarray(...)"
                if isinstance(a, np.ndarray)
                else "pass a device array"
            )
            raise DataError(
                f"{what} is a {type(a).__module__}.{type(a).__name__}, not an array on cuda:{self.index}: {hint}"
            )
        if a.dtype != dtype:
            raise DataError(
                f"{what} has dtype {a.dtype} where {np.dtype(dtype)} is needed: convert it with "
                f"ops.asarray(..., dtype={np.dtype(dtype).name})"
            )
        if not a.flags.c_contiguous:
            raise DataError(f"{what} is not C-contiguous: pass a contiguous copy (xp.ascontiguousarray)")
        if ndim is not None and a.ndim != ndim:
            raise DataError(f"{what} must be {ndim}-D, got shape {a.shape}")
        device_id = self.dev.device_of(a)
        if device_id is not None and device_id != self.index:
            raise DataError(
                f"{what} lives on cuda:{device_id} but this backend is cuda:{self.index}: move it with ops.asarray(...)"
            )
        return a

    def _float(self, a, what: str, ndim: int | None = None):
        if getattr(a, "dtype", None) not in (np.float32, np.float64):
            raise DataError(
                f"{what} has dtype {getattr(a, 'dtype', type(a).__name__)}: the kernels take float32 "
                "or float64; convert with ops.asarray(..., dtype='float32')"
            )
        return self._arr(a, a.dtype, what, ndim)

    def _launch(self, base: str, dtype, grid, block, args, shared_mem: int = 0) -> None:
        self.kernels.launch(kernels.kernel_name(base, kernels.C_TYPES[np.dtype(dtype)]), grid, block, args, shared_mem)

    # ---- memory ----
    def empty(self, shape, dtype):
        self.counts.allocations += 1
        return self.dev.allocate(shape, dtype, zero=False)

    def zeros(self, shape, dtype):
        self.counts.allocations += 1
        return self.dev.allocate(shape, dtype, zero=True)

    def asarray(self, host, dtype=None):
        """A C-contiguous device copy of ``host`` (NumPy or another device's array), converted to ``dtype``."""
        self.counts.allocations += 1
        if isinstance(host, self.xp.ndarray) and self.dev.device_of(host) not in (None, self.index):
            host = self.dev.to_host(host)
        arr = host if isinstance(host, self.xp.ndarray) else np.asarray(host)
        dt = np.dtype(dtype) if dtype is not None else arr.dtype
        return self.dev.from_host(arr, dt)

    def to_host(self, a) -> np.ndarray:
        self.counts.syncs += 1
        return self.dev.to_host(a)

    def peek(self, a) -> np.ndarray:
        return self.dev.peek(a)

    def timestamp(self):
        return self.dev.timestamp()

    def seconds_between(self, start, end) -> float:
        return self.dev.seconds_between(start, end)

    def synchronize(self) -> None:
        self.counts.syncs += 1
        self.dev.synchronize()

    # ---- step ops ----
    def gather_rows(self, X, Y, idx, xb, yb) -> None:
        X = self._float(X, "X", 2)
        dt = X.dtype
        label_type = np.int32 if Y.dtype == np.int32 else dt
        self._arr(Y, label_type, "Y")
        self._arr(idx, np.int64, "idx", 1)
        self._arr(xb, dt, "xb", 2)
        self._arr(yb, label_type, "yb")
        rows, d = xb.shape
        k = 1 if Y.ndim == 1 else Y.shape[1]
        if idx.shape[0] != rows or X.shape[1] != d or yb.shape[0] != rows or yb.size != rows * k:
            raise DataError(
                f"gather_rows: {rows} rows of width {d} and {k} asked, got X {X.shape}, Y {Y.shape}, "
                f"idx {idx.shape}, yb {yb.shape}"
            )
        grid, block = grid_1d(rows * max(d, k))
        name = kernels.kernel_name("gather_rows", kernels.C_TYPES[dt], kernels.C_TYPES[np.dtype(label_type)])
        self.kernels.launch(name, grid, block, (X, Y, idx, xb, yb, np.int64(rows), np.int32(d), np.int32(k)), 0)

    def matmul(self, a, b, out, trans_a=False, trans_b=False, beta=0.0) -> None:
        out = self._float(out, "out", 2)
        self._arr(a, out.dtype, "a", 2)
        self._arr(b, out.dtype, "b", 2)
        m, k = a.shape[::-1] if trans_a else a.shape
        k2, n = b.shape[::-1] if trans_b else b.shape
        if k != k2 or out.shape != (m, n):
            raise DataError(f"matmul shapes do not fit: op(a) {m}x{k}, op(b) {k2}x{n}, out {out.shape}")
        if self.gemm == "kernel" or self._capturing:
            self.gemm_kernel(a, b, out, trans_a, trans_b, beta)
        else:
            self.dev.gemm(a, b, out, trans_a, trans_b, beta)

    def gemm_kernel(self, a, b, out, trans_a=False, trans_b=False, beta=0.0) -> None:
        """out <- op(a) op(b) + beta out with kernels/gemm.cu (shapes already checked by ``matmul``)."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        t = out.dtype.type
        self._launch(
            "gemm",
            out.dtype,
            (math.ceil(n / 64), math.ceil(m / 64)),
            (256,),
            (
                a,
                b,
                out,
                np.int32(m),
                np.int32(n),
                np.int32(k),
                np.int32(a.shape[1]),
                np.int32(b.shape[1]),
                np.int32(n),
                np.int32(bool(trans_a)),
                np.int32(bool(trans_b)),
                t(1),
                t(beta),
            ),
        )

    def bias_act(self, z, b, activation, slope) -> None:
        z = self._float(z, "z", 2)
        self._arr(b, z.dtype, "b", 1)
        rows, cols = z.shape
        if b.shape[0] != cols:
            raise DataError(f"bias of length {b.shape[0]} for {cols} columns")
        t = z.dtype.type
        self._launch(
            "bias_act_fwd",
            z.dtype,
            *grid_1d(z.size),
            (z, b, np.int64(rows), np.int32(cols), np.int32(activation_code(activation)), t(slope)),
        )

    def act_backward(self, dh, h, activation, slope) -> None:
        dh = self._float(dh, "dh", 2)
        self._arr(h, dh.dtype, "h", 2)
        if h.shape != dh.shape:
            raise DataError(f"act_backward: dh {dh.shape} and h {h.shape} differ")
        code = activation_code(activation)
        if code == 0:  # identity: g' = 1
            return
        self._launch(
            "act_bwd", dh.dtype, *grid_1d(dh.size), (dh, h, np.int64(dh.size), np.int32(code), dh.dtype.type(slope))
        )

    def bias_grad(self, g, out, beta=0.0) -> None:
        g = self._float(g, "g", 2)
        self._arr(out, g.dtype, "out", 1)
        rows, cols = g.shape
        if out.shape[0] != cols:
            raise DataError(f"bias_grad: out has {out.shape[0]} entries for {cols} columns")
        self._launch(
            "bias_grad",
            g.dtype,
            (math.ceil(cols / 32),),
            (32, 8),
            (g, out, np.int64(rows), np.int32(cols), g.dtype.type(beta)),
        )

    def loss_grad(self, z, y, acc, loss, write_grad=True, smoothing=0.0, class_weight=None) -> None:
        z = self._float(z, "z (logits)", 2)
        self._arr(acc, np.float64, "acc")
        if acc.size < 2:
            raise DataError("acc must hold at least 2 float64 sums")
        rows, width = z.shape
        code = loss_code(loss)
        if code == 0:
            self._arr(y, np.int32, "y (class labels)", 1)
            if y.shape[0] != rows:
                raise DataError(f"{y.shape[0]} labels for {rows} rows of logits")
            if class_weight is not None:
                self._arr(class_weight, z.dtype, "class_weight", 1)
                if class_weight.shape[0] != width:
                    raise DataError(f"class_weight has {class_weight.shape[0]} entries for {width} classes")
            self._softmax_xent(z, y, class_weight, acc, write_grad, smoothing)
            return
        self._arr(y, z.dtype, "y (targets)", 2)
        if y.shape != z.shape:
            raise DataError(f"targets of shape {y.shape} for outputs of shape {z.shape}")
        if smoothing or class_weight is not None:
            raise ConfigError("label smoothing and class weights apply to cross_entropy only")
        if code == 1:
            self._sigmoid_bce(z, y, acc, write_grad)
        else:
            self._launch(
                "squared_error",
                z.dtype,
                *grid_1d(z.size),
                (z, y, acc, np.int64(rows), np.int32(width), np.int32(write_grad)),
            )

    def _softmax_xent(self, z, y, class_weight, acc, write_grad, smoothing) -> None:
        rows, C = z.shape
        grid, block = row_geometry(rows, C, K_CACHE)
        smem = block[0] * block[1] * (3 * z.dtype.itemsize + 4)
        self._launch(
            "softmax_xent",
            z.dtype,
            grid,
            block,
            (z, y, class_weight, acc, np.int64(rows), np.int32(C), np.int32(bool(write_grad)), z.dtype.type(smoothing)),
            smem,
        )

    def _sigmoid_bce(self, z, y, acc, write_grad) -> None:
        rows, K = z.shape
        grid, block = row_geometry(rows, K)
        smem = block[0] * block[1] * (z.dtype.itemsize + 4)
        self._launch(
            "sigmoid_bce",
            z.dtype,
            grid,
            block,
            (z, y, acc, np.int64(rows), np.int32(K), np.int32(bool(write_grad))),
            smem,
        )

    def output_act(self, z, output) -> None:
        z = self._float(z, "z (logits)", 2)
        if output == "softmax":
            self._softmax_xent(z, None, None, None, False, 0.0)
        elif output == "sigmoid":
            self._sigmoid_bce(z, None, None, False)

    def sgd_update(
        self, params, grads, velocity, n_weights, lr, momentum=0.0, nesterov=False, l2=0.0, l1=0.0, accumulated=False
    ) -> None:
        p = self._float(params, "params", 1)
        if accumulated:
            grads = None
        else:
            self._arr(grads, p.dtype, "grads", 1)
        if momentum or accumulated:
            self._arr(velocity, p.dtype, "velocity", 1)
        v = velocity if momentum or accumulated else None
        for a, what in ((grads, "grads"), (v, "velocity")):
            if a is not None and a.shape != p.shape:
                raise DataError(f"{what} has shape {a.shape}, params {p.shape}")
        t = p.dtype.type
        self._launch(
            "sgd_update",
            p.dtype,
            *grid_1d(p.size),
            (
                p,
                grads,
                v,
                np.int64(p.size),
                np.int64(n_weights),
                t(lr),
                t(momentum),
                np.int32(bool(nesterov)),
                t(l2),
                t(l1),
                np.int32(bool(accumulated)),
            ),
        )

    def adam_update(self, params, grads, m, v, n_weights, lr, step, beta1, beta2, eps, l2=0.0, l1=0.0) -> None:
        p = self._float(params, "params", 1)
        for a, what in ((grads, "grads"), (m, "m"), (v, "v")):
            self._arr(a, p.dtype, what, 1)
            if a.shape != p.shape:
                raise DataError(f"{what} has shape {a.shape}, params {p.shape}")
        c1, c2 = adam_corrections(step, beta1, beta2)
        t = p.dtype.type
        self._launch(
            "adam_update",
            p.dtype,
            *grid_1d(p.size),
            (
                p,
                grads,
                m,
                v,
                np.int64(p.size),
                np.int64(n_weights),
                t(lr),
                t(beta1),
                t(beta2),
                t(eps),
                t(c1),
                t(c2),
                t(l2),
                t(l1),
            ),
        )

    def copy(self, dst, src) -> None:
        self._arr(src, dst.dtype, "src")
        if src.shape != dst.shape:
            raise DataError(f"copy: source {src.shape} and destination {dst.shape} differ")
        self.dev.copy(dst, src)

    def fill(self, a, value) -> None:
        self.dev.fill(a, value)

    # ---- CUDA graphs ----
    def capture(self, fn):
        """Record the device work of ``fn()`` as a CUDA graph without running it; ``replay`` runs it.

        While capturing, matrix products use the ``gemm`` kernel: CuPy refuses cuBLAS calls during capture.
        ``fn`` must allocate nothing, copy nothing to or from the host, and take every changing input from a
        device buffer: the graph keeps the pointers and scalars it saw.
        """
        if self._capturing:
            raise ConfigError("a capture is already running")
        # Compile and load every kernel first: module loading is no stream work and must not happen
        # inside a capture.
        self.kernels.preload([n for names in kernels.KERNELS.values() for n in names])
        self._capturing = True
        try:
            return self.dev.capture(fn)
        finally:
            self._capturing = False

    def replay(self, graph) -> None:
        """Run a graph made by ``capture`` (one launch)."""
        self.dev.replay(graph)

    # ---- per epoch ----
    def permutation(self, n, seed, epoch):
        keys = self._keys.get(n)
        if keys is None:  # one key buffer per dataset size, reused every epoch
            keys = self._keys[n] = self.dev.allocate((n,), np.uint64, zero=False)
        self.kernels.launch("shuffle_keys", *grid_1d(n), (keys, np.int64(n), np.uint64(epoch_base(seed, epoch))), 0)
        self.counts.allocations += 1
        return self.dev.argsort(keys)


# ---------------------------------------------------------------------------------------------------------
# The thin layer: real CuPy calls. Nothing above this line imports cupy.


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

    def allocate(self, shape, dtype, zero: bool):
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

    def gemm(self, a, b, out, trans_a, trans_b, beta) -> None:
        # cupy.cublas.gemm takes C- or F-contiguous operands without copying and honours beta in place.
        self.cp.cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", a, b, out=out, alpha=1.0, beta=beta)

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
