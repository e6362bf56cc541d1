"""A CPU model of CuPy's NCCL (``cupy.cuda.nccl``) over :mod:`tests.cuda_host.fake_cupy`, one process per GPU.

``FakeNccl(fake, mpi_comm)`` attaches itself as ``fake.cuda.nccl``. Its ``NcclCommunicator(ndev, commId, rank)``
has CuPy's signature and integer-pointer methods (``allReduce``, ``bcast``, ``broadcast``), and performs each
collective across the processes with mpi4py on the fake's host memory. It is strict where a GPU or NCCL would
fail, hang or corrupt:

* the communicator belongs to the device current when it is made (``ncclCommInitRank``); every rank must pass
  the same unique id (real NCCL hangs otherwise) and ``ndev``/``rank`` must be the MPI job's; two ranks on one
  device are refused (NCCL: "Duplicate GPU detected");
* a buffer must lie inside one allocation of the communicator's device (another device's memory, or host
  memory, is refused: the GPU would fault);
* the stream must be one of that device's streams; its pointer is logged with the work (``fake.log``, kind
  "nccl"), and the fake's race detector checks that the collective is ordered after the buffer's last write;
  the legacy stream (pointer 0) is refused as this project's rule (the backend's work is on its own
  non-blocking stream, which the legacy stream is not ordered with);
* during a stream capture the collective is recorded and runs at each replay, as NCCL >= 2.9 allows; an older
  ``version`` invalidates the capture as CUDA would.

The work runs at once, in issue order, so both processes must issue the same collectives in the same order:
a mismatch is a hang (the test's mpiexec timeout catches it), as on a GPU.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from .fake_cupy import CUDARuntimeError, ndarray

_DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64, 6: np.float16,
           7: np.float32, 8: np.float64}  # fmt: skip


class NcclError(RuntimeError):
    """What CuPy's NCCL wrapper raises for a failed call."""


class FakeNccl:
    """``cupy.cuda.nccl`` for one process of an MPI job (``mpi_comm``: mpi4py's COMM_WORLD by default)."""

    available = True
    NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = range(5)
    NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = range(6)
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
    NcclError = NcclError

    def __init__(self, fake, mpi_comm=None, version: int = 22304) -> None:
        from mpi4py import MPI

        self.fake, self.MPI = fake, MPI
        self.mpi = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.version = version
        self.ids_made = 0
        self.communicators: list[NcclCommunicator] = []
        fake.cuda.nccl = self

    def get_version(self) -> int:
        return self.version

    def get_build_version(self) -> int:
        return self.version

    def get_unique_id(self) -> tuple:
        """128 signed chars, as CuPy returns them (works without a GPU, as the real one does)."""
        self.ids_made += 1
        return tuple(int(b) - 256 if b > 127 else int(b) for b in os.urandom(128))

    def NcclCommunicator(self, ndev: int, commId: tuple, rank: int):  # noqa: N802, N803 - CuPy's names
        comm = NcclCommunicator(self, ndev, commId, rank)
        self.communicators.append(comm)
        return comm


