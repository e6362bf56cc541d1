"""The op contract on the CPU harness (tests/test_ops.py, backend cuda-host) and the harness's own tests again,
with the kernels built under AddressSanitizer.

Python itself is not instrumented, so the sanitizer runtime is preloaded into a child interpreter. A
negative control shows that an out-of-bounds read in a kernel is really caught there.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _asan_env() -> dict:
    lib = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not lib or not os.path.isabs(lib) or not os.path.exists(lib):
        pytest.skip("libasan is not installed (the gcc package provides it)")
    return {**os.environ, "LD_PRELOAD": lib, "ASAN_OPTIONS": "detect_leaks=0", "MLP_XP_HOST_ASAN": "1"}


def test_the_kernels_pass_the_contract_under_address_sanitizer():
    tests = [str(ROOT / "tests" / "test_ops.py"), str(ROOT / "tests" / "test_cuda_host.py")]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "cuda-host or cuda_host", *tests],
        cwd=ROOT,
        env=_asan_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "AddressSanitizer" not in r.stderr
    assert " passed" in r.stdout


def test_address_sanitizer_catches_an_out_of_bounds_read():
    script = textwrap.dedent("""
        import numpy as np
        from tests.cuda_host.harness import HostKernels
        k = HostKernels()
        X = np.zeros((4, 3), np.float32); Y = np.zeros(4, np.int32)
        idx = np.array([0, 4], np.int64)         # row 4 is one past the end
        xb = np.empty((2, 3), np.float32); yb = np.empty(2, np.int32)
        args = (X, Y, None, idx, xb, yb, None, np.int64(2), np.int32(3), np.int32(1))
        k.launch("gather_rows<float, int>", (1,), (32,), args)
        print("not caught")
    """)
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=_asan_env(), capture_output=True, text=True, timeout=300
    )
    assert r.returncode != 0 and "not caught" not in r.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr
    assert "data.cu" in r.stderr  # the report points into the kernel source
