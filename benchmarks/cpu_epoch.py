"""One training epoch on the CPU: mlp_xp against PyTorch's eager loop, scikit-learn's MLPClassifier, and the
GEMM-only floor (the step's own matrix multiplies, alone, replayed as mlp_xp's step is: no Python between them;
--dispatched-floor adds them dispatched op by op, the floor before steps were replayed), measured side by side in
one run.

784-512-256-10 ReLU, softmax cross-entropy, SGD with momentum 0.9, batch 128, float32, on 60,000 x 784 rows:
Debian's Fashion-MNIST by default (real images: always-zero borders, sparse activations), or --data synthetic (a
synthetic set of that shape), mnist, or an IDX folder. The contenders run in turn, A B C D A B C D ..., and the
table gives each one's median epoch time over --rounds rounds. The report names the machine (CPU model, the
vector instruction sets, the BLAS and the kernels it picked, OPENBLAS_CORETYPE, threads), measures the large-SGEMM
peak in the same run (2048 x 2048 float32 products, the best of several), and gives each contender's effective
GFLOP/s (the epoch's matrix-product arithmetic, 2.41 MFLOP a row, over its time) as a fraction of that peak. On an
AVX-512 machine, OPENBLAS_CORETYPE=Haswell shows the AVX2 picture. Where mlp_xp's CPU backend calls MKL (an Intel CPU
with the mkl extra installed, or MLP_XP_BLAS=mkl), mlp_xp_openblas is mlp_xp on NumPy's OpenBLAS beside it; the
floor and the peak are OpenBLAS's products in every case.

    python benchmarks/cpu_epoch.py --rounds 5 [--data fashion-mnist|synthetic|mnist|DIR] [--json out.json]
                                   [--dispatched-floor]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np
from contenders import CONTENDERS, epoch_data, gemm_floor_epoch

from mlp_xp.backend import loop_timing
from mlp_xp.files import write_json_atomic

HIDDEN, BATCH, LR, MOMENTUM = [512, 256], 128, 0.01, 0.9


def epoch_flops(sizes: list[int], rows: int) -> float:
    """The matrix products of an epoch: forward h W (every layer), backward dW = h^T g (every layer) and
    dh = g W^T (all but the first): 2 a b flops each per row."""
    pairs = list(zip(sizes, sizes[1:]))
    per_row = sum(2 * a * b for a, b in pairs) * 2 + sum(2 * a * b for a, b in pairs[1:])
    return float(per_row) * rows


def sgemm_peak(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of NumPy's float32 product of two n x n matrices, the best of ``reps`` (after a warm-up)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


#: The contenders that --skip may leave out: all but mlp_xp, whose epoch the others are compared with.
SKIPPABLE = [n for n in CONTENDERS if n != "mlp_xp"]
#: The package each contender needs beyond mlp_xp, and how to install it.
NEEDS = {
    "pytorch_eager": ("torch", "pip install torch (the tables here were measured with PyTorch 2.13.0's CPU build)"),
    "sklearn": ("sklearn", "pip install scikit-learn"),
}


def _check_contenders(parser, skip: list[str], floors: list[str]) -> None:
    """Before any data or round: each name to skip is a contender (mlp_xp, whose epoch the others are compared
    with, cannot be), and each contender left in can be imported, rather than a traceback after the first round."""
    known = [*SKIPPABLE, *floors]
    for name in skip:
        if name == "mlp_xp":
            parser.error("--skip mlp_xp: every other epoch is compared with mlp_xp's, so it cannot be left out")
        if name not in known:
            parser.error(f"--skip {name}: not a contender here; give some of {', '.join(known)}")
    for name, (module, install) in NEEDS.items():
        if name in CONTENDERS and name not in skip and importlib.util.find_spec(module) is None:
            parser.error(f"{name} needs {module}, which is not installed: {install}, or --skip {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default), synthetic, mnist or an IDX folder")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--skip",
        default="",
        help=f"contenders to leave out, comma separated, of {', '.join(SKIPPABLE)} and gemm_floor",
    )
    p.add_argument("--json", help="write the raw times as JSON")
    p.add_argument(
        "--dispatched-floor",
        action="store_true",
        help="also time the floor's GEMMs dispatched op by op from Python (the floor before steps were replayed)",
    )
    args = p.parse_args(argv)
    floors = ["gemm_floor", "gemm_floor_dispatched"] if args.dispatched_floor else ["gemm_floor"]
    skip = [n for n in args.skip.split(",") if n]
    _check_contenders(p, skip, floors)
    ds, X, y = epoch_data(p, args.data)
    y = y.astype(np.int64)
    machine = loop_timing.machine()
    print(f"machine: {loop_timing.describe(machine)}", file=sys.stderr)
    names = [n for n in [*CONTENDERS, *floors] if n not in skip]
    times = {n: [] for n in names}
    print(
        f"{ds.describe()}; {os.cpu_count()} cores; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
        file=sys.stderr,
    )
    peaks = []
    for r in range(args.rounds):
        peaks.append(sgemm_peak())
        for n in names:
            if n.startswith("gemm_floor"):
                t = gemm_floor_epoch(X, HIDDEN, 10, BATCH, MOMENTUM, seed=r, record=n == "gemm_floor")
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
    peak = max(peaks)
    flops = epoch_flops([784, *HIDDEN, 10], len(X))
    for n in names:
        print(f"| {n} | {med[n]:.3f} | {med[n] / med['mlp_xp']:.2f}x | {paired[n]:.2f}x |")
    print(
        f"\nmachine: {loop_timing.describe(machine)}\nlarge-SGEMM peak (2048^3 float32, best of the run): {peak:.1f} "
        f"GFLOP/s; the epoch's products are {flops / 1e9:.1f} GFLOP.\n\n| contender | effective GFLOP/s | of the "
        "peak |\n|---|---:|---:|"
    )
    for n in names:
        print(f"| {n} | {flops / med[n] / 1e9:.1f} | {100 * flops / med[n] / 1e9 / peak:.0f}% |")
    if "gemm_floor" in med:
        print(
            f"\nmlp_xp's epoch is at {100 * med['gemm_floor'] / med['mlp_xp']:.1f}% of the GEMM-only floor "
            f"(the time its own matrix multiplies take alone / its epoch time, medians; "
            f"{100 * paired['gemm_floor']:.1f}% as the median of per-round ratios)."
        )
    if args.json:
        write_json_atomic(
            args.json,
            {
                "times": times,
                "medians": med,
                "data": ds.describe(),
                "machine": machine,
                "sgemm_peak_gflops": peaks,
                "epoch_gflop": flops / 1e9,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
