"""A model, or a run, that cannot fit in memory is refused in one line before anything is allocated, and on the
command line before any data are read, instead of a raw MemoryError."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend.base import host_free_memory

from .conftest import cuda_host_backend
from .test_cli import run


def test_the_host_reports_its_free_memory():
    free = host_free_memory()
    assert free is None or free > 1 << 20


def test_a_model_too_large_for_the_cpu_is_refused_before_allocating():
    with pytest.raises(
        mlp_xp.DeviceMemoryError, match=r"the model's 79,500,000,010 parameters need .* GiB .* free: use smaller hidden"
    ):
        mlp_xp.MLP([784, 10**8, 10], device="cpu")


def test_a_model_too_large_for_the_gpu_is_refused_before_allocating(host_kernels):
    from .cuda_host.fake_cupy import FakeCupy

    ops = cuda_host_backend(host_kernels, fake=FakeCupy(host_kernels, total_bytes=64 << 20))
    mlp_xp.MLP([784, 1000, 10], device=ops)  # 3 MiB: fits
    with pytest.raises(mlp_xp.DeviceMemoryError, match="cuda:0 has 0.06 GiB free"):
        mlp_xp.MLP([784, 20000, 10], device=ops)  # 63 MiB twice over


def test_a_run_too_large_is_refused_before_its_buffers(host_kernels):
    from .cuda_host.fake_cupy import FakeCupy

    ops = cuda_host_backend(host_kernels, fake=FakeCupy(host_kernels, total_bytes=64 << 20))
    m = mlp_xp.MLP([784, 4000, 10], device=ops)  # 12.6 MiB of parameters: fits; Adam's run needs 5 times that
    X = np.zeros((64, 784), np.float32)
    with pytest.raises(mlp_xp.DeviceMemoryError, match="training's buffers need"):
        mlp_xp.fit(m, X, np.zeros(64, int), epochs=1, optimizer="adam", early_stopping=True, validation_fraction=0.5)


def test_the_command_line_refuses_impossible_hidden_layers_before_the_data(capsys, monkeypatch):
    from mlp_xp import data as data_module

    def no_loading(*a, **kw):
        raise AssertionError("the data were loaded")

    monkeypatch.setattr(data_module, "load_dataset", no_loading)
    code, _, err = run(capsys, "train --hidden 10000000,10000000 --device cpu")
    assert code == 2 and err.count("\n") == 1
    assert "hidden layers of 10000000,10000000 with momentum need" in err and "use smaller hidden layers" in err
