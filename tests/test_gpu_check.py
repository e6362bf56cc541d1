"""benchmarks/gpu_check.py, the prepared check for a lent GPU, on a machine without one: the one-line exit 3, the
sizes of --quick, the part wrapper, the test counter, the report writer, and the parts that run on the CPU model
of CuPy (tests/cuda_host) with tiny sizes."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlp_xp.backend import cuda_status, get_backend
from mlp_xp.backend.base import matmul_shape
from mlp_xp.errors import EXIT_FAILED, EXIT_NO_GPU

from .conftest import cuda_host_backend, load_benchmark

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


gpu_check = load_benchmark("gpu_check")


def _context(plan, **kw):
    defaults = dict(
        cuda=lambda: pytest.fail("no CUDA backend in this test"),
        cuda_kernel_gemm=lambda: pytest.fail("no CUDA backend in this test"),
        cpu=lambda: get_backend("cpu"),
        torch=lambda: (None, "PyTorch left out of this test"),
    )
    return gpu_check.Context(plan=plan, **{**defaults, **kw})


@pytest.mark.skipif(cuda_status(0)[0], reason="this machine has a usable GPU")
@pytest.mark.parametrize("extra", [[], ["--quick"]], ids=["full", "quick"])
def test_without_a_gpu_it_says_why_in_one_line_and_exits_3_within_10_s(tmp_path, extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - t
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == EXIT_NO_GPU, r.stdout + r.stderr
    assert len(lines) == 1, lines
    assert "no usable GPU" in lines[0] and ":" in lines[0]
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert not (tmp_path / "out").exists()  # nothing was checked, so nothing is reported


def test_the_script_imports_nothing_heavy_before_the_gpu_check():
    heavy = ("torch", "sklearn", "pytest", "matplotlib", "cupy")
    code = f"import runpy, sys; runpy.run_path({str(SCRIPT)!r}); print([m for m in {heavy!r} if m in sys.modules])"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_quick_scales_every_size_down():
    full, quick = gpu_check.plan_for(False), gpu_check.plan_for(True)
    assert not full.quick and quick.quick
    assert set(quick.batch_sizes) <= set(full.batch_sizes) and len(quick.batch_sizes) < len(full.batch_sizes)
    assert sorted(full.batch_sizes) == [64, 256, 1024, 4096]
    # the most telling batch sizes run first, so that a spent budget costs the others
    assert quick.batch_sizes == full.batch_sizes[:2] == (256, 4096)
    assert quick.steps < full.steps and quick.repeats <= full.repeats and quick.gemm_launches < full.gemm_launches
    assert quick.train_rows < full.train_rows and full.train_rows == 20000
    assert full.big_rows > gpu_check.OLD_ROW_LIMIT == 65535 * 64 and quick.big_rows == 0
    assert full.compile_runs == 2 and quick.compile_runs == 0
    assert full.gemm_batches == quick.gemm_batches == (256, 4096)
    assert full.sizes == quick.sizes == (784, 512, 256, 10)
    assert full.epochs == quick.epochs == 3
    # --quick leaves the per-case op tests to the selfcheck; both select the gpu marker
    assert "-k" not in full.pytest_args and "not test_op_matches_its_reference" in quick.pytest_args
    for plan in (full, quick):
        assert plan.pytest_args[:5] == ("-q", "-m", "gpu", "-p", "no:cacheprovider")


@pytest.mark.parametrize("quick, limit", [(False, 240), (True, 60)])
def test_the_budgets_fit_the_time_limit_with_room_to_overrun(quick, limit):
    plan = gpu_check.plan_for(quick)
    assert set(plan.budgets) == set(gpu_check.PARTS)
    assert sum(plan.budgets.values()) <= plan.total <= limit - 4
    assert all(b > 0 for b in plan.budgets.values())
    # a compile run that hangs is cut off inside the findings' budget
    assert plan.compile_timeout * plan.compile_runs <= plan.budgets["findings"] + 30


def test_a_failing_part_is_recorded_with_its_traceback_and_the_next_still_runs(tmp_path):
    ctx = _context(gpu_check.plan_for(True))
    lines = []

    def broken(ctx, res):
        res["half"] = 1.5  # what a part measured before it failed is kept
        raise ValueError("the device fell over")

    def fine(ctx, res):
        res["x"] = 2
        assert (tmp_path / "gpu_check.json").exists()  # written after the first part already
        return True, "x is 2"

    results = {"mode": "test", "parts": []}
    ok = gpu_check.run_parts(ctx, [("kernels", broken), ("steps", fine)], results, tmp_path, log=lines.append)
    assert not ok and not results["ok"]
    first, second = results["parts"]
    assert first["part"] == "kernels" and not first["ok"]
    assert "ValueError: the device fell over" in first["error"] and "Traceback" in first["error"]
    assert first["results"] == {"half": 1.5}
    assert first["summary"].startswith("raised ValueError: the device fell over")
    assert second["ok"] and second["results"] == {"x": 2} and second["error"] is None
    assert len(lines) == 2
    assert lines[0].startswith("[kernel checks] FAILED raised ValueError") and lines[0].endswith(" s)")
    assert lines[1].startswith("[step benchmark] ok x is 2 (")
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [p["ok"] for p in saved["parts"]] == [False, True]
    assert "the device fell over" in (tmp_path / "gpu_check.md").read_text()


def test_a_part_that_returns_false_fails_and_a_spent_run_skips_the_rest(tmp_path):
    ctx = _context(gpu_check.plan_for(True))
    ctx.run_deadline = time.perf_counter() + 3600
    calls = []

    def slow(ctx, res):
        calls.append("slow")
        ctx.run_deadline = time.perf_counter()  # as if this part used up the run's time
        return False, "a number was out of range"

    def never(ctx, res):
        calls.append("never")
        return True, ""

    results = {"parts": []}
    assert not gpu_check.run_parts(ctx, [("tests", slow), ("training", never)], results, None, log=lambda m: None)
    assert calls == ["slow"]
    assert results["parts"][0]["summary"] == "a number was out of range" and not results["parts"][0]["ok"]
    assert "time budget was spent" in results["parts"][1]["summary"] and not results["parts"][1]["ok"]


def test_an_interrupted_part_ends_the_run_and_the_rest_are_recorded_as_not_run(tmp_path):
    ctx = _context(gpu_check.plan_for(True))

    def interrupted(ctx, res):
        res["done"] = 1
        ctx.stopped = "SIGTERM"
        raise KeyboardInterrupt

    results = {"parts": []}
    gpu_check.run_parts(ctx, [("tests", interrupted), ("steps", lambda c, r: (True, ""))], results, tmp_path, log=print)
    assert [p["part"] for p in results["parts"]] == ["tests", "steps"]
    assert "interrupted (SIGTERM)" in results["parts"][0]["summary"] and results["parts"][0]["results"] == {"done": 1}
    assert results["parts"][1]["summary"].startswith("not run: the run was interrupted")
    assert json.loads((tmp_path / "gpu_check.json").read_text())["parts"][0]["results"] == {"done": 1}


SAMPLE_TESTS = """
import pytest

