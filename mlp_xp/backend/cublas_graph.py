"""cuBLAS GEMMs that a CUDA graph can capture: libcublas called directly through ctypes, on a dedicated handle.

CuPy refuses its own cuBLAS wrapper while a stream is capturing (its ``setStream`` raises
NotImplementedError), yet cuBLAS itself supports stream capture on a handle that was bound to the capturing
stream and given a preallocated workspace before the capture began, with pointer mode HOST so that alpha
and beta are read at call time and baked into the graph (PyTorch's approach, pytorch/pytorch#83461). Without
a user workspace cuBLAS may allocate from its default pool inside the capture, which a graph cannot hold.

:class:`GraphGemm` is such a handle. It takes device pointers (ints), not arrays, so nothing here imports
cupy: the caller (the thin layer of :mod:`mlp_xp.backend.cupy_device`) owns the memory, the stream and the
workspace, and must keep the workspace alive for as long as any graph recorded with it may be replayed.
``tests/cuda_host/fake_cublas.py`` stands in for libcublas on the CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import operator
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from ..errors import BackendUnavailable, ConfigError, DataError

#: Where the prototypes below come from: ``cublas_api.h`` of cuBLAS 12.9.3 (CUBLAS_VER_MAJOR 12,
#: CUBLAS_VER_MINOR 9, CUBLAS_VER_PATCH 3, CUBLAS_VER_BUILD 13; PyPI wheel nvidia-cublas-cu12 12.9.3.13). The
#: same eight declarations, and the enum and status values used here, are identical in ``cublas_api.h`` of
#: cuBLAS 13.10.0 (PyPI wheel nvidia-cublas 13.10.0.20).
HEADER = "cublas_api.h"
HEADER_VERSION = (12, 9, 3)
HEADER_VERSIONS_CHECKED = ((12, 9, 3), (13, 10, 0))

# cublasOperation_t and cublasPointerMode_t of cublas_api.h.
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1

#: cublasStatus_t of cublas_api.h, so that an error names its status instead of printing a number.
CUBLAS_STATUS_SUCCESS = 0
STATUS_NAMES = {
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
_STATUS_HINTS = {
    1: "the handle does not exist (never created, or already destroyed)",
    3: "cuBLAS could not allocate device memory: give the handle a larger workspace or free device memory",
    7: (
        "an argument is out of range: a leading dimension shorter than a row of its matrix, a negative size, "
        "or a workspace not aligned to 256 bytes"
    ),
    13: "a GPU kernel failed to launch",
}

#: cuBLAS documents that a user workspace must be aligned to at least this many bytes.
WORKSPACE_ALIGNMENT = 256
_INT_MAX = 2**31 - 1


class Prototype(NamedTuple):
    """One C function of libcublas: its declaration in the header, and the ctypes types that call it."""

    declaration: str
    restype: type
    argtypes: tuple[type, ...]


# How the C types map to ctypes: cublasStatus_t and the enums are C ints (an enum is int-sized on the Linux
# ABIs); cublasHandle_t and cudaStream_t are opaque pointers; size_t is c_size_t. The matrices A, B and C are
# device addresses the caller passes as ints, hence c_void_p whatever their element type; alpha and beta are
# host scalars (pointer mode HOST) passed by reference, hence POINTER(c_float) or POINTER(c_double), so that
# a Python float or a scalar of the other precision fails in ctypes instead of reaching cuBLAS.
# CUBLASAPI and CUBLASWINAPI are dropped from the declarations: both are empty on Linux.
_STATUS, _HANDLE, _INT, _ENUM = ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int
_DEVICE_PTR = ctypes.c_void_p


def _gemm_prototype(t: str, scalar: type) -> Prototype:
    name = {"float": "cublasSgemm_v2", "double": "cublasDgemm_v2"}[t]
    declaration = (
        f"cublasStatus_t {name}(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, "
        f"int m, int n, int k, const {t}* alpha, const {t}* A, int lda, const {t}* B, int ldb, "
        f"const {t}* beta, {t}* C, int ldc);"
    )
    alpha = ctypes.POINTER(scalar)
    argtypes = (_HANDLE, _ENUM, _ENUM, _INT, _INT, _INT, alpha, _DEVICE_PTR, _INT, _DEVICE_PTR, _INT, alpha)
    return Prototype(declaration, _STATUS, (*argtypes, _DEVICE_PTR, _INT))


#: The C functions this module calls, by name (see :data:`HEADER` and :data:`HEADER_VERSION`).
PROTOTYPES: dict[str, Prototype] = {
    "cublasCreate_v2": Prototype(
        "cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);", _STATUS, (ctypes.POINTER(_HANDLE),)
    ),
    "cublasDestroy_v2": Prototype("cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);", _STATUS, (_HANDLE,)),
    "cublasGetVersion_v2": Prototype(
        "cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version);",
        _STATUS,
        (_HANDLE, ctypes.POINTER(ctypes.c_int)),
    ),
    "cublasSetStream_v2": Prototype(
        "cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);",
        _STATUS,
        (_HANDLE, ctypes.c_void_p),
    ),
    "cublasSetWorkspace_v2": Prototype(
        "cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes);",
        _STATUS,
        (_HANDLE, ctypes.c_void_p, ctypes.c_size_t),
    ),
    "cublasSetPointerMode_v2": Prototype(
        "cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode);",
        _STATUS,
        (_HANDLE, _ENUM),
    ),
    "cublasSgemm_v2": _gemm_prototype("float", ctypes.c_float),
    "cublasDgemm_v2": _gemm_prototype("double", ctypes.c_double),
}

#: The GEMM of each dtype, and the ctypes type its alpha and beta are passed as.
_GEMMS = {
    np.dtype(np.float32): ("cublasSgemm_v2", ctypes.c_float),
    np.dtype(np.float64): ("cublasDgemm_v2", ctypes.c_double),
}


class CublasError(RuntimeError):
    """A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS.

    ``call`` is the C function's name, ``status`` the status code and ``status_name`` its name.
    """

    def __init__(self, call: str, status: int, detail: str = "") -> None:
        self.call, self.status = call, int(status)
        self.status_name = status_name(status)
        hint = detail or _STATUS_HINTS.get(self.status, "")
        super().__init__(f"{call} failed with {self.status_name} ({self.status})" + (f": {hint}" if hint else ""))


def status_name(status: int) -> str:
    """The name of a cublasStatus_t value, e.g. ``"CUBLAS_STATUS_INVALID_VALUE"`` for 7."""
    return STATUS_NAMES.get(int(status), f"CUBLAS_STATUS_UNKNOWN_{int(status)}")


def find_libcublas(
    maps_path: str | os.PathLike = "/proc/self/maps",
    find_library: Callable[[str], str | None] | None = ctypes.util.find_library,
) -> str:
    """The path of the libcublas already loaded into this process, else one the dynamic loader would find.

    The copy CuPy loaded comes first: a second, different libcublas in the same process would work but
    double the device memory cuBLAS holds, and could be of another version.

    Parameters
    ----------
    maps_path : str or os.PathLike
        A file in the format of ``/proc/self/maps`` (tests pass their own).
    find_library : callable or None
        The fallback, ``ctypes.util.find_library`` by default; None for no fallback.

    Returns
    -------
    str
        A path (from the maps) or a library name (from the fallback) that ``ctypes.CDLL`` accepts.

    Raises
    ------
    BackendUnavailable
        If no libcublas is loaded and the fallback finds none; the message names the fix.
    """
    try:
        with open(maps_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # no procfs (not Linux, or a sandbox): only the fallback is left
        text = ""
    for line in text.splitlines():
        # address perms offset dev inode pathname; the pathname may hold spaces
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5].endswith(" (deleted)"):
            continue
        path = fields[5].strip()
        # libcublasLt.so is a different library (the Lt API); only libcublas.so[.N...] is ours
        if os.path.basename(path).startswith("libcublas.so"):
            return path
    found = find_library("cublas") if find_library is not None else None
    if found:
        return found
    raise BackendUnavailable(
        "libcublas is neither loaded in this process nor on the library path: import cupy.cublas first "
        "(CupyDevice does), or install it with pip install nvidia-cublas-cu12 (CUDA 12) or "
        "'cuda-toolkit[cublas]==13.*' (CUDA 13)"
    )


class CublasLibrary:
    """The libcublas functions of :data:`PROTOTYPES`, with their ctypes argument and result types set.

    Parameters
    ----------
    lib : ctypes.CDLL or object
        The loaded library, or any object with attributes named like the C functions (tests pass a fake).
    path : str, optional
        Where ``lib`` came from, for messages.

    Raises
    ------
    BackendUnavailable
        If ``lib`` lacks one of the functions (a cuBLAS older than 11, where cublasSetWorkspace_v2 appeared).
    """

    def __init__(self, lib, path: str | None = None) -> None:
        self.lib, self.path = lib, path
        self.functions: dict[str, object] = {}
        for name, proto in PROTOTYPES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise BackendUnavailable(
                    f"{path or type(lib).__name__} has no {name}: a captured cuBLAS GEMM needs a cuBLAS with user "
                    "workspaces (CUDA 11 or newer; pip install nvidia-cublas-cu12)"
                ) from None
            # Without argtypes ctypes would pass every Python int as a C int: 64-bit pointers cut in half.
            fn.restype = proto.restype
            fn.argtypes = list(proto.argtypes)
            self.functions[name] = fn

    @classmethod
    def load(cls, path: str | None = None) -> CublasLibrary:
        """Open libcublas (by default the copy :func:`find_libcublas` finds) and wrap it.

        Raises
        ------
        BackendUnavailable
            If no libcublas is found or it cannot be opened.
        """
        path = path or find_libcublas()
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise BackendUnavailable(f"cannot open libcublas at {path}: {e}") from None
        return cls(lib, path)

    @staticmethod
    def check(status: int, call: str) -> None:
        """Raise :class:`CublasError` naming ``call`` and the status unless ``status`` is SUCCESS."""
        if status != CUBLAS_STATUS_SUCCESS:
            raise CublasError(call, status)

    def call(self, name: str, *args) -> None:
        """Call the C function ``name`` with ``args`` and check its status."""
        self.check(self.functions[name](*args), name)


def _as_int(what: str, value, low: int = -(2**63), high: int = 2**64 - 1) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise DataError(f"{what} must be an integer, got {type(value).__name__} {value!r}") from None
    if not low <= v <= high:
        raise DataError(f"{what} = {v} is out of range [{low}, {high}]")
    return v


class GraphGemm:
    """GEMMs on a dedicated cuBLAS handle bound to one stream and one workspace, so a CUDA graph can capture them.

    The handle is set up in the only order that works: the stream first, because ``cublasSetStream_v2``
    resets the handle to the default workspace pool; then the workspace; then pointer mode HOST, so that
    alpha and beta are read when each GEMM is called and a captured graph keeps their values.

    Parameters
    ----------
    lib : CublasLibrary
        The library to call.
    stream : int
        The ``cudaStream_t`` to run on (and capture from), as an int; 0 is the legacy default stream.
    workspace : int
        Device address of the workspace, aligned to 256 bytes. The caller owns it and must keep it alive for
        as long as this handle, or any graph captured through it, may run.
    workspace_bytes : int
        Its size. cuBLAS documents 16 KiB as enough to avoid CUBLAS_STATUS_ALLOC_FAILED; larger sizes let it
        pick faster algorithms.

    Raises
    ------
    ConfigError
        If the workspace is unaligned, or a size is given without an address.
    CublasError
        If a setup call fails (the handle is destroyed again first).
    """

    kind = "cublas (direct, capturable)"

    def __init__(self, lib: CublasLibrary, stream: int, workspace: int, workspace_bytes: int) -> None:
        stream = _as_int("stream", stream, 0)
        workspace = _as_int("workspace", workspace, 0)
        workspace_bytes = _as_int("workspace_bytes", workspace_bytes, 0)
        if workspace % WORKSPACE_ALIGNMENT:
            raise ConfigError(
                f"the cuBLAS workspace at {workspace:#x} is not aligned to {WORKSPACE_ALIGNMENT} bytes: "
                "pass the start of a device allocation"
            )
        if workspace_bytes and not workspace:
            raise ConfigError(f"a workspace of {workspace_bytes} bytes at address 0: pass the device address")
        self.lib = lib
        self.stream, self.workspace, self.workspace_bytes = stream, workspace, workspace_bytes
        handle = ctypes.c_void_p()
        lib.call("cublasCreate_v2", ctypes.byref(handle))
        self._handle: int | None = handle.value
        try:
            lib.call("cublasSetStream_v2", self._handle, stream)
            lib.call("cublasSetWorkspace_v2", self._handle, workspace, workspace_bytes)
            lib.call("cublasSetPointerMode_v2", self._handle, CUBLAS_POINTER_MODE_HOST)
        except BaseException:
            with contextlib.suppress(CublasError):  # the setup error is the one to report
                self.close()
            raise

    @property
    def handle(self) -> int | None:
        """The ``cublasHandle_t`` as an int; None once closed."""
        return self._handle

    def _live_handle(self, call: str) -> int:
        if self._handle is None:
            # A destroyed handle is freed memory to cuBLAS: refuse here rather than hand it over.
            raise CublasError(call, 1, "this GraphGemm was closed: make a new one")
        return self._handle

    def version(self) -> int:
        """The cuBLAS version of the loaded library, as CUBLAS_VERSION spells it (e.g. 120903 for 12.9.3)."""
        v = ctypes.c_int()
        self.lib.call("cublasGetVersion_v2", self._live_handle("cublasGetVersion_v2"), ctypes.byref(v))
        return v.value

    @staticmethod
    def _column_major(
        a: int, b: int, out: int, m: int, n: int, k: int, lda: int, ldb: int, ldc: int, trans_a: bool, trans_b: bool
    ) -> tuple[int, int, int, int, int, int, int, int, int, int, int]:
        """The cuBLAS arguments (transa, transb, m, n, k, A, lda, B, ldb, C, ldc) of a row-major GEMM.

        A row-major matrix is its transpose in column-major order with the same leading dimension, so
        out = op(a) op(b) is, to column-major cuBLAS, out^T = op(b)^T op(a)^T: b comes first, the sizes
        m and n trade places, and each operand keeps its own transpose flag and leading dimension.
        """
        op_a = CUBLAS_OP_T if trans_a else CUBLAS_OP_N
        op_b = CUBLAS_OP_T if trans_b else CUBLAS_OP_N
        return op_b, op_a, n, m, k, b, ldb, a, lda, out, ldc

    def gemm(
        self,
        a: int,
        b: int,
        out: int,
        dtype: DTypeLike,
        m: int,
        n: int,
        k: int,
        lda: int,
        ldb: int,
        ldc: int,
        trans_a: bool,
        trans_b: bool,
        alpha: float,
        beta: float,
    ) -> None:
        """out <- alpha op(a) op(b) + beta out on row-major device matrices, as ``Ops.matmul`` means it (its
        reference: ``matmul`` in mlp_xp/reference/layer.py).

        Parameters
        ----------
        a, b, out : int
            Device addresses of the first element of each matrix.
        dtype : numpy dtype or str
            float32 (cublasSgemm_v2) or float64 (cublasDgemm_v2), for all three matrices.
        m, n, k : int
            out is m x n; op(a) is m x k and op(b) is k x n.
        lda, ldb, ldc : int
            Row lengths in memory, in elements: a is stored k x m if ``trans_a`` else m x k, b is stored
            n x k if ``trans_b`` else k x n, out is m x n; each must be at least the row it holds.
        trans_a, trans_b : bool
            op(x) is x transposed when its flag is set.
        alpha, beta : float
            Scalars, passed in pointer mode HOST: a captured graph keeps these values. With beta 0, out is
            not read (BLAS semantics: NaN there does not propagate).

        Raises
        ------
        DataError
            For a dtype other than float32 or float64, or a size outside cuBLAS's 32-bit int.
        CublasError
            If cuBLAS refuses the call (a leading dimension too short gives CUBLAS_STATUS_INVALID_VALUE).
        """
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt not in _GEMMS:
            raise DataError(
                f"GraphGemm.gemm got dtype {dtype!r}: cuBLAS GEMMs here take float32 (Sgemm) or float64 (Dgemm); "
                "convert with ops.asarray(..., dtype='float32')"
            )
        name, scalar = _GEMMS[dt]
        ptrs = [_as_int(what, v, 0) for what, v in (("a", a), ("b", b), ("out", out))]
        # The _v2 API takes C ints; ctypes would silently wrap a larger size (the _64 API is not used here).
        sizes = [
            _as_int(what, v, -_INT_MAX - 1, _INT_MAX)
            for what, v in zip("m n k lda ldb ldc".split(), (m, n, k, lda, ldb, ldc))
        ]
        args = self._column_major(*ptrs, *sizes, bool(trans_a), bool(trans_b))
        transa, transb, mm, nn, kk, A, lda_, B, ldb_, C, ldc_ = args
        handle = self._live_handle(name)
        alpha_c, beta_c = scalar(float(alpha)), scalar(float(beta))
        self.lib.call(
            name,
            handle,
            transa,
            transb,
            mm,
            nn,
            kk,
            ctypes.byref(alpha_c),
            A,
            lda_,
            B,
            ldb_,
            ctypes.byref(beta_c),
            C,
            ldc_,
        )

    def close(self) -> None:
        """Destroy the handle; calling it again does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self.lib.call("cublasDestroy_v2", handle)

    def __enter__(self) -> GraphGemm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
