"""The NumPy path against its reference, op by op, on the shapes of the standard benchmark step.

For every op of the vocabulary that has a NumPy-path function (:mod:`mlp_xp.backend.numpy_path`), this times
that function against its reference (:mod:`mlp_xp.reference`), both called directly, on the step of
``mlp-xp bench`` and ``benchmarks/cpu_epoch.py``: a 784-512-256-10 ReLU MLP, batch 128, so bias_act and
act_backward on (128, 512) and (128, 256), the losses on (128, 10) logits, the updates over the flat buffer of
535,818 parameters (n_weights = 784*512 + 512*256 + 256*10), gather_rows of 128 rows out of a (60000, 784)
array with int32 labels. The NumPy path runs with a warm :class:`~mlp_xp.backend.scratch.ScratchCache`, as the
CPU backend runs it.

Each call is timed alone with ``time.perf_counter``, on inputs restored (untimed) to the same values before it;
a round is many such calls of one implementation, after a few untimed ones, and gives their median. The two
implementations alternate round by round (reference, NumPy path, reference, ...), every op once per round, and
the table gives the median over rounds and the ratio of those medians. Whether the reference allocates is read
off its code; the traced peak (``tracemalloc``, one warm call) backs that up, for the NumPy path too.

    python benchmarks/numpy_path.py [--rounds 7] [--dtype float32|float64] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from mlp_xp.backend import numpy_path
from mlp_xp.backend.scratch import ScratchCache
from mlp_xp.reference import data, layer, loss, optimizer
from mlp_xp.reference.layer import ACTIVATIONS, LEAKY_SLOPE

BATCH, SIZES, N_ROWS = 128, (784, 512, 256, 10), 60000
N_WEIGHTS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
N_PARAMS = N_WEIGHTS + sum(SIZES[1:])
LR, MOMENTUM, ADAM_LR, ADAM_STEP = 0.01, 0.9, 1e-3, 10

#: Seconds of timed calls per implementation per round (the number of calls is fitted to it once, when warm).
ROUND_SECONDS = 0.05
MIN_CALLS, MAX_CALLS, WARM_CALLS = 20, 4000, 5


@dataclass
class Case:
    """One op on one set of inputs. ``inputs`` are the pristine arrays; ``mutable`` the names of those the op
    writes, restored before every call; ``reference`` / ``path`` bind an implementation to a working copy."""

    op: str
    name: str
    allocates: str
    inputs: dict
    mutable: tuple
    reference: Callable
    path: Callable
    refill: Callable | None = None  # replaces the restore where the inputs change from call to call


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "unknown"
    try:
        dep = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{dep.get('name', '?')} {dep.get('version', '')}".strip()
    except Exception:  # show_config(mode=) is NumPy >= 1.25; an older one just leaves the BLAS unnamed
        pass
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    return {"cpu": model, "cpu_count": os.cpu_count(), "numpy": np.__version__, "blas": blas, "threads_env": threads}


def cases(dtype) -> list[Case]:
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)

    def normal(shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dt)

    out = []

    # gather_rows reads a new batch each call, as an epoch does: 128 rows that cached nothing of the last call.
    X, Y = normal((N_ROWS, SIZES[0])), rng.integers(0, 10, N_ROWS).astype(np.int32)
    perm = data.permutation(N_ROWS, seed=0, epoch=0)
    cursor = [0]

    def next_batch(w):
        start = cursor[0]
        cursor[0] = (start + BATCH) % (N_ROWS - BATCH)
        np.copyto(w["idx"], perm[start : start + BATCH])

    gather_inputs = {"X": X, "Y": Y, "idx": perm[:BATCH].copy(), "xb": np.zeros((BATCH, SIZES[0]), dt)}
    gather_inputs["yb"] = np.zeros(BATCH, np.int32)
    gather_args = ("X", "Y", "idx", "xb", "yb")
    out.append(
        Case(
            "gather_rows",
            f"{BATCH} of {N_ROWS}x{SIZES[0]}, int32 labels",
            "yes: X[idx], Y[idx]",
            gather_inputs,
            (),
            lambda w, s: partial(data.gather_rows, *(w[k] for k in gather_args)),
            lambda w, s: partial(numpy_path.gather_rows, *(w[k] for k in gather_args)),
            refill=next_batch,
        )
    )

    for width in SIZES[1:-1]:
        shape = (BATCH, width)
        for act in ACTIVATIONS:
            out.append(
                Case(
                    "bias_act",
                    f"{act} {shape[0]}x{shape[1]}",
                    "yes: z + b" + ("" if act == "identity" else ", g(.)"),
                    {"z": normal(shape), "b": normal(width, 0.1)},
                    ("z",),
                    lambda w, s, act=act: partial(layer.bias_act, w["z"], w["b"], act, LEAKY_SLOPE),
                    lambda w, s, act=act: partial(numpy_path.bias_act, w["z"], w["b"], act, LEAKY_SLOPE, scratch=s),
                )
            )
        for act in ACTIVATIONS:
            h = layer.activate(normal(shape), act, LEAKY_SLOPE).astype(dt)
            out.append(
                Case(
                    "act_backward",
                    f"{act} {shape[0]}x{shape[1]}",
                    "yes: " + ("ones_like(h), dh * g'" if act == "identity" else "g'(h), dh * g'"),
                    {"dh": normal(shape, 0.01), "h": h},
                    ("dh",),
                    lambda w, s, act=act: partial(layer.act_backward, w["dh"], w["h"], act, LEAKY_SLOPE),
                    lambda w, s, act=act: partial(
                        numpy_path.act_backward, w["dh"], w["h"], act, LEAKY_SLOPE, scratch=s
                    ),
                )
            )

    C = SIZES[-1]
    losses = [
        ("cross_entropy", "softmax_xent", rng.integers(0, C, BATCH).astype(np.int32), "yes: one-hot q, log p, p, ..."),
        ("binary_cross_entropy", "sigmoid_bce", rng.integers(0, 2, (BATCH, C)).astype(dt), "yes: each term, p"),
        ("mse", "squared_error", normal((BATCH, C)), "yes: z - y, its square, the gradient"),
    ]
    for name, fn, y, allocates in losses:
        out.append(
            Case(
                "loss_grad",
                f"{name} {BATCH}x{C}, write_grad",
                allocates,
                {"z": normal((BATCH, C), 3.0), "y": y, "acc": np.zeros(2)},
                ("z", "acc"),
                lambda w, s, fn=fn: partial(getattr(loss, fn), w["z"], w["y"], w["acc"], write_grad=True),
                lambda w, s, fn=fn: partial(
                    getattr(numpy_path, fn), w["z"], w["y"], w["acc"], write_grad=True, scratch=s
                ),
            )
        )
    # (The softmax output has no NumPy path: it measured no faster than its reference, which prediction may run.)
    out.append(
        Case(
            "output_act",
            f"sigmoid {BATCH}x{C}",
            "yes: -z, e^-z, 1 + ., 1 / .",
            {"z": normal((BATCH, C), 3.0)},
            ("z",),
            lambda w, s: partial(loss.output_act, w["z"], "sigmoid"),
            lambda w, s: partial(numpy_path.output_act, w["z"], "sigmoid"),
        )
    )

    # Magnitudes of a training run, far from float32's subnormals (which would time the FPU, not the code).
    params, grads, velocity = normal(N_PARAMS, 0.05), normal(N_PARAMS, 1e-3), normal(N_PARAMS, 1e-3)
    rules = [
        ("sgd", {}),
        ("momentum", {"momentum": MOMENTUM}),
        ("nesterov", {"momentum": MOMENTUM, "nesterov": True}),
        ("folded momentum", {"momentum": MOMENTUM, "folded": True}),
        ("momentum, l2 1e-4 (add_penalties)", {"momentum": MOMENTUM, "l2": 1e-4}),
    ]
    for rule, kw in rules:
        grads_key = None if kw.get("folded") else "g"

        def bind(fn, w, s, kw=kw, grads_key=grads_key, **extra):
            g = None if grads_key is None else w[grads_key]
            return partial(fn, w["p"], g, w["v"], N_WEIGHTS, LR, **kw, **extra)

        inputs = {"p": params, "v": velocity} if grads_key is None else {"p": params, "g": grads, "v": velocity}
        out.append(
            Case(
                "sgd_update",
                f"{rule}, {N_PARAMS:,} params",
                "yes: G in float64, lr G" + (", mu V + G" if kw else ""),
                inputs,
                tuple(inputs),
                lambda w, s, bind=bind: bind(optimizer.sgd_update, w, s),
                lambda w, s, bind=bind: bind(numpy_path.sgd_update, w, s, scratch=s),
            )
        )
    adam_inputs = {"p": params, "g": grads, "m": normal(N_PARAMS, 1e-3)}
    adam_inputs["v"] = (rng.uniform(0.0, 1e-5, N_PARAMS)).astype(dt)
    adam_args = ("p", "g", "m", "v")
    out.append(
        Case(
            "adam_update",
            f"step {ADAM_STEP}, {N_PARAMS:,} params",
            "yes: G in float64, every term of m, v and the step",
            adam_inputs,
            adam_args,
            lambda w, s: partial(optimizer.adam_update, *(w[k] for k in adam_args), N_WEIGHTS, ADAM_LR, ADAM_STEP),
            lambda w, s: partial(
                numpy_path.adam_update, *(w[k] for k in adam_args), N_WEIGHTS, ADAM_LR, ADAM_STEP, scratch=s
            ),
        )
    )
    return out


class Runner:
    """One implementation of one case: its own copy of the inputs, bound once, so a timed call is the call."""

    def __init__(self, case: Case, which: str) -> None:
        self.case = case
        # The read-only inputs (X, h, labels) are shared: copying 188 MB of X twice buys nothing.
        self.work = {
            k: (v.copy() if k in case.mutable or k in ("idx", "xb", "yb") else v) for k, v in case.inputs.items()
        }
        self.scratch = ScratchCache()
        self.call = (case.reference if which == "reference" else case.path)(self.work, self.scratch)
        self.calls = MIN_CALLS

    def restore(self) -> None:
        if self.case.refill is not None:
            self.case.refill(self.work)
        for k in self.case.mutable:
            np.copyto(self.work[k], self.case.inputs[k])

    def times(self, n: int) -> list[float]:
        out, call, restore, clock = [], self.call, self.restore, time.perf_counter
        for _ in range(n):
            restore()
            t = clock()
            call()
            out.append(clock() - t)
        return out

    def warm(self) -> None:
        self.times(WARM_CALLS)

    def fit_calls(self) -> None:
        per_call = statistics.median(self.times(MIN_CALLS))
        self.calls = int(min(MAX_CALLS, max(MIN_CALLS, ROUND_SECONDS / max(per_call, 1e-7))))

    def traced_peak(self) -> int:
        """Bytes of the highest traced memory during one warm call, above what was live before it."""
        self.restore()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            self.call()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()


def timer_floor() -> float:
    """The median of timing a call that does nothing: what every number below includes (µs)."""
    clock, noop, out = time.perf_counter, partial(int), []
    for _ in range(2000):
        t = clock()
        noop()
        out.append(clock() - t)
    return statistics.median(out) * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="rounds per implementation (default 7)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--json", help="write the raw numbers (every round's median, µs) as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: at least 1")

    info = machine()
    all_cases = cases(args.dtype)
    runners = [(Runner(c, "reference"), Runner(c, "path")) for c in all_cases]
    for pair in runners:
        for r in pair:
            r.warm()
            r.fit_calls()
    peaks = [(ref.traced_peak(), path.traced_peak()) for ref, path in runners]
    rounds: list[tuple[list[float], list[float]]] = [([], []) for _ in runners]
    floor = timer_floor()

    # gc off while timing, as timeit does: a collection landing in one implementation's round is not its cost.
    gc.collect()
    gc.disable()
    try:
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for (ref, path), (ref_t, path_t) in zip(runners, rounds):
                for runner, times in ((ref, ref_t), (path, path_t)):
                    runner.warm()
                    times.append(statistics.median(runner.times(runner.calls)) * 1e6)
            print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        gc.enable()

    command = " ".join(["python", "benchmarks/numpy_path.py", *(sys.argv[1:] if argv is None else argv)])
    print(
        f"# NumPy path vs reference: {info['cpu']}, os.cpu_count() = {info['cpu_count']}, "
        f"NumPy {info['numpy']}, BLAS {info['blas']}"
        + (f", {', '.join(f'{k}={v}' for k, v in info['threads_env'].items())}" if info["threads_env"] else "")
    )
    print(
        f"\n`{command}`\n\n"
        f"784-512-256-10 ReLU MLP step shapes, batch {BATCH}, {args.dtype}. Each time is the median over "
        f"{args.rounds} alternating rounds of the median call in a round (µs per call; timing an empty call "
        f"costs {floor:.2f} µs, included). Ratio = reference / NumPy path; its min-max is over the per-round "
        f"ratios. Traced peak: tracemalloc over one warm call (a few hundred bytes are Python objects, not "
        f"arrays).\n"
    )
    print(
        "| op | case | reference (µs) | NumPy path (µs) | NumPy path faster by (ref / path) | per-round ratio min-max "
        "| reference allocates in a step | traced peak ref / path (KiB) |\n"
        "|---|---|---:|---:|---:|---:|---|---:|"
    )
    results = []
    for case, (ref_t, path_t), (ref_peak, path_peak), (ref, path) in zip(all_cases, rounds, peaks, runners):
        ref_med, path_med = statistics.median(ref_t), statistics.median(path_t)
        per_round = [a / b for a, b in zip(ref_t, path_t)]
        print(
            f"| {case.op} | {case.name} | {ref_med:.1f} | {path_med:.1f} | {ref_med / path_med:.2f}x "
            f"| {min(per_round):.2f}-{max(per_round):.2f} | {case.allocates} "
            f"| {ref_peak / 1024:.1f} / {path_peak / 1024:.1f} |"
        )
        results.append(
            {
                "op": case.op,
                "case": case.name,
                "reference_allocates": case.allocates,
                "reference_us": ref_t,
                "numpy_path_us": path_t,
                "calls_per_round": {"reference": ref.calls, "numpy_path": path.calls},
                "traced_peak_bytes": {"reference": ref_peak, "numpy_path": path_peak},
            }
        )
    spreads = [
        (max(t) - min(t)) / statistics.median(t) for ref_t, path_t in rounds for t in (ref_t, path_t) if len(t) > 1
    ]
    if spreads:
        print(
            f"\nSpread of the rounds, (max - min) / median per implementation and case: median "
            f"{statistics.median(spreads):.0%}, worst {max(spreads):.0%}."
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": command,
                    "machine": info,
                    "dtype": args.dtype,
                    "rounds": args.rounds,
                    "timer_floor_us": floor,
                    "unit": "µs per call: each entry is one round's median call",
                    "cases": results,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
