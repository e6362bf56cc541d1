"""``mlp-xp doctor``: every CUDA kernel run on this machine's GPU and compared with its NumPy twin."""

from __future__ import annotations

import sys

from .backend import cuda_status, get_backend
from .selfcheck import format_results, timed_check


def run_doctor(device: str = "cuda:0") -> int:
    """Print one line per kernel (verified or FAILING) under the device's name; exit status 0 if all pass."""
    index = int(device.partition(":")[2] or 0)
    ok, why = cuda_status(index)
    if not ok:
        print(f"mlp-xp doctor: no usable GPU, so no kernel was checked: {why}", file=sys.stderr)
        return 1
    ops = get_backend(device)
    results, seconds = timed_check(ops)
    print(format_results(results, ops.name, seconds))
    return 0 if all(r.ok for r in results) else 1
