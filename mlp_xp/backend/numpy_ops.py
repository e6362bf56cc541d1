"""The CPU backend: every op in NumPy, by way of the reference twins in ``mlp_xp.functions``.

Where NumPy's own BLAS can be called directly (:mod:`mlp_xp.backend.blas`), the matrix products, the bias
gradient and the SGD updates go through it instead: multi-threaded, and able to accumulate in place,
which lets momentum ride along in the gradient GEMMs. ``NumpyOps(fast=False)`` is the plain reference.
"""

from __future__ import annotations

import numpy as np

from ..functions import activations, losses, optimizers, shuffle
from ..functions._scratch import ScratchCache
from . import blas as _blas
from .base import Ops


class NumpyOps(Ops):
    """Ops on NumPy arrays in host memory. Temporaries come from a cache, so a steady step allocates nothing."""

    kind = "cpu"
    xp = np

    def __init__(self, fast: bool = True) -> None:
        super().__init__()
        self.blas = _blas.find() if fast else None
        self.name = f"cpu (NumPy {np.__version__}{', BLAS direct' if self.blas else ''})"
        self.scratch = ScratchCache()
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

    def _blas_for(self, *arrays):
        """The direct BLAS, if these arrays can go to it as raw pointers: one float dtype, C-contiguous."""
        dt = arrays[0].dtype
        if self.blas is None or dt not in self.blas.gemm:
            return None
        if any(a.dtype != dt or not a.flags.c_contiguous for a in arrays):
            return None
        return self.blas

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
        activations.bias_act_forward(z, b, activation, slope, self.scratch)

    def act_backward(self, dh, h, activation, slope) -> None:
        activations.act_backward(dh, h, activation, slope, self.scratch)

    def bias_grad(self, g, out, beta=0.0) -> None:
        if self._blas_for(out, g) is not None:
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

    def sgd_update(self, params, grads, velocity, n_weights, lr, momentum=0.0, nesterov=False,
                   l2=0.0, l1=0.0, accumulated=False) -> None:
        blas = self._blas_for(*(a for a in (params, grads, velocity) if a is not None))
        if blas is None:
            optimizers.sgd_update(params, grads, velocity, n_weights, lr, momentum, nesterov, l2, l1,
                                  accumulated, self.scratch)
            return
        # The twin's rule, one BLAS pass per line (each threaded, none allocating).
        g = velocity if accumulated else grads
        if l2:
            blas.add_scaled(g[:n_weights], l2, params[:n_weights])              # G += l2 W
        if l1:
            t = self.scratch("penalty", (n_weights,), params.dtype)
            np.sign(params[:n_weights], out=t)
            blas.add_scaled(g[:n_weights], l1, t)                               # G += l1 sign(W)
        step = g
        if momentum and not accumulated:
            blas.scale_add(velocity, momentum, 1.0, grads)                      # V = G + mu V
            if nesterov:
                blas.add_scaled(grads, momentum, velocity)                      # G + mu V
            else:
                step = velocity
        blas.add_scaled(params, -lr, step)                                      # W -= lr step

    def adam_update(self, params, grads, m, v, n_weights, lr, step, beta1, beta2, eps, l2=0.0,
                    l1=0.0) -> None:
        optimizers.adam_update(params, grads, m, v, n_weights, lr, step, beta1, beta2, eps, l2, l1,
                               self.scratch)

    def copy(self, dst, src) -> None:
        np.copyto(dst, src)

    def fill(self, a, value) -> None:
        a.fill(value)

    # ---- per epoch ----
    def permutation(self, n, seed, epoch):
        self.counts.allocations += 1
        return shuffle.permutation(n, seed, epoch)
