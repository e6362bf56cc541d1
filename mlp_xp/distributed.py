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
without one. :class:`MPICommunicator` reduces host (NumPy) buffers: the CPU backend's ranks.

GPU ranks (the CUDA backend): :class:`NCCLCommunicator`, one GPU per process (``cuda:<local rank>``, among the
devices ``CUDA_VISIBLE_DEVICES`` leaves visible), NCCL bootstrapped over MPI (rank 0 makes the unique id, MPI
broadcasts it). It reduces and broadcasts device buffers with NCCL, in place, on the backend's own stream, so
that a step never waits for the device and its work stays in stream order (and capturable); objects, and the
small host flags of the epoch's end, go over MPI. The PyPI MPI wheels are not CUDA-aware: no device buffer is
ever handed to MPI, and nothing is staged through the host behind the user's back. Where NCCL is missing, a
CUDA-aware MPI (``MPI.Query_cuda_support()``) is used instead, and says that it synchronizes the stream before
each collective; where neither is there, GPU ranks are refused. Verified on the CPU model of CuPy and NCCL
(``tests/cuda_host``) only: no GPU has run it.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import BackendUnavailable, ConfigError, install_hint

__all__ = [
    "Communicator",
    "CudaAwareMPICommunicator",
    "MPICommunicator",
    "NCCLCommunicator",
    "for_backend",
    "from_environment",
    "rank_device",
    "split_rows",
]

#: Environment variables in which MPI launchers give the world size (MPICH/hydra, Open MPI, PMIx, Slurm).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


class Communicator:
    """One process: rank 0 of 1, every collective a no-op."""

    rank = 0
    size = 1
    #: Whether the collectives take the CUDA backend's device buffers (NCCL, or a CUDA-aware MPI).
    reduces_device_buffers = False

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
            raise ConfigError(f"training over MPI needs mpi4py and MPICH: {install_hint('mpi')}") from None
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

    def local_rank(self) -> int:
        """This rank's place among the ranks on this machine (which GPU it takes)."""
        return self.comm.Split_type(self._MPI.COMM_TYPE_SHARED).Get_rank()

    def cuda_aware(self) -> bool:
        """Whether the MPI library says it takes CUDA device buffers (mpi4py's ``Query_cuda_support``, absent on
        some MPIs: then no)."""
        query = getattr(self._MPI, "Query_cuda_support", None)
        try:
            return bool(query()) if query is not None else False
        except Exception:  # an MPI that cannot tell
            return False


def _nccl_dtype(nccl, dtype) -> int:
    kinds = {np.dtype(np.float64): "NCCL_FLOAT64", np.dtype(np.float32): "NCCL_FLOAT32",
             np.dtype(np.int64): "NCCL_INT64", np.dtype(np.int32): "NCCL_INT32"}  # fmt: skip
    name = kinds.get(np.dtype(dtype))
    if name is None:
        raise ConfigError(f"NCCL collectives here take float32, float64, int32 or int64 buffers, not {dtype}")
    return getattr(nccl, name)


class NCCLCommunicator(MPICommunicator):
    """GPU ranks: device buffers reduced and broadcast by NCCL on the backend's own stream; objects and host
    buffers over MPI.

    ``ops`` is this rank's CUDA backend (``CupyOps`` on ``cuda:<local rank>``); NCCL's communicator is made on its
    device, from a unique id rank 0 draws and MPI broadcasts. Every collective on a device buffer is queued on
    ``ops``' stream (``CupyDevice.stream``) and returns at once: no host sync, and inside a CUDA graph capture it
    is recorded like any other node (NCCL >= 2.9).
    """

    reduces_device_buffers = True
    #: How device collectives go: "nccl" here, "cuda-aware mpi" in the subclass.
    transport = "nccl"

    def __init__(self, ops, comm=None, nccl=None) -> None:
        super().__init__(comm)
        if getattr(ops, "kind", None) != "cuda":
            raise ConfigError(f"NCCL ranks need the CUDA backend; this one is {getattr(ops, 'name', ops)}")
        self.ops = ops
        nccl = nccl if nccl is not None else ops.dev.nccl()
        if nccl is None or not getattr(nccl, "available", False):
            raise ConfigError(
                "GPU ranks reduce with NCCL, which CuPy cannot load here: pip install nvidia-nccl-cu12 (or -cu13) "
                "beside cupy, or train with --device cpu"
            )
        self.nccl = nccl
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)  # the bootstrap: rank 0's id, over MPI
        devices = self.allgather_obj(ops.index)
        if len(set(devices)) < len(devices):
            raise ConfigError(
                f"GPU ranks on one machine share a GPU (devices {devices}): NCCL takes one GPU per process; start "
                "as many ranks a machine as it has GPUs, each on cuda:<local rank>"
            )
        self.nccl_comm = ops.dev.nccl_communicator(nccl, self.size, uid, self.rank)

    def _device(self, buf) -> bool:
        return not isinstance(buf, np.ndarray)

    def allreduce(self, buf) -> None:
        if self._device(buf):
            self.ops.allreduce(buf, self)
        else:
            super().allreduce(buf)

    def bcast(self, buf) -> None:
        if self._device(buf):
            self.ops.bcast(buf, self)
        else:
            super().bcast(buf)

    # what CupyOps.allreduce and CupyOps.bcast call, on the backend's device and stream
    def device_allreduce(self, buf, stream_ptr: int) -> None:
        ptr = buf.data.ptr
        nccl = self.nccl
        self.nccl_comm.allReduce(ptr, ptr, buf.size, _nccl_dtype(nccl, buf.dtype), nccl.NCCL_SUM, stream_ptr)

    def device_bcast(self, buf, stream_ptr: int) -> None:
        self.nccl_comm.bcast(buf.data.ptr, buf.size, _nccl_dtype(self.nccl, buf.dtype), 0, stream_ptr)

    def abort(self, code: int = 1) -> None:
        try:
            self.nccl_comm.abort()  # a rank stuck in an NCCL kernel would not see MPI's abort
        except Exception:  # noqa: S110 - the job ends below anyway
            pass
        super().abort(code)


