"""The unmodified kernels/*.cu, run on the CPU by the harness in tests/cuda_host, against their NumPy twins.

Each test calls the CUDA backend's own op (CupyOps: checks, geometry, dtype choice, argument order) with the
harness standing in for the GPU, and the NumPy backend's op (the twin) on the same input in float64.
"""

import numpy as np
import pytest

from mlp_xp.backend.cupy_ops import CupyOps, row_geometry
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.functions import shuffle
from mlp_xp.functions.activations import ACTIVATIONS

from .cuda_host.device import HostDevice
from .cuda_host.harness import HostKernels

DTYPES = [np.float32, np.float64]
# |kernel - float64 twin| <= tol (1 + |twin|): float32 rounding, and the GPU's fused multiply-adds
TOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.fixture(scope="module")
def host():
    return HostKernels()


@pytest.fixture
def gpu(host):
    """The CUDA backend with the CPU harness in place of the GPU."""
    return CupyOps(0, device=HostDevice(host), kernels=host)


@pytest.fixture(scope="module")
def twin():
    return NumpyOps(fast=False)  # the reference twins, not the BLAS fast path


def close(got, ref, dtype, what=""):
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    err = np.abs(got64 - ref64) / (1 + np.abs(ref64))
    assert np.isfinite(got64).all() == np.isfinite(ref64).all(), f"{what}: non-finite values differ"
    assert err.max(initial=0) <= TOL[dtype], f"{what}: max err/(1+|ref|) {err.max():.3g}"


def logits(kind, B, C, rng):
    if kind == "normal":
        return rng.standard_normal((B, C)) * 5
    if kind == "huge":  # +-1e4: exp overflows unless shifted by the max
        return rng.choice([-1e4, 1e4, 0.0, 9999.5], size=(B, C))
    if kind == "equal":
        return np.full((B, C), 3.0)
    if kind == "onehot":  # one large logit per row, ties elsewhere
        z = np.zeros((B, C))
        z[np.arange(B), rng.integers(0, C, B)] = 50.0
        return z
    raise ValueError(kind)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, C", [(1, 2), (3, 3), (37, 10), (128, 10), (5, 33), (7, 1000), (2, 4097), (3, 10000)])
@pytest.mark.parametrize("kind", ["normal", "huge", "equal", "onehot"])
@pytest.mark.parametrize("write_grad", [True, False])
def test_softmax_xent_matches_twin(gpu, twin, dtype, B, C, kind, write_grad):
    rng = np.random.default_rng(B * 7 + C)
    z = logits(kind, B, C, rng)
    y = rng.integers(0, C, B).astype(np.int32)
    zk, acck = z.astype(dtype), np.zeros(2)
    gpu.loss_grad(zk, y, acck, "cross_entropy", write_grad)
    zt, acct = z.copy(), np.zeros(2)
    twin.loss_grad(zt, y, acct, "cross_entropy", write_grad)
    close(zk, zt, dtype, "dL/dz" if write_grad else "p")
    close(acck[0], acct[0], dtype, "loss")
    assert acck[1] == acct[1]  # hits: same argmax, first maximum wins ties


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [2, 10, 300])
def test_softmax_xent_smoothing_and_class_weights(gpu, twin, dtype, C):
    rng = np.random.default_rng(C)
    z, y = rng.standard_normal((19, C)) * 3, rng.integers(0, C, 19).astype(np.int32)
    w = rng.uniform(0.2, 3.0, C)
    zk, acck = z.astype(dtype), np.zeros(2)
    gpu.loss_grad(zk, y, acck, "cross_entropy", True, 0.1, w.astype(dtype))
    zt, acct = z.copy(), np.zeros(2)
    twin.loss_grad(zt, y, acct, "cross_entropy", True, 0.1, w)
    close(zk, zt, dtype, "dL/dz")
    close(acck[0], acct[0], dtype, "loss")