def test_passes():
    pass

def test_fails():
    assert 1 == 2, "one is not two"

def test_skips():
    pytest.skip("no device here")

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False
"""


def _sample(tmp_path, body=SAMPLE_TESTS) -> Path:
    folder = tmp_path / "sample"
    folder.mkdir()
    (folder / f"test_gpu_check_sample_{tmp_path.name}.py").write_text(body)
    return folder


def test_the_tests_part_counts_outcomes_in_process(tmp_path):
    folder = _sample(tmp_path)
    plan = dataclasses.replace(
        gpu_check.plan_for(True), pytest_args=("-q", "-p", "no:cacheprovider", "--import-mode=importlib", str(folder))
    )
    ctx = _context(plan)
    res = {}
    ok, summary = gpu_check.part_tests(ctx, res)
    assert not ok
    assert res["exit_code"] == 1 and res["selected"] == 4 and res["stopped"] is None
    assert res["counts"] == {"passed": 1, "failed": 1, "skipped": 1, "xfailed": 1}
    assert res["failures"][0]["test"].endswith("::test_fails") and "one is not two" in res["failures"][0]["message"]
    assert res["skip_reasons"] == {"Skipped: no device here": 1}
    assert summary == "exit 1: 1 passed, 1 failed, 0 errors, 1 skipped of 4"


def test_the_tests_part_passes_a_clean_run_and_stops_at_its_deadline(tmp_path):
    folder = _sample(tmp_path, "def test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n")
    args = ("-q", "-p", "no:cacheprovider", "--import-mode=importlib", str(folder))
    ctx = _context(dataclasses.replace(gpu_check.plan_for(True), pytest_args=args))
    res = {}
    assert gpu_check.part_tests(ctx, res) == (True, "exit 0: 3 passed, 0 failed, 0 errors, 0 skipped of 3")
    ctx.deadline = time.perf_counter() - 1  # spent: the run ends after the test that finds it so
    res = {}
    ok, summary = gpu_check.part_tests(ctx, res)
    assert not ok and res["counts"] == {"passed": 1} and res["exit_code"] == 2
    assert res["stopped"] == "stopped by the time budget after 1 of 3 tests" and res["stopped"] in summary


def test_the_kernel_checks_part_summarizes_the_selfcheck(monkeypatch):
    from mlp_xp import selfcheck

    class FakeKernels:
        def preload(self, names):
            self.names = list(names)

    backend = type("Backend", (), {"kernels": FakeKernels()})()
    results = [
        selfcheck.CheckResult("matmul", "float32", 12, 0.25),
        selfcheck.CheckResult("bias_act", "float64", 30, 3.5, ["relu-1x1: 3.5 x tolerance at output 0"]),
    ]
    monkeypatch.setattr(selfcheck, "timed_check", lambda ops: (results, 1.25))
    res = {}
    ok, summary = gpu_check.part_kernels(_context(gpu_check.plan_for(True), cuda=lambda: backend), res)
    assert not ok
    assert summary == "1/2 ops verified, 1 failing, worst 3.5 x tolerance (42 cases)"
    assert res["ops"][1]["failures"] == ["relu-1x1: 3.5 x tolerance at output 0"] and res["check_s"] == 1.25
    assert "gemm<float>" in backend.kernels.names


def test_the_gemm_shapes_are_the_steps_products():
    shapes = gpu_check.gemm_shapes((784, 512, 256, 10), 256)
    assert [s["name"] for s in shapes][:3] == ["L1 forward h@W", "L1 dW = h^T g", "L2 forward h@W"]
    assert len(shapes) == 8  # no dh below the first layer: the step never needs dL/dX
    for s in shapes:
        a, b, out = np.empty(s["a"]), np.empty(s["b"]), np.empty((s["m"], s["n"]))
        matmul_shape(a, b, out, s["ta"], s["tb"])  # raises where the shapes do not multiply
        assert (s["a"][0] if s["ta"] else s["a"][1]) == s["k"]
    assert {"mnk": (784, 512, 256)} == {"mnk": next((s["m"], s["n"], s["k"]) for s in shapes if s["ta"])}


def _results() -> dict:
    """A hand-made run: every part's results as the parts write them, one part failed with a traceback."""
    return {
        "mode": "full",
        "started": "2030-01-01T00:00:00+00:00",
        "seconds": 201.5,
        "ok": False,
        "machine": {"gpu": "NVIDIA H200", "cuda_driver": "13.0", "cupy": "14.2.0", "cpu": "Intel Xeon"},
        "parts": [
            {
                "part": "tests",
                "title": "gpu tests",
                "ok": True,
                "seconds": 40.0,
                "budget_s": 75.0,
                "summary": "exit 0: 941 passed",
                "error": None,
                "results": {
                    "args": ["-q", "-m", "gpu"],
                    "exit_code": 0,
                    "selected": 941,
                    "counts": {"passed": 941},
                    "failures": [],
                    "skip_reasons": {},
                    "stopped": None,
                },
            },
            {
                "part": "kernels",
                "title": "kernel checks",
                "ok": True,
                "seconds": 3.0,
                "budget_s": 20.0,
                "summary": "1/1 ops verified",
                "error": None,
                "results": {
                    "preload_s": 0.0,
                    "check_s": 2.5,
                    "worst": 0.5,
                    "ops": [{"op": "matmul", "dtype": "float32", "cases": 9, "worst": 0.5, "ok": True, "failures": []}],
                },
            },
            {
                "part": "steps",
                "title": "step benchmark",
                "ok": True,
                "seconds": 20.0,
                "budget_s": 40.0,
                "summary": "batch 4096: plain 0.5 ms",
                "error": None,
                "results": {
                    "sizes": [784, 512, 256, 10],
                    "steps": 50,
                    "repeats": 5,
                    "warmup": 5,
                    "torch": "PyTorch not importable (ModuleNotFoundError: No module named 'torch')",
                    "skipped_batch_sizes": [4096],
                    "graph_gemm_fallback": "kernel (OSError: libcublas.so: cannot open shared object file)",
                    "rows": [
                        {
                            "row": "plain",
                            "label": "plain step (cuBLAS)",
                            "batch_size": 1024,
                            "ms_per_step": 0.5,
                            "samples_per_s": 2048000.0,
                            "speedup_vs_plain": 1.0,
                        },
                        {
                            "row": "graph_cublas",
                            "label": "CUDA graph, cuBLAS asked: fell back to the in-house GEMM",
                            "batch_size": 1024,
                            "ms_per_step": 0.25,
                            "samples_per_s": 4096000.0,
                            "speedup_vs_plain": 2.0,
                            "graph_gemm": "kernel (OSError: libcublas.so)",
                        },
                        {
                            "row": "graph_kernel",
                            "label": "CUDA graph, in-house GEMM",
                            "batch_size": 1024,
                            "error": "Traceback (most recent call last):\nGraphCaptureError: empty graph",
                        },
                    ],
                },
            },
            {
                "part": "findings",
                "title": "gpu findings",
                "ok": False,
                "seconds": 50.0,
                "budget_s": 55.0,
                "summary": "FAILED: compile",
                "error": None,
                "results": {
                    "gemm": {
                        "rows": [
                            {
                                "batch": 256,
                                "product": "L1 forward h@W",
                                "mnk": [256, 512, 784],
                                "kernel_gflops": 5000.0,
                                "cublas_gflops": 25000.0,
                                "kernel_vs_cublas": 0.2,
                                "max_rel_error": 3e-7,
                                "ok": True,
                            }
                        ],
                        "launches": 20,
                        "repeats": 3,
                        "rtol": 1e-4,
                        "ok": True,
                    },
                    "big_launch": {
                        "rows": 4200000,
                        "shape": "(4200000 x 8) @ (8 x 8)",
                        "grid": [65625, 1],
                        "ms": 2.5,
                        "checked_rows": [[0, 64]],
                        "max_rel_error": 1e-7,
                        "ok": True,
                    },
                    "asarray": {
                        "shape": [4096, 784],
                        "mib": 12.25,
                        "calls": 20,
                        "ms_median": 1.5,
                        "ms_min": 1.2,
                        "gb_per_s": 8.5,
                        "cupy_asarray_ms_median": 1.4,
                        "ok": True,
                    },
                    "compile": {
                        "runs": [
                            {"run": 1, "preload_s": 9.0, "startup_s": 2.0, "process_s": 11.5, "cache_files": 5},
                            {"run": 2, "error": "timed out after 40 s"},
                        ],
                        "ok": False,
                    },
                    "graph_matmul": {
                        "batch": 256,
                        "graph_gemm": "cublas",
                        "graph_nodes": 3,
                        "rows": [
                            {
                                "product": "forward h@W",
                                "shape": [256, 512],
                                "bitwise_equal": True,
                                "max_rel_error": 0.0,
                                "ok": True,
                            }
                        ],
                        "ok": True,
                    },
                },
            },
            {
                "part": "training",
                "title": "training",
                "ok": False,
                "seconds": 30.0,
                "budget_s": 35.0,
                "summary": "raised RuntimeError: boom; partial results kept",
                "error": "Traceback (most recent call last):\nRuntimeError: boom",
                "results": {
                    "rows": 20000,
                    "sizes": [784, 512, 256, 10],
                    "settings": {"epochs": 2},
                    "rtol": 0.01,
                    "runs": {
                        "cpu": {
                            "backend": "cpu (NumPy)",
                            "train_loss": [2.25, 1.875],
                            "train_accuracy": [0.16, 0.35],
                            "epoch_seconds": [0.4, 0.4],
                            "fit_seconds": 1.0,
                        },
                        "cuda": {
                            "backend": "cuda:0 (NVIDIA H200)",
                            "train_loss": [2.2501, 1.8751],
                            "train_accuracy": [0.16, 0.35],
                            "epoch_seconds": [0.05, 0.04],
                            "fit_seconds": 0.2,
                        },
                        "cuda_graph": {"skipped": "the part's time budget was spent"},
                    },
                    "cuda_vs_cpu_max_rel_diff": 5.3e-5,
                    "worst": float("inf"),
                },
            },
        ],
    }


