"""The self-check (mlp_xp.selfcheck) as ``mlp-xp doctor`` runs it: every op of a backend against its reference,
reported per op and dtype, with a negative control; and the doctor's exit statuses."""

import numpy as np
import pytest

from mlp_xp import selfcheck
from mlp_xp.backend import cpu_loops, cuda_status
from mlp_xp.backend.kernels import KERNELS
from mlp_xp.cli import main

from .conftest import make_backend


@pytest.mark.parametrize("backend", ["cpu", "cuda-host", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_every_op_verifies(backend, host_kernels):
    ops = make_backend(backend, host_kernels)
    before = len(host_kernels.launches)  # the harness is the session's: count only this check's launches
    results = selfcheck.check_backend(ops)
    ops_and_dtypes = {(c.op, c.dtype.name) for c in selfcheck.cases()}
    if backend != "cpu":  # the CUDA backend's own GEMM kernel too
        ops_and_dtypes |= {("matmul:gemm_kernel", dt) for dt in ("float32", "float64")}
    assert {(r.op, r.dtype) for r in results} == ops_and_dtypes
    matmul = sum(c.op == "matmul" for c in selfcheck.cases())
    assert sum(r.cases for r in results) == len(selfcheck.cases()) + (matmul if backend != "cpu" else 0)
    failing = [r for r in results if not r.ok]
    assert not failing, selfcheck.format_results(results, ops.name, 0.0)
    if backend == "cuda-host":  # a kernel added to kernels/*.cu without a case that launches it fails here
        launched = {launch.name for launch in host_kernels.launches[before:]}
        missing = {n for names in KERNELS.values() for n in names} - launched
        assert not missing, f"kernels no case launches: {sorted(missing)}"


def test_a_broken_kernel_is_reported_failing(host_kernels, monkeypatch):
    ops = make_backend("cuda-host", host_kernels)
    real = ops.kernels.launch

    def off_by_a_bit(name, grid, block, args, shared_mem=0):
        real(name, grid, block, args, shared_mem)
        if name == "bias_grad<float>":
            with ops.dev.on:  # on the backend's stream, as a kernel's own wrong write would be
                args[1][0] += np.float32(1e-2)  # db[0] is wrong by 0.01

    monkeypatch.setattr(ops.kernels, "launch", off_by_a_bit)  # the harness is shared: undone afterwards
    selected = [c for c in selfcheck.cases() if c.op in ("bias_grad", "bias_act")]
    results = {(r.op, r.dtype): r for r in selfcheck.check_backend(ops, selected)}
    assert not results["bias_grad", "float32"].ok
    assert all(r.ok for key, r in results.items() if key != ("bias_grad", "float32"))
    text = selfcheck.format_results(list(results.values()), "test device", 1.0)
    assert "bias_grad" in text and "FAILING" in text and "1 FAILING" in text and "x tolerance" in text


def test_a_broken_compiled_loop_is_reported_failing(monkeypatch):
    ops = make_backend("cpu")
    loops = ops.loops
    if loops is None:
        pytest.skip(f"no compiled CPU loops: {cpu_loops.status()}")
    real = loops.bias_grad
    monkeypatch.setattr(loops, "bias_grad", lambda g, out, **kw: (real(g, out, **kw), out.__imul__(1.001)))
    selected = [c for c in selfcheck.cases() if c.op in ("bias_grad", "bias_act")]
    results = {(r.op, r.dtype): r for r in selfcheck.check_backend(ops, selected)}
    assert not results["bias_grad", "float32"].ok and not results["bias_grad", "float64"].ok
    assert results["bias_act", "float32"].ok


def test_doctor_without_a_gpu_checks_the_cpu_and_says_why(capsys):
    ok, why = cuda_status()
    if ok:
        pytest.skip("a GPU is usable here")
    assert main(["doctor"]) == 3  # no usable GPU where one was required
    out, err = capsys.readouterr()
    assert "19/19 ops verified" in out and "compiled loops" in out
    assert why in err and err.count("\n") == 1 and "--device cpu" in err
    assert main(["doctor", "--device", "cpu"]) == 0
    assert main(["doctor", "--device", "tpu"]) == 2
