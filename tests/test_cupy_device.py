"""On a real GPU: the thin CuPy layer (mlp_xp.backend.cupy_device), and a short training run against the CPU.

Everything else about the CUDA backend is also tested without a GPU (the cuda-host backend of conftest);
these tests cover what only a device can: RawModule compilation, cuBLAS, device memory, events.
"""

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend import cuda_status, get_backend

pytestmark = pytest.mark.gpu

_ok, _why = cuda_status(0)
if not _ok:
    pytest.skip(f"no usable GPU: {_why}", allow_module_level=True)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0)[:1500], d.target[:1500], (d.data / 16.0)[1500:], d.target[1500:]


def test_short_training_run_matches_the_cpu(digits):
    Xtr, ytr, Xte, yte = digits
    results = {}
    for device in ("cpu", "cuda:0"):
        m = mlp_xp.MLP([64, 64, 10], device=device, seed=0)
        h = mlp_xp.fit(m, Xtr, ytr, epochs=10, batch_size=32, lr=0.05, X_test=Xte, y_test=yte)
        results[device] = h
    h_cpu, h_gpu = results["cpu"], results["cuda:0"]
    # Same seed: same initial weights and the same permutations; only float rounding differs.
    assert abs(h_cpu.last["test_accuracy"] - h_gpu.last["test_accuracy"]) <= 0.02
    np.testing.assert_allclose(h_gpu["train_loss"][:3], h_cpu["train_loss"][:3], rtol=1e-3)


def test_float64_run_matches_the_cpu_closely(digits):
    Xtr, ytr, _, _ = digits
    flats = []
    for device in ("cpu", "cuda:0"):
        m = mlp_xp.MLP([64, 32, 10], device=device, dtype="float64", seed=0)
        mlp_xp.fit(m, Xtr, ytr, epochs=2, batch_size=64, lr=0.05)
        flats.append(m.get_flat())
    np.testing.assert_allclose(flats[1], flats[0], rtol=1e-9, atol=1e-11)


def test_kernels_compile_once_per_process():
    ops = get_backend("cuda:0")
    m = mlp_xp.MLP([8, 4, 3], device=ops)
    X = np.random.default_rng(0).random((50, 8))
    mlp_xp.fit(m, X, np.arange(50) % 3, epochs=1)
    modules = dict(ops.kernels._modules)
    mlp_xp.fit(mlp_xp.MLP([8, 4, 3], device="cuda:0"), X, np.arange(50) % 3, epochs=1)
    assert get_backend("cuda:0") is ops and ops.kernels._modules == modules


def test_out_of_memory_names_the_size_and_the_fix():
    ops = get_backend("cuda:0")
    free, total = ops.dev.memory()
    with pytest.raises(mlp_xp.DeviceMemoryError, match="MiB.*smaller batch size"):
        ops.empty((int(total // 4) * 2,), np.float32)


def test_host_arrays_are_refused_by_the_step_ops():
    ops = get_backend("cuda:0")
    z = ops.zeros((4, 3), np.float32)
    with pytest.raises(mlp_xp.DataError, match="copy it to the device first"):
        ops.bias_act(z, np.zeros(3, np.float32), "relu", 0.01)
    with pytest.raises(mlp_xp.DataError, match="dtype float64 where float32"):
        ops.bias_act(z, ops.zeros((3,), np.float64), "relu", 0.01)


def test_graph_steps_with_cublas_and_with_the_kernel_train_like_the_plain_step(digits):
    import cupy

    from mlp_xp.backend.cupy_ops import CupyOps

    Xtr, ytr, _, _ = digits
    flats = {}
    for name, ops, graph in (
        ("plain", get_backend("cuda:0"), False),
        ("graph cublas", get_backend("cuda:0"), True),
        ("graph kernel", CupyOps(0, gemm="kernel"), True),
    ):
        m = mlp_xp.MLP([64, 32, 10], device=ops, dtype="float64", seed=0)
        mlp_xp.fit(m, Xtr, ytr, epochs=2, batch_size=64, lr=0.05, cuda_graph=graph)
        flats[name] = m.get_flat()
        if graph:
            assert ops.graph_gemm == ("kernel" if ops.gemm == "kernel" else "cublas"), ops.graph_gemm
    for name in ("graph cublas", "graph kernel"):
        np.testing.assert_allclose(flats[name], flats["plain"], rtol=1e-9, atol=1e-11, err_msg=name)
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null  # the backends left this thread's stream alone


def test_training_under_the_users_stream_and_in_a_worker_thread(digits):
    import threading

    import cupy

    Xtr, ytr, _, _ = digits
    ops = get_backend("cuda:0")

    def train():
        m = mlp_xp.MLP([64, 32, 10], device=ops, dtype="float64", seed=0)
        mlp_xp.fit(m, Xtr, ytr, epochs=1, batch_size=64, lr=0.05, cuda_graph=True)
        return m.get_flat()

    reference = train()
    with cupy.cuda.Stream(non_blocking=True):
        np.testing.assert_allclose(train(), reference, rtol=1e-9, atol=1e-11)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("flat", train()))
    t.start()
    t.join()
    np.testing.assert_allclose(out["flat"], reference, rtol=1e-9, atol=1e-11)


def test_the_probe_passes_and_a_cupy_array_input_is_read_after_its_upload(digits):
    import cupy

    from mlp_xp.backend import probe_cuda

    assert probe_cuda(0) == (True, cuda_status(0)[1])
    Xtr, ytr, _, _ = digits
    X = cupy.asarray(Xtr.astype(np.float32))  # queued on the legacy stream
    m = mlp_xp.MLP([64, 32, 10], device="cuda:0", seed=0)
    h = mlp_xp.fit(m, X, ytr, epochs=2, batch_size=64, lr=0.05)
    assert h.last["train_accuracy"] > 0.5
