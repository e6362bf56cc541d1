"""What ends a training run early, each an object of its own: a non-finite loss and early stopping.

The epoch loop (:mod:`mlp_xp.trainer`) asks them once per epoch, after the epoch's record is made, as
Chainer's triggers and Keras' callbacks are asked. Both keep a snapshot of the parameters on the device, so
that what a run returns is never worse than what it had: the last good weights after a divergence, the best
epoch's weights after early stopping.
"""

from __future__ import annotations

import math

from .backend import Ops


class DivergenceGuard:
    """Keeps the parameters of the end of the last good epoch; a non-finite training or validation loss puts
    them back.

    Call :meth:`snapshot` before each epoch's steps and :meth:`check` with the epoch's record after them.
    """

    WATCHED = ("train_loss", "val_loss")

    def __init__(self, ops: Ops, params) -> None:
        self.ops, self.params = ops, params
        self.last_good = ops.empty(params.shape, params.dtype)

    def snapshot(self) -> None:
        self.ops.copy(self.last_good, self.params)

    def check(self, record: dict, lr: float) -> str | None:
        """None if the epoch's losses are finite; else restore the snapshot and return the message."""
        bad = [key for key in self.WATCHED if key in record and not math.isfinite(record[key])]
        if not bad:
            return None
        self.ops.copy(self.params, self.last_good)
        epoch = record["epoch"]
        kept = "it started the run with" if epoch == 1 else f"from the end of epoch {epoch - 1}"
        return (
            f"training diverged in epoch {epoch} ({bad[0]} became {record[bad[0]]}; the model keeps the weights "
            f"{kept}): lower the learning rate (it was {lr:.4g}) or use a schedule with warm-up"
        )


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs in a row; the
    best epoch's parameters are kept on the device and :meth:`restore` puts them back.

    ``monitor`` is a record key: ``val_loss`` and ``val_mse`` improve downwards, ``val_accuracy`` upwards.
    """

    def __init__(self, ops: Ops, params, monitor: str, patience: int, min_delta: float) -> None:
        self.ops, self.params = ops, params
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = -1.0 if monitor == "val_accuracy" else 1.0
        self.best = ops.empty(params.shape, params.dtype)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.waited = 0

    def update(self, record: dict) -> str | None:
        """Take the epoch's record; return why training should stop, or None."""
        score = record[self.monitor]
        if self.best_score is None or self.sign * (score - self.best_score) < -self.min_delta:
            self.best_score, self.best_epoch, self.waited = score, record["epoch"], 0
            self.ops.copy(self.best, self.params)
            return None
        self.waited += 1
        if self.waited < self.patience:
            return None
        return (
            f"early stopping: {self.monitor} did not improve for {self.patience} epochs; "
            f"restored epoch {self.best_epoch}"
        )

    def restore(self) -> None:
        """Put the best epoch's parameters back (nothing before the first epoch ends)."""
        if self.best_epoch is not None:
            self.ops.copy(self.params, self.best)
