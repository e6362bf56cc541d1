"""Optimizers: hyperparameters and state on the host, one backend op per step on the device (or one per part, on a
backend that updates layer by layer: :meth:`Optimizer.update`).

The update rules, and every implementation of them, are in :mod:`mlp_xp.reference.optimizer`. An optimizer
owns all of its state, including where the backward pass writes the gradient (:meth:`Optimizer.gradients`):

* for momentum (not Nesterov) that is the **velocity** itself. The backward pass's GEMMs then compute
  V <- mu V + dL/dW in place (a GEMM accumulates at no extra cost), which is momentum's first line; the update
  op is left with the penalties and W <- W - lr V. Two passes over the parameters fewer than doing
  V <- mu V + G apart, and the result is the same rule.
* for every other rule it is a gradient buffer of the optimizer's, overwritten by each backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import settings
from .backend import Ops
from .deprecation import warn_renamed
from .reference.optimizer import adam_corrections
from .settings import OPTIMIZERS  # noqa: F401 (its old home)

#: Every this many steps the CPU backend sets the velocity's subnormal numbers to zero (kernels/cpu.cpp says
#: why); counted in the optimizer's own steps, so that a run resumed at step t flushes where it would have.
FLUSH_EVERY = 16


@dataclass(frozen=True)
class Gradients:
    """Where the backward pass writes dL/dtheta: per-layer views ``dW[l]``, ``db[l]`` into the flat buffer ``flat``.

    ``momentum`` is mu when the buffer is momentum's velocity V: the backward pass then writes
    V <- mu V + dL/dtheta (each product keeps mu times what it overwrites). It is 0 when the buffer holds the
    plain gradient.
    """

    flat: object
    dW: list
    db: list
    momentum: float = 0.0


@dataclass(frozen=True)
class Part:
    """One slice [lo, hi) of the flat buffers, for an update in parts: views of the parameters, the gradient
    buffer and the optimizer's state (None where it has none), and how many of its entries are weights (the
    slice's part of the prefix the penalties act on)."""

    params: object
    grads: object
    velocity: object
    m: object
    v: object
    n_weights: int


