"""``mlp-xp doctor``: every op of this machine's backends against its reference (:mod:`mlp_xp.selfcheck`):
the CPU backend as it runs here (compiled loops, direct BLAS, NumPy path) and the CUDA kernels on its GPU."""

from __future__ import annotations

import sys

from .backend import cpu_loops, cuda_status, get_backend, parse_device
from .errors import EXIT_FAILED as FAILED
from .errors import EXIT_NO_GPU as NO_GPU
from .errors import EXIT_OK as OK
from .selfcheck import format_results, timed_check


def run_doctor(device: str = "all") -> int:
    """Print one line per op and dtype (verified or FAILING) under each backend's name; return the exit status.

    ``device``: "all" (the CPU, then cuda:0, which must be usable), "cpu", or "cuda"/"cuda:N" (that GPU only).
    """
    kind, index = ("all", 0) if device == "all" else parse_device(device)
    kind = "all" if kind == "auto" else kind
    ok = True
    if kind in ("all", "cpu"):
        ops = get_backend("cpu")
        results, seconds = timed_check(ops)
        print(format_results(results, f"{ops.name}; compiled loops {cpu_loops.status()}", seconds))
        ok = all(r.ok for r in results)
        if kind == "cpu":
            return OK if ok else FAILED
    usable, why = cuda_status(index)
    if not usable:
        print(
            f"mlp-xp: error: no usable GPU, so no CUDA kernel was checked: {why} (check the CPU alone with "
            "mlp-xp doctor --device cpu)",
            file=sys.stderr,
        )
        return FAILED if not ok else NO_GPU
    ops = get_backend(f"cuda:{index}")
    results, seconds = timed_check(ops)
    print(format_results(results, ops.name, seconds))
    return OK if ok and all(r.ok for r in results) else FAILED
