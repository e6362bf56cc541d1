"""The CPU backend's compiled loops (``kernels/cpu.cpp``): built once per machine by its C++ compiler, loaded
with ctypes, the way the CUDA kernels are built by NVRTC on first use.

Each op of a training step is then one call into compiled code instead of a dozen NumPy calls, which matters
because the calls sit between GEMMs that flush the caches (see the head of ``cpu.cpp``). Without a compiler
the backend keeps to NumPy: the same results up to rounding, slower. :func:`status` says which, and why.

    MLP_XP_CPU_KERNELS=0           never build or load them (NumPy only)
    MLP_XP_REQUIRE_CPU_KERNELS=1   a failed build raises instead of falling back (CI sets it)
    CXX                            the compiler to use (else c++, g++ or clang++, the first found)

The shared library lands in ``<cache>/kernels/`` (:func:`mlp_xp.files.cache_root`: ``$MLP_XP_CACHE``, else
``~/.cache/mlp_xp``) under a name hashed from the sources, the compiler, its flags and the CPU, so an edit, a
new compiler or another machine sharing the home folder gets its own build; it is written whole or not at all.
Old builds are not removed: each is one small file.
"""

from __future__ import annotations

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

from ..files import atomic_writer, cache_root
from ..functions.activations import ACTIVATIONS  # the codes of common.cuh
from .kernels import HEADER, kernel_dir

SOURCE = "cpu.cpp"
#: Tried in order; -march=native is dropped when the compiler refuses it (some ARM compilers).
FLAGS = (["-O3", "-march=native"], ["-O3"])
# -ffp-contract=off: no fused multiply-adds the source did not write, so that whether the CPU has FMA, and
# which flag set was accepted, does not change the rounding.
COMMON_FLAGS = ["-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-Wall"]


class CpuKernels:
    """Typed entry points of the built library, for float32 and float64 arrays (C-contiguous)."""

    def __init__(self, lib: ctypes.CDLL, path: Path, compiler: str) -> None:
        self.path, self.compiler = path, compiler
        i64, i32, vp = ctypes.c_longlong, ctypes.c_int, ctypes.c_void_p
        self.fn: dict[tuple[str, np.dtype], ctypes._CFuncPtr] = {}
        for suffix, real, dt in (("f32", ctypes.c_float, np.float32), ("f64", ctypes.c_double, np.float64)):
            sig = {
                "bias_act": [vp, vp, i64, i64, i32, real],
                "act_bwd": [vp, vp, i64, i32, real],
                "bias_grad": [vp, vp, i64, i64, real],
                "softmax_xent": [vp, vp, vp, vp, i64, i64, i32, real],
                "flush_subnormals": [vp, i64],
                "adam_update": [vp, vp, vp, vp, i64, i64, *[real] * 8],
            }
            for name, argtypes in sig.items():
                f = getattr(lib, f"{name}_{suffix}")
                f.argtypes, f.restype = argtypes, None
                self.fn[(name, np.dtype(dt))] = f

    def bias_act(self, z: np.ndarray, b: np.ndarray, activation: str, slope: float) -> None:
        """z <- g(z + b) in place."""
        rows, cols = z.shape
        self.fn[("bias_act", z.dtype)](z.ctypes.data, b.ctypes.data, rows, cols, ACTIVATIONS[activation], slope)

    def act_backward(self, dh: np.ndarray, h: np.ndarray, activation: str, slope: float) -> None:
        """dh <- dh * g'(z) in place, g' read off h."""
        self.fn[("act_bwd", dh.dtype)](dh.ctypes.data, h.ctypes.data, dh.size, ACTIVATIONS[activation], slope)

    def bias_grad(self, g: np.ndarray, out: np.ndarray, beta: float) -> None:
        """out <- sum over rows of g + beta out."""
        rows, cols = g.shape
        self.fn[("bias_grad", g.dtype)](g.ctypes.data, out.ctypes.data, rows, cols, beta)

    def softmax_xent(
        self,
        z: np.ndarray,
        y: np.ndarray | None,
        acc: np.ndarray,
        write_grad: bool,
        smoothing: float,
        class_weight: np.ndarray | None,
    ) -> None:
        """The fused softmax cross-entropy of ``mlp_xp.functions.losses`` (y int32, acc float64)."""
        rows, C = z.shape
        self.fn[("softmax_xent", z.dtype)](
            z.ctypes.data,
            None if y is None else y.ctypes.data,
            None if class_weight is None else class_weight.ctypes.data,
            acc.ctypes.data,
            rows,
            C,
            int(write_grad),
            smoothing,
        )

    def adam_update(
        self,
        params,
        grads,
        m,
        v,
        n_weights: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        c1: float,
        c2: float,
        l2: float,
        l1: float,
    ) -> None:
        """The one-pass Adam step of ``optimizer.cu`` (bias corrections c1, c2 from the host), m's subnormals
        zeroed as it is stored."""
        self.fn[("adam_update", params.dtype)](
            params.ctypes.data,
            grads.ctypes.data,
            m.ctypes.data,
            v.ctypes.data,
            params.size,
            n_weights,
            lr,
            beta1,
            beta2,
            eps,
            c1,
            c2,
            l2,
            l1,
        )

    def flush_subnormals(self, a: np.ndarray) -> None:
        """a <- 0 where |a| is subnormal (see cpu.cpp for why), in place."""
        self.fn[("flush_subnormals", a.dtype)](a.ctypes.data, a.size)


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
    cannot be written. With ``MLP_XP_REQUIRE_CPU_KERNELS=1`` (CI) warnings are errors too.
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
    strict = ["-Werror"] if os.environ.get("MLP_XP_REQUIRE_CPU_KERNELS") == "1" else []
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
                    f"cannot write the built kernels to {out_dir} ({e.strerror}): set MLP_XP_CACHE to a writable folder"
                ) from e
            return lib, flags
    raise RuntimeError("building the CPU kernels failed:\n" + "\n".join(errors))


