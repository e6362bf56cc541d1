"""``mlp-xp doctor``: every op of this machine's backends against its reference (:mod:`mlp_xp.selfcheck`):
the CPU backend as it runs here (compiled loops, direct BLAS, NumPy path) and the CUDA kernels on each GPU."""

from __future__ import annotations

import sys

from .backend import cpu_loops, cuda_devices, cuda_status, get_backend
from .constraints import device_choice
from .errors import EXIT_FAILED as FAILED
from .errors import EXIT_NO_GPU as NO_GPU
from .errors import EXIT_OK as OK
from .selfcheck import format_results, timed_check


def _check(ops, title: str) -> bool:
    results, seconds = timed_check(ops)
    print(format_results(results, title, seconds))
    return all(r.ok for r in results)


def _check_gpu(index: int) -> bool | None:
    """Check cuda:``index``: True (verified), False (a check failed, or the check could not run to its end), or
    None (the device is not usable: one line on stderr says why)."""
    usable, why = cuda_status(index)
    if not usable:
        print(f"mlp-xp: error: cuda:{index} is not usable, so no CUDA kernel was checked: {why}", file=sys.stderr)
        return None
    try:
        ops = get_backend(f"cuda:{index}")
        return _check(ops, ops.name)
    except Exception as e:  # a device that fails mid-check must not keep the next ones from being checked
        print(f"mlp-xp: error: cuda:{index} FAILED: the check stopped on {type(e).__name__}: {e}", file=sys.stderr)
        return False


def run_doctor(device: str = "all") -> int:
    """Print one line per op and dtype (verified or FAILING) under each backend's name; return the exit status.

    ``device``: "all" (the CPU, then every visible GPU: cuda:0, cuda:1, ...), "cpu", or "cuda"/"cuda:N" (that
    GPU only). Exit status 1 if any check failed; else 3 if a GPU was asked for ("all" or cuda:N) and none, or
    not every one, could be checked; else 0.
    """
    kind, index = device_choice(device)
    if kind == "cuda":
        ok = _check_gpu(index)
        return NO_GPU if ok is None else OK if ok else FAILED
    ops = get_backend("cpu")
    ok = _check(ops, f"{ops.name}; compiled loops {cpu_loops.status()}")
    if kind == "cpu":
        return OK if ok else FAILED
    devices = cuda_devices()
    if not devices:
        _, why = cuda_status(0)
        print(
            f"mlp-xp: error: no usable GPU, so no CUDA kernel was checked: {why} (check the CPU alone with "
            "mlp-xp doctor --device cpu)",
            file=sys.stderr,
        )
        return NO_GPU if ok else FAILED
    gpus = [_check_gpu(i) for i in devices]
    if not ok or False in gpus:
        return FAILED
    return NO_GPU if None in gpus else OK
