"""Model files (mlp_xp.serialization) and the reproducibility contract of ARCHITECTURE.md: the same run gives
byte-identical model files, in one process or in two, and a file holds no time, host or path."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mlp_xp
from mlp_xp import serialization
from mlp_xp.errors import ModelFileError, settings_as_flags

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


# ---- what load_arrays says of a file that is not a model file, and the format versions it reads ----


def _refusal(path) -> str:
    with pytest.raises(ModelFileError) as info:
        serialization.load_arrays(path)
    return str(info.value)


def test_a_text_file_random_bytes_a_folder_and_a_truncated_zip_each_say_what_they_are(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("epoch 1: loss 0.5\nepoch 2: loss 0.3\n")
    assert _refusal(text) == (
        f"{str(text)!r} is a text file (it begins 'epoch 1: loss 0.5'), not an mlp_xp model file (a binary .npz "
        "archive): give a file written by MLP.save or mlp-xp train --save"
    )
    noise = tmp_path / "noise.npz"
    noise.write_bytes(bytes([0xC3, 0x28, 0xA0, 0xFF, 1, 2, 3, 4]) + os.urandom(200))
    assert _refusal(noise) == (
        f"{str(noise)!r} holds binary data of an unknown kind (it begins c3 28 a0 ff 01 02 03 04), not an mlp_xp "
        "model file (an .npz archive, which begins 50 4b): give a file written by MLP.save or mlp-xp train --save"
    )
    folder = tmp_path / "run"
    folder.mkdir()
    assert _refusal(folder) == (
        f"{str(folder)!r} is a folder, not a model file: give the path of the model file itself, the one MLP.save "
        "or mlp-xp train --save wrote"
    )
    mlp_xp.MLP([3, 2], device="cpu").save(folder / "model.npz")
    assert _refusal(folder).startswith(f"{str(folder)!r} is a folder (it holds model.npz), not a model file: ")
    cut = tmp_path / "cut.npz"
    cut.write_bytes((folder / "model.npz").read_bytes()[:300])
    assert _refusal(cut) == (
        f"{str(cut)!r} begins like a zip archive (.npz) but is truncated or damaged (File is not a zip file; a "
        "cut-off download or copy leaves such a file): copy the whole file again, or save the model again"
    )
    assert "does not exist: check the path" in _refusal(tmp_path / "missing.npz")


def test_empty_gzip_pickle_and_object_array_files_are_named(tmp_path):
    import gzip
    import pickle

    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert "is empty (0 bytes), not an mlp_xp model file: save the model again" in _refusal(empty)
    model = tmp_path / "m.npz"
    mlp_xp.MLP([3, 2], device="cpu").save(model)
    gz = tmp_path / "m.npz.gz"
    gz.write_bytes(gzip.compress(model.read_bytes()))
    assert "is gzip-compressed, not an mlp_xp model file (an .npz archive): decompress it (gunzip)" in _refusal(gz)
    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(pickle.dumps({"W1": [1.0]}))
    assert "is a Python pickle, which mlp_xp never loads" in _refusal(pkl)
    objects = tmp_path / "objects.npz"
    np.savez(objects, W1=np.array([{"a": 1}], dtype=object))
    assert "is an .npz archive holding pickled (object) arrays, which mlp_xp never loads" in _refusal(objects)
    plain = tmp_path / "plain.npz"
    np.savez(plain, W1=np.ones(2))
    assert "without an mlp_xp metadata entry, so it is not an mlp_xp model file: give a file" in _refusal(plain)


def test_a_checkpoint_or_another_format_given_as_a_model_says_so(tmp_path):
    path = tmp_path / "c.npz"
    serialization.save_arrays(path, {}, {}, fmt="mlp_xp.checkpoint")
    assert _refusal(path).endswith(
        "is a training checkpoint, not a model file: go on with its run by fit(..., checkpoint=DIR, resume=True), or "
        "give a file MLP.save wrote"
    )
    with settings_as_flags():  # (an mlp-xp command's: predict, evaluate)
        assert _refusal(path).endswith(
            "go on with its run by mlp-xp train --checkpoint DIR --resume, or give the file mlp-xp train --save wrote"
        )
    serialization.save_arrays(path, {}, {}, fmt="someone.else")
    assert _refusal(path) == (
        f"{str(path)!r} is not an mlp_xp model file (its metadata give the format 'someone.else', not "
        "'mlp_xp.model'): give a file written by MLP.save or mlp-xp train --save"
    )


def test_a_newer_format_version_asks_for_an_upgrade_and_an_impossible_one_is_corrupt(tmp_path):
    path = tmp_path / "m.npz"
    serialization.save_arrays(path, {"sizes": [3, 2]}, {}, version=serialization.FORMAT_VERSION + 1)
    assert _refusal(path) == (
        f"{str(path)!r} was written by a newer mlp_xp (model format version 2; this one reads version 1): upgrade "
        "mlp_xp (pip install --upgrade mlp-xp) to load it"
    )
    for version in (0, -1, "1", 1.5, None, True):
        serialization.save_arrays(path, {}, {}, version=version)
        assert _refusal(path) == (
            f"{str(path)!r} has model format version {version!r}, which no mlp_xp ever wrote (this one reads "
            "version 1), so its metadata are corrupt: save the model again"
        )


def test_every_format_version_up_to_the_current_one_loads(tmp_path, monkeypatch):
    """Version 1 is the first, so "the previous version" is shown with a planted version 0 and its upgrade."""
    path = tmp_path / "m.npz"
    model = mlp_xp.MLP([3, 4, 2], device="cpu", seed=2)
    model.save(path)
    meta, arrays = serialization.load_arrays(path)
    assert meta["format_version"] == serialization.FORMAT_VERSION == 1 and sorted(arrays) == ["W1", "W2", "b1", "b2"]

    def from_version_0(meta, arrays):  # say version 0 named the weights w1, w2
        renamed = {name.replace("w", "W"): a for name, a in arrays.items()}
        return {**meta, "format_version": 1}, renamed

    monkeypatch.setitem(serialization._UPGRADES, 0, from_version_0)
    old = {("w" + name[1:] if name.startswith("W") else name): a for name, a in arrays.items()}
    meta_0 = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
    serialization.save_arrays(path, meta_0, old, version=0)
    back = mlp_xp.MLP.load(path, device="cpu")
    assert np.array_equal(back.get_flat(), model.get_flat())
    serialization.save_arrays(path, meta_0, old, version=2)
    assert "(model format version 2; this one reads versions 0, 1): upgrade mlp_xp" in _refusal(path)


def test_a_model_with_nan_weights_is_not_saved_over_a_good_file(tmp_path):
    """Found by a new user: save wrote NaN weights over a good model file, which load then refused for good. save
    and to_onnx now refuse first, naming the layer, and the good file stays as it was."""
    good = tmp_path / "good.npz"
    model = mlp_xp.MLP([4, 3, 2], device="cpu", seed=0)
    model.save(good)
    before = good.read_bytes()
    flat = model.get_flat()
    flat[-1] = np.inf  # (the last bias)
    model.set_flat(flat)
    for path in (good, tmp_path / "good.safetensors", tmp_path / "good.onnx"):
        save = model.to_onnx if path.suffix == ".onnx" else model.save
        with pytest.raises(ModelFileError) as e:
            save(path)
        assert str(e.value) == (
            f"this model holds NaN or Inf weights (b2), so nothing was written to {str(path)!r}: retrain (with a "
            "lower learning rate), or load its last good file"
        )
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["good.npz"]


@pytest.mark.parametrize("folder", [".", "here", "here/"])
def test_saving_to_a_folder_names_the_folder_and_writes_nothing(tmp_path, monkeypatch, folder):
    """``model.save(".")`` was pathlib's "has an empty name", and an existing folder an error naming a temporary
    file nobody asked for."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        mlp_xp.MLP([4, 3, 2], device="cpu").save(folder)
    assert e.value.strerror == "is a folder, not a file: name a file in it" and e.value.filename == folder.rstrip("/")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["here"]


