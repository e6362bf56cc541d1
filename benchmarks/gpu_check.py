"""The prepared check for a lent GPU: everything the project can only learn on a real device, in one short run.

Run it from the repository root (nothing is installed; the project is called in-process, never through the
``mlp-xp`` console script)::

    PYTHONPATH=. python benchmarks/gpu_check.py --out DIR      # full: at most 4 minutes
    PYTHONPATH=. python benchmarks/gpu_check.py --quick         # smaller sizes: at most 1 minute
    PYTHONPATH=. python benchmarks/gpu_check.py --parts steps,findings   # only some parts (a rerun)

Without a usable GPU (CuPy missing, no driver, no device: :func:`mlp_xp.backend.cuda_status`) it prints one
line saying why and exits 3 within seconds, before importing anything heavy. Otherwise it runs five parts,
each printing one line as it finishes (``[part] ok|FAILED key numbers (12.3 s)``); an exception in a part is
recorded with its traceback and the next part still runs:

1. ``tests``: the ``gpu``-marked tests, ``pytest.main`` in-process; exit code and pass/fail/skip counts.
   ``--quick`` leaves out the per-case op tests (``test_op_matches_its_reference``); the selfcheck test and
   part 2 still run every case.
2. ``kernels``: :func:`mlp_xp.selfcheck.timed_check` on cuda:0: ops verified or failing, the worst error.
3. ``steps``: the trainer's own step of a 784-512-256-10 ReLU MLP (float32, data on the device) per batch size
   (256 and 4096 first, then 1024 and 64; --quick: 256 and 4096): plain (cuBLAS), CUDA graph with the in-house
   GEMM, CUDA graph with cuBLAS (and whether it fell back), and PyTorch eager and CUDA-graphed where ``torch``
   sees the GPU. Median ms/step of a few repeats, samples/s.
4. ``findings``: what the GPU audit left for a device to measure: (a) gemm.cu against cuBLAS in GFLOP/s on the
   step's GEMM shapes at batch 256 and 4096, with the kernel's error against cuBLAS, and (full run only) one
   launch of more than 65535 * 64 rows; (b) the cost of ``ops.asarray`` on a 4096 x 784 host array; (c) the
   kernels' compile-and-load time in two fresh processes in a row (full run only), sharing a new, empty
   CUPY_CACHE_DIR (and CUDA_CACHE_DISABLE=1): a faster second one means CuPy's on-disk cache works with name
   expressions; (d) a captured ``ops.matmul`` on cuBLAS replayed and checked against the plain product, with
   the graph's node count.
5. ``training``: 3 epochs of :func:`mlp_xp.fit` on MNIST-shaped synthetic data on the CPU, on cuda:0 and on
   cuda:0 with ``cuda_graph=True``, same seed: per-epoch losses, their largest relative difference CPU vs GPU
   (float32: about 1e-3 expected) and seconds per epoch.

It writes ``gpu_check.md`` (the machine, then a section of tables per part) and ``gpu_check.json`` (every
number, the tracebacks, the plan) into ``--out`` (default ``gpu_check_out``), both atomically and again after
every part, so that a run cut off by its time limit still leaves the parts it finished. Exit status 0 when every
part passed, 1 otherwise, 3 without a GPU, 130/143 when interrupted (the files hold what was done).

Time budgets (wall clock, checked between batch sizes, rows and sub-checks; a part's deadline is also capped by
the run's): full 75 s tests + 20 s kernel checks + 40 s steps + 55 s findings + 35 s training = 225 s, run cap
230 s; quick 20 + 8 + 10 + 7 + 10 = 55 s, run cap 56 s. What cannot be cut short (one test, the selfcheck, one
timed row, one epoch) may overrun its part by seconds, which the margin to 240 s and 60 s leaves room for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mlp_xp.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_GPU, EXIT_OK, EXIT_TERMINATED
from mlp_xp.files import atomic_writer, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent

#: The parts in the order they run: command-line key and title.
PARTS: dict[str, str] = {
    "tests": "gpu tests",
    "kernels": "kernel checks",
    "steps": "step benchmark",
    "findings": "gpu findings",
    "training": "training",
}

#: The largest row count gemm.cu could take when its row tiles were on grid.y (at most 65535 blocks of 64).
OLD_ROW_LIMIT = 65535 * 64


# ---- the plan: every size and budget, full or --quick ----


@dataclass(frozen=True)
class Plan:
    """Every size, step count and time budget (seconds) of a run. Batch sizes are in the order they run, the most
    telling first, so that a budget spent early costs the least informative ones."""

    quick: bool
    budgets: dict[str, float]
    total: float
    pytest_args: tuple[str, ...]
    sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    steps: int
    repeats: int
    warmup: int
    gemm_batches: tuple[int, ...]
    gemm_launches: int
    gemm_repeats: int
    big_rows: int
    asarray_shape: tuple[int, int]
    asarray_calls: int
    compile_runs: int
    compile_timeout: float
    graph_batch: int
    train_rows: int
    epochs: int
    train_batch: int
    loss_rtol: float


def plan_for(quick: bool) -> Plan:
    """The sizes and budgets of a full run, or of ``--quick``: fewer batch sizes, steps and rows, no
    4.2-million-row launch, no fresh-process compile timing, and the per-case op tests left to the selfcheck."""
    pytest_args = ("-q", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "tests"))
    if quick:
        return Plan(
            quick=True,
            budgets={"tests": 20.0, "kernels": 8.0, "steps": 10.0, "findings": 7.0, "training": 10.0},
            total=56.0,
            pytest_args=(*pytest_args, "-k", "not test_op_matches_its_reference"),
            sizes=(784, 512, 256, 10),
            batch_sizes=(256, 4096),
            steps=10,
            repeats=3,
            warmup=3,
            gemm_batches=(256, 4096),
            gemm_launches=5,
            gemm_repeats=3,
            big_rows=0,
            asarray_shape=(4096, 784),
            asarray_calls=20,
            compile_runs=0,
            compile_timeout=0.0,
            graph_batch=256,
            train_rows=4000,
            epochs=3,
            train_batch=128,
            loss_rtol=1e-2,
        )
    return Plan(
        quick=False,
        budgets={"tests": 75.0, "kernels": 20.0, "steps": 40.0, "findings": 55.0, "training": 35.0},
        total=230.0,
        pytest_args=pytest_args,
        sizes=(784, 512, 256, 10),
        batch_sizes=(256, 4096, 1024, 64),
        steps=50,
        repeats=5,
        warmup=5,
        gemm_batches=(256, 4096),
        gemm_launches=20,
        gemm_repeats=3,
        big_rows=4_200_000,
        asarray_shape=(4096, 784),
        asarray_calls=20,
        compile_runs=2,
        compile_timeout=40.0,
        graph_batch=256,
        train_rows=20000,
        epochs=3,
        train_batch=128,
        loss_rtol=1e-2,
    )


# ---- the context: the backends a part uses, and the clock ----


@dataclass
class Context:
    """What the parts run on. The backends are made on first use; tests put the CPU model of CuPy in their place."""

    plan: Plan
    cuda: Callable[[], Any]
    cuda_kernel_gemm: Callable[[], Any]
    cpu: Callable[[], Any]
    torch: Callable[[], tuple[Any, str]]
    run_deadline: float = math.inf
    deadline: float = math.inf  # the running part's, set by run_part
    stopped: str | None = None  # the signal that ended the run

    def left(self) -> float:
        """Seconds left to the running part."""
        return self.deadline - time.perf_counter()


@cache
def _torch_on_gpu() -> tuple[Any, str]:
    try:
        import torch
    except Exception as e:  # not installed, or a build that fails to load its CUDA libraries
        return None, f"PyTorch not importable ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} does not see a GPU (torch.cuda.is_available() is False)"
    return torch, f"PyTorch {torch.__version__}"


def gpu_context(plan: Plan, index: int = 0) -> Context:
    """The real thing: cuda:``index`` as users get it, a second backend on it with every product through gemm.cu."""
    from mlp_xp.backend import get_backend

    @cache
    def kernel_gemm():
        from mlp_xp.backend.cupy_ops import CupyOps

        return CupyOps(index, gemm="kernel")

    return Context(
        plan=plan,
        cuda=lambda: get_backend(f"cuda:{index}"),
        cuda_kernel_gemm=kernel_gemm,
        cpu=lambda: get_backend("cpu"),
        torch=_torch_on_gpu,
    )


# ---- running the parts ----


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_part(
    key: str, fn: Callable[[Context, dict], tuple[bool, str]], ctx: Context, log: Callable[[str], None] = print
) -> dict:
    """Run one part with its budget; its record: ok, summary, seconds, results (what it filled in, even when it
    raised), and the traceback of what it raised. Prints the part's one line."""
    title = PARTS.get(key, key)
    start = time.perf_counter()
    budget = ctx.plan.budgets.get(key, math.inf)
    ctx.deadline = min(start + budget, ctx.run_deadline)
    results: dict = {}
    record = {"part": key, "title": title, "ok": False, "summary": "", "budget_s": budget, "results": results}
    record["error"] = None
    if ctx.left() <= 0:
        record["summary"] = "not run: the run's time budget was spent"
    else:
        try:
            ok, summary = fn(ctx, results)
            record["ok"], record["summary"] = bool(ok), summary
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (turned into this by main): the run stops after this part
            record["error"] = "interrupted:\n" + traceback.format_exc()
            record["summary"] = f"interrupted ({ctx.stopped or 'KeyboardInterrupt'}); partial results kept"
            ctx.stopped = ctx.stopped or "KeyboardInterrupt"
        except Exception as e:  # one part's failure must not cost the others their only chance at the device
            record["error"] = traceback.format_exc()
            record["summary"] = f"raised {type(e).__name__}: {e}; partial results kept"
    record["summary"] = _one_line(record["summary"])
    record["seconds"] = time.perf_counter() - start
    log(f"[{title}] {'ok' if record['ok'] else 'FAILED'} {record['summary']} ({record['seconds']:.1f} s)")
    return record


