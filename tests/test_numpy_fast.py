"""The CPU backend's BLAS fast path against the plain NumPy reference (NumpyOps(fast=False))."""

import numpy as np
import pytest

from mlp_xp.backend import blas
from mlp_xp.backend.numpy_ops import NumpyOps

pytestmark = pytest.mark.skipif(blas.find() is None, reason="NumPy's BLAS cannot be called directly here")


@pytest.fixture(scope="module")
def pair():
    return NumpyOps(fast=True), NumpyOps(fast=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_matmul(pair, dtype, trans_a, trans_b, beta):
    rng = np.random.default_rng(0)
    m, k, n = 7, 5, 3
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    outs = []
    for ops in pair:
        c = c0.copy()
        ops.matmul(a, b, c, trans_a, trans_b, beta)
        outs.append(c)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5 if dtype == np.float32 else 1e-12)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + beta * c0
    np.testing.assert_allclose(outs[0], expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_bias_grad(pair, beta):
    g = np.random.default_rng(1).standard_normal((33, 9))
    outs = []
    for ops in pair:
        out = np.full(9, 2.0)
        ops.bias_grad(g, out, beta)
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)
    np.testing.assert_allclose(outs[0], g.sum(0) + beta * 2.0, rtol=1e-12)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "accumulated"])
@pytest.mark.parametrize("l2, l1", [(0.0, 0.0), (0.01, 0.002)])
def test_sgd_update(pair, rule, l2, l1):
    rng = np.random.default_rng(2)
    p, g, v = rng.standard_normal(501), rng.standard_normal(501), rng.standard_normal(501)
    results = []
    for ops in pair:
        pp, gg, vv = p.copy(), g.copy(), v.copy()
        ops.sgd_update(
            pp,
            gg,
            vv,
            400,
            0.05,
            0.0 if rule == "sgd" else 0.9,
            rule == "nesterov",
            l2,
            l1,
            accumulated=rule == "accumulated",
        )
        results.append((pp, vv))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-15)


def test_blas_is_numpys_own():
    b = blas.find()
    assert "openblas" in b.path.lower()


def test_arrays_blas_cannot_take_go_the_numpy_way(pair):
    fast, _ = pair
    a32, b64 = np.ones((3, 4), np.float32), np.ones((4, 2))
    out = np.zeros((3, 2), np.float32)
    fast.matmul(a32, b64, out)  # mixed dtypes: NumPy casts, BLAS would misread
    np.testing.assert_array_equal(out, 4.0)
    fast.matmul(np.ones((4, 3)).T, b64, np.zeros((3, 2)))  # a transposed view, not C-contiguous
    with pytest.raises(ValueError, match="shapes do not fit"):
        fast.matmul(np.ones((3, 5), np.float32), np.ones((4, 2), np.float32), out)
