"""Search throughput: the same grid of candidates in this process and on local Dask and Ray clusters, alternating.

Each configuration runs ``mlp-xp search`` as a subprocess (cluster start and stop included, as a user sees it)
on Debian's Fashion-MNIST (48,000 training rows after the holdout) with a 256-unit hidden layer, 2 epochs, 16
candidates (lr x momentum), one BLAS thread per candidate unless said; candidates per minute are 16 / wall time
x 60, medians over rounds. Every configuration's ranked table (timings apart) is compared with the sequential one.

    python benchmarks/search_engines.py --rounds 3 [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlp_xp.files import write_json_atomic  # noqa: E402

SEARCH = (
    "search --data fashion-mnist --hidden 256 --epochs 2 --param lr=0.01,0.02,0.05,0.1 "
    "--param momentum=0.0,0.5,0.8,0.9 --device cpu"
)
CANDIDATES = 16
CONFIGS = {
    "sequential, 1 BLAS thread": "--blas-threads 1",
    "sequential, 2 BLAS threads": "--blas-threads 2",
    "dask local:2": "--dask local:2",
    "ray local:2": "--ray local:2",
}


def one(flags: str, out: Path) -> tuple[float, list]:
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "mlp_xp", *SEARCH.split(), *flags.split(), "--results", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{flags}: {r.stderr}")
    rows = json.loads(out.read_text())["rows"]
    return seconds, [(x["rank"], x["candidate"], x["score"], x["epochs"]) for x in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            names = list(CONFIGS) if k % 2 == 0 else list(reversed(CONFIGS))
            for name in names:
                seconds, table = one(CONFIGS[name], Path(tmp) / "r.json")
                times[name].append(seconds)
                tables[name] = table
    reference = tables["sequential, 1 BLAS thread"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(
        f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; medians of {args.rounds} rounds"
    )
    print("| where | seconds | candidates per minute | same table as sequential |")
    print("|---|---:|---:|---|")
    result = {"cpu": cpu, "cores": os.cpu_count(), "rounds": args.rounds, "rows": []}
    for name in CONFIGS:
        s = statistics.median(times[name])
        same = tables[name] == reference
        print(f"| {name} | {s:.1f} | {CANDIDATES / s * 60:.1f} | {'yes' if same else 'NO'} |")
        result["rows"].append({"where": name, "seconds": times[name], "median": s, "same_table": same})
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
