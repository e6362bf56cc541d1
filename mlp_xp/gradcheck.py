"""Gradient checking: hand-derived gradients against central finite differences, in float64.

    dL/dtheta_i  ~  (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps)

L is the mean loss over the given batch plus the penalties the optimizer applies to the weights,
l2/2 ||W||^2 + l1 |W|_1, so the check covers every term a training step differentiates.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import settings
from .errors import ConfigError
from .model import MLP
from .optim import Gradients
from .reference.optimizer import regularized
from .validation import check_features, check_sample_weight, check_targets


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
    model: MLP, X, y, l2: float = 0.0, l1: float = 0.0, smoothing: float = 0.0, class_weight=None, sample_weight=None
) -> tuple[float, np.ndarray]:
    """Mean loss (plus penalties) over all of (X, y) and its gradient, as a host float and flat array; with
    ``sample_weight``, the weighted mean sum(w_i l_i) / sum(w_i).

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
    rows, total = {}, n
    if sample_weight is not None:
        w = check_sample_weight(sample_weight, n, model.dtype)
        total = float(w.astype(np.float64).sum())
        rows = {"sample_weight": ops.asarray(w), "divisor": total}
    z = model.forward(xd, ws)
    ops.loss_grad(z, ws.yb, ws.acc, model.loss, smoothing=smoothing, class_weight=cw, **rows)
    model.backward(xd, ws, Gradients(grads, *model.layout.views(grads)))
    loss = float(ops.to_host(ws.acc)[0]) / total
    params, nw = model.get_flat(), model.layout.n_weights
    g = regularized(ops.to_host(grads), params, nw, l2, l1)  # d/dW of the penalty term below
    return loss + _penalty(params[:nw], l2, l1), g


def _penalty(w: np.ndarray, l2: float, l1: float) -> float:
    return 0.5 * l2 * float(np.dot(w, w)) + l1 * float(np.abs(w).sum())


def _number(value, name: str, rule: str, ok, fix: str) -> float:
    """``value`` as a float when it is a finite real number for which ``ok`` holds; else one ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"gradcheck's {name} must be {rule}, got {value!r}: {fix}")
    return float(value)


def _check_arguments(model, l2, l1, smoothing, class_weight, eps, atol, rtol, max_params, seed):
    """The checked arguments of :func:`gradcheck`, or one ConfigError naming the argument and the fix."""
    if not isinstance(model, MLP):
        raise ConfigError(f"gradcheck checks an mlp_xp.MLP, got {type(model).__name__}: pass the model itself")
    l2 = _number(l2, "l2", "a number >= 0", lambda v: v >= 0, "pass the L2 penalty the training uses, or 0")
    l1 = _number(l1, "l1", "a number >= 0", lambda v: v >= 0, "pass the L1 penalty the training uses, or 0")
    smoothing = _number(
        smoothing, "smoothing", "in [0, 1)", lambda v: 0 <= v < 1, "pass the label smoothing the training uses, or 0"
    )
    eps = _number(eps, "eps", "a number > 0", lambda v: v > 0, "pass the central difference's step, e.g. 1e-6")
    atol = _number(atol, "atol", "a number >= 0", lambda v: v >= 0, "pass an absolute tolerance such as 1e-8")
    rtol = _number(rtol, "rtol", "a number >= 0", lambda v: v >= 0, "pass a relative tolerance such as 1e-6")
    if max_params is not None:
        if isinstance(max_params, bool) or not isinstance(max_params, numbers.Integral) or max_params < 1:
            raise ConfigError(
                f"gradcheck's max_params must be a positive integer (how many parameters to check) or None (all "
                f"{model.layout.n_params}), got {max_params!r}: pass max_params >= 1, or leave it out"
            )
        max_params = int(max_params)
    seed = settings.check("seed", seed)
    if (smoothing or class_weight is not None) and model.loss != "cross_entropy":
        given = "smoothing" if smoothing else "class_weight"
        raise ConfigError(
            f"gradcheck's {given} applies to the cross_entropy loss only, and the model's loss is {model.loss}: "
            f"leave {given} out"
        )
    if class_weight is not None:
        w = np.asarray(class_weight, dtype=object)
        shape_ok = w.shape == (model.n_outputs,)
        values_ok = shape_ok and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in w
        )
        if not values_ok:
            raise ConfigError(
                f"gradcheck's class_weight must be {model.n_outputs} finite numbers >= 0 (one per class), got "
                f"{class_weight!r}: pass one weight per output, or leave it out"
            )
        class_weight = np.asarray(class_weight, dtype=np.float64)
    return l2, l1, smoothing, class_weight, eps, atol, rtol, max_params, seed


def gradcheck(
    model: MLP,
    X,
    y,
    *,
    l2: float = 0.0,
    l1: float = 0.0,
    smoothing: float = 0.0,
    class_weight=None,
    sample_weight=None,
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
    sample_weight : array-like, optional
        One weight per row: the checked loss is then sum(w_i l_i) / sum(w_i), as a weighted training step's.
    eps : float
        Step of the central difference.
    atol, rtol : float
        A parameter passes when |analytic - numeric| <= atol + rtol |numeric|.
    max_params : int or None
        Check a random subset of this many parameters (>= 1; all when None or at least the model's count).
    seed : int
        Seed (>= 0) of the random subset.
    device : str or None
        Backend of the float64 copy (default: the model's own, so a GPU model is checked on the GPU).

    Raises
    ------
    ConfigError
        If an argument is out of range: ``max_params`` not a positive integer, ``eps`` not > 0, ``atol``,
        ``rtol``, ``l2`` or ``l1`` negative or not finite, ``smoothing`` outside [0, 1), ``class_weight`` not one
        number >= 0 per output (or either of the two given for a loss other than cross_entropy), ``seed``
        negative, or ``model`` not an :class:`~mlp_xp.MLP`.
    DataError
        If ``X`` or ``y`` do not fit the model (from :func:`mlp_xp.validation.check_features` and
        ``check_targets``).
    """
    l2, l1, smoothing, class_weight, eps, atol, rtol, max_params, seed = _check_arguments(
        model, l2, l1, smoothing, class_weight, eps, atol, rtol, max_params, seed
    )
    m64 = MLP.from_config({**model.config(), "dtype": "float64"}, model.ops if device is None else device)
    theta = model.get_flat().astype(np.float64)
    m64.set_flat(theta)
    options = (l2, l1, smoothing, class_weight, sample_weight)
    _, analytic = loss_and_gradient(m64, X, y, *options)
    idx = np.arange(theta.size)
    if max_params is not None and max_params < theta.size:
        idx = np.sort(np.random.default_rng(seed).choice(theta.size, max_params, replace=False))
    numeric = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = theta[i]
        theta[i] = old + eps
        m64.set_flat(theta)
        up, _ = loss_and_gradient(m64, X, y, *options)
        theta[i] = old - eps
        m64.set_flat(theta)
        down, _ = loss_and_gradient(m64, X, y, *options)
        theta[i] = old
        numeric[j] = (up - down) / (2 * eps)
    m64.set_flat(theta)
    a = analytic[idx]
    err = np.abs(a - numeric)
    rel = err / np.maximum(np.abs(a) + np.abs(numeric), 1e-12)
    return GradcheckResult(float(err.max()), float(rel.max()), int(idx.size), atol, rtol, a, numeric)
