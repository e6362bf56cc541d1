"""The step budget of ARCHITECTURE.md, held: a steady training step (mlp_xp.step) dispatches 6L + 1 backend ops
for L layers (7L + 1 for a step that updates layer by layer: the CPU's, for a large model), allocates nothing and
never syncs with the host; an epoch syncs once. Counted on every backend,
the CUDA one with the CPU harness standing in for the GPU, which also enforces CuPy's capture rules for the
graph-captured step."""

import tracemalloc

import numpy as np
import pytest

import mlp_xp
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.optim import FLUSH_EVERY, Optimizer
from mlp_xp.step import PER_LAYER_MIN_PARAMS, TrainStep


def _setup(
    ops,
    sizes,
    optimizer="momentum",
    batch=32,
    n=256,
    loss="cross_entropy",
    activation="relu",
    per_layer=None,
    record=True,
):
    rng = np.random.default_rng(0)
    model = mlp_xp.MLP(sizes, activation, loss, device=ops, seed=0)
    X = ops.asarray(rng.random((n, sizes[0]), dtype=np.float32))
    if loss == "cross_entropy":
        Y = ops.asarray(rng.integers(0, sizes[-1], n).astype(np.int32))
    else:
        Y = ops.asarray(rng.integers(0, 2, (n, sizes[-1])).astype(np.float32))
    opt = Optimizer(optimizer, ops, model.layout, model.dtype, l2=1e-4 if optimizer == "nesterov" else 0.0)
    step = TrainStep(model, batch, opt, per_layer=per_layer, record=record)
    perm = ops.permutation(n, 0, 1)
    acc = ops.zeros((2,), np.float64)
    slices = [perm[s : s + batch] for s in range(0, n, batch)]
    return step, X, Y, acc, slices


def _budget(per_layer: bool, L: int) -> tuple[int, int]:
    """(ops per step, update ops per step): gather, 2L forward, loss, 4L - 2 backward, and one update, or L + 1
    (each W_l, then the biases) for a step that updates layer by layer."""
    updates = L + 1 if per_layer else 1
    return 6 * L + updates, updates


@pytest.mark.parametrize("sizes", [[20, 10], [20, 16, 10], [784, 64, 32, 10], [30, 8, 8, 8, 8, 3]])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["update-once", "update-per-layer"])
def test_a_steady_step_dispatches_6L_plus_1_ops_allocates_nothing_and_never_syncs(ops, sizes, optimizer, per_layer):
    """Op by op: what the CPU's recorded step records (test_program.py), and every other backend's step."""
    step, X, Y, acc, slices = _setup(ops, sizes, optimizer, per_layer=per_layer, record=False)
    L = len(sizes) - 1
    step(X, Y, slices[0], acc, 0.01)
    ops.counts.reset()
    for idx in slices[1:]:
        step(X, Y, idx, acc, 0.01)
    per_step = ops.counts.ops / (len(slices) - 1)
    total, updates = _budget(per_layer, L)
    assert per_step == total
    assert ops.counts.syncs == 0 and ops.counts.allocations == 0
    assert ops.counts.by_op["gather_rows"] == ops.counts.by_op["loss_grad"] == len(slices) - 1
    update = "adam_update" if optimizer == "adam" else "sgd_update"
    assert ops.counts.by_op[update] == updates * (len(slices) - 1)


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
@pytest.mark.parametrize("per_layer", [False, True], ids=["update-once", "update-per-layer"])
@pytest.mark.parametrize("record", [True, False], ids=["recorded", "op-by-op"])
def test_a_steady_numpy_step_allocates_no_array_memory(optimizer, activation, loss, fast, per_layer, record):
    ops = NumpyOps(fast=fast)
    step, X, Y, acc, slices = _setup(
        ops, [784, 64, 32, 10], optimizer, loss=loss, activation=activation, per_layer=per_layer, record=record
    )
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
    replayed = record and fast  # (every loss has a compiled loop: recorded, one op a step)
    assert ops.counts.allocations == 0 and ops.counts.ops == 18 * (1 if replayed else _budget(per_layer, 3)[0])


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


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_an_update_in_parts_makes_the_numbers_of_one_update(ops, optimizer):
    """Every rule is elementwise: each W_l, then the biases, updated apart (in the backward pass's order, with the
    step counted once) gives what one update of the whole buffer gives, penalties and the subnormal flush
    included. Exactly where the update is a loop of its own; within rounding on the BLAS path, whose axpy kernel
    computes the last elements before each end of its input (a part's, or a thread's share) without FMA: an ulp
    of a gradient or velocity entry (up to about 10 here) times lr, per step."""
    layout = mlp_xp.model.Layout([12, 9, 7, 3])
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(layout.n_params).astype(np.float32)
    grads = rng.standard_normal((FLUSH_EVERY + 1, layout.n_params)).astype(np.float32)  # past one flush
    results = []
    for in_parts in (False, True):
        opt = Optimizer(optimizer, ops, layout, np.float32, l2=1e-2, l1=1e-3)
        p = ops.asarray(p0)
        parts = opt.parts(p, layout.update_parts())
        for grad in grads:
            ops.copy(opt.gradients().flat, ops.asarray(grad))
            if in_parts:
                opt.start_step()
                for part in [*parts[-2::-1], parts[-1]]:  # W_L ... W_1, then the biases
                    opt.update(part, 0.05)
            else:
                opt.step(p, 0.05)
        results.append(ops.to_host(p))
    exact = ops.name.startswith("cpu") and ops.blas is None or optimizer == "adam" or ops.kind == "cuda"
    if exact:
        np.testing.assert_array_equal(results[1], results[0])
    else:
        np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-6)


