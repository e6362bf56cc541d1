"""The CPU's recorded step (mlp_xp/backend/program.py): a step (a full batch's, a last partial one's) recorded once
and replayed by one compiled call computes what the op-by-op step computes, bit for bit, for every rule,
activation, dtype and option it takes; what it cannot take goes op by op; a program never points outside the
buffers it keeps."""

import numpy as np
import pytest
import scipy.sparse

import mlp_xp
from mlp_xp.backend import numpy_path
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.backend.program import LR, NotRecordable, Program, StepScalar
from mlp_xp.optim import FLUSH_EVERY, Optimizer
from mlp_xp.step import MAX_PROGRAMS, TrainStep

pytestmark = pytest.mark.skipif(not NumpyOps().records_steps, reason="needs NumPy's BLAS and the compiled loops")

SIZES = [30, 24, 16, 5]


def _data(dtype=np.float32, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], n).astype(np.int32)


def _run(
    record,
    *,
    optimizer="momentum",
    per_layer=False,
    dtype="float32",
    activation="relu",
    steps=2 * FLUSH_EVERY + 3,
    l2=0.0,
    l1=0.0,
    smoothing=0.0,
    class_weight=None,
    loss="cross_entropy",
    X=None,
    Y=None,
    batch=32,
    ops_class=NumpyOps,
    weights=None,
    alpha=0.0,
):
    ops = ops_class()
    model = mlp_xp.MLP(SIZES, activation, loss, device=ops, seed=3, dtype=dtype)
    opt = Optimizer(optimizer, ops, model.layout, model.dtype, momentum=0.9, l2=l2, l1=l1)
    cw = None if class_weight is None else np.asarray(class_weight, model.dtype)
    step = TrainStep(
        model,
        batch,
        opt,
        per_layer=per_layer,
        record=record,
        smoothing=smoothing,
        class_weight=cw,
        weighted=weights is not None,
    )
    if X is None:
        X, Y = _data(model.dtype)
    if weights is not None:
        weights = weights.astype(model.dtype)
    acc = np.zeros(2)
    n = X.shape[0]
    tail = step.ws.rows(n % batch) if n % batch else None
    perms = [ops.permutation(n, 0, e) for e in range(3)]
    k = 0
    for perm in perms:
        for s in range(0, n, batch):
            if k == steps:
                break
            idx = perm[s : s + batch]
            ws, lr = tail if len(idx) < batch else None, 0.1 / (1 + 0.1 * k)  # a decaying lr
            if weights is None:
                step(X, Y, idx, acc, lr, ws)
            else:  # the trainer's: the batch's sum of weights divides its loss, and scikit-learn's alpha
                divisor = float(weights[idx].astype(np.float64).sum())
                if alpha:
                    opt.l2 = alpha / divisor
                step(X, Y, idx, acc, lr, ws, W=weights, divisor=divisor)
            k += 1
    state = [a.copy() for a in (model.params, opt.velocity, opt.m, opt.v) if a is not None]
    return state, acc.copy(), step, ops


