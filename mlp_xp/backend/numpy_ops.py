"""The CPU backend: every op in NumPy, by way of the reference twins in ``mlp_xp.functions``."""

from __future__ import annotations

import numpy as np

from ..functions import activations, losses, optimizers, shuffle
from ..functions._scratch import ScratchCache
from .base import Ops


class NumpyOps(Ops):
    """Ops on NumPy arrays in host memory. Temporaries come from a cache, so a steady step allocates nothing."""

    kind = "cpu"
    xp = np

    def __init__(self) -> None:
        super().__init__()
        self.name = f"cpu (NumPy {np.__version__})"
        self.scratch = ScratchCache()

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

    def matmul(self, a, b, out, trans_a=False, trans_b=False, beta=0.0) -> None:
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

    def bias_grad(self, g, out) -> None:
        np.sum(g, axis=0, out=out)

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
                   l2=0.0, l1=0.0) -> None:
        optimizers.sgd_update(params, grads, velocity, n_weights, lr, momentum, nesterov, l2, l1,
                              self.scratch)

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
