"""``mlp-xp doctor``: every kernel this machine runs, the compiled CPU loops and the CUDA kernels on its GPU,
compared with its NumPy twin."""

from __future__ import annotations

import sys
import time

from .backend import cpu_kernels, cuda_status, get_backend
from .selfcheck import check_cpu_kernels, format_results, timed_check


def run_doctor(device: str = "cuda:0") -> int:
    """Print one line per kernel (verified or FAILING) under the device's name; exit status 0 if all pass.

    The CPU loops come first; without a usable GPU the status is 1 and says why."""
    t = time.perf_counter()
    cpu = check_cpu_kernels()
    if cpu:
        print(format_results(cpu, f"cpu, compiled loops {cpu_kernels.status()}", time.perf_counter() - t))
    else:
        print(f"mlp-xp doctor: cpu, compiled loops {cpu_kernels.status()}")
    cpu_ok = all(r.ok for r in cpu)
    index = int(device.partition(":")[2] or 0)
    ok, why = cuda_status(index)
    if not ok:
        print(f"mlp-xp doctor: no usable GPU, so no CUDA kernel was checked: {why}", file=sys.stderr)
        return 1
    ops = get_backend(device)
    results, seconds = timed_check(ops)
    print(format_results(results, ops.name, seconds))
    return 0 if cpu_ok and all(r.ok for r in results) else 1