def _same(a, b):
    for x, y in zip(a[0], b[0], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["update-once", "update-per-layer"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_replayed_step_makes_the_numbers_of_the_op_by_op_step(optimizer, per_layer, dtype):
    """Past two subnormal flushes, with a last partial batch (its own program) and a learning rate that changes
    every step, L2 on: parameters, the optimizer's state and the loss sums are bit for bit the op-by-op run's."""
    runs = [_run(record, optimizer=optimizer, per_layer=per_layer, dtype=dtype, l2=1e-3) for record in (True, False)]
    _same(runs[0], runs[1])
    step, ops = runs[0][2], runs[0][3]
    # one pair per workspace (12 full batches of 400 rows, then 16 rows): without and with the subnormal flush,
    # which differ where there is a velocity to flush
    pairs = [p for p, _ in step._programs.values()]
    assert len(pairs) == 2 and all(p is not None for pair in pairs for p in pair)
    velocity = optimizer in ("momentum", "nesterov")
    assert all((len(pair[1]) > len(pair[0])) == velocity for pair in pairs)
    # every step but the first of each workspace (which runs op by op: a step run once is cheaper so)
    assert ops.counts.by_op["run_program"] == 2 * FLUSH_EVERY + 3 - 2
    assert runs[1][3].counts.by_op.get("run_program", 0) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"activation": ["tanh", "sigmoid"]},
        {"activation": ["leaky_relu", "identity"]},
        {"smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 1.0, 3.0]},
        {"optimizer": "adam", "l2": 1e-2, "activation": "tanh"},
        {"l1": 1e-3, "l2": 1e-3},  # the SGD family's L1: a compiled loop (np.sign before)
        {"optimizer": "nesterov", "l1": 1e-3, "per_layer": True},
    ],
    ids=["tanh-sigmoid", "leaky-identity", "smoothing-class-weight", "adam-l2-tanh", "l1-l2", "nesterov-l1-per-layer"],
)
def test_every_activation_and_loss_option_replays_exactly(options):
    runs = [_run(record, **options) for record in (True, False)]
    _same(runs[0], runs[1])
    assert runs[0][3].counts.by_op["run_program"] > 0


class _LossOnTheNumpyPath(NumpyOps):
    """The backend as it was before binary cross-entropy had a compiled loop: that loss on the NumPy path."""

    def loss_grad(self, z, y, acc, loss, *, smoothing=0.0, class_weight=None, **rows) -> None:
        if loss != "binary_cross_entropy":
            return super().loss_grad(z, y, acc, loss, smoothing=smoothing, class_weight=class_weight, **rows)
        self._numpy_path("sigmoid_bce").sigmoid_bce(z, y, acc, scratch=self.scratch, **rows)


def test_what_cannot_be_recorded_goes_op_by_op():
    """An op on the NumPy path (here a loss made to take it) cannot be recorded: the step stays op by op, with
    the numbers of a step that never tried."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, SIZES[0])).astype(np.float32)
    Y = rng.integers(0, 2, (400, SIZES[-1])).astype(np.float32)
    options = {"loss": "binary_cross_entropy", "X": X, "Y": Y, "ops_class": _LossOnTheNumpyPath}
    state, acc, step, ops = _run(True, steps=10, **options)
    assert [p for p, _ in step._programs.values()] == [(None, None)]
    assert "run_program" not in ops.counts.by_op
    assert ops.counts.by_op["gather_rows"] >= 10  # each step dispatched its ops (the failed recording ran none)
    _same((state, acc), _run(False, steps=10, **options)[:2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_a_regression_or_multilabel_step_replays_exactly(dtype, optimizer, loss):
    """MSE and binary cross-entropy have compiled loops, so their steps are recorded too: the same numbers as op
    by op."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, SIZES[0])).astype(dtype)
    Y = rng.standard_normal((400, SIZES[-1])) if loss == "mse" else rng.integers(0, 2, (400, SIZES[-1]))
    Y = Y.astype(dtype)
    runs = [_run(record, loss=loss, X=X, Y=Y, dtype=dtype, optimizer=optimizer, l2=1e-3) for record in (True, False)]
    _same(runs[0], runs[1])
    assert runs[0][3].counts.by_op["run_program"] == 2 * FLUSH_EVERY + 3 - 2
    assert runs[0][1][1] > 0  # the squared errors, or the rows right, were summed


