"""Backend selection: ``get_backend("auto" | "cpu" | "cuda" | "cuda:N")``.

``auto`` picks CUDA when CuPy imports, a device is visible and it passes :func:`probe_cuda` (NVRTC compiles,
cuBLAS loads, a kernel runs and gives the right answer), else NumPy, and says which in one line on stderr
(once per process). The probe's verdict is cached per device, driver and CuPy version, so it costs nothing
after the first run. Asking for ``cuda`` where none is usable raises :class:`BackendUnavailable` naming the
reason: CuPy not installed, no device, or a driver too old for the installed CuPy. The fallback happens only
here, when the backend is chosen: a GPU that fails in the middle of a run stops the run.
"""

from __future__ import annotations

import json
import sys
from functools import cache

from ..constraints import parse_device
from ..errors import BackendUnavailable, install_hint
from ..files import cache_root, write_json_atomic
from . import blas as _blas
from .base import STEP_OPS, OpCounts, Ops
from .numpy_ops import NumpyOps

__all__ = [
    "Ops",
    "OpCounts",
    "STEP_OPS",
    "NumpyOps",
    "get_backend",
    "cuda_status",
    "cuda_devices",
    "probe_cuda",
    "is_cuda_failure",
    "parse_device",
]

_INSTALL_HINT = f"for a CUDA 12 driver {install_hint('cuda12')}; for CUDA 13 {install_hint('cuda13')}"


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


PROBE_FILE = "cuda_probe.json"


def _probe_run(index: int, make=None) -> None:
    """Make the CUDA backend on device ``index`` (``make(index)``, default ``CupyOps``) and run one kernel and one
    cuBLAS GEMM on it, checking the answers: NVRTC, the kernel launch path, cuBLAS and a device round trip."""
    import numpy as np

    if make is None:
        from .cupy_ops import CupyOps as make

    ops = make(index)
    z = ops.asarray(np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32))
    ops.bias_act(z, ops.asarray(np.array([0.5, 0.5], np.float32)), "relu", 0.0)
    out = ops.zeros((2, 2), np.float32)
    ops.matmul(z, z, out)
    got = ops.to_host(out)
    want = np.array([[8.75, 0.0], [0.0, 8.75]], np.float32)  # h @ h for h = relu([[-0.5, 2.5], [3.5, -3.5]])
    if not np.allclose(got, want):
        raise RuntimeError(f"a test product came back as {got.tolist()} instead of {want.tolist()}")


def probe_cuda(index: int = 0, run=_probe_run, cupy=None) -> tuple[bool, str]:
    """Whether cuda:``index`` runs this library's kernels and cuBLAS, and why not.

    A pass is cached on disk per device name, driver and CuPy version, so later runs skip the probe; a failure
    is not (it may be passing: a GPU another process holds in exclusive mode), so the next run tries again.
    """
    if cupy is None:
        import cupy
    try:
        name = cuda_status(index)[1]
        driver = cupy.cuda.runtime.driverGetVersion()
    except Exception as e:
        return False, _explain_cuda_error(e, cupy)
    key = f"cuda:{index}|{name}|driver {driver}|cupy {cupy.__version__}"
    path = cache_root() / PROBE_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if known.get(key) == "ok":
        return True, name
    try:
        run(index)
    except Exception as e:
        return False, f"cuda:{index} ({name}) failed the kernel check: {type(e).__name__}: {e}"
    known[key] = "ok"
    try:  # a cache that cannot be written only costs the probe again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, known)
    except OSError:
        pass
    return True, name


@cache
def _auto_choice() -> str:
    ok, what = cuda_status(0)
    if ok:
        ok, what = probe_cuda(0)
    if ok:
        print(f"mlp_xp: using cuda:0 ({what})", file=sys.stderr)
        return "cuda:0"
    # (", or use the CPU" is the fix for one who asked for CUDA; this line says the CPU is being used)
    print(f"mlp_xp: using the CPU; CUDA not used: {what.removesuffix(', or use the CPU')}", file=sys.stderr)
    return "cpu"


def is_cuda_failure(e: BaseException) -> bool:
    """Whether ``e`` is the GPU failing (a CUDA, cuBLAS or NVRTC error, a capture that went wrong) rather than a
    mistake in the input: after one, the CUDA context cannot be trusted and the run must stop."""
    from .cublas_graph import CublasError
    from .cupy_device import GraphCaptureError

    if isinstance(e, (CublasError, GraphCaptureError)):
        return True
    return any(c.__module__.split(".")[0] in ("cupy", "cupy_backends") for c in type(e).__mro__)


_BACKENDS: dict[str, Ops] = {}


def get_backend(spec: str | Ops = "auto", *, n_params: int | None = None) -> Ops:
    """Return the backend for ``spec``: "auto", "cpu", "cuda" or "cuda:N" (or an Ops, returned as is), for a model
    of ``n_params`` parameters (the CPU's BLAS depends on it: :func:`mlp_xp.backend.blas.choice`; None: a large
    model's).

    Backends are created once per process and shared, so their compiled kernels are too.
    """
    if isinstance(spec, Ops):
        return spec
    kind, index = parse_device(spec)
    if kind == "auto":
        kind, index = parse_device(_auto_choice())
    key = f"{kind}:{index}"
    blas = None
    if kind == "cpu":
        found = _blas.find(n_params)
        blas = found.kind if found else None
        key += f":{blas}"
    ops = _BACKENDS.get(key)
    if ops is not None:
        return ops
    if kind == "cpu":
        ops = NumpyOps(blas=blas)
    else:
        ok, why = cuda_status(index)
        if not ok:
            raise BackendUnavailable(f"CUDA backend unavailable: {why}")
        from .cupy_ops import CupyOps

        ops = CupyOps(index)
    _BACKENDS[key] = ops
    return ops
