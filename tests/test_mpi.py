"""Data-parallel training over MPI (mlp_xp.distributed): every job is `mpiexec -n 2` in a subprocess under a
timeout, so that a hang fails a test instead of CI. The ranks must stay bit-identical, match one process to
rounding (float64), split each batch without padding (a rank may get no rows), and fail together and fast."""

import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mlp_xp
from mlp_xp.distributed import Communicator, split_rows

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec") or (os.path.join(os.path.dirname(sys.executable), "mpiexec"))
if not os.path.exists(MPIEXEC):
    pytest.skip("no mpiexec (pip install mpich)", allow_module_level=True)
TIMEOUT = 120


def mpirun(code: str, tmp_path, *args, n: int = 2, env: dict | None = None):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(code))
    environment = {**os.environ, "MLP_XP_CACHE": str(tmp_path / "cache"), **(env or {})}
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
    )


JOB = """
    import sys
    import numpy as np
    import mlp_xp
    from mlp_xp.distributed import MPICommunicator

    comm = MPICommunicator()
    out, optimizer, weighted = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 6)), rng.integers(0, 3, 101)
    w = rng.uniform(0, 2, 101) if weighted else None
    model = mlp_xp.MLP([6, 8, 3], "tanh", dtype="float64", device="cpu", seed=comm.rank)  # rank 0's weights win
    history = mlp_xp.fit(model, X, y, epochs=3, batch_size=50, lr=0.1, optimizer=optimizer, sample_weight=w,
                         comm=comm)
    np.save(f"{out}/rank{comm.rank}.npy", model.get_flat())
    np.save(f"{out}/loss{comm.rank}.npy", np.array(history["train_loss"]))
"""


@pytest.mark.parametrize(("optimizer", "weighted"), [("momentum", False), ("nesterov", False), ("adam", True)])
def test_two_ranks_stay_identical_and_match_one_process(tmp_path, optimizer, weighted):
    """101 rows, batch 50: steps of 50, 50 and 1 row (rank 1 gets none of the last); float64."""
    r = mpirun(JOB, tmp_path, tmp_path, optimizer, int(weighted))
    assert r.returncode == 0, r.stderr
    ranks = [np.load(tmp_path / f"rank{k}.npy") for k in (0, 1)]
    assert ranks[0].tobytes() == ranks[1].tobytes()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 6)), rng.integers(0, 3, 101)
    w = rng.uniform(0, 2, 101) if weighted else None
    model = mlp_xp.MLP([6, 8, 3], "tanh", dtype="float64", device="cpu", seed=0)
    history = mlp_xp.fit(
        model, X, y, epochs=3, batch_size=50, lr=0.1, optimizer=optimizer, sample_weight=w, comm=Communicator()
    )
    np.testing.assert_allclose(ranks[0], model.get_flat(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "loss0.npy"), history["train_loss"], rtol=1e-12)


def test_ranks_with_other_data_are_one_clear_error_not_a_hang(tmp_path):
    code = """
        import numpy as np
        import mlp_xp
        from mlp_xp.distributed import MPICommunicator

        comm = MPICommunicator()
        X = np.random.default_rng(comm.rank).normal(size=(40, 3))  # another dataset on each rank
        mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), X, np.arange(40) % 2, epochs=1, comm=comm)
    """
    r = mpirun(code, tmp_path)
    assert r.returncode != 0
    assert "the MPI ranks do not run the same training: the data of ranks [1] are not rank 0's" in r.stderr


def test_one_rank_failing_ends_the_job_within_seconds(tmp_path):
    """A callback raising on rank 1 only: the CLI-style handler aborts every rank (rank 0 would wait forever)."""
    code = """
        import sys
        import numpy as np
        import mlp_xp
        from mlp_xp.distributed import MPICommunicator

        comm = MPICommunicator()

        def fails_on_rank_1(record, model):
            if comm.rank == 1:
                raise RuntimeError("rank 1 broke")

        try:
            mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), np.ones((40, 3)), np.arange(40) % 2, epochs=50,
                       callbacks=[fails_on_rank_1], comm=comm)
        except Exception as e:
            # A file, not stderr: MPI_Abort can end the job before mpiexec forwards a rank's last line.
            with open(f"{sys.argv[1]}/rank{comm.rank}.err", "w") as f:
                f.write(f"rank {comm.rank}: {e}")
            comm.abort(1)
    """
    r = mpirun(code, tmp_path, tmp_path)
    assert r.returncode != 0
    assert (tmp_path / "rank1.err").read_text() == "rank 1: rank 1 broke"


