"""Output layers and their losses, each with dL/dz, for a batch of B rows of logits z.

    softmax + cross-entropy    p = softmax(z)   loss_i = -sum_c q_ic log p_ic            dL/dz_i = w_i (p_i - q_i) / B
                               q_i = (1 - eps) onehot(y_i) + eps / C  (label smoothing eps), w_i = class_weight[y_i]
    sigmoid + binary x-ent     p = sigma(z)     loss_i = -sum_k y log p + (1 - y) log(1 - p)   dL/dz_i = (p_i - y_i) / B
    identity + squared error   p = z            loss_i = 1/2 sum_k (z - y)^2             dL/dz_i = (z_i - y_i) / B

The batch loss is the mean of loss_i, so its gradient is the sum above over B. An op adds into a float64
accumulator instead of returning, so that a whole epoch can sum on the device:

    acc[0] += sum_i loss_i
    acc[1] += number of correct rows (classification) or sum of squared errors (regression)

and overwrites z in place: with dL/dz when ``write_grad`` (training), else with the output p (evaluation).

Per-row weights s_i (``sample_weight``, scikit-learn's ``sample_weight``) make the batch loss
sum_i s_i loss_i / sum_i s_i: each row's loss, hit and squared error is counted s_i times (acc[0] += sum s_i loss_i,
acc[1] += sum s_i hit_i or sum s_i sq_i), and its gradient row is s_i times the unweighted one, divided by
``divisor`` instead of B. The divisor is the step's denominator, passed in: sum_i s_i of the batch with weights,
else B; a data-parallel step passes its global count. Integer weights thus train as the rows repeated that many
times would (full-batch gradient descent: the same parameters).
"""

from __future__ import annotations

import numpy as np

from .layer import sigmoid

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
#: The output activation each loss implies.
OUTPUTS = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "identity"}


def softmax(z: np.ndarray) -> np.ndarray:
    """p = e^z / sum_c e^z_c per row (shifted by the row's maximum, which changes nothing but overflow)."""
    with np.errstate(under="ignore"):
        e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log p = z - log sum_c e^z_c per row."""
    shifted = z - z.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _row_weights(B: int, sample_weight, divisor) -> tuple[np.ndarray, float]:
    """(s_i as float64, the gradient's denominator): ones and B without weights, unless a divisor is given."""
    s = np.ones(B) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(B)
    return s, float(B if divisor is None else divisor)


def softmax_xent(
    z, y, acc, *, write_grad: bool = True, smoothing: float = 0.0, class_weight=None, sample_weight=None, divisor=None
) -> None:
    """Softmax cross-entropy over logits z (B, C) and integer labels y (B,); see the module table.

    A label outside [0, C) makes its row's loss NaN (a bad label must not pass silently), its gradient row
    zero, and never counts as a hit. A hit is a row whose first maximum is at its label.

    Implementations: ``softmax_xent`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/loss.cu; the
    last two share one row's loss and gradient, ``k_xent_row_loss`` and ``k_xent_grad`` in kernels/common.cuh.
    """
    B, C = z.shape
    s, divisor = _row_weights(B, sample_weight, divisor)
    ok = (y >= 0) & (y < C)
    label = np.where(ok, y, 0)
    onehot = np.arange(C) == label[:, None]
    q = (1 - smoothing) * onehot + smoothing / C
    w = np.ones(B) if class_weight is None else np.asarray(class_weight, np.float64)[label]
    loss = -s * w * (q * log_softmax(z)).sum(axis=1)
    acc[0] += np.where(ok, loss, np.nan).sum()
    acc[1] += (s * (ok & (z.argmax(axis=1) == y))).sum()
    p = softmax(z)
    z[...] = (s * w * ok)[:, None] * (p - q) / divisor if write_grad else p


def sigmoid_bce(z, y, acc, *, write_grad: bool = True, sample_weight=None, divisor=None) -> None:
    """Sigmoid binary cross-entropy over logits z (B, K) and targets y (B, K) in [0, 1]; see the module table.

    A row is correct when every output's prediction (z > 0) matches its target (y >= 1/2).

    Implementations: ``sigmoid_bce`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/loss.cu.
    """
    B = len(z)
    s, divisor = _row_weights(B, sample_weight, divisor)
    # -y log p - (1 - y) log(1 - p) with p = sigma(z), written so that it never takes log(0):
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    acc[0] += (s * loss.sum(axis=1)).sum()
    acc[1] += (s * ((z > 0) == (y >= 0.5)).all(axis=1)).sum()
    p = sigmoid(z)
    z[...] = s[:, None] * (p - y) / divisor if write_grad else p


def squared_error(z, y, acc, *, write_grad: bool = True, sample_weight=None, divisor=None) -> None:
    """Half squared error over outputs z (B, K) and targets y (B, K); acc[1] gets the sum of squared errors.

    Implementations: ``squared_error`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/loss.cu.
    """
    B = len(z)
    s, divisor = _row_weights(B, sample_weight, divisor)
    sq = (s * ((z - y) ** 2).sum(axis=1)).sum()
    acc[0] += sq / 2
    acc[1] += sq
    if write_grad:
        z[...] = s[:, None] * (z - y) / divisor


def output_act(z, output: str) -> None:
    """z <- p = softmax(z), sigmoid(z) or z: the output of a model without labels (prediction).

    Implementations: ``output_act`` in mlp_xp/backend/numpy_path.py (sigmoid; for softmax the CPU backend's
    ``output_act`` in mlp_xp/backend/numpy_ops.py runs this reference); kernels/loss.cu (``softmax_xent`` and
    ``sigmoid_bce`` without labels).
    """
    if output == "softmax":
        z[...] = softmax(z)
    elif output == "sigmoid":
        z[...] = sigmoid(z)
