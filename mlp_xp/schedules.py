"""Learning-rate schedules, evaluated on the host once per step (a float handed to the update op).

t is the training time in epochs, fractional within an epoch (step / steps_per_epoch):

    constant       lr_t = lr
    inverse_time   lr_t = lr / (1 + delta t)
    power          lr_t = lr / (1 + t)^delta          (the notes' lr / t^delta with t counted from 1)
    step           lr_t = lr * gamma^floor(t / step_size)
    cosine         lr_t = min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2     (T = epochs after warm-up)
    invscaling     lr_t = lr / (1 + n floor(t))^delta  (scikit-learn's clock: n samples per epoch, the rate set
                   at each epoch's start from the samples seen before it)

With ``warmup`` epochs the rate first rises linearly from lr / warmup_steps to the schedule's start,
and the schedule's clock starts when the warm-up ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import settings
from .settings import SCHEDULES  # noqa: F401 (its old home)

_DEFAULT = {s.name: s.default for s in settings.SETTINGS}
#: The settings a schedule holds besides its name (the setting ``schedule``).
_FIELDS = ("lr", "decay", "step_size", "gamma", "epochs", "min_lr", "warmup")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule; ``lr_at(step, steps_per_epoch)`` gives the rate of a step (0-based).

    The fields are the settings of the same names (``name`` is ``schedule``), with their defaults."""

    name: str = _DEFAULT["schedule"]
    lr: float = _DEFAULT["lr"]
    decay: float = _DEFAULT["decay"]
    step_size: float = _DEFAULT["step_size"]
    gamma: float = _DEFAULT["gamma"]
    epochs: int = _DEFAULT["epochs"]
    min_lr: float = _DEFAULT["min_lr"]
    warmup: float = _DEFAULT["warmup"]

    def __post_init__(self) -> None:
        settings.check("schedule", self.name)
        for name in _FIELDS:
            settings.check(name, getattr(self, name))

    @classmethod
    def from_config(cls, config) -> Schedule:
        """The schedule a :class:`mlp_xp.TrainConfig` describes."""
        return cls(config.schedule, **{name: getattr(config, name) for name in _FIELDS})

    def lr_at(self, step: int, steps_per_epoch: int, samples_per_epoch: int = 1) -> float:
        """The learning rate of global step ``step`` (0-based); ``samples_per_epoch`` is invscaling's n."""
        warm_steps = self.warmup * steps_per_epoch
        if step < warm_steps:
            return self._decayed(0.0, samples_per_epoch) * (step + 1) / warm_steps
        return self._decayed((step - warm_steps) / steps_per_epoch, samples_per_epoch)

    def _decayed(self, t: float, samples_per_epoch: int = 1) -> float:
        lr = self.lr
        if self.name == "invscaling":
            return lr / (1.0 + samples_per_epoch * math.floor(t + 1e-9)) ** self.decay
        if self.name == "inverse_time":
            return lr / (1.0 + self.decay * t)
        if self.name == "power":
            return lr / (1.0 + t) ** self.decay
        if self.name == "step":
            return lr * self.gamma ** math.floor(t / self.step_size)
        if self.name == "cosine":
            horizon = max(self.epochs - self.warmup, 1e-12)
            frac = min(t / horizon, 1.0)
            return self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        return lr
