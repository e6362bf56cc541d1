"""NumPy's OpenBLAS against MKL (the mkl extra) as the CPU backend's BLAS, on this machine.

Each BLAS runs in processes of its own (two thread pools in one process would wait on each other): ``--pairs N``
pairs of processes, OpenBLAS first in odd pairs and MKL first in even ones, each timing one warm-up and
``--epochs`` epochs of the epoch benchmark's model (784-512-256-10 ReLU, momentum SGD, batch 128, float32, on
Debian's Fashion-MNIST by default) and the step's matrix products one by one (two threads each, C <- A B + 0.9 C
as the dW products accumulate). Prints each BLAS's median epoch and product times and the paired ratios.

    python benchmarks/cpu_blas.py --pairs 8 [--epochs 3] [--data fashion-mnist|synthetic|DIR] [--json out.json]
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
#: The step's products at batch 128: (name, rows of op(A), inner, columns, trans_a, trans_b).
PRODUCTS = (
    ("z1 = x W1: 128x784 . 784x512", 128, 784, 512, False, False),
    ("z2 = h1 W2: 128x512 . 512x256", 128, 512, 256, False, False),
    ("dW1 = x^T g1: 784x128 . 128x512", 784, 128, 512, True, False),
    ("dW2 = h1^T g2: 512x128 . 128x256", 512, 128, 256, True, False),
    ("dh1 = g2 W2^T: 128x256 . 256x512", 128, 256, 512, False, True),
)


def child(kind: str, epochs: int, data: str) -> dict:
    """One process's measurements, on BLAS ``kind``."""
    os.environ["MLP_XP_BLAS"] = kind
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from contenders import MlpXp

    from mlp_xp.backend import blas
    from mlp_xp.data import load_dataset

    b = blas.load(kind)
    rng = np.random.default_rng(0)
    products = {}
    for name, m, k, n, ta, tb in PRODUCTS:
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
        products[name] = statistics.median(runs)
    ds = load_dataset(data)
    c = MlpXp(ds.X_train.astype(np.float32), ds.y_train, (512, 256), 128, 0.05, 0.9, 0)
    assert c.model.ops.blas is b, "the model did not get the BLAS asked for"
    c.epoch()
    times = [c.epoch() for _ in range(epochs)]
    return {"blas": b.name, "epoch": statistics.median(times), "epochs": times, "products": products}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--json", help="write every process's measurements as JSON")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.data)))
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
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            run[kind] = json.loads(out.strip().splitlines()[-1])
            print(f"pair {k + 1}: {kind:5s} epoch {run[kind]['epoch']:.3f} s", file=sys.stderr)
        pairs.append(run)
    names = {kind: pairs[0][kind]["blas"] for kind in KINDS}
    ratios = [r["numpy"]["epoch"] / r["mkl"]["epoch"] for r in pairs]
    med = {kind: statistics.median(r[kind]["epoch"] for r in pairs) for kind in KINDS}
    print(
        f"\n784-512-256-10 ReLU epoch ({args.data}, batch 128, float32), {args.pairs} pairs of processes, each the "
        f"median of {args.epochs} epochs:\n\n| BLAS | epoch (median) |\n|---|---:|"
    )
    for kind in KINDS:
        print(f"| {names[kind]} | {med[kind]:.3f} s |")
    print(
        f"\nMKL's epoch is faster by {statistics.median(ratios):.3f}x (median of the paired ratios; "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x)\n\n| product | {names['numpy']} | {names['mkl']} | ratio |\n"
        "|---|---:|---:|---:|"
    )
    for name, *_ in PRODUCTS:
        t = {kind: statistics.median(r[kind]["products"][name] for r in pairs) for kind in KINDS}
        print(f"| {name} | {1e6 * t['numpy']:.0f} us | {1e6 * t['mkl']:.0f} us | {t['numpy'] / t['mkl']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": loop_timing.machine(), "pairs": pairs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
