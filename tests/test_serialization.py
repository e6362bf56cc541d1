"""Model files (mlp_xp.serialization) and the reproducibility contract of ARCHITECTURE.md: the same run gives
byte-identical model files, in one process or in two, and a file holds no time, host or path."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

import mlp_xp

ROOT = Path(__file__).resolve().parent.parent

TRAIN_AND_SAVE = """
import sys, numpy as np, mlp_xp
rng = np.random.default_rng(0)
X, y = rng.standard_normal((200, 6)).astype(np.float32), rng.integers(0, 3, 200)
m = mlp_xp.MLP([6, 16, 3], device="cpu", seed=1)
mlp_xp.fit(m, X, y, epochs=20, batch_size=16, optimizer=sys.argv[2], lr=0.05, seed=2)
m.save(sys.argv[1])
"""


def test_a_model_file_holds_the_arrays_and_the_architecture_only(tmp_path):
    path = tmp_path / "m.npz"
    mlp_xp.MLP([3, 4, 2], device="cpu").save(path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["W1.npy", "W2.npy", "b1.npy", "b2.npy", "metadata.npy"]
        assert {info.date_time for info in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["metadata"].tobytes())
    assert set(meta) == {
        "format",
        "format_version",
        "sizes",
        "activation",
        "loss",
        "init",
        "dtype",
        "seed",
        "leaky_slope",
    }


def test_saving_the_same_model_twice_gives_the_same_bytes(tmp_path):
    m = mlp_xp.MLP([5, 7, 3], device="cpu", seed=3)
    m.save(tmp_path / "a.npz")
    m.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_the_same_run_in_two_processes_gives_byte_identical_model_files(tmp_path):
    """20 epochs of 13 steps: the subnormal flush (every 16 steps, counted by the optimizer) happens in the run
    too, and a process-wide counter could not make the second process flush elsewhere."""
    for optimizer in ("momentum", "adam"):
        files = []
        for run in range(2):
            path = tmp_path / f"{optimizer}{run}.npz"
            subprocess.run(
                [sys.executable, "-c", TRAIN_AND_SAVE, str(path), optimizer], cwd=ROOT, check=True, timeout=300
            )
            files.append(path.read_bytes())
        assert files[0] == files[1], optimizer
