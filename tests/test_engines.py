"""Searches on Dask and Ray (through joblib): the same ranked table as in this process, one GPU per worker,
rows that survive a failed candidate, a failed engine or an interrupt, and clusters that clean up after
themselves. Each engine run is a subprocess under a timeout, so that a hung cluster fails a test instead of CI."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from .cli_runner import run

pytest.importorskip("sklearn")

SEARCH = "search --data digits --hidden 16 --epochs 2 --param lr=0.02,0.1,1e30 --param momentum=0.5,0.9 --device cpu"
TIMEOUT = 240


def cli(args: str, tmp_path, **env):
    """mlp-xp in a subprocess, its home and temporary folder inside tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = {**os.environ, "HOME": str(home), "MLP_XP_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, "-m", "mlp_xp", *args.split()],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
    )


def table(path) -> list:
    """The ranked rows of a --results JSON, timings and workers apart."""
    rows = json.loads(Path(path).read_text())["rows"]
    return [(r["rank"], r["candidate"], r["params"], r["score"], r["epochs"], r["status"]) for r in rows]


def leftovers(prefix: str) -> set:
    return {p.name for p in Path(tempfile.gettempdir()).glob(prefix + "*")} | {
        p.name for p in Path("/tmp").glob(prefix + "*")
    }


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq")
    r = cli(f"{SEARCH} --blas-threads 1 --results {tmp / 'seq.json'}", tmp)
    assert r.returncode == 0, r.stderr
    return table(tmp / "seq.json"), r


def test_the_sequential_table_has_its_diverged_candidates_as_rows(sequential):
    rows, r = sequential
    assert len(rows) == 6 and [row[5] for row in rows] == ["ok"] * 4 + ["diverged"] * 2
    assert "mlp-xp: candidate 5 diverged: training diverged in epoch 1" in r.stderr


def test_dask_local_cluster_gives_the_sequential_table_and_cleans_up(tmp_path, sequential):
    pytest.importorskip("dask.distributed")
    before = leftovers("mlpxp-dask-")
    r = cli(f"{SEARCH} --dask local:2 --results {tmp_path / 'dask.json'}", tmp_path)
    assert r.returncode == 0, r.stderr
    assert table(tmp_path / "dask.json") == sequential[0]
    assert "dask: a local cluster of 2 worker processes; 1 BLAS thread per candidate" in r.stderr
    assert " - distributed." not in r.stderr  # the cluster's own log lines are silenced
    workers = {row["worker"]["pid"] for row in json.loads((tmp_path / "dask.json").read_text())["rows"]}
    assert len(workers) == 2  # both workers trained candidates, neither in the client's process
    assert leftovers("mlpxp-dask-") == before


def test_ray_local_gives_the_sequential_table_and_cleans_up(tmp_path, sequential):
    pytest.importorskip("ray")
    before = leftovers("mlpxp-ray-")
    r = cli(f"{SEARCH} --ray local:2 --results {tmp_path / 'ray.json'}", tmp_path)
    assert r.returncode == 0, r.stderr
    assert table(tmp_path / "ray.json") == sequential[0]
    assert "ray: a local Ray with 2 CPUs and 0 GPUs: 2 candidates at once; 1 BLAS thread per candidate" in r.stderr
    assert leftovers("mlpxp-ray-") == before


