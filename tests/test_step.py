"""The step budget of ARCHITECTURE.md, held: a steady training step (mlp_xp.step) dispatches 6L + 1 backend ops
for L layers, allocates nothing and never syncs with the host; an epoch syncs once. Counted on every backend,
the CUDA one with the CPU harness standing in for the GPU, which also enforces CuPy's capture rules for the
graph-captured step."""

import tracemalloc

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.optim import Optimizer
from mlp_xp.step import TrainStep


def _setup(ops, sizes, optimizer="momentum", batch=32, n=256, loss="cross_entropy", activation="relu"):
    rng = np.random.default_rng(0)
    model = mlp_xp.MLP(sizes, activation, loss, device=ops, seed=0)
    X = ops.asarray(rng.random((n, sizes[0]), dtype=np.float32))
    if loss == "cross_entropy":
        Y = ops.asarray(rng.integers(0, sizes[-1], n).astype(np.int32))
    else:
        Y = ops.asarray(rng.integers(0, 2, (n, sizes[-1])).astype(np.float32))
    opt = Optimizer(optimizer, ops, model.layout, model.dtype, l2=1e-4 if optimizer == "nesterov" else 0.0)
    step = TrainStep(model, batch, opt)
    perm = ops.permutation(n, 0, 1)
    acc = ops.zeros((2,), np.float64)
    slices = [perm[s : s + batch] for s in range(0, n, batch)]
    return step, X, Y, acc, slices


@pytest.mark.parametrize("sizes", [[20, 10], [20, 16, 10], [784, 64, 32, 10], [30, 8, 8, 8, 8, 3]])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_a_steady_step_dispatches_6L_plus_1_ops_allocates_nothing_and_never_syncs(ops, sizes, optimizer):
    step, X, Y, acc, slices = _setup(ops, sizes, optimizer)
    L = len(sizes) - 1
    step(X, Y, slices[0], acc, 0.01)
    ops.counts.reset()
    for idx in slices[1:]:
        step(X, Y, idx, acc, 0.01)
    per_step = ops.counts.ops / (len(slices) - 1)
    assert per_step == 6 * L + 1  # gather, 2L forward, loss, 4L - 2 backward, one update
    assert ops.counts.syncs == 0 and ops.counts.allocations == 0
    assert ops.counts.by_op["gather_rows"] == ops.counts.by_op["loss_grad"] == len(slices) - 1
    update = "adam_update" if optimizer == "adam" else "sgd_update"
    assert ops.counts.by_op[update] == len(slices) - 1


def test_an_epoch_syncs_with_the_host_once(ops):
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12)), rng.integers(0, 3, 300)
    Xv, yv = rng.random((50, 12)), rng.integers(0, 3, 50)
    model = mlp_xp.MLP([12, 16, 3], device=ops, seed=0)
    epochs = []

    def count(record, m):
        epochs.append((ops.counts.syncs, ops.counts.allocations))

    ops.counts.reset()
    mlp_xp.fit(model, X, y, epochs=3, batch_size=32, X_val=Xv, y_val=yv, X_test=Xv, y_test=yv, callbacks=[count])
    syncs = [b[0] - a[0] for a, b in zip(epochs, epochs[1:])]
    allocs = [b[1] - a[1] for a, b in zip(epochs, epochs[1:])]
    assert syncs == [1, 1]  # train, validation and test sums come back in one copy
    assert allocs == [1, 1]  # the epoch's permutation; no batch is copied from the host


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("fast", [True, False], ids=["cpu", "cpu-numpy"])
def test_a_steady_numpy_step_allocates_no_array_memory(optimizer, activation, loss, fast):
    ops = NumpyOps(fast=fast)
    step, X, Y, acc, slices = _setup(ops, [784, 64, 32, 10], optimizer, loss=loss, activation=activation)
    for idx in slices[:2]:  # first steps: scratch buffers are made once
        step(X, Y, idx, acc, 0.01)
    ops.counts.reset()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for idx in slices[2:] * 3:
            step(X, Y, idx, acc, 0.01)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # NumPy reports its array buffers to tracemalloc under its own domain.
    numpy_domain = tracemalloc.DomainFilter(inclusive=True, domain=np.lib.tracemalloc_domain)
    grown = [
        d
        for d in after.filter_traces([numpy_domain]).compare_to(before.filter_traces([numpy_domain]), "traceback")
        if d.size_diff > 0
    ]
    assert not grown, "\n".join(str(d) for d in grown[:5])
    assert ops.counts.allocations == 0 and ops.counts.ops == 18 * (6 * 3 + 1)


