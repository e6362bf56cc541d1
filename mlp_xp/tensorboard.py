"""Run logging to TensorBoard through tensorboardX (no TensorFlow): a callback of :func:`mlp_xp.fit`.

``mlp-xp train --tensorboard DIR`` uses it; from Python::

    with TensorBoardLogger("runs/a") as log:
        mlp_xp.fit(model, X, y, callbacks=[log])

Each epoch's record goes in as scalars under their record names (``train_loss``, ``train_accuracy``,
``val_loss``, ..., ``lr``, ``seconds``, ``eval_seconds``), at the epoch's number; the run's settings as a text
entry at the start.
"""

from __future__ import annotations

import json
import numbers

from .errors import ConfigError, install_hint


class TensorBoardLogger:
    """A :func:`mlp_xp.fit` callback writing each epoch's record to a TensorBoard event file in ``logdir``.

    Parameters
    ----------
    logdir : str or path
        The run's folder (made if missing); TensorBoard reads it with ``tensorboard --logdir``.
    settings : dict, optional
        Written once, as JSON text under ``settings``.
    """

    __name__ = "TensorBoardLogger"

    def __init__(self, logdir, settings: dict | None = None) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError(f"--tensorboard needs tensorboardX: {install_hint('tensorboard')}") from None
        self.writer = SummaryWriter(logdir=str(logdir))
        if settings is not None:
            self.writer.add_text("settings", json.dumps(settings, sort_keys=True, default=str), 0)

    def __call__(self, record: dict, model) -> bool:
        epoch = record["epoch"]
        for key, value in record.items():
            if key != "epoch" and isinstance(value, numbers.Real):
                self.writer.add_scalar(key, float(value), epoch)
        self.writer.flush()
        return False  # never stops the run

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