def test_the_report_has_the_machine_a_table_per_part_and_the_tracebacks(tmp_path):
    md_path, json_path = gpu_check.write_report(_results(), tmp_path / "new" / "folder")
    md = md_path.read_text()
    assert md.startswith("# mlp_xp GPU check\n")
    assert "| gpu | NVIDIA H200 |" in md and "| cuda_driver | 13.0 |" in md
    assert "| gpu tests | ok | 40.0 | 75 | exit 0: 941 passed |" in md
    assert "| training | FAILED | 30.0 | 35 | raised RuntimeError: boom; partial results kept |" in md
    assert "| 0 | 941 | 941 | 0 | 0 | 0 | 0 | 0 | 0 | no |" in md
    assert "| matmul | float32 | 9 | verified | 0.5 |  |" in md
    assert "| plain step (cuBLAS) | 1024 | 0.5 | 2,048,000 | 1.00 |  |" in md
    assert "| CUDA graph, in-house GEMM | 1024 | - | - | - | FAILED: GraphCaptureError: empty graph |" in md
    assert "fell back to the in-house GEMM: `kernel (OSError" in md
    assert "Batch sizes not run (the part's time budget was spent): [4096]" in md
    assert "| 256 | L1 forward h@W | 256 x 512 x 784 | 5,000 | 25,000 | 0.20 | 3.0e-07 |" in md
    assert "| (4200000 x 8) @ (8 x 8) | [65625, 1] | 2.5 | [[0, 64]] | 1.0e-07 |" in md
    assert "| [4096, 784] | 12.2 | 20 | 1.500 | 1.200 | 8.5 | 1.400 |" in md
    assert "| 2 | - | - | - | - | timed out after 40 s |" in md
    assert "### (c) kernel compile and load in fresh processes: FAILED" in md
    assert "| forward h@W | [256, 512] | yes | 0.0e+00 |" in md
    assert "| 2 | 1.875 | 1.8751 |" in md
    assert "| cuda vs cpu | 5.30e-05 |" in md
    assert "The cuda_graph run was skipped: the part's time budget was spent." in md
    assert "RuntimeError: boom" in md.split("## training")[1]
    saved = json.loads(json_path.read_text())  # strict JSON: inf as a string
    assert saved["parts"][4]["results"]["worst"] == "inf"
    assert saved["parts"][2]["results"]["rows"][0]["ms_per_step"] == 0.5
    assert sorted(p.name for p in md_path.parent.iterdir()) == ["gpu_check.json", "gpu_check.md"]  # no temp files


