"""The all-reduce per step beside the step, on 1, 2 and 4 MPI ranks (CPU ranks, MPICH from PyPI).

Each configuration is one ``mpiexec -n N`` job training 784-512-256-10 (float32, momentum SGD, global batch 256)
for 2 epochs on 12,000 synthetic MNIST-shaped rows; every rank times its steps and the all-reduce inside them
(``MPICommunicator.allreduce`` wrapped with a clock), and rank 0 reports medians. On 2 cores this is a table of
correctness and overhead, not of speed-up: 4 ranks oversubscribe the cores.

    python benchmarks/mpi_allreduce.py [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlp_xp.files import write_json_atomic  # noqa: E402

JOB = textwrap.dedent(
    """
    import json, statistics, sys, time
    import numpy as np
    import mlp_xp
    from mlp_xp import trainer
    from mlp_xp.distributed import from_environment

    comm = from_environment()  # (one BLAS thread a rank when the ranks fill the cores, as mlp-xp train does)
    reduce_times, step_times = [], []
    if comm.size > 1:
        inner = comm.allreduce

        def timed(buf):
            t = time.perf_counter()
            inner(buf)
            reduce_times.append(time.perf_counter() - t)

        comm.allreduce = timed
    last = [time.perf_counter()]

    def hook(step):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    trainer._step_hook = hook
    rng = np.random.default_rng(0)
    X, y = rng.random((12000, 784), dtype=np.float32), rng.integers(0, 10, 12000)
    model = mlp_xp.MLP([784, 512, 256, 10], device="cpu", seed=0)
    history = mlp_xp.fit(model, X, y, epochs=2, batch_size=256, lr=0.05, comm=comm)
    if comm.rank == 0:
        print(json.dumps({
            "ranks": comm.size,
            "step_ms": 1e3 * statistics.median(step_times[5:]),
            "allreduce_ms": 1e3 * statistics.median(reduce_times) if reduce_times else 0.0,
            "loss": history["train_loss"],
        }))
    """
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "job.py"
        script.write_text(JOB)
        for n in (1, 2, 4):
            cmd = [sys.executable, str(script)] if n == 1 else [mpiexec, "-n", str(n), sys.executable, str(script)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if r.returncode:
                raise SystemExit(r.stderr)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; global batch 256, float32, 784-512-256-10; medians over the run")
    print("| ranks | step (ms) | all-reduce in it (ms) | share of the step | epoch-2 loss |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        share = f"{100 * r['allreduce_ms'] / r['step_ms']:.0f}%" if r["ranks"] > 1 else "-"
        print(f"| {r['ranks']} | {r['step_ms']:.2f} | {r['allreduce_ms']:.2f} | {share} | {r['loss'][-1]:.6f} |")
    if args.json:
        write_json_atomic(args.json, {"cpu": cpu, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
