"""A stand-in for libcublas on host memory, for ``mlp_xp.backend.cublas_graph`` on machines without a GPU.

``FakeCublas`` has attributes named like the C functions the module calls. Each is called the way ctypes
calls the real one: it needs ``argtypes`` and ``restype`` set, to exactly the types of its C prototype as this
file reads ``cublas_api.h`` (cuBLAS 12.9.3; the same in 13.10.0), and it converts every argument through
``argtypes[i].from_param``, so that a wrong type fails with ``ctypes.ArgumentError`` and a wrong count with
``TypeError``. The prototypes are written here a second time, on purpose, apart from the module's table:
a mistake in one of them shows up as a mismatch instead of being shared.

What the real library does and this models:

* status codes as ints; CUBLAS_STATUS_NOT_INITIALIZED for a handle never created or already destroyed;
  CUBLAS_STATUS_INVALID_VALUE for a negative size, an unknown operation or pointer mode, a leading
  dimension shorter than cuBLAS allows (column-major: lda >= max(1, rows of A as stored), and so on), a NULL
  alpha, beta or output handle, or a workspace not aligned to 256 bytes;
* ``cublasSetStream_v2`` resets the handle's workspace to the default pool, so a workspace set before the
  stream is visibly lost;
* GEMMs in column-major order on the memory at the pointers (here host addresses, ``ndarray.ctypes.data``),
  computed with NumPy in the matrices' dtype; with beta 0, C is not read (BLAS semantics); with m or n 0,
  nothing happens; with k 0, C <- beta C;
* pointer mode HOST reads alpha and beta at call time; DEVICE reads them when the GEMM runs.

Unlike the real library it refuses a NULL matrix it would have to read or write with
CUBLAS_STATUS_INVALID_VALUE (the real one would fault on the device), and it records every call in
``calls``. ``dispatch(stream, run)`` is called for each GEMM with the handle's stream and the work to do;
the default runs it at once, a CUDA stand-in can record it into a graph while that stream captures.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# cublasStatus_t, cublasOperation_t and cublasPointerMode_t of cublas_api.h.
SUCCESS, NOT_INITIALIZED, ALLOC_FAILED, INVALID_VALUE = 0, 1, 3, 7
EXECUTION_FAILED, INTERNAL_ERROR, NOT_SUPPORTED = 13, 14, 15
OP_N, OP_T, OP_C = 0, 1, 2
POINTER_MODE_HOST, POINTER_MODE_DEVICE = 0, 1
WORKSPACE_ALIGNMENT = 256

_P, _VOID, _INT = ctypes.POINTER, ctypes.c_void_p, ctypes.c_int


def _gemm_signature(scalar: type) -> tuple[type, ...]:
    # handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc
    return (_VOID, _INT, _INT, _INT, _INT, _INT, _P(scalar), _VOID, _INT, _VOID, _INT, _P(scalar), _VOID, _INT)


#: The ctypes types of each C function's parameters, as this fake reads the header.
SIGNATURES: dict[str, tuple[type, ...]] = {
    "cublasCreate_v2": (_P(_VOID),),
    "cublasDestroy_v2": (_VOID,),
    "cublasGetVersion_v2": (_VOID, _P(_INT)),
    "cublasSetStream_v2": (_VOID, _VOID),
    "cublasSetWorkspace_v2": (_VOID, _VOID, ctypes.c_size_t),
    "cublasSetPointerMode_v2": (_VOID, _INT),
    "cublasSgemm_v2": _gemm_signature(ctypes.c_float),
    "cublasDgemm_v2": _gemm_signature(ctypes.c_double),
}


@dataclass
class HandleState:
    """What a cuBLAS handle holds: its stream, its workspace ((address, bytes), None for the default pool)
    and its pointer mode."""

    stream: int = 0
    workspace: tuple[int, int] | None = None
    pointer_mode: int = POINTER_MODE_HOST


@dataclass(frozen=True)
class Call:
    """One call into the fake, with the handle's state after it (None where the handle does not exist)."""

    name: str
    handle: int | None
    status: int
    stream: int | None = None
    workspace: tuple[int, int] | None = None
    pointer_mode: int | None = None


