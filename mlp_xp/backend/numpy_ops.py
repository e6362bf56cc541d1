"""The CPU backend: the op vocabulary on NumPy arrays, each op taking the fastest of three implementations that
can take its arguments.

* NumPy's own BLAS, called directly (:mod:`mlp_xp.backend.blas`), for the matrix products and the SGD update:
  multi-threaded, and able to accumulate in place, which lets momentum ride along in the gradient GEMMs;
* the compiled loops (:mod:`mlp_xp.backend.cpu_loops`, ``kernels/cpu.cpp``) for the elementwise ops, the losses,
  the bias gradient, the L1 penalty and Adam's update: one call per op instead of several NumPy calls;
* the NumPy path (:mod:`mlp_xp.backend.numpy_path`) for everything else: other dtypes, non-contiguous or
  read-only arrays, and machines without a compiler.

Raw pointers go to compiled code only for arrays it can take (one float dtype, C-contiguous, aligned,
writeable, fitting shapes); anything else takes the NumPy path, which raises where NumPy would.
``NumpyOps(fast=False)`` is the NumPy path alone. The ops written here (matmul, bias_grad, the BLAS form of
sgd_update) have their references in mlp_xp/reference/layer.py and mlp_xp/reference/optimizer.py.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np

from ..deprecation import warn_renamed
from ..reference import loss as loss_reference
from ..reference.data import permutation
from ..validation import is_sparse
from . import blas as _blas
from . import cpu_loops as _cpu_loops
from . import numpy_path
from .base import OpCounts, Ops, matmul_shape
from .kernels import activation_code, loss_kernel
from .program import NotRecordable, Program
from .scratch import ScratchCache

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _raw_ok(a: np.ndarray) -> bool:
    # what may go to compiled code as a raw pointer: C-contiguous, aligned, writeable
    flags = a.flags
    return flags.carray and flags.writeable


def _raw_pointers_ok(arrays) -> bool:
    """Whether arrays (Nones skipped) may go to compiled code as raw pointers: one float dtype, each
    C-contiguous, aligned and writeable."""
    dt = arrays[0].dtype
    if dt not in _FLOATS:
        return False
    for a in arrays:  # (a loop, not all() over a generator: this runs some twenty times a step)
        if a is not None and (a.dtype != dt or not _raw_ok(a)):
            return False
    return True


class NumpyOps(Ops):
    """Ops on NumPy arrays in host memory. Temporaries come from a cache, so a steady step allocates nothing."""

    kind = "cpu"
    device = "cpu"
    xp = np
    #: A SciPy CSR training set is gathered and densified a batch at a time (:meth:`gather_rows`).
    takes_sparse = True

    def __init__(self, *, fast: bool = True, blas: str | None = None) -> None:
        """``fast=False``: NumPy alone (no direct BLAS, no compiled loops); ``blas``: ``"numpy"`` or ``"mkl"``
        instead of the BLAS MLP_XP_BLAS and the machine choose (:func:`mlp_xp.backend.blas.choice`)."""
        super().__init__()
        self.blas = (_blas.find() if blas is None else _blas.load(blas)) if fast else None
        self.loops = _cpu_loops.find() if fast else None
        # W_l -= lr V_l right after layer l's dW product, while V_l is in cache, instead of one pass over every
        # parameter after the backward pass (for models of at least step.PER_LAYER_MIN_PARAMS parameters): 0.96x
        # the epoch's time on an EPYC AVX2 (Fashion-MNIST, median of 9 paired rounds; benchmarks/README.md)
        self.updates_per_layer = self.blas is not None
        # a step (a full batch's, a last partial one's) recorded once and replayed by one compiled call
        # (mlp_xp/backend/program.py)
        self.records_steps = self.blas is not None and self.loops is not None
        self._recording = False
        blas_name = "BLAS direct" if self.blas is None or self.blas.kind == "numpy" else self.blas.name
        extras = [what for what, on in ((blas_name, self.blas), ("compiled loops", self.loops)) if on]
        self.name = f"cpu (NumPy {np.__version__}{''.join(', ' + e for e in extras)})"
        self.scratch = ScratchCache()
        self._ones = np.ones(0)

    @property
    def kernels(self):
        """Deprecated: the old name of :attr:`loops`."""
        warn_renamed("NumpyOps.kernels", "NumpyOps.loops")
        return self.loops

    # ---- memory ----
    def asarray(self, host, dtype=None):
        self.counts.allocations += 1
        return np.array(host, dtype=dtype, order="C", copy=True)

    def to_host(self, a) -> np.ndarray:
        # Host memory already: nothing to wait for, but count it like a GPU would so tests see the same.
        self.counts.syncs += 1
        return np.array(a, copy=True)

    def peek(self, a) -> np.ndarray:
        return a

    def all_finite(self, a) -> bool:
        return bool(np.isfinite(a).all())  # (no copy of the array: this runs before every fit)

    # ---- recording a step (mlp_xp/backend/program.py) ----
    @contextmanager
    def recording(self, buffers, step_pointers):
        """A :class:`Program` and a copy of this backend whose step ops record their compiled calls into it
        instead of making them (an op that would run NumPy code raises :class:`NotRecordable`), as the pair
        ``(program, ops)``; the program is packed when the block ends without an error. ``buffers``: every array
        the calls may point into; ``step_pointers``: the arrays each replay passes anew (:meth:`run_program`).

        The backend itself is untouched (it is shared: another thread's steps run on it as before), and the
        copy counts into counters of its own: recording runs nothing, so the backend's counts say what ran."""
        if not self.records_steps:
            raise NotRecordable(f"{self.name} cannot record a step: it needs NumPy's BLAS and the compiled loops")
        program = Program(self.loops, buffers, step_pointers)
        ops = copy.copy(self)
        ops.blas, ops.loops, ops._recording = self.blas.recording(program), self.loops.recording(program), True
        ops.counts = OpCounts()
        yield program, ops
        program.finish()

    def _numpy_path(self, op: str):
        """numpy_path, for an op that takes it (NotRecordable while recording: NumPy code cannot be recorded)."""
        if self._recording:
            raise NotRecordable(f"{op} takes the NumPy path with these arguments")
        return numpy_path

    # ---- which implementation takes the arguments ----
    def _loops_for(self, *arrays):
        """The compiled loops, if they can take these arrays (Nones skipped) as raw pointers (else None)."""
        return self.loops if self.loops is not None and _raw_pointers_ok(arrays) else None

    def _blas_for(self, *arrays):
        """The direct BLAS, if it can take these arrays as raw pointers (else None)."""
        return self.blas if self.blas is not None and _raw_pointers_ok(arrays) else None

    # ---- step ops ----
    def gather_rows(self, X, Y, idx, xb, yb, W=None, wb=None) -> None:
        pairs = ((X, xb), (Y, yb)) if W is None else ((X, xb), (Y, yb), (W, wb))
        if self.loops is not None and _gathers(idx, pairs):
            for src, out in pairs:
                self.loops.gather_rows(src, idx, out)
            return
        if not is_sparse(X):
            self._numpy_path("gather_rows").gather_rows(X, Y, idx, xb, yb, W, wb)
            return
        self._numpy_path("gather_rows")  # (a sparse gather is NumPy and SciPy code too)
        # a CSR training set (reference: gather_rows in mlp_xp/reference/data.py): only the batch's rows are
        # densified (their CSR slice is allocated, a step's only allocation)
        self.counts.allocations += 1
        X[idx].toarray(out=xb)
        np.take(Y, idx, axis=0, out=yb, mode="clip")
        if W is not None:
            np.take(W, idx, axis=0, out=wb, mode="clip")

    def matmul(self, a, b, out, *, trans_a=False, trans_b=False, accumulate=0.0) -> None:
        blas = self._blas_for(out, a, b)
        if blas is not None:
            matmul_shape(a, b, out, trans_a, trans_b)  # BLAS takes raw pointers: NumPy's shape check, first
            blas.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)
            return
        self._numpy_path("matmul")
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if not accumulate:
            np.matmul(a, b, out=out)
            return
        t = self.scratch("matmul", out.shape, out.dtype)
        np.matmul(a, b, out=t)
        out *= out.dtype.type(accumulate)
        out += t

    def bias_act(self, z, b, activation, slope) -> None:
        # (shapes checked here: the loops take raw pointers; a mismatch goes to the NumPy path, which raises)
        loops = self._loops_for(z, b)
        if loops is not None and z.ndim == 2 and b.shape == z.shape[1:]:
            loops.bias_act(z, b, activation, slope)  # which refuses an unknown activation, as the GPU does
        else:
            activation_code(activation)
            self._numpy_path("bias_act").bias_act(z, b, activation, slope, self.scratch)

    def act_backward(self, dh, h, activation, slope) -> None:
        loops = self._loops_for(dh, h)
        if loops is not None and h.shape == dh.shape:
            loops.act_backward(dh, h, activation, slope)
        else:
            activation_code(activation)
            self._numpy_path("act_backward").act_backward(dh, h, activation, slope, self.scratch)

    def bias_grad(self, g, out, *, accumulate=0.0) -> None:
        fits = g.ndim == 2 and out.shape == g.shape[1:]  # else NumPy's sum below raises
        loops = self._loops_for(g, out) if fits else None
        if loops is not None:
            # One pass over g on this thread: no BLAS thread hand-off for a few hundred columns.
            loops.bias_grad(g, out, accumulate=accumulate)
            return
        blas = self._blas_for(out, g) if fits else None
        if blas is not None:
            # db = 1^T g + accumulate db: a 1-row GEMM, threaded and accumulating in place.
            blas.matmul(self._ones_row(g.shape[0], g.dtype), g, out.reshape(1, -1), accumulate=accumulate)
            return
        self._numpy_path("bias_grad")
        if not accumulate:
            np.sum(g, axis=0, out=out)
            return
        t = self.scratch("bias_grad", out.shape, out.dtype)
        np.sum(g, axis=0, out=t)
        out *= out.dtype.type(accumulate)
        out += t

    def _ones_row(self, n: int, dtype) -> np.ndarray:
        if self._ones.shape[-1] < n or self._ones.dtype != dtype:
            self._ones = np.ones((1, max(n, 2 * self._ones.shape[-1])), dtype)
        return self._ones[:, :n]

    def loss_grad(
        self,
        z,
        y,
        acc,
        loss,
        *,
        write_grad=True,
        smoothing=0.0,
        class_weight=None,
        sample_weight=None,
        divisor=None,
    ) -> None:
        kernel = loss_kernel(loss)
        rows = {"sample_weight": sample_weight, "divisor": divisor}
        if kernel in ("squared_error", "sigmoid_bce"):  # (targets of z's shape)
            loops = self._loops_for(z, y, sample_weight)
            if loops is not None and z.ndim == 2 and y.shape == z.shape and _sums_into(acc):
                if sample_weight is None or _rows_of(sample_weight, z):
                    getattr(loops, kernel)(z, y, acc, write_grad=write_grad, **rows)
                    return
        if kernel != "softmax_xent":
            getattr(self._numpy_path(kernel), kernel)(z, y, acc, write_grad=write_grad, scratch=self.scratch, **rows)
            return
        loops = self._loops_for(z, class_weight)
        fits = (
            loops is not None
            and (sample_weight is None or _rows_of(sample_weight, z))
            and z.ndim == 2
            and z.shape[1] > 0
            and y.shape == z.shape[:1]
            and y.dtype == np.int32
            and y.flags.carray
            and _sums_into(acc)
            and (class_weight is None or class_weight.shape == z.shape[1:])
        )
        if fits:
            loops.softmax_xent(z, y, acc, write_grad=write_grad, smoothing=smoothing, class_weight=class_weight, **rows)
        else:
            self._numpy_path("softmax_xent").softmax_xent(
                z,
                y,
                acc,
                write_grad=write_grad,
                smoothing=smoothing,
                class_weight=class_weight,
                scratch=self.scratch,
                **rows,
            )

    def output_act(self, z, output) -> None:
        if output == "sigmoid":
            numpy_path.output_act(z, output)
        else:  # prediction only, where allocating is allowed; the reference was as fast (benchmarks/README.md).
            # Reference: output_act in mlp_xp/reference/loss.py
            loss_reference.output_act(z, output)

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
        present = [a for a in (params, grads, velocity) if a is not None]
        blas = self._blas_for(*present) if all(a.shape == params.shape for a in present) else None
        if blas is None:
            self._numpy_path("sgd_update").sgd_update(
                params,
                grads,
                velocity,
                n_weights,
                lr,
                momentum=momentum,
                nesterov=nesterov,
                l2=l2,
                l1=l1,
                folded=folded,
                scratch=self.scratch,
            )
            return
        # The reference's rule, one BLAS pass per line (each threaded, none allocating).
        g = velocity if folded else grads
        if not n_weights:  # (the biases' part of an update in parts: no penalty, and no empty BLAS calls)
            l2 = l1 = 0.0
        if l2:
            blas.add_scaled(g[:n_weights], l2, params[:n_weights])  # G += l2 W
        if l1:
            loops = self._loops_for(g, params)
            if loops is not None:
                loops.add_l1(g[:n_weights], params[:n_weights], l1)  # G += l1 sign(W)
            else:
                self._numpy_path("sgd_update with l1")  # (np.sign)
                t = self.scratch("penalty", (n_weights,), params.dtype)
                np.sign(params[:n_weights], out=t)
                blas.add_scaled(g[:n_weights], l1, t)
        step = g
        if momentum and not folded:
            blas.scale_add(velocity, momentum, 1.0, grads)  # V = G + mu V
            if nesterov:
                blas.add_scaled(grads, momentum, velocity)  # G + mu V
            else:
                step = velocity
        blas.add_scaled(params, -lr, step)  # W -= lr step
        loops = self._loops_for(velocity) if flush_subnormals and velocity is not None else None
        if loops is not None:
            loops.flush_subnormals(velocity)

    def adam_update(self, params, grads, m, v, n_weights, lr, step, *, beta1, beta2, eps, l2=0.0, l1=0.0) -> None:
        loops = self._loops_for(params, grads, m, v)
        fits = loops is not None and params.shape == grads.shape == m.shape == v.shape
        impl, extra = (loops, {}) if fits else (self._numpy_path("adam_update"), {"scratch": self.scratch})
        impl.adam_update(
            params, grads, m, v, n_weights, lr, step, beta1=beta1, beta2=beta2, eps=eps, l2=l2, l1=l1, **extra
        )

    def run_program(self, program: Program, pointers, scalars) -> None:
        # (the arrays' checks are the caller's, TrainStep's: the program was recorded against their shapes)
        program.run(pointers, scalars)

    def copy(self, dst, src) -> None:
        self._numpy_path("copy")
        np.copyto(dst, src)

    def fill(self, a, value) -> None:
        self._numpy_path("fill")
        a.fill(value)

    # ---- per epoch ----
    def permutation(self, n, seed, epoch):
        self.counts.allocations += 1
        return permutation(n, seed, epoch)


