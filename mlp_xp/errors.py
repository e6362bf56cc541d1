"""The errors mlp_xp raises on purpose.

Each one carries a single sentence that names the problem and the fix. The CLI prints that sentence
and exits with status 2; library users can catch :class:`MLPXPError` for all of them.
"""

from __future__ import annotations

import contextlib
import contextvars
import shlex
from collections.abc import Iterator

#: pyproject.toml's optional extras and the packages each installs (tests/test_repository.py holds the two alike).
EXTRAS = {
    "sklearn": ["scikit-learn>=1.6"],
    "plot": ["matplotlib>=3.5"],
    "safetensors": ["safetensors>=0.4"],
    "onnx": ["onnx>=1.14"],
    "tensorboard": ["tensorboardX>=2.6"],
    "tables": ["pandas>=2", "pyarrow>=14"],
    "dask": ["dask[distributed]>=2024.1", "scikit-learn>=1.6"],
    "ray": ["ray[client]>=2.9", "scikit-learn>=1.6"],
    "mpi": ["mpi4py>=3.1", "mpich"],
    "cuda12": ["cupy-cuda12x>=14", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"],
    "cuda13": ["cupy-cuda13x>=14", "cuda-toolkit[nvrtc,cudart,cublas]==13.*"],
    "mkl": ["mkl>=2024"],
}


def install_hint(extra: str) -> str:
    """How to install an optional extra: its packages, which are on PyPI (mlp_xp itself is installed from its
    folder, so ``pip install 'mlp-xp[plot]'`` would find nothing), and the extra's own form in that folder."""
    packages = " ".join(shlex.quote(p) for p in EXTRAS[extra])
    return f"pip install {packages} (or, in mlp_xp's folder, pip install '.[{extra}]')"


#: Whether messages name settings as the command line's flags (inside :func:`settings_as_flags`) or as Python's
#: keywords. A context variable: an embedding program's other threads keep Python's names.
_AS_FLAGS: contextvars.ContextVar[bool] = contextvars.ContextVar("mlp_xp_settings_as_flags", default=False)
_SWITCH = object()


@contextlib.contextmanager
def settings_as_flags() -> Iterator[None]:
    """Inside this block (an ``mlp-xp`` command's), :func:`spell` names settings as flags ("--epochs 6")."""
    token = _AS_FLAGS.set(True)
    try:
        yield
    finally:
        _AS_FLAGS.reset(token)


def spell(name: str, value: object = _SWITCH, *, placeholder: bool = False) -> str:
    """How a message names setting ``name`` set to ``value``, for whoever set it: "--epochs 6" on the command
    line, "epochs=6" in Python; a switch alone, "--resume" or "resume=True"; ``placeholder``: ``value`` is a word
    standing for one ("--checkpoint DIR", "checkpoint=DIR")."""
    if _AS_FLAGS.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is _SWITCH else f"{flag} {value}"
    if value is _SWITCH:
        return f"{name}=True"
    return f"{name}={value if placeholder else repr(value)}"


def flags_spelled() -> bool:
    """Whether messages are for the command line's user (inside :func:`settings_as_flags`)."""
    return _AS_FLAGS.get()


def setting_name(name: str) -> str:
    """A setting's name alone, for whoever set it: "--checkpoint-every" or "checkpoint_every"."""
    return "--" + name.replace("_", "-") if _AS_FLAGS.get() else name


def spell_without(name: str) -> str:
    """A switch left off: "without --resume" on the command line, "with resume=False" in Python."""
    return f"without --{name.replace('_', '-')}" if _AS_FLAGS.get() else f"with {name}=False"


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

    ``history`` holds the epochs completed before the divergence; ``reason`` is the trainer's account of it,
    without what a caller adds to the message (an estimator says whether it keeps its previous fit).
    """

    def __init__(self, message: str, history=None) -> None:
        super().__init__(message)
        self.history = history
        self.reason = message


class OutputLost(OSError):
    """Standard output could not be written: its reader has gone (``| head``, errno EPIPE) or its disk is full.
    The output is lost, not the command's work: the CLI ends with status 141 for a closed pipe and 1 otherwise, and
    a check that was printing does not count it as a failure of its own (``mlp-xp doctor``)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped :func:`mlp_xp.fit` at a step boundary.

    The model then holds what the run would return at that point: the best epoch's weights with early stopping,
    else the last finished epoch's (the initial ones if none finished). ``history`` holds the finished epochs,
    ``checkpoint`` the path of the checkpoint written (None without one), ``signum`` the signal. A subclass of
    KeyboardInterrupt, so that code that handles Ctrl-C handles it.
    """

    def __init__(self, signum: int, history, checkpoint=None, where: str = "") -> None:
        super().__init__(f"interrupted {where}".strip())
        self.signum, self.history, self.checkpoint, self.where = signum, history, checkpoint, where


class SearchInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a hyperparameter search; ``rows`` are the ranked candidates that had finished
    (the interrupted one is not among them), ``signum`` the signal."""

    def __init__(self, signum: int, rows: list, total: int) -> None:
        super().__init__(f"interrupted after {len(rows)} of {total} candidates")
        self.signum, self.rows, self.total = signum, rows, total


class SearchFailed(MLPXPError):
    """The engine running a search failed (a lost worker, a scheduler gone); ``rows`` are the ranked candidates
    that had finished."""

    def __init__(self, message: str, rows: list, total: int) -> None:
        super().__init__(message)
        self.rows, self.total = rows, total