def _c_value(argtype: type, arg) -> int | float:
    """The value a C function receives for ``arg`` passed as ``argtype``: an int for integers and for
    pointers (their address, 0 for NULL)."""
    if issubclass(argtype, ctypes._Pointer):
        if arg is None:
            return 0
        if type(arg).__name__ == "CArgObject":  # ctypes.byref(obj)
            return ctypes.addressof(arg._obj)
        if isinstance(arg, ctypes._Pointer):
            return ctypes.cast(arg, _VOID).value or 0
        return ctypes.addressof(arg)  # a ctypes array, which from_param accepted
    value = arg.value if isinstance(arg, argtype) else argtype(arg).value
    return 0 if value is None else value  # c_void_p(0).value is None


class FakeFunction:
    """One C function: callable through ctypes' ``argtypes``/``restype`` contract, like a ``ctypes._FuncPtr``."""

    def __init__(self, name: str, signature: tuple[type, ...], impl: Callable[..., int]) -> None:
        self.__name__ = name
        self.signature = signature
        self.impl = impl
        self.argtypes: list[type] | None = None
        self.restype: type | None = ctypes.c_int  # ctypes' default, and right for cublasStatus_t

    def __call__(self, *args) -> int:
        name = self.__name__
        if self.argtypes is None:
            raise TypeError(
                f"{name}: argtypes not set: ctypes would pass each Python int as a C int, cutting 64-bit pointers"
            )
        if tuple(self.argtypes) != self.signature:
            raise TypeError(
                f"{name}: argtypes {list(self.argtypes)} do not match the C prototype {list(self.signature)}"
            )
        if self.restype is not ctypes.c_int:
            raise TypeError(f"{name}: restype {self.restype} where the C function returns cublasStatus_t (c_int)")
        n = len(self.signature)
        if len(args) < n:
            raise TypeError(f"this function takes at least {n} argument{'s' if n > 1 else ''} ({len(args)} given)")
        if len(args) > n:
            # ctypes would pass the extra ones and the C function ignore them: refused here, it is always a bug
            raise TypeError(f"{name} takes {n} arguments ({len(args)} given)")
        values = []
        for i, (argtype, arg) in enumerate(zip(self.signature, args), start=1):
            try:
                argtype.from_param(arg)
            except TypeError as e:
                raise ctypes.ArgumentError(f"argument {i}: TypeError: {e}") from None
            values.append(_c_value(argtype, arg))
        return int(self.impl(*values))


def _colmajor(ptr: int, rows: int, cols: int, ld: int, dtype: np.dtype) -> np.ndarray:
    """The rows x cols column-major matrix with leading dimension ld at host address ptr, as a writable view."""
    count = ld * (cols - 1) + rows  # the last column ends at its last row: no padding read or written after it
    ctype = np.ctypeslib.as_ctypes_type(dtype)
    flat = np.ctypeslib.as_array((ctype * count).from_address(ptr))
    return np.lib.stride_tricks.as_strided(flat, shape=(rows, cols), strides=(dtype.itemsize, ld * dtype.itemsize))


def run_now(stream: int, run: Callable[[], None]) -> None:
    """The default dispatch: do the GEMM at once, whatever the stream."""
    run()


