"""Backend selection and the CUDA backend's input checks (no GPU needed)."""

import sys
import types

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend import cuda_status, get_backend


def _fake_cupy(monkeypatch, count=None, error=None, runtime_version=12090, driver_version=11040, name=b"Fake GPU"):
    runtime = types.SimpleNamespace()

    def get_device_count():
        if error:
            raise RuntimeError(error)
        return count

    runtime.getDeviceCount = get_device_count
    runtime.runtimeGetVersion = lambda: runtime_version
    runtime.driverGetVersion = lambda: driver_version
    runtime.getDeviceProperties = lambda i: {"name": name}
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=runtime)
    monkeypatch.setitem(sys.modules, "cupy", cupy)


def test_no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    ok, why = cuda_status()
    assert not ok and "CuPy is not installed" in why and "mlp-xp[cuda12]" in why


def test_driver_too_old(monkeypatch):
    _fake_cupy(
        monkeypatch, error="cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
    )
    ok, why = cuda_status()
    assert not ok and "driver is too old for CUDA 12.9" in why and "update the driver" in why


def test_no_driver(monkeypatch):
    _fake_cupy(
        monkeypatch,
        driver_version=0,
        error="cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version",
    )
    ok, why = cuda_status()
    assert not ok and "no NVIDIA driver is installed" in why


def test_no_device(monkeypatch):
    _fake_cupy(monkeypatch, error="cudaErrorNoDevice: no CUDA-capable device is detected")
    ok, why = cuda_status()
    assert not ok and "no CUDA device is visible" in why


def test_device_index_out_of_range(monkeypatch):
    _fake_cupy(monkeypatch, count=2)
    assert cuda_status(1) == (True, "Fake GPU")
    ok, why = cuda_status(2)
    assert not ok and "has 2 CUDA device(s): use cuda:0..1" in why


def test_cuda_request_raises_with_the_reason(monkeypatch):
    _fake_cupy(monkeypatch, count=0)
    monkeypatch.setattr("mlp_xp.backend._BACKENDS", {})
    with pytest.raises(mlp_xp.BackendUnavailable, match="CUDA backend unavailable: no CUDA device"):
        get_backend("cuda:0")


def test_backends_are_shared_per_process():
    assert get_backend("cpu") is get_backend("cpu")
    ops = get_backend("cpu")
    assert get_backend(ops) is ops


def test_cuda_backend_refuses_wrong_dtype_and_layout_before_launching(host_kernels):
    from .conftest import make_backend

    gpu = make_backend("cuda-host", host_kernels)
    before = len(host_kernels.launches)
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(mlp_xp.DataError, match="b has dtype float64 where float32 is needed"):
        gpu.bias_act(z, np.zeros(3), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="not C-contiguous"):
        gpu.act_backward(np.zeros((3, 4), np.float32).T, z, "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="y \\(class labels\\) has dtype int64 where int32"):
        gpu.loss_grad(z, np.zeros(4, np.int64), np.zeros(2), "cross_entropy")
    with pytest.raises(mlp_xp.DataError, match="kernels take float32 or float64"):
        gpu.bias_act(np.zeros((4, 3), np.float16), np.zeros(3, np.float16), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="3 labels for 4 rows"):
        gpu.loss_grad(z, np.zeros(3, np.int32), np.zeros(2), "cross_entropy")
    assert len(host_kernels.launches) == before  # nothing reached a kernel


def test_cuda_backend_converts_on_asarray(host_kernels):
    from .conftest import make_backend

    gpu = make_backend("cuda-host", host_kernels)
    a = gpu.asarray(np.arange(6).reshape(2, 3).T, np.float32)  # a transposed int view
    assert a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, [[0, 3], [1, 4], [2, 5]])
