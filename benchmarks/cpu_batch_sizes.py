"""Training throughput across batch sizes on the CPU, mlp_xp beside PyTorch's eager loop and scikit-learn.

784-512-256-10 ReLU, momentum SGD, float32, one epoch over --rows rows of MNIST-shaped synthetic data per
measurement; the contenders alternate within each batch size and the median of --rounds rounds is kept.

    python benchmarks/cpu_batch_sizes.py --rounds 3 --plot benchmarks/results/cpu_batch_sizes.png
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
from contenders import CONTENDERS

from mlp_xp.data import load_dataset
from mlp_xp.files import write_json_atomic

HIDDEN, LR, MOMENTUM = [512, 256], 0.01, 0.9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="32,64,128,256,512,1024,2048,4096")
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--plot")
    p.add_argument("--json")
    args = p.parse_args(argv)
    ds = load_dataset(f"synthetic:{args.rows}x784")
    X, y = ds.X_train, ds.y_train.astype(np.int64)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rate = {n: {} for n in CONTENDERS}
    for b in sizes:
        times = {n: [] for n in CONTENDERS}
        for r in range(args.rounds):
            for n, cls in CONTENDERS.items():
                times[n].append(cls(X, y, HIDDEN, b, LR, MOMENTUM, seed=r).epoch())
        for n in CONTENDERS:
            rate[n][b] = len(X) / statistics.median(times[n])
        print(f"batch {b:>5d}: " + "  ".join(f"{n} {rate[n][b]:,.0f}/s" for n in CONTENDERS), file=sys.stderr)
    print(
        f"Training samples per second, 784-512-256-10 ReLU, momentum SGD, float32, {len(X)} rows per epoch, "
        f"median of {args.rounds} rounds.\n"
    )
    print("| batch | " + " | ".join(CONTENDERS) + " | mlp_xp / pytorch | mlp_xp / sklearn |")
    print("|---:|" + "---:|" * (len(CONTENDERS) + 2))
    for b in sizes:
        row = " | ".join(f"{rate[n][b]:,.0f}" for n in CONTENDERS)
        print(
            f"| {b} | {row} | {rate['mlp_xp'][b] / rate['pytorch_eager'][b]:.2f}x | "
            f"{rate['mlp_xp'][b] / rate['sklearn'][b]:.2f}x |"
        )
    if args.json:
        write_json_atomic(args.json, rate)
    if args.plot:
        from mlp_xp.plotting import _pyplot, save_figure

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for n in CONTENDERS:
            ax.plot(sizes, [rate[n][b] for b in sizes], marker="o", label=n)
        ax.set(
            xscale="log",
            xlabel="batch size",
            ylabel="training samples / second",
            title="784-512-256-10 MLP, one epoch, 2-core CPU",
        )
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        save_figure(fig, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
