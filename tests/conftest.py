"""Shared fixtures: backend-level tests run on every backend that can run here.

* ``cpu``: the NumPy backend as users get it: direct BLAS and the compiled loops of kernels/cpu.cpp.
* ``cpu-numpy``: the NumPy backend with NumPy alone (``fast=False``), what runs where no compiler is found.
* ``cuda-host``: the whole CUDA backend (CupyOps and its thin CuPy layer, CupyDevice and RawModuleKernels)
  on the CPU model of CuPy in tests/cuda_host: the unmodified kernels/*.cu compiled by g++, host memory in
  place of device memory, CuPy's devices, streams and capture rules modelled, cuBLAS faked on host memory.
* ``cuda``: the CUDA backend on a real GPU (marked ``gpu``; skipped with the reason where none is usable).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from mlp_xp.backend import cuda_status, get_backend

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the scripts are not a package), registered under ``name`` in
    sys.modules: dataclasses look their module up by name."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BACKENDS = ["cpu", "cpu-numpy", "cuda-host", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def _hermetic_data(tmp_path, monkeypatch):
    """No test reads the user's data folders or cache, or reaches the network: the cache is the test's own
    tmp_path / "cache" (Debian's system folder is still found: it is installed, not the user's)."""
    from mlp_xp.data import download

    monkeypatch.delenv("MLP_XP_DATA", raising=False)
    monkeypatch.setenv("MLP_XP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_network(url, timeout):
        raise AssertionError(f"a test tried to reach the network: {url}")

    monkeypatch.setattr(download, "_fetch_url", no_network)


@pytest.fixture(scope="session")
def host_kernels():
    from .cuda_host.harness import HostKernels

    return HostKernels()


def make_backend(name: str, host_kernels=None):
    if name == "cpu":
        return get_backend("cpu")
    if name == "cpu-numpy":
        from mlp_xp.backend.numpy_ops import NumpyOps

        return NumpyOps(fast=False)
    if name == "cuda-host":
        return cuda_host_backend(host_kernels)
    ok, why = cuda_status(0)
    if not ok:
        pytest.skip(f"no usable GPU: {why}")
    return get_backend("cuda:0")


def cuda_host_backend(host_kernels, index: int = 0, *, gemm: str = "cublas", fake=None, device_class=None, **fake_kw):
    """The CUDA backend on the CPU model of CuPy (a new FakeCupy unless ``fake`` is given; ``device_class``: a
    CupyDevice subclass, for the negative controls)."""
    from mlp_xp.backend.cupy_device import CupyDevice
    from mlp_xp.backend.cupy_ops import CupyOps

    from .cuda_host.fake_cublas import FakeCublas
    from .cuda_host.fake_cupy import FakeCupy, FakeDriver

    fake = fake if fake is not None else FakeCupy(host_kernels, **fake_kw)
    dev = (device_class or CupyDevice)(
        index, cupy=fake, driver=FakeDriver(fake), cublas_library=FakeCublas(dispatch=fake.cublas_dispatch)
    )
    return CupyOps(index, gemm=gemm, device=dev)


@pytest.fixture(params=BACKENDS)
def ops(request, host_kernels):
    """A backend instance with its counters reset."""
    backend = make_backend(request.param, host_kernels)
    backend.counts.reset()
    return backend
