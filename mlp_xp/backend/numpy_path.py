"""The NumPy path: the ops of a training step in tuned NumPy, what the CPU backend runs where the compiled loops
and the direct BLAS calls cannot (no compiler, other dtypes, non-contiguous or read-only arrays).

Each function has its op's contract (in place, accumulators, the same edge cases) and its reference in
:mod:`mlp_xp.reference`, against which the tests check it. Unlike the reference, it creates no array once its
scratch buffers exist, so that a steady step allocates nothing (NumPy may still use a transient buffer inside
one call, to broadcast or cast, and free it there), and it is written for speed: where it reads less plainly
than its reference, the comments say why. ``benchmarks/numpy_path.py`` times each function against its
reference: each is faster but ``sigmoid_bce``, kept because its reference would allocate inside a step.
"""

from __future__ import annotations

import numpy as np

from ..reference.optimizer import adam_corrections
from .scratch import Scratch, constant, fresh

# ---- a layer (reference: mlp_xp/reference/layer.py) ----


def bias_act(z: np.ndarray, b: np.ndarray, activation: str, slope: float, scratch: Scratch = fresh) -> None:
    """z <- g(z + b) in place. Reference: ``bias_act`` in mlp_xp/reference/layer.py."""
    z += b
    if activation == "relu":
        np.maximum(z, constant(0.0, z.shape, z.dtype), out=z)
    elif activation == "leaky_relu":
        # a z < z exactly where z > 0 (0 < a < 1), so the larger of the two is g(z).
        az = scratch("act", z.shape, z.dtype)
        np.multiply(z, z.dtype.type(slope), out=az)
        np.maximum(z, az, out=z)
    elif activation == "sigmoid":
        sigmoid(z)
    elif activation == "tanh":
        np.tanh(z, out=z)


