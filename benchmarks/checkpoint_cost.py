"""What checkpointing every epoch costs: the same training run with and without ``checkpoint=DIR``, alternating.

784-512-256-10 ReLU, momentum SGD, batch 128, float32, 60,000 x 784 synthetic MNIST-shaped rows on the CPU; each
round trains ``--epochs`` epochs both ways (which one goes first alternates); the cost is the median over rounds
of (with - without) / without, per epoch. Intermediate checkpoints skip fsync, the last one does not.

    python benchmarks/checkpoint_cost.py --rounds 5 [--epochs 3] [--json F]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlp_xp  # noqa: E402
from mlp_xp.files import write_json_atomic  # noqa: E402


def one_run(X, y, epochs: int, checkpoint: str | None) -> float:
    model = mlp_xp.MLP([784, 512, 256, 10], device="cpu", seed=0)
    t = time.perf_counter()
    mlp_xp.fit(model, X, y, epochs=epochs, batch_size=128, lr=0.05, checkpoint=checkpoint)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((60_000, 784), dtype=np.float32)
    y = (X[:, :10].argmax(1)).astype(np.int64)
    one_run(X[:2048], y[:2048], 1, None)  # warm-up: the compiled loops, BLAS threads
    plain, with_ck, costs = [], [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            order = (None, d) if r % 2 == 0 else (d, None)
            times = {ck is not None: one_run(X, y, args.epochs, ck) for ck in order}
        plain.append(times[False])
        with_ck.append(times[True])
        costs.append((times[True] - times[False]) / times[False])
        print(f"round {r + 1}: without {times[False]:.3f} s, with {times[True]:.3f} s, {100 * costs[-1]:+.2f}%")
    # the parts: the data's fingerprint (once per run) and one checkpoint (per epoch), alone
    from mlp_xp.checkpoint import fingerprint
    from mlp_xp.serialization import save_arrays

    t = time.perf_counter()
    fingerprint([X, y])
    fingerprint_s = time.perf_counter() - t
    flat = mlp_xp.MLP([784, 512, 256, 10], device="cpu", seed=0).get_flat()
    with tempfile.TemporaryDirectory() as d:
        writes = []
        for _ in range(5):
            t = time.perf_counter()
            save_arrays(os.path.join(d, "c.npz"), {}, {"params": flat, "velocity": flat, "guard": flat}, durable=False)
            writes.append(time.perf_counter() - t)
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "epochs": args.epochs,
        "median_without_s": statistics.median(plain),
        "median_with_s": statistics.median(with_ck),
        "median_cost": statistics.median(costs),
        "fingerprint_s": fingerprint_s,
        "checkpoint_write_s": statistics.median(writes),
    }
    print(
        f"checkpoint every epoch: {100 * result['median_cost']:+.2f}% (median of {args.rounds} paired rounds of "
        f"{args.epochs} epochs; without {result['median_without_s']:.3f} s, with {result['median_with_s']:.3f} s)"
    )
    epoch = result["median_without_s"] / args.epochs
    print(
        f"parts: the data's fingerprint {1e3 * fingerprint_s:.0f} ms once per run; one checkpoint "
        f"{1e3 * result['checkpoint_write_s']:.1f} ms, {100 * result['checkpoint_write_s'] / epoch:.2f}% of an epoch"
    )
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
