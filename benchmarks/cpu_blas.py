"""NumPy's OpenBLAS against MKL (the mkl extra) as the CPU backend's BLAS, on this machine.

Each BLAS runs in processes of its own (two thread pools in one process would wait on each other): ``--pairs N``
pairs of processes, OpenBLAS first in odd pairs and MKL first in even ones, each timing one warm-up and
``--epochs`` epochs of the epoch benchmark's model (784-512-256-10 ReLU, momentum SGD, batch 128, float32, on
Debian's Fashion-MNIST by default; ``--hidden`` another one) and the step's matrix products one by one (two threads
each, C <- A B + 0.9 C as the dW products accumulate). Prints each BLAS's median epoch and product times and the
paired ratios. Both run as asked (MLP_XP_BLAS), whatever the model's size: ``--hidden`` is how to see where MKL
starts to pay (mlp_xp.backend.blas.MKL_MIN_PARAMS).

    python benchmarks/cpu_blas.py --pairs 8 [--epochs 3] [--hidden 512,256] [--data fashion-mnist|synthetic|DIR]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

KINDS = ("numpy", "mkl")
BATCH = 128


def products(sizes: list[int]) -> list[tuple]:
    """The step's products of the hidden layers' (the output layer's are small) at batch 128: (name, rows of
    op(A), inner, columns, trans_a, trans_b); for 784-512-256-10: z1, z2, dW1, dW2 and dh1."""
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1]), start=1):
        prev = "x" if i == 1 else f"h{i - 1}"
        out.append((f"z{i} = {prev} W{i}: {BATCH}x{n_in} . {n_in}x{n_out}", BATCH, n_in, n_out, False, False))
    for i, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1]), start=1):
        prev = "x" if i == 1 else f"h{i - 1}"
        out.append((f"dW{i} = {prev}^T g{i}: {n_in}x{BATCH} . {BATCH}x{n_out}", n_in, BATCH, n_out, True, False))
    for i, (n_in, n_out) in enumerate(zip(sizes[1:-2], sizes[2:-1]), start=1):
        out.append((f"dh{i} = g{i + 1} W{i + 1}^T: {BATCH}x{n_out} . {n_out}x{n_in}", BATCH, n_out, n_in, False, True))
    return out


def child(kind: str, epochs: int, data: str, hidden: tuple[int, ...]) -> dict:
    """One process's measurements, on BLAS ``kind``."""
    os.environ["MLP_XP_BLAS"] = kind
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from contenders import MlpXp

    from mlp_xp.backend import blas
    from mlp_xp.data import load_dataset

    b = blas.load(kind)
    rng = np.random.default_rng(0)
    ds = load_dataset(data)
    sizes = [ds.X_train.shape[1], *hidden, int(ds.y_train.max()) + 1]
    timed = {}
    for name, m, k, n, ta, tb in products(sizes):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        w = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        out = np.zeros((m, n), np.float32)
        for _ in range(30):
            b.matmul(a, w, out, trans_a=ta, trans_b=tb, accumulate=0.9)
        runs = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(100):
                b.matmul(a, w, out, trans_a=ta, trans_b=tb, accumulate=0.9)
            runs.append((time.perf_counter() - t) / 100)
        timed[name] = statistics.median(runs)
    c = MlpXp(ds.X_train.astype(np.float32), ds.y_train, hidden, BATCH, 0.05, 0.9, 0)
    assert c.model.ops.blas is b, "the model did not get the BLAS asked for"
    c.epoch()
    times = [c.epoch() for _ in range(epochs)]
    return {
        "blas": b.name,
        "sizes": sizes,
        "n_params": c.model.layout.n_params,
        "epoch": statistics.median(times),
        "epochs": times,
        "products": timed,
    }


def _hidden(text: str) -> tuple[int, ...]:
    from mlp_xp.backend.loop_timing import parse_widths

    try:
        return tuple(parse_widths(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the hidden layers' widths, comma separated (512,256)"
        ) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--hidden", type=_hidden, default=(512, 256), help="the hidden layers' widths (512,256)")
    p.add_argument("--json", help="write every process's measurements as JSON")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.data, args.hidden)))
        return 0
    from mlp_xp.backend import blas, loop_timing
    from mlp_xp.errors import ConfigError

    try:
        blas.load("mkl")
    except ConfigError as e:
        print(f"cpu_blas.py: {e}", file=sys.stderr)
        return 2
    print(f"machine: {loop_timing.describe(loop_timing.machine())}", file=sys.stderr)
    pairs = []
    for k in range(args.pairs):
        order = KINDS if k % 2 == 0 else KINDS[::-1]
        run = {}
        for kind in order:
            cmd = [sys.executable, __file__, "--child", kind, "--epochs", str(args.epochs), "--data", args.data]
            cmd += ["--hidden", ",".join(map(str, args.hidden))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            run[kind] = json.loads(out.strip().splitlines()[-1])
            print(f"pair {k + 1}: {kind:5s} epoch {run[kind]['epoch']:.3f} s", file=sys.stderr)
        pairs.append(run)
    names = {kind: pairs[0][kind]["blas"] for kind in KINDS}
    ratios = [r["numpy"]["epoch"] / r["mkl"]["epoch"] for r in pairs]
    med = {kind: statistics.median(r[kind]["epoch"] for r in pairs) for kind in KINDS}
    first = pairs[0]["numpy"]
    print(
        f"\n{'-'.join(map(str, first['sizes']))} ReLU epoch ({first['n_params']:,} parameters; {args.data}, batch "
        f"{BATCH}, float32), {args.pairs} pairs of processes, each the median of {args.epochs} epochs:\n\n"
        "| BLAS | epoch (median) |\n|---|---:|"
    )
    for kind in KINDS:
        print(f"| {names[kind]} | {med[kind]:.3f} s |")
    print(
        f"\nMKL's epoch is faster by {statistics.median(ratios):.3f}x (median of the paired ratios; "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x)\n\n| product | {names['numpy']} | {names['mkl']} | ratio |\n"
        "|---|---:|---:|---:|"
    )
    for name in first["products"]:
        t = {kind: statistics.median(r[kind]["products"][name] for r in pairs) for kind in KINDS}
        print(f"| {name} | {1e6 * t['numpy']:.0f} us | {1e6 * t['mkl']:.0f} us | {t['numpy'] / t['mkl']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": loop_timing.machine(), "pairs": pairs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
