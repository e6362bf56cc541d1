"""One training epoch on the CPU: mlp_xp against PyTorch's eager loop, scikit-learn's MLPClassifier, and the
GEMM-only floor (the step's own matrix multiplies, alone), measured side by side in one run.

784-512-256-10 ReLU, softmax cross-entropy, SGD with momentum 0.9, batch 128, float32, on MNIST-shaped data
(60,000 x 784): an IDX folder given with --data, or a synthetic set of that shape. The contenders run in turn,
A B C D A B C D ..., and the table gives each one's median epoch time over --rounds rounds.

    python benchmarks/cpu_epoch.py --rounds 5 [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
from contenders import CONTENDERS, gemm_floor_epoch

from mlp_xp.data import load_dataset
from mlp_xp.files import write_json_atomic

HIDDEN, BATCH, LR, MOMENTUM = [512, 256], 128, 0.01, 0.9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic:60000x784", help="an MNIST-layout IDX folder or dataset name")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip", default="", help="contenders to leave out, comma separated")
    p.add_argument("--json", help="write the raw times as JSON")
    args = p.parse_args(argv)
    ds = load_dataset(args.data)
    X, y = ds.X_train[:60000], ds.y_train[:60000].astype(np.int64)
    names = [n for n in [*CONTENDERS, "gemm_floor"] if n not in args.skip.split(",")]
    times = {n: [] for n in names}
    print(
        f"{ds.describe()}; {os.cpu_count()} cores; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
        file=sys.stderr,
    )
    for r in range(args.rounds):
        for n in names:
            if n == "gemm_floor":
                t = gemm_floor_epoch(X, HIDDEN, 10, BATCH, MOMENTUM, seed=r)
            else:
                t = CONTENDERS[n](X, y, HIDDEN, BATCH, LR, MOMENTUM, seed=r).epoch()
            times[n].append(t)
            print(f"round {r + 1}: {n:<14s} {t:.3f} s", file=sys.stderr)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(
        f"Epoch of 784-512-256-10 ReLU, momentum SGD, batch {BATCH}, float32, {len(X)} rows of {ds.name}; "
        f"median of {args.rounds} alternating rounds.\n"
    )
    # Per-round ratios too: the machine's speed drifts between rounds, a pair within one round less so.
    paired = {n: statistics.median(a / b for a, b in zip(times[n], times["mlp_xp"])) for n in names}
    print(
        "| contender | epoch (s) | mlp_xp is faster by (ratio of medians) | (median of per-round ratios) |\n"
        "|---|---:|---:|---:|"
    )
    for n in names:
        print(f"| {n} | {med[n]:.3f} | {med[n] / med['mlp_xp']:.2f}x | {paired[n]:.2f}x |")
    if "gemm_floor" in med:
        print(
            f"\nmlp_xp's epoch is at {100 * med['gemm_floor'] / med['mlp_xp']:.1f}% of the GEMM-only floor "
            f"(the time its own matrix multiplies take alone / its epoch time, medians; "
            f"{100 * paired['gemm_floor']:.1f}% as the median of per-round ratios)."
        )
    if args.json:
        write_json_atomic(args.json, {"times": times, "medians": med, "data": ds.describe()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