class NcclCommunicator:
    def __init__(self, nccl: FakeNccl, ndev: int, commId: tuple, rank: int) -> None:  # noqa: N803
        if not isinstance(commId, tuple) or len(commId) != 128:
            raise AssertionError("commId must be the 128-char tuple of get_unique_id")
        fake, mpi = nccl.fake, nccl.mpi
        self.nccl, self.fake, self.mpi = nccl, fake, mpi
        self.device = fake.runtime.getDevice()  # ncclCommInitRank: the device current now
        fake.contexts.add(self.device)
        if ndev != mpi.Get_size() or rank != mpi.Get_rank():
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: rank {rank} of {ndev} in an MPI job of {mpi.Get_size()}")
        everyone = mpi.allgather((commId, self.device))
        if any(other[0] != commId for other in everyone):
            raise NcclError("the ranks passed different unique ids (real NCCL would hang in ncclCommInitRank)")
        devices = [d for _, d in everyone]
        if len(set(devices)) < len(devices):
            raise NcclError(f"NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected (devices {devices})")
        self.rank, self.ndev = rank, ndev
        self.aborted = False

    # ---- CuPy's queries ----
    def device_id(self) -> int:
        return self.device

    def rank_id(self) -> int:
        return self.rank

    def size(self) -> int:
        return self.ndev

    def destroy(self) -> None:
        self.aborted = True

    def abort(self) -> None:
        self.aborted = True

    # ---- checks ----
    def _stream(self, stream_ptr: int, what: str):
        if self.aborted:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: the communicator was destroyed or aborted")
        if not isinstance(stream_ptr, (int, np.integer)):
            raise TypeError(f"{what}: the stream must be an integer pointer, got {type(stream_ptr).__name__}")
        if stream_ptr == 0:
            raise AssertionError(
                f"{what} on the legacy stream: the backend's work is on its own non-blocking stream, which the "
                "legacy stream is not ordered with (the project's rule; pass the backend's stream)"
            )
        s = self.fake._streams.get((int(stream_ptr), self.device))
        if s is None:
            others = [d for (p, d) in self.fake._streams if p == stream_ptr]
            raise CUDARuntimeError(
                f"cudaErrorInvalidResourceHandle: {what} of the communicator of device {self.device} on a stream "
                f"{'of device ' + str(others[0]) if others else 'that does not exist'}"
            )
        if s.graph is not None and self.nccl.version < 20900:
            s.invalidated = f"{what} of NCCL {self.nccl.version} (capturable from 2.9)"
            raise CUDARuntimeError(f"cudaErrorStreamCaptureUnsupported: {what} during a capture (NCCL < 2.9)")
        return s

    def _array(self, ptr: int, count: int, datatype: int, what: str) -> ndarray:
        if datatype not in _DTYPES:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: datatype {datatype}")
        dtype = np.dtype(_DTYPES[datatype])
        nbytes = int(count) * dtype.itemsize
        buf = next((b for b in self.fake._buffers if b.start <= ptr < b.end), None)
        if buf is None or ptr + nbytes > buf.end:
            raise CUDARuntimeError(
                f"cudaErrorIllegalAddress: {what} was given {count} x {dtype} at {ptr:#x}, not inside one device "
                "allocation"
            )
        if buf.device != self.device:
            raise CUDARuntimeError(
                f"cudaErrorIllegalAddress: {what} of the communicator of device {self.device} was given memory of "
                f"device {buf.device}"
            )
        host = np.ctypeslib.as_array((ctypes.c_char * max(nbytes, 1)).from_address(ptr))[:nbytes].view(dtype)
        return ndarray(host, self.device, self.fake)

    def _issue(self, name: str, stream, writes: list, reads: list, run) -> None:
        self.fake._issue("nccl", name, stream, writes, reads, run, device=self.device)

    # ---- collectives ----
    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream) -> None:  # noqa: N802
        s = self._stream(stream, "allReduce")
        send = self._array(sendbuf, count, datatype, "allReduce")
        recv = self._array(recvbuf, count, datatype, "allReduce")
        MPI = self.nccl.MPI  # noqa: N806
        mpi_op = {0: MPI.SUM, 1: MPI.PROD, 2: MPI.MAX, 3: MPI.MIN}.get(op)
        if mpi_op is None:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: op {op} is not modelled")

        def run():
            if sendbuf == recvbuf:
                self.mpi.Allreduce(MPI.IN_PLACE, recv._a, op=mpi_op)
            else:
                self.mpi.Allreduce(send._a, recv._a, op=mpi_op)

        self._issue("allReduce", s, [recv], [send], run)

    def bcast(self, buff, count, datatype, root, stream) -> None:
        s = self._stream(stream, "bcast")
        a = self._array(buff, count, datatype, "bcast")
        self._issue("bcast", s, [a], [a], lambda: self.mpi.Bcast(a._a, root=root))

    def broadcast(self, sendbuff, recvbuff, count, datatype, root, stream) -> None:
        s = self._stream(stream, "broadcast")
        send = self._array(sendbuff, count, datatype, "broadcast")
        recv = self._array(recvbuff, count, datatype, "broadcast")

        def run():
            if self.rank == root and sendbuff != recvbuff:
                recv._a[...] = send._a
            self.mpi.Bcast(recv._a, root=root)

        self._issue("broadcast", s, [recv], [send], run)