def _gathers(idx, pairs) -> bool:
    """Whether the compiled gather takes these (source, batch buffer) pairs: int64 indices in one C-contiguous
    row, each source C-contiguous with rows, each buffer its dtype, writeable, of its row shape, one per index."""
    if not (isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.ndim == 1 and idx.flags.c_contiguous):
        return False
    for src, out in pairs:
        if not (
            isinstance(src, np.ndarray)
            and src.ndim >= 1
            and src.shape[0] > 0
            and src.flags.c_contiguous
            and src.dtype.kind in "biuf"
            and src.dtype == out.dtype
            and out.shape == (idx.shape[0], *src.shape[1:])
            and _raw_ok(out)
        ):
            return False
    return True


def _sums_into(acc) -> bool:
    """Whether a loss's (sum, count) can be added into acc by compiled code: float64, two at least, raw."""
    return acc.dtype == np.float64 and acc.size >= 2 and _raw_ok(acc)


def _rows_of(sample_weight, z) -> bool:
    """Whether per-row weights can go to the compiled loop as a raw pointer: z's dtype, one per row, C order."""
    return (
        isinstance(sample_weight, np.ndarray)
        and sample_weight.dtype == z.dtype
        and sample_weight.shape == z.shape[:1]
        and sample_weight.flags.c_contiguous
    )
