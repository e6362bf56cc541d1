"""Data-parallel training over MPI (mlp_xp.distributed): every job is `mpiexec -n 2` in a subprocess under a
timeout, so that a hang fails a test instead of CI. The ranks must stay bit-identical, match one process to
rounding (float64), split each batch without padding (a rank may get no rows), and fail together and fast."""

import os
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
        import sys, time
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
            print(f"rank {comm.rank}: {e}", file=sys.stderr, flush=True)
            comm.abort(1)
    """
    r = mpirun(code, tmp_path)
    assert r.returncode != 0 and "rank 1: rank 1 broke" in r.stderr


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
