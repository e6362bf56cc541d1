"""The CUDA backend: the op vocabulary on CuPy arrays, the hot spots in the fused kernels of ``kernels/``.

Two layers, so that almost all of it runs in CI on machines without a GPU:

* ``CupyOps`` (this module) decides everything: argument checks, dtype and instantiation choice, launch
  geometry, argument order, in-place contracts. CI runs it with the CPU harness of ``tests/cuda_host``
  standing in for the GPU. Nothing here imports cupy.
* :mod:`mlp_xp.backend.cupy_device` is the thin layer of actual ``cupy`` calls (``CupyDevice``,
  ``RawModuleKernels``). Only it needs a real GPU.
"""

from __future__ import annotations

import math

import numpy as np

from ..deprecation import warn_renamed
from ..errors import ConfigError, DataError
from ..reference.data import epoch_base
from ..reference.optimizer import adam_corrections
from . import kernels
from .base import Ops, matmul_shape
from .kernels import activation_code, loss_kernel


def __getattr__(name: str):
    # CupyDevice and RawModuleKernels lived here; they are the thin layer of cupy_device.py now
    if name in ("CupyDevice", "RawModuleKernels"):
        from . import cupy_device

        warn_renamed(f"mlp_xp.backend.cupy_ops.{name}", f"mlp_xp.backend.cupy_device.{name}")
        return getattr(cupy_device, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Threads per block of the elementwise kernels, and the most blocks a grid-stride launch uses.
THREADS = 256
MAX_BLOCKS = 8192
#: Logits a thread keeps in registers in softmax_xent (K_CACHE in kernels/loss.cu).
K_CACHE = 4
#: Output tile of kernels/gemm.cu (G_TILE), and the most blocks grid.y takes on every CUDA GPU.
GEMM_TILE, MAX_GRID_Y = 64, 65535
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


def gemm_geometry(m: int, n: int) -> tuple[tuple[int, int], tuple[int]]:
    """Grid and block of kernels/gemm.cu: one block per 64 x 64 tile of the m x n output, the row tiles on
    grid.x (up to 2**31 - 1 tiles: batches of any size), the column tiles on grid.y (at most 65535)."""
    cols = math.ceil(n / GEMM_TILE)
    if cols > MAX_GRID_Y:
        raise ConfigError(f"a layer of {n} units is wider than the gemm kernel takes ({MAX_GRID_Y * GEMM_TILE})")
    return (max(1, math.ceil(m / GEMM_TILE)), max(1, cols)), (256,)


class CupyOps(Ops):
    """Ops on CUDA device arrays.

    Parameters
    ----------
    index : int
        CUDA device number.
    gemm : {"cublas", "kernel"}
        Matrix products through cuBLAS (fastest), or all of them through the ``gemm`` kernel of
        ``kernels/gemm.cu``. Inside a captured CUDA graph, where CuPy refuses its cuBLAS wrapper, "cublas" means
        cuBLAS called directly on a dedicated handle (:mod:`mlp_xp.backend.cublas_graph`), or the kernel where
        that library cannot be loaded; :attr:`graph_gemm` says which a capture used.
    device, kernels : optional
        The device layer and the kernel launcher. Default: ``CupyDevice(index)`` and
        ``RawModuleKernels(device)`` (:mod:`mlp_xp.backend.cupy_device`). Tests pass ``CupyDevice`` over the CPU
        model of CuPy in ``tests/cuda_host``.
    """

    kind = "cuda"
    can_capture = True

    def __init__(self, index: int = 0, *, gemm: str = "cublas", device=None, kernels=None) -> None:
        super().__init__()
        if gemm not in ("cublas", "kernel"):
            raise ConfigError(f"gemm must be 'cublas' or 'kernel', got {gemm!r}")
        if device is None or kernels is None:
            from .cupy_device import CupyDevice, RawModuleKernels

            device = device if device is not None else CupyDevice(index)
            kernels = kernels if kernels is not None else RawModuleKernels(device)
        self.index, self.gemm = index, gemm
        #: What the GEMMs of a captured graph run on: "cublas" (direct), "kernel", or "kernel (<why>)".
        self.graph_gemm = "kernel" if gemm == "kernel" else "cublas"
        self.dev, self.kernels = device, kernels
        self.xp = self.dev.xp
        self.device = f"cuda:{index}"
        self.name = f"cuda:{index} ({self.dev.name})"
        self._keys: dict[int, object] = {}
        self._capturing = False
        self._launched = 0  # device launches issued, so that a capture can check its graph holds them
        self._gemm_shapes: list | None = None  # while a list: the GEMM shapes of a capture, for the warm-up

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
        self._launch_named(kernels.kernel_name(base, kernels.C_TYPES[np.dtype(dtype)]), grid, block, args, shared_mem)

    def _launch_named(self, name: str, grid, block, args, shared_mem: int = 0) -> None:
        # None is this module's spelling of "no array"; the kernel gets a real null pointer (kernels.NULL):
        # CuPy 13 would pass None as a garbage pointer.
        args = tuple(kernels.NULL if a is None else a for a in args)
        self.kernels.launch(name, grid, block, args, shared_mem)
        self._launched += 1

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
            host = self.dev.foreign_to_host(host)
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

    def free_memory(self) -> int | None:
        return self.dev.memory()[0]

    def synchronize(self) -> None:
        self.counts.syncs += 1
        self.dev.synchronize()

    # ---- step ops ----
    def gather_rows(self, X, Y, idx, xb, yb, W=None, wb=None) -> None:
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
        if (W is None) != (wb is None):
            raise ConfigError("gather_rows: pass the rows' weights W and their batch buffer wb together, or neither")
        if W is not None:
            self._arr(W, dt, "W (row weights)", 1)
            self._arr(wb, dt, "wb", 1)
            if W.shape[0] != X.shape[0] or wb.shape[0] != rows:
                raise DataError(
                    f"gather_rows: {X.shape[0]} rows need as many weights and a batch of {rows}, got W {W.shape}, "
                    f"wb {wb.shape}"
                )
        grid, block = grid_1d(rows * max(d, k, 1))
        name = kernels.kernel_name("gather_rows", kernels.C_TYPES[dt], kernels.C_TYPES[np.dtype(label_type)])
        args = (X, Y, W, idx, xb, yb, wb, np.int64(rows), np.int32(d), np.int32(k))
        self._launch_named(name, grid, block, args)

    def matmul(self, a, b, out, *, trans_a=False, trans_b=False, accumulate=0.0) -> None:
        out = self._float(out, "out", 2)
        self._arr(a, out.dtype, "a", 2)
        self._arr(b, out.dtype, "b", 2)
        matmul_shape(a, b, out, trans_a, trans_b)
        if self.gemm == "kernel" or (self._capturing and self.graph_gemm != "cublas"):
            self.gemm_kernel(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)
        elif self._capturing:
            if self._gemm_shapes is not None:
                self._gemm_shapes.append((a.shape, b.shape, out.shape, out.dtype, bool(trans_a), bool(trans_b)))
            self.dev.graph_gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)
            self._launched += 1
        else:
            self.dev.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)

    def gemm_kernel(self, a, b, out, *, trans_a=False, trans_b=False, accumulate=0.0) -> None:
        """out <- op(a) op(b) + accumulate out with kernels/gemm.cu (shapes already checked by ``matmul``)."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        t = out.dtype.type
        sizes = (np.int32(v) for v in (m, n, k, a.shape[1], b.shape[1], n, bool(trans_a), bool(trans_b)))
        self._launch("gemm", out.dtype, *gemm_geometry(m, n), (a, b, out, *sizes, t(1), t(accumulate)))

    def bias_act(self, z, b, activation, slope) -> None:
        z = self._float(z, "z", 2)
        self._arr(b, z.dtype, "b", 1)
        rows, cols = z.shape
        if b.shape[0] != cols:
            raise DataError(f"bias of length {b.shape[0]} for {cols} columns")
        args = (z, b, np.int64(rows), np.int32(cols), np.int32(activation_code(activation)), z.dtype.type(slope))
        self._launch("bias_act", z.dtype, *grid_1d(z.size), args)

    def act_backward(self, dh, h, activation, slope) -> None:
        dh = self._float(dh, "dh", 2)
        self._arr(h, dh.dtype, "h", 2)
        if h.shape != dh.shape:
            raise DataError(f"act_backward: dh {dh.shape} and h {h.shape} differ")
        code = activation_code(activation)
        if code == kernels.ACTIVATION_CODES["identity"]:  # g' = 1: nothing to do
            return
        args = (dh, h, np.int64(dh.size), np.int32(code), dh.dtype.type(slope))
        self._launch("act_backward", dh.dtype, *grid_1d(dh.size), args)

    def bias_grad(self, g, out, *, accumulate=0.0) -> None:
        g = self._float(g, "g", 2)
        self._arr(out, g.dtype, "out", 1)
        rows, cols = g.shape
        if out.shape[0] != cols:
            raise DataError(f"bias_grad: out has {out.shape[0]} entries for {cols} columns")
        args = (g, out, np.int64(rows), np.int32(cols), g.dtype.type(accumulate))
        self._launch("bias_grad", g.dtype, (math.ceil(cols / 32),), (32, 8), args)

    def loss_grad(
        self, z, y, acc, loss, *, write_grad=True, smoothing=0.0, class_weight=None, sample_weight=None, divisor=None
    ) -> None:
        z = self._float(z, "z (logits)", 2)
        self._arr(acc, np.float64, "acc")
        if acc.size < 2:
            raise DataError("acc must hold at least 2 float64 sums")
        rows, width = z.shape
        kernel = loss_kernel(loss)
        if sample_weight is not None:
            self._arr(sample_weight, z.dtype, "sample_weight", 1)
            if sample_weight.shape[0] != rows:
                raise DataError(f"sample_weight has {sample_weight.shape[0]} entries for {rows} rows")
        rows_weights = (sample_weight, self._divisor(divisor, rows, z.dtype))
        if kernel == "softmax_xent":
            self._arr(y, np.int32, "y (class labels)", 1)
            if y.shape[0] != rows:
                raise DataError(f"{y.shape[0]} labels for {rows} rows of logits")
            if class_weight is not None:
                self._arr(class_weight, z.dtype, "class_weight", 1)
                if class_weight.shape[0] != width:
                    raise DataError(f"class_weight has {class_weight.shape[0]} entries for {width} classes")
            self._softmax_xent(z, y, class_weight, acc, write_grad, smoothing, *rows_weights)
            return
        self._arr(y, z.dtype, "y (targets)", 2)
        if y.shape != z.shape:
            raise DataError(f"targets of shape {y.shape} for outputs of shape {z.shape}")
        if smoothing or class_weight is not None:
            raise ConfigError("label smoothing and class weights apply to cross_entropy only")
        if kernel == "sigmoid_bce":
            self._sigmoid_bce(z, y, acc, write_grad, *rows_weights)
        else:
            sw, div = rows_weights
            args = (z, y, sw, acc, np.int64(rows), np.int32(width), np.int32(bool(write_grad)), div)
            self._launch("squared_error", z.dtype, *grid_1d(z.size), args)

    @staticmethod
    def _divisor(divisor, rows: int, dtype):
        """The gradient's denominator as the kernel's scalar: the batch's rows unless a divisor is given."""
        if divisor is None:
            return dtype.type(rows)
        if isinstance(divisor, (bool, np.bool_)) or not isinstance(divisor, (int, float, np.integer, np.floating)):
            raise ConfigError(f"divisor must be a number (the gradient's denominator), got {type(divisor).__name__}")
        try:
            value = float(divisor)
        except OverflowError:  # an int past float64
            value = math.inf
        with np.errstate(over="ignore"):
            d = dtype.type(value)  # past float32's range: inf, refused below
        if not (np.isfinite(d) and d >= np.finfo(dtype).tiny):  # a subnormal one is 0 to a kernel built with -ftz
            raise DataError(
                f"divisor must be a positive finite number in {dtype} (the gradient's denominator, e.g. the "
                f"batch's sum of weights), got {value!r}"
            )
        return d

    def _row_launch(self, kernel: str, z, per_thread: int, smem_per_thread: int, args) -> None:
        """Launch a row kernel of loss.cu over z's rows, with ``smem_per_thread`` bytes of shared memory each."""
        grid, block = row_geometry(z.shape[0], z.shape[1], per_thread)
        self._launch(kernel, z.dtype, grid, block, args, block[0] * block[1] * smem_per_thread)

    def _softmax_xent(self, z, y, class_weight, acc, write_grad, smoothing, sample_weight, divisor) -> None:
        rows, C = z.shape
        args = (
            z,
            y,
            class_weight,
            sample_weight,
            acc,
            np.int64(rows),
            np.int32(C),
            np.int32(bool(write_grad)),
            z.dtype.type(smoothing),
            divisor,
        )
        self._row_launch("softmax_xent", z, K_CACHE, 3 * z.dtype.itemsize + 4, args)

    def _sigmoid_bce(self, z, y, acc, write_grad, sample_weight, divisor) -> None:
        rows, K = z.shape
        args = (z, y, sample_weight, acc, np.int64(rows), np.int32(K), np.int32(bool(write_grad)), divisor)
        self._row_launch("sigmoid_bce", z, 1, z.dtype.itemsize + 4, args)

    def output_act(self, z, output) -> None:
        z = self._float(z, "z (logits)", 2)
        no_rows = (None, z.dtype.type(z.shape[0]))  # no weights; the divisor of a gradient not written
        if output == "softmax":
            self._softmax_xent(z, None, None, None, False, 0.0, *no_rows)
        elif output == "sigmoid":
            self._sigmoid_bce(z, None, None, False, *no_rows)

    def _same_shape(self, params, **buffers) -> None:
        for what, a in buffers.items():
            self._arr(a, params.dtype, what, 1)
            if a.shape != params.shape:
                raise DataError(f"{what} has shape {a.shape}, params {params.shape}")

    def sgd_update(
        self,
        params,
        grads,
        velocity,
        n_weights,
        lr,
        *,
        momentum=0.0,
        nesterov=False,
        l2=0.0,
        l1=0.0,
        folded=False,
        flush_subnormals=False,
    ) -> None:
        # flush_subnormals is the CPU's: on the GPU subnormals cost nothing, and float32 ones are flushed anyway.
        p = self._float(params, "params", 1)
        grads = None if folded else grads
        v = velocity if momentum or folded else None
        buffers = {} if folded else {"grads": grads}
        if v is not None:
            buffers["velocity"] = v
        self._same_shape(p, **buffers)
        t = p.dtype.type
        sizes = (np.int64(p.size), np.int64(n_weights))
        rates = (t(lr), t(momentum), np.int32(bool(nesterov)), t(l2), t(l1), np.int32(bool(folded)))
        self._launch("sgd_update", p.dtype, *grid_1d(p.size), (p, grads, v, *sizes, *rates))

    def adam_update(self, params, grads, m, v, n_weights, lr, step, *, beta1, beta2, eps, l2=0.0, l1=0.0) -> None:
        p = self._float(params, "params", 1)
        self._same_shape(p, grads=grads, m=m, v=v)
        c1, c2 = adam_corrections(step, beta1, beta2)
        t = p.dtype.type
        rates = (t(x) for x in (lr, beta1, beta2, eps, c1, c2, l2, l1))
        self._launch(
            "adam_update", p.dtype, *grid_1d(p.size), (p, grads, m, v, np.int64(p.size), np.int64(n_weights), *rates)
        )

    def copy(self, dst, src) -> None:
        self._arr(src, dst.dtype, "src")
        if src.shape != dst.shape:
            raise DataError(f"copy: source {src.shape} and destination {dst.shape} differ")
        self.dev.copy(dst, src)

    def fill(self, a, value) -> None:
        self.dev.fill(a, value)

    # ---- collectives ----
    def allreduce(self, buf, comm) -> None:
        """buf <- the sum of every rank's buf, in place, on this backend's stream (``comm``: a communicator that
        reduces device buffers, :class:`mlp_xp.distributed.NCCLCommunicator`). Never waits for the device."""
        self._collective(buf, comm, comm.device_allreduce)

    def bcast(self, buf, comm) -> None:
        """buf <- rank 0's buf, in place, on this backend's stream."""
        self._collective(buf, comm, comm.device_bcast)

    def _collective(self, buf, comm, fn) -> None:
        if getattr(buf, "dtype", None) not in (np.float32, np.float64, np.int32, np.int64):
            raise DataError(f"a collective takes float or integer device buffers, got {getattr(buf, 'dtype', buf)}")
        self._arr(buf, buf.dtype, "the collective's buffer")
        self.dev.collective(fn, buf)
        self._launched += 1  # one NCCL kernel: a node of a captured graph

    # ---- CUDA graphs ----
    def capture(self, fn):
        """Record the device work of ``fn()`` as a CUDA graph without running it; ``replay`` runs it.

        While capturing, matrix products go to cuBLAS called directly (CuPy refuses its own cuBLAS wrapper during
        capture) or to the ``gemm`` kernel (:attr:`graph_gemm`). ``fn`` must allocate nothing, copy nothing to
        or from the host, and take every changing input from a device buffer: the graph keeps the pointers and
        scalars it saw. A graph that does not hold the launches ``fn`` issued is an error, not a silent no-op.
        """
        if self._capturing:
            raise ConfigError("a capture is already running")
        # Compile and load every kernel, and make the cuBLAS handle, first: neither is stream work, and
        # neither may happen inside a capture.
        self.kernels.preload([n for names in kernels.KERNELS.values() for n in names])
        if self.graph_gemm == "cublas":
            try:
                self.dev.capturable_gemm()
            except Exception as e:  # no loadable libcublas: the in-house kernel captures everywhere
                self.graph_gemm = f"kernel ({type(e).__name__}: {e})"
            else:
                self._warm_graph_gemms(fn)
        return self._capture(fn)

    def _capture(self, fn):
        self._capturing = True
        start = self._launched
        try:
            return self.dev.capture(fn, lambda: self._launched - start)
        finally:
            self._capturing = False

    def _warm_graph_gemms(self, fn) -> None:
        """Run each GEMM shape of ``fn`` once on the graph's cuBLAS handle before the real capture: cuBLAS loads a
        kernel on its first launch (lazy loading, the default since CUDA 12.2), which drivers before 12.3 refuse
        inside a capture. The shapes come from a first capture, which runs nothing and is thrown away."""
        shapes: list = []
        self._gemm_shapes = shapes
        try:
            self._capture(fn)
        except Exception:  # noqa: S110 - the real capture below raises whatever this one hit, properly
            pass
        finally:
            self._gemm_shapes = None
        for a_shape, b_shape, out_shape, dtype, trans_a, trans_b in dict.fromkeys(shapes):
            a, b, out = (self.dev.allocate(s, dtype, zero=True) for s in (a_shape, b_shape, out_shape))
            self.dev.graph_gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=0.0)
        self.dev.synchronize()

    def replay(self, graph) -> None:
        """Run a graph made by ``capture`` (one launch)."""
        self.dev.replay(graph)

    # ---- per epoch ----
    def permutation(self, n, seed, epoch):
        keys = self._keys.get(n)
        if keys is None:  # one key buffer per dataset size, reused every epoch
            keys = self._keys[n] = self.dev.allocate((n,), np.uint64, zero=False)
        self._launch_named("shuffle_keys", *grid_1d(n), (keys, np.int64(n), np.uint64(epoch_base(seed, epoch))))
        self.counts.allocations += 1
        return self.dev.argsort(keys)