class CudaAwareMPICommunicator(MPICommunicator):
    """GPU ranks where NCCL is missing and the MPI takes device buffers: each collective on a device buffer first
    waits for the backend's stream (mpi4py does not order MPI after the stream), a host sync per step, said when
    the run starts. Never picked for an MPI that is not CUDA-aware."""

    reduces_device_buffers = True
    transport = "cuda-aware mpi"

    def __init__(self, ops, comm=None) -> None:
        super().__init__(comm)
        if not self.cuda_aware():
            raise ConfigError("this MPI is not CUDA-aware: it must not be handed device buffers")
        self.ops = ops

    def allreduce(self, buf) -> None:
        if not isinstance(buf, np.ndarray):
            self.ops.synchronize()
        super().allreduce(buf)

    def bcast(self, buf) -> None:
        if not isinstance(buf, np.ndarray):
            self.ops.synchronize()
        super().bcast(buf)


def for_backend(comm: Communicator, ops) -> Communicator:
    """The communicator GPU ranks need on ``ops``: ``comm`` itself for the CPU backend or one process; NCCL for the
    CUDA backend, else a CUDA-aware MPI (which says that it synchronizes every step), else a clear refusal. Never
    MPI on device buffers of an MPI that is not CUDA-aware, and never a silent copy through the host."""
    if comm.size <= 1 or getattr(ops, "kind", None) != "cuda" or comm.reduces_device_buffers:
        return comm
    mpi = comm.comm if isinstance(comm, MPICommunicator) else None
    nccl = ops.dev.nccl()
    if nccl is not None and getattr(nccl, "available", False):
        return NCCLCommunicator(ops, mpi, nccl)
    if isinstance(comm, MPICommunicator) and comm.cuda_aware():
        if comm.rank == 0:
            import sys

            print(
                "mlp_xp: NCCL is missing; the GPU ranks reduce through the CUDA-aware MPI, which waits for the "
                "device before each step's all-reduce (install nvidia-nccl-cu12 or -cu13 for stream-ordered steps)",
                file=sys.stderr,
            )
        return CudaAwareMPICommunicator(ops, mpi)
    raise ConfigError(
        "GPU ranks reduce with NCCL, which CuPy cannot load here, and this MPI is not CUDA-aware (it must not be "
        "handed device buffers): pip install nvidia-nccl-cu12 (or -cu13) beside cupy, or train with --device cpu"
    )


def rank_device(spec: str, comm: Communicator, count=None) -> str:
    """The device of this rank for ``--device`` ``spec``: under several ranks, "cuda" (and "auto", where the CUDA
    backend is usable) means ``cuda:<local rank>``, one GPU per process, among the devices CUDA_VISIBLE_DEVICES
    leaves visible (CUDA numbers them from 0); anything else is kept. ``count``: the visible GPUs (tests)."""
    if comm.size <= 1 or not isinstance(spec, str) or spec not in ("auto", "cuda"):
        return spec
    if spec == "auto":
        from .backend import cuda_status

        if not cuda_status(0)[0]:
            return "cpu"
    local = comm.local_rank() if hasattr(comm, "local_rank") else comm.rank
    if count is None:
        from .backend import cuda_devices, cuda_status

        count = len(cuda_devices())
        if not count:  # (no CuPy, no driver, no device: that, not the ranks, is what to fix; cuda_status says which)
            raise BackendUnavailable(f"CUDA backend unavailable: {cuda_status(0)[1]}")
    if local >= count:
        raise ConfigError(
            f"MPI rank {comm.rank} is local rank {local} on its machine, which has {count} visible GPU(s): start "
            "at most one rank per GPU (check CUDA_VISIBLE_DEVICES)"
        )
    return f"cuda:{local}"


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


def from_environment(ops=None) -> Communicator:
    """An :class:`MPICommunicator` when this process was started by an MPI launcher with more than one rank, else
    the one-process :class:`Communicator`. With as many ranks on this machine as cores or more, each rank's BLAS
    is held to one thread (two threads a rank on a busy core make the collectives 3 to 10 times slower), unless
    ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` says otherwise. With ``ops`` a CUDA backend: the communicator
    of :func:`for_backend` (NCCL)."""
    if launched_size() <= 1:
        return Communicator()
    comm = MPICommunicator()
    if ops is not None:
        return for_backend(comm, ops)
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
