"""Direct calls into the BLAS that NumPy itself loaded (OpenBLAS in NumPy's wheels), through ctypes.

NumPy's ``matmul`` cannot accumulate (C = alpha op(A) op(B) + beta C) and NumPy's elementwise arithmetic
runs on one core; BLAS does both, multi-threaded. The CPU backend uses:

    gemm    C <- alpha op(A) op(B) + beta C      (beta is the ops' accumulate: mu folds momentum into the GEMM)
    axpy    y <- a x + y                          (the parameter step W <- W - lr V)
    axpby   y <- a x + b y                        (V <- G + mu V)

Which BLAS: NumPy's own by default; Intel's MKL for large models where its wheel is installed (the ``mkl`` extra)
and the CPU is an Intel one, since on an Intel Xeon (AVX-512) MKL ran the step's products 1.3-1.5x faster than
NumPy's OpenBLAS and the epoch 1.17x faster (benchmarks/cpu_blas.py), small models slower. On an AMD EPYC (AVX2)
its products were within noise of OpenBLAS's and its epoch 0.78x-0.83x as fast
(benchmarks/results/cpu_blas_epyc_avx2.md), so it is chosen on Intel's CPUs only. ``MLP_XP_BLAS=numpy`` or ``mkl``
overrides the choice (:func:`choice`). The two give the same results up to rounding, not bit for bit. When no BLAS
can be found (another NumPy build), ``find()`` returns None and the backend keeps to plain NumPy: slower, same
results up to rounding. The references of what these calls compute are ``matmul`` in mlp_xp/reference/layer.py
and ``sgd_update`` in mlp_xp/reference/optimizer.py.
"""

from __future__ import annotations

import copy
import ctypes
import glob
import os
import sys
from functools import cache

import numpy as np

from ..errors import ConfigError, install_hint
from .pointers import address

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


