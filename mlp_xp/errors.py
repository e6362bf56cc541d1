"""The errors mlp_xp raises on purpose.

Each one carries a single sentence that names the problem and the fix. The CLI prints that sentence
and exits with status 2; library users can catch :class:`MLPXPError` for all of them.
"""

from __future__ import annotations

#: The exit statuses of every ``mlp-xp`` command (ARCHITECTURE.md, Contracts).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_GPU, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE, EXIT_TERMINATED = 141, 143


class MLPXPError(Exception):
    """Base class of every error mlp_xp raises on purpose."""


class ConfigError(MLPXPError, ValueError):
    """A setting is unknown or out of range (activation name, learning rate, batch size, ...)."""


class DataError(MLPXPError, ValueError):
    """Input data is unusable: NaN/Inf, wrong shape or length, bad labels, empty, corrupt file."""


class DatasetNotFound(MLPXPError, FileNotFoundError):
    """A named dataset is not on this machine and could not be downloaded; the message says how to get it."""


class ModelFileError(MLPXPError, ValueError):
    """A saved model file is truncated, corrupt, or of an unknown format version."""


class BackendUnavailable(MLPXPError, RuntimeError):
    """The requested backend cannot be used here; the message says why (no CuPy, no device, old driver)."""


class DeviceMemoryError(MLPXPError, MemoryError):
    """The device ran out of memory; the message names the size needed and what to shrink."""


class DivergenceError(MLPXPError, FloatingPointError):
    """Training produced a non-finite loss. The model keeps the last good weights.

    ``history`` holds the epochs completed before the divergence.
    """

    def __init__(self, message: str, history=None) -> None:
        super().__init__(message)
        self.history = history
