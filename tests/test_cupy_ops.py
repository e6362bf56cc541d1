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