def test_mpiexec_mlp_xp_train_writes_once_and_matches_one_process(tmp_path):
    model = tmp_path / "m.npz"
    r = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "mlp_xp", "train", "--data", "digits", "--hidden", "16",
         "--epochs", "2", "--device", "cpu", "--dtype", "float64", "--save", str(model)],
        capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "MLP_XP_CACHE": str(tmp_path / "c")},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("saved the model") == 1 and r.stdout.count("done: 2 epochs") == 1
    assert "mpi: 2 ranks; global batch 128 rows, 64 or fewer a rank" in r.stderr
    single = tmp_path / "s.npz"
    from mlp_xp.cli import main

    assert (
        main(f"train --data digits --hidden 16 --epochs 2 --device cpu --dtype float64 --save {single} --quiet".split())
        == 0
    )
    a, b = mlp_xp.MLP.load(model, device="cpu"), mlp_xp.MLP.load(single, device="cpu")
    np.testing.assert_allclose(a.get_flat(), b.get_flat(), rtol=0, atol=1e-12)


def test_mpiexec_with_a_gpu_asked_for_and_none_usable_ends_with_status_3(tmp_path):
    from mlp_xp.backend import cuda_status

    if cuda_status(0)[0]:
        pytest.skip("a GPU is usable here")
    r = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "mlp_xp", "train", "--data", "digits", "--epochs", "1",
         "--device", "cuda"],
        capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "MLP_XP_CACHE": str(tmp_path / "c")},
    )  # fmt: skip
    assert r.returncode == 3 and "CUDA backend unavailable: " in r.stderr, r.stderr
    assert "visible GPU" not in r.stderr, r.stderr


def test_rank_0_whose_output_cannot_be_written_says_so_once_and_ends_the_job(tmp_path):
    """Rank 0's standard output on a full disk (a file of its own, not mpiexec's pipe): the one-process line, named
    by rank, status 1; a closed pipe: status 141. The other rank is ended with it, not left in a collective."""
    train = f"{shlex.quote(sys.executable)} -m mlp_xp train --data digits --hidden 8 --epochs 2 --device cpu"
    env = {**os.environ, "MLP_XP_CACHE": str(tmp_path / "c")}
    for shell, status in (("sh", 1), ("bash", 141)):
        line = f"exec {train} > /dev/full" if status == 1 else f"set -o pipefail; {train} | true"
        r = subprocess.run(
            [MPIEXEC, "-n", "2", shell, "-c", line], capture_output=True, text=True, timeout=TIMEOUT, env=env
        )
        assert r.returncode == status, r.stderr
        why = (
            "the output could not be written to standard output (No space left on device): free space on its disk, "
            "or send the output elsewhere"
            if status == 1
            else "its standard output was closed"
        )
        # (MPI_Abort may end the job before mpiexec forwards rank 0's last stderr line: the status is the contract,
        # the line, where it arrives, must be this one)
        said = [line for line in r.stderr.splitlines() if line.startswith("mlp-xp: error on MPI rank")]
        assert all(line == f"mlp-xp: error on MPI rank 0 of 2: {why}" for line in said), r.stderr
        assert "Traceback" not in r.stderr, r.stderr


def test_the_one_process_communicator_changes_nothing():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    a, b = mlp_xp.MLP([4, 5, 2], device="cpu"), mlp_xp.MLP([4, 5, 2], device="cpu")
    mlp_xp.fit(a, X, y, epochs=2, batch_size=16)
    mlp_xp.fit(b, X, y, epochs=2, batch_size=16, comm=Communicator())
    assert a.get_flat().tobytes() == b.get_flat().tobytes()


