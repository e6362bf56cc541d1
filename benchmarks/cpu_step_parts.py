"""Where the recorded CPU step's time goes beyond its products: each part's cost measured inside the step.

``cpu_epoch.py`` compares the epoch with its GEMM-only floor; ``perf`` says where the samples fall, but a part's
cost in a step is more than its own samples (a pass over the parameters evicts what the next product reads). This
records the epoch benchmark's step once (784-512-256-10 ReLU, softmax cross-entropy, SGD with momentum 0.9, batch
128, float32; Debian's Fashion-MNIST by default) and replays its instructions (mlp_xp/backend/program.py) without
each part in turn and as the products alone, each such block of ``--steps`` steps beside a block of the whole step
on the same batches of a permutation (which of the two first alternating; the variants' order rotating from round
to round). A part's cost is the median over the rounds of the pair's difference (whole step - step without it);
the products alone are the floor of ``cpu_epoch.py`` inside the same program. Each block starts from the same
weights and velocity (copied back, untimed), so that a step without its loss or its update drifts nowhere, and
one untimed block of each variant comes first. The step replayed is the one without the subnormal flush (15 steps
of 16).

    python benchmarks/cpu_step_parts.py [--rounds 30] [--steps 50] [--data fashion-mnist|synthetic|mnist|DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import mlp_xp
from mlp_xp.backend import loop_timing
from mlp_xp.backend import program as step_values
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.backend.pointers import address
from mlp_xp.backend.program import N_STEP_VALUES
from mlp_xp.optim import Optimizer
from mlp_xp.step import TrainStep

HIDDEN, BATCH, LR, MOMENTUM = [512, 256], 128, 0.01, 0.9
#: The step's parts, by the ops of their recorded calls (each op with its dtype suffixes, and the BLAS routines with
#: their index widths). The products are not left out alone: without them nothing of the step is left to time.
PARTS = {
    "gather": ["gather_rows"],
    "products": ["gemm"],
    "bias + activation": ["bias_act"],
    "loss": ["softmax_xent", "sigmoid_bce", "squared_error"],
    "activation backward": ["act_backward"],
    "bias gradient": ["bias_grad"],
    "update": ["axpy", "axpby", "flush_subnormals", "add_l1", "adam_update"],
}
BLAS_OPS = ("gemm", "axpy", "axpby")


def op_names(ops: NumpyOps) -> dict[int, str]:
    """run_program's op code -> the part of the step it belongs to."""
    names = {}
    for part, prefixes in PARTS.items():
        for prefix in prefixes:
            if prefix == "gather_rows":  # (one op for every dtype: it copies bytes)
                suffixes = [""]
            elif prefix in BLAS_OPS:
                suffixes = [f"_{dt}_{i}" for dt in ("f32", "f64") for i in ("i64", "i32")]
            else:
                suffixes = ["_f32", "_f64"]
            for suffix in suffixes:
                code = ops.loops.op_code(prefix + suffix)
                if code >= 0:
                    names[code] = part
    return names


def recorded_step(X, y, hidden, batch, seed=0):
    """The ops, the step, its program (without the flush) and the permutation the blocks walk through."""
    ops = NumpyOps()
    if not ops.records_steps:
        raise SystemExit(f"{ops.name} cannot record a step here (no compiled loops or no direct BLAS)")
    model = mlp_xp.MLP([X.shape[1], *hidden, int(y.max()) + 1], "relu", device=ops, seed=seed)
    opt = Optimizer("momentum", ops, model.layout, model.dtype, momentum=MOMENTUM)
    step = TrainStep(model, batch, opt)
    acc = np.zeros(2, np.float64)
    order = np.random.default_rng(seed).permutation(len(X)).astype(np.int64)
    first = order[:batch].copy()
    for _ in range(2):  # the second step with these arrays records
        step(X, y, first, acc, LR)
    programs = step._programs_for(X, y, first, acc, step.ws, None, None)
    if programs is None:
        raise SystemExit("the step was not recorded")
    return ops, step, programs[0], order


