"""The CPU backend's compiled loops (``kernels/cpu.cpp``): built once per machine by its C++ compiler, loaded
with ctypes, the way the CUDA kernels are built by NVRTC on first use.

Each op of a training step is then one call into compiled code instead of a dozen NumPy calls, which matters
because the calls sit between GEMMs that flush the caches (see the head of ``cpu.cpp``). Without a compiler
the backend keeps to NumPy: the same results up to rounding, slower. :func:`status` says which, and why.

    MLP_XP_CPU_LOOPS=0           never build or load them (the NumPy path instead)
    MLP_XP_REQUIRE_CPU_LOOPS=1   a failed build raises instead of falling back (CI sets it)
    CXX                          the compiler to use (else c++, g++ or clang++, the first found)

(``MLP_XP_CPU_KERNELS`` and ``MLP_XP_REQUIRE_CPU_KERNELS``, their old names, still work, with a warning.)

The shared library lands in ``<cache>/kernels/`` (:func:`mlp_xp.files.cache_root`: ``$MLP_XP_CACHE``, else
``~/.cache/mlp_xp``) under a name hashed from the sources, the compiler, its flags and the CPU, so an edit, a
new compiler or another machine sharing the home folder gets its own build; it is written whole or not at all.
Old builds are not removed: each is one small file.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from ..deprecation import warn_renamed
from ..files import atomic_writer, cache_root
from ..reference.optimizer import adam_corrections
from .kernels import HEADER, activation_code, kernel_dir
from .pointers import address
from .program import CORRECTION1, CORRECTION2, StepScalar

SOURCE = "cpu.cpp"
#: Tried in order; -march=native is dropped when the compiler refuses it (some ARM compilers).
FLAGS = (["-O3", "-march=native"], ["-O3"])
# -ffp-contract=off: no fused multiply-adds the source did not write, so that whether the CPU has FMA, and
# which flag set was accepted, does not change the rounding.
COMMON_FLAGS = ["-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-Wall"]


class CompiledLoops:
    """Typed entry points of the built library, for float32 and float64 arrays (C-contiguous)."""

    def __init__(self, lib: ctypes.CDLL, path: Path, compiler: str) -> None:
        self.path, self.compiler = path, compiler
        i64, i32, vp = ctypes.c_longlong, ctypes.c_int, ctypes.c_void_p
        self.fn: dict[tuple[str, np.dtype], ctypes._CFuncPtr] = {}
        for suffix, real, dt in (("f32", ctypes.c_float, np.float32), ("f64", ctypes.c_double, np.float64)):
            sig = {
                "bias_act": [vp, vp, i64, i64, i32, real],
                "act_backward": [vp, vp, i64, i32, real],
                "bias_grad": [vp, vp, i64, i64, real],
                "softmax_xent": [vp, vp, vp, vp, vp, i64, i64, i32, real, real],
                "squared_error": [vp, vp, vp, vp, i64, i64, i32, real],
                "sigmoid_bce": [vp, vp, vp, vp, i64, i64, i32, real],
                "add_l1": [vp, vp, i64, real],
                "flush_subnormals": [vp, i64],
                "adam_update": [vp, vp, vp, vp, i64, i64, *[real] * 8],
            }
            for name, argtypes in sig.items():
                f = getattr(lib, f"{name}_{suffix}")
                f.argtypes, f.restype = argtypes, None
                self.fn[(name, np.dtype(dt))] = f
        self.lib = lib
        gather = lib.gather_rows
        gather.argtypes, gather.restype = [vp, i64, i64, vp, i64, vp], None
        self.fn[("gather_rows", None)] = gather
        lib.program_op.argtypes, lib.program_op.restype = [ctypes.c_char_p], i32
        lib.run_program.argtypes, lib.run_program.restype = [vp, i64, vp, vp], i64
        #: Whether this build fuses the multiply-adds of its exp and tanh (where the CPU has FMA): the two forms
        #: round differently (cpu.cpp, mul_add). None for a build older than the question (benchmarks/cpu_loops.py
        #: --also times those).
        self.fma: bool | None = None
        if hasattr(lib, "fused_multiply_add"):
            lib.fused_multiply_add.argtypes, lib.fused_multiply_add.restype = [], i32
            self.fma = bool(lib.fused_multiply_add())
        #: Whether this build's float32 bias + tanh looks tanh up in a table (cpu.cpp, bias_tanh_lookup: where the
        #: target has AVX-512), rather than computing it from its own exp (tanh_v). None for a build older than it.
        self.tanh_lookup: bool | None = None
        if hasattr(lib, "tanh_by_lookup"):
            lib.tanh_by_lookup.argtypes, lib.tanh_by_lookup.restype = [], i32
            self.tanh_lookup = bool(lib.tanh_by_lookup())
            lib.tanh_lookup_f32.argtypes, lib.tanh_lookup_f32.restype = [vp, vp, i64], None

    def recording(self, program) -> CompiledLoops:
        """These loops with every call recorded into ``program`` instead of made (:mod:`.program`), each as the op
        named as its export."""
        rec = copy.copy(self)
        rec.fn = {key: program.recorder(f.__name__, f) for key, f in self.fn.items()}
        return rec

    def op_code(self, name: str) -> int:
        """run_program's code of the op ``name`` (an export's name, or a BLAS routine's: gemm_f32_i64, ...); -1
        for a name it does not know."""
        return self.lib.program_op(name.encode())

    def run_program(self, table: int, n: int, scalars: np.ndarray, pointers: np.ndarray) -> None:
        """Run the n instructions at ``table`` (a :class:`.program.Program`'s) with the step's values."""
        failed = self.lib.run_program(table, n, address(scalars), address(pointers))
        if failed:
            raise RuntimeError(
                f"instruction {failed - 1} of a step program is not one this build runs (its op code or its number "
                "of words): a program recorded against another build"
            )

    def gather_rows(self, src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
        """out <- src[idx] by rows (indices clamped into range), C-contiguous arrays of one dtype, idx int64."""
        row_bytes = src.itemsize * (src.size // src.shape[0])
        self.fn[("gather_rows", None)](address(src), src.shape[0], row_bytes, address(idx), idx.shape[0], address(out))

    def bias_act(self, z: np.ndarray, b: np.ndarray, activation: str, slope: float) -> None:
        """z <- g(z + b) in place."""
        rows, cols = z.shape
        self.fn[("bias_act", z.dtype)](address(z), address(b), rows, cols, activation_code(activation), slope)

    def act_backward(self, dh: np.ndarray, h: np.ndarray, activation: str, slope: float) -> None:
        """dh <- dh * g'(z) in place, g' read off h."""
        code = activation_code(activation)
        self.fn[("act_backward", dh.dtype)](address(dh), address(h), dh.size, code, slope)

    def bias_grad(self, g: np.ndarray, out: np.ndarray, *, accumulate: float = 0.0) -> None:
        """out <- sum over rows of g + accumulate out."""
        rows, cols = g.shape
        self.fn[("bias_grad", g.dtype)](address(g), address(out), rows, cols, accumulate)

    def softmax_xent(
        self,
        z: np.ndarray,
        y: np.ndarray | None,
        acc: np.ndarray,
        *,
        write_grad: bool = True,
        smoothing: float = 0.0,
        class_weight: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        divisor: float | None = None,
    ) -> None:
        """Softmax cross-entropy in place (y int32 or None for probabilities only, acc float64; per-row weights
        of z's dtype or None, and the gradient's divisor, by default the rows)."""
        rows, C = z.shape
        y_ptr = None if y is None else address(y)
        w_ptr = None if class_weight is None else address(class_weight)
        s_ptr = None if sample_weight is None else address(sample_weight)
        d = _divisor(rows, divisor)
        self.fn[("softmax_xent", z.dtype)](
            address(z), y_ptr, w_ptr, s_ptr, address(acc), rows, C, int(write_grad), smoothing, d
        )

    def squared_error(self, z, y, acc, *, write_grad=True, sample_weight=None, divisor=None) -> None:
        """Half squared error in place (y of z's shape and dtype, acc float64; per-row weights of z's dtype or None,
        and the gradient's divisor, by default the rows)."""
        self._targets_loss("squared_error", z, y, acc, write_grad, sample_weight, divisor)

    def sigmoid_bce(self, z, y, acc, *, write_grad=True, sample_weight=None, divisor=None) -> None:
        """Sigmoid binary cross-entropy in place, with squared_error's arguments (y: targets in [0, 1])."""
        self._targets_loss("sigmoid_bce", z, y, acc, write_grad, sample_weight, divisor)

    def _targets_loss(self, name, z, y, acc, write_grad, sample_weight, divisor) -> None:
        rows, K = z.shape
        s_ptr = None if sample_weight is None else address(sample_weight)
        d = _divisor(rows, divisor)
        self.fn[(name, z.dtype)](address(z), address(y), s_ptr, address(acc), rows, K, int(write_grad), d)

    def add_l1(self, g: np.ndarray, w: np.ndarray, l1: float) -> None:
        """g <- g + l1 sign(w) in place, over arrays of one shape and dtype (sign 0 for a NaN w)."""
        self.fn[("add_l1", g.dtype)](address(g), address(w), g.size, l1)

    def adam_update(
        self,
        params,
        grads,
        m,
        v,
        n_weights: int,
        lr: float,
        step: int,
        *,
        beta1: float,
        beta2: float,
        eps: float,
        l2: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        """One Adam step in one pass, m's subnormals stored as 0 (common.cuh's k_adam_step)."""
        # a recorded step's learning rate is the step's, and so are its corrections (mlp_xp/backend/program.py)
        c1, c2 = (CORRECTION1, CORRECTION2) if isinstance(lr, StepScalar) else adam_corrections(step, beta1, beta2)
        pointers = (address(a) for a in (params, grads, m, v))
        self.fn[("adam_update", params.dtype)](*pointers, params.size, n_weights, lr, beta1, beta2, eps, c1, c2, l2, l1)

    def flush_subnormals(self, a: np.ndarray) -> None:
        """a <- 0 where |a| is subnormal (see cpu.cpp for why), in place."""
        self.fn[("flush_subnormals", a.dtype)](address(a), a.size)

    def tanh_lookup_f32(self, z: np.ndarray) -> np.ndarray:
        """tanh(z) by cpu.cpp's table lookup, one element at a time, on any CPU: the values of a build's float32
        bias + tanh where :attr:`tanh_lookup` holds (for the tests and tools/fit_tanh_table.py)."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        out = np.empty_like(z)
        self.lib.tanh_lookup_f32(address(z), address(out), z.size)
        return out


def _divisor(rows: int, divisor) -> float | StepScalar:
    """The loss's divisor: the rows by default; a recorded weighted step's is the step's value."""
    if isinstance(divisor, StepScalar):
        return divisor
    return float(rows if divisor is None else divisor)


def compiler() -> list[str] | None:
    """The C++ compiler command: ``$CXX`` (split as a shell would: ``ccache g++`` works), else the first of
    c++, g++, clang++ on the PATH."""
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _cpu_signature() -> str:
    # -march=native code must not run on another CPU that shares the cache folder: key on its features.
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("flags", "model name", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _version(cxx: list[str]) -> str:
    r = subprocess.run([*cxx, "--version"], capture_output=True, text=True, timeout=30)
    return r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else "unknown"


def build(cxx: str | list[str], out_dir: Path) -> tuple[Path, list[str]]:
    """Compile ``cpu.cpp`` with the compiler command ``cxx`` into ``out_dir``, or reuse an earlier build:
    (library path, flags).

    Raises RuntimeError with the compiler's message when every flag set fails, or naming the folder when it
    cannot be written. With ``MLP_XP_REQUIRE_CPU_LOOPS=1`` (CI) warnings are errors too.
    """
    cxx = shlex.split(cxx) if isinstance(cxx, str) else list(cxx)
    src_dir = kernel_dir()
    text = (src_dir / HEADER).read_text() + (src_dir / SOURCE).read_text()
    version = _version(cxx)
    candidates = []
    for flags in FLAGS:
        key = hashlib.sha256("\0".join([text, *cxx, version, *flags, *COMMON_FLAGS, _cpu_signature()]).encode())
        candidates.append((out_dir / f"cpu-{key.hexdigest()[:16]}.so", flags))
    for lib, flags in candidates:  # any earlier build: no compiler run at all (not even a failing one)
        if lib.is_file():
            return lib, flags
    strict = ["-Werror"] if _env("MLP_XP_REQUIRE_CPU_LOOPS") == "1" else []
    errors = []
    for lib, flags in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            built = Path(tmp) / "cpu.so"
            cmd = [*cxx, *flags, *COMMON_FLAGS, *strict, "-I", str(src_dir), str(src_dir / SOURCE), "-o", str(built)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode:
                errors.append(f"{' '.join(cmd)}\n{r.stderr.strip()}")
                continue
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                with atomic_writer(lib) as f:
                    f.write(built.read_bytes())
            except OSError as e:
                raise RuntimeError(
                    f"cannot write the compiled CPU loops to {out_dir} ({e.strerror}): set MLP_XP_CACHE to a "
                    "writable folder"
                ) from e
            return lib, flags
    raise RuntimeError("building the compiled CPU loops failed:\n" + "\n".join(errors))


_STATUS: list[str] = []
#: The old names of the environment variables, still read.
_OLD_ENV = {"MLP_XP_CPU_LOOPS": "MLP_XP_CPU_KERNELS", "MLP_XP_REQUIRE_CPU_LOOPS": "MLP_XP_REQUIRE_CPU_KERNELS"}


def _env(name: str) -> str | None:
    """An environment variable, or its old name's value (with a warning) when only that one is set."""
    if name in os.environ or _OLD_ENV[name] not in os.environ:
        return os.environ.get(name)
    warn_renamed(_OLD_ENV[name], name)
    return os.environ[_OLD_ENV[name]]


@cache
def find() -> CompiledLoops | None:
    """The compiled CPU loops, or None (NumPy only); :func:`status` says why."""
    if _env("MLP_XP_CPU_LOOPS") == "0":
        _STATUS.append("off (MLP_XP_CPU_LOOPS=0)")
        return None
    cxx = compiler()
    try:
        if cxx is None:
            raise RuntimeError("no C++ compiler found: install g++ or clang++, or set CXX")
        path, flags = build(cxx, cache_root() / "kernels")
        loops = CompiledLoops(ctypes.CDLL(str(path)), path, " ".join(cxx))
        _check(loops)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        if _env("MLP_XP_REQUIRE_CPU_LOOPS") == "1":
            raise RuntimeError(f"MLP_XP_REQUIRE_CPU_LOOPS=1 but the compiled CPU loops are unavailable: {e}") from e
        _STATUS.append(f"unavailable, NumPy used instead: {str(e).splitlines()[0]}")
        return None
    how = f"{'with' if loops.fma else 'without'} FMA{', float32 tanh by lookup' if loops.tanh_lookup else ''}"
    _STATUS.append(f"built by {' '.join([Path(cxx[0]).name, *cxx[1:], *flags])} ({how}): {path}")
    return loops


def status() -> str:
    """One line: whether the compiled CPU loops are in use, and with which compiler, or why not."""
    find()
    return _STATUS[-1]


def _check(k: CompiledLoops) -> None:
    # One small call per dtype against NumPy, so that a library built against another ABI is never used.
    for dt in (np.float32, np.float64):
        z = np.array([[-1.0, 2.0], [3.0, -4.0]], dt)
        k.bias_act(z, np.array([0.5, 0.5], dt), "relu", 0.0)
        if not np.array_equal(z, np.array([[0.0, 2.5], [3.5, 0.0]], dt)):
            raise RuntimeError(f"the compiled CPU loops give wrong results ({np.dtype(dt).name} bias + ReLU)")
