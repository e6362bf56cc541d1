"""The CPU backend's dispatch (mlp_xp.backend.numpy_ops): which implementation takes which arguments.

Whether each implementation computes the right thing is the op contract's (tests/test_ops.py, backends cpu and
cpu-numpy). Here: the direct BLAS is NumPy's own; arrays that compiled code cannot take (mixed dtypes, views,
read-only or strided outputs, mismatched shapes) go the NumPy way and fail where NumPy fails, never through a
raw pointer; the subnormal flush moves no weight.
"""

import numpy as np
import pytest

from mlp_xp.backend import blas, cpu_loops
from mlp_xp.backend.numpy_ops import NumpyOps


@pytest.fixture(scope="module")
def loops():
    found = cpu_loops.find()
    if found is None:
        pytest.skip(f"no compiled CPU loops here: {cpu_loops.status()}")
    return found


needs_blas = pytest.mark.skipif(blas.find() is None, reason="NumPy's BLAS cannot be called directly here")


@needs_blas
def test_blas_is_numpys_own():
    assert "openblas" in blas.load("numpy").path.lower()  # (MKL's: tests/test_blas.py)


def test_the_cpu_backend_uses_the_compiled_loops(loops):
    ops = NumpyOps()
    assert ops.loops is loops and "compiled loops" in ops.name
    assert NumpyOps(fast=False).loops is None and NumpyOps(fast=False).blas is None


@needs_blas
def test_arrays_blas_cannot_take_go_the_numpy_way():
    fast = NumpyOps()
    a32, b64 = np.ones((3, 4), np.float32), np.ones((4, 2))
    out = np.zeros((3, 2), np.float32)
    fast.matmul(a32, b64, out)  # mixed dtypes: NumPy casts, BLAS would misread
    np.testing.assert_array_equal(out, 4.0)
    fast.matmul(np.ones((4, 3)).T, b64, np.zeros((3, 2)))  # a transposed view, not C-contiguous
    with pytest.raises(ValueError, match="shapes do not fit"):
        fast.matmul(np.ones((3, 5), np.float32), np.ones((4, 2), np.float32), out)


def test_non_contiguous_arrays_take_the_numpy_path(loops):
    z = np.random.default_rng(3).standard_normal((6, 8))
    view = z[:, ::2]  # not C-contiguous: the NumPy path handles it
    want = np.maximum(view + 1.0, 0)
    NumpyOps().bias_act(view, np.ones(4), "relu", 0.0)
    np.testing.assert_array_equal(view, want)


def test_arrays_numpy_would_not_write_never_reach_the_raw_pointers(loops):
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


def test_mismatched_shapes_never_reach_the_raw_pointers(loops):
    # the loops trust their pointers; the backend sends a mismatch to the NumPy path, which raises NumPy's error
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
        ops.sgd_update(np.zeros(5), np.zeros(3), np.zeros(5), 4, 0.1, momentum=0.9)


def test_the_flush_zeroes_the_velocitys_subnormals_and_moves_no_weight(loops):
    # Weights whose gradient is zero let V decay through the subnormal range; the flush zeroes those entries.
    # The weights (here all |W| > 1e-3) must come out bit for bit as without it.
    rng = np.random.default_rng(0)
    n, tiny, steps = 1000, np.finfo(np.float32).tiny, 48
    p0 = (rng.choice([-1, 1], n) * rng.uniform(1e-3, 1, n)).astype(np.float32)
    v0 = rng.standard_normal(n).astype(np.float32) * 1e-3
    v0[::3] = tiny * rng.uniform(2, 50, len(v0[::3]))  # these reach the subnormal range in a few steps
    g = rng.standard_normal(n).astype(np.float32) * 1e-2
    g[::3] = 0
    runs = {}
    for flush in (True, False):
        ops, p, v = NumpyOps(), p0.copy(), v0.copy()
        for step in range(1, steps + 1):
            ops.sgd_update(p, g.copy(), v, n, 0.5, momentum=0.9, flush_subnormals=flush and step == steps)
        runs[flush] = p, v
    (pf, vf), (pn, vn) = runs[True], runs[False]
    np.testing.assert_array_equal(pf, pn)
    assert ((np.abs(vn) < tiny) & (vn != 0)).sum() > 100  # without the flush: many subnormals
    assert not ((np.abs(vf) < tiny) & (vf != 0)).any()  # just flushed: none
    np.testing.assert_array_equal(vf, np.where(np.abs(vn) < tiny, 0, vn))


def test_the_address_passed_to_compiled_code_is_numpys_own_for_every_kind_of_array():
    """pointers.address (the buffer protocol's address) against NumPy's a.ctypes.data: whole arrays, views at an
    offset, row slices, and the arrays the buffer protocol refuses (read-only, strided, empty), which take
    a.ctypes's way."""
    from mlp_xp.backend.pointers import address

    a = np.arange(60, dtype=np.float32).reshape(6, 10)
    readonly = a.copy()
    readonly.flags.writeable = False
    for x in (a, a[2:], a[3], a.reshape(-1)[7:], a[:, 1:], a[:, ::2], readonly, a[:0], np.empty(0)):
        assert address(x) == x.ctypes.data
