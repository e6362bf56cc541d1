"""benchmarks/cpu_op_cost.py's parts that are not timings: the programs it replays make the calls it says, and
bad arguments are refused (what the numbers are is measured, not tested)."""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp.backend.numpy_ops import NumpyOps

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("cpu_op_cost")


@pytest.fixture(scope="module")
def ops():
    ops = NumpyOps()
    if not ops.records_steps:
        pytest.skip(f"{ops.name} cannot record a step")
    return ops


@pytest.mark.parametrize("act", ["identity", "leaky_relu", "tanh"])
def test_a_replayed_program_of_n_calls_is_n_calls(bench, ops, act):
    rng = np.random.default_rng(3)
    z0 = rng.standard_normal((128, 10)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    z, expect = z0.copy(), z0.copy()
    replay = bench._program(ops, z, b, act, 3)
    np.testing.assert_array_equal(z, z0)  # recording runs nothing
    replay()
    for _ in range(3):
        ops.loops.bias_act(expect, b, act, bench.SLOPE)
    np.testing.assert_array_equal(z, expect)
    assert not np.array_equal(z, z0)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--widths", "x"], "give positive integers, comma separated"),
        (["--widths", "0,10"], "give positive integers, comma separated"),
        (["--rounds", "0"], "give a positive number of rounds"),
    ],
)
def test_bad_arguments_are_refused(bench, argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and says in capsys.readouterr().err