def test_sparse_data_goes_op_by_op():
    X, Y = _data()
    ops = NumpyOps()
    model = mlp_xp.MLP(SIZES, device=ops, seed=0)
    step = TrainStep(model, 32, Optimizer("momentum", ops, model.layout, model.dtype))
    acc, idx = np.zeros(2), ops.permutation(400, 0, 1)[:32]
    for _ in range(3):
        step(scipy.sparse.csr_matrix(X), Y, idx, acc, 0.1)
    assert not step._programs and "run_program" not in ops.counts.by_op
    step(X, Y, idx, acc, 0.1)
    step(X, Y, idx, acc, 0.1)  # (the first goes op by op, the second records)
    assert ops.counts.by_op["run_program"] == 1


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("alpha", [0.0, 1e-2], ids=["no-alpha", "alpha"])
def test_a_step_with_row_weights_replays_exactly(optimizer, dtype, alpha):
    """Row weights (some 0) with each batch's sum of them as the loss's divisor, and scikit-learn's alpha over
    that sum as the L2 penalty: both change every step, and are the replay's values, not the recording's; the
    numbers are the op-by-op run's, and every step but each workspace's first replays."""
    w = np.random.default_rng(5).random(400) * 2
    w[::7] = 0.0
    runs = [_run(record, optimizer=optimizer, dtype=dtype, weights=w, alpha=alpha) for record in (True, False)]
    _same(runs[0], runs[1])
    assert runs[0][3].counts.by_op["run_program"] == 2 * FLUSH_EVERY + 3 - 2
    assert len(runs[0][2]._programs) == 2  # the full batch's and the last one's, whatever the divisor and l2


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "mse", "per_layer": True},
        {"loss": "binary_cross_entropy", "l1": 1e-3},
        {"smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 1.0, 3.0], "activation": "tanh"},
    ],
    ids=["mse-per-layer", "bce-l1", "smoothing-class-weight"],
)
def test_every_loss_with_row_weights_replays_exactly(options):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, SIZES[0])).astype(np.float32)
    loss = options.get("loss", "cross_entropy")
    if loss == "mse":
        Y = rng.standard_normal((400, SIZES[-1])).astype(np.float32)
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (400, SIZES[-1])).astype(np.float32)
    else:
        Y = rng.integers(0, SIZES[-1], 400).astype(np.int32)
    w = rng.random(400)
    runs = [_run(record, X=X, Y=Y, weights=w, alpha=1e-3, **options) for record in (True, False)]
    _same(runs[0], runs[1])
    assert runs[0][3].counts.by_op["run_program"] == 2 * FLUSH_EVERY + 3 - 2


def test_weights_of_another_dtype_go_op_by_op_with_the_same_numbers():
    """float64 weights for a float32 model: the gather cannot take them (the NumPy path's), so no step records."""
    X, Y = _data()
    w = np.linspace(0.5, 1.5, 400)
    ops = NumpyOps()
    model = mlp_xp.MLP(SIZES, device=ops, seed=0)
    step = TrainStep(model, 32, Optimizer("momentum", ops, model.layout, model.dtype), weighted=True)
    acc = np.zeros(2)
    for k in range(3):
        idx = ops.permutation(400, 0, k)[:32]
        step(X, Y, idx, acc, 0.1, W=w, divisor=float(w[idx].sum()))
    assert "run_program" not in ops.counts.by_op


