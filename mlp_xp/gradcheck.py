"""Gradient checking: hand-derived gradients against central finite differences, in float64.

    dL/dtheta_i  ~  (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps)

L is the mean loss over the given batch plus the penalties the optimizer applies to the weights,
l2/2 ||W||^2 + l1 |W|_1, so the check covers every term a training step differentiates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import MLP
from .optim import Gradients
from .reference.optimizer import regularized
from .validation import check_features, check_targets


@dataclass
class GradcheckResult:
    """Outcome of :func:`gradcheck`: the worst errors over the checked parameters, and whether they pass."""

    max_abs_error: float
    max_rel_error: float
    n_checked: int
    atol: float
    rtol: float
    analytic: np.ndarray
    numeric: np.ndarray

    @property
    def ok(self) -> bool:
        return bool(np.all(np.abs(self.analytic - self.numeric) <= self.atol + self.rtol * np.abs(self.numeric)))

    def __str__(self) -> str:
        return (
            f"gradcheck {'passed' if self.ok else 'FAILED'}: {self.n_checked} parameters, max abs error "
            f"{self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}"
        )


def loss_and_gradient(
    model: MLP, X, y, l2: float = 0.0, l1: float = 0.0, smoothing: float = 0.0, class_weight=None
) -> tuple[float, np.ndarray]:
    """Mean loss (plus penalties) over all of (X, y) and its gradient, as a host float and flat array.

    The gradient comes from the model's own forward, fused loss and backward ops on its own backend.
    """
    ops = model.ops
    X = check_features(X, model.n_inputs, model.dtype)
    Y = check_targets(y, len(X), model.loss, model.n_outputs, model.dtype)
    n = len(X)
    ws = model.workspace(n)
    xd = ops.asarray(X)
    ops.copy(ws.yb, ops.asarray(Y))
    grads = ops.zeros((model.layout.n_params,), model.dtype)
    cw = None if class_weight is None else ops.asarray(np.asarray(class_weight, model.dtype))
    z = model.forward(xd, ws)
    ops.loss_grad(z, ws.yb, ws.acc, model.loss, smoothing=smoothing, class_weight=cw)
    model.backward(xd, ws, Gradients(grads, *model.layout.views(grads)))
    loss = float(ops.to_host(ws.acc)[0]) / n
    params, nw = model.get_flat(), model.layout.n_weights
    g = regularized(ops.to_host(grads), params, nw, l2, l1)  # d/dW of the penalty term below
    return loss + _penalty(params[:nw], l2, l1), g


def _penalty(w: np.ndarray, l2: float, l1: float) -> float:
    return 0.5 * l2 * float(np.dot(w, w)) + l1 * float(np.abs(w).sum())


def gradcheck(
    model: MLP,
    X,
    y,
    *,
    l2: float = 0.0,
    l1: float = 0.0,
    smoothing: float = 0.0,
    class_weight=None,
    eps: float = 1e-6,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    max_params: int | None = None,
    seed: int = 0,
    device=None,
) -> GradcheckResult:
    """Compare ``model``'s backpropagated gradient with central differences, on a float64 copy of it.

    Parameters
    ----------
    model : MLP
        The model to check; it is not modified.
    X, y : array-like
        A small batch (a few to a few dozen rows).
    l2, l1, smoothing, class_weight
        Penalties and loss options, as in training.
    eps : float
        Step of the central difference.
    atol, rtol : float
        A parameter passes when |analytic - numeric| <= atol + rtol |numeric|.
    max_params : int or None
        Check a random subset of this many parameters (all when None).
    device : str or None
        Backend of the float64 copy (default: the model's own, so a GPU model is checked on the GPU).
    """
    m64 = MLP.from_config({**model.config(), "dtype": "float64"}, model.ops if device is None else device)
    theta = model.get_flat().astype(np.float64)
    m64.set_flat(theta)
    _, analytic = loss_and_gradient(m64, X, y, l2, l1, smoothing, class_weight)
    idx = np.arange(theta.size)
    if max_params is not None and max_params < theta.size:
        idx = np.sort(np.random.default_rng(seed).choice(theta.size, max_params, replace=False))
    numeric = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = theta[i]
        theta[i] = old + eps
        m64.set_flat(theta)
        up, _ = loss_and_gradient(m64, X, y, l2, l1, smoothing, class_weight)
        theta[i] = old - eps
        m64.set_flat(theta)
        down, _ = loss_and_gradient(m64, X, y, l2, l1, smoothing, class_weight)
        theta[i] = old
        numeric[j] = (up - down) / (2 * eps)
    m64.set_flat(theta)
    a = analytic[idx]
    err = np.abs(a - numeric)
    rel = err / np.maximum(np.abs(a) + np.abs(numeric), 1e-12)
    return GradcheckResult(float(err.max()), float(rel.max()), int(idx.size), atol, rtol, a, numeric)
