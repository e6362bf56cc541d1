"""``mlp-xp bench``: the same training step timed on the CPU and the GPUs over several batch sizes.

The step is the trainer's own (:class:`mlp_xp.step.TrainStep`) on MNIST-shaped random data that is
already on the device, so the table measures the step alone: gather, forward, fused loss, backward,
optimizer update. Each configuration runs a few warm-up steps, then ``steps`` timed steps between two
device synchronizations. ``--device`` picks the backends (:func:`bench_devices`): all (the CPU and every
visible GPU), cpu, or one GPU with the CPU as the baseline of the speedup column.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .backend import cuda_devices, cuda_status, get_backend
from .constraints import device_choice
from .errors import EXIT_NO_GPU, EXIT_OK, BackendUnavailable
from .files import write_json_atomic
from .model import MLP, Layout
from .optim import Optimizer
from .step import GraphStep, TrainStep

N_FEATURES, N_CLASSES = 784, 10


@dataclass
class BenchRow:
    """One configuration: ``backend`` is the backend's name, which starts with its device ("cpu (NumPy ...)",
    "cuda:1 (NVIDIA ...)"), and ends in " + CUDA graph (cuBLAS)" or " + CUDA graph (gemm kernel)" for the
    captured step; ``device`` is "cpu" or "cuda:N"."""

    backend: str
    batch_size: int
    ms_per_step: float
    samples_per_second: float
    speedup_vs_cpu: float | None = None
    device: str = ""


def bench_devices(device: str = "all", log=print) -> list[str]:
    """The devices ``device`` times, the CPU first: "all", every visible GPU (a visible one that is not usable is
    left out, with a line to ``log``; none at all, the CPU alone); "cpu", the CPU alone; "cuda:N", that GPU and the
    CPU, the baseline of the speedup column (:class:`BackendUnavailable` if that GPU is not usable)."""
    kind, index = device_choice(device)
    if kind == "cpu":
        return ["cpu"]
    if kind == "cuda":
        ok, why = cuda_status(index)
        if not ok:
            raise BackendUnavailable(f"cuda:{index} is not usable, so nothing was timed: {why}")
        return ["cpu", f"cuda:{index}"]
    devices = ["cpu"]
    visible = cuda_devices()
    if not visible:
        log(f"no usable GPU ({cuda_status(0)[1]}): reporting the CPU alone")
    for i in visible:
        ok, why = cuda_status(i)
        if ok:
            devices.append(f"cuda:{i}")
        else:
            log(f"cuda:{i} is not usable ({why}): left out of the table")
    return devices


def _label(device: str, ops) -> str:
    """The backend's name, which says its device; prefixed with the device where it does not."""
    name = str(ops.name)
    return name if name.split(" ", 1)[0] == device else f"{device} ({name})"


def graph_gemm_label(ops) -> str:
    """What the GEMMs of the backend's captured graphs ran on, for tables: "cuBLAS" or "gemm kernel"."""
    used = getattr(ops, "graph_gemm", "kernel")
    return "cuBLAS" if used == "cublas" else "gemm kernel"


