"""One training epoch on the CPU: mlp_xp against PyTorch's eager loop, scikit-learn's MLPClassifier, and the
GEMM-only floor (the step's own matrix multiplies, alone), measured side by side in one run.

784-512-256-10 ReLU, softmax cross-entropy, SGD with momentum 0.9, batch 128, float32, on MNIST-shaped data
(60,000 x 784): an IDX folder given with --data, or a synthetic set of that shape. The contenders run in turn,
A B C D A B C D ..., and the table gives each one's median epoch time over --rounds rounds.

    python benchmarks/cpu_epoch.py --rounds 5 [--data DIR] [--json out.json]

Each contender does the same work per epoch: shuffle, 469 steps (the last one partial), and the running
loss and accuracy that mlp_xp reports per epoch (PyTorch accumulates them on the side without syncing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np

import mlp_xp
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.data import load_dataset
from mlp_xp.optim import Optimizer
from mlp_xp.trainer import TrainStep

SIZES = [784, 512, 256, 10]
BATCH, LR, MOMENTUM = 128, 0.01, 0.9


def data(path: str | None):
    if path:
        ds = load_dataset(path)
        return ds.X_train[:60000], ds.y_train[:60000].astype(np.int64), ds.describe()
    ds = load_dataset("synthetic:60000x784")
    return ds.X_train, ds.y_train.astype(np.int64), ds.describe()


def ours(X, y, seed: int) -> float:
    m = mlp_xp.MLP(SIZES, "relu", device="cpu", seed=seed)
    h = mlp_xp.fit(m, X, y, epochs=1, batch_size=BATCH, optimizer="momentum", lr=LR, momentum=MOMENTUM, seed=seed)
    return h.last["seconds"]


class GemmOnly(NumpyOps):
    """The CPU backend with every step op but the matrix multiplies turned into no-ops."""

    def gather_rows(self, *a, **k): pass
    def bias_act(self, *a, **k): pass
    def act_backward(self, *a, **k): pass
    def bias_grad(self, *a, **k): pass
    def loss_grad(self, *a, **k): pass
    def sgd_update(self, *a, **k): pass


def gemm_floor(X, y, seed: int) -> float:
    """The matrix multiplies of an epoch of mlp_xp's own step, alone: the trainer's TrainStep, with the same
    calls, shapes, flags and buffers, run on a backend where every other op does nothing."""
    ops = GemmOnly()
    m = mlp_xp.MLP(SIZES, "relu", device=ops, seed=seed)
    step = TrainStep(m, BATCH, Optimizer("momentum", ops, m.layout.n_params, m.layout.n_weights, m.dtype,
                                         momentum=MOMENTUM))
    for buf in (step.ws.xb, *step.ws.hs, *step.ws.dhs):
        buf[...] = X[: buf.shape[0], : buf.shape[1]]         # realistic values: no NaN or denormal slow paths
    acc, n = ops.zeros((2,), np.float64), len(X)
    tail = step.ws.rows(n - (n - 1) // BATCH * BATCH)
    t = time.perf_counter()
    for s in range(0, n, BATCH):
        step(None, None, None, acc, LR, tail if s + BATCH > n else None)
    return time.perf_counter() - t


def torch_eager(X, y, seed: int) -> float:
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    t = time.perf_counter()
    perm = torch.randperm(len(X))
    total, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
    for s in range(0, len(X), BATCH):
        idx = perm[s:s + BATCH]
        xb, yb = Xt[idx], yt[idx]
        opt.zero_grad(set_to_none=True)
        out = net(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        with torch.no_grad():
            total += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
    float(total), int(correct)
    return time.perf_counter() - t


def sklearn_mlp(X, y, seed: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(512, 256), activation="relu", solver="sgd", alpha=0.0, batch_size=BATCH,
                        learning_rate_init=LR, momentum=MOMENTUM, nesterovs_momentum=False, max_iter=1, shuffle=True,
                        random_state=seed, tol=0.0, n_iter_no_change=10**9)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return time.perf_counter() - t


CONTENDERS = {"mlp_xp": ours, "gemm_floor": gemm_floor, "pytorch_eager": torch_eager, "sklearn": sklearn_mlp}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="an MNIST-layout IDX folder (default: synthetic:60000x784)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip", default="", help="contenders to leave out, comma separated")
    p.add_argument("--json", help="write the raw times as JSON")
    args = p.parse_args(argv)
    X, y, desc = data(args.data)
    names = [n for n in CONTENDERS if n not in args.skip.split(",")]
    times = {n: [] for n in names}
    print(f"{desc}; {os.cpu_count()} cores; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
          file=sys.stderr)
    for r in range(args.rounds):
        for n in names:
            times[n].append(CONTENDERS[n](X, y, seed=r))
            print(f"round {r + 1}: {n:<14s} {times[n][-1]:.3f} s", file=sys.stderr)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"\nepoch of 784-512-256-10 ReLU, momentum SGD, batch {BATCH}, float32, {len(X)} rows; "
          f"median of {args.rounds} alternating rounds")
    print("| contender | epoch (s) | mlp_xp speedup |\n|---|---:|---:|")
    for n in names:
        speed = med[n] / med["mlp_xp"] if "mlp_xp" in med else float("nan")
        print(f"| {n} | {med[n]:.3f} | {speed:.2f}x |")
    if "gemm_floor" in med and "mlp_xp" in med:
        print(f"\nmlp_xp reaches {100 * med['gemm_floor'] / med['mlp_xp']:.1f}% of the GEMM-only floor "
              f"(floor / epoch, medians)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"times": times, "medians": med, "data": desc}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