class Optimizer:
    """State and hyperparameters of one optimizer over a model's flat parameter buffer.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam"}
    ops : Ops
        The backend holding the parameters.
    layout : mlp_xp.model.Layout
        Where each layer's W and b live in the flat buffer (weights first: the penalties act on that prefix).
    dtype : numpy dtype of the parameters.
    momentum : float
        mu of momentum and Nesterov, in [0, 1).
    beta1, beta2, eps : float
        Adam's decay rates and denominator offset.
    l2, l1 : float
        L2 (adds l2 W to the gradient) and L1 (adds l1 sign(W)) penalties, weights only.
    """

    def __init__(
        self,
        name: str,
        ops: Ops,
        layout,
        dtype,
        *,
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        l2: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        self.name = settings.check("optimizer", name)
        self.momentum = settings.check("momentum", momentum)
        self.beta1, self.beta2 = settings.check("beta1", beta1), settings.check("beta2", beta2)
        self.eps = settings.check("eps", eps)
        self.l2, self.l1 = settings.check("l2", l2), settings.check("l1", l1)
        self.ops, self.n_weights = ops, layout.n_weights
        #: Steps taken (Adam's t; also the phase of the subnormal flush).
        self.t = 0
        self._whole = None  # (params, its Part), made by the first step
        self.velocity = self.m = self.v = None
        n = layout.n_params
        if self.name in ("momentum", "nesterov"):
            self.velocity = ops.zeros((n,), dtype)
        elif self.name == "adam":
            self.m, self.v = ops.zeros((n,), dtype), ops.zeros((n,), dtype)
        if self.folds_momentum:
            flat, momentum_of_flat = self.velocity, self.momentum
        else:
            flat, momentum_of_flat = ops.zeros((n,), dtype), 0.0
        self._gradients = Gradients(flat, *layout.views(flat), momentum=momentum_of_flat)

    @classmethod
    def from_config(cls, config, model) -> Optimizer:
        """The optimizer a :class:`mlp_xp.TrainConfig` describes, for ``model``'s parameters."""
        return cls(
            config.optimizer,
            model.ops,
            model.layout,
            model.dtype,
            momentum=config.momentum,
            beta1=config.beta1,
            beta2=config.beta2,
            eps=config.eps,
            l2=config.l2,
            l1=config.l1,
        )

    @property
    def accumulates(self) -> bool:
        """Deprecated: the old name of :attr:`folds_momentum`."""
        warn_renamed("Optimizer.accumulates", "Optimizer.folds_momentum")
        return self.folds_momentum

    @property
    def folds_momentum(self) -> bool:
        """True for momentum (not Nesterov): the backward pass writes mu V + dL/dW into the velocity itself."""
        return self.name == "momentum" and self.momentum > 0

    def gradients(self) -> Gradients:
        """Where the backward pass must write the gradient, and with what momentum (see the module docstring)."""
        return self._gradients

    def step(self, params, lr: float) -> None:
        """Apply one update with learning rate ``lr`` to ``params``, from the gradient the backward pass wrote
        into :meth:`gradients` (which the update may overwrite)."""
        self.start_step()
        self.update(self.whole(params), lr)

    def whole(self, params) -> Part:
        """The one :class:`Part` of all of ``params``, made once (for :meth:`update`)."""
        if self._whole is None or self._whole[0] is not params:
            self._whole = (params, self.parts(params, [(0, params.shape[0])])[0])
        return self._whole[1]

    @property
    def flushes_now(self) -> bool:
        """Whether the current step's update also zeroes the velocity's subnormal numbers (every FLUSH_EVERY)."""
        return self.velocity is not None and self.t % FLUSH_EVERY == 0

    def step_scalars(self, lr: float) -> tuple[float, float, float, float]:
        """The current step's values a recorded step takes from the optimizer (mlp_xp/backend/program.py): the
        learning rate, Adam's two bias corrections (1 for the other rules, which do not read them) and the L2
        penalty."""
        if self.name != "adam":
            return lr, 1.0, 1.0, self.l2
        return (lr, *adam_corrections(self.t, self.beta1, self.beta2), self.l2)

    def start_step(self) -> None:
        """Count one step whose update is applied in parts (:meth:`update`); :meth:`step` does it itself."""
        self.t += 1

    def parts(self, params, bounds) -> list[Part]:
        """Views of ``params`` and of this optimizer's buffers over each [lo, hi) of ``bounds``, made once, for
        :meth:`update` (:meth:`mlp_xp.model.Layout.update_parts` gives a layer's bounds)."""
        nw, flat = self.n_weights, self._gradients.flat

        def cut(a, lo, hi):
            return a if a is None or (lo, hi) == (0, a.shape[0]) else a[lo:hi]

        return [
            Part(
                cut(params, lo, hi),
                cut(flat, lo, hi),
                cut(self.velocity, lo, hi),
                cut(self.m, lo, hi),
                cut(self.v, lo, hi),
                max(0, min(nw, hi) - lo),
            )
            for lo, hi in bounds
        ]

    def update(self, part: Part, lr: float, *, flush: bool | None = None) -> None:
        """The current step's update (counted by :meth:`start_step`) on one part of the parameters. Every rule is
        elementwise, so the parts of a step, in any order, apply the rule of one update of the whole: the same
        numbers where the update is a loop of its own, the same within rounding on the BLAS path, whose axpy
        kernel rounds the last elements before each end of its input without FMA (tests/test_step.py). ``flush``:
        whether it also zeroes the velocity's subnormal numbers (None: as :attr:`flushes_now` says; a recorded step
        is recorded both ways)."""
        ops, nw, g = self.ops, part.n_weights, part.grads
        penalties = {"l2": self.l2, "l1": self.l1}
        flush = self.flushes_now if flush is None else flush
        if self.name == "adam":
            ops.adam_update(
                part.params,
                g,
                part.m,
                part.v,
                nw,
                lr,
                self.t,
                beta1=self.beta1,
                beta2=self.beta2,
                eps=self.eps,
                **penalties,
            )
        elif self.folds_momentum:
            ops.sgd_update(
                part.params,
                None,
                part.velocity,
                nw,
                lr,
                momentum=self.momentum,
                folded=True,
                flush_subnormals=flush,
                **penalties,
            )
        else:
            momentum = 0.0 if self.name == "sgd" else self.momentum
            ops.sgd_update(
                part.params,
                g,
                part.velocity,
                nw,
                lr,
                momentum=momentum,
                nesterov=self.name == "nesterov",
                flush_subnormals=flush,
                **penalties,
            )
