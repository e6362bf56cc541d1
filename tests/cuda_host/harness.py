"""Run the unmodified kernels/*.cu on the CPU: g++ with shim.h, launched through ctypes.

``HostKernels`` has the launch interface of the CuPy backend's kernel loader
(``launch(name, grid, block, args, shared_mem)``), so ``CupyOps`` can run with it standing in for a GPU.
It is strict where a GPU would silently misbehave: a pointer argument must be a C-contiguous NumPy array
of exactly the pointer's type (or None for a null pointer), a scalar must be a NumPy scalar of exactly the
parameter's C type (CuPy passes a Python int as 8 bytes and a float as a double: wrong for ``int`` and
``float`` parameters), the block must fit in 1024 threads and the dynamic shared memory in 48 KiB.

Set ``MLP_XP_HOST_ASAN=1`` to build with AddressSanitizer (the process must preload libasan).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp_xp.backend import kernels

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim.h"

_KERNEL_RE = re.compile(
    r'(?:template\s*<(?P<tparams>[^>]*)>\s*|extern\s+"C"\s+)__global__\s+void\s+'
    r"(?:__launch_bounds__\([^)]*\)\s*)?(?P<name>\w+)\s*\((?P<params>[^)]*)\)",
    re.S,
)
_DYN_SMEM_RE = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s*)?([\w\s]+?)\s+(\w+)\s*\[\s*\]\s*;")
_POINTEE = {
    "float": np.float32,
    "double": np.float64,
    "int": np.int32,
    "long long": np.int64,
    "unsigned long long": np.uint64,
}
_SCALAR = {
    "int": (np.int32, ctypes.c_int),
    "long long": (np.int64, ctypes.c_longlong),
    "unsigned long long": (np.uint64, ctypes.c_ulonglong),
    "float": (np.float32, ctypes.c_float),
    "double": (np.float64, ctypes.c_double),
}
MAX_THREADS, MAX_DYNAMIC_SMEM = 1024, 48 * 1024
MAX_GRID = (2**31 - 1, 65535, 65535)


@dataclass
class Launch:
    name: str
    grid: tuple
    block: tuple
    shared_mem: int


def _split_params(text: str) -> list[tuple[str, str]]:
    out = []
    for p in (s.strip() for s in text.split(",") if s.strip()):
        pname = re.findall(r"\w+", p)[-1]
        ctype = p[: p.rfind(pname)].replace("__restrict__", "").replace("const", "")
        out.append((pname, re.sub(r"\s+", " ", ctype).strip().replace(" *", "*")))
    return out


def _const_pointers(text: str) -> set[str]:
    """The parameters declared as pointers to const: what the kernel only reads."""
    out = set()
    for p in (s.strip() for s in text.split(",") if s.strip()):
        if "*" in p and re.match(r"\s*const\b", p):
            out.add(re.findall(r"\w+", p)[-1])
    return out


def _substitute(ctype: str, subst: dict[str, str]) -> str:
    """Replace template parameter names in a C type (``const T*`` with T=float -> ``const float*``)."""
    return re.sub(r"\b\w+\b", lambda w: subst.get(w.group(0), w.group(0)), ctype)


def _body_uses_sync(src: str, start: int) -> bool:
    i = src.index("{", start)
    depth, j = 0, i
    while True:
        depth += {"{": 1, "}": -1}.get(src[j], 0)
        j += 1
        if depth == 0:
            return "__syncthreads" in src[i:j]


class _HostModule:
    """One .cu file built into a shared library, with a launcher per name expression."""

    def __init__(self, fname: str, sanitize: bool, build_dir: Path) -> None:
        src = kernels.source(fname)
        defs = {m.group("name"): m for m in _KERNEL_RE.finditer(src)}
        self.params: dict[str, list[tuple[str, str]]] = {}
        #: Per kernel, the names of its read-only (pointer to const) parameters.
        self.reads_only: dict[str, set[str]] = {}
        self.uses_sync: dict[str, bool] = {}
        launchers = []
        for expr in kernels.KERNELS[fname]:
            base, _, targs = expr.partition("<")
            m = defs[base]
            params = _split_params(m.group("params"))
            if targs:
                names = [t.split()[-1] for t in m.group("tparams").split(",")]
                types = [t.strip() for t in targs.rstrip(">").split(",")]
                params = [(p, _substitute(t, dict(zip(names, types, strict=True)))) for p, t in params]
            self.params[expr] = params
            self.reads_only[expr] = _const_pointers(m.group("params"))
            self.uses_sync[expr] = _body_uses_sync(src, m.end())
            sym = "shimlaunch_" + re.sub(r"\W+", "_", expr)
            sig = ", ".join(f"{t} {p}" for p, t in params)
            call = ", ".join(p for p, _ in params)
            launchers.append(
                f'extern "C" void {sym}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,'
                f" unsigned bz, size_t smem, int fibers, {sig}) {{\n"
                f"  shim::launch(dim3(gx, gy, gz), dim3(bx, by, bz), smem, fibers != 0,\n"
                f"               [&] {{ {expr}({call}); }});\n}}\n"
            )
        body = _DYN_SMEM_RE.sub(lambda m: f"{m.group(1)}* {m.group(2)} = ({m.group(1)}*)shim::dyn_smem;", src)
        full = body + "\n// ---- generated launchers ----\n" + "".join(launchers)
        flags = ["-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-ffp-contract=off", "-Wno-unknown-pragmas"]
        if sanitize:
            flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
        key = hashlib.sha256((full + SHIM.read_text() + " ".join(flags)).encode()).hexdigest()[:16]
        so = build_dir / f"{fname}.{key}.so"
        if not so.exists():
            cpp = so.with_suffix(".cpp")
            cpp.write_text(full)
            tmp = so.with_suffix(f".tmp{os.getpid()}.so")
            r = subprocess.run(
                ["g++", "-x", "c++", "-include", str(SHIM), *flags, str(cpp), "-o", str(tmp)],
                capture_output=True,
                text=True,
            )
            if r.returncode:
                raise RuntimeError(f"g++ failed on {fname}:\n{r.stderr}")
            os.replace(tmp, so)
        self.lib = ctypes.CDLL(str(so))

    def prepare(self, expr, grid, block, args, shared_mem):
        """Check and convert the arguments now; return the call that runs the kernel."""
        params = self.params[expr]
        if len(args) != len(params):
            raise TypeError(f"{expr} takes {len(params)} arguments, got {len(args)}")
        cargs = []
        for (pname, ctype), a in zip(params, args, strict=True):
            if ctype.endswith("*"):
                want = _POINTEE[ctype[:-1].strip()]
                if a is None:
                    cargs.append(ctypes.c_void_p(None))
                    continue
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.dtype != want:
                    got = f"{type(a).__name__} {getattr(a, 'dtype', '')}"
                    raise TypeError(
                        f"{expr}: argument {pname} must be a C-contiguous {np.dtype(want)} array, got {got}"
                    )
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                want, cty = _SCALAR[ctype]
                if not isinstance(a, np.generic) or type(a) is not want:
                    raise TypeError(
                        f"{expr}: scalar {pname} must be {want.__name__} (C {ctype}), got {type(a).__name__}"
                    )
                cargs.append(cty(a.item()))
        fn = getattr(self.lib, "shimlaunch_" + re.sub(r"\W+", "_", expr))
        fn.restype = None
        fibers = int(self.uses_sync[expr])
        call_args = (
            *(ctypes.c_uint(v) for v in grid + block),
            ctypes.c_size_t(shared_mem),
            ctypes.c_int(fibers),
            *cargs,
        )
        return lambda: fn(*call_args)


class HostKernels:
    """The kernels/*.cu files built for the CPU, launched like the CuPy backend launches them on a GPU."""

    def __init__(self, sanitize: bool | None = None, build_dir: str | os.PathLike | None = None) -> None:
        self.sanitize = os.environ.get("MLP_XP_HOST_ASAN") == "1" if sanitize is None else sanitize
        default = Path(tempfile.gettempdir()) / f"mlp_xp_host_cuda_{os.getuid()}"
        self.build_dir = Path(build_dir) if build_dir else default
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self._modules: dict[str, _HostModule] = {}
        self.launches: list[Launch] = []

    def module(self, fname: str) -> _HostModule:
        mod = self._modules.get(fname)
        if mod is None:
            mod = self._modules[fname] = _HostModule(fname, self.sanitize, self.build_dir)
        return mod

    def preload(self, names) -> None:
        for name in names:
            self.module(kernels.file_of(name))

    def prepare(self, name: str, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0):
        """Check a launch as a GPU would and convert its arguments; return the call that runs it.

        Limits are those of every GPU the project supports (sm_75 and newer): at most 1024 threads a block,
        grid.x up to 2**31 - 1, grid.y and grid.z up to 65535, 48 KiB of dynamic shared memory without opt-in.
        """
        if not (isinstance(grid, tuple) and isinstance(block, tuple)):
            raise TypeError(f"{name}: grid and block must be tuples (as CuPy requires), got {grid!r}, {block!r}")
        g = tuple(int(v) for v in grid) + (1,) * (3 - len(grid))
        b = tuple(int(v) for v in block) + (1,) * (3 - len(block))
        if min(g + b) < 1:
            raise ValueError(f"{name}: empty launch grid={g} block={b}")
        if b[0] * b[1] * b[2] > MAX_THREADS:
            raise ValueError(f"{name}: block {b} has more than {MAX_THREADS} threads")
        if g[0] > MAX_GRID[0] or g[1] > MAX_GRID[1] or g[2] > MAX_GRID[2]:
            raise ValueError(f"{name}: grid {g} exceeds the limits {MAX_GRID} (cudaErrorInvalidConfiguration)")
        if shared_mem > MAX_DYNAMIC_SMEM:
            raise ValueError(f"{name}: {shared_mem} bytes of dynamic shared memory exceed {MAX_DYNAMIC_SMEM}")
        call = self.module(kernels.file_of(name)).prepare(name, g, b, args, shared_mem)
        self.launches.append(Launch(name, g, b, shared_mem))
        return call

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        """Check and run a launch now (``None`` for a pointer argument is a null pointer here, below CuPy)."""
        self.prepare(name, grid, block, args, shared_mem)()

    def parameters(self, name: str) -> tuple[list[tuple[str, str]], set[str]]:
        """The parameters of kernel ``name`` as (name, C type) pairs, and the names of the read-only pointers."""
        mod = self.module(kernels.file_of(name))
        return mod.params[name], mod.reads_only[name]