def time_step(
    device,
    hidden: list[int],
    batch_size: int,
    steps: int,
    *,
    dtype: str = "float32",
    warmup: int = 3,
    seed: int = 0,
    graph: bool = False,
) -> float:
    """Seconds per training step of a 784-hidden-10 ReLU MLP at ``batch_size`` (mean over ``steps``);
    with ``graph``, the step replays a captured CUDA graph (:class:`mlp_xp.step.GraphStep`)."""
    model = MLP([N_FEATURES, *hidden, N_CLASSES], "relu", device=device, dtype=dtype, seed=seed)
    ops = model.ops
    rng = np.random.default_rng(seed)
    n = max(4 * batch_size, 4096)
    X = ops.asarray(rng.random((n, N_FEATURES), dtype=np.float32), model.dtype)
    Y = ops.asarray(rng.integers(0, N_CLASSES, n).astype(np.int32))
    perm = ops.permutation(n, seed, 1)
    opt = Optimizer("momentum", ops, model.layout, model.dtype)
    step = TrainStep(model, batch_size, opt)
    acc = ops.zeros((2,), np.float64)
    slices = [perm[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
    if graph:
        for k in range(warmup):  # compile every kernel before the capture
            step(X, Y, slices[k % len(slices)], acc, 0.01)
        graph_step = GraphStep(step, X, Y, acc)
        run = lambda k: graph_step(slices[k % len(slices)], 0.01)  # noqa: E731
    else:
        run = lambda k: step(X, Y, slices[k % len(slices)], acc, 0.01)  # noqa: E731
    for k in range(warmup):
        run(k)
    ops.synchronize()
    t = time.perf_counter()
    for k in range(steps):
        run(k)
    ops.synchronize()
    return (time.perf_counter() - t) / steps


def bench(
    batch_sizes: list[int],
    hidden: list[int],
    steps: int,
    dtype: str = "float32",
    log=print,
    *,
    device: str = "all",
    devices: list[str] | None = None,
) -> list[BenchRow]:
    """Time the backends of ``device`` (:func:`bench_devices`; or the given ``devices``, "cpu" first) in
    order, the CPU first, so that every other row carries its speedup over the CPU at its batch size; each GPU
    also with a captured CUDA graph, right after its plain rows."""
    devices = bench_devices(device, log) if devices is None else devices
    rows, cpu_ms = [], {}
    for dev in devices:
        # (the model's own backend: on the CPU its BLAS depends on the model's size)
        ops = get_backend(dev, n_params=Layout([N_FEATURES, *hidden, N_CLASSES]).n_params)
        for graph in (False, True) if ops.can_capture else (False,):
            for b in batch_sizes:
                sec = time_step(ops, hidden, b, steps, dtype=dtype, graph=graph)
                name = _label(dev, ops) + (f" + CUDA graph ({graph_gemm_label(ops)})" if graph else "")
                row = BenchRow(name, b, 1e3 * sec, b / sec, device=dev)
                if dev == "cpu" and not graph:
                    cpu_ms[b] = row.ms_per_step
                row.speedup_vs_cpu = cpu_ms[b] / row.ms_per_step if b in cpu_ms else None
                rows.append(row)
                log(f"  {name:<40s} batch {b:>5d}: {row.ms_per_step:8.3f} ms/step")
    return rows


def format_table(rows: list[BenchRow], hidden: list[int], dtype: str) -> str:
    head = (
        f"784-{'-'.join(map(str, hidden))}-10 ReLU, softmax cross-entropy, momentum SGD, {dtype}\n"
        f"| backend | batch | ms / step | samples / s | speedup vs CPU |\n|---|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.batch_size} | {r.ms_per_step:.3f} | {r.samples_per_second:,.0f} | "
            f"{'-' if r.speedup_vs_cpu is None else f'{r.speedup_vs_cpu:.2f}x'} |"
        )
    return "\n".join(lines)


def plot(rows: list[BenchRow], path, title: str) -> None:
    from .plotting import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in dict.fromkeys(r.backend for r in rows):
        mine = [r for r in rows if r.backend == backend]
        ax.plot([r.batch_size for r in mine], [r.samples_per_second for r in mine], marker="o", label=backend)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="training samples / second", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def run_bench(
    batch_sizes: list[int],
    hidden: list[int],
    steps: int,
    dtype: str = "float32",
    *,
    json_path=None,
    plot_path=None,
    device: str = "all",
) -> int:
    """The ``mlp-xp bench`` command (its flags already checked): print the table, write the JSON and the plot.

    ``device``: "all" (the CPU and every visible GPU), "cpu", or "cuda"/"cuda:N" (that GPU and the CPU); a GPU
    asked for by number that is not usable is one line on stderr and exit status 3, before any timing."""
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        devices = bench_devices(device, log)
    except BackendUnavailable as e:
        print(f"mlp-xp: error: {e}", file=sys.stderr)
        return EXIT_NO_GPU
    rows = bench(batch_sizes, hidden, steps, dtype, log=log, devices=devices)
    print(format_table(rows, hidden, dtype))
    if json_path:
        write_json_atomic(json_path, [asdict(r) for r in rows])
        print(f"wrote {json_path}", file=sys.stderr)
    if plot_path:
        plot(rows, plot_path, f"784-{'-'.join(map(str, hidden))}-10 training step")
        print(f"wrote {plot_path}", file=sys.stderr)
    return EXIT_OK