def test_a_section_that_cannot_be_laid_out_is_shown_as_json():
    results = {"parts": [{"part": "steps", "title": "step benchmark", "ok": False, "results": {"rows": [{"x": 1}]}}]}
    md = gpu_check.format_report(results)
    assert "could not be laid out" in md and '"x": 1' in md


def test_plain_makes_strict_json_values():
    assert gpu_check._plain({"a": (np.float32(1.5), np.int64(2), math.nan), 3: -math.inf, "b": None}) == {
        "a": [1.5, 2, "nan"],
        "3": "-inf",
        "b": None,
    }


def _tiny(**changes):
    plan = gpu_check.plan_for(False)
    tiny = dict(
        sizes=(784, 16, 8, 10),
        batch_sizes=(8, 32),
        steps=2,
        repeats=2,
        warmup=2,
        gemm_batches=(8,),
        gemm_launches=2,
        gemm_repeats=2,
        big_rows=0,
        asarray_shape=(64, 784),
        asarray_calls=3,
        compile_runs=0,
        graph_batch=8,
        train_rows=256,
        train_batch=32,
    )
    return dataclasses.replace(plan, **{**tiny, **changes})


@pytest.fixture
def host_cuda(host_kernels):
    """The CUDA backend and its gemm="kernel" twin, on the CPU model of CuPy."""
    return cuda_host_backend(host_kernels), cuda_host_backend(host_kernels, gemm="kernel")