def sigmoid(z: np.ndarray) -> None:
    """z <- 1 / (1 + e^-z) in place, computed as (1 + tanh(z/2)) / 2, which never overflows."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1
    z *= 0.5


def act_backward(dh: np.ndarray, h: np.ndarray, activation: str, slope: float, scratch: Scratch = fresh) -> None:
    """dh <- dh * g'(z) in place, g' read off h. Reference: ``act_backward`` in mlp_xp/reference/layer.py."""
    if activation == "identity":
        return
    gprime = scratch("act", h.shape, h.dtype)
    # g' is built as a float array and multiplied in: NumPy's masked writes (copyto where=) and
    # float-by-bool products are several times slower.
    if activation == "relu":
        np.greater(h, 0, out=gprime)  # 1 where h > 0, else 0 (a NaN h too); dh * 0 keeps a NaN dh NaN
    elif activation == "leaky_relu":
        np.greater(h, 0, out=gprime)
        gprime *= 1 - slope
        gprime += slope  # 1 or a
    elif activation == "sigmoid":
        np.subtract(1, h, out=gprime)
        gprime *= h  # h (1 - h)
    elif activation == "tanh":
        np.multiply(h, h, out=gprime)
        np.subtract(1, gprime, out=gprime)  # 1 - h^2
    dh *= gprime


# ---- losses (reference: mlp_xp/reference/loss.py) ----

_OFFSETS: dict[tuple[int, int], np.ndarray] = {}
_ONES: dict[tuple[int, str], np.ndarray] = {}


def _row_offsets(B: int, C: int) -> np.ndarray:
    # i * C for each row i: the flat index of (i, 0). Kept between calls: a steady step allocates nothing.
    off = _OFFSETS.get((B, C))
    if off is None:
        off = _OFFSETS[(B, C)] = np.arange(B, dtype=np.intp) * C
    return off


def _ones(n: int, dtype) -> np.ndarray:
    key = (n, np.dtype(dtype).str)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = np.ones((n, 1), dtype)
    return ones


def softmax_xent(
    z: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    *,
    write_grad: bool = True,
    smoothing: float = 0.0,
    class_weight: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    divisor: float | None = None,
    scratch: Scratch = fresh,
) -> None:
    """Softmax cross-entropy, in place. Reference: ``softmax_xent`` in mlp_xp/reference/loss.py."""
    B, C = z.shape
    dt = z.dtype
    inv = 1.0 / (B if divisor is None else divisor)
    zf = z.reshape(-1)
    rows = _row_offsets(B, C)
    # The row maximum is read at the argmax (first maximum wins ties, as in the reference): for short rows
    # that is several times faster than a max reduction along the row, and the argmax counts the hits.
    at = scratch("at", (B,), np.intp)
    np.argmax(z, axis=1, out=at)
    hit = scratch("hit", (B,), np.bool_)
    np.equal(at, y, out=hit)
    acc[1] += np.count_nonzero(hit) if sample_weight is None else _weighted_count(hit, sample_weight, scratch)
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
    if sample_weight is not None:
        loss *= sample_weight
    # A label outside [0, C) was clipped into range above; its loss becomes NaN and its gradient row zero.
    # (Its row never counts as a hit: argmax is in [0, C).)
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
    if class_weight is None and sample_weight is None:
        z *= dt.type(inv)
    else:
        r = wy if class_weight is not None else scratch("rows", (B,), dt)
        if class_weight is None:
            r[...] = sample_weight
        elif sample_weight is not None:
            r *= sample_weight
        r *= inv
        z *= r.reshape(B, 1)
    if any_bad:
        z[bad] = 0


def _weighted_count(flags: np.ndarray, sample_weight: np.ndarray, scratch: Scratch) -> float:
    """sum_i s_i flags_i, in float64: a weighted count of hits (or of correct rows)."""
    f = scratch("flags", flags.shape, np.float64)
    np.copyto(f, flags)
    return float(np.dot(f, sample_weight))


def _weighted_rows(t: np.ndarray, sample_weight: np.ndarray, scratch: Scratch) -> float:
    """sum_i s_i sum_k t_ik, in float64."""
    r = scratch("rowsum", t.shape[:1], np.float64)
    np.sum(t, axis=1, out=r, dtype=np.float64)
    return float(np.dot(r, sample_weight))


def _scale_rows(z: np.ndarray, sample_weight: np.ndarray | None, inv: float, scratch: Scratch) -> None:
    """z <- z * s_i * inv row by row (z * inv without weights)."""
    if sample_weight is None:
        z *= z.dtype.type(inv)
        return
    r = scratch("rows", z.shape[:1], z.dtype)
    np.multiply(sample_weight, z.dtype.type(inv), out=r)
    z *= r.reshape(-1, 1)


def sigmoid_bce(
    z: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    *,
    write_grad: bool = True,
    sample_weight: np.ndarray | None = None,
    divisor: float | None = None,
    scratch: Scratch = fresh,
) -> None:
    """Sigmoid binary cross-entropy, in place. Reference: ``sigmoid_bce`` in mlp_xp/reference/loss.py.

    About 10% slower than its reference on 128 x 10 outputs (benchmarks/numpy_path.py: its twenty calls each cost
    the same fixed overhead as the reference's), but allocation-free, which a training step needs."""
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
    acc[0] += t.sum(dtype=np.float64) if sample_weight is None else _weighted_rows(t, sample_weight, scratch)

    pred = scratch("pred", (B, K), np.bool_)
    truth = scratch("truth", (B, K), np.bool_)
    np.greater(z, 0, out=pred)
    np.greater_equal(y, 0.5, out=truth)
    np.not_equal(pred, truth, out=pred)
    wrong = scratch("wrong", (B,), np.bool_)
    np.any(pred, axis=1, out=wrong)
    if sample_weight is None:
        acc[1] += B - np.count_nonzero(wrong)
    else:
        np.logical_not(wrong, out=wrong)
        acc[1] += _weighted_count(wrong, sample_weight, scratch)

    sigmoid(z)  # p
    if write_grad:
        z -= y
        _scale_rows(z, sample_weight, 1.0 / (B if divisor is None else divisor), scratch)


def squared_error(
    z: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    *,
    write_grad: bool = True,
    sample_weight: np.ndarray | None = None,
    divisor: float | None = None,
    scratch: Scratch = fresh,
) -> None:
    """Half squared error, in place. Reference: ``squared_error`` in mlp_xp/reference/loss.py."""
    B, K = z.shape
    d = z if write_grad else scratch("d", (B, K), z.dtype)
    np.subtract(z, y, out=d)  # z - y
    if sample_weight is None:
        sq = np.vdot(d.reshape(-1), d.reshape(-1)).astype(np.float64)
    else:
        e = scratch("sq", (B, K), z.dtype)
        np.multiply(d, d, out=e)
        sq = _weighted_rows(e, sample_weight, scratch)
    acc[0] += 0.5 * sq
    acc[1] += sq
    if write_grad:
        _scale_rows(z, sample_weight, 1.0 / (B if divisor is None else divisor), scratch)


def output_act(z: np.ndarray, output: str) -> None:
    """z <- sigmoid(z) in place for the sigmoid output. Reference: ``output_act`` in mlp_xp/reference/loss.py.

    Only the sigmoid output has a NumPy path: for softmax the reference's three NumPy calls were as fast as the
    in-place version (0.92x, benchmarks/README.md), and prediction may allocate, so the backend runs the reference."""
    if output == "sigmoid":
        sigmoid(z)


# ---- updates (reference: mlp_xp/reference/optimizer.py) ----


def add_penalties(
    params: np.ndarray, grads: np.ndarray, n_weights: int, l2: float, l1: float, scratch: Scratch = fresh
):
    """grads[:n] += l2 W + l1 sign(W) for the weights W = params[:n]; biases are left alone."""
    if not (l2 or l1):
        return
    w, g = params[:n_weights], grads[:n_weights]
    t = scratch("penalty", w.shape, w.dtype)
    if l2:
        np.multiply(w, w.dtype.type(l2), out=t)
        g += t
    if l1:
        np.sign(w, out=t)
        t *= l1
        g += t


def sgd_update(
    params: np.ndarray,
    grads: np.ndarray | None,
    velocity: np.ndarray | None,
    n_weights: int,
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    l2: float = 0.0,
    l1: float = 0.0,
    folded: bool = False,
    scratch: Scratch = fresh,
) -> None:
    """One SGD, momentum or Nesterov step. Reference: ``sgd_update`` in mlp_xp/reference/optimizer.py."""
    dt = params.dtype.type
    if folded:  # V already holds mu V + dL/dW: add the penalties to it and step
        grads, momentum = velocity, 0.0
    add_penalties(params, grads, n_weights, l2, l1, scratch)  # grads now holds G
    step = grads
    if momentum:
        velocity *= dt(momentum)
        velocity += grads  # V = mu V + G
        if nesterov:
            t = scratch("step", params.shape, params.dtype)
            np.multiply(velocity, dt(momentum), out=t)
            grads += t  # G + mu V
        else:
            step = velocity
    t = scratch("step", params.shape, params.dtype)
    np.multiply(step, dt(lr), out=t)
    params -= t


def adam_update(
    params: np.ndarray,
    grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    n_weights: int,
    lr: float,
    step: int,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    l2: float = 0.0,
    l1: float = 0.0,
    scratch: Scratch = fresh,
) -> None:
    """One Adam step. Reference: ``adam_update`` in mlp_xp/reference/optimizer.py."""
    add_penalties(params, grads, n_weights, l2, l1, scratch)
    dt = params.dtype.type
    c1, c2 = adam_corrections(step, beta1, beta2)
    m *= dt(beta1)
    t = scratch("step", params.shape, params.dtype)
    np.multiply(grads, dt(1 - beta1), out=t)
    m += t  # m = b1 m + (1 - b1) G
    v *= dt(beta2)
    np.multiply(grads, grads, out=t)
    t *= dt(1 - beta2)
    v += t  # v = b2 v + (1 - b2) G^2
    np.multiply(v, dt(c2), out=t)
    np.sqrt(t, out=t)
    t += dt(eps)  # sqrt(v_hat) + eps
    np.divide(m, t, out=t)
    t *= dt(lr * c1)  # lr m_hat / (sqrt(v_hat) + eps)
    params -= t


# ---- data (reference: mlp_xp/reference/data.py) ----


def gather_rows(X: np.ndarray, Y: np.ndarray, idx: np.ndarray, xb: np.ndarray, yb: np.ndarray, W=None, wb=None) -> None:
    """xb <- X[idx], yb <- Y[idx] (wb <- W[idx] with weights) into the batch buffers. Reference: ``gather_rows``
    in mlp_xp/reference/data.py."""
    # mode="clip" skips the bounds-check copy that mode="raise" makes when `out` is given (1.6x faster, measured).
    # The op's contract asks for rows in [0, len(X)) (the trainer passes a permutation): outside it, this clamps
    # where the reference raises and a GPU reads out of bounds.
    np.take(X, idx, axis=0, out=xb, mode="clip")
    np.take(Y, idx, axis=0, out=yb, mode="clip")
    if W is not None:
        np.take(W, idx, axis=0, out=wb, mode="clip")
