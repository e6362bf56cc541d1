"""The compiled CPU loops of kernels/cpu.cpp against their NumPy twins, and how they are built and found.

Every entry point is compared with the twin in mlp_xp.functions (run in float64) over many shapes, every
activation, both dtypes and extreme values; the build is checked for reuse, failure messages and fallback.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlp_xp.backend import cpu_kernels
from mlp_xp.backend.numpy_ops import FLUSH_EVERY, NumpyOps
from mlp_xp.functions import activations, losses, optimizers
from mlp_xp.functions.activations import ACTIVATIONS


def _kernels_or_skip():
    k = cpu_kernels.find()
    if k is None:
        if os.environ.get("MLP_XP_REQUIRE_CPU_KERNELS") == "1":  # CI: a missing build must fail, not skip
            pytest.fail(f"MLP_XP_REQUIRE_CPU_KERNELS=1 but {cpu_kernels.status()}")
        pytest.skip(f"no compiled CPU kernels here: {cpu_kernels.status()}")
    return k


@pytest.fixture(scope="module")
def k():
    return _kernels_or_skip()


TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
DTYPES = [np.float32, np.float64]


# ---- softmax cross-entropy ----


def _logits(rng, B, C, kind):
    if kind == "huge":
        return rng.choice([-1e4, 1e4, 0.0], (B, C))
    if kind == "equal":
        return np.full((B, C), 2.0)
    if kind == "onehot":
        z = np.zeros((B, C))
        z[np.arange(B), rng.integers(0, C, B)] = 30.0
        return z
    return rng.standard_normal((B, C)) * 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C", [(1, 2), (3, 10), (128, 10), (7, 1000), (2, 10000)])
@pytest.mark.parametrize("kind", ["normal", "huge", "equal", "onehot"])
@pytest.mark.parametrize("write_grad", [True, False])
def test_softmax_xent_matches_twin(k, dtype, B, C, kind, write_grad):
    rng = np.random.default_rng(B * 7 + C)
    z, y = _logits(rng, B, C, kind), rng.integers(0, C, B).astype(np.int32)
    for smoothing, weights in ((0.0, None), (0.1, rng.uniform(0.5, 2.0, C))):
        zk, acc = z.astype(dtype), np.zeros(2)
        k.softmax_xent(zk, y, acc, write_grad, smoothing, None if weights is None else weights.astype(dtype))
        zt, acct = z.copy(), np.zeros(2)
        losses.softmax_cross_entropy(zt, y, acct, write_grad, smoothing, weights)
        np.testing.assert_allclose(zk, zt, **TOL[dtype])
        # the loss sums B row losses, each good to the dtype's precision relative to the logits' size
        np.testing.assert_allclose(
            acc[0], acct[0], rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["rtol"] * B * (1 + np.abs(z).max())
        )
        assert acc[1] == acct[1]  # equal logits too: the first maximum (column 0) wins in both


def test_softmax_xent_by_hand(k):
    # z = (0, ln 3): p = (1/4, 3/4); label 1: loss = -ln(3/4), dL/dz = p - onehot = (1/4, -1/4), a hit.
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([1], np.int32), acc, True, 0.0, None)
    np.testing.assert_allclose(z, [[0.25, -0.25]], rtol=1e-14)
    np.testing.assert_allclose(acc, [-np.log(0.75), 1.0], rtol=1e-14)
    # label 0 with a class weight of 2 on it, batch of 1: loss 2 ln 4, gradient 2 (p - onehot(0)), no hit
    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    k.softmax_xent(z, np.array([0], np.int32), acc, True, 0.0, np.array([2.0, 1.0]))
    np.testing.assert_allclose(z, [[2 * (0.25 - 1), 2 * 0.75]], rtol=1e-14)
    np.testing.assert_allclose(acc, [2 * np.log(4.0), 0.0], rtol=1e-14)


def test_softmax_xent_bad_label_gives_nan_and_a_zero_row(k):
    z, acc = np.ones((3, 4), np.float32), np.zeros(2)
    k.softmax_xent(z, np.array([1, 4, -1], np.int32), acc, True, 0.0, None)
    assert np.isnan(acc[0])
    assert (z[1:] == 0).all()
    np.testing.assert_allclose(z[0], (np.full(4, 0.25) - [0, 1, 0, 0]) / 3, rtol=1e-6)


def test_softmax_xent_probabilities_without_labels(k):
    z = np.random.default_rng(0).standard_normal((5, 7))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    acc = np.zeros(2)
    k.softmax_xent(z, None, acc, False, 0.0, None)
    np.testing.assert_allclose(z, p, rtol=1e-14)
    assert (acc == 0).all()


# ---- layer elementwise work ----


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 17), (128, 512), (33, 1000)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bias_act_and_backward_match_twins(k, dtype, rows, cols, act):
    rng = np.random.default_rng(rows + cols)
    z, b, dh = rng.standard_normal((rows, cols)) * 3, rng.standard_normal(cols), rng.standard_normal((rows, cols))
    zk = z.astype(dtype)
    k.bias_act(zk, b.astype(dtype), act, 0.01)
    activations.bias_act_forward(z, b, act, 0.01)
    np.testing.assert_allclose(zk, z, **TOL[dtype])
    dhk = dh.astype(dtype)
    k.act_backward(dhk, zk, act, 0.01)
    activations.act_backward(dh, zk.astype(np.float64), act, 0.01)
    np.testing.assert_allclose(dhk, dh, **TOL[dtype])


def test_relu_lets_nan_through(k):
    # divergence must stay visible: NaN + b is NaN, and ReLU keeps it (as NumPy's maximum does)
    z = np.array([[np.nan, -1.0, 2.0]], np.float32)
    k.bias_act(z, np.zeros(3, np.float32), "relu", 0.0)
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (128, 10), (7, 513)])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_bias_grad(k, dtype, rows, cols, beta):
    rng = np.random.default_rng(rows * cols)
    g, db0 = rng.standard_normal((rows, cols)), rng.standard_normal(cols)
    db = db0.astype(dtype)
    k.bias_grad(g.astype(dtype), db, beta)
    np.testing.assert_allclose(db, g.sum(0) + beta * db0, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * rows)


def test_bias_grad_ignores_a_stale_output_when_beta_is_zero(k):
    db = np.full(3, np.nan)
    k.bias_grad(np.ones((4, 3)), db, 0.0)
    assert (db == 4).all()


# ---- subnormal flushing ----


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_subnormals(k, dtype):
    tiny = np.finfo(dtype).tiny  # the smallest normal number
    a = np.array([tiny / 2, -tiny / 3, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, tiny * 0.999], dtype)
    k.flush_subnormals(a)
    want = np.array([0, 0, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf, 0], dtype)
    np.testing.assert_array_equal(a, want)


def test_momentum_velocity_is_flushed_and_weights_do_not_change(k, monkeypatch):
    # Weights whose gradient is zero let V decay through the subnormal range; every FLUSH_EVERY updates the
    # fast backend zeroes those entries. The weights (here all |W| > 1e-3) must come out bit for bit as in the
    # same backend with the flush switched off.
    rng = np.random.default_rng(0)
    n, tiny, steps = 1000, np.finfo(np.float32).tiny, 3 * FLUSH_EVERY
    p0 = (rng.choice([-1, 1], n) * rng.uniform(1e-3, 1, n)).astype(np.float32)
    v0 = rng.standard_normal(n).astype(np.float32) * 1e-3
    v0[::3] = tiny * rng.uniform(2, 50, len(v0[::3]))  # these reach the subnormal range in a few steps
    g = rng.standard_normal(n).astype(np.float32) * 1e-2
    g[::3] = 0
    runs = {}
    for flush in (True, False):
        ops = NumpyOps()
        if not flush:
            monkeypatch.setattr(ops, "_flush_now_and_then", lambda v: None)
        p, v = p0.copy(), v0.copy()
        for _ in range(steps):
            ops.sgd_update(p, g, v, n, 0.5, 0.9)
        runs[flush] = p, v
    (pf, vf), (pn, vn) = runs[True], runs[False]
    np.testing.assert_array_equal(pf, pn)
    assert ((np.abs(vn) < tiny) & (vn != 0)).sum() > 100  # without the flush: many subnormals
    assert not ((np.abs(vf) < tiny) & (vf != 0)).any()  # just flushed: none
    np.testing.assert_array_equal(vf, np.where(np.abs(vn) < tiny, 0, vn))


def test_the_flush_count_is_per_velocity_buffer(k):
    # Two optimizers taking turns on one backend: each buffer is still flushed every FLUSH_EVERY of its own
    # updates, so when a run flushes does not depend on what else the process trained.
    ops, tiny = NumpyOps(), np.finfo(np.float32).tiny
    p = np.ones(4, np.float32)
    va, vb = np.full(4, tiny / 4, np.float32), np.full(4, tiny / 4, np.float32)
    for _ in range(FLUSH_EVERY - 1):
        ops.sgd_update(p, None, va, 4, 0.0, 0.9, accumulated=True)
        ops.sgd_update(p, None, vb, 4, 0.0, 0.9, accumulated=True)
    assert (va != 0).all() and (vb != 0).all()
    ops.sgd_update(p, None, va, 4, 0.0, 0.9, accumulated=True)
    assert (va == 0).all() and (vb != 0).all()


# ---- Adam ----


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l2, l1", [(0.0, 0.0), (1e-2, 1e-3)])
@pytest.mark.parametrize("step", [1, 2, 1000])
def test_adam_update_matches_twin(k, dtype, l2, l1, step):
    rng = np.random.default_rng(step)
    n, n_w = 1001, 900
    p, g, m = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n) * 0.1
    v = rng.uniform(0, 1, n)
    p[::7] = 0.0  # sign(0) = 0 in the L1 term
    got = [a.astype(dtype) for a in (p, g, m, v)]
    c1, c2 = optimizers.adam_corrections(step, 0.9, 0.999)
    k.adam_update(got[0], got[1], got[2], got[3], n_w, 1e-3, 0.9, 0.999, 1e-8, c1, c2, l2, l1)
    want = [a.copy() for a in (p, g, m, v)]
    optimizers.adam_update(*want, n_w, 1e-3, step, 0.9, 0.999, 1e-8, l2, l1)
    for i, name in ((0, "p"), (2, "m"), (3, "v")):  # (the twin also leaves G in grads: scratch)
        np.testing.assert_allclose(got[i], want[i], err_msg=name, **TOL[dtype])


def test_adam_by_hand(k):
    # first step, G = 2: m = 0.2, v = 0.004, c1 = 10, c2 = 1000: W -= 0.1 * 2 / (2 + 1e-8)
    p, g, m, v = np.array([1.0]), np.array([2.0]), np.zeros(1), np.zeros(1)
    c1, c2 = optimizers.adam_corrections(1, 0.9, 0.999)
    k.adam_update(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8, c1, c2, 0.0, 0.0)
    np.testing.assert_allclose([p[0], m[0], v[0]], [1 - 0.1 * 2 / (2 + 1e-8), 0.2, 0.004], rtol=1e-14)


def test_adam_first_moment_subnormals_become_zero(k):
    tiny = np.finfo(np.float32).tiny
    p, g = np.ones(3, np.float32), np.zeros(3, np.float32)
    m, v = np.array([tiny * 1.05, 1e-3, -tiny], np.float32), np.full(3, 0.5, np.float32)
    k.adam_update(p, g, m, v, 3, 1e-3, 0.9, 0.999, 1e-8, 1.0, 1.0, 0.0, 0.0)
    np.testing.assert_array_equal(m, [0.0, np.float32(0.9) * np.float32(1e-3), 0.0])


# ---- the backend takes the compiled path, and keeps NumPy where it must ----


def test_the_cpu_backend_uses_them(k):
    ops = NumpyOps()
    assert ops.kernels is k and "compiled kernels" in ops.name
    assert NumpyOps(fast=False).kernels is None


def test_non_contiguous_arrays_take_the_numpy_path(k):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 8))
    view = z[:, ::2]  # not C-contiguous: the twin handles it
    want = np.maximum(view + 1.0, 0)
    NumpyOps().bias_act(view, np.ones(4), "relu", 0.0)
    np.testing.assert_array_equal(view, want)


# ---- building and finding ----


@pytest.fixture
def fresh_find():
    cpu_kernels.find.cache_clear()
    yield cpu_kernels.find
    cpu_kernels.find.cache_clear()


def test_a_build_is_reused(k, tmp_path):
    cxx = cpu_kernels.compiler()
    lib, flags = cpu_kernels.build(cxx, tmp_path)
    mtime = lib.stat().st_mtime_ns
    again, _ = cpu_kernels.build(cxx, tmp_path)
    assert again == lib and lib.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary file left behind


def test_a_refused_flag_set_is_not_retried_once_a_build_exists(k, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "FLAGS", (["-fno-such-flag-anywhere"], ["-O1"]))
    compiles = []
    real_run = cpu_kernels.subprocess.run

    def run(cmd, **kw):
        if "-o" in cmd:
            compiles.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(cpu_kernels.subprocess, "run", run)
    lib, flags = cpu_kernels.build(cpu_kernels.compiler(), tmp_path)
    assert flags == ["-O1"] and len(compiles) == 2
    assert cpu_kernels.build(cpu_kernels.compiler(), tmp_path) == (lib, flags) and len(compiles) == 2


def test_a_compiler_command_with_arguments(k, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", f"env {cpu_kernels.compiler()[0]}")  # as with "ccache g++"
    cxx = cpu_kernels.compiler()
    assert cxx[0] == "env"
    lib, _ = cpu_kernels.build(cxx, tmp_path)
    assert lib.is_file()


def test_an_unwritable_cache_is_named(k, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match="cannot write the built kernels to .*file/kernels.*MLP_XP_CACHE"):
        cpu_kernels.build(cpu_kernels.compiler(), blocker / "kernels")


def test_a_failed_build_names_the_command(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)building the CPU kernels failed:.*false -O3"):
        cpu_kernels.build("false", tmp_path)
    assert not any(tmp_path.iterdir())


def test_without_a_compiler_the_backend_falls_back_to_numpy(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.delenv("MLP_XP_REQUIRE_CPU_KERNELS", raising=False)
    assert fresh_find() is None
    assert cpu_kernels.status().startswith("unavailable, NumPy used instead: building the CPU kernels failed")
    ops = NumpyOps()
    assert ops.kernels is None and "compiled" not in ops.name
    z = np.array([[-1.0, 2.0]])
    ops.bias_act(z, np.zeros(2), "relu", 0.0)
    np.testing.assert_array_equal(z, [[0.0, 2.0]])


def test_a_required_build_that_fails_raises(fresh_find, monkeypatch):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("MLP_XP_REQUIRE_CPU_KERNELS", "1")
    with pytest.raises(RuntimeError, match="MLP_XP_REQUIRE_CPU_KERNELS=1"):
        fresh_find()


def test_they_can_be_switched_off(fresh_find, monkeypatch):
    monkeypatch.setenv("MLP_XP_CPU_KERNELS", "0")
    assert fresh_find() is None
    assert cpu_kernels.status() == "off (MLP_XP_CPU_KERNELS=0)"


def test_arrays_numpy_would_not_write_never_reach_the_raw_pointers(k):
    ops = NumpyOps()
    frozen = np.frombuffer(np.zeros((2, 3), np.float32).tobytes(), np.float32).reshape(2, 3)  # read-only
    with pytest.raises(ValueError):
        ops.bias_act(frozen, np.zeros(3, np.float32), "relu", 0.0)
    with pytest.raises(ValueError):  # the direct BLAS path keeps to the same rule
        ops.matmul(np.ones((2, 4), np.float32), np.ones((4, 3), np.float32), frozen)
    assert (frozen == 0).all()
    # a strided accumulator: the sums must land in acc itself, not in the array it is a view of
    big, z = np.zeros(6), np.array([[0.0, 1.0]])
    acc = big[::2]
    ops.loss_grad(z, np.array([1], np.int32), acc, "cross_entropy")
    assert acc[1] == 1 and big[1] == 0
    # a batch with no logits is NumPy's error, not a read past the array
    with pytest.raises(ValueError):
        ops.loss_grad(np.zeros((2, 0)), np.zeros(2, np.int32), np.zeros(2), "cross_entropy")


def test_mismatched_shapes_never_reach_the_raw_pointers(k):
    # the loops trust their pointers; the backend sends a mismatch to the twin, which raises NumPy's error
    ops, z = NumpyOps(), np.zeros((4, 5))
    with pytest.raises(ValueError):
        ops.bias_act(z, np.zeros(3), "relu", 0.0)
    with pytest.raises(ValueError):
        ops.act_backward(z, np.zeros((4, 3)), "relu", 0.0)
    with pytest.raises(ValueError):
        ops.bias_grad(z, np.zeros(3))
    with pytest.raises(ValueError):
        ops.loss_grad(z, np.zeros(3, np.int32), np.zeros(2), "cross_entropy")
    with pytest.raises(ValueError):
        ops.sgd_update(np.zeros(5), np.zeros(3), np.zeros(5), 4, 0.1, 0.9)
