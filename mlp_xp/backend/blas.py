"""Direct calls into the BLAS that NumPy itself loaded (OpenBLAS in NumPy's wheels), through ctypes.

NumPy's ``matmul`` cannot accumulate (C = alpha op(A) op(B) + beta C) and NumPy's elementwise arithmetic
runs on one core; BLAS does both, multi-threaded. The CPU backend uses:

    gemm    C <- alpha op(A) op(B) + beta C      (beta is the ops' accumulate: mu folds momentum into the GEMM)
    axpy    y <- a x + y                          (the parameter step W <- W - lr V)
    axpby   y <- a x + b y                        (V <- G + mu V)

When NumPy's BLAS cannot be found (another NumPy build), ``find()`` returns None and the backend keeps
to plain NumPy: slower, same results up to rounding. The references of what these calls compute are
``matmul`` in mlp_xp/reference/layer.py and ``sgd_update`` in mlp_xp/reference/optimizer.py.
"""

from __future__ import annotations

import copy
import ctypes
import glob
import os
from functools import cache

import numpy as np

from .pointers import address

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


class Blas:
    """Typed entry points for float32 and float64; pointers are passed as integers (:func:`address`)."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, index_type) -> None:
        i, vp = index_type, ctypes.c_void_p
        self.path = lib._name
        self.gemm, self.axpy, self.axpby = {}, {}, {}
        for ch, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            dt = np.dtype(np.float32 if ch == "s" else np.float64)
            gemm = getattr(lib, f"{prefix}cblas_{ch}gemm{suffix}")
            gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, real, vp, i, vp, i, real, vp, i]
            gemm.restype = None
            axpy = getattr(lib, f"{prefix}cblas_{ch}axpy{suffix}")
            axpy.argtypes = [i, real, vp, i, vp, i]
            axpy.restype = None
            axpby = getattr(lib, f"{prefix}cblas_{ch}axpby{suffix}")
            axpby.argtypes = [i, real, vp, i, real, vp, i]
            axpby.restype = None
            self.gemm[dt], self.axpy[dt], self.axpby[dt] = gemm, axpy, axpby
        self.index_bits = 8 * ctypes.sizeof(index_type)

    def recording(self, program) -> Blas:
        """This BLAS with every call recorded into ``program`` instead of made (:mod:`.program`): op
        ``<routine>_<f32|f64>_<i64|i32>``, the routine's address its first word."""
        rec = copy.copy(self)
        for routine in ("gemm", "axpy", "axpby"):
            calls = {}
            for dt, f in getattr(self, routine).items():
                name = f"{routine}_{'f32' if dt == np.float32 else 'f64'}_i{self.index_bits}"
                calls[dt] = program.recorder(name, f, ctypes.cast(f, ctypes.c_void_p).value)
            setattr(rec, routine, calls)
        return rec

    def matmul(
        self,
        a: np.ndarray,
        b: np.ndarray,
        out: np.ndarray,
        *,
        trans_a: bool = False,
        trans_b: bool = False,
        accumulate: float = 0.0,
        alpha: float = 1.0,
    ) -> None:
        """out <- alpha op(a) op(b) + accumulate out, all C-contiguous 2-D arrays of out's dtype (BLAS's beta is
        ``accumulate``)."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        op_a, op_b = TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS
        self.gemm[out.dtype](
            ROW_MAJOR,
            op_a,
            op_b,
            m,
            n,
            k,
            alpha,
            address(a),
            a.shape[1],
            address(b),
            b.shape[1],
            accumulate,
            address(out),
            n,
        )

    def add_scaled(self, y: np.ndarray, a: float, x: np.ndarray) -> None:
        """y <- a x + y over contiguous 1-D arrays."""
        self.axpy[y.dtype](y.size, a, address(x), 1, address(y), 1)

    def scale_add(self, y: np.ndarray, b: float, a: float, x: np.ndarray) -> None:
        """y <- a x + b y over contiguous 1-D arrays."""
        self.axpby[y.dtype](y.size, a, address(x), 1, b, address(y), 1)


# (prefix, suffix, integer type) of the CBLAS symbols, tried in order: scipy-openblas as bundled in
# NumPy's wheels (64-bit integers), then plain CBLAS names.
_FLAVOURS = (
    ("scipy_", "64_", ctypes.c_int64),
    ("", "64_", ctypes.c_int64),
    ("scipy_", "", ctypes.c_int),
    ("", "", ctypes.c_int),
)


def _candidates() -> list[str]:
    root = os.path.dirname(os.path.dirname(np.__file__))
    libs = glob.glob(os.path.join(root, "numpy.libs", "*openblas*.so*"))
    libs += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*.dylib"))
    return sorted(libs)


@cache
def find() -> Blas | None:
    """NumPy's own BLAS with the entry points above, or None when it cannot be found."""
    if os.environ.get("MLP_XP_NO_BLAS") == "1":
        return None
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, itype in _FLAVOURS:
            if hasattr(lib, f"{prefix}cblas_sgemm{suffix}") and hasattr(lib, f"{prefix}cblas_saxpby{suffix}"):
                blas = Blas(lib, prefix, suffix, itype)
                return blas if _works(blas) else None
    return None


def _works(blas: Blas) -> bool:
    # One small product against NumPy's own, so that a mismatched calling convention is never used.
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4), np.float32), rng.random((5, 4), np.float32)
    out = np.ones((3, 5), np.float32)
    blas.matmul(a, b, out, trans_b=True, accumulate=2.0)
    y = np.ones(7)
    blas.scale_add(y, 0.5, 2.0, np.arange(7.0))
    return np.allclose(out, a @ b.T + 2.0, rtol=1e-5) and np.allclose(y, 0.5 + 2.0 * np.arange(7.0))