def run_parts(
    ctx: Context,
    parts: list[tuple[str, Callable]],
    results: dict,
    out_dir: str | os.PathLike[str] | None,
    log: Callable[[str], None] = print,
) -> bool:
    """Run ``parts`` in order into ``results["parts"]``, writing the report after each; whether all passed. A
    signal stops the run after the part it interrupted; the parts not run are recorded as such."""
    results.setdefault("parts", [])
    for i, (key, fn) in enumerate(parts):
        results["parts"].append(run_part(key, fn, ctx, log))
        if ctx.stopped:
            for later, _ in parts[i + 1 :]:
                results["parts"].append(_not_run(later, f"not run: the run was interrupted ({ctx.stopped})"))
        results["ok"] = all(p["ok"] for p in results["parts"])
        results["seconds"] = sum(p.get("seconds", 0.0) for p in results["parts"])
        if out_dir is not None:
            write_report(results, out_dir)
        if ctx.stopped:
            break
    return all(p["ok"] for p in results["parts"])


def _not_run(key: str, why: str) -> dict:
    return {"part": key, "title": PARTS.get(key, key), "ok": False, "summary": why, "seconds": 0.0, "results": {}}


# ---- part 1: the gpu-marked tests ----


class TestCounter:
    """A pytest plugin: counts the outcomes of an in-process run, and ends the run once ``deadline`` (a
    perf_counter time) has passed, after the test that crossed it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, deadline: float = math.inf) -> None:
        self.deadline = deadline
        self.session = None
        self.selected = 0
        self.counts: Counter = Counter()
        self.failures: list[dict] = []
        self.skip_reasons: Counter = Counter()
        self.stopped: str | None = None

    def pytest_sessionstart(self, session) -> None:
        self.session = session

    def pytest_collection_finish(self, session) -> None:
        self.selected = len(session.items)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["collection errors"] += 1
            self.failures.append({"test": report.nodeid, "when": "collect", "message": _first_lines(report)})

    def pytest_runtest_logreport(self, report) -> None:
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if report.passed:
                self.counts["xpassed" if xfail else "passed"] += 1
            elif report.failed:
                self.counts["failed"] += 1
                self.failures.append({"test": report.nodeid, "when": "call", "message": _first_lines(report)})
            elif report.skipped:
                self._skip(report, xfail)
        elif report.failed:  # setup or teardown
            self.counts["errors"] += 1
            self.failures.append({"test": report.nodeid, "when": report.when, "message": _first_lines(report)})
        elif report.when == "setup" and report.skipped:
            self._skip(report, xfail)
        if report.when == "teardown" and self.stopped is None and time.perf_counter() > self.deadline:
            done = sum(self.counts[k] for k in ("passed", "failed", "skipped", "xfailed", "xpassed"))
            self.stopped = f"stopped by the time budget after {done} of {self.selected} tests"
            if self.session is not None:
                self.session.shouldstop = self.stopped

    def _skip(self, report, xfail: bool) -> None:
        self.counts["xfailed" if xfail else "skipped"] += 1
        if not xfail:  # an expected failure's "reason" is its traceback: nothing to tally
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skip_reasons[_one_line(reason, 200)] += 1


def _first_lines(report, lines: int = 12) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr)
    return "\n".join(text.strip().splitlines()[-lines:])


def part_tests(ctx: Context, res: dict) -> tuple[bool, str]:
    import pytest  # here, not at the top: the no-GPU exit must not pay for it

    counter = TestCounter(ctx.deadline)
    res["args"] = list(ctx.plan.pytest_args)
    code = pytest.main(list(ctx.plan.pytest_args), plugins=[counter])
    c = counter.counts
    res.update(
        exit_code=int(code),
        selected=counter.selected,
        counts=dict(c),
        failures=counter.failures[:50],
        skip_reasons=dict(counter.skip_reasons),
        stopped=counter.stopped,
    )
    ok = int(code) == 0 and counter.stopped is None and counter.selected > 0
    summary = (
        f"exit {int(code)}: {c['passed']} passed, {c['failed']} failed, {c['errors']} errors, "
        f"{c['skipped']} skipped of {counter.selected}"
    )
    if c["collection errors"]:
        summary += f", {c['collection errors']} collection errors"
    if counter.stopped:
        summary += f"; {counter.stopped}"
    return ok, summary


# ---- part 2: every op against its reference ----


def part_kernels(ctx: Context, res: dict) -> tuple[bool, str]:
    from mlp_xp.backend import kernels
    from mlp_xp.selfcheck import timed_check

    ops = ctx.cuda()
    t = time.perf_counter()
    # Compiled already if the tests ran first; on its own this is the first compile of the process.
    ops.kernels.preload([n for names in kernels.KERNELS.values() for n in names])
    res["preload_s"] = time.perf_counter() - t
    results, seconds = timed_check(ops)
    res["check_s"] = seconds
    res["ops"] = [
        {
            "op": r.op,
            "dtype": r.dtype,
            "cases": r.cases,
            "worst": r.worst,
            "ok": r.ok,
            "n_failures": len(r.failures),
            "failures": r.failures[:5],
        }
        for r in results
    ]
    good = sum(r.ok for r in results)
    worst = max((r.worst for r in results), default=float("nan"))
    res.update(verified=good, total=len(results), cases=sum(r.cases for r in results), worst=worst)
    summary = (
        f"{good}/{len(results)} ops verified, {len(results) - good} failing, worst {worst:.2g} x tolerance "
        f"({res['cases']} cases)"
    )
    return good == len(results) and len(results) > 0, summary


# ---- part 3: the training step across batch sizes ----


def _time_steps(
    run: Callable[[int], None], sync: Callable[[], None], steps: int, repeats: int, warmup: int
) -> list[float]:
    """Seconds per step of each of ``repeats`` blocks of ``steps`` steps, after ``warmup`` untimed ones; the
    device is synchronized before each block starts and after it ends."""
    for k in range(warmup):
        run(k)
    sync()
    out, k = [], warmup
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            run(k)
            k += 1
        sync()
        out.append((time.perf_counter() - t) / steps)
    return out


def mlp_step(ops, sizes, batch: int, *, graph: bool, warmup: int, seed: int = 0) -> tuple[Callable, Callable]:
    """(run(k), synchronize) for the trainer's own step on ``ops`` (as :func:`mlp_xp.bench.time_step` sets it
    up, kept here so that repeats reuse one model, one dataset and one capture)."""
    from mlp_xp.model import MLP
    from mlp_xp.optim import Optimizer
    from mlp_xp.step import GraphStep, TrainStep

    model = MLP(list(sizes), "relu", device=ops, dtype="float32", seed=seed)
    rng = np.random.default_rng(seed)
    n = max(4 * batch, 4096)
    X = ops.asarray(rng.random((n, sizes[0]), dtype=np.float32), model.dtype)
    Y = ops.asarray(rng.integers(0, sizes[-1], n).astype(np.int32))
    perm = ops.permutation(n, seed, 1)
    opt = Optimizer("momentum", ops, model.layout, model.dtype)
    step = TrainStep(model, batch, opt)
    acc = ops.zeros((2,), np.float64)
    slices = [perm[s : s + batch] for s in range(0, n - batch + 1, batch)]
    if not graph:
        return (lambda k: step(X, Y, slices[k % len(slices)], acc, 0.01)), ops.synchronize
    for k in range(warmup):  # every kernel compiled and every buffer touched before the capture
        step(X, Y, slices[k % len(slices)], acc, 0.01)
    graph_step = GraphStep(step, X, Y, acc)
    return (lambda k: graph_step(slices[k % len(slices)], 0.01)), ops.synchronize


def torch_step(
    torch, sizes, batch: int, *, graph: bool, warmup: int, seed: int = 0, device: str = "cuda:0"
) -> tuple[Callable, Callable]:
    """(run(k), synchronize) for the same MLP in PyTorch: nn.Linear layers, ReLU, cross-entropy, SGD with
    momentum 0.9, float32, the batch gathered on the device from data already there, the loss summed on the side
    as mlp_xp does. With ``graph``: forward, backward and the optimizer step captured once as a CUDA graph
    (warmed up on a side stream, static index buffer), then replayed."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = max(4 * batch, 4096)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    X = torch.rand((n, sizes[0]), device=dev, generator=gen)
    Y = torch.randint(0, sizes[-1], (n,), device=dev, generator=gen)
    perm = torch.randperm(n, device=dev, generator=gen)
    slices = [perm[s : s + batch] for s in range(0, n - batch + 1, batch)]
    total = torch.zeros((), device=dev)

    def body(idx) -> None:
        loss = loss_fn(net(X[idx]), Y[idx])
        loss.backward()
        opt.step()
        total.add_(loss.detach())

    if not graph:

        def eager(k: int) -> None:
            opt.zero_grad(set_to_none=True)
            body(slices[k % len(slices)])

        return eager, torch.cuda.synchronize
    static_idx = slices[0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # the warm-up makes the momentum buffers and picks the kernels
        for _ in range(max(3, warmup)):
            opt.zero_grad(set_to_none=True)
            body(static_idx)
    torch.cuda.current_stream().wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # backward in the graph then writes the grads from the graph's own pool
    with torch.cuda.graph(captured):
        body(static_idx)

    def replay(k: int) -> None:
        static_idx.copy_(slices[k % len(slices)])
        captured.replay()

    return replay, torch.cuda.synchronize


#: Row keys of the step benchmark, with their labels and their short names for the summary line.
STEP_ROWS: dict[str, tuple[str, str]] = {
    "plain": ("plain step (cuBLAS)", "plain"),
    "graph_kernel": ("CUDA graph, in-house GEMM", "graph+kernel"),
    "graph_cublas": ("CUDA graph, cuBLAS", "graph+cuBLAS"),
    "torch_eager": ("PyTorch eager", "torch"),
    "torch_graph": ("PyTorch CUDA graph", "torch graph"),
}


def part_steps(ctx: Context, res: dict) -> tuple[bool, str]:
    p = ctx.plan
    res.update(sizes=list(p.sizes), steps=p.steps, repeats=p.repeats, warmup=p.warmup, rows=[])
    res["skipped_batch_sizes"] = []
    torch, torch_note = ctx.torch()
    res["torch"] = torch_note

    def on(backend_of, graph):
        return lambda b: mlp_step(backend_of(), p.sizes, b, graph=graph, warmup=p.warmup)

    from mlp_xp.backend import kernels

    t = time.perf_counter()
    # The second backend compiles its own modules: timed here, not hidden in its first row's warm-up.
    ctx.cuda_kernel_gemm().kernels.preload([n for names in kernels.KERNELS.values() for n in names])
    res["kernel_gemm_backend_preload_s"] = time.perf_counter() - t
    makers = {"plain": on(ctx.cuda, False), "graph_kernel": on(ctx.cuda_kernel_gemm, True)}
    makers["graph_cublas"] = on(ctx.cuda, True)
    if torch is not None:
        makers["torch_eager"] = lambda b: torch_step(torch, p.sizes, b, graph=False, warmup=p.warmup)
        makers["torch_graph"] = lambda b: torch_step(torch, p.sizes, b, graph=True, warmup=p.warmup)
    errors = 0
    for b in p.batch_sizes:
        if ctx.left() <= 0:  # the part's budget is spent: no further batch sizes
            res["skipped_batch_sizes"].append(b)
            continue
        plain_ms = None
        for key, make in makers.items():
            row = {"row": key, "label": STEP_ROWS[key][0], "batch_size": b}
            res["rows"].append(row)
            if ctx.left() <= 0:
                row["skipped"] = "the part's time budget was spent"
                continue
            try:
                run, sync = make(b)
                times = _time_steps(run, sync, p.steps, p.repeats, p.warmup)
                del run
            except Exception:  # a row that breaks (a capture, an OOM) must not take the other rows with it
                row["error"] = traceback.format_exc()
                errors += 1
                continue
            ms = 1e3 * statistics.median(times)
            row.update(ms_per_step=ms, samples_per_s=b / ms * 1e3, repeats_ms=[1e3 * t for t in times])
            if key == "plain":
                plain_ms = ms
            if plain_ms is not None:
                row["speedup_vs_plain"] = plain_ms / ms
            if key == "graph_cublas":
                used = ctx.cuda().graph_gemm
                row["graph_gemm"] = used
                if used != "cublas":
                    row["label"] = "CUDA graph, cuBLAS asked: fell back to the in-house GEMM"
                    res["graph_gemm_fallback"] = used
            elif key == "graph_kernel":
                row["graph_gemm"] = ctx.cuda_kernel_gemm().graph_gemm
    measured = [r for r in res["rows"] if "ms_per_step" in r]
    if not measured:
        return False, f"nothing measured ({errors} rows failed)"
    top = max(r["batch_size"] for r in measured)
    parts = [f"{STEP_ROWS[r['row']][1]} {r['ms_per_step']:.3g} ms" for r in measured if r["batch_size"] == top]
    summary = f"batch {top}: " + ", ".join(parts) + f"; {len(measured)} rows"
    if errors:
        summary += f", {errors} FAILED"
    if res["skipped_batch_sizes"]:
        summary += f", batch sizes {res['skipped_batch_sizes']} skipped (budget)"
    if "graph_gemm_fallback" in res:
        summary += "; graph cuBLAS fell back"
    if torch is None:
        summary += "; no PyTorch rows"
    return errors == 0, summary


# ---- part 4: what only a device can measure ----


def _device_seconds(ops, fn: Callable[[], None], launches: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` between two events on the backend's stream, for each of ``repeats`` blocks of
    ``launches`` calls, after one untimed call."""
    fn()
    out = []
    for _ in range(repeats):
        start = ops.timestamp()
        for _ in range(launches):
            fn()
        out.append(ops.seconds_between(start, ops.timestamp()) / launches)
    return out


def gemm_shapes(sizes, batch: int) -> list[dict]:
    """The matrix products of one training step at ``batch``: per layer the forward h W, dW = h^T g and (below
    the first layer) dh = g W^T, as (name, a's shape, b's shape, trans_a, trans_b, m, n, k)."""
    out = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        out.append(dict(name=f"L{layer} forward h@W", a=(batch, fan_in), b=(fan_in, fan_out), ta=False, tb=False))
        out.append(dict(name=f"L{layer} dW = h^T g", a=(batch, fan_in), b=(batch, fan_out), ta=True, tb=False))
        if layer > 1:
            out.append(dict(name=f"L{layer} dh = g W^T", a=(batch, fan_out), b=(fan_in, fan_out), ta=False, tb=True))
    for s in out:
        s["m"] = s["a"][1] if s["ta"] else s["a"][0]
        s["k"] = s["a"][0] if s["ta"] else s["a"][1]
        s["n"] = s["b"][0] if s["tb"] else s["b"][1]
    return out


def _relative_error(got, ref) -> float:
    """max |got - ref| / max |ref|, in float64: the error of a product against another, scale-free."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - ref).max(initial=0.0) / max(np.abs(ref).max(initial=0.0), 1e-30))


#: The most gemm.cu may differ from cuBLAS, relative to the product's largest entry (float32 rounding of sums of
#: up to 4096 terms is about 1e-6; a wrong tile or transpose is of order 1).
GEMM_RTOL = 1e-4


def finding_gemm(ctx: Context, ops) -> dict:
    """(a) gemm.cu against cuBLAS on the step's shapes: GFLOP/s of each and the kernel's error against cuBLAS."""
    p = ctx.plan
    rng = np.random.default_rng(1)
    rows = []
    out = {"rows": rows, "launches": p.gemm_launches, "repeats": p.gemm_repeats, "rtol": GEMM_RTOL}
    for batch in p.gemm_batches:
        for s in gemm_shapes(p.sizes, batch):
            if ctx.left() <= 0:
                out["skipped"] = f"the time budget was spent before batch {batch} {s['name']}"
                return out
            a = ops.asarray(rng.standard_normal(s["a"]).astype(np.float32))
            b = ops.asarray(rng.standard_normal(s["b"]).astype(np.float32))
            out_k, out_c = ops.empty((s["m"], s["n"]), np.float32), ops.empty((s["m"], s["n"]), np.float32)
            kw = {"trans_a": s["ta"], "trans_b": s["tb"]}
            # default arguments bind this shape's arrays: the calls run now, but ruff cannot know that
            tk = _device_seconds(
                ops, lambda a=a, b=b, o=out_k, kw=kw: ops.gemm_kernel(a, b, o, **kw), p.gemm_launches, p.gemm_repeats
            )
            tc = _device_seconds(
                ops,
                lambda a=a, b=b, o=out_c, kw=kw: ops.dev.gemm(a, b, o, accumulate=0.0, **kw),
                p.gemm_launches,
                p.gemm_repeats,
            )
            flop = 2.0 * s["m"] * s["n"] * s["k"]
            kernel_s, cublas_s = statistics.median(tk), statistics.median(tc)
            err = _relative_error(ops.to_host(out_k), ops.to_host(out_c))
            rows.append(
                {
                    "batch": batch,
                    "product": s["name"],
                    "mnk": [s["m"], s["n"], s["k"]],
                    "trans_a": s["ta"],
                    "trans_b": s["tb"],
                    "kernel_us": 1e6 * kernel_s,
                    "cublas_us": 1e6 * cublas_s,
                    "kernel_gflops": flop / kernel_s / 1e9,
                    "cublas_gflops": flop / cublas_s / 1e9,
                    "kernel_vs_cublas": cublas_s / kernel_s,
                    "max_rel_error": err,
                    "ok": err <= GEMM_RTOL,
                }
            )
    out["ok"] = bool(rows) and all(r["ok"] for r in rows)
    return out


def finding_big_launch(ctx: Context, ops) -> dict:
    """(a, continued) One gemm.cu launch over more rows than grid.y could tile, checked on the rows around the
    old limit and at both ends."""
    from mlp_xp.backend.cupy_ops import gemm_geometry

    rows = ctx.plan.big_rows
    if rows <= 0:
        return {"skipped": "full run only", "ok": True}
    rng = np.random.default_rng(2)
    a_host = rng.random((rows, 8), dtype=np.float32)
    b_host = rng.random((8, 8), dtype=np.float32)
    a, b = ops.asarray(a_host), ops.asarray(b_host)
    out = ops.empty((rows, 8), np.float32)
    ops.fill(out, np.nan)  # rows the launch does not reach stay NaN and fail the check
    grid, block = gemm_geometry(rows, 8)
    start = ops.timestamp()
    ops.gemm_kernel(a, b, out)
    seconds = ops.seconds_between(start, ops.timestamp())
    spans = [(0, 64), (OLD_ROW_LIMIT - 64, min(rows, OLD_ROW_LIMIT + 64)), (rows - 64, rows)]
    errors = []
    for lo, hi in spans:
        got = ops.to_host(out[lo:hi])
        errors.append(_relative_error(got, a_host[lo:hi].astype(np.float64) @ b_host.astype(np.float64)))
    err = max(errors)
    return {
        "rows": rows,
        "shape": f"({rows} x 8) @ (8 x 8)",
        "old_row_limit": OLD_ROW_LIMIT,
        "grid": list(grid),
        "block": list(block),
        "ms": 1e3 * seconds,
        "checked_rows": [list(s) for s in spans],
        "max_rel_error": err,
        "ok": err <= GEMM_RTOL,
    }


def finding_asarray(ctx: Context, ops) -> dict:
    """(b) ``ops.asarray`` of a small host array, per call, with CuPy's own ``cupy.asarray`` beside it."""
    p = ctx.plan
    host = np.random.default_rng(3).random(p.asarray_shape, dtype=np.float32)

    def per_call(fn) -> list[float]:
        for _ in range(2):
            fn()
        ops.synchronize()
        out = []
        for _ in range(p.asarray_calls):
            t = time.perf_counter()
            fn()
            ops.synchronize()
            out.append(time.perf_counter() - t)
        return out

    def plain() -> None:
        with ops.dev.on:
            ops.xp.asarray(host)

    ours, theirs = per_call(lambda: ops.asarray(host)), per_call(plain)
    ms = 1e3 * statistics.median(ours)
    return {
        "shape": list(p.asarray_shape),
        "mib": host.nbytes / 2**20,
        "calls": p.asarray_calls,
        "ms_median": ms,
        "ms_min": 1e3 * min(ours),
        "gb_per_s": host.nbytes / (ms / 1e3) / 1e9,
        "cupy_asarray_ms_median": 1e3 * statistics.median(theirs),
        "ok": True,
    }


#: Run in a fresh process: the seconds to compile and load every kernel of kernels.KERNELS on cuda:0.
COMPILE_PROBE = """
import json, time
t0 = time.perf_counter()
from mlp_xp.backend import get_backend
from mlp_xp.backend.kernels import KERNELS
ops = get_backend("cuda:0")
t1 = time.perf_counter()
names = [n for v in KERNELS.values() for n in v]
ops.kernels.preload(names)
ops.synchronize()
print(json.dumps({"startup_s": t1 - t0, "preload_s": time.perf_counter() - t1, "kernels": len(names)}))
"""


def finding_compile(ctx: Context) -> dict:
    """(c) The kernels' compile-and-load time in fresh processes, one after the other, sharing a new, empty CuPy
    cache folder: the first compiles; the second is faster only if CuPy's on-disk cache serves name expressions."""
    p = ctx.plan
    if p.compile_runs <= 0:
        return {"skipped": "full run only", "ok": True}
    runs: list[dict] = []
    out: dict = {"runs": runs}
    with tempfile.TemporaryDirectory(prefix="gpu_check_cupy_cache_") as cache_dir:
        # CUDA_CACHE_DISABLE: no driver JIT cache of PTX either, so a faster second run is CuPy's cache alone.
        env = dict(os.environ, CUPY_CACHE_DIR=cache_dir, CUDA_CACHE_DISABLE="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        out["cupy_cache_dir"] = "a new temporary folder (CUPY_CACHE_DIR) shared by the runs; CUDA_CACHE_DISABLE=1"
        for i in range(p.compile_runs):
            timeout = min(p.compile_timeout, ctx.left())
            if timeout <= 1:
                out["skipped"] = f"the time budget was spent before run {i + 1}"
                break
            run: dict = {"run": i + 1}
            runs.append(run)
            t = time.perf_counter()
            try:
                r = subprocess.run(
                    [sys.executable, "-c", COMPILE_PROBE],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                run["error"] = f"timed out after {timeout:.0f} s"
                break
            run["process_s"] = time.perf_counter() - t
            run["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
            try:
                if r.returncode != 0:
                    raise ValueError(f"exit {r.returncode}")
                run.update(json.loads(r.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError) as e:  # a crash, or output that is not the probe's line
                run["error"] = f"{e}: stdout {r.stdout.strip()[-500:]!r}, stderr {r.stderr.strip()[-2000:]!r}"
                break
    done = [r for r in runs if "preload_s" in r]
    if len(done) >= 2:
        first, second = done[0]["preload_s"], done[1]["preload_s"]
        out["second_vs_first"] = second / first if first else None
        out["disk_cache_used"] = second < 0.5 * first
    out["ok"] = len(done) == p.compile_runs
    return out


def finding_graph_matmul(ctx: Context, ops) -> dict:
    """(d) The step's three kinds of product captured in one CUDA graph through ``ops.matmul``, replayed over
    stale outputs and checked against plain cuBLAS products; the graph's node count and what its GEMMs ran on."""
    p = ctx.plan
    rng = np.random.default_rng(4)
    fan_in, fan_out = p.sizes[0], p.sizes[1]
    batch = p.graph_batch
    h = ops.asarray(rng.standard_normal((batch, fan_in)).astype(np.float32))
    w = ops.asarray(rng.standard_normal((fan_in, fan_out)).astype(np.float32))
    g = ops.asarray(rng.standard_normal((batch, fan_out)).astype(np.float32))
    products = [
        ("forward h@W", h, w, {}, (batch, fan_out)),
        ("dW = h^T g", h, g, {"trans_a": True}, (fan_in, fan_out)),
        ("dh = g W^T", g, w, {"trans_b": True}, (batch, fan_in)),
    ]
    outs = [ops.zeros(shape, np.float32) for *_, shape in products]

    def step() -> None:
        for (_, a, b, kw, _), out in zip(products, outs):
            ops.matmul(a, b, out, **kw)

    graph = ops.capture(step)
    for out in outs:
        ops.fill(out, 7.0)  # a replay that wrote nothing would leave this
    ops.replay(graph)
    rows = []
    for (name, a, b, kw, shape), out in zip(products, outs):
        ref = ops.empty(shape, np.float32)
        ops.dev.gemm(a, b, ref, trans_a=kw.get("trans_a", False), trans_b=kw.get("trans_b", False), accumulate=0.0)
        got, want = ops.to_host(out), ops.to_host(ref)
        err = _relative_error(got, want)
        rows.append({"product": name, "shape": list(shape), "bitwise_equal": bool(np.array_equal(got, want))})
        rows[-1].update(max_rel_error=err, ok=err <= GEMM_RTOL)
    used = ops.graph_gemm
    return {
        "batch": batch,
        "graph_gemm": used,
        "graph_nodes": int(ops.dev.graph_nodes(graph)),
        "rows": rows,
        "ok": used == "cublas" and all(r["ok"] for r in rows),
    }


def part_findings(ctx: Context, res: dict) -> tuple[bool, str]:
    ops = ctx.cuda()
    checks = [
        ("graph_matmul", lambda: finding_graph_matmul(ctx, ops)),
        ("asarray", lambda: finding_asarray(ctx, ops)),
        ("gemm", lambda: finding_gemm(ctx, ops)),
        ("big_launch", lambda: finding_big_launch(ctx, ops)),
        ("compile", lambda: finding_compile(ctx)),  # last: the slowest, and a subprocess that may time out
    ]
    for key, fn in checks:
        if ctx.left() <= 0:
            res[key] = {"skipped": "the part's time budget was spent", "ok": False}
            continue
        try:
            res[key] = fn()
        except Exception:  # each finding on its own: one that breaks leaves the others their numbers
            res[key] = {"error": traceback.format_exc(), "ok": False}
    return all(res[k].get("ok") for k, _ in checks), _findings_summary(res)


def _findings_summary(res: dict) -> str:
    bits = []
    gemm = res.get("gemm", {})
    if gemm.get("rows"):
        top = max(r["batch"] for r in gemm["rows"])
        ratio = statistics.median(r["kernel_vs_cublas"] for r in gemm["rows"] if r["batch"] == top)
        err = max(r["max_rel_error"] for r in gemm["rows"])
        bits.append(f"gemm.cu at {ratio:.2f}x cuBLAS speed (batch {top}, median), max rel diff {err:.1e}")
    big = res.get("big_launch", {})
    if "max_rel_error" in big:
        bits.append(f"{big['rows']:,}-row launch {'ok' if big['ok'] else 'WRONG'}")
    a = res.get("asarray", {})
    if "ms_median" in a:
        bits.append(f"asarray {a['ms_median']:.2f} ms ({a['gb_per_s']:.1f} GB/s)")
    c = res.get("compile", {})
    done = [r for r in c.get("runs", []) if "preload_s" in r]
    if done:
        bits.append("compile " + " then ".join(f"{r['preload_s']:.1f} s" for r in done))
        if "disk_cache_used" in c:
            bits[-1] += " (disk cache used)" if c["disk_cache_used"] else " (disk cache NOT used)"
    d = res.get("graph_matmul", {})
    if "graph_gemm" in d:
        bits.append(f"graph matmul on {d['graph_gemm'].split(' (')[0]} {'ok' if d['ok'] else 'FAILED'}")
        bits[-1] += f", {d['graph_nodes']} nodes"
    broken = [k for k, v in res.items() if isinstance(v, dict) and not v.get("ok")]
    if broken:
        bits.append("FAILED: " + ", ".join(broken))
    return "; ".join(bits) or "nothing measured"


# ---- part 5: training on the CPU and the GPU ----


def synthetic_mnist(n: int, features: int = 784, classes: int = 10, seed: int = 0):
    """MNIST-shaped rows in [0, 1) and labels from a fixed linear rule: learnable, but not in 3 epochs, so that the
    loss keeps falling smoothly (at lr 0.01) instead of reaching 0, where relative differences mean nothing."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, features), dtype=np.float32)
    W = rng.standard_normal((features, classes)).astype(np.float32)
    return X, np.argmax((X - 0.5) @ W, axis=1).astype(np.int64)


def _max_rel_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b)), default=float("nan"))


def part_training(ctx: Context, res: dict) -> tuple[bool, str]:
    import mlp_xp

    p = ctx.plan
    X, y = synthetic_mnist(p.train_rows, p.sizes[0], p.sizes[-1])
    settings = dict(epochs=p.epochs, batch_size=p.train_batch, lr=0.01, optimizer="momentum", seed=0)
    res.update(rows=p.train_rows, sizes=list(p.sizes), settings=settings, runs={}, rtol=p.loss_rtol)
    for name, backend, graph in (("cpu", ctx.cpu, False), ("cuda", ctx.cuda, False), ("cuda_graph", ctx.cuda, True)):
        if ctx.left() <= 0:
            res["runs"][name] = {"skipped": "the part's time budget was spent"}
            continue
        try:
            model = mlp_xp.MLP(list(p.sizes), "relu", device=backend(), seed=0)
            t = time.perf_counter()
            h = mlp_xp.fit(model, X, y, cuda_graph=graph, **settings)
            res["runs"][name] = {
                "backend": model.ops.name,
                "train_loss": [float(v) for v in h["train_loss"]],
                "train_accuracy": [float(v) for v in h["train_accuracy"]],
                "epoch_seconds": [float(v) for v in h["seconds"]],
                "fit_seconds": time.perf_counter() - t,
            }
        except Exception:  # the other backends' runs still say something
            res["runs"][name] = {"error": traceback.format_exc()}
    runs = res["runs"]
    cpu = runs.get("cpu", {}).get("train_loss")
    ok = all("train_loss" in r for r in runs.values())
    for name in ("cuda", "cuda_graph"):
        if cpu and "train_loss" in runs.get(name, {}):
            res[f"{name}_vs_cpu_max_rel_diff"] = _max_rel_diff(runs[name]["train_loss"], cpu)
            ok = ok and res[f"{name}_vs_cpu_max_rel_diff"] <= p.loss_rtol
    if "train_loss" in runs.get("cuda", {}) and "train_loss" in runs.get("cuda_graph", {}):
        res["graph_vs_plain_max_rel_diff"] = _max_rel_diff(runs["cuda_graph"]["train_loss"], runs["cuda"]["train_loss"])
    bits = [
        f"{name} vs cpu {res[f'{name}_vs_cpu_max_rel_diff']:.1e}"
        for name in ("cuda", "cuda_graph")
        if cpu and f"{name}_vs_cpu_max_rel_diff" in res
    ]
    speed = [f"{name} {statistics.mean(r['epoch_seconds']):.2f}" for name, r in runs.items() if "epoch_seconds" in r]
    broken = [name for name, r in runs.items() if "train_loss" not in r]
    summary = "loss max rel diff " + (", ".join(bits) or "-") + "; s/epoch " + (", ".join(speed) or "-")
    if broken:
        summary += "; FAILED or skipped: " + ", ".join(broken)
    return ok, summary


PART_FUNCTIONS: dict[str, Callable[[Context, dict], tuple[bool, str]]] = {
    "tests": part_tests,
    "kernels": part_kernels,
    "steps": part_steps,
    "findings": part_findings,
    "training": part_training,
}


# ---- the machine ----


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def machine_info(index: int = 0) -> dict:
    """The GPU, its CUDA driver and runtime, the versions of CuPy, NumPy and Python, and the CPU."""
    info: dict = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        import cupy

        info["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["gpu_memory_gib"] = props["totalGlobalMem"] / 2**30
        info["compute_capability"] = f"{props['major']}.{props['minor']}"
        info["sm_count"] = props["multiProcessorCount"]
        info["cuda_driver"] = _cuda_version(cupy.cuda.runtime.driverGetVersion())
        info["cuda_runtime"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
    except Exception as e:  # the report still gets written; the parts say what works
        info["gpu_error"] = f"{type(e).__name__}: {e}"
        return info
    try:
        from cupy.cuda import nvrtc

        info["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
    except Exception as e:  # NVRTC is only loaded when a kernel compiles; part 2 says whether it does
        info["nvrtc"] = f"unknown ({type(e).__name__}: {e})"
    return info


# ---- the report ----


def _plain(obj):
    """``obj`` as strict JSON values: NumPy scalars as Python ones, tuples as lists, inf and NaN as strings."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _num(v, fmt: str = ".3g") -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "no")
    if isinstance(v, (int, float)):
        return format(v, fmt)
    return str(v)


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(text: str) -> str:
    return "```\n" + str(text).rstrip() + "\n```"


def _md_tests(r: dict) -> list[str]:
    c = r.get("counts", {})
    keys = ["passed", "failed", "errors", "skipped", "xfailed", "xpassed", "collection errors"]
    out = [
        f"`pytest {' '.join(r.get('args', []))}`",
        _table(
            ["exit code", "selected", *keys, "stopped early"],
            [[r.get("exit_code", "-"), r.get("selected", "-"), *(c.get(k, 0) for k in keys), r.get("stopped") or "no"]],
        ),
    ]
    if r.get("failures"):
        out.append(
            "Failures:\n\n"
            + "\n\n".join(f"- `{f['test']}` ({f['when']})\n\n{_code(f['message'])}" for f in r["failures"])
        )
    if r.get("skip_reasons"):
        out.append(_table(["skip reason", "tests"], [[k, v] for k, v in r["skip_reasons"].items()]))
    return out


def _md_kernels(r: dict) -> list[str]:
    rows = [
        [
            o["op"],
            o["dtype"],
            o["cases"],
            "verified" if o["ok"] else "FAILING",
            _num(o["worst"], ".2g"),
            o["failures"][0] if o.get("failures") else "",
        ]
        for o in r.get("ops", [])
    ]
    out = [
        f"Kernel load {_num(r.get('preload_s'), '.2f')} s (already loaded when the tests ran first); "
        f"check {_num(r.get('check_s'), '.2f')} s; worst error {_num(r.get('worst'), '.2g')} x tolerance."
    ]
    out.append(_table(["op", "dtype", "cases", "status", "worst (x tol)", "first failure"], rows))
    return out


def _md_steps(r: dict) -> list[str]:
    sizes = "-".join(map(str, r.get("sizes", [])))
    out = [
        f"{sizes} ReLU MLP, float32, softmax cross-entropy, momentum SGD, data on the device; median of "
        f"{r.get('repeats', '-')} repeats of {r.get('steps', '-')} steps after {r.get('warmup', '-')} warm-up steps. "
        f"PyTorch: {r.get('torch', '-')}. The in-house-GEMM backend's kernels compiled and loaded in "
        f"{_num(r.get('kernel_gemm_backend_preload_s'), '.2f')} s before the timing."
    ]
    rows = []
    order = list(STEP_ROWS)
    for row in sorted(r.get("rows", []), key=lambda x: (x["batch_size"], order.index(x["row"]))):
        if "ms_per_step" in row:
            rows.append(
                [
                    row["label"],
                    row["batch_size"],
                    _num(row["ms_per_step"], ".4g"),
                    _num(row["samples_per_s"], ",.0f"),
                    _num(row.get("speedup_vs_plain"), ".2f"),
                    row.get("graph_gemm", ""),
                ]
            )
        else:
            last = (row.get("error") or "").strip().splitlines()[-1:]
            why = row.get("skipped") or "FAILED: " + _one_line(last[0] if last else "", 160)
            rows.append([row["label"], row["batch_size"], "-", "-", "-", why])
    out.append(_table(["step", "batch", "ms / step", "samples / s", "x plain", "graph GEMMs / note"], rows))
    if r.get("graph_gemm_fallback"):
        out.append(f"The cuBLAS graph fell back to the in-house GEMM: `{r['graph_gemm_fallback']}`")
    if r.get("skipped_batch_sizes"):
        out.append(f"Batch sizes not run (the part's time budget was spent): {r['skipped_batch_sizes']}")
    errors = [row for row in r.get("rows", []) if "error" in row]
    out += [f"Traceback of {row['label']} at batch {row['batch_size']}:\n\n{_code(row['error'])}" for row in errors]
    return out


def _status(d: dict) -> str:
    if "error" in d:
        return "FAILED (raised)"
    if "skipped" in d:
        return f"skipped: {d['skipped']}"
    return "ok" if d.get("ok") else "FAILED"


def _md_findings(r: dict) -> list[str]:
    out = []
    g = r.get("gemm", {})
    out.append(f"### (a) gemm.cu against cuBLAS: {_status(g)}")
    if g.get("rows"):
        out.append(
            f"Median of {g.get('repeats')} blocks of {g.get('launches')} launches between events; float32; error = "
            f"max |kernel - cuBLAS| / max |cuBLAS| (limit {g.get('rtol')})."
        )
        out.append(
            _table(
                [
                    "batch",
                    "product",
                    "m x n x k",
                    "kernel GFLOP/s",
                    "cuBLAS GFLOP/s",
                    "kernel speed / cuBLAS's",
                    "max rel error",
                ],
                [
                    [
                        x["batch"],
                        x["product"],
                        " x ".join(map(str, x["mnk"])),
                        _num(x["kernel_gflops"], ",.0f"),
                        _num(x["cublas_gflops"], ",.0f"),
                        _num(x["kernel_vs_cublas"], ".2f"),
                        _num(x["max_rel_error"], ".1e"),
                    ]
                    for x in g["rows"]
                ],
            )
        )
    b = r.get("big_launch", {})
    out.append(f"**More rows than grid.y could tile ({OLD_ROW_LIMIT:,}):** {_status(b)}")
    if "max_rel_error" in b:
        out.append(
            _table(
                ["product", "grid", "ms", "rows checked", "max rel error"],
                [[b["shape"], b["grid"], _num(b["ms"], ".3g"), b["checked_rows"], _num(b["max_rel_error"], ".1e")]],
            )
        )
    a = r.get("asarray", {})
    out.append(f"### (b) ops.asarray of a small host array: {_status(a)}")
    if "ms_median" in a:
        out.append(
            _table(
                ["shape", "MiB", "calls", "ops.asarray ms (median)", "min ms", "GB/s", "cupy.asarray ms (median)"],
                [
                    [
                        a["shape"],
                        _num(a["mib"], ".1f"),
                        a["calls"],
                        _num(a["ms_median"], ".3f"),
                        _num(a["ms_min"], ".3f"),
                        _num(a["gb_per_s"], ".1f"),
                        _num(a["cupy_asarray_ms_median"], ".3f"),
                    ]
                ],
            )
        )
    c = r.get("compile", {})
    out.append(f"### (c) kernel compile and load in fresh processes: {_status(c)}")
    if c.get("runs"):
        out.append(
            _table(
                ["run", "preload s", "import + backend s", "process s", "cache files after", "error"],
                [
                    [
                        x["run"],
                        _num(x.get("preload_s"), ".2f"),
                        _num(x.get("startup_s"), ".2f"),
                        _num(x.get("process_s"), ".2f"),
                        x.get("cache_files", "-"),
                        _one_line(x.get("error", ""), 200),
                    ]
                    for x in c["runs"]
                ],
            )
        )
        if "disk_cache_used" in c:
            verdict = "used" if c["disk_cache_used"] else "NOT used"
            out.append(
                f"Second / first: {_num(c['second_vs_first'], '.2f')}: CuPy's on-disk cache is {verdict} "
                "with name expressions."
            )
    d = r.get("graph_matmul", {})
    out.append(f"### (d) ops.matmul on cuBLAS inside a CUDA graph: {_status(d)}")
    if "rows" in d:
        out.append(f"Batch {d['batch']}; the graph's GEMMs ran on `{d['graph_gemm']}`; {d['graph_nodes']} graph nodes.")
        out.append(
            _table(
                ["product", "shape", "bitwise equal to plain cuBLAS", "max rel error"],
                [
                    [x["product"], x["shape"], _num(x["bitwise_equal"]), _num(x["max_rel_error"], ".1e")]
                    for x in d["rows"]
                ],
            )
        )
    for key in ("gemm", "big_launch", "asarray", "compile", "graph_matmul"):
        if "error" in r.get(key, {}):
            out.append(f"Traceback of {key}:\n\n{_code(r[key]['error'])}")
    return out


def _md_training(r: dict) -> list[str]:
    runs = r.get("runs", {})
    out = [
        f"{r.get('rows', '-')} synthetic MNIST-shaped rows, {'-'.join(map(str, r.get('sizes', [])))} ReLU, "
        f"settings {r.get('settings', {})}; loss differences relative to the CPU's (limit {r.get('rtol')})."
    ]
    names = [n for n, x in runs.items() if "train_loss" in x]
    epochs = max((len(runs[n]["train_loss"]) for n in names), default=0)
    rows = []
    for e in range(epochs):
        rows.append(
            [e + 1, *(_num(runs[n]["train_loss"][e], ".6g") if e < len(runs[n]["train_loss"]) else "-" for n in names)]
        )
    if names:
        out.append(_table(["epoch", *(f"{n} train loss" for n in names)], rows))
        out.append(
            _table(
                ["run", "backend", "s / epoch", "fit s", "final accuracy"],
                [
                    [
                        n,
                        runs[n]["backend"],
                        " ".join(_num(s, ".3f") for s in runs[n]["epoch_seconds"]),
                        _num(runs[n]["fit_seconds"], ".2f"),
                        _num(runs[n]["train_accuracy"][-1], ".4f"),
                    ]
                    for n in names
                ],
            )
        )
    diffs = [
        [k.removesuffix("_max_rel_diff").replace("_", " "), _num(v, ".2e")]
        for k, v in r.items()
        if k.endswith("_max_rel_diff")
    ]
    if diffs:
        out.append(_table(["comparison", "max relative difference of the per-epoch losses"], diffs))
    for n, x in runs.items():
        if "error" in x:
            out.append(f"Traceback of the {n} run:\n\n{_code(x['error'])}")
        elif "skipped" in x:
            out.append(f"The {n} run was skipped: {x['skipped']}.")
    return out


FORMATTERS: dict[str, Callable[[dict], list[str]]] = {
    "tests": _md_tests,
    "kernels": _md_kernels,
    "steps": _md_steps,
    "findings": _md_findings,
    "training": _md_training,
}


def format_report(results: dict) -> str:
    """The Markdown report of ``results``: the machine, a table of the parts, then a section per part."""
    m = results.get("machine", {})
    lines = [
        "# mlp_xp GPU check",
        "",
        f"Mode: {results.get('mode', '-')}; started {results.get('started', '-')}; "
        f"{_num(results.get('seconds'), '.1f')} s; verdict: "
        f"{'every part passed' if results.get('ok') else 'NOT every part passed'}.",
        "",
        "## Machine",
        "",
        _table(["", ""], [[k, _num(v, ".4g") if isinstance(v, float) else v] for k, v in m.items()]),
        "",
        "## Parts",
        "",
        _table(
            ["part", "status", "seconds", "budget s", "summary"],
            [
                [
                    p["title"],
                    "ok" if p["ok"] else "FAILED",
                    _num(p.get("seconds"), ".1f"),
                    _num(p.get("budget_s"), ".0f"),
                    p.get("summary", ""),
                ]
                for p in results.get("parts", [])
            ],
        ),
    ]
    for p in results.get("parts", []):
        lines += ["", f"## {p['title']}: {'ok' if p['ok'] else 'FAILED'}", "", p.get("summary", "")]
        fmt = FORMATTERS.get(p["part"])
        if p.get("results") and fmt is not None:
            try:
                blocks = fmt(p["results"])
            except Exception:  # a report of half-filled results must still be written: show them raw
                blocks = [
                    "(this section could not be laid out; its results as JSON:)",
                    _code(json.dumps(_plain(p["results"]), indent=1)),
                ]
            for block in blocks:
                lines += ["", block]
        if p.get("error"):
            lines += ["", "Traceback:", "", _code(p["error"])]
    return "\n".join(lines) + "\n"


def write_report(results: dict, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``gpu_check.md`` and ``gpu_check.json`` into ``out_dir`` (made if missing), each whole or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "gpu_check.md", out / "gpu_check.json"
    with atomic_writer(md) as f:
        f.write(format_report(results).encode())
    write_json_atomic(js, _plain(results))
    return md, js


# ---- the command ----


def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check.py",
        description="Everything the project can only check on a GPU, in one run (full: 4 minutes at most).",
    )
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.md and gpu_check.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: at most 1 minute")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown or not args.parts:
        parser.error(f"unknown part(s) {unknown}: choose from {','.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Check the GPU, run the parts, write the report; the exit status (0 all passed, 1 not, 3 no GPU)."""
    start = time.perf_counter()
    args = _parse(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before anything runs: the report must have somewhere to go
        print(f"gpu_check: --out {args.out} is a file, not a folder: give a folder for the report", file=sys.stderr)
        return EXIT_BAD_INPUT
    from mlp_xp.backend import cuda_status

    # A CuPy that cannot find its CUDA libraries may warn on import: the no-GPU answer stays one line, and on a
    # GPU the warnings go into the report instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        usable, why = cuda_status(0)
    if not usable:
        print(f"gpu_check: no usable GPU, nothing was checked: {why}", file=sys.stderr)
        return EXIT_NO_GPU
    plan = plan_for(args.quick)
    ctx = gpu_context(plan)
    ctx.run_deadline = start + plan.total

    def on_sigterm(signum, frame):
        ctx.stopped = "SIGTERM"
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    results: dict = {
        "tool": "benchmarks/gpu_check.py",
        "mode": "quick" if plan.quick else "full",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_info(0), **({"import_warnings": [str(w.message) for w in caught]} if caught else {})},
        "plan": dataclasses.asdict(plan),
        "parts": [],
        "ok": False,
    }
    out = Path(args.out)
    write_report(results, out)  # something to read even if the machine is taken back during the first part
    print(f"gpu_check: {results['machine'].get('gpu', why)}, {results['mode']} run, budget {plan.total:.0f} s -> {out}")
    ok = run_parts(ctx, [(k, PART_FUNCTIONS[k]) for k in args.parts], results, out)
    results["seconds"] = time.perf_counter() - start
    results["ok"] = ok
    md, js = write_report(results, out)
    passed = sum(p["ok"] for p in results["parts"])
    print(f"gpu_check: {passed}/{len(results['parts'])} parts ok in {results['seconds']:.1f} s; wrote {md} and {js}")
    if ctx.stopped:
        return EXIT_TERMINATED if ctx.stopped == "SIGTERM" else EXIT_INTERRUPTED
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
