"""Data-parallel training across processes on MPI (mpi4py): ``mpiexec -n N mlp-xp train ...``, or from Python
``fit(..., comm=MPICommunicator())``.

Every rank holds the whole dataset and draws the same permutation; each step's global batch (``batch_size``
rows) is split into N contiguous parts without padding or repeated rows (a rank may get none), each rank runs the
step's forward and backward on its part with the loss divided by the global batch's rows (or sum of sample
weights), one in-place all-reduce sums the flat gradient buffer, and every rank applies the same update. With
momentum folded into the gradient GEMM (V <- mu V + dW), only rank 0 folds mu V: the sum is then exactly
mu V + the global gradient, and the ranks stay bit-identical. Metrics are reduced once per epoch; stop decisions
(callbacks, signals) are taken once per epoch, at its end, on every rank alike; rank 0 alone writes.

:class:`Communicator` is the one-process default: it does nothing, and a run with it is bit for bit the run
without one. The collectives here work on host (NumPy) buffers: the CPU backend. GPU ranks (NCCL) are not here
yet and are refused with a clear message.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ConfigError

__all__ = ["Communicator", "MPICommunicator", "from_environment", "split_rows"]

#: Environment variables in which MPI launchers give the world size (MPICH/hydra, Open MPI, PMIx, Slurm).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


class Communicator:
    """One process: rank 0 of 1, every collective a no-op."""

    rank = 0
    size = 1

    def allreduce(self, buf: np.ndarray) -> None:
        """buf <- the sum of every rank's buf, in place."""

    def bcast(self, buf: np.ndarray) -> None:
        """buf <- rank 0's buf, in place."""

    def bcast_obj(self, obj):
        """Rank 0's object, on every rank."""
        return obj

    def allgather_obj(self, obj) -> list:
        """Every rank's object, in rank order."""
        return [obj]

    def abort(self, code: int = 1) -> None:
        """End the whole job (every rank), now."""
        raise SystemExit(code)


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (mpi4py's ``COMM_WORLD`` by default)."""

    def __init__(self, comm=None) -> None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ConfigError("training over MPI needs mpi4py: pip install 'mlp-xp[mpi]' (mpi4py and MPICH)") from None
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce(self, buf: np.ndarray) -> None:
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def bcast(self, buf: np.ndarray) -> None:
        self.comm.Bcast(buf, root=0)

    def bcast_obj(self, obj):
        return self.comm.bcast(obj, root=0)

    def allgather_obj(self, obj) -> list:
        return self.comm.allgather(obj)

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def local_size(self) -> int:
        """The ranks on this machine."""
        return self.comm.Split_type(self._MPI.COMM_TYPE_SHARED).Get_size()


def launched_size() -> int:
    """The world size an MPI launcher (mpiexec, srun) gave this process, 1 outside one."""
    for name in _SIZE_VARIABLES:
        try:
            value = int(os.environ.get(name, "1"))
        except ValueError:
            continue
        if value > 1:
            return value
    return 1


def from_environment() -> Communicator:
    """An :class:`MPICommunicator` when this process was started by an MPI launcher with more than one rank, else
    the one-process :class:`Communicator`. With as many ranks on this machine as cores or more, each rank's BLAS
    is held to one thread (two threads a rank on a busy core make the collectives 3 to 10 times slower), unless
    ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` says otherwise."""
    if launched_size() <= 1:
        return Communicator()
    comm = MPICommunicator()
    if comm.size > 1 and comm.local_size() >= (os.cpu_count() or 1):
        if not any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")
    return comm


def split_rows(n: int, size: int, rank: int) -> tuple[int, int]:
    """The contiguous part [lo, hi) of n rows that ``rank`` of ``size`` takes: sizes differ by at most one, the
    first ranks take the larger parts, a rank may take none."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)
