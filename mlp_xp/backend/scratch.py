"""Scratch buffers for the NumPy path (:mod:`mlp_xp.backend.numpy_path`).

A function that needs a temporary asks ``scratch(key, shape, dtype)`` for it. Called alone, it gets fresh
arrays; the NumPy backend passes a cache instead, so that a training step reuses the same buffers and
allocates nothing after the first step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Scratch = Callable[[str, tuple, "np.dtype | type"], np.ndarray]


_CONSTANTS: dict[tuple, np.ndarray] = {}


def constant(value: float, shape: tuple, dtype) -> np.ndarray:
    """A read-only array filled with ``value``, made once per (value, shape, dtype).

    NumPy's ufuncs run several times faster against an array than against a broadcast scalar
    (np.maximum(z, zeros) vs np.maximum(z, 0)), so the NumPy path keeps such arrays around.
    """
    key = (value, shape, np.dtype(dtype).char)
    arr = _CONSTANTS.get(key)
    if arr is None:
        arr = _CONSTANTS[key] = np.full(shape, value, dtype)
        arr.setflags(write=False)
    return arr


def fresh(key: str, shape: tuple, dtype) -> np.ndarray:
    """A scratch provider that allocates every time (for one-off calls and tests)."""
    return np.empty(shape, dtype)


class ScratchCache:
    """Keeps one buffer per (key, shape, dtype); the second request for the same triple reuses it."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, np.ndarray] = {}

    def __call__(self, key: str, shape: tuple, dtype) -> np.ndarray:
        k = (key, shape, np.dtype(dtype).char)
        buf = self._buffers.get(k)
        if buf is None:
            buf = self._buffers[k] = np.empty(shape, dtype)
        return buf

    def clear(self) -> None:
        self._buffers.clear()