def variants(ops: NumpyOps, table: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The whole step's instructions, the step without each part (that it has), and the products alone; and how
    many instructions each part has."""
    names = op_names(ops)
    part_of = np.array([names.get(int(op), "other") for op in table["op"]])
    counts = {p: int((part_of == p).sum()) for p in [*PARTS, "other"] if (part_of == p).any()}
    out = {"whole step": np.ascontiguousarray(table)}
    for p in counts:
        if p not in ("products", "other"):
            out[f"without {p}"] = np.ascontiguousarray(table[part_of != p])
    out["products alone"] = np.ascontiguousarray(table[part_of == "products"])
    return out, counts


def measure(X, y, hidden=HIDDEN, batch=BATCH, *, rounds=30, steps=50) -> dict:
    """Microseconds a step of each variant, one list entry per round, and the parts' instruction counts."""
    ops, step, program, order = recorded_step(X, y, hidden, batch)
    tables, counts = variants(ops, program.table)
    state = [a for a in (step.model.params, step.optimizer.velocity) if a is not None]
    saved = [a.copy() for a in state]
    batches = np.ascontiguousarray(order[: len(order) // batch * batch].reshape(-1, batch))
    scalars = np.zeros(N_STEP_VALUES, np.float64)
    scalars[step_values.LR.slot] = LR
    scalars[step_values.DIVISOR.slot] = 1.0  # (read by a weighted step's recording only; this one divides by rows)
    pointers = np.zeros(1, np.uint64)

    def block(table: np.ndarray, start: int) -> float:
        for a, s in zip(state, saved, strict=True):
            a[...] = s
        where, n = address(table), len(table)
        t = time.perf_counter()
        for k in range(steps):
            pointers[0] = address(batches[(start + k) % len(batches)])
            ops.loops.run_program(where, n, scalars, pointers)
        return (time.perf_counter() - t) / steps * 1e6

    # Each variant's block beside a block of the whole step (which first alternating), so that a part's cost is
    # the difference within a pair: the machine's speed drifts between pairs more than within one.
    others = [n for n in tables if n != "whole step"]
    times = {n: [] for n in tables}
    pairs = {n: [] for n in others}
    for n in tables:  # a block of each, untimed: the first replays of a program pay its warm-up
        block(tables[n], 0)
    start = 0
    for r in range(rounds):
        for k, n in enumerate(others[r % len(others) :] + others[: r % len(others)]):
            first, second = (n, "whole step") if (r + k) % 2 else ("whole step", n)
            a = block(tables[first], start)
            b = block(tables[second], start)  # (the same batches)
            start += steps
            t_whole, t_variant = (b, a) if first == n else (a, b)
            times["whole step"].append(t_whole)
            times[n].append(t_variant)
            pairs[n].append(t_whole - t_variant)
    for a, s in zip(state, saved, strict=True):
        a[...] = s
    return {"times": times, "pairs": pairs, "counts": counts}


def report(result: dict) -> str:
    times, pairs, counts = result["times"], result["pairs"], result["counts"]
    med = statistics.median(times["whole step"])
    lines = [
        "| part | calls a step | cost in the step (whole - without it, median of pairs) | quartiles of pairs | of the "
        "whole step |",
        "|---|---:|---:|---:|---:|",
    ]
    left = 0.0
    for p, n in counts.items():
        key = f"without {p}"
        if key not in pairs:
            continue
        cost = statistics.median(pairs[key])
        left += cost
        lines.append(f"| {p} | {n} | {cost:.1f} us | {_quartiles(pairs[key])} | {100 * cost / med:.1f}% |")
    rest = statistics.median(pairs["products alone"])
    alone = statistics.median(times["products alone"])
    lines += [
        f"| the parts above, summed | | {left:.1f} us | | {100 * left / med:.1f}% |",
        f"| all but the products at once (whole - products alone) | | {rest:.1f} us | "
        f"{_quartiles(pairs['products alone'])} | {100 * rest / med:.1f}% |",
        "",
        f"Whole step {med:.1f} us (median of its blocks); its {counts.get('products', 0)} products alone "
        f"{alone:.1f} us: the step at {100 * (med - rest) / med:.1f}% of its products (whole - the pairs' median "
        "difference, over whole).",
    ]
    return "\n".join(lines)


def _quartiles(values: list[float]) -> str:
    """The first and third quartiles, "q1 to q3": how far apart the pairs are (a median inside them is noise's)."""
    if len(values) < 2:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.1f} to {q3:.1f} us"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give a positive whole number, not {text!r}")
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default), synthetic, mnist or an IDX folder")
    p.add_argument("--rounds", type=_positive, default=30)
    p.add_argument("--steps", type=_positive, default=50, help="steps a block")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # (contenders.py, beside this script)
    from contenders import epoch_data

    ds, X, y = epoch_data(p, args.data)
    y = y.astype(np.int32)  # (the labels' dtype the trainer steps with)
    result = measure(X, y, rounds=args.rounds, steps=args.steps)
    sizes = "-".join(map(str, [X.shape[1], *HIDDEN, int(y.max()) + 1]))
    print(
        f"The recorded step of {sizes} ReLU, momentum SGD, batch {BATCH}, float32, on {len(X)} rows of {ds.name}: "
        f"each part left out in turn; medians of {args.rounds} rounds of {args.steps}-step blocks.\n"
    )
    print(report(result))
    print(f"\nmachine: {loop_timing.describe(loop_timing.machine())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
