"""The compiled CPU loops of kernels/cpu.cpp: how they are built, found and switched off, and the values they
must give that the op contract (tests/test_ops.py, backend cpu) does not pin down by itself: hand-computed
numbers, NaN passing through, subnormal zeroing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlp_xp.backend import cpu_loops
from mlp_xp.backend.numpy_ops import NumpyOps


def _kernels_or_skip():
    k = cpu_loops.find()
    if k is None:
        if os.environ.get("MLP_XP_REQUIRE_CPU_LOOPS") == "1":  # CI: a missing build must fail, not skip
            pytest.fail(f"MLP_XP_REQUIRE_CPU_LOOPS=1 but {cpu_loops.status()}")
        pytest.skip(f"no compiled CPU kernels here: {cpu_loops.status()}")
    return k


DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def k():
    return _kernels_or_skip()


def test_softmax_xent_by_hand(k):
    # z = (0, ln 3): p = (1/4, 3/4); label 1: loss = -ln(3/4), dL/dz = p - onehot = (1/4, -1/4), a hit.
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([1], np.int32), acc)
    np.testing.assert_allclose(z, [[0.25, -0.25]], rtol=1e-14)
    np.testing.assert_allclose(acc, [-np.log(0.75), 1.0], rtol=1e-14)
    # label 0 with a class weight of 2 on it, batch of 1: loss 2 ln 4, gradient 2 (p - onehot(0)), no hit
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([0], np.int32), acc, class_weight=np.array([2.0, 1.0]))
    np.testing.assert_allclose(z, [[2 * (0.25 - 1), 2 * 0.75]], rtol=1e-14)
    np.testing.assert_allclose(acc, [2 * np.log(4.0), 0.0], rtol=1e-14)


def test_softmax_xent_bad_label_gives_nan_and_a_zero_row(k):
    z, acc = np.ones((3, 4), np.float32), np.zeros(2)
    k.softmax_xent(z, np.array([1, 4, -1], np.int32), acc)
    assert np.isnan(acc[0])
    assert (z[1:] == 0).all()
    np.testing.assert_allclose(z[0], (np.full(4, 0.25) - [0, 1, 0, 0]) / 3, rtol=1e-6)


def test_softmax_xent_probabilities_without_labels(k):
    z = np.random.default_rng(0).standard_normal((5, 7))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    acc = np.zeros(2)
    k.softmax_xent(z, None, acc, write_grad=False)
    np.testing.assert_allclose(z, p, rtol=1e-14)
    assert (acc == 0).all()


def test_relu_lets_nan_through(k):
    # divergence must stay visible: NaN + b is NaN, and ReLU keeps it (as NumPy's maximum does)
    z = np.array([[np.nan, -1.0, 2.0]], np.float32)
    k.bias_act(z, np.zeros(3, np.float32), "relu", 0.0)
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2


def test_bias_grad_ignores_a_stale_output_when_not_accumulating(k):
    db = np.full(3, np.nan)
    k.bias_grad(np.ones((4, 3)), db)
    assert (db == 4).all()


# ---- subnormal flushing ----


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_subnormals(k, dtype):
    tiny = np.finfo(dtype).tiny  # the smallest normal number
    a = np.array([tiny / 2, -tiny / 3, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, tiny * 0.999], dtype)
    k.flush_subnormals(a)
    want = np.array([0, 0, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, 0], dtype)
    np.testing.assert_array_equal(a, want)


# ---- Adam ----


def test_adam_by_hand(k):
    # first step, G = 2: m = 0.2, v = 0.004, c1 = 10, c2 = 1000: W -= 0.1 * 2 / (2 + 1e-8)
    p, g, m, v = np.array([1.0]), np.array([2.0]), np.zeros(1), np.zeros(1)
    k.adam_update(p, g, m, v, 1, 0.1, 1, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_allclose([p[0], m[0], v[0]], [1 - 0.1 * 2 / (2 + 1e-8), 0.2, 0.004], rtol=1e-14)


def test_adam_first_moment_subnormals_become_zero(k):
    tiny = np.finfo(np.float32).tiny
    p, g = np.ones(3, np.float32), np.zeros(3, np.float32)
    m, v = np.array([tiny * 1.05, 1e-3, -tiny], np.float32), np.full(3, 0.5, np.float32)
    k.adam_update(p, g, m, v, 3, 1e-3, 1000, beta1=0.9, beta2=0.999, eps=1e-8)
    np.testing.assert_array_equal(m, [0.0, np.float32(0.9) * np.float32(1e-3), 0.0])


# ---- building and finding ----


@pytest.fixture
def fresh_find():
    cpu_loops.find.cache_clear()
    yield cpu_loops.find
    cpu_loops.find.cache_clear()


def test_a_build_is_reused(k, tmp_path):
    cxx = cpu_loops.compiler()
    lib, flags = cpu_loops.build(cxx, tmp_path)
    mtime = lib.stat().st_mtime_ns
    again, _ = cpu_loops.build(cxx, tmp_path)
    assert again == lib and lib.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary file left behind


def test_a_refused_flag_set_is_not_retried_once_a_build_exists(k, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_loops, "FLAGS", (["-fno-such-flag-anywhere"], ["-O1"]))
    compiles = []
    real_run = cpu_loops.subprocess.run

    def run(cmd, **kw):
        if "-o" in cmd:
            compiles.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(cpu_loops.subprocess, "run", run)
    lib, flags = cpu_loops.build(cpu_loops.compiler(), tmp_path)
    assert flags == ["-O1"] and len(compiles) == 2
    assert cpu_loops.build(cpu_loops.compiler(), tmp_path) == (lib, flags) and len(compiles) == 2


def test_a_compiler_command_with_arguments(k, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", f"env {cpu_loops.compiler()[0]}")  # as with "ccache g++"
    cxx = cpu_loops.compiler()
    assert cxx[0] == "env"
    lib, _ = cpu_loops.build(cxx, tmp_path)
    assert lib.is_file()


def test_an_unwritable_cache_is_named(k, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match="cannot write the compiled CPU loops to .*file/kernels.*MLP_XP_CACHE"):
        cpu_loops.build(cpu_loops.compiler(), blocker / "kernels")


def test_a_failed_build_names_the_command(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)building the compiled CPU loops failed:.*false -O3"):
        cpu_loops.build("false", tmp_path)
    assert not any(tmp_path.iterdir())


def test_without_a_compiler_the_backend_falls_back_to_numpy(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.delenv("MLP_XP_REQUIRE_CPU_LOOPS", raising=False)
    assert fresh_find() is None
    assert cpu_loops.status().startswith("unavailable, NumPy used instead: building the compiled CPU loops failed")
    ops = NumpyOps()
    assert ops.loops is None and "compiled" not in ops.name
    z = np.array([[-1.0, 2.0]])
    ops.bias_act(z, np.zeros(2), "relu", 0.0)
    np.testing.assert_array_equal(z, [[0.0, 2.0]])


def test_a_required_build_that_fails_raises(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("MLP_XP_REQUIRE_CPU_LOOPS", "1")
    with pytest.raises(RuntimeError, match="MLP_XP_REQUIRE_CPU_LOOPS=1"):
        fresh_find()


def test_they_can_be_switched_off(fresh_find, monkeypatch):
    monkeypatch.setenv("MLP_XP_CPU_LOOPS", "0")
    assert fresh_find() is None
    assert cpu_loops.status() == "off (MLP_XP_CPU_LOOPS=0)"


def test_the_old_names_of_the_switches_still_work(fresh_find, monkeypatch):
    monkeypatch.delenv("MLP_XP_CPU_LOOPS", raising=False)
    monkeypatch.setenv("MLP_XP_CPU_KERNELS", "0")
    with pytest.warns(FutureWarning, match="MLP_XP_CPU_KERNELS is now MLP_XP_CPU_LOOPS"):
        assert fresh_find() is None
