"""benchmarks/cpu_step_parts.py's parts that are not timings: the step it replays is cut into the parts it names,
each instruction in one part, the variants leave out what they say, the blocks leave the model as they found it,
and bad arguments are refused (what the numbers are is measured, not tested)."""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp.backend.numpy_ops import NumpyOps

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    if not NumpyOps().records_steps:
        pytest.skip("the cpu backend cannot record a step here")
    return load_benchmark("cpu_step_parts")


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return rng.random((64, 20), dtype=np.float32), rng.integers(0, 3, 64).astype(np.int32)


def test_the_step_is_cut_into_its_parts(bench, data):
    # 20-16-3 at batch 8, updated once after the backward pass (a model that small does not update per layer):
    # the gather of X and of y; 2 forward products, 2 dW and 1 dh; a bias + activation and a bias gradient per
    # layer; one loss; one activation backward (below the top layer); one axpy for the whole parameter buffer
    ops, _, program, _ = bench.recorded_step(*data, [16], 8)
    tables, counts = bench.variants(ops, program.table)
    assert counts == {
        "gather": 2,
        "products": 5,
        "bias + activation": 2,
        "loss": 1,
        "activation backward": 1,
        "bias gradient": 2,
        "update": 1,
    }
    whole = tables["whole step"]
    assert len(whole) == sum(counts.values()) == 14
    for part, n in counts.items():
        if part != "products":
            assert len(tables[f"without {part}"]) == len(whole) - n
    assert len(tables["products alone"]) == 5
    gemm = ops.loops.op_code("gemm_f32_i64"), ops.loops.op_code("gemm_f32_i32")
    assert set(tables["products alone"]["op"]) <= set(gemm)
    assert ops.loops.op_code("gather_rows") not in set(tables["without gather"]["op"])


def test_the_blocks_leave_the_model_as_they_found_it(bench, data, monkeypatch):
    seen = {}
    original = bench.recorded_step

    def spy(*args, **kwargs):
        found = original(*args, **kwargs)
        seen["step"], seen["params"] = found[1], found[1].model.params.copy()
        seen["velocity"] = found[1].optimizer.velocity.copy()
        return found

    monkeypatch.setattr(bench, "recorded_step", spy)
    result = bench.measure(*data, [16], 8, rounds=2, steps=3)
    step = seen["step"]
    np.testing.assert_array_equal(step.model.params, seen["params"])
    np.testing.assert_array_equal(step.optimizer.velocity, seen["velocity"])
    assert not np.array_equal(seen["velocity"], 0)  # (the two recording steps moved it: the check can fail)
    # each variant beside the whole step once a round
    assert {n: len(v) for n, v in result["pairs"].items()} == {n: 2 for n in result["times"] if n != "whole step"}
    assert len(result["times"]["whole step"]) == 2 * len(result["pairs"])
    report = bench.report(result)
    for part in ("gather", "bias + activation", "loss", "activation backward", "bias gradient", "update"):
        assert f"| {part} | " in report


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--rounds", "0"], "give a positive whole number"),
        (["--steps", "x"], "not 'x'"),
        (["--data", "/nonexistent/folder"], "--data: /nonexistent/folder does not exist"),
    ],
)
def test_bad_arguments_are_refused(bench, argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
