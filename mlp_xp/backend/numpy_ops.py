"""The CPU backend: every op in NumPy, by way of the reference twins in ``mlp_xp.functions``.

Two faster paths are taken where they exist, each with the twins' contract:

* NumPy's own BLAS called directly (:mod:`mlp_xp.backend.blas`) for the matrix products and the SGD
  update: multi-threaded, and able to accumulate in place, which lets momentum ride along in the gradient GEMMs;
* compiled loops (:mod:`mlp_xp.backend.cpu_kernels`, ``kernels/cpu.cpp``) for the elementwise ops, the
  softmax cross-entropy, the bias gradient and Adam's update: one call per op instead of several NumPy calls.

``NumpyOps(fast=False)`` is the plain reference; the twins also serve every case the fast paths leave
(other dtypes, non-contiguous or read-only arrays, the losses other than softmax cross-entropy).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..functions import activations, losses, optimizers, shuffle
from ..functions._scratch import ScratchCache
from . import blas as _blas
from . import cpu_kernels as _cpu_kernels
from .base import Ops

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: How often the SGD velocity's subnormal numbers are set to zero, in updates.
FLUSH_EVERY = 16


def _raw_ok(a: np.ndarray) -> bool:
    # what may go to compiled code as a raw pointer: C-contiguous, aligned, writeable
    return a.flags.carray and a.flags.writeable


def _raw_pointers_ok(arrays) -> bool:
    """Whether arrays (Nones skipped) may go to compiled code (BLAS or kernels/cpu.cpp) as raw pointers: one
    float dtype, each C-contiguous, aligned and writeable. Anything else takes the NumPy path, which raises
    where NumPy would (a read-only output, say) instead of writing through the pointer."""
    dt = arrays[0].dtype
    return dt in _FLOATS and all(a.dtype == dt and _raw_ok(a) for a in arrays if a is not None)


class NumpyOps(Ops):
    """Ops on NumPy arrays in host memory. Temporaries come from a cache, so a steady step allocates nothing."""

    kind = "cpu"
    xp = np

    def __init__(self, fast: bool = True) -> None:
        super().__init__()
        self.blas = _blas.find() if fast else None
        self.kernels = _cpu_kernels.find() if fast else None
        extras = [what for what, on in (("BLAS direct", self.blas), ("compiled kernels", self.kernels)) if on]
        self.name = f"cpu (NumPy {np.__version__}{''.join(', ' + e for e in extras)})"
        self.scratch = ScratchCache()
        self._updates: dict[int, int] = {}  # SGD updates seen, per velocity buffer (id)
        self._ones = np.ones(0)

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

    # ---- step ops ----
    def gather_rows(self, X, Y, idx, xb, yb) -> None:
        shuffle.gather_rows(X, Y, idx, xb, yb)

    def _kernels_for(self, *arrays) -> bool:
        """Whether the compiled kernels can take these arrays (Nones skipped) as raw pointers."""
        return self.kernels is not None and _raw_pointers_ok(arrays)

    def _blas_for(self, *arrays):
        """The direct BLAS, if it can take these arrays as raw pointers (else None)."""
        return self.blas if self.blas is not None and _raw_pointers_ok(arrays) else None

    def matmul(self, a, b, out, trans_a=False, trans_b=False, beta=0.0) -> None:
        if self._blas_for(out, a, b) is not None:
            # BLAS takes raw pointers: check the shapes NumPy's matmul would have checked.
            m, k = a.shape[::-1] if trans_a else a.shape
            k2, n = b.shape[::-1] if trans_b else b.shape
            if k != k2 or out.shape != (m, n):
                raise ValueError(f"matmul shapes do not fit: op(a) {m}x{k}, op(b) {k2}x{n}, out {out.shape}")
            self.blas.matmul(a, b, out, trans_a, trans_b, beta)
            return
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if not beta:
            np.matmul(a, b, out=out)
            return
        t = self.scratch("matmul", out.shape, out.dtype)
        np.matmul(a, b, out=t)
        out *= out.dtype.type(beta)
        out += t

    def bias_act(self, z, b, activation, slope) -> None:
        # (shapes checked here: the loops take raw pointers; a mismatch goes to the twin, which raises)
        if self._kernels_for(z, b) and z.ndim == 2 and b.shape == z.shape[1:] and activation in activations.ACTIVATIONS:
            self.kernels.bias_act(z, b, activation, slope)
            return
        activations.bias_act_forward(z, b, activation, slope, self.scratch)

    def act_backward(self, dh, h, activation, slope) -> None:
        if self._kernels_for(dh, h) and h.shape == dh.shape and activation in activations.ACTIVATIONS:
            self.kernels.act_backward(dh, h, activation, slope)
            return
        activations.act_backward(dh, h, activation, slope, self.scratch)

    def bias_grad(self, g, out, beta=0.0) -> None:
        fits = g.ndim == 2 and out.shape == g.shape[1:]  # else NumPy's sum below raises
        if fits and self._kernels_for(g, out):
            # One pass over g on this thread: no BLAS thread hand-off for a few hundred columns.
            self.kernels.bias_grad(g, out, beta)
            return
        if fits and self._blas_for(out, g) is not None:
            # db = 1^T g + beta db: a 1-row GEMM, threaded and accumulating in place.
            ones = self._ones_row(g.shape[0], g.dtype)
            self.blas.matmul(ones, g, out.reshape(1, -1), False, False, beta)
            return
        if not beta:
            np.sum(g, axis=0, out=out)
            return
        t = self.scratch("bias_grad", out.shape, out.dtype)
        np.sum(g, axis=0, out=t)
        out *= out.dtype.type(beta)
        out += t

    def _ones_row(self, n: int, dtype) -> np.ndarray:
        if self._ones.shape[-1] < n or self._ones.dtype != dtype:
            self._ones = np.ones((1, max(n, 2 * self._ones.shape[-1])), dtype)
        return self._ones[:, :n]

    def loss_grad(self, z, y, acc, loss, write_grad=True, smoothing=0.0, class_weight=None) -> None:
        if loss == "cross_entropy":
            if (
                self._kernels_for(z, class_weight)
                and z.ndim == 2
                and z.shape[1] > 0
                and y.shape == z.shape[:1]
                and y.dtype == np.int32
                and y.flags.carray
                and acc.dtype == np.float64
                and acc.size >= 2
                and _raw_ok(acc)
                and (class_weight is None or class_weight.shape == z.shape[1:])
            ):
                self.kernels.softmax_xent(z, y, acc, write_grad, smoothing, class_weight)
                return
            losses.softmax_cross_entropy(z, y, acc, write_grad, smoothing, class_weight, self.scratch)
        elif loss == "binary_cross_entropy":
            losses.sigmoid_binary_cross_entropy(z, y, acc, write_grad, self.scratch)
        elif loss == "mse":
            losses.squared_error(z, y, acc, write_grad, self.scratch)
        else:
            losses.loss_code(loss)

    def output_act(self, z, output) -> None:
        if output == "softmax":
            losses.softmax(z, self.scratch)
        elif output == "sigmoid":
            activations.sigmoid(z)

    def sgd_update(
        self, params, grads, velocity, n_weights, lr, momentum=0.0, nesterov=False, l2=0.0, l1=0.0, accumulated=False
    ) -> None:
        present = [a for a in (params, grads, velocity) if a is not None]
        blas = self._blas_for(*present) if all(a.shape == params.shape for a in present) else None
        if blas is None:
            optimizers.sgd_update(
                params, grads, velocity, n_weights, lr, momentum, nesterov, l2, l1, accumulated, self.scratch
            )
            return
        # The twin's rule, one BLAS pass per line (each threaded, none allocating).
        g = velocity if accumulated else grads
        if l2:
            blas.add_scaled(g[:n_weights], l2, params[:n_weights])  # G += l2 W
        if l1:
            t = self.scratch("penalty", (n_weights,), params.dtype)
            np.sign(params[:n_weights], out=t)
            blas.add_scaled(g[:n_weights], l1, t)  # G += l1 sign(W)
        step = g
        if momentum and not accumulated:
            blas.scale_add(velocity, momentum, 1.0, grads)  # V = G + mu V
            if nesterov:
                blas.add_scaled(grads, momentum, velocity)  # G + mu V
            else:
                step = velocity
        blas.add_scaled(params, -lr, step)  # W -= lr step
        self._flush_now_and_then(velocity)

    def _flush_now_and_then(self, velocity) -> None:
        # Every FLUSH_EVERY-th update of a velocity buffer, its subnormal entries become 0 (kernels/cpu.cpp says
        # why): each then lives a few steps instead of the ~150 it takes mu^k to underflow, at 1/16 of one pass
        # over V. Counted per buffer, so that when a run flushes depends on that run alone.
        if velocity is None or not self._kernels_for(velocity):
            return
        key = id(velocity)
        n = self._updates.get(key)
        if n is None:
            weakref.finalize(velocity, self._updates.pop, key, None)
            n = 0
        self._updates[key] = n = n + 1
        if n % FLUSH_EVERY == 0:
            self.kernels.flush_subnormals(velocity)

    def adam_update(self, params, grads, m, v, n_weights, lr, step, beta1, beta2, eps, l2=0.0, l1=0.0) -> None:
        if self._kernels_for(params, grads, m, v) and params.shape == grads.shape == m.shape == v.shape:
            c1, c2 = optimizers.adam_corrections(step, beta1, beta2)
            self.kernels.adam_update(params, grads, m, v, n_weights, lr, beta1, beta2, eps, c1, c2, l2, l1)
            return
        optimizers.adam_update(params, grads, m, v, n_weights, lr, step, beta1, beta2, eps, l2, l1, self.scratch)

    def copy(self, dst, src) -> None:
        np.copyto(dst, src)

    def fill(self, a, value) -> None:
        a.fill(value)

    # ---- per epoch ----
    def permutation(self, n, seed, epoch):
        self.counts.allocations += 1
        return shuffle.permutation(n, seed, epoch)