def test_a_changed_setting_or_buffer_is_recorded_anew():
    """The recorded calls hold the settings as numbers: a step after l2, momentum or the leaky slope changes, or on
    another data set, replays a program of its own, and the run matches the op-by-op one that makes the same
    changes."""
    X, Y = _data()
    X2, Y2 = _data(seed=1)
    results = []
    for record in (True, False):
        ops = NumpyOps()
        model = mlp_xp.MLP(SIZES, "leaky_relu", device=ops, seed=0)
        opt = Optimizer("momentum", ops, model.layout, model.dtype)
        step = TrainStep(model, 32, opt, record=record)
        acc = np.zeros(2)
        for k in range(24):
            opt.l2 = 1e-2 * (k // 8)
            opt.momentum = 0.5 if k >= 16 else 0.9
            model.leaky_slope = 0.2 if k >= 16 else 0.01
            data = (X, Y) if k % 3 else (X2, Y2)
            step(*data, ops.permutation(400, 0, k)[:32], acc, 0.1)
        results.append(((model.params.copy(), opt.velocity.copy()), acc.copy(), step))
    _same(results[0], results[1])
    assert len(results[0][2]._programs) == 3 * 2  # three settings, two data sets


def test_a_step_with_new_arrays_every_call_keeps_a_bounded_number_of_programs_then_stops_recording():
    ops = NumpyOps()
    model = mlp_xp.MLP(SIZES, device=ops, seed=0)
    step = TrainStep(model, 32, Optimizer("sgd", ops, model.layout, model.dtype))
    acc = np.zeros(2)
    for k in range(MAX_PROGRAMS):
        X, Y = _data(seed=k)
        for _ in range(3):
            step(X, Y, ops.permutation(400, 0, k)[:32], acc, 0.1)
        assert len(step._programs) == k + 1 and step.record
    for k in range(2 * MAX_PROGRAMS):  # new data, twice each: a recording that would not pay back
        X, Y = _data(seed=100 + k)
        for _ in range(2):
            step(X, Y, ops.permutation(400, 0, k)[:32], acc, 0.1)
    assert len(step._programs) <= MAX_PROGRAMS and not step.record


def test_keys_that_never_come_back_are_not_kept():
    """New arrays every step (acc here): no step is recorded, and the keys seen once are bounded."""
    ops = NumpyOps()
    model = mlp_xp.MLP(SIZES, device=ops, seed=0)
    step = TrainStep(model, 32, Optimizer("sgd", ops, model.layout, model.dtype))
    X, Y = _data()
    keep = []
    for k in range(10 * MAX_PROGRAMS):
        keep.append(np.zeros(2))  # (kept alive: each id new)
        step(X, Y, ops.permutation(400, 0, k)[:32], keep[-1], 0.1)
        assert len(step._seen) <= 4 * MAX_PROGRAMS
    assert not step._programs and "run_program" not in ops.counts.by_op
    assert step.record  # (forgetting keys seen once is not giving up: nothing was recorded in vain)
    step(X, Y, ops.permutation(400, 0, 1)[:32], keep[-1], 0.1)
    assert ops.counts.by_op["run_program"] == 1


def test_indices_of_another_dtype_or_length_go_op_by_op_with_the_same_numbers():
    X, Y = _data()
    runs = []
    for as_int32 in (False, True):
        ops = NumpyOps()
        model = mlp_xp.MLP(SIZES, device=ops, seed=0)
        step = TrainStep(model, 32, Optimizer("momentum", ops, model.layout, model.dtype))
        acc = np.zeros(2)
        for k in range(4):
            idx = ops.permutation(400, 0, k)[:32]
            step(X, Y, idx.astype(np.int32) if as_int32 else idx, acc, 0.1)
        runs.append(((model.params.copy(),), acc, ops))
    _same(runs[0], runs[1])
    assert runs[0][2].counts.by_op["run_program"] == 3 and "run_program" not in runs[1][2].counts.by_op


def test_recording_runs_nothing_and_refuses_pointers_outside_its_buffers():
    ops = NumpyOps()
    a, b = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    out = np.full((4, 2), 7.0, np.float32)
    with ops.recording([a, b, out], []) as (program, recorder):
        recorder.matmul(a, b, out)
    assert len(program) == 1 and (out == 7.0).all()  # recorded, not run
    assert recorder.counts.ops == 1 and ops.counts.ops == 0  # the backend's counts say what ran
    ops.run_program(program, (), (0.0, 1.0, 1.0, 0.0, 1.0))
    np.testing.assert_array_equal(out, np.full((4, 2), 3.0))
    stranger = np.zeros(2, np.float32)
    with pytest.raises(NotRecordable, match="outside the step's buffers"):
        with ops.recording([a, b, out], []) as (_, recorder):
            recorder.bias_act(out, stranger, "relu", 0.0)
    with pytest.raises(NotRecordable, match="NumPy path"):
        with ops.recording([a, b, out], []) as (_, recorder):
            recorder.bias_act(out, np.zeros(3, np.float32), "relu", 0.0)  # a shape the loop does not take
    blas = ops.blas
    with ops.recording([a, b, out], []) as (_, recorder):
        ops.matmul(a, b, out)  # the backend itself, meanwhile (another thread's step): it runs
        assert (out == 3.0).all() and recorder.blas is not blas
    assert not ops._recording and ops.blas is blas


def test_a_step_scalar_scales_its_word_at_every_replay():
    """The learning rate of a recorded axpy comes from each run: W <- W - lr V with lr 0.5, then 0.25."""
    ops = NumpyOps()
    w, v = np.zeros(5, np.float32), np.ones(5, np.float32)
    with ops.recording([w, v], []) as (program, recorder):
        recorder.blas.add_scaled(w, -LR, v)
    for lr in (0.5, 0.25):
        ops.run_program(program, (), (lr, 1.0, 1.0, 0.0, 1.0))
    np.testing.assert_array_equal(w, np.full(5, -0.75, np.float32))


def test_a_program_with_an_unknown_op_code_runs_none_of_its_instructions():
    ops = NumpyOps()
    w, v = np.zeros(5, np.float32), np.ones(5, np.float32)
    with ops.recording([w, v], []) as (program, recorder):
        recorder.blas.add_scaled(w, -LR, v)
        recorder.blas.add_scaled(w, -LR, v)
    program.table["op"][1] = 999
    with pytest.raises(RuntimeError, match="instruction 1 of a step program is not one this build runs"):
        ops.run_program(program, (), (1.0, 1.0, 1.0, 0.0, 1.0))
    np.testing.assert_array_equal(w, np.zeros(5, np.float32))  # checked before any ran: no half step


def test_program_add_checks_its_arguments():
    ops = NumpyOps()
    buf = np.zeros(8, np.float32)
    program = Program(ops.loops, [buf], [])
    fn = ops.loops.fn[("flush_subnormals", np.dtype(np.float32))]
    rec = program.recorder("flush_subnormals_f32", fn)
    rec(buf.ctypes.data + 4, 7)  # inside buf
    with pytest.raises(NotRecordable, match="outside"):
        rec(buf.ctypes.data + buf.nbytes + 64, 1)  # past its end
    with pytest.raises(ValueError):
        rec(buf.ctypes.data)  # a missing argument
    assert program.table.size == 0 and len(program) == 1
    with pytest.raises(NotRecordable, match="no step value 5"):
        program.recorder("bias_act_f32", ops.loops.fn[("bias_act", np.dtype(np.float32))])(
            buf.ctypes.data, buf.ctypes.data, 1, 8, 0, StepScalar(5)
        )
    assert ops.loops.op_code("no_such_op") == -1
    with pytest.raises(NotRecordable, match="not an op run_program knows"):
        program.recorder("no_such_op", fn)(buf.ctypes.data, 1)


def test_every_compiled_loop_and_blas_routine_has_a_program_op():
    """A loop or routine the backend calls but run_program does not know would leave its steps op by op."""
    ops = NumpyOps()
    names = [f.__name__ for f in ops.loops.fn.values()]  # (the exports' names)
    names += [f"{r}_{t}_i{ops.blas.index_bits}" for r in ("gemm", "axpy", "axpby") for t in ("f32", "f64")]
    assert all(ops.loops.op_code(n) >= 0 for n in names), [n for n in names if ops.loops.op_code(n) < 0]
    assert len(set(map(ops.loops.op_code, names))) == len(names)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_the_compiled_gather_is_numpy_take_with_clipping(dtype):
    """gather_rows' compiled loop copies rows byte for byte, and clamps an index outside [0, n) into it as the
    NumPy path's np.take(mode="clip") does (the op's contract asks for rows in range)."""
    ops = NumpyOps()
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((50, 7)) * 100).astype(dtype)
    Y = rng.integers(0, 9, 50).astype(np.int32)
    W = rng.random(50).astype(dtype)
    idx = np.array([3, 0, 49, -4, 60, 7, 7], np.int64)
    got = [np.empty((7, 7), dtype), np.empty(7, np.int32), np.empty(7, dtype)]
    want = [np.empty_like(g) for g in got]
    ops.gather_rows(X, Y, idx, got[0], got[1], W, got[2])
    numpy_path.gather_rows(X, Y, idx, want[0], want[1], W, want[2])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert ops.counts.by_op["gather_rows"] == 1