def test_the_step_updates_layer_by_layer_on_the_cpu_for_a_large_model_only(ops):
    """The default: per layer where the backend says so (the CPU with its BLAS) and the model has at least
    PER_LAYER_MIN_PARAMS parameters; once after the backward pass everywhere else."""
    for sizes in ([784, 512, 256, 10], [784, 64, 10]):
        model = mlp_xp.MLP(sizes, device=ops, seed=0)
        step = TrainStep(model, 8, Optimizer("momentum", ops, model.layout, model.dtype))
        large = model.layout.n_params >= PER_LAYER_MIN_PARAMS
        assert large == (sizes[1] == 512)
        on_cpu = ops.kind == "cpu" and ops.blas is not None
        assert (step.update_parts is not None) == (large and on_cpu) == (large and ops.updates_per_layer)


def test_the_cpu_step_updates_each_layer_after_its_last_read_and_trains_as_the_whole_update_does():
    """Per layer, W_l's update follows layer l's dW product (and its dh product, the last read of W_l) at once,
    the biases' after the backward pass; a run so made is the run updated at the end, within rounding."""
    ops = mlp_xp.get_backend("cpu")
    step, X, Y, acc, slices = _setup(ops, [20, 16, 12, 5], per_layer=True, record=False)  # (a recording: the same)
    seen = []
    real_matmul, real_update = type(ops).matmul, type(ops).sgd_update

    def matmul(self, a, b, out, **kw):
        seen.append(("matmul", next(i for i, W in enumerate(step.model.W) if b is W) if kw.get("trans_b") else None))
        return real_matmul(self, a, b, out, **kw)

    def sgd_update(self, params, *args, **kw):
        which = [i for i, W in enumerate(step.model.W) if np.shares_memory(params, W)]
        seen.append(("update", which[0] if which else "biases"))
        return real_update(self, params, *args, **kw)

    try:
        type(ops).matmul, type(ops).sgd_update = matmul, sgd_update
        step(X, Y, slices[0], acc, 0.01)
    finally:
        type(ops).matmul, type(ops).sgd_update = real_matmul, real_update
    updates = [w for kind, w in seen if kind == "update"]
    assert updates == [2, 1, 0, "biases"]
    for l in (2, 1):  # W_l's update comes after its dh product, the last op that reads W_l
        assert seen.index(("update", l)) > seen.index(("matmul", l))
    assert seen[-1] == ("update", "biases") and seen[-2] == ("update", 0)

    runs = []
    for per_layer in (True, False):
        ops = NumpyOps()
        step, X, Y, acc, slices = _setup(ops, [20, 16, 12, 5], per_layer=per_layer)
        for idx in slices * 3:
            step(X, Y, idx, acc, 0.05)
        runs.append((step.model.params.copy(), acc.copy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-6)  # the loss sums and the hits
