"""Deprecated: the old name of :mod:`mlp_xp.backend.cpu_loops` (``CpuKernels`` is ``CompiledLoops``)."""

from ..deprecation import warn_renamed
from .cpu_loops import COMMON_FLAGS, FLAGS, SOURCE, build, compiler, find, status
from .cpu_loops import CompiledLoops as CpuKernels

__all__ = ["COMMON_FLAGS", "FLAGS", "SOURCE", "CpuKernels", "build", "compiler", "find", "status"]
warn_renamed("mlp_xp.backend.cpu_kernels", "mlp_xp.backend.cpu_loops")
