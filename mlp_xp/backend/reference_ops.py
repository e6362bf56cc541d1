"""The op vocabulary on the references themselves: the oracle that every backend is compared with.

:class:`ReferenceOps` holds NumPy arrays like the CPU backend, but each step op is the plain formula of
:mod:`mlp_xp.reference`: slow, allocating, and easy to check against the notes. The contract tests and
``mlp-xp doctor`` run every op on a backend and here, in float64, and compare (:mod:`mlp_xp.selfcheck`).
"""

from __future__ import annotations

from ..reference import data, layer, optimizer
from ..reference import loss as loss_reference
from .kernels import activation_code, loss_kernel
from .numpy_ops import NumpyOps


class ReferenceOps(NumpyOps):
    """The references as a backend (memory ops as on the CPU backend)."""

    def __init__(self) -> None:
        super().__init__(fast=False)
        self.name = "reference (mlp_xp.reference, NumPy)"

    def gather_rows(self, X, Y, idx, xb, yb, W=None, wb=None) -> None:
        data.gather_rows(X, Y, idx, xb, yb, W, wb)

    def matmul(self, a, b, out, *, trans_a=False, trans_b=False, accumulate=0.0) -> None:
        layer.matmul(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate)

    def bias_act(self, z, b, activation, slope) -> None:
        activation_code(activation)
        layer.bias_act(z, b, activation, slope)

    def act_backward(self, dh, h, activation, slope) -> None:
        activation_code(activation)
        layer.act_backward(dh, h, activation, slope)

    def bias_grad(self, g, out, *, accumulate=0.0) -> None:
        layer.bias_grad(g, out, accumulate=accumulate)

    def loss_grad(
        self, z, y, acc, loss, *, write_grad=True, smoothing=0.0, class_weight=None, sample_weight=None, divisor=None
    ) -> None:
        kernel = loss_kernel(loss)
        options = {"smoothing": smoothing, "class_weight": class_weight} if kernel == "softmax_xent" else {}
        rows = {"sample_weight": sample_weight, "divisor": divisor}
        getattr(loss_reference, kernel)(z, y, acc, write_grad=write_grad, **options, **rows)

    def output_act(self, z, output) -> None:
        loss_reference.output_act(z, output)

    def sgd_update(self, params, grads, velocity, n_weights, lr, *, flush_subnormals=False, **rule) -> None:
        optimizer.sgd_update(params, grads, velocity, n_weights, lr, **rule)

    def adam_update(self, params, grads, m, v, n_weights, lr, step, **rule) -> None:
        optimizer.adam_update(params, grads, m, v, n_weights, lr, step, **rule)