def test_split_rows_has_no_padding_and_no_repeats():
    for n in (0, 1, 3, 50, 101):
        for size in (1, 2, 3, 4):
            parts = [split_rows(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_resume_across_ranks_is_byte_identical_and_another_n_may_resume(tmp_path):
    env = {**os.environ, "MLP_XP_CACHE": str(tmp_path / "c")}
    base = [sys.executable, "-m", "mlp_xp", "train", "--data", "digits", "--hidden", "16", "--device", "cpu",
            "--dtype", "float64", "--quiet"]  # fmt: skip
    two = [MPIEXEC, "-n", "2"]

    def run(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert r.returncode == 0, r.stderr
        return r

    ck = tmp_path / "ck"
    run([*two, *base, "--epochs", "2", "--checkpoint", str(ck)])
    r = run([*two, *base, "--epochs", "4", "--checkpoint", str(ck), "--resume", "--save", str(tmp_path / "r.npz")])
    assert r.stderr.count("resuming from") == 1  # rank 0 reads it and sends it
    run([*two, *base, "--epochs", "4", "--save", str(tmp_path / "s.npz")])
    assert (tmp_path / "r.npz").read_bytes() == (tmp_path / "s.npz").read_bytes()
    run([*base, "--epochs", "5", "--checkpoint", str(ck), "--resume", "--save", str(tmp_path / "one.npz")])


# ---- GPU ranks: NCCL on the CPU model of CuPy (tests/cuda_host), two fake GPUs, rank r on cuda:r ----

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NCCL_JOB = """
    import json, sys
    sys.path.insert(0, sys.argv[4])
    import numpy as np
    import mlp_xp
    from mlp_xp import trainer
    from mlp_xp.distributed import MPICommunicator, NCCLCommunicator, for_backend, rank_device
    from tests.conftest import cuda_host_backend
    from tests.cuda_host.fake_cupy import FakeCupy
    from tests.cuda_host.fake_nccl import FakeNccl
    from tests.cuda_host.harness import HostKernels

    out, optimizer, graph = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    mpi = MPICommunicator()
    kernels = HostKernels()
    fake = FakeCupy(kernels, n_devices=2)
    nccl = FakeNccl(fake, mpi.comm)
    device = rank_device("cuda", mpi, count=fake.n_devices)  # what --device cuda means under mpiexec
    ops = cuda_host_backend(kernels, index=int(device.split(":")[1]), fake=fake)
    comm = for_backend(mpi, ops)
    assert isinstance(comm, NCCLCommunicator) and nccl.ids_made == (comm.rank == 0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 6)), rng.integers(0, 3, 101)
    model = mlp_xp.MLP([6, 8, 3], "tanh", dtype="float64", device=ops, seed=comm.rank)  # rank 0's weights win
    marks = []
    trainer._step_hook = lambda step: marks.append([step, fake.syncs, ops.counts.syncs])
    history = mlp_xp.fit(model, X, y, epochs=3, batch_size=20, lr=0.1, optimizer=optimizer, cuda_graph=graph,
                         comm=comm)
    trainer._step_hook = None
    np.save(f"{out}/rank{comm.rank}.npy", model.get_flat())
    collectives = [[w.name, w.device, w.stream, w.captured] for w in fake.log if w.kind == "nccl"]
    json.dump({"device": device, "stream": ops.dev.stream.ptr, "marks": marks, "collectives": collectives,
               "graphs": len(fake._graphs), "loss": history["train_loss"]}, open(f"{out}/rank{comm.rank}.json", "w"))
"""


@pytest.mark.parametrize(("optimizer", "graph"), [("momentum", False), ("adam", False), ("nesterov", True)])
def test_gpu_ranks_reduce_with_nccl_on_the_backends_stream(tmp_path, host_kernels, optimizer, graph):
    """101 rows, batch 20: six steps an epoch, the last of one row (rank 1 gets none of it); float64. The ranks
    end bitwise identical and equal to one process on the same fake GPU; every collective (the bcast of the
    parameters, each step's all-reduce, the epoch's sums) went to the backend's own stream; no step waited for the
    device. With cuda_graph, each full step replays the graph, all-reduces and updates on that stream."""
    import json

    from .conftest import cuda_host_backend

    host_kernels.preload([n for names in mlp_xp.backend.kernels.KERNELS.values() for n in names])  # build once
    r = mpirun(NCCL_JOB, tmp_path, tmp_path, optimizer, int(graph), REPO)
    assert r.returncode == 0, r.stderr
    ranks = [np.load(tmp_path / f"rank{k}.npy") for k in (0, 1)]
    assert ranks[0].tobytes() == ranks[1].tobytes()
    info = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [i["device"] for i in info] == ["cuda:0", "cuda:1"]
    for k, i in enumerate(info):
        names = [c[0] for c in i["collectives"]]
        assert names[0] == "bcast" and names.count("allReduce") == 3 * 6 + 3  # a step each, the sums each epoch
        assert all(c[1] == k and c[2] == i["stream"] for c in i["collectives"]), i["collectives"]
        assert not any(c[3] for c in i["collectives"])  # between the replay and the update, not in the graph
        assert (i["graphs"] > 0) == graph
        for epoch in range(3):  # from each epoch's first step on, no host sync until its end
            marks = i["marks"][epoch * 6 : epoch * 6 + 6]
            assert len({(m[1], m[2]) for m in marks}) == 1, marks
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 6)), rng.integers(0, 3, 101)
    ops = cuda_host_backend(host_kernels)
    model = mlp_xp.MLP([6, 8, 3], "tanh", dtype="float64", device=ops, seed=0)
    history = mlp_xp.fit(model, X, y, epochs=3, batch_size=20, lr=0.1, optimizer=optimizer, cuda_graph=graph)
    np.testing.assert_allclose(ranks[0], model.get_flat(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(info[0]["loss"], history["train_loss"], rtol=1e-12)


def test_gpu_ranks_without_a_device_communicator_are_refused(host_kernels):
    from .conftest import cuda_host_backend

    class TwoRanks(Communicator):  # a host-buffer communicator of two ranks (never reached: refused first)
        size = 2

    model = mlp_xp.MLP([3, 2], device=cuda_host_backend(host_kernels))
    with pytest.raises(mlp_xp.errors.ConfigError, match=r"for_backend\(comm, model.ops\) \(NCCL\)"):
        mlp_xp.fit(model, np.ones((8, 3)), np.arange(8) % 2, epochs=1, comm=TwoRanks())


def test_rank_device_takes_the_local_rank_among_the_visible_gpus():
    from mlp_xp.distributed import rank_device

    class Rank(Communicator):
        size = 4

        def __init__(self, local):
            self.rank, self._local = local + 2, local

        def local_rank(self):
            return self._local

    assert rank_device("cuda", Rank(1), count=2) == "cuda:1"
    assert rank_device("cuda:0", Rank(1), count=2) == "cuda:0"  # asked for by name: kept
    assert rank_device("cpu", Rank(1), count=2) == "cpu"
    assert rank_device("cuda", Communicator(), count=2) == "cuda"  # one process: unchanged
    with pytest.raises(mlp_xp.errors.ConfigError, match="local rank 2 on its machine, which has 2 visible GPU"):
        rank_device("cuda", Rank(2), count=2)


def test_rank_device_on_a_machine_without_a_usable_gpu_says_why(monkeypatch):
    """``mpiexec -n 2 mlp-xp train --device cuda`` where CuPy (or the driver) is missing: that reason, exit status 3,
    as one process gets it, not advice about ranks and CUDA_VISIBLE_DEVICES."""
    import mlp_xp.backend as backend
    from mlp_xp.distributed import rank_device

    class Rank(Communicator):
        size, rank = 2, 0

    monkeypatch.setattr(backend, "cuda_devices", lambda: [])
    monkeypatch.setattr(backend, "cuda_status", lambda index=0: (False, "CuPy is not installed: pip install ..."))
    with pytest.raises(mlp_xp.errors.BackendUnavailable, match="CUDA backend unavailable: CuPy is not installed"):
        rank_device("cuda", Rank())


def test_the_fake_nccl_refuses_what_a_gpu_would(tmp_path):
    """Negative controls of the CPU model of NCCL: another stream than the one that wrote the buffer (a race on a
    GPU), the legacy stream, another device's memory, two ranks on one GPU. Each refusal comes before any MPI
    call, on both ranks alike, so the job does not hang."""
    code = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from mlp_xp.distributed import MPICommunicator, NCCLCommunicator
        from tests.conftest import cuda_host_backend
        from tests.cuda_host.fake_cupy import CUDARuntimeError, FakeCupy, RaceError
        from tests.cuda_host.fake_nccl import FakeNccl, NcclError
        from tests.cuda_host.harness import HostKernels

        mpi = MPICommunicator()
        kernels = HostKernels()
        fake = FakeCupy(kernels, n_devices=2)
        nccl = FakeNccl(fake, mpi.comm)
        ops = cuda_host_backend(kernels, index=mpi.rank, fake=fake)
        comm = NCCLCommunicator(ops, mpi.comm)
        buf = ops.asarray(np.full(4, mpi.rank + 1.0))
        comm.allreduce(buf)
        assert ops.to_host(buf).tolist() == [3.0] * 4
        with fake.cuda.Device(mpi.rank):
            other = fake.cuda.Stream(non_blocking=True)
        ops.fill(buf, 1.0)
        errors = []
        for stream, what in ((other.ptr, "race"), (0, "legacy")):
            try:
                comm.device_allreduce(buf, stream)
            except (RaceError, AssertionError) as e:
                errors.append(f"{what}: {type(e).__name__}")
        elsewhere = cuda_host_backend(kernels, index=1 - mpi.rank, fake=fake).asarray(np.ones(4))
        try:
            comm.device_allreduce(elsewhere, ops.dev.stream.ptr)
        except CUDARuntimeError as e:
            errors.append("device: " + str(e).split(":")[0])
        uid = mpi.bcast_obj(nccl.get_unique_id() if mpi.rank == 0 else None)
        try:
            with fake.cuda.Device(0):
                nccl.NcclCommunicator(2, uid, mpi.rank)
        except NcclError as e:
            errors.append("shared GPU: " + str(e).split(":")[1].strip())
        open(f"{sys.argv[2]}/errors{mpi.rank}.txt", "w").write(repr(errors))
    """
    r = mpirun(code, tmp_path, REPO, tmp_path)
    assert r.returncode == 0, r.stderr
    for rank in (0, 1):
        assert (tmp_path / f"errors{rank}.txt").read_text() == repr(
            ["race: RaceError", "legacy: AssertionError", "device: cudaErrorIllegalAddress",
             "shared GPU: Duplicate GPU detected (devices [0, 0])"]
        )  # fmt: skip


def test_gpu_ranks_without_nccl_take_a_cuda_aware_mpi_and_say_so_else_are_refused(host_kernels, monkeypatch, capsys):
    """No device buffer ever goes to an MPI that is not CUDA-aware; a CUDA-aware one is said to wait for the device
    (the MPI itself is stubbed: this pytest process never starts MPI)."""
    from types import SimpleNamespace

    from mlp_xp import distributed

    from .conftest import cuda_host_backend

    ops = cuda_host_backend(host_kernels)  # a fake without NCCL
    assert ops.dev.nccl() is None

    class StubMPI(distributed.MPICommunicator):
        def __init__(self, aware):
            self.rank, self.size, self.comm = 0, 2, None
            self._MPI = SimpleNamespace(Query_cuda_support=lambda: aware)

    with pytest.raises(mlp_xp.errors.ConfigError, match="this MPI is not CUDA-aware"):
        distributed.for_backend(StubMPI(False), ops)
    made = []
    monkeypatch.setattr(distributed.CudaAwareMPICommunicator, "__init__", lambda self, o, c: made.append(o))
    assert isinstance(distributed.for_backend(StubMPI(True), ops), distributed.CudaAwareMPICommunicator)
    assert made == [ops] and "waits for the device before each step's all-reduce" in capsys.readouterr().err
    cpu = mlp_xp.backend.get_backend("cpu")
    comm = StubMPI(False)
    assert distributed.for_backend(comm, cpu) is comm  # CPU ranks: MPI on host buffers, as before


def test_four_ranks_match_one_process_and_failures_end_fast(tmp_path):
    """4 ranks on 2 cores (oversubscribed): identical ranks, one process's result to 1e-12 (float64); and the
    mismatched-data job ends, with its message, in under 10 seconds."""
    import time

    r = mpirun(JOB, tmp_path, tmp_path, "momentum", 0, n=4)
    assert r.returncode == 0, r.stderr
    ranks = [np.load(tmp_path / f"rank{k}.npy") for k in range(4)]
    assert all(a.tobytes() == ranks[0].tobytes() for a in ranks[1:])
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 6)), rng.integers(0, 3, 101)
    model = mlp_xp.MLP([6, 8, 3], "tanh", dtype="float64", device="cpu", seed=0)
    mlp_xp.fit(model, X, y, epochs=3, batch_size=50, lr=0.1, optimizer="momentum")
    np.testing.assert_allclose(ranks[0], model.get_flat(), rtol=0, atol=1e-12)
    code = """
        import numpy as np
        import mlp_xp
        from mlp_xp.distributed import MPICommunicator

        comm = MPICommunicator()
        X = np.random.default_rng(comm.rank).normal(size=(40, 3))
        try:
            mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), X, np.arange(40) % 2, epochs=1, comm=comm)
        except Exception as e:
            print(e, flush=True)
            comm.abort(2)
    """
    t = time.monotonic()
    r = mpirun(code, tmp_path)
    assert r.returncode != 0 and "do not run the same training" in r.stdout + r.stderr
    assert time.monotonic() - t < 10


class ThreadRanks:
    """The ranks of an in-process emulation: one thread per rank, collectives through shared slots. Its sum adds
    the ranks' buffers in rank order (s0 + s1 for two), which MPI's two-rank sum equals bit for bit (a + b = b + a)."""

    def __init__(self, size: int) -> None:
        import threading

        self.size, self.barrier, self.slots = size, threading.Barrier(size), [None] * size

    def rank(self, r: int):
        ranks = self

        class Rank(Communicator):
            rank, size = r, ranks.size

            def allreduce(self, buf):
                ranks.slots[r] = np.array(buf, copy=True)
                ranks.barrier.wait()
                total = ranks.slots[0].copy()
                for other in ranks.slots[1:]:
                    total += other
                ranks.barrier.wait()
                buf[...] = total

            def bcast(self, buf):
                if r == 0:
                    ranks.slots[0] = np.array(buf, copy=True)
                ranks.barrier.wait()
                buf[...] = ranks.slots[0]
                ranks.barrier.wait()

            def bcast_obj(self, obj):
                if r == 0:
                    ranks.slots[0] = obj
                ranks.barrier.wait()
                got = ranks.slots[0]
                ranks.barrier.wait()
                return got

            def allgather_obj(self, obj):
                ranks.slots[r] = obj
                ranks.barrier.wait()
                got = list(ranks.slots)
                ranks.barrier.wait()
                return got

        return Rank()


MNIST_SHAPED = """
    import sys
    import numpy as np
    import mlp_xp
    from mlp_xp.distributed import MPICommunicator

    comm = MPICommunicator()
    rng = np.random.default_rng(7)
    X, y = rng.random((1300, 784)), rng.integers(0, 10, 1300)
    model = mlp_xp.MLP([784, 64, 10], dtype="float64", device="cpu", seed=0)
    history = mlp_xp.fit(model, X, y, epochs=2, batch_size=256, lr=0.05, optimizer=sys.argv[2],
                         X_test=X[:300], y_test=y[:300], comm=comm)
    np.save(f"{sys.argv[1]}/mpi{comm.rank}.npy", model.get_flat())
"""


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_two_ranks_equal_the_in_process_emulation_bitwise_and_one_process_to_1e_9(tmp_path, optimizer):
    """MNIST-shaped rows (1300 x 784, a last batch of 20), global batch 256, float64, constant lr, 2 epochs: MPI's two
    ranks are bit for bit the emulation's (the same shards, summed in a fixed order, in this process's threads at
    the same BLAS thread count), and the per-epoch training loss is one process's to 1e-9 relative, with the same
    test accuracy."""
    import threading

    from threadpoolctl import threadpool_limits

    r = mpirun(MNIST_SHAPED, tmp_path, tmp_path, optimizer, env={"OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rng = np.random.default_rng(7)
    X, y = rng.random((1300, 784)), rng.integers(0, 10, 1300)
    kw = {"epochs": 2, "batch_size": 256, "lr": 0.05, "optimizer": optimizer, "X_test": X[:300], "y_test": y[:300]}
    ranks, models, histories = ThreadRanks(2), [None, None], [None, None]

    def rank(k):
        models[k] = mlp_xp.MLP([784, 64, 10], dtype="float64", device="cpu", seed=0)
        histories[k] = mlp_xp.fit(models[k], X, y, comm=ranks.rank(k), **kw)

    with threadpool_limits(1, user_api="blas"):
        threads = [threading.Thread(target=rank, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
        one = mlp_xp.MLP([784, 64, 10], dtype="float64", device="cpu", seed=0)
        single = mlp_xp.fit(one, X, y, **kw)
    emulated = models[0].get_flat()
    assert np.load(tmp_path / "mpi0.npy").tobytes() == emulated.tobytes()
    assert np.load(tmp_path / "mpi1.npy").tobytes() == emulated.tobytes()
    np.testing.assert_allclose(histories[0]["train_loss"], single["train_loss"], rtol=1e-9)
    assert histories[0]["test_accuracy"] == single["test_accuracy"]