def test_fit_on_the_cpu_replays_its_steps_and_matches_the_op_by_op_run():
    """Through the trainer: an epoch's full batches and its last partial one replay, and the history and the
    weights are the op-by-op run's."""
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12)).astype(np.float32), rng.integers(0, 3, 300)
    runs = []
    for record in (True, False):
        ops = NumpyOps()
        ops.records_steps = record
        model = mlp_xp.MLP([12, 16, 3], device=ops, seed=0)
        h = mlp_xp.fit(model, X, y, epochs=3, batch_size=32, optimizer="nesterov", lr=0.1, decay=0.1, l2=1e-3)
        runs.append((model.get_flat(), [r["train_loss"] for r in h.records], ops.counts.by_op.get("run_program", 0)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == 3 * 10 - 2 and runs[1][2] == 0  # (the first full and the first partial batch: op by op)


def test_a_weighted_fit_with_alpha_replays_its_steps_and_matches_the_op_by_op_run():
    """fit with sample weights and scikit-learn's alpha (the drop-in's fit(X, y, sample_weight)): the steps replay,
    with each batch's sum of weights and alpha over it as the step's values, and the run is the op-by-op one."""
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 12)).astype(np.float32), rng.integers(0, 3, 300)
    w = rng.random(300) + 0.5
    runs = []
    for record in (True, False):
        ops = NumpyOps()
        ops.records_steps = record
        model = mlp_xp.MLP([12, 16, 3], device=ops, seed=0)
        h = mlp_xp.fit(
            model, X, y, epochs=3, batch_size=32, optimizer="adam", lr=1e-2, l2_per_sample=1e-2, sample_weight=w
        )
        runs.append((model.get_flat(), [r["train_loss"] for r in h.records], ops.counts.by_op.get("run_program", 0)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == 3 * 10 - 2 and runs[1][2] == 0


def test_the_doctor_checks_the_replay_on_this_machine(capsys, monkeypatch):
    from mlp_xp import doctor

    assert doctor._check_replay()
    out = capsys.readouterr().out
    assert "recorded step: 18 of 20 steps replayed (the first of each batch size runs op by op)" in out
    assert "the same numbers as op by op, bit for bit (float32, float64)" in out
    monkeypatch.setattr(Program, "run", lambda self, pointers, scalars: None)  # a replay that computes nothing
    assert not doctor._check_replay()
    assert "recorded step FAILED: float32: replays differ from the op-by-op steps" in capsys.readouterr().err


def test_threads_recording_on_the_shared_cpu_backend_leave_each_other_alone():
    """get_backend("cpu") is one backend per process: two threads, each fitting its own model, record and replay
    on it at once (a thread switch every microsecond), and every fit gives the single-threaded run's weights."""
    import sys
    import threading

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 10)), rng.integers(0, 3, 300)

    def one():
        model = mlp_xp.MLP([10, 32, 3], device="cpu", seed=0)
        mlp_xp.fit(model, X, y, epochs=2, batch_size=32, validation_fraction=0.0, verbose=0)
        return model.get_flat()

    ref, results, errors = one(), [], []

    def worker():
        for _ in range(15):
            try:
                results.append(one())
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(f"{type(e).__name__}: {e}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert len(results) == 30 and all(np.array_equal(r, ref) for r in results)