def test_the_gpu_parts_run_on_the_cpu_model_of_cupy(host_cuda, tmp_path):
    cuda, kernel = host_cuda
    ctx = _context(_tiny(), cuda=lambda: cuda, cuda_kernel_gemm=lambda: kernel)
    ctx.run_deadline = time.perf_counter() + 120
    results = {"parts": []}
    parts = [(k, gpu_check.PART_FUNCTIONS[k]) for k in ("steps", "findings", "training")]
    ok = gpu_check.run_parts(ctx, parts, results, tmp_path, log=lambda m: None)
    steps, findings, training = (p["results"] for p in results["parts"])
    assert ok, [(p["summary"], p.get("error")) for p in results["parts"]]
    assert [(r["row"], r["batch_size"]) for r in steps["rows"]] == [
        (k, b) for b in (8, 32) for k in ("plain", "graph_kernel", "graph_cublas")
    ]
    assert all(r["ms_per_step"] > 0 and len(r["repeats_ms"]) == 2 for r in steps["rows"])
    assert steps["rows"][2]["graph_gemm"] == "cublas" and steps["rows"][1]["graph_gemm"] == "kernel"
    assert len(findings["gemm"]["rows"]) == 8 and all(r["max_rel_error"] < 1e-5 for r in findings["gemm"]["rows"])
    assert findings["big_launch"] == {"skipped": "full run only", "ok": True} and findings["compile"]["ok"]
    assert findings["graph_matmul"]["graph_gemm"] == "cublas" and findings["graph_matmul"]["graph_nodes"] >= 3
    assert all(r["bitwise_equal"] for r in findings["graph_matmul"]["rows"])
    assert findings["asarray"]["calls"] == 3 and findings["asarray"]["ms_median"] > 0
    assert set(training["runs"]) == {"cpu", "cuda", "cuda_graph"}
    assert all(len(r["train_loss"]) == 3 for r in training["runs"].values())
    assert training["cuda_vs_cpu_max_rel_diff"] < 1e-4 and training["cuda_graph_vs_cpu_max_rel_diff"] < 1e-4
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## step benchmark: ok" in md and "## gpu findings: ok" in md and "## training: ok" in md