_STATUS: list[str] = []


@cache
def find() -> CpuKernels | None:
    """The built CPU kernels, or None (NumPy only); :func:`status` says why."""
    if os.environ.get("MLP_XP_CPU_KERNELS") == "0":
        _STATUS.append("off (MLP_XP_CPU_KERNELS=0)")
        return None
    cxx = compiler()
    try:
        if cxx is None:
            raise RuntimeError("no C++ compiler found: install g++ or clang++, or set CXX")
        path, flags = build(cxx, cache_root() / "kernels")
        kernels = CpuKernels(ctypes.CDLL(str(path)), path, " ".join(cxx))
        _check(kernels)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        if os.environ.get("MLP_XP_REQUIRE_CPU_KERNELS") == "1":
            raise RuntimeError(f"MLP_XP_REQUIRE_CPU_KERNELS=1 but the CPU kernels are unavailable: {e}") from e
        _STATUS.append(f"unavailable, NumPy used instead: {str(e).splitlines()[0]}")
        return None
    _STATUS.append(f"built by {' '.join([Path(cxx[0]).name, *cxx[1:], *flags])}: {path}")
    return kernels


def status() -> str:
    """One line: whether the compiled CPU kernels are in use, and with which compiler, or why not."""
    find()
    return _STATUS[-1]


def _check(k: CpuKernels) -> None:
    # One small call per dtype against NumPy, so that a library built against another ABI is never used.
    for dt in (np.float32, np.float64):
        z = np.array([[-1.0, 2.0], [3.0, -4.0]], dt)
        k.bias_act(z, np.array([0.5, 0.5], dt), "relu", 0.0)
        if not np.array_equal(z, np.array([[0.0, 2.5], [3.5, 0.0]], dt)):
            raise RuntimeError(f"the built CPU kernels give wrong results ({np.dtype(dt).name} bias + ReLU)")
