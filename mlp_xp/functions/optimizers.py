"""Parameter updates over one flat buffer, the twins of ``kernels/optimizer.cu``.

The flat parameter buffer holds every weight matrix first and every bias after them, so "weights only"
is the prefix ``[:n_weights]``. Regularization acts on that prefix alone:

    G = dL/dW + l2 W + l1 sign(W)        (biases: G = dL/db)

and the rules are, for learning rate lr:

    sgd        W <- W - lr G
    momentum   V <- mu V + G ;  W <- W - lr V
               (``accumulated``: the backward pass already wrote mu V + dL/dW into V, folding the momentum
               into its gradient GEMMs; the update adds the penalties to V and steps)
    nesterov   V <- mu V + G ;  W <- W - lr (G + mu V)
    adam       m <- b1 m + (1 - b1) G ;  v <- b2 v + (1 - b2) G^2
               W <- W - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Every function overwrites ``grads`` with G: gradients are recomputed each step, so their buffer is free.
"""

from __future__ import annotations

import numpy as np

from ._scratch import Scratch, fresh


def add_weight_penalty(
    params: np.ndarray, grads: np.ndarray, n_weights: int, l2: float, l1: float, scratch: Scratch = fresh
) -> None:
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
    momentum: float = 0.0,
    nesterov: bool = False,
    l2: float = 0.0,
    l1: float = 0.0,
    accumulated: bool = False,
    scratch: Scratch = fresh,
) -> None:
    """One SGD step (plain, momentum or Nesterov) over the flat buffers; see the module table."""
    dt = params.dtype.type
    if accumulated:  # V already holds mu V + dL/dW
        add_weight_penalty(params, velocity, n_weights, l2, l1, scratch)
        grads = velocity
        momentum = 0.0
    else:
        add_weight_penalty(params, grads, n_weights, l2, l1, scratch)
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
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    l2: float = 0.0,
    l1: float = 0.0,
    scratch: Scratch = fresh,
) -> None:
    """One Adam step (``step`` counts from 1) over the flat buffers; see the module table."""
    add_weight_penalty(params, grads, n_weights, l2, l1, scratch)
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


def adam_corrections(step: int, beta1: float, beta2: float) -> tuple[float, float]:
    """The bias corrections 1 / (1 - b1^t) and 1 / (1 - b2^t), computed in float64 on the host."""
    return 1.0 / (1.0 - beta1**step), 1.0 / (1.0 - beta2**step)