@pytest.mark.parametrize("bx, by", [(1, 1), (1, 64), (2, 8), (4, 32), (8, 16), (32, 4), (64, 2), (128, 1), (256, 1)])
@pytest.mark.parametrize("C", [3, 10, 129, 2000])
def test_softmax_xent_is_right_for_every_launch_geometry(host, twin, bx, by, C):
    """The kernel must not depend on the geometry the dispatcher picks: sweep it, as llm.c's dev/cuda does."""
    rng = np.random.default_rng(bx * 1000 + C)
    B = 21
    z, y = rng.standard_normal((B, C)) * 4, rng.integers(0, C, B).astype(np.int32)
    zk, acck = z.astype(np.float32), np.zeros(2)
    host.launch(
        "softmax_xent<float>",
        ((B + by - 1) // by,),
        (bx, by),
        (zk, y, None, acck, np.int64(B), np.int32(C), np.int32(1), np.float32(0)),
        bx * by * 16,
    )
    zt, acct = z.copy(), np.zeros(2)
    twin.loss_grad(zt, y, acct, "cross_entropy", True)
    close(zk, zt, np.float32, "dL/dz")
    close(acck[0], acct[0], np.float32, "loss")
    assert acck[1] == acct[1]


def test_softmax_xent_bad_label_gives_nan_not_an_out_of_bounds_read(gpu):
    z = np.zeros((3, 4), np.float32)
    acc = np.zeros(2)
    gpu.loss_grad(z, np.array([1, 7, -2], np.int32), acc, "cross_entropy")
    assert np.isnan(acc[0])
    np.testing.assert_array_equal(z[1:], 0)  # no gradient from the rows with bad labels


def test_row_geometry_choices():
    assert row_geometry(128, 10, 4) == ((4,), (4, 32))
    assert row_geometry(3, 10000, 4) == ((3,), (256, 1))
    assert row_geometry(1, 2, 4) == ((1,), (1, 128))
    grid, block = row_geometry(1000, 1)
    assert block == (1, 128) and grid == (8,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, K", [(1, 1), (5, 3), (64, 1), (9, 40), (3, 600)])
@pytest.mark.parametrize("write_grad", [True, False])
def test_sigmoid_bce_matches_twin(gpu, twin, dtype, B, K, write_grad):
    rng = np.random.default_rng(B + K)
    z = rng.standard_normal((B, K)) * 4
    z.flat[::7] = 1e4  # extremes: no overflow, no log(0)
    z.flat[3::11] = -1e4
    y = rng.integers(0, 2, (B, K)).astype(float)
    zk, acck = z.astype(dtype), np.zeros(2)
    gpu.loss_grad(zk, y.astype(dtype), acck, "binary_cross_entropy", write_grad)
    zt, acct = z.copy(), np.zeros(2)
    twin.loss_grad(zt, y, acct, "binary_cross_entropy", write_grad)
    close(zk, zt, dtype, "dL/dz" if write_grad else "p")
    close(acck[0], acct[0], dtype, "loss")
    assert acck[1] == acct[1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, K", [(1, 1), (7, 3), (300, 5)])
@pytest.mark.parametrize("write_grad", [True, False])
def test_squared_error_matches_twin(gpu, twin, dtype, B, K, write_grad):
    rng = np.random.default_rng(B * K)
    z, y = rng.standard_normal((B, K)) * 3, rng.standard_normal((B, K))
    zk, acck = z.astype(dtype), np.zeros(2)
    gpu.loss_grad(zk, y.astype(dtype), acck, "mse", write_grad)
    zt, acct = z.copy(), np.zeros(2)
    twin.loss_grad(zt, y, acct, "mse", write_grad)
    close(zk, zt, dtype, "z")
    close(acck, acct, dtype, "sums")


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_output_activation_matches_twin(gpu, twin, output):
    z = np.random.default_rng(0).standard_normal((11, 7)) * 30
    zk = z.astype(np.float32)
    gpu.output_act(zk, output)
    twin.output_act(z, output)
    close(zk, z, np.float32, output)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 7), (128, 512), (33, 1000)])
def test_bias_act_and_backward_match_twin(gpu, twin, dtype, activation, rows, cols):
    rng = np.random.default_rng(rows + cols)
    z, b = rng.standard_normal((rows, cols)) * 3, rng.standard_normal(cols)
    z.flat[::5] = 0.0 - b[np.arange(0, z.size, 5) % cols]  # some z + b exactly 0: the kink
    zk = z.astype(dtype)
    gpu.bias_act(zk, b.astype(dtype), activation, 0.01)
    zt = z.copy()
    twin.bias_act(zt, b, activation, 0.01)
    close(zk, zt, dtype, "h")
    dh = rng.standard_normal((rows, cols))
    dhk = dh.astype(dtype)
    gpu.act_backward(dhk, zk, activation, 0.01)
    twin.act_backward(dh, zt, activation, 0.01)
    close(dhk, dh, dtype, "dz")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (5, 33), (128, 512), (1000, 10), (4096, 3)])