PINNING = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mlp_xp import engines
    from mlp_xp.search import parse_space, run_search

    engines._visible_gpus = lambda: ["0", "1"]  # two GPUs, as this machine would list them
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 4)), np.arange(80) % 2
    with engines.open_engine(sys.argv[1], sys.argv[2], device="auto") as engine:
        rows = run_search(X[:60], y[:60], X[60:], y[60:], parse_space(["lr=0.01,0.02,0.03,0.04"]),
                          base_params={"hidden": (4,), "epochs": 1, "device": "auto"}, n_jobs=engine.workers)
    print(json.dumps({"describe": engine.describe, "seen": [r["worker"]["visible_gpus"] for r in rows],
                      "status": [r["status"] for r in rows]}))
    """
)


@pytest.mark.parametrize(("engine", "address"), [("dask", "local:2"), ("ray", "local:2")])
def test_each_worker_gets_one_gpu(tmp_path, engine, address):
    """With two GPUs listed, the workers see one each as CUDA_VISIBLE_DEVICES (Dask: set per worker; Ray: it
    assigns each candidate's GPU). No GPU here: "auto" then trains on the CPU, the pinning is what is checked."""
    pytest.importorskip("dask.distributed" if engine == "dask" else "ray")
    env = {**os.environ, "HOME": str(tmp_path), "MLP_XP_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, "-c", PINNING, engine, address], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["status"] == ["ok"] * 4
    assert set(got["seen"]) == {"0", "1"}, got
    assert ("one GPU each" if engine == "dask" else "one GPU per candidate") in got["describe"]


def test_an_engine_failure_keeps_the_finished_rows(tmp_path, capsys, monkeypatch):
    import mlp_xp.search as search

    real = search._results

    def dies_after_two(jobs, data, n_jobs, blas_threads):
        for k, row in enumerate(real(jobs, data, n_jobs, blas_threads)):
            if k == 2:
                raise OSError("worker lost")
            yield row

    monkeypatch.setattr(search, "_results", dies_after_two)
    results = tmp_path / "r.csv"
    code, out, err = run(capsys, f"{SEARCH} --results {results}")
    assert code == 1
    assert "stopped after 2 of 6 candidates: OSError: worker lost" in err
    assert len(out.strip().splitlines()) == 4  # the score line, the header and the two rows
    assert len(results.read_text().strip().splitlines()) == 3


def test_an_interrupted_search_writes_the_finished_rows(tmp_path, capsys, monkeypatch):
    import mlp_xp.search as search

    real = search._results

    def interrupted_after_one(jobs, data, n_jobs, blas_threads):
        for k, row in enumerate(real(jobs, data, n_jobs, blas_threads)):
            if k == 1:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(search, "_results", interrupted_after_one)
    results = tmp_path / "r.json"
    code, out, err = run(capsys, f"{SEARCH} --results {results}")
    assert code == 130 and "interrupted after 1 of 6 candidates" in err
    assert len(json.loads(results.read_text())["rows"]) == 1


def test_results_csv_and_plot(tmp_path, capsys):
    results, plot = tmp_path / "r.csv", tmp_path / "s.png"
    code, out, err = run(capsys, f"{SEARCH} --results {results} --plot {plot}")
    assert code == 0, err
    lines = results.read_text().splitlines()
    assert lines[0].split(",")[:8] == [
        "rank",
        "candidate",
        "status",
        "score",
        "epochs",
        "fit_seconds",
        "lr",
        "momentum",
    ]
    assert len(lines) == 7 and lines[-1].split(",")[2] == "diverged"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.splitlines()[0] == "score: each candidate's accuracy on the held-out rows"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--dask foo", "--dask foo: give local:N"),
        ("--dask local:0", "give local:N with N >= 1"),
        ("--ray local:x", "--ray local:x: give local:N"),
        ("--dask local:2 --ray", "give one of them"),
        ("--results r.txt", "--results writes CSV or JSON"),
        ("--blas-threads 0", "--blas-threads"),
    ],
)
def test_bad_engine_flags_are_refused_before_any_work(tmp_path, capsys, flags, message):
    code, _, err = run(capsys, f"{SEARCH} {flags}")
    assert code == 2 and message in err, err


def test_a_gpu_other_than_cuda0_is_refused_on_an_engine(capsys):
    from mlp_xp.engines import open_engine
    from mlp_xp.errors import ConfigError

    with pytest.raises(ConfigError, match="which it sees as cuda:0; use --device cuda or auto"):
        with open_engine("dask", "local:1", device="cuda:1"):
            pass


def test_gridsearchcv_on_dask_equals_sequential():
    """The estimator scales out the way mlp-xp search does: GridSearchCV through joblib's Dask backend."""
    distributed = pytest.importorskip("dask.distributed")
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from mlp_xp.estimator import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16)[:600]
    y = y[:600]
    grid = {"lr": [0.02, 0.1], "hidden": [(8,), (16,)]}
    sequential = GridSearchCV(MLPClassifier(epochs=2), grid, cv=2).fit(X, y).cv_results_["mean_test_score"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster), joblib.parallel_backend("dask"):
            on_dask = GridSearchCV(MLPClassifier(epochs=2), grid, cv=2, n_jobs=-1).fit(X, y)
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"], sequential)


def test_a_signal_while_the_engine_shuts_down_keeps_the_whole_table(tmp_path, capsys, monkeypatch):
    """Every candidate had finished when Ctrl-C reached the engine's shutdown (Ray's takes seconds): the table
    and --results are still written, and the status is 130."""
    import contextlib

    import mlp_xp.engines as engines

    @contextlib.contextmanager
    def interrupted_on_close(name, address, **kw):
        yield engines.Engine(name, 1, f"{name}: a stand-in engine")
        raise KeyboardInterrupt

    monkeypatch.setattr(engines, "open_engine", interrupted_on_close)
    results = tmp_path / "r.json"
    code, out, err = run(capsys, f"{SEARCH} --dask local:1 --results {results}")
    assert code == 130 and "while the engine shut down, after every candidate had finished" in err
    assert len(json.loads(results.read_text())["rows"]) == 6 and "rank" in out
