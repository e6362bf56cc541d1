"""Output layers and their losses, each beside dL/dz, for a batch of B rows of logits z.

    softmax + cross-entropy    p = softmax(z)   loss_i = -sum_c q_ic log p_ic       dL/dz_i = (p_i - q_i) / B
                               q_i = (1 - eps) onehot(y_i) + eps / C   (label smoothing eps, 0 by default)
                               with class weights w: loss_i and dL/dz_i are scaled by w[y_i]
    sigmoid + binary x-ent     p = sigma(z)     loss_i = -sum_k y log p + (1-y) log(1-p)   dL/dz_i = (p_i - y_i) / B
    identity + squared error   p = z            loss_i = 1/2 sum_k (z - y)^2        dL/dz_i = (z_i - y_i) / B

The batch loss is the mean of loss_i; its gradient is the 1/B-scaled sum above. Each function adds
into a float64 accumulator ``acc`` instead of returning, so that a whole epoch can sum on the device:

    acc[0] += sum_i loss_i
    acc[1] += number of correct rows (classification) or sum of squared errors (regression)

and overwrites z in place: with dL/dz when ``write_grad`` is true (training), else with the output p
(evaluation). The twins are the kernels in ``kernels/loss.cu``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._scratch import Scratch, fresh
from .activations import sigmoid

#: Loss names, their kernel codes and the output activation each implies.
LOSSES: dict[str, int] = {"cross_entropy": 0, "binary_cross_entropy": 1, "mse": 2}
OUTPUTS: dict[str, str] = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "identity"}


def loss_code(name: str) -> int:
    """Return the kernel code of loss ``name``, or raise a ConfigError listing the valid names."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}") from None


_OFFSETS: dict[tuple[int, int], np.ndarray] = {}


def _row_offsets(B: int, C: int) -> np.ndarray:
    # i * C for each row i: the flat index of (i, 0). Kept between calls: a steady step allocates nothing.
    off = _OFFSETS.get((B, C))
    if off is None:
        off = _OFFSETS[(B, C)] = np.arange(B, dtype=np.intp) * C
    return off


def softmax_cross_entropy(
    z: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    write_grad: bool = True,
    smoothing: float = 0.0,
    class_weight: np.ndarray | None = None,
    scratch: Scratch = fresh,
) -> None:
    """Softmax cross-entropy over logits z (B, C) and integer labels y (B,) in [0, C); see the module table."""
    B, C = z.shape
    dt = z.dtype
    zf = z.reshape(-1)
    rows = _row_offsets(B, C)
    # The row maximum is read at the argmax (first maximum wins ties, as in the kernel): for short rows
    # that is several times faster than a max reduction along the row, and the argmax counts the hits.
    at = scratch("at", (B,), np.intp)
    np.argmax(z, axis=1, out=at)
    hit = scratch("hit", (B,), np.bool_)
    np.equal(at, y, out=hit)
    acc[1] += np.count_nonzero(hit)
    at += rows
    m = scratch("m", (B, 1), dt)
    np.take(zf, at, out=m.reshape(-1), mode="clip")
    z -= m  # z - max: exp below cannot overflow
    np.add(rows, y, out=at)  # flat index of (i, y_i)
    zy = scratch("zy", (B,), dt)
    np.take(zf, at, out=zy, mode="clip")
    if smoothing:
        zsum = scratch("zsum", (B,), dt)
        np.sum(z, axis=1, out=zsum)
    np.exp(z, out=z)
    s = scratch("s", (B, 1), dt)
    np.matmul(z, _ones(C, dt), out=s)  # row sums (a reduction along short rows is slow)

    # loss_i = lse_i - sum_c q_ic z_ic = log s_i - (1 - eps) zy_i - eps/C sum_c zs_ic  (both shifted by m)
    loss = scratch("loss", (B,), dt)
    np.log(s.reshape(-1), out=loss)
    zy *= 1 - smoothing
    loss -= zy
    if smoothing:
        zsum *= smoothing / C
        loss -= zsum
    if class_weight is not None:
        wy = scratch("wy", (B,), dt)
        np.take(class_weight, y, out=wy, mode="clip")
        loss *= wy
    # A label outside [0, C) was clipped into range above; as in the kernels its loss is NaN (a bad label must
    # not pass silently) and its gradient row zero. (Its row never counts as a hit: argmax is in [0, C).)
    bad = scratch("bad", (B,), np.bool_)
    np.less(y, 0, out=bad)
    np.greater_equal(y, C, out=hit)
    bad |= hit
    any_bad = bad.any()
    if any_bad:
        loss[bad] = np.nan
    acc[0] += loss.sum(dtype=np.float64)

    z /= s  # p = softmax(z)
    if not write_grad:
        return
    py = scratch("py", (B,), dt)  # p - q at the label column
    np.take(zf, at, out=py, mode="clip")
    py -= 1 - smoothing
    np.put(zf, at, py, mode="clip")
    if smoothing:
        z -= smoothing / C
    if class_weight is None:
        z *= dt.type(1.0 / B)
    else:
        wy *= 1.0 / B
        z *= wy.reshape(B, 1)
    if any_bad:
        z[bad] = 0