def test_numpy_array_allocations_would_be_seen():
    """The allocation test above can fail: an array made inside the watched region is reported."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        keep = np.ones(1000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    f = [tracemalloc.DomainFilter(inclusive=True, domain=np.lib.tracemalloc_domain)]
    assert sum(d.size_diff for d in after.filter_traces(f).compare_to(before.filter_traces(f), "lineno")) >= 8000
    del keep


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_graph_captured_step_is_three_ops_and_trains_exactly_like_the_plain_one(host_kernels, optimizer):
    """The CUDA-graph path, with the harness enforcing CuPy's capture rules (no cuBLAS, no host copies, no
    allocation while capturing). Both runs use the gemm kernel, so they must agree bit for bit."""
    from .conftest import cuda_host_backend

    rng = np.random.default_rng(0)
    X, y = rng.random((200, 20)).astype(np.float32), rng.integers(0, 4, 200)
    flats, counts = [], []
    for graph in (False, True):
        ops = cuda_host_backend(host_kernels, gemm="kernel")
        m = mlp_xp.MLP([20, 16, 8, 4], device=ops, seed=0)
        calls = []
        h = mlp_xp.fit(
            m,
            X,
            y,
            epochs=2,
            batch_size=32,
            optimizer=optimizer,
            lr=0.05,
            cuda_graph=graph,
            callbacks=[lambda r, mod, ops=ops, calls=calls: calls.append(dict(ops.counts.by_op))],
        )
        flats.append(m.get_flat())
        counts.append(calls)
        assert np.isfinite(h.last["train_loss"])
    np.testing.assert_array_equal(flats[0], flats[1])
    steps = 200 // 32  # full batches per epoch; the 7th, partial, runs uncaptured
    second = {k: counts[1][1].get(k, 0) - counts[1][0].get(k, 0) for k in counts[1][1]}
    assert second["replay"] == steps
    update = "adam_update" if optimizer == "adam" else "sgd_update"
    assert second[update] == steps + 1
    assert second["gather_rows"] == 1  # only the partial batch gathers outside the graph


def test_capture_refuses_what_a_cuda_graph_cannot_hold(host_kernels):
    from .conftest import cuda_host_backend
    from .cuda_host.fake_cupy import ProjectRuleError

    ops = cuda_host_backend(host_kernels)
    a = ops.zeros((4, 4), np.float32)
    with pytest.raises(RuntimeError, match="D2H transfers are disallowed"):  # CuPy's own refusal
        ops.capture(lambda: ops.to_host(a))
    with pytest.raises(ProjectRuleError, match="allocation inside a captured step"):  # the project's rule
        ops.capture(lambda: ops.empty((3,), np.float32))
    with pytest.raises(ProjectRuleError, match="allocation inside a captured step"):  # asarray allocates first
        ops.capture(lambda: ops.asarray(np.zeros(3, np.float32)))
    b = ops.zeros((3,), np.float32)
    with pytest.raises(ProjectRuleError, match="copy from the host"):
        ops.capture(lambda: b.set(np.zeros(3, np.float32), stream=ops.dev.stream))
    fake = ops.dev.cp
    before = len(fake.log)
    graph = ops.capture(lambda: ops.matmul(a, a, a))  # inside a capture, GEMMs go to cuBLAS called directly
    work = [(w.kind, w.captured) for w in fake.log[before:]]
    # a first capture finds the GEMM's shape (the model refuses cuBLAS's lazy kernel loading inside it, as drivers
    # before 12.3 do), one run of that shape loads the kernel, then the capture that is kept records the GEMM
    assert work[-1] == ("cublas-direct", True) and ("cublas-direct", False) in work[:-1]
    assert ops.graph_gemm == "cublas" and len(graph.work) == 1
    ops.matmul(a, a, a)  # outside, CuPy's cuBLAS wrapper (here: the model's)
    assert fake.log[-1].kind == "cublas" and not fake.log[-1].captured


def test_cuda_graph_on_the_cpu_backend_is_refused():
    with pytest.raises(mlp_xp.ConfigError, match="cuda_graph needs the CUDA backend"):
        mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), np.zeros((4, 3)), [0, 1, 0, 1], cuda_graph=True)
