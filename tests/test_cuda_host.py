"""The unmodified kernels/*.cu on the CPU harness of tests/cuda_host: what the op contract (tests/test_ops.py,
backend cuda-host) does not reach.

The harness is as strict as CuPy where a GPU would misbehave silently: argument types, block and shared-memory
limits, the capture rules (tests/test_step.py). Here: the row kernels are right for every launch geometry (not
only the one the dispatcher picks), the graph-capturable GEMM kernel matches its reference, and the harness
refuses what CuPy would. That the contract's cases launch every kernel: tests/test_selfcheck.py.
"""

import numpy as np
import pytest

from mlp_xp import selfcheck
from mlp_xp.backend.reference_ops import ReferenceOps

from .conftest import cuda_host_backend

MATMUL_CASES = [c for c in selfcheck.cases() if c.op == "matmul"]


@pytest.fixture
def gpu(host_kernels):
    return cuda_host_backend(host_kernels)


@pytest.mark.parametrize("case", MATMUL_CASES, ids=lambda c: c.id)
def test_the_gemm_kernel_matches_its_reference(gpu, case):
    err, where = selfcheck.run_case(gpu, case, method="gemm_kernel")
    assert err <= 1, f"{case.id}: {err:.3g} x tolerance at {where}"


@pytest.mark.parametrize("bx, by", [(1, 1), (1, 64), (2, 8), (4, 32), (8, 16), (32, 4), (64, 2), (128, 1), (256, 1)])
@pytest.mark.parametrize("C", [3, 10, 129, 2000])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "row-weights"])
def test_softmax_xent_is_right_for_every_launch_geometry(host_kernels, bx, by, C, weighted):
    """The kernel must not depend on the geometry the dispatcher picks: sweep it, as llm.c's dev/cuda does."""
    rng = np.random.default_rng(bx * 1000 + C)
    B = 21
    z, y = rng.standard_normal((B, C)) * 4, rng.integers(0, C, B).astype(np.int32)
    s = rng.uniform(0, 3, B).astype(np.float32) if weighted else None
    divisor = float(s.sum()) if weighted else float(B)
    zk, acck = z.astype(np.float32), np.zeros(2)
    host_kernels.launch(
        "softmax_xent<float>",
        ((B + by - 1) // by,),
        (bx, by),
        (zk, y, None, s, acck, np.int64(B), np.int32(C), np.int32(1), np.float32(0), np.float32(divisor)),
        bx * by * 16,
    )
    zt, acct = z.astype(np.float32).astype(np.float64), np.zeros(2)
    rows = {"sample_weight": s.astype(np.float64), "divisor": float(np.float32(divisor))} if weighted else {}
    ReferenceOps().loss_grad(zt, y, acct, "cross_entropy", **rows)
    tol = selfcheck.TOLERANCE[np.dtype(np.float32)]
    assert selfcheck._error(zk, zt) <= tol and selfcheck._error(acck[0], acct[0]) <= tol
    assert acck[1] == acct[1] if not weighted else selfcheck._error(acck[1], acct[1]) <= 1e-12  # summed in double


def test_the_harness_refuses_arguments_a_gpu_would_misread(host_kernels):
    z, b = np.zeros((2, 3), np.float32), np.zeros(3, np.float32)
    good = (z, b, np.int64(2), np.int32(3), np.int32(1), np.float32(0.0))
    host_kernels.launch("bias_act<float>", (1,), (32,), good)
    with pytest.raises(TypeError, match="scalar rows must be int64"):  # CuPy passes a Python int as 8 bytes
        host_kernels.launch("bias_act<float>", (1,), (32,), (z, b, 2, *good[3:]))
    with pytest.raises(TypeError, match="scalar slope must be float32"):  # and a Python float as a double
        host_kernels.launch("bias_act<float>", (1,), (32,), (*good[:5], 0.0))
    with pytest.raises(TypeError, match="argument z must be a C-contiguous float32 array"):
        host_kernels.launch("bias_act<float>", (1,), (32,), (z.astype(np.float64), *good[1:]))
    with pytest.raises(ValueError, match="more than 1024 threads"):
        host_kernels.launch("bias_act<float>", (1,), (2048,), good)
    with pytest.raises(TypeError, match="grid and block must be tuples"):
        host_kernels.launch("bias_act<float>", [1], (32,), good)