class Blas:
    """Typed entry points for float32 and float64; pointers are passed as integers (:func:`address`)."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, index_type, name: str, kind: str) -> None:
        i, vp = index_type, ctypes.c_void_p
        self.path = lib._name
        #: What ``mlp-xp info`` calls it ("NumPy's OpenBLAS", "MKL 2026.2"), and its value of MLP_XP_BLAS.
        self.name, self.kind = name, kind
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

#: The values MLP_XP_BLAS takes.
CHOICES = ("auto", "numpy", "mkl")


def _candidates() -> list[str]:
    root = os.path.dirname(os.path.dirname(np.__file__))
    libs = glob.glob(os.path.join(root, "numpy.libs", "*openblas*.so*"))
    libs += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*.dylib"))
    return sorted(libs)


def _mkl_candidates() -> list[str]:
    # PyPI's mkl wheel (and conda) put its single dynamic library in the environment's lib folder.
    return sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)


@cache
def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in f)
    except OSError:
        return False


#: The smallest model (in parameters) for which ``auto`` picks MKL. Measured on an Intel Xeon (AVX-512, 2 cores;
#: benchmarks/cpu_blas.py --hidden, benchmarks/results/cpu_blas_sizes_xeon_emr.md): from 109,386 parameters
#: (784-128-64-10) to 535,818 (784-512-256-10) MKL's epoch was 1.09x-1.35x faster (the median of each size's pairs),
#: between 12,730 and 79,510 within noise of OpenBLAS's (0.94x-1.05x), and the drop-in's small models (digits,
#: 64-64-10, and smaller) 1.2-1.7x slower.
MKL_MIN_PARAMS = 100_000


def _asked() -> str:
    """MLP_XP_BLAS as given, lower case; unset or empty: ``auto``."""
    return os.environ.get("MLP_XP_BLAS", "").strip().lower() or "auto"


def choice(n_params: int | None = None) -> str:
    """The BLAS the CPU backend calls for a model of ``n_params`` parameters (None: a large one): MLP_XP_BLAS if
    set (``numpy`` or ``mkl``), else ``mkl`` where MKL is installed, the CPU is Intel's and the model has at least
    :data:`MKL_MIN_PARAMS` parameters, else ``numpy``.

    Raises ConfigError for any other value of MLP_XP_BLAS. (MLP_XP_NO_BLAS=1 goes before it: no direct BLAS at all,
    :func:`find`.)
    """
    value = _asked()
    if value not in CHOICES:
        raise ConfigError(
            f"MLP_XP_BLAS={os.environ['MLP_XP_BLAS']!r} is not a BLAS mlp_xp knows: set it to "
            f"{', '.join(CHOICES[:-1])} or {CHOICES[-1]} (auto: MKL for large models on an Intel CPU where it is "
            "installed, else NumPy's), or unset it"
        )
    if value == "auto":
        large = n_params is None or n_params >= MKL_MIN_PARAMS
        return "mkl" if large and _mkl_candidates() and _intel_cpu() else "numpy"
    return value


@cache
def load(kind: str) -> Blas | None:
    """NumPy's own BLAS (``"numpy"``) or MKL (``"mkl"``) with the entry points above; None where NumPy's cannot be
    found. Raises ConfigError for MKL where it is not installed or does not work."""
    if kind == "mkl":
        return _load_mkl()
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, itype in _FLAVOURS:
            if hasattr(lib, f"{prefix}cblas_sgemm{suffix}") and hasattr(lib, f"{prefix}cblas_saxpby{suffix}"):
                blas = Blas(lib, prefix, suffix, itype, "NumPy's OpenBLAS", "numpy")
                return blas if _works(blas) else None
    return None


#: mkl_cbwr_set's modes (mkl_cbwr.h): the code path MKL picks for this CPU, and GEMMs reproducible at any thread count.
_CBWR_AUTO, _CBWR_STRICT = 2, 0x10000


_mkl_failure: list[ConfigError] = []  # (why MKL could not be used, once: a failed load is not tried again)


def _load_mkl() -> Blas:
    if _mkl_failure:
        raise _mkl_failure[0]
    paths = _mkl_candidates()
    if not paths:
        raise ConfigError(f"MLP_XP_BLAS=mkl but MKL is not installed here: {install_hint('mkl')}, or unset MLP_XP_BLAS")
    try:
        return _open_mkl(paths[0])
    except ConfigError as e:
        _mkl_failure.append(e)
        raise


def _open_mkl(path: str) -> Blas:
    try:
        lib = ctypes.CDLL(path)
        if "MKL_CBWR" not in os.environ and lib.MKL_CBWR_Set(_CBWR_AUTO | _CBWR_STRICT) != 0:
            # (MKL_CBWR set: the user's own choice stands) MKL's products otherwise depend on its thread count
            # (OpenBLAS's do not): strict reproducibility makes its GEMMs the same bit for bit at any count, so that
            # a run limited to one thread (a search candidate, an MPI rank's emulation) gives the numbers a
            # two-thread run gives. Called before any other MKL routine, as MKL requires.
            raise ConfigError(
                f"MKL at {path} refuses its strict reproducibility mode on this CPU (MKL_CBWR_Set): set "
                "MLP_XP_BLAS=numpy, or MKL_CBWR=AUTO to use MKL with numbers that depend on its thread count"
            )
        version = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(version, len(version))
        # its 64-bit-integer (ILP64) CBLAS names, the integers run_program passes for NumPy's OpenBLAS too
        blas = Blas(lib, "", "_64", ctypes.c_int64, _mkl_name(version.value.decode(errors="replace")), "mkl")
    except (OSError, AttributeError) as e:
        raise ConfigError(
            f"MKL at {path} cannot be used ({e}): reinstall it ({install_hint('mkl')}) or unset MLP_XP_BLAS"
        ) from e
    if not _works(blas):
        raise ConfigError(
            f"MKL at {path} gives wrong products: reinstall it ({install_hint('mkl')}) or unset MLP_XP_BLAS"
        )
    return blas


def _mkl_name(version: str) -> str:
    # "Intel(R) oneAPI Math Kernel Library Version 2026.2.1-Product Build ..." -> "MKL 2026.2.1"
    words = version.split()
    number = words[words.index("Version") + 1].split("-")[0] if "Version" in words[:-1] else "?"
    return f"MKL {number}"


def find(n_params: int | None = None) -> Blas | None:
    """The BLAS the CPU backend calls for a model of ``n_params`` parameters (:func:`choice`), or None when NumPy's
    cannot be found or MLP_XP_NO_BLAS=1."""
    if os.environ.get("MLP_XP_NO_BLAS") == "1":
        return None
    kind = choice(n_params)
    if kind == "mkl" and _asked() == "auto":
        try:  # chosen, not asked for: an MKL that cannot be used (too old a CPU for its strict mode) is skipped
            return load("mkl")
        except ConfigError:
            return load("numpy")
    return load(kind)


def describe(*, paths: bool = False) -> str | None:
    """Which BLAS the CPU backend calls, in words, for ``mlp-xp info`` and the benchmarks' machine line: its name
    (and library path, with ``paths``), and where small models get another (:data:`MKL_MIN_PARAMS`) which one;
    None where it calls none directly (:func:`find`). Raises ConfigError as :func:`find` does."""
    large, small = find(), find(0)
    if large is None:
        return None
    what = f"{large.name} ({large.path})" if paths else large.name
    if small is not large:
        what += f" for models of at least {MKL_MIN_PARAMS:,} parameters, {small.name if small else 'NumPy'} below"
    return what


def _works(blas: Blas) -> bool:
    # One small product against NumPy's own, so that a mismatched calling convention is never used.
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4), np.float32), rng.random((5, 4), np.float32)
    out = np.ones((3, 5), np.float32)
    blas.matmul(a, b, out, trans_b=True, accumulate=2.0)
    y = np.ones(7)
    blas.scale_add(y, 0.5, 2.0, np.arange(7.0))
    return np.allclose(out, a @ b.T + 2.0, rtol=1e-5) and np.allclose(y, 0.5 + 2.0 * np.arange(7.0))