_ONES: dict[tuple[int, str], np.ndarray] = {}


def _ones(n: int, dtype) -> np.ndarray:
    key = (n, np.dtype(dtype).str)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = np.ones((n, 1), dtype)
    return ones


def sigmoid_binary_cross_entropy(
    z: np.ndarray, y: np.ndarray, acc: np.ndarray, write_grad: bool = True, scratch: Scratch = fresh
) -> None:
    """Sigmoid binary cross-entropy over logits z (B, K) and targets y (B, K) in [0, 1]; see the module table.

    A row counts as correct when every output's prediction (z > 0) matches its target (y >= 1/2).
    """
    B, K = z.shape
    dt = z.dtype
    # -y log p - (1-y) log(1-p) = max(z, 0) - z y + log(1 + e^-|z|): no overflow, no log(0).
    t = scratch("t", (B, K), dt)
    u = scratch("u", (B, K), dt)
    np.abs(z, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    np.maximum(z, 0, out=u)
    t += u
    np.multiply(z, y, out=u)
    t -= u
    acc[0] += t.sum(dtype=np.float64)

    pred = scratch("pred", (B, K), np.bool_)
    truth = scratch("truth", (B, K), np.bool_)
    np.greater(z, 0, out=pred)
    np.greater_equal(y, 0.5, out=truth)
    np.not_equal(pred, truth, out=pred)
    wrong = scratch("wrong", (B,), np.bool_)
    np.any(pred, axis=1, out=wrong)
    acc[1] += B - np.count_nonzero(wrong)

    sigmoid(z)  # p
    if write_grad:
        z -= y
        z *= dt.type(1.0 / B)


def squared_error(
    z: np.ndarray, y: np.ndarray, acc: np.ndarray, write_grad: bool = True, scratch: Scratch = fresh
) -> None:
    """Half squared error over outputs z (B, K) and targets y (B, K); acc[1] gets the sum of squared errors."""
    B, K = z.shape
    d = z if write_grad else scratch("d", (B, K), z.dtype)
    np.subtract(z, y, out=d)  # z - y
    sq = np.vdot(d.reshape(-1), d.reshape(-1)).astype(np.float64)
    acc[0] += 0.5 * sq
    acc[1] += sq
    if write_grad:
        z *= z.dtype.type(1.0 / B)


def softmax(z: np.ndarray, scratch: Scratch = fresh) -> None:
    """z <- softmax(z) row by row, in place (max-shifted so that exp cannot overflow)."""
    m = scratch("m", (z.shape[0], 1), z.dtype)
    np.max(z, axis=1, keepdims=True, out=m)
    z -= m
    np.exp(z, out=z)
    np.sum(z, axis=1, keepdims=True, out=m)
    z /= m