class FakeCublas:
    """libcublas on host memory (see the module docstring).

    Parameters
    ----------
    dispatch : callable, optional
        ``dispatch(stream, run)``, called for each GEMM that passed its checks; default :func:`run_now`.
    version : int
        What ``cublasGetVersion_v2`` reports (CUBLAS_VERSION of 12.9.3 by default).

    Attributes
    ----------
    calls : list of Call
        Every call, in order.
    handles : dict
        The live handles and their :class:`HandleState`.
    fail : dict
        Function name -> status to return instead of doing anything (to test error paths).
    """

    def __init__(self, dispatch: Callable[[int, Callable[[], None]], None] | None = None, version: int = 120903):
        self.dispatch = dispatch if dispatch is not None else run_now
        self.version = version
        self.calls: list[Call] = []
        self.handles: dict[int, HandleState] = {}
        self.fail: dict[str, int] = {}
        self._next_handle = 0x7E57_0000
        for name, signature in SIGNATURES.items():
            setattr(self, name, FakeFunction(name, signature, self._impl(name)))

    def _impl(self, name: str) -> Callable[..., int]:
        method = getattr(self, "_" + name)

        def impl(*values) -> int:
            handle = None if name == "cublasCreate_v2" else values[0]
            status = self.fail.get(name)
            if status is None:
                status, handle = method(*values)
            state = self.handles.get(handle)
            if state is None:
                self.calls.append(Call(name, handle, status))
            else:
                self.calls.append(Call(name, handle, status, state.stream, state.workspace, state.pointer_mode))
            return status

        return impl

    def names(self) -> list[str]:
        """The names of the functions called, in order."""
        return [c.name for c in self.calls]

    # ---- helper functions; each returns (status, handle) ----
    def _cublasCreate_v2(self, out: int):
        if not out:
            return INVALID_VALUE, None
        handle, self._next_handle = self._next_handle, self._next_handle + 0x100
        self.handles[handle] = HandleState()
        _VOID.from_address(out).value = handle
        return SUCCESS, handle

    def _cublasDestroy_v2(self, handle: int):
        if self.handles.pop(handle, None) is None:
            return NOT_INITIALIZED, handle
        return SUCCESS, handle

    def _cublasGetVersion_v2(self, handle: int, out: int):
        if handle not in self.handles:
            return NOT_INITIALIZED, handle
        if not out:
            return INVALID_VALUE, handle
        _INT.from_address(out).value = self.version
        return SUCCESS, handle

    def _cublasSetStream_v2(self, handle: int, stream: int):
        state = self.handles.get(handle)
        if state is None:
            return NOT_INITIALIZED, handle
        state.stream = stream
        state.workspace = None  # the real library resets the workspace to its default pool, unconditionally
        return SUCCESS, handle

    def _cublasSetWorkspace_v2(self, handle: int, workspace: int, nbytes: int):
        state = self.handles.get(handle)
        if state is None:
            return NOT_INITIALIZED, handle
        if workspace % WORKSPACE_ALIGNMENT:
            return INVALID_VALUE, handle
        state.workspace = (workspace, nbytes)
        return SUCCESS, handle

    def _cublasSetPointerMode_v2(self, handle: int, mode: int):
        state = self.handles.get(handle)
        if state is None:
            return NOT_INITIALIZED, handle
        if mode not in (POINTER_MODE_HOST, POINTER_MODE_DEVICE):
            return INVALID_VALUE, handle
        state.pointer_mode = mode
        return SUCCESS, handle

    # ---- GEMM ----
    def _cublasSgemm_v2(self, *values):
        return self._gemm(np.dtype(np.float32), *values)

    def _cublasDgemm_v2(self, *values):
        return self._gemm(np.dtype(np.float64), *values)

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha_p, a, lda, b, ldb, beta_p, c, ldc):
        state = self.handles.get(handle)
        if state is None:
            return NOT_INITIALIZED, handle
        ops = (OP_N, OP_T, OP_C)  # C is T for real types
        if transa not in ops or transb not in ops or m < 0 or n < 0 or k < 0:
            return INVALID_VALUE, handle
        # Column-major A is stored m x k (N) or k x m (T); B k x n or n x k; C m x n.
        a_rows, a_cols = (m, k) if transa == OP_N else (k, m)
        b_rows, b_cols = (k, n) if transb == OP_N else (n, k)
        if lda < max(1, a_rows) or ldb < max(1, b_rows) or ldc < max(1, m):
            return INVALID_VALUE, handle
        if not alpha_p or not beta_p:
            return INVALID_VALUE, handle
        if m == 0 or n == 0:
            return SUCCESS, handle
        if not c or (k > 0 and (not a or not b)):
            return INVALID_VALUE, handle
        scalar = dtype.type
        ctype = np.ctypeslib.as_ctypes_type(dtype)
        host_mode = state.pointer_mode == POINTER_MODE_HOST
        # Pointer mode HOST: the scalars are read now, and a captured graph keeps these values.
        alpha_now = scalar(ctype.from_address(alpha_p).value) if host_mode else None
        beta_now = scalar(ctype.from_address(beta_p).value) if host_mode else None

        def run() -> None:
            alpha = alpha_now if host_mode else scalar(ctype.from_address(alpha_p).value)
            beta = beta_now if host_mode else scalar(ctype.from_address(beta_p).value)
            out = _colmajor(c, m, n, ldc, dtype)
            if k == 0 or alpha == 0:  # A and B are not read
                prod = np.zeros((m, n), dtype)
            else:
                A = _colmajor(a, a_rows, a_cols, lda, dtype)
                B = _colmajor(b, b_rows, b_cols, ldb, dtype)
                prod = alpha * ((A if transa == OP_N else A.T) @ (B if transb == OP_N else B.T))
            out[...] = prod if beta == 0 else prod + beta * out  # beta 0: C is not read, its NaNs do not leak

        self.dispatch(state.stream, run)
        return SUCCESS, handle
