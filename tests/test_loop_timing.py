"""The timing of the compiled CPU loops against the NumPy path (mlp_xp/backend/loop_timing.py): its cases are
the step's shapes on data of the right make, its lines in ``mlp-xp doctor`` appear with numbers in them, and
benchmarks/cpu_loops.py writes its table and JSON. (What the numbers are is measured, not tested.)"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mlp_xp import doctor, selfcheck
from mlp_xp.backend import cpu_loops, loop_timing
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.backend.scratch import ScratchCache

from .conftest import load_benchmark
from .test_cpu_loops import _kernels_or_skip

#: a doctor line: name, compiled us, NumPy us, ratio (and a mark when slower)
ROW = re.compile(r"^    (\S+ .*?) +(\d+\.\d) us +(\d+\.\d) us +(\d+\.\d\d)x(  SLOWER than NumPy)?$")
QUICK = {"rounds": 1, "seconds": 0.0002}


@pytest.fixture(scope="module")
def loops():
    return _kernels_or_skip()


def test_the_cases_are_the_shapes_of_the_step():
    names = [c.name for c in loop_timing.cases()]
    for act in loop_timing.FORWARD_ACTIVATIONS:
        assert f"bias_act {act} 128x512" in names and f"bias_act {act} 128x256" in names
    for act in loop_timing.BACKWARD_ACTIVATIONS:
        assert f"act_backward {act} 128x512" in names and f"act_backward {act} 128x256" in names
    # the output layer: its bias (identity at the logits' width), bias gradient and loss
    assert {"bias_act identity 128x10", "bias_grad 128x10", "softmax_xent 128x10"} <= set(names)
    assert {"bias_grad 128x512", "bias_grad 128x256"} <= set(names)
    assert sum(n.startswith(("flush_subnormals 535818", "adam_update 535818")) for n in names) == 3
    assert len(names) == len(set(names))
    assert all(a.dtype == np.float64 for c in loop_timing.cases(np.float64) for a in c.inputs.values() if a.ndim > 1)


@pytest.mark.parametrize("real", [False, True], ids=["synthetic", "image-like batch"])
def test_a_relu_layer_is_about_half_zeros_and_its_gradient_of_either_sign(real):
    rng = np.random.default_rng(1)
    X = rng.random((200, 784)) * (rng.random((200, 784)) < 0.5) if real else None  # blank pixels, as in images
    y = rng.integers(0, 10, 200) if real else None
    arrays = loop_timing.step_arrays(np.float32, "relu", X, y)
    for h, dh in zip(arrays["h"], arrays["dh"]):
        assert h.dtype == np.float32 and h.shape == dh.shape and h.shape[0] == 128
        assert 0.2 < np.mean(h == 0) < 0.8
        assert 0.3 < np.mean(dh > 0) < 0.7
    assert arrays["labels"].dtype == np.int32 and arrays["logits"].shape == (128, 10)


def test_a_velocity_case_is_partly_subnormal():
    (case,) = [c for c in loop_timing.cases() if c.op == "flush_subnormals"]
    v = case.inputs["v"]
    share = np.mean((v != 0) & (np.abs(v) < np.finfo(v.dtype).tiny))
    assert abs(share - loop_timing.SUBNORMAL_SHARE) < 0.01


def test_measure_restores_the_inputs_and_times_each_build(loops):
    case = next(c for c in loop_timing.cases() if c.name == "act_backward leaky_relu 128x256")
    before = {k: v.copy() for k, v in case.inputs.items()}
    t = loop_timing.measure(case, loops, others={"again": loops}, **QUICK)
    assert set(t.rounds) == {"compiled", "again", "numpy"} and all(len(v) == 1 for v in t.rounds.values())
    assert t.compiled > 0 and t.numpy > 0 and t.ratio == t.compiled / t.numpy
    for k, v in before.items():  # the pristine inputs are never written
        np.testing.assert_array_equal(case.inputs[k], v)
    row = t.as_dict()
    assert row["op"] == "act_backward" and row["case"] == "leaky_relu 128x256" and row["ratio"] > 0


def test_both_sides_compute_the_same(loops):
    """A timing compares like with like: on each case, the compiled call and the NumPy side give the same
    outputs (up to rounding)."""
    for case in loop_timing.cases():
        outs = []
        for side in ("compiled", "numpy"):
            work = {k: v.copy() for k, v in case.inputs.items()}
            fn = case.compiled(work, loops) if side == "compiled" else case.numpy(work, ScratchCache())
            with np.errstate(all="ignore"):
                fn()
            outs.append({k: work[k] for k in case.mutable})
        for k in case.mutable:  # (within float32 rounding of the largest entry: p - 1 cancels in the softmax)
            scale = float(np.abs(outs[1][k]).max())
            np.testing.assert_allclose(outs[0][k], outs[1][k], rtol=2e-5, atol=2e-6 * scale, err_msg=case.name)


def test_the_machine_is_named():
    m = loop_timing.machine()
    assert m["cpu"] and m["cores"] >= 1 and m["numpy"] == np.__version__ and m["blas"]
    assert m["compiled_loops"] == cpu_loops.status()
    line = loop_timing.describe(m)
    assert m["cpu"] in line and "cores" in line and "NumPy" in line
    if m["avx2"] and not m["avx512f"]:
        assert "AVX2" in line and "no AVX-512" in line


def _rows(lines):
    rows = [ROW.match(line) for line in lines]
    return [r for r in rows if r]


def test_the_doctor_lines_have_a_number_for_each_loop(loops):
    lines = loop_timing.doctor_lines(loops, **QUICK)
    assert lines[0].startswith("  compiled loop vs NumPy path on ")
    rows = _rows(lines)
    assert [r.group(1) for r in rows] == [c.name for c in loop_timing.doctor_cases()]
    for r in rows:
        compiled, numpy_, ratio = (float(r.group(i)) for i in (2, 3, 4))
        assert compiled > 0 and numpy_ > 0 and ratio > 0
        assert (r.group(5) is not None) == (ratio > 1)


def test_the_doctor_prints_them_after_the_cpu_check(loops, capsys, monkeypatch):
    few = [c for c in selfcheck.cases() if c.op == "bias_act"][:2]
    monkeypatch.setattr(doctor, "timed_check", lambda ops: (selfcheck.check_backend(ops, few), 0.01))
    real = loop_timing.doctor_lines
    monkeypatch.setattr(loop_timing, "doctor_lines", lambda k: real(k, **QUICK))
    assert doctor.run_doctor("cpu") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    verified = next(i for i, line in enumerate(lines) if "ops verified" in line)
    assert lines[verified + 1].startswith("recorded step: ")  # (the replay's check, tests/test_program.py)
    assert lines[verified + 2].startswith("  compiled loop vs NumPy path on ")
    assert len(_rows(lines)) == len(loop_timing.DOCTOR_CASES) and err == ""


def test_a_timing_that_fails_is_a_warning_not_a_failure(loops, capsys, monkeypatch):
    few = [c for c in selfcheck.cases() if c.op == "bias_act"][:1]
    monkeypatch.setattr(doctor, "timed_check", lambda ops: (selfcheck.check_backend(ops, few), 0.01))

    def broken(k):
        raise OSError("planted")

    monkeypatch.setattr(loop_timing, "doctor_lines", broken)
    assert doctor.run_doctor("cpu") == 0
    out, err = capsys.readouterr()
    assert "ops verified" in out and "compiled loop vs NumPy" not in out
    assert err.strip() == "mlp-xp: warning: timing the compiled loops stopped on OSError: planted"


def test_without_compiled_loops_the_doctor_times_nothing(capsys, monkeypatch):
    few = [c for c in selfcheck.cases() if c.op == "bias_act"][:1]
    monkeypatch.setattr(doctor, "timed_check", lambda ops: (selfcheck.check_backend(ops, few), 0.01))
    monkeypatch.setattr(doctor, "get_backend", lambda spec: NumpyOps(fast=False))
    assert doctor.run_doctor("cpu") == 0
    assert "compiled loop vs NumPy" not in capsys.readouterr().out


def _benchmark():
    return load_benchmark("cpu_loops")


def test_the_benchmark_writes_its_table_and_json(loops, tmp_path, capsys):
    out = tmp_path / "loops.json"
    lib = str(cpu_loops.find().path)
    argv = ["--rounds", "1", "--seconds", "0.0002", "--data", "synthetic", "--only", "act_backward,bias_grad"]
    assert _benchmark().main([*argv, "--also", f"same={lib}", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("machine: ") and "| op | case | compiled us |" in text and "same us" in text
    result = json.loads(out.read_text())
    assert result["machine"]["cpu"] and result["data"].startswith("synthetic")
    assert [r["op"] for r in result["rows"]] == ["act_backward"] * 8 + ["bias_grad"] * 3
    assert all(r["compiled_us"] > 0 and r["numpy_us"] > 0 and r["same_us"] > 0 for r in result["rows"])
    assert re.search(r"\d+/11 compiled loops at least as fast as the NumPy path", text)


def test_width_cases_are_bias_act_at_each_width():
    cases = loop_timing.width_cases([10, 17], np.float64, ("relu", "tanh"))
    assert [c.name for c in cases] == [
        "bias_act relu 128x10",
        "bias_act tanh 128x10",
        "bias_act relu 128x17",
        "bias_act tanh 128x17",
    ]
    z = cases[1].inputs["z"]
    assert z.dtype == np.float64 and z.shape == (128, 10) and (z < 0).any() and (np.abs(z) > 2).any()


def test_the_benchmark_times_other_widths(loops, tmp_path, capsys):
    out = tmp_path / "widths.json"
    argv = ["--rounds", "1", "--seconds", "0.0002", "--widths", "3,17", "--only", "tanh", "--json", str(out)]
    assert _benchmark().main(argv) == 0
    result = json.loads(out.read_text())
    assert [r["case"] for r in result["rows"]] == ["tanh 128x3", "tanh 128x17"]
    assert result["data"].startswith("synthetic")
    with pytest.raises(SystemExit):  # --only names activations here
        _benchmark().main(["--widths", "3", "--only", "act_backward"])
    assert "takes activations" in capsys.readouterr().err
