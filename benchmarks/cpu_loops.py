"""Each compiled CPU loop (kernels/cpu.cpp) against the NumPy path's op, side by side in one run, on this machine.

The cases are those of :mod:`mlp_xp.backend.loop_timing`: the shapes of a 784-512-256-10 step at batch 128
(bias_act for every activation and act_backward for every activation with a loop, on 128 x 512 and 128 x 256;
the output layer's bias + identity on 128 x 10; bias_grad on 128 x 512, 128 x 256 and 128 x 10; the softmax
cross-entropy on 128 x 10; the subnormal flush and Adam, plain and with l2 and l1, over the 535,818 parameters).
The layer arrays come from one forward and backward pass of a He-initialized network on a batch of real images
(``--data``, Debian's Fashion-MNIST by default), or, with ``--data synthetic`` or where no such data set is
found, from synthetic data of the same make (pre-activations normal, so that a ReLU's output is half zeros in no
pattern, gradients of random sign).

Within a case the implementations alternate round by round (compiled, [each --also build], NumPy, ...); a
round is many calls of one, each timed alone on inputs restored before it, and gives their median; the table
gives the median over rounds and the ratio compiled / NumPy (below 1: the compiled loop is faster). A row whose
ratio is above 1 is marked: issue 15 asks for none, on every CPU.

``--widths W1,W2,...`` times bias_act (each activation, or those of ``--only``) on 128 x W synthetic
pre-activations instead: the layer widths of other models (the call's fixed cost weighs more in narrow ones).

``--also NAME=LIB`` times another build of the loops in the same rounds, e.g. an older cpu.cpp built with the
flags of mlp_xp/backend/cpu_loops.py (``g++ -O3 -march=native -std=c++17 -shared -fPIC -fno-math-errno
-ffp-contract=off -I kernels kernels/cpu.cpp -o old.so``), to measure a change side by side.

    python benchmarks/cpu_loops.py [--rounds 7] [--dtype float32|float64] [--data NAME|synthetic]
                                   [--only act_backward,bias_act] [--also old=old.so] [--json PATH]
                                   [--widths 10,17,30,100 [--only tanh,relu]]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np

from mlp_xp.backend import cpu_loops, loop_timing
from mlp_xp.files import write_json_atomic


def _data(name: str):
    """(X, y, description) of the images to take a batch from, or (None, None, why not) for synthetic data."""
    if name == "synthetic":
        return None, None, "synthetic (normal pre-activations, gradients of random sign)"
    try:
        from mlp_xp.data import load_dataset

        ds = load_dataset(name)
    except Exception as e:  # no such data set here: say so in the header, and time on synthetic data
        return None, None, f"synthetic ({name} is not available here: {str(e).splitlines()[0]})"
    return ds.X_train[: loop_timing.BATCH], ds.y_train[: loop_timing.BATCH], f"a batch of {ds.describe()}"


def _widths(text: str) -> list[int]:
    try:
        return loop_timing.parse_widths(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.03, help="seconds of calls per implementation per round")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--data", default="fashion-mnist", help="a data set name or folder, or 'synthetic'")
    p.add_argument("--only", default="", help="ops to time, comma separated (default: all)")
    p.add_argument("--also", action="append", default=[], metavar="NAME=LIB", help="another build to time")
    p.add_argument(
        "--widths",
        type=_widths,
        help="time bias_act on 128 x W normal pre-activations for each W instead, e.g. 10,17,30,100 (--only: "
        "activations)",
    )
    p.add_argument("--json", help="write the machine, the table and each round's medians as JSON")
    args = p.parse_args(argv)

    loops = cpu_loops.find()
    if loops is None:
        print(f"the compiled CPU loops are not available here: {cpu_loops.status()}", file=sys.stderr)
        return 1
    others = {}
    for spec in args.also:
        name, _, lib = spec.partition("=")
        if not lib:
            p.error(f"--also wants NAME=LIB, not {spec!r}")
        others[name] = cpu_loops.CompiledLoops(ctypes.CDLL(str(Path(lib).resolve())), Path(lib), "given")

    only = {o for o in args.only.split(",") if o}
    if args.widths:
        acts = [a for a in loop_timing.FORWARD_ACTIVATIONS if not only or a in only]
        if not acts:
            p.error(f"--only with --widths takes activations: {', '.join(loop_timing.FORWARD_ACTIVATIONS)}")
        cases = loop_timing.width_cases(args.widths, np.dtype(args.dtype), acts)
        X, y, data = None, None, "synthetic (normal pre-activations, scale 2)"
    else:
        X, y, data = _data(args.data)
        cases = [c for c in loop_timing.cases(np.dtype(args.dtype), X, y) if not only or c.op in only]
    machine = loop_timing.machine()
    print(f"machine: {loop_timing.describe(machine)}")
    print(f"compiled loops: {machine['compiled_loops']}")
    print(f"data: {data}; {args.dtype}; medians of {args.rounds} rounds\n")

    extra = "".join(f" {name} us |" for name in others)
    print(f"| op | case | compiled us |{extra} NumPy us | compiled / NumPy |")
    print("|---|---|---:|" + "---:|" * len(others) + "---:|---:|")
    rows = []
    for case in cases:
        t = loop_timing.measure(case, loops, rounds=args.rounds, seconds=args.seconds, others=others)
        med = {name: float(np.median(t.rounds[name])) for name in others}
        cells = "".join(f" {med[name] * 1e6:.1f} |" for name in others)
        flag = " **slower**" if t.ratio > 1 else ""
        print(
            f"| {case.op} | {case.what} | {t.compiled * 1e6:.1f} |{cells} {t.numpy * 1e6:.1f} | {t.ratio:.2f}x{flag} |",
            flush=True,
        )
        row = t.as_dict()
        row.update({f"{name}_us": v * 1e6 for name, v in med.items()})
        rows.append(row)
    slower = [f"{r['op']} {r['case']}" for r in rows if r["ratio"] > 1]
    print(f"\n{len(rows) - len(slower)}/{len(rows)} compiled loops at least as fast as the NumPy path", end="")
    print(f"; slower: {', '.join(slower)}" if slower else "")
    if args.json:
        write_json_atomic(
            args.json,
            {"machine": machine, "data": data, "dtype": args.dtype, "rounds": args.rounds, "rows": rows},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
