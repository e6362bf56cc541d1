"""What bias + activation costs the CPU step: called one by one from Python, and as the recorded step calls it.

``benchmarks/cpu_loops.py`` times each compiled op as a call from Python: the loop plus a fixed cost (the wrapper,
two addresses, the ctypes call: 3-5 us on a 2-core EPYC), which at narrow widths outweighs the loop. A training
step on the CPU is recorded once and replayed by one compiled call (mlp_xp/backend/program.py), which makes each
op's call without that cost. This times bias_act at 128 x W for each width and activation three ways, side by side,
medians of ``--rounds`` rounds of many calls each:

- ``in the step``: a program of 101 calls replayed, less a program of 1, over 100 (the loop and its dispatch in
  ``run_program``; the same z each call, not restored, so that nothing but the calls is timed);
- ``from Python``: one call of the compiled op (``CompiledLoops.bias_act``);
- ``NumPy path``: the op the backend runs without the compiled loops (``numpy_path.bias_act``).

    python benchmarks/cpu_op_cost.py [--rounds 5] [--widths 10,256,512] [--dtype float32|float64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from mlp_xp.backend import loop_timing, numpy_path
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.backend.program import N_STEP_VALUES

SLOPE = 0.01
#: Calls in the longer program: its replay less the one-call program's, over CALLS - 1, is one call in the step.
CALLS = 101


def _median_call(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _program(ops: NumpyOps, z: np.ndarray, b: np.ndarray, act: str, n: int):
    idx = np.zeros(1, np.int64)  # (a program takes one step pointer at least; these calls read none)
    with ops.recording([z, b, idx], [idx]) as (program, recorder):
        for _ in range(n):
            recorder.bias_act(z, b, act, SLOPE)
    return lambda: program.run([idx], np.zeros(N_STEP_VALUES))


def measure(ops: NumpyOps, cols: int, act: str, dtype, rounds: int, rng) -> dict[str, float]:
    """Seconds a call: in the step, from Python, on the NumPy path (medians over rounds)."""
    z = rng.standard_normal((loop_timing.BATCH, cols)).astype(dtype)
    b = (rng.standard_normal(cols) * 0.1).astype(dtype)
    one, many = _program(ops, z, b, act, 1), _program(ops, z, b, act, CALLS)
    sides = {
        "one": (one, 2000),
        "many": (many, 200),
        "python": (lambda: ops.loops.bias_act(z, b, act, SLOPE), 2000),
        "numpy": (lambda: numpy_path.bias_act(z, b, act, SLOPE), 2000),
    }
    per_round: dict[str, list[float]] = {side: [] for side in sides}
    with np.errstate(all="ignore"):
        for _ in range(rounds):
            for side, (fn, calls) in sides.items():
                per_round[side].append(_median_call(fn, calls))
    med = {side: statistics.median(v) for side, v in per_round.items()}
    return {"step": (med["many"] - med["one"]) / (CALLS - 1), "python": med["python"], "numpy": med["numpy"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--widths", default="10,256,512", help="layer widths W, comma separated (128 x W)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args(argv)
    try:
        widths = loop_timing.parse_widths(args.widths)
    except ValueError as e:
        p.error(f"--widths {e}")
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: give a positive number of rounds")
    ops = NumpyOps()
    if not ops.records_steps:
        print(f"{ops.name} cannot record a step (it needs NumPy's BLAS and the compiled loops): nothing to time")
        return 1
    print(f"machine: {loop_timing.describe(loop_timing.machine())}")
    print(f"{args.dtype}, medians of {args.rounds} rounds; us a call\n")
    print("| bias_act | in the step | from Python | NumPy path | in the step / NumPy | from Python / NumPy |")
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for cols in widths:
        for act in loop_timing.FORWARD_ACTIVATIONS:
            m = measure(ops, cols, act, np.dtype(args.dtype), args.rounds, rng)
            print(
                f"| {act} {loop_timing.BATCH}x{cols} | {m['step'] * 1e6:.2f} | {m['python'] * 1e6:.2f} | "
                f"{m['numpy'] * 1e6:.2f} | {m['step'] / m['numpy']:.2f}x | {m['python'] / m['numpy']:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
