"""Where the CUDA sources live, which instantiations each file has, the codes they switch on, and the text a
compiler is given.

The ``.cu`` files sit in ``kernels/`` at the top of the repository and are copied into the wheel as
``mlp_xp/kernels``. Each file is compiled as one module with ``common.cuh`` pasted in front (not
``#include``d: CuPy's disk cache keys on the source text only, so an included header that changed would
not be noticed). Template kernels are instantiated for float and double by name, as CuPy's
``RawModule(name_expressions=...)`` and the CPU harness in ``tests/cuda_host`` both expect.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from ..constraints import Options
from ..reference.layer import ACTIVATIONS
from ..reference.loss import LOSSES

HEADER = "common.cuh"

#: The activation codes of common.cuh (ACT_IDENTITY ... ACT_TANH), by the reference's names.
ACTIVATION_CODES: dict[str, int] = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}
#: Which kernel of loss.cu computes each loss.
LOSS_KERNELS: dict[str, str] = {
    "cross_entropy": "softmax_xent",
    "binary_cross_entropy": "sigmoid_bce",
    "mse": "squared_error",
}
_ACTIVATION, _LOSS = Options(*ACTIVATIONS), Options(*LOSSES)


def activation_code(name: str) -> int:
    """The kernel code of activation ``name``, or a ConfigError listing the valid names."""
    return ACTIVATION_CODES[_ACTIVATION.check(name, "activation")]


def loss_kernel(name: str) -> str:
    """The kernel of loss ``name``, or a ConfigError listing the valid names."""
    return LOSS_KERNELS[_LOSS.check(name, "loss")]


def kernel_name(base: str, *types: str) -> str:
    """The name expression of a template instantiation, spelled exactly as it is registered."""
    return f"{base}<{', '.join(types)}>" if types else base


def _both(base: str) -> list[str]:
    return [kernel_name(base, "float"), kernel_name(base, "double")]


#: Every kernel, by source file, as the name expressions that are compiled.
KERNELS: dict[str, list[str]] = {
    "activation.cu": [*_both("bias_act"), *_both("act_backward"), *_both("bias_grad")],
    "loss.cu": [*_both("softmax_xent"), *_both("sigmoid_bce"), *_both("squared_error")],
    "optimizer.cu": [*_both("sgd_update"), *_both("adam_update")],
    "gemm.cu": _both("gemm"),
    "data.cu": ["shuffle_keys"] + [kernel_name("gather_rows", t, l) for t in ("float", "double") for l in ("int", t)],
}

#: The null pointer argument of a kernel: eight zero bytes on every CuPy version. (``None`` is NULL on CuPy 14
#: but a garbage pointer on CuPy 13, cupy/cupy#9046.)
NULL = np.uint64(0)

#: C type of each supported NumPy dtype, for choosing an instantiation.
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int32): "int"}


def kernel_dir() -> Path:
    """The folder of the .cu files: inside the installed package, or the repository's ``kernels/``."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / HEADER).is_file():
            return candidate
    raise FileNotFoundError(f"the CUDA kernel sources (kernels/{HEADER}) are missing from {here}: reinstall mlp-xp")


def file_of(name: str) -> str:
    """The source file that defines kernel ``name`` (a name expression such as ``act_backward<float>``)."""
    for fname, names in KERNELS.items():
        if name in names:
            return fname
    raise KeyError(f"no kernel named {name!r}; known: {sorted(n for ns in KERNELS.values() for n in ns)}")


@cache
def source(fname: str) -> str:
    """The text compiled for ``fname``: the shared header, then the file, with #line marks for errors."""
    d = kernel_dir()
    header = (d / HEADER).read_text()
    body = (d / fname).read_text()
    return f'#line 1 "{HEADER}"\n{header}\n#line 1 "{fname}"\n{body}'
