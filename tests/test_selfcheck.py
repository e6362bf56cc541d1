"""The self-check behind ``mlp-xp doctor``, run here against the CPU harness (and a GPU where one exists)."""

import numpy as np
import pytest

from mlp_xp.backend.kernels import KERNELS
from mlp_xp.selfcheck import check_backend, format_results

from .conftest import make_backend


@pytest.mark.parametrize("backend", ["cuda-host", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_every_kernel_verifies(backend, host_kernels):
    ops = make_backend(backend, host_kernels)
    results = check_backend(ops)
    assert [r.kernel for r in results] == [n for names in KERNELS.values() for n in names]
    failing = [r for r in results if not r.ok]
    assert not failing, format_results(results, ops.name, 0.0)


def test_a_broken_kernel_is_reported_failing(host_kernels, monkeypatch):
    ops = make_backend("cuda-host", host_kernels)
    real = ops.kernels.launch

    def off_by_a_bit(name, grid, block, args, shared_mem=0):
        real(name, grid, block, args, shared_mem)
        if name == "bias_grad<float>":
            args[1][0] += np.float32(1e-2)  # db[0] is wrong by 0.01

    monkeypatch.setattr(ops.kernels, "launch", off_by_a_bit)  # the harness is shared: undo afterwards
    results = {r.kernel: r for r in check_backend(ops)}
    assert not results["bias_grad<float>"].ok
    assert all(r.ok for k, r in results.items() if k != "bias_grad<float>")
    text = format_results(list(results.values()), "test device", 1.0)
    assert "bias_grad<float>" in text and "FAILING" in text and "1 FAILING" in text


def test_doctor_without_a_gpu_says_why(capsys):
    from mlp_xp.backend import cuda_status
    from mlp_xp.cli import main

    ok, why = cuda_status()
    if ok:
        pytest.skip("a GPU is usable here")
    assert main(["doctor"]) == 1
    assert why in capsys.readouterr().err


def test_doctor_checks_the_compiled_cpu_loops(monkeypatch):
    from mlp_xp.backend import cpu_kernels
    from mlp_xp.selfcheck import check_cpu_kernels

    k = cpu_kernels.find()
    if k is None:
        pytest.skip(f"no compiled CPU kernels: {cpu_kernels.status()}")
    results = {r.kernel: r for r in check_cpu_kernels()}
    assert set(results) == {
        f"{name}_{s}"
        for name in ("softmax_xent", "bias_act", "act_bwd", "bias_grad", "adam_update", "flush_subnormals")
        for s in ("f32", "f64")
    }
    assert all(r.ok for r in results.values())
    # negative control: a bias gradient that is off by one part in a thousand is caught
    real = k.bias_grad
    monkeypatch.setattr(k, "bias_grad", lambda g, out, beta: (real(g, out, beta), out.__imul__(1.001)))
    results = {r.kernel: r for r in check_cpu_kernels()}
    assert not results["bias_grad_f32"].ok and not results["bias_grad_f64"].ok
    assert results["bias_act_f32"].ok
