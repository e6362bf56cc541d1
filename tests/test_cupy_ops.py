"""The CUDA backend's own decisions (mlp_xp.backend.cupy_ops), with the CPU harness standing in for the GPU: it
refuses what its kernels cannot take before anything is launched, converts on asarray, and picks its launch
geometry. Whether the kernels compute right is the op contract's (tests/test_ops.py, backend cuda-host)."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend.cupy_ops import row_geometry

from .conftest import make_backend


def test_cuda_backend_refuses_wrong_dtype_and_layout_before_launching(host_kernels):
    gpu = make_backend("cuda-host", host_kernels)
    before = len(host_kernels.launches)
    z = gpu.zeros((4, 3), np.float32)
    with pytest.raises(mlp_xp.DataError, match="b has dtype float64 where float32 is needed"):
        gpu.bias_act(z, gpu.zeros((3,), np.float64), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="b is a numpy.ndarray, not an array on cuda:0: copy it to the device"):
        gpu.bias_act(z, np.zeros(3, np.float32), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="not C-contiguous"):
        gpu.act_backward(gpu.zeros((3, 4), np.float32).T, z, "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="y \\(class labels\\) has dtype int64 where int32"):
        gpu.loss_grad(z, gpu.zeros((4,), np.int64), gpu.zeros((2,), np.float64), "cross_entropy")
    with pytest.raises(mlp_xp.DataError, match="kernels take float32 or float64"):
        gpu.bias_act(gpu.zeros((4, 3), np.float16), gpu.zeros((3,), np.float16), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="3 labels for 4 rows"):
        gpu.loss_grad(z, gpu.zeros((3,), np.int32), gpu.zeros((2,), np.float64), "cross_entropy")
    assert len(host_kernels.launches) == before  # nothing reached a kernel


def test_cuda_backend_converts_on_asarray(host_kernels):
    gpu = make_backend("cuda-host", host_kernels)
    a = gpu.asarray(np.arange(6).reshape(2, 3).T, np.float32)  # a transposed int view
    assert a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(gpu.to_host(a), [[0, 3], [1, 4], [2, 5]])


def test_row_geometry_choices():
    assert row_geometry(128, 10, 4) == ((4,), (4, 32))
    assert row_geometry(3, 10000, 4) == ((3,), (256, 1))
    assert row_geometry(1, 2, 4) == ((1,), (1, 128))
    grid, block = row_geometry(1000, 1)
    assert block == (1, 128) and grid == (8,)


def test_cuda_backend_refuses_bad_row_weights_and_divisors_before_launching(host_kernels):
    gpu = make_backend("cuda-host", host_kernels)
    before = len(host_kernels.launches)
    z, acc = gpu.zeros((4, 3), np.float32), gpu.zeros((2,), np.float64)
    labels, targets = gpu.zeros((4,), np.int32), gpu.zeros((4, 3), np.float32)
    for loss, y in (("cross_entropy", labels), ("binary_cross_entropy", targets), ("mse", targets)):
        with pytest.raises(mlp_xp.DataError, match="sample_weight has dtype float64 where float32"):
            gpu.loss_grad(z, y, acc, loss, sample_weight=gpu.zeros((4,), np.float64))
        with pytest.raises(mlp_xp.DataError, match="sample_weight has 3 entries for 4 rows"):
            gpu.loss_grad(z, y, acc, loss, sample_weight=gpu.zeros((3,), np.float32))
        with pytest.raises(mlp_xp.DataError, match="sample_weight must be 1-D"):
            gpu.loss_grad(z, y, acc, loss, sample_weight=gpu.zeros((4, 1), np.float32))
        with pytest.raises(mlp_xp.DataError, match="sample_weight is a numpy.ndarray"):
            gpu.loss_grad(z, y, acc, loss, sample_weight=np.ones(4, np.float32))
        for bad in (0, -2.0, float("nan"), float("inf"), 1e39, 1e-40):  # 1e39: inf in float32; 1e-40: subnormal
            with pytest.raises(mlp_xp.DataError, match="divisor must be a positive finite number in float32"):
                gpu.loss_grad(z, y, acc, loss, divisor=bad)
        with pytest.raises(mlp_xp.ConfigError, match="divisor must be a number"):
            gpu.loss_grad(z, y, acc, loss, divisor="4")
    X, Y, idx = gpu.zeros((10, 3), np.float32), gpu.zeros((10,), np.int32), gpu.zeros((4,), np.int64)
    xb, yb = gpu.zeros((4, 3), np.float32), gpu.zeros((4,), np.int32)
    with pytest.raises(mlp_xp.ConfigError, match="W and their batch buffer wb together"):
        gpu.gather_rows(X, Y, idx, xb, yb, W=gpu.zeros((10,), np.float32))
    with pytest.raises(mlp_xp.DataError, match="W \\(row weights\\) has dtype float64 where float32"):
        gpu.gather_rows(X, Y, idx, xb, yb, W=gpu.zeros((10,), np.float64), wb=gpu.zeros((4,), np.float32))
    with pytest.raises(mlp_xp.DataError, match="10 rows need as many weights and a batch of 4"):
        gpu.gather_rows(X, Y, idx, xb, yb, W=gpu.zeros((9,), np.float32), wb=gpu.zeros((4,), np.float32))
    assert len(host_kernels.launches) == before  # nothing reached a kernel


def test_row_weights_of_ones_and_the_default_divisor_change_nothing(host_kernels):
    """Unweighted calls compute what they did before the row weights came: ones and a divisor of B are the same
    numbers, to the bit."""
    gpu = make_backend("cuda-host", host_kernels)
    rng = np.random.default_rng(3)
    z0 = (rng.standard_normal((37, 11)) * 4).astype(np.float32)
    cases = [
        ("cross_entropy", rng.integers(0, 11, 37).astype(np.int32)),
        ("binary_cross_entropy", rng.integers(0, 2, (37, 11)).astype(np.float32)),
        ("mse", rng.standard_normal((37, 11)).astype(np.float32)),
    ]
    for loss, y in cases:
        out = []
        for rows in ({}, {"sample_weight": gpu.asarray(np.ones(37, np.float32)), "divisor": 37}):
            z, acc = gpu.asarray(z0), gpu.zeros((2,), np.float64)
            gpu.loss_grad(z, gpu.asarray(y), acc, loss, **rows)
            out.append((gpu.to_host(z), gpu.to_host(acc)))
        np.testing.assert_array_equal(out[0][0], out[1][0], err_msg=loss)
        np.testing.assert_array_equal(out[0][1], out[1][1], err_msg=loss)
