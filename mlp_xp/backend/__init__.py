"""Backend selection: ``get_backend("auto" | "cpu" | "cuda" | "cuda:N")``.

``auto`` picks CUDA when CuPy imports and a device is usable, else NumPy, and says which in one line on
stderr (once per process). Asking for ``cuda`` where none is usable raises :class:`BackendUnavailable`
naming the reason: CuPy not installed, no device, or a driver too old for the installed CuPy.
"""

from __future__ import annotations

import sys
from functools import cache

from ..constraints import parse_device
from ..errors import BackendUnavailable
from .base import STEP_OPS, OpCounts, Ops
from .numpy_ops import NumpyOps

__all__ = ["Ops", "OpCounts", "STEP_OPS", "NumpyOps", "get_backend", "cuda_status", "cuda_devices", "parse_device"]

_INSTALL_HINT = "pip install 'mlp-xp[cuda12]' (CUDA 12 driver) or 'mlp-xp[cuda13]' (CUDA 13 driver)"


def cuda_status(index: int = 0) -> tuple[bool, str]:
    """Whether CUDA device ``index`` is usable through CuPy, and either its name or why not."""
    try:
        import cupy
    except ImportError:
        return False, f"CuPy is not installed: {_INSTALL_HINT}"
    except Exception as e:  # a broken install (missing CUDA libraries) fails in odd ways
        return False, f"CuPy failed to import ({type(e).__name__}: {e}); reinstall it: {_INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, _explain_cuda_error(e, cupy)
    if count == 0:
        return False, "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    if index >= count:
        return False, f"cuda:{index} was asked for but this machine has {count} CUDA device(s): use cuda:0..{count - 1}"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception as e:
        return False, _explain_cuda_error(e, cupy)
    return True, name


def cuda_devices() -> list[int]:
    """The indices of the CUDA devices CuPy can see (``cuda:N`` for each), or [] where there is none or no CuPy."""
    try:
        import cupy

        return list(range(cupy.cuda.runtime.getDeviceCount()))
    except Exception:  # no CuPy, no driver, no device: no GPU to list
        return []


def _explain_cuda_error(e: Exception, cupy) -> str:
    text = str(e)
    if "InsufficientDriver" in text or "driver version is insufficient" in text:
        try:
            driver = cupy.cuda.runtime.driverGetVersion()
        except Exception:
            driver = None
        if driver == 0:  # the CUDA runtime found no driver library at all
            return "no NVIDIA driver is installed (libcuda cannot be loaded): install the driver, or use the CPU"
        try:
            runtime = cupy.cuda.runtime.runtimeGetVersion()
            need = f"CUDA {runtime // 1000}.{runtime % 1000 // 10}"
        except Exception:
            need = "this CuPy build"
        return (
            f"the NVIDIA driver is too old for {need}: update the driver, or install the CuPy build for "
            f"your driver's CUDA version ({_INSTALL_HINT})"
        )
    if "NoDevice" in text or "no CUDA-capable device" in text:
        return "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    return f"CUDA is not usable: {text}"


@cache
def _auto_choice() -> str:
    ok, what = cuda_status(0)
    if ok:
        print(f"mlp_xp: using cuda:0 ({what})", file=sys.stderr)
        return "cuda:0"
    print(f"mlp_xp: using the CPU (NumPy); CUDA not used: {what}", file=sys.stderr)
    return "cpu"


_BACKENDS: dict[str, Ops] = {}


def get_backend(spec: str | Ops = "auto") -> Ops:
    """Return the backend for ``spec``: "auto", "cpu", "cuda" or "cuda:N" (or an Ops, returned as is).

    Backends are created once per process and shared, so their compiled kernels are too.
    """
    if isinstance(spec, Ops):
        return spec
    kind, index = parse_device(spec)
    if kind == "auto":
        kind, index = parse_device(_auto_choice())
    key = f"{kind}:{index}"
    ops = _BACKENDS.get(key)
    if ops is not None:
        return ops
    if kind == "cpu":
        ops = NumpyOps()
    else:
        ok, why = cuda_status(index)
        if not ok:
            raise BackendUnavailable(f"CUDA backend unavailable: {why}")
        from .cupy_ops import CupyOps

        ops = CupyOps(index)
    _BACKENDS[key] = ops
    return ops