def test_a_pipe_is_refused_and_a_link_stays_a_link(tmp_path):
    """Found by a new user: saving onto /dev/full put a regular file in the device's place (the finished file is
    renamed onto the name), and a FIFO blocked. A link was replaced by a file, its target left old."""
    import errno
    import os
    import stat

    model = mlp_xp.MLP([4, 3, 2], device="cpu", seed=0)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as e:
        model.save(fifo)
    assert (
        e.value.errno == errno.EINVAL and e.value.strerror == "is a named pipe (FIFO), not a file: name a regular file"
    )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]
    with pytest.raises(ModelFileError) as e:  # (it blocked too, waiting for a writer)
        mlp_xp.MLP.load(fifo, device="cpu")
    assert str(e.value) == f"{str(fifo)!r} is a named pipe (FIFO), not a model file: give the path of a model file"
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    target.write_bytes(b"old")
    link.symlink_to(target)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(mlp_xp.MLP.load(target, device="cpu").get_flat(), model.get_flat())


def test_a_loop_of_links_is_refused_not_replaced(tmp_path, capsys):
    """Found in review: a link to itself was replaced by the model file (realpath gives a loop back unresolved)."""
    import errno
    import os

    from .cli_runner import run

    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as e:
        mlp_xp.MLP([4, 3, 2], device="cpu").save(loop)
    assert e.value.errno == errno.ELOOP and loop.is_symlink() and os.readlink(loop) == str(loop)
    code, _, err = run(capsys, f"train --epochs 1 --device cpu --save {loop}")
    assert code == 2 and err == f"mlp-xp: error: --save {loop} is a loop of symbolic links: name a file\n"
