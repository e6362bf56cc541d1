"""Backend selection (mlp_xp.backend): get_backend, cuda_status and what they say when CUDA is not usable (no
GPU needed: CuPy is faked where a case needs it)."""

import sys
import types

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
    # (the packages, which PyPI has, not "mlp-xp[cuda12]": mlp_xp itself is installed from its folder)
    assert (
        not ok and "CuPy is not installed" in why and "pip install 'cupy-cuda12x>=14'" in why and "'.[cuda12]'" in why
    )


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


def test_cuda_request_without_a_usable_device_names_the_reason():
    ok, why = cuda_status()
    if ok:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(mlp_xp.BackendUnavailable, match="CUDA backend unavailable: .+") as e:
        get_backend("cuda")
    assert why in str(e.value)
    assert any(w in why for w in ("CuPy is not installed", "driver", "no CUDA device", "CUDA is not usable"))


def test_auto_falls_back_to_the_cpu_and_says_so(capfd):
    from mlp_xp.backend import _auto_choice

    _auto_choice.cache_clear()
    ops = get_backend("auto")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlp_xp: using ")
    assert ("cuda" in ops.kind) == ("cuda:0" in err)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cuda:-1", 3])
def test_unknown_device_strings(spec):
    with pytest.raises(mlp_xp.ConfigError, match="auto', 'cpu', 'cuda'"):
        get_backend(spec)