def test_bias_grad_matches_twin(gpu, twin, dtype, rows, cols):
    g = np.random.default_rng(rows).standard_normal((rows, cols))
    out = np.full(cols, np.nan, dtype)
    gpu.bias_grad(g.astype(dtype), out)  # beta = 0: the NaN already there must not leak in
    ref = np.empty(cols)
    twin.bias_grad(g, ref)
    close(out, ref, dtype, "db")
    gpu.bias_grad(g.astype(dtype), out, 0.9)  # accumulate: db <- sum g + 0.9 db
    twin.bias_grad(g, ref, 0.9)
    close(out, ref, dtype, "db accumulated")


def _opt_state(n, rng):
    return rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n) * 0.1, rng.uniform(0, 0.1, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("l2, l1", [(0.0, 0.0), (0.01, 0.0), (0.0, 0.003), (0.01, 0.003)])
@pytest.mark.parametrize("n, n_w", [(1, 1), (300, 200), (70000, 65000)])
def test_optimizer_update_matches_twin(gpu, twin, dtype, rule, l2, l1, n, n_w):
    rng = np.random.default_rng(n)
    p, g, m, v = _opt_state(n, rng)
    p[:5] = 0.0  # sign(0) = 0 for L1
    state = [a.astype(dtype) for a in (p, g, m, v)]
    ref = [a.copy() for a in (p, g, m, v)]
    for ops, (pp, gg, mm, vv) in ((gpu, state), (twin, ref)):
        if rule == "adam":
            ops.adam_update(pp, gg, mm, vv, n_w, 1e-3, 3, 0.9, 0.999, 1e-8, l2, l1)
        else:
            ops.sgd_update(pp, gg, mm, n_w, 0.05, 0.0 if rule == "sgd" else 0.9, rule == "nesterov", l2, l1)
    close(state[0], ref[0], dtype, "params")
    close(state[2], ref[2], dtype, "velocity / m")
    if rule == "adam":
        close(state[3], ref[3], dtype, "v")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l2, l1", [(0.0, 0.0), (0.01, 0.003)])
def test_accumulated_momentum_update_matches_twin(gpu, twin, dtype, l2, l1):
    rng = np.random.default_rng(5)
    p, _, v, _ = _opt_state(1000, rng)
    state, ref = [p.astype(dtype), v.astype(dtype)], [p.copy(), v.copy()]
    for ops, (pp, vv) in ((gpu, state), (twin, ref)):
        ops.sgd_update(pp, None, vv, 600, 0.05, 0.9, False, l2, l1, accumulated=True)
    close(state[0], ref[0], dtype, "params")
    close(state[1], ref[1], dtype, "velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labels", ["classes", "targets"])
def test_gather_rows_matches_twin(gpu, twin, dtype, labels):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 13)).astype(dtype)
    Y = rng.integers(0, 5, 50).astype(np.int32) if labels == "classes" else rng.standard_normal((50, 3)).astype(dtype)
    idx = rng.permutation(50)[:17].astype(np.int64)
    xb, yb = np.empty((17, 13), dtype), np.empty((17,) + Y.shape[1:], Y.dtype)
    gpu.gather_rows(X, Y, idx, xb, yb)
    np.testing.assert_array_equal(xb, X[idx])
    np.testing.assert_array_equal(yb, Y[idx])


@pytest.mark.parametrize("n", [1, 2, 1000, 60000])
def test_permutation_is_the_twins_bit_for_bit(gpu, n):
    np.testing.assert_array_equal(gpu.permutation(n, 11, 4), shuffle.permutation(n, 11, 4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (37, 53, 29), (64, 16, 64), (130, 70, 65), (128, 200, 10)])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_gemm_kernel_matches_numpy(gpu, dtype, trans_a, trans_b, m, k, n, beta):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    c0 = rng.standard_normal((m, n))
    out = np.full((m, n), np.nan) if not beta else c0.copy()
    out = out.astype(dtype)
    gpu.gemm_kernel(a.astype(dtype), b.astype(dtype), out, trans_a, trans_b, beta)
    ref = (a.T if trans_a else a) @ (b.T if trans_b else b) + (beta * c0 if beta else 0)
    tol = 1e-4 * np.sqrt(k) if dtype == np.float32 else 1e-12 * k
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def test_every_kernel_is_exercised(host):
    """Guards the tests above (this one must stay last in the file): a kernel added to kernels/*.cu without
    a twin test fails here."""
    from mlp_xp.backend.kernels import KERNELS

    launched = {launch.name for launch in host.launches}
    missing = {n for names in KERNELS.values() for n in names} - launched
    assert not missing, f"kernels never launched by these tests: {sorted(missing)}"