def test_the_step_benchmark_stops_adding_batch_sizes_when_its_budget_is_spent(host_cuda):
    cuda, kernel = host_cuda
    ctx = _context(_tiny(), cuda=lambda: cuda, cuda_kernel_gemm=lambda: kernel)
    ctx.deadline = time.perf_counter() + 0.001  # enough to start the first row, not to finish it
    res = {}
    ok, summary = gpu_check.part_steps(ctx, res)
    assert ok and res["skipped_batch_sizes"] == [32]
    assert "ms_per_step" in res["rows"][0] and all("skipped" in r for r in res["rows"][1:])
    assert "batch sizes [32] skipped (budget)" in summary and "no PyTorch rows" in summary


def test_a_big_launch_is_checked_past_the_old_grid_limit(host_cuda, monkeypatch):
    # The CPU model runs gemm.cu's blocks one by one: 4.2 million rows would take minutes, so only the plumbing
    # (the rows checked, the NaN fill, the result) is shown here, on a launch just past the old limit.
    cuda, _ = host_cuda
    monkeypatch.setattr(gpu_check, "OLD_ROW_LIMIT", 640)
    ctx = _context(_tiny(big_rows=700), cuda=lambda: cuda)
    out = gpu_check.finding_big_launch(ctx, cuda)
    assert out["ok"] and out["max_rel_error"] < 1e-6
    assert out["checked_rows"] == [[0, 64], [576, 700], [636, 700]] and out["grid"] == [11, 1]


def test_a_finding_that_raises_is_recorded_and_the_others_still_run(host_cuda, monkeypatch):
    cuda, _ = host_cuda
    monkeypatch.setattr(gpu_check, "finding_gemm", lambda ctx, ops: 1 / 0)
    ctx = _context(_tiny(), cuda=lambda: cuda)
    res = {}
    ok, summary = gpu_check.part_findings(ctx, res)
    assert not ok and "ZeroDivisionError" in res["gemm"]["error"]
    assert res["asarray"]["ok"] and res["graph_matmul"]["ok"]
    assert summary.endswith("FAILED: gemm")


def test_main_runs_only_the_parts_asked_for(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "machine_info", lambda index=0: {"gpu": "a test GPU"})
    import mlp_xp.backend

    monkeypatch.setattr(mlp_xp.backend, "cuda_status", lambda index=0: (True, "a test GPU"))
    monkeypatch.setattr(gpu_check, "gpu_context", lambda plan: _context(plan))
    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "kernels", lambda ctx, res: (False, "1/2 ops verified"))
    monkeypatch.setattr("signal.signal", lambda *a: None)  # leave pytest's own handler alone
    assert gpu_check.main(["--out", str(tmp_path), "--parts", "kernels", "--quick"]) == EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gpu_check: a test GPU, quick run, budget 56 s")
    assert out[1].startswith("[kernel checks] FAILED 1/2 ops verified (")
    assert out[2].startswith("gpu_check: 0/1 parts ok in ")
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["mode"] == "quick" and [p["part"] for p in saved["parts"]] == ["kernels"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--parts", "nonsense"])


def test_an_out_path_that_is_a_file_is_refused_first(tmp_path):
    import subprocess
    import sys

    afile = tmp_path / "afile"
    afile.write_text("x")
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(afile)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        r.returncode == 2
        and r.stderr.strip() == f"gpu_check: --out {afile} is a file, not a folder: give a folder for the report"
    )
