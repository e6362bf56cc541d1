"""Optimizers: hyperparameters and state on the host side, one backend op per step on the device side.

The update rules themselves (and their twins) are in :mod:`mlp_xp.functions.optimizers`.
"""

from __future__ import annotations

from .backend import Ops
from .errors import ConfigError
from .validation import check_choice, check_positive

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


class Optimizer:
    """State and hyperparameters of one optimizer over a flat parameter buffer.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam"}
    ops : Ops
        The backend holding the parameters.
    n_params, n_weights : int
        Size of the flat buffer and of its weight prefix (weight decay and L1 act on that prefix only).
    dtype : numpy dtype of the parameters.
    momentum : float
        mu of momentum and Nesterov, in [0, 1).
    beta1, beta2, eps : float
        Adam's decay rates and denominator offset.
    l2, l1 : float
        Weight decay (L2, adds l2 W to the gradient) and L1 (adds l1 sign(W)), weights only.
    """

    def __init__(
        self,
        name: str,
        ops: Ops,
        n_params: int,
        n_weights: int,
        dtype,
        *,
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        l2: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        self.name = check_choice(name, "optimizer", OPTIMIZERS)
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if self.name in ("momentum", "nesterov") and not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
        for v, label in ((beta1, "beta1"), (beta2, "beta2")):
            if not 0 <= check_positive(v, label, allow_zero=True) < 1:
                raise ConfigError(f"{label} must be in [0, 1), got {v!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive(eps, "eps")
        self.l2 = check_positive(l2, "weight decay (l2)", allow_zero=True)
        self.l1 = check_positive(l1, "l1", allow_zero=True)
        self.ops, self.n_weights = ops, n_weights
        self.t = 0
        self.velocity = self.m = self.v = None
        if self.name in ("momentum", "nesterov"):
            self.velocity = ops.zeros((n_params,), dtype)
        elif self.name == "adam":
            self.m = ops.zeros((n_params,), dtype)
            self.v = ops.zeros((n_params,), dtype)

    @property
    def accumulates(self) -> bool:
        """True for momentum (not Nesterov): the backward pass writes mu V + dL/dW straight into V.

        The gradient GEMMs accumulate (C <- g^T h + mu C) at no extra cost, so the update is left with the
        penalties and W <- W - lr V: two passes over the parameters fewer than V <- mu V + G done apart.
        """
        return self.name == "momentum" and self.momentum > 0

    def step(self, params, grads, lr: float) -> None:
        """Apply one update with learning rate ``lr``; ``grads`` is consumed (overwritten).

        When :attr:`accumulates`, ``grads`` is ignored: the gradient is already in ``velocity``."""
        self.t += 1
        if self.accumulates:
            self.ops.sgd_update(
                params,
                None,
                self.velocity,
                self.n_weights,
                lr,
                self.momentum,
                False,
                self.l2,
                self.l1,
                accumulated=True,
            )
        elif self.name == "adam":
            self.ops.adam_update(
                params,
                grads,
                self.m,
                self.v,
                self.n_weights,
                lr,
                self.t,
                self.beta1,
                self.beta2,
                self.eps,
                self.l2,
                self.l1,
            )
        else:
            mu = self.momentum if self.name != "sgd" else 0.0
            self.ops.sgd_update(
                params, grads, self.velocity, self.n_weights, lr, mu, self.name == "nesterov", self.l2, self.l1
            )
