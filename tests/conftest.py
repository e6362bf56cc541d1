"""Shared fixtures: backend-level tests run on every backend that can run here.

* ``cpu``: the NumPy backend as users get it: direct BLAS and the compiled loops of kernels/cpu.cpp.
* ``cpu-numpy``: the NumPy backend with NumPy alone (``fast=False``), what runs where no compiler is found.
* ``cuda-host``: the CUDA backend's own code (CupyOps) with the CPU harness of tests/cuda_host standing in
  for the GPU: the unmodified kernels/*.cu compiled by g++, and NumPy in place of CuPy's thin layer.
* ``cuda``: the CUDA backend on a real GPU (marked ``gpu``; skipped with the reason where none is usable).
"""

from __future__ import annotations

import pytest

from mlp_xp.backend import cuda_status, get_backend

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
        from mlp_xp.backend.cupy_ops import CupyOps

        from .cuda_host.device import HostDevice

        return CupyOps(0, device=HostDevice(host_kernels), kernels=host_kernels)
    ok, why = cuda_status(0)
    if not ok:
        pytest.skip(f"no usable GPU: {why}")
    return get_backend("cuda:0")


@pytest.fixture(params=BACKENDS)
def ops(request, host_kernels):
    """A backend instance with its counters reset."""
    backend = make_backend(request.param, host_kernels)
    backend.counts.reset()
    return backend
