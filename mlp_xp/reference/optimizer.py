"""Parameter updates over one flat buffer: every weight matrix first, every bias after them.

"Weights only" is therefore the prefix ``[:n_weights]``, and regularization acts on that prefix alone:

    G = dL/dW + l2 W + l1 sign(W)        (biases: G = dL/db)

The rules, for learning rate lr:

    sgd        W <- W - lr G
    momentum   V <- mu V + G ;  W <- W - lr V
    nesterov   V <- mu V + G ;  W <- W - lr (G + mu V)
    adam       m <- b1 m + (1 - b1) G ;  v <- b2 v + (1 - b2) G^2
               W <- W - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Momentum may be *folded* into the backward pass: the gradient GEMMs then write mu V + dL/dW into V
themselves, and the update is left with V <- V + l2 W + l1 sign(W) ; W <- W - lr V (see
:meth:`mlp_xp.optim.Optimizer.gradients`). The gradient buffer is the op's to overwrite.
"""

from __future__ import annotations

import numpy as np


def regularized(grads, params, n_weights: int, l2: float, l1: float) -> np.ndarray:
    """G = dL/dtheta + l2 W + l1 sign(W), the penalties on the weight prefix only.

    Implementations: ``add_penalties`` in mlp_xp/backend/numpy_path.py, a BLAS axpy (L2) and ``add_l1`` of
    kernels/cpu.cpp (L1) in ``sgd_update`` of mlp_xp/backend/numpy_ops.py, ``k_regularized`` in kernels/common.cuh
    (the CUDA kernels) and ``regularized`` in kernels/cpu.cpp (Adam's compiled loop: the same value, with sign(W)
    built so that the loop vectorizes).
    """
    W = params[:n_weights]
    G = np.array(grads, dtype=np.float64)
    G[:n_weights] += l2 * W + l1 * np.sign(W)
    return G


def sgd_update(
    params,
    grads,
    velocity,
    n_weights: int,
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    l2: float = 0.0,
    l1: float = 0.0,
    folded: bool = False,
) -> None:
    """One SGD, momentum or Nesterov step (``folded``: velocity already holds mu V + dL/dW); see the module table.

    Implementations: ``sgd_update`` in mlp_xp/backend/numpy_ops.py (NumPy's BLAS), mlp_xp/backend/numpy_path.py,
    kernels/optimizer.cu.
    """
    if folded:
        velocity[...] = regularized(velocity, params, n_weights, l2, l1)
        params -= lr * velocity
        return
    G = regularized(grads, params, n_weights, l2, l1)
    if not momentum:
        params -= lr * G
        return
    velocity[...] = momentum * velocity + G
    params -= lr * (G + momentum * velocity if nesterov else velocity)


def adam_corrections(step: int, beta1: float, beta2: float) -> tuple[float, float]:
    """The bias corrections 1 / (1 - b1^t) and 1 / (1 - b2^t), in float64 on the host."""
    return 1.0 / (1.0 - beta1**step), 1.0 / (1.0 - beta2**step)


def adam_update(
    params,
    grads,
    m,
    v,
    n_weights: int,
    lr: float,
    step: int,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    l2: float = 0.0,
    l1: float = 0.0,
) -> None:
    """One Adam step (``step`` = t, counting from 1); see the module table.

    Implementations: ``adam_update`` in mlp_xp/backend/numpy_path.py, kernels/cpu.cpp, kernels/optimizer.cu; the
    last two share one parameter's step, ``k_adam_step`` in kernels/common.cuh.
    """
    G = regularized(grads, params, n_weights, l2, l1)
    m[...] = beta1 * m + (1 - beta1) * G
    v[...] = beta2 * v + (1 - beta2) * G**2
    c1, c2 = adam_corrections(step, beta1, beta2)
    params -= lr * (m * c1) / (np.sqrt(v * c2) + eps)
