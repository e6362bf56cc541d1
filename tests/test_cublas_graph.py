"""mlp_xp.backend.cublas_graph on the CPU: GraphGemm through FakeCublas (tests/cuda_host/fake_cublas.py) on host
memory, against NumPy.

The matrices live in one NaN-filled arena with wide guard zones between them: a GEMM that reads padding or
a neighbour gets NaN, one that writes outside its output shows up as a changed guard, and a wrong mapping
(tried on purpose below) stays inside memory the test owns.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mlp_xp.backend import cublas_graph as cg
from mlp_xp.backend.cublas_graph import (
    PROTOTYPES,
    STATUS_NAMES,
    CublasError,
    CublasLibrary,
    GraphGemm,
    find_libcublas,
)
from mlp_xp.errors import BackendUnavailable, ConfigError, DataError

from .cuda_host import fake_cublas as fc
from .cuda_host.fake_cublas import FakeCublas

STREAM = 0x5EED_0000
WORKSPACE_BYTES = 1 << 16
GUARD = 256  # elements around every matrix: more than any (wrong) mapping of the shapes below can reach
SETUP = ["cublasCreate_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasSetPointerMode_v2"]


# ---- fixtures and helpers ----
@pytest.fixture
def workspace():
    buf = np.zeros(WORKSPACE_BYTES + cg.WORKSPACE_ALIGNMENT, np.uint8)
    ptr = buf.ctypes.data + (-buf.ctypes.data % cg.WORKSPACE_ALIGNMENT)
    yield ptr
    del buf


@pytest.fixture
def fake():
    return FakeCublas()


@pytest.fixture
def gemm(fake, workspace):
    g = GraphGemm(CublasLibrary(fake), STREAM, workspace, WORKSPACE_BYTES)
    yield g
    g.close()


class Arena:
    """Row-major matrices, each with its own row length (ld), carved out of one NaN-filled buffer."""

    def __init__(self, dtype, size: int = 1 << 13) -> None:
        self.dtype = np.dtype(dtype)
        self.buf = np.full(size, np.nan, self.dtype)
        self.used = GUARD

    def matrix(self, rows: int, cols: int, pad: int, values=None):
        """A rows x cols view with row length cols + pad; returns (view, pointer, ld, flat indices)."""
        ld = cols + pad
        start = self.used
        self.used += max(1, rows * ld) + GUARD
        assert self.used <= self.buf.size
        view = self.buf[start : start + rows * ld].reshape(rows, ld)[:, :cols]
        if values is not None:
            view[...] = values
        index = (start + np.arange(rows)[:, None] * ld + np.arange(cols)[None, :]).ravel()
        return view, self.buf.ctypes.data + start * self.dtype.itemsize, ld, index


def op(x, trans: bool):
    return x.T if trans else x


def run_case(g, dtype, shape, trans_a, trans_b, alpha, beta, pads, *, data="normal", seed=0):
    """One GEMM through g against NumPy; returns (got, want, opa, opb, out0, k) after checking the guards."""
    m, n, k = shape
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)

    def values(shape_):
        if data == "dyadic":  # small integers / 4: every product and sum below is exact in float32
            return rng.integers(-8, 9, shape_) / 4
        return rng.standard_normal(shape_)

    arena = Arena(dt)
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a, pa, lda, _ = arena.matrix(*a_shape, pads[0], values(a_shape))
    b, pb, ldb, _ = arena.matrix(*b_shape, pads[1], values(b_shape))
    # beta 0: out starts as NaN, which BLAS must not read
    out, pc, ldc, out_index = arena.matrix(m, n, pads[2], values((m, n)) if beta else None)
    out0 = out.copy()
    before = arena.buf.copy()
    prod = op(a, trans_a) @ op(b, trans_b)
    want = prod if alpha == 1 and beta == 0 else dt.type(alpha) * prod + (dt.type(beta) * out0 if beta else 0)
    g.gemm(pa, pb, pc, dt, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha, beta)
    untouched = np.ones(arena.buf.size, bool)
    untouched[out_index] = False
    assert np.array_equal(arena.buf[untouched], before[untouched], equal_nan=True), "memory outside out changed"
    got = out.copy()
    assert got.dtype == dt
    return got, want.astype(dt), op(a, trans_a), op(b, trans_b), out0, k


def assert_gemm_close(got, want, opa, opb, out0, k, alpha, beta):
    # cuBLAS, NumPy's BLAS and the fake may sum the k products in different orders, so the results agree to
    # the rounding error of a k-term dot product (Higham: gamma_k |op(a)| |op(b)|), not bit for bit; the
    # bound below is a few ulps of the largest term, far tighter than any mapping mistake (O(1) or NaN).
    eps = np.finfo(got.dtype).eps
    scale = abs(alpha) * (np.abs(opa) @ np.abs(opb)) + (abs(beta) * np.abs(out0) if beta else 0)
    assert np.all(np.isfinite(got)), "NaN or Inf in the result: padding, a guard or a NaN out was read"
    np.testing.assert_allclose(got, want, rtol=4 * eps, atol=2 * max(k, 1) * eps * max(float(np.max(scale)), 1.0))


SHAPES = [(3, 5, 7), (1, 4, 6), (4, 1, 3), (5, 3, 1), (1, 1, 1), (7, 2, 4)]
PADS = [(0, 0, 0), (3, 1, 2)]


# ---- GraphGemm against NumPy ----
@pytest.mark.parametrize("pads", PADS, ids=["contiguous", "padded"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "m{}n{}k{}".format(*s))
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-1.25, 0.75)], ids=["beta0", "accumulate"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)), ids=str)
def test_gemm_matches_numpy(gemm, dtype, trans_a, trans_b, alpha, beta, shape, pads):
    got, want, opa, opb, out0, k = run_case(gemm, dtype, shape, trans_a, trans_b, alpha, beta, pads)
    assert_gemm_close(got, want, opa, opb, out0, k, alpha, beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)), ids=str)
def test_gemm_is_exact_where_rounding_cannot_differ(gemm, dtype, trans_a, trans_b):
    # Multiples of 1/4 up to 2 in magnitude: products and k-term sums are exact in float32, so any summation
    # order gives numpy's op(a) @ op(b) bit for bit.
    for shape in SHAPES:
        got, want, *_ = run_case(gemm, dtype, shape, trans_a, trans_b, 1.0, 0.0, (3, 1, 2), data="dyadic")
        np.testing.assert_array_equal(got, want)


def test_accumulate_in_place_twice(gemm):
    # beta 1 adds to out in place: two calls give twice the product, like a gradient accumulated over two halves
    arena = Arena(np.float64)
    rng = np.random.default_rng(3)
    a, pa, lda, _ = arena.matrix(4, 3, 2, rng.standard_normal((4, 3)))
    b, pb, ldb, _ = arena.matrix(3, 5, 0, rng.standard_normal((3, 5)))
    out, pc, ldc, _ = arena.matrix(4, 5, 1, np.zeros((4, 5)))
    for _ in range(2):
        gemm.gemm(pa, pb, pc, np.float64, 4, 5, 3, lda, ldb, ldc, False, False, 1.0, 1.0)
    np.testing.assert_allclose(out, 2 * (a @ b), rtol=1e-15, atol=1e-15)


def test_k_zero_scales_out_and_empty_out_is_left_alone(gemm):
    arena = Arena(np.float32)
    out, pc, ldc, _ = arena.matrix(2, 3, 1, np.arange(6.0).reshape(2, 3))
    a, pa, _, _ = arena.matrix(2, 1, 0, np.ones((2, 1)))
    gemm.gemm(pa, pa, pc, "float32", 2, 3, 0, 1, 3, ldc, False, False, 1.0, 0.5)
    np.testing.assert_array_equal(out, 0.5 * np.arange(6.0, dtype=np.float32).reshape(2, 3))
    before = arena.buf.copy()
    gemm.gemm(pa, pa, pc, "float32", 0, 3, 2, 2, 3, ldc, False, False, 1.0, 0.0)  # m = 0: nothing to do
    assert np.array_equal(arena.buf, before, equal_nan=True)


# ---- the row-major mapping: the tests above must catch every plausible mistake in it ----
def _ops(trans_a, trans_b):
    return (cg.CUBLAS_OP_T if trans_a else cg.CUBLAS_OP_N), (cg.CUBLAS_OP_T if trans_b else cg.CUBLAS_OP_N)


MUTANTS = {
    "column-major as if row-major": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb),
        m,
        n,
        k,
        a,
        la,
        b,
        lb,
        o,
        lc,
    ),
    "operands not swapped": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb)[::-1],
        n,
        m,
        k,
        a,
        la,
        b,
        lb,
        o,
        lc,
    ),
    "lda and ldb swapped": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb)[::-1],
        n,
        m,
        k,
        b,
        la,
        a,
        lb,
        o,
        lc,
    ),
    "trans flags not swapped": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb),
        n,
        m,
        k,
        b,
        lb,
        a,
        la,
        o,
        lc,
    ),
    "m and n not swapped": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb)[::-1],
        m,
        n,
        k,
        b,
        lb,
        a,
        la,
        o,
        lc,
    ),
    "trans flags inverted": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(not ta, not tb)[::-1],
        n,
        m,
        k,
        b,
        lb,
        a,
        la,
        o,
        lc,
    ),
    "ldc taken as the row length": lambda a, b, o, m, n, k, la, lb, lc, ta, tb: (
        *_ops(ta, tb)[::-1],
        n,
        m,
        k,
        b,
        lb,
        a,
        la,
        o,
        n,
    ),
}


def test_the_right_mapping_is_the_one_in_graphgemm():
    assert GraphGemm._column_major(11, 22, 33, 3, 5, 7, 8, 9, 10, True, False) == (
        cg.CUBLAS_OP_N,
        cg.CUBLAS_OP_T,
        5,
        3,
        7,
        22,
        9,
        11,
        8,
        33,
        10,
    )


@pytest.mark.parametrize("mutant", MUTANTS, ids=str)
def test_a_wrong_mapping_fails_these_tests(monkeypatch, gemm, mutant):
    monkeypatch.setattr(GraphGemm, "_column_major", staticmethod(MUTANTS[mutant]))
    caught = 0
    for trans_a, trans_b in itertools.product([False, True], repeat=2):
        for shape in [(3, 5, 7), (4, 1, 3)]:
            try:
                got, want, opa, opb, out0, k = run_case(gemm, np.float64, shape, trans_a, trans_b, 1.0, 0.0, (3, 1, 2))
                assert_gemm_close(got, want, opa, opb, out0, k, 1.0, 0.0)
            except (AssertionError, CublasError):
                caught += 1
    assert caught, f"the mapping mistake '{mutant}' went unnoticed"


# ---- the handle's setup, streams and workspaces ----
def test_setup_order_stream_then_workspace_then_pointer_mode(fake, gemm, workspace):
    assert fake.names() == SETUP
    create, stream, ws, mode = fake.calls
    assert all(c.status == fc.SUCCESS and c.handle == gemm.handle for c in fake.calls)
    assert (stream.stream, stream.workspace) == (STREAM, None)
    assert ws.workspace == (workspace, WORKSPACE_BYTES) and ws.stream == STREAM
    assert mode.pointer_mode == fc.POINTER_MODE_HOST and mode.workspace == (workspace, WORKSPACE_BYTES)
    # the GEMM runs on the dedicated stream with the dedicated workspace: nothing for cuBLAS to allocate
    run_case(gemm, np.float32, (2, 3, 4), False, True, 1.0, 0.0, (0, 0, 0))
    last = fake.calls[-1]
    assert (last.name, last.stream, last.workspace, last.status) == (
        "cublasSgemm_v2",
        STREAM,
        (workspace, WORKSPACE_BYTES),
        fc.SUCCESS,
    )


def test_the_fake_loses_a_workspace_set_before_the_stream(fake, workspace):
    # The mistake GraphGemm avoids, made on purpose: cublasSetStream_v2 resets the workspace.
    lib = CublasLibrary(fake)
    h = ctypes.c_void_p()
    lib.call("cublasCreate_v2", ctypes.byref(h))
    lib.call("cublasSetWorkspace_v2", h.value, workspace, WORKSPACE_BYTES)
    assert fake.calls[-1].workspace == (workspace, WORKSPACE_BYTES)
    lib.call("cublasSetStream_v2", h.value, STREAM)
    assert fake.calls[-1].workspace is None and fake.handles[h.value].workspace is None
    assert fake.handles[h.value].stream == STREAM


def test_dispatch_gets_the_stream_and_host_mode_bakes_alpha_and_beta(workspace):
    pending = []
    fake = FakeCublas(dispatch=lambda stream, run: pending.append((stream, run)))
    g = GraphGemm(CublasLibrary(fake), STREAM, workspace, WORKSPACE_BYTES)
    arena = Arena(np.float64)
    rng = np.random.default_rng(1)
    a, pa, lda, _ = arena.matrix(3, 4, 1, rng.standard_normal((3, 4)))
    b, pb, ldb, _ = arena.matrix(4, 2, 2, rng.standard_normal((4, 2)))
    out, pc, ldc, _ = arena.matrix(3, 2, 1, np.ones((3, 2)))
    g.gemm(pa, pb, pc, np.float64, 3, 2, 4, lda, ldb, ldc, False, False, 2.0, -0.5)
    # recorded, not run; the c_double temporaries holding alpha and beta are gone by now
    assert [s for s, _ in pending] == [STREAM]
    np.testing.assert_array_equal(out, np.ones((3, 2)))
    for _ in range(2):  # a replay twice accumulates twice, with the values seen at capture time
        pending[0][1]()
    np.testing.assert_allclose(out, 2.0 * (a @ b) - 0.5 * (2.0 * (a @ b) - 0.5), rtol=1e-14, atol=1e-14)
    g.close()


def test_close_is_idempotent_and_a_closed_handle_is_refused(fake, workspace):
    with GraphGemm(CublasLibrary(fake), STREAM, workspace, WORKSPACE_BYTES) as g:
        h = g.handle
        assert h in fake.handles
        assert g.version() == 120903
        assert g.kind == "cublas (direct, capturable)"
    assert g.handle is None and h not in fake.handles
    g.close()
    assert fake.names().count("cublasDestroy_v2") == 1
    with pytest.raises(CublasError, match=r"cublasDgemm_v2 failed with CUBLAS_STATUS_NOT_INITIALIZED.*closed"):
        g.gemm(1, 2, 3, np.float64, 1, 1, 1, 1, 1, 1, False, False, 1.0, 0.0)
    assert fake.names()[-1] == "cublasDestroy_v2"  # refused before reaching cuBLAS


# ---- refusals and errors ----
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex64, "bogus", object], ids=str)
def test_other_dtypes_are_refused(fake, gemm, dtype):
    calls = len(fake.calls)
    with pytest.raises(DataError, match=r"float32 \(Sgemm\) or float64 \(Dgemm\)") as e:
        gemm.gemm(1, 2, 3, dtype, 1, 1, 1, 1, 1, 1, False, False, 1.0, 0.0)
    assert repr(dtype) in str(e.value)
    assert len(fake.calls) == calls


@pytest.mark.parametrize("which", ["lda", "ldb", "ldc"])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)), ids=str)
def test_leading_dimension_shorter_than_a_row_fails_with_invalid_value(fake, gemm, which, trans_a, trans_b):
    m, n, k = 3, 5, 7
    rows = {"lda": m if trans_a else k, "ldb": k if trans_b else n, "ldc": n}  # the row lengths, row-major
    arena = Arena(np.float32)
    a, pa, lda, _ = arena.matrix(*((k, m) if trans_a else (m, k)), 0, 1.0)
    b, pb, ldb, _ = arena.matrix(*((n, k) if trans_b else (k, n)), 0, 1.0)
    out, pc, ldc, _ = arena.matrix(m, n, 0, 5.0)
    lds = {"lda": lda, "ldb": ldb, "ldc": ldc}
    assert lds == rows
    lds[which] -= 1
    with pytest.raises(CublasError, match=r"cublasSgemm_v2 failed with CUBLAS_STATUS_INVALID_VALUE \(7\)") as e:
        gemm.gemm(pa, pb, pc, np.float32, m, n, k, *lds.values(), trans_a, trans_b, 1.0, 0.0)
    assert (e.value.call, e.value.status, e.value.status_name) == ("cublasSgemm_v2", 7, "CUBLAS_STATUS_INVALID_VALUE")
    np.testing.assert_array_equal(out, 5.0)
    lds[which] += 1  # the least cuBLAS allows is exactly the row length
    gemm.gemm(pa, pb, pc, np.float32, m, n, k, *lds.values(), trans_a, trans_b, 1.0, 0.0)
    np.testing.assert_array_equal(out, float(k))


def test_a_failing_setup_call_names_call_and_status_and_destroys_the_handle(fake, workspace):
    fake.fail["cublasSetWorkspace_v2"] = fc.ALLOC_FAILED
    with pytest.raises(CublasError, match=r"^cublasSetWorkspace_v2 failed with CUBLAS_STATUS_ALLOC_FAILED \(3\)"):
        GraphGemm(CublasLibrary(fake), STREAM, workspace, WORKSPACE_BYTES)
    assert fake.names() == SETUP[:3] + ["cublasDestroy_v2"]
    assert fake.handles == {}


def test_unknown_handle_is_not_initialized(fake):
    lib = CublasLibrary(fake)
    with pytest.raises(CublasError, match=r"cublasSetStream_v2 failed with CUBLAS_STATUS_NOT_INITIALIZED \(1\)"):
        lib.call("cublasSetStream_v2", 0xDEAD00, STREAM)


def test_check_names_every_status():
    CublasLibrary.check(0, "cublasSgemm_v2")
    for status, name in STATUS_NAMES.items():
        if status:
            with pytest.raises(CublasError, match=rf"^cublasDgemm_v2 failed with {name} \({status}\)"):
                CublasLibrary.check(status, "cublasDgemm_v2")
    with pytest.raises(CublasError, match=r"CUBLAS_STATUS_UNKNOWN_99 \(99\)"):
        CublasLibrary.check(99, "cublasDgemm_v2")
    # the names and values of cublasStatus_t in cublas_api.h (12.9.3 and 13.10.0 alike)
    assert STATUS_NAMES == {
        0: "CUBLAS_STATUS_SUCCESS",
        1: "CUBLAS_STATUS_NOT_INITIALIZED",
        3: "CUBLAS_STATUS_ALLOC_FAILED",
        7: "CUBLAS_STATUS_INVALID_VALUE",
        8: "CUBLAS_STATUS_ARCH_MISMATCH",
        11: "CUBLAS_STATUS_MAPPING_ERROR",
        13: "CUBLAS_STATUS_EXECUTION_FAILED",
        14: "CUBLAS_STATUS_INTERNAL_ERROR",
        15: "CUBLAS_STATUS_NOT_SUPPORTED",
        16: "CUBLAS_STATUS_LICENSE_ERROR",
    }


def test_sizes_beyond_a_c_int_are_refused_before_ctypes_wraps_them(fake, gemm):
    calls = len(fake.calls)
    with pytest.raises(DataError, match=r"k = 2147483648 is out of range"):
        gemm.gemm(1, 2, 3, np.float32, 1, 1, 2**31, 1, 1, 1, False, False, 1.0, 0.0)
    with pytest.raises(DataError, match=r"lda must be an integer"):
        gemm.gemm(1, 2, 3, np.float32, 1, 1, 1, 1.0, 1, 1, False, False, 1.0, 0.0)
    assert len(fake.calls) == calls


def test_numpy_integers_are_accepted(fake, gemm):
    arena = Arena(np.float64)
    a, pa, lda, _ = arena.matrix(2, 2, 0, np.eye(2))
    out, pc, ldc, _ = arena.matrix(2, 2, 0)
    gemm.gemm(
        np.uint64(pa), np.uint64(pa), np.int64(pc), np.dtype("f8"), *np.int32([2, 2, 2, lda, lda, ldc]), 0, 0, 1, 0
    )
    np.testing.assert_array_equal(out, np.eye(2))


def test_bad_workspace_or_stream_is_refused_before_any_call(fake, workspace):
    lib = CublasLibrary(fake)
    with pytest.raises(ConfigError, match="not aligned to 256 bytes"):
        GraphGemm(lib, STREAM, workspace + 16, WORKSPACE_BYTES)
    with pytest.raises(ConfigError, match="at address 0"):
        GraphGemm(lib, STREAM, 0, WORKSPACE_BYTES)
    with pytest.raises(DataError, match="stream = -1 is out of range"):
        GraphGemm(lib, -1, workspace, WORKSPACE_BYTES)
    assert fake.calls == []
    GraphGemm(lib, 0, 0, 0).close()  # no workspace at all is cuBLAS's business, not refused here


def test_the_fake_refuses_an_unaligned_workspace(fake, workspace):
    lib = CublasLibrary(fake)
    h = ctypes.c_void_p()
    lib.call("cublasCreate_v2", ctypes.byref(h))
    with pytest.raises(CublasError, match="cublasSetWorkspace_v2 failed with CUBLAS_STATUS_INVALID_VALUE"):
        lib.call("cublasSetWorkspace_v2", h.value, workspace + 8, WORKSPACE_BYTES)


# ---- the fake holds callers to the ctypes contract ----
def test_the_fake_checks_types_and_counts_like_ctypes(fake):
    lib = CublasLibrary(fake)
    h = ctypes.c_void_p()
    lib.call("cublasCreate_v2", ctypes.byref(h))
    sgemm = lib.functions["cublasSgemm_v2"]
    one = ctypes.c_float(1.0)
    args = [h.value, 0, 0, 1, 1, 1, ctypes.byref(one), 8, 1, 8, 1, ctypes.byref(one), 8, 1]
    with pytest.raises(ctypes.ArgumentError, match="argument 7"):  # alpha as a Python float
        sgemm(*args[:6], 1.0, *args[7:])
    with pytest.raises(ctypes.ArgumentError, match="argument 12"):  # beta of the wrong precision
        sgemm(*args[:11], ctypes.byref(ctypes.c_double(0.0)), *args[12:])
    with pytest.raises(ctypes.ArgumentError, match="argument 8"):  # a pointer as a float
        sgemm(*args[:7], 8.0, *args[8:])
    with pytest.raises(TypeError, match=r"takes at least 14 arguments \(13 given\)"):
        sgemm(*args[:-1])
    with pytest.raises(TypeError, match="takes 14 arguments"):
        sgemm(*args, 1)
    bare = FakeCublas().cublasDestroy_v2
    with pytest.raises(TypeError, match="argtypes not set"):
        bare(h.value)
    bare.argtypes = [ctypes.c_int]  # a handle cut to 32 bits
    with pytest.raises(TypeError, match="do not match the C prototype"):
        bare(h.value)


def test_library_sets_argtypes_and_restype_from_prototypes(fake):
    lib = CublasLibrary(fake)
    for name, proto in PROTOTYPES.items():
        fn = getattr(fake, name)
        assert lib.functions[name] is fn
        assert fn.argtypes == list(proto.argtypes) and fn.restype is proto.restype
        assert tuple(fn.argtypes) == fc.SIGNATURES[name], name  # the fake's own reading of the header agrees


def test_a_library_without_a_function_is_unavailable(fake):
    del fake.cublasSetWorkspace_v2
    with pytest.raises(BackendUnavailable, match="has no cublasSetWorkspace_v2"):
        CublasLibrary(fake, "/opt/old/libcublas.so.10")


def test_load_of_a_missing_library_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable, match="cannot open libcublas at"):
        CublasLibrary.load(str(tmp_path / "libcublas.so.12"))


# ---- the prototypes table against its C declarations ----
_C_TYPES = {
    "cublasStatus_t": ctypes.c_int,
    "int": ctypes.c_int,
    "size_t": ctypes.c_size_t,
    "cublasOperation_t": ctypes.c_int,  # C enums: int-sized
    "cublasPointerMode_t": ctypes.c_int,
    "cublasHandle_t": ctypes.c_void_p,  # struct cublasContext*
    "cudaStream_t": ctypes.c_void_p,  # struct CUstream_st*
    "void*": ctypes.c_void_p,
    "int*": ctypes.POINTER(ctypes.c_int),
    "cublasHandle_t*": ctypes.POINTER(ctypes.c_void_p),
}
_DECLARATION = re.compile(r"^(\w+) (\w+)\((.*)\);$")


def _parse(declaration: str):
    """(result type, name, [(C type, parameter name)]) of a one-line C declaration."""
    ret, name, params = _DECLARATION.match(declaration).groups()
    out = []
    for p in params.split(","):
        pname = re.findall(r"\w+", p)[-1]
        out.append((re.sub(r"\s+", " ", p[: p.rfind(pname)]).strip().replace(" *", "*"), pname))
    return ret, name, out


def _ctype(ctype: str, pname: str):
    base = ctype.removeprefix("const ").rstrip("*")
    if base in ("float", "double"):
        scalar = {"float": ctypes.c_float, "double": ctypes.c_double}[base]
        # alpha and beta are host scalars (pointer mode HOST); A, B and C are device addresses passed as ints
        return ctypes.POINTER(scalar) if pname in ("alpha", "beta") else ctypes.c_void_p
    return _C_TYPES[ctype]


def test_every_prototype_parses_to_the_argtypes_used():
    assert set(PROTOTYPES) == {
        "cublasCreate_v2",
        "cublasDestroy_v2",
        "cublasGetVersion_v2",
        "cublasSetStream_v2",
        "cublasSetWorkspace_v2",
        "cublasSetPointerMode_v2",
        "cublasSgemm_v2",
        "cublasDgemm_v2",
    }
    for key, proto in PROTOTYPES.items():
        ret, name, params = _parse(proto.declaration)
        assert name == key
        assert _C_TYPES[ret] is proto.restype
        assert tuple(_ctype(t, p) for t, p in params) == proto.argtypes, key
    gemm_params = [p for _, p in _parse(PROTOTYPES["cublasSgemm_v2"].declaration)[2]]
    assert gemm_params == "handle transa transb m n k alpha A lda B ldb beta C ldc".split()
    assert cg.HEADER == "cublas_api.h" and cg.HEADER_VERSION == (12, 9, 3)
    # the enum values of cublas_api.h, read independently by the fake
    assert (cg.CUBLAS_OP_N, cg.CUBLAS_OP_T, cg.CUBLAS_POINTER_MODE_HOST) == (fc.OP_N, fc.OP_T, fc.POINTER_MODE_HOST)
    assert (cg.CUBLAS_OP_N, cg.CUBLAS_OP_T, cg.CUBLAS_POINTER_MODE_HOST) == (0, 1, 0)


def _installed_headers():
    found = [Path(p) for p in os.environ.get("CUBLAS_API_H", "").split(os.pathsep) if p]
    try:
        import nvidia

        for root in nvidia.__path__:
            found += sorted(Path(root).glob("*/include/cublas_api.h"))
    except ImportError:
        pass
    return found


@pytest.mark.parametrize("header", _installed_headers() or [None], ids=str)
def test_declarations_match_an_installed_header(header):
    # The wheels nvidia-cublas-cu12 and nvidia-cublas ship include/cublas_api.h; CUBLAS_API_H names others.
    if header is None:
        pytest.skip("no cublas_api.h here (pip install nvidia-cublas-cu12, or set CUBLAS_API_H)")
    text = re.sub(r"\s+", " ", header.read_text(errors="replace"))
    text = re.sub(r"\b(CUBLASAPI|CUBLASWINAPI) ", "", text).replace("( ", "(").replace(" )", ")")
    for proto in PROTOTYPES.values():
        assert proto.declaration in text, proto.declaration


# ---- finding libcublas ----
MAPS = """\
7f0000000000-7f0000001000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000200000 r-xp 00000000 08:01 2345 /venv/site-packages/nvidia/cublas/lib/libcublasLt.so.12
7f0000300000-7f0000400000 r-xp 00000000 08:01 3456 /old/lib/libcublas.so.11 (deleted)
7f0000500000-7f0000600000 r-xp 00000000 08:01 4567 /my venv/site-packages/nvidia/cublas/lib/libcublas.so.12
7f0000600000-7f0000700000 r--p 00100000 08:01 4567 /my venv/site-packages/nvidia/cublas/lib/libcublas.so.12
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
"""


def test_find_libcublas_reads_the_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    path = find_libcublas(maps, find_library=lambda name: pytest.fail("the maps had it"))
    assert path == "/my venv/site-packages/nvidia/cublas/lib/libcublas.so.12"


def test_find_libcublas_falls_back_and_says_how_to_fix(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(MAPS.replace("libcublas.so.12", "libother.so"))
    asked = []
    assert find_libcublas(maps, find_library=lambda name: asked.append(name) or "libcublas.so.12") == "libcublas.so.12"
    assert asked == ["cublas"]
    assert find_libcublas(tmp_path / "no-such-maps", find_library=lambda name: "libcublas.so.13") == "libcublas.so.13"
    with pytest.raises(BackendUnavailable, match=r"import cupy\.cublas first.*nvidia-cublas-cu12"):
        find_libcublas(maps, find_library=lambda name: None)
    with pytest.raises(BackendUnavailable, match="libcublas is neither loaded"):
        find_libcublas(maps, find_library=None)
