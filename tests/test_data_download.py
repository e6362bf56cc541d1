"""Tests of mlp_xp.data.download: where named image sets are looked for, and their download."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from mlp_xp.data import MNIST_FILES, DataFolderWarning, default_cache_dir, download, load_dataset
from mlp_xp.errors import DatasetNotFound

from .test_data_folders import write_mnist_folder

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# conftest.py's autouse fixture keeps every test off the network, with the cache in tmp_path / "cache".
# Folders written with label=k hold that one label throughout, so their loads give the class count (classes=10).


# ---------------------------------------------------------------------------------------------------------
# Lookup order


def test_default_cache_dir(tmp_path, monkeypatch):
    assert default_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("MLP_XP_CACHE", "")
    assert default_cache_dir() == tmp_path / "xdg" / "mlp_xp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mlp_xp"


def test_lookup_order(tmp_path, monkeypatch):
    env_root, cache_root, system = tmp_path / "env", tmp_path / "cache", tmp_path / "system"
    write_mnist_folder(env_root / "fashion-mnist", label=1)
    write_mnist_folder(cache_root / "fashion-mnist", label=2, gz=set(MNIST_FILES))
    write_mnist_folder(system, label=3)
    monkeypatch.setitem(download.SYSTEM_DATA_DIRS, "fashion-mnist", (str(system),))
    monkeypatch.setenv("MLP_XP_DATA", str(env_root))

    data = load_dataset("fashion-mnist", download=False, classes=10)
    assert data.name == "fashion-mnist"
    assert set(data.y_train) == {1} and data.source == str(env_root / "fashion-mnist")

    monkeypatch.delenv("MLP_XP_DATA")
    data = load_dataset("Fashion_MNIST", download=False, classes=10)  # names are case- and underscore-insensitive
    assert set(data.y_train) == {2} and data.source == str(cache_root / "fashion-mnist")

    other_cache = tmp_path / "other"
    write_mnist_folder(other_cache / "fashion-mnist", label=4)
    assert set(load_dataset("fashion-mnist", cache_dir=other_cache, classes=10).y_train) == {4}

    (cache_root / "fashion-mnist" / (MNIST_FILES[3] + ".gz")).unlink()  # an incomplete folder is passed over
    with pytest.warns(DataFolderWarning) as record:
        data = load_dataset("fashion-mnist", download=False, classes=10)
    assert set(data.y_train) == {3} and data.source == str(system)
    assert len(record) == 1
    assert str(record[0].message) == (
        f"skipping {cache_root / 'fashion-mnist'} while looking for 'fashion-mnist' because it lacks "
        f"{MNIST_FILES[3]} (raw or .gz): add those files there, or remove the folder"
    )
    assert record[0].filename == __file__  # stacklevel points at the caller of load_dataset


def test_env_folder_with_missing_files_falls_through(tmp_path, monkeypatch):
    write_mnist_folder(tmp_path / "env" / "mnist", raw=MNIST_FILES[:3], label=1)
    write_mnist_folder(tmp_path / "cache" / "mnist", label=2)
    monkeypatch.setenv("MLP_XP_DATA", str(tmp_path / "env"))
    with pytest.warns(DataFolderWarning, match=rf"skipping {tmp_path / 'env' / 'mnist'} .*lacks {MNIST_FILES[3]} "):
        assert set(load_dataset("mnist", download=False, classes=10).y_train) == {2}


def test_complete_folders_give_no_warning(tmp_path, recwarn):
    write_mnist_folder(tmp_path / "cache" / "mnist")
    load_dataset("mnist", download=False)
    assert not [w for w in recwarn if issubclass(w.category, DataFolderWarning)]


def test_not_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setitem(download.SYSTEM_DATA_DIRS, "fashion-mnist", (str(tmp_path / "nowhere"),))
    monkeypatch.setenv("MLP_XP_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("fashion-mnist", download=False)
    message = str(info.value)
    for text in (
        str(tmp_path / "env" / "fashion-mnist"),
        str(tmp_path / "cache" / "fashion-mnist"),
        str(tmp_path / "nowhere"),
        "downloading is off",
        "apt-get install dataset-fashion-mnist",
        "MLP_XP_DATA",
        "pass the folder's path as the dataset name (mlp-xp train --data DIR)",
    ):
        assert text in message
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("mnist", download=False)
    assert "apt-get" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# Download


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """Gzipped MNIST-layout files served by a fake _fetch_url, with their hashes pinned for "mnist"."""
    served = tmp_path / "served"
    write_mnist_folder(served, n_train=6, n_test=3, gz=set(MNIST_FILES))
    bodies = {f"{stem}.gz": (served / f"{stem}.gz").read_bytes() for stem in MNIST_FILES}
    pins = {name: (hashlib.sha256(body).hexdigest(),) for name, body in bodies.items()}
    monkeypatch.setitem(download._SHA256, "mnist", pins)
    requests: list[str] = []

    def serve(transform=lambda name, body: body, fail_first_mirror=False):
        def fetch(url, timeout):
            requests.append(url)
            assert timeout > 0
            if fail_first_mirror and url.startswith(download._MIRRORS["mnist"][0]):
                raise urllib.error.URLError("first mirror down")
            name = url.rsplit("/", 1)[1]
            return transform(name, bodies[name])

        monkeypatch.setattr(download, "_fetch_url", fetch)

    return serve, requests


def test_download_into_cache(tmp_path, fake_server):
    serve, requests = fake_server
    serve(fail_first_mirror=True)
    data = load_dataset("mnist")
    assert data.X_train.shape == (6, 64) and data.X_test.shape == (3, 64)
    assert data.source == str(tmp_path / "cache" / "mnist")
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(f"{s}.gz" for s in MNIST_FILES)
    # Each file was tried on the first mirror, then fetched from the second.
    assert len(requests) == 8
    assert {u.rsplit("/", 1)[0] + "/" for u in requests} == set(download._MIRRORS["mnist"])

    requests.clear()
    load_dataset("mnist")  # now cached: no request
    assert requests == []


def test_download_resumes_missing_files_only(tmp_path, fake_server):
    serve, requests = fake_server
    serve()
    write_mnist_folder(tmp_path / "cache" / "mnist", n_train=6, n_test=3, raw=MNIST_FILES[:2])
    with pytest.warns(DataFolderWarning, match="the missing files are downloaded into it"):
        load_dataset("mnist")
    assert sorted(u.rsplit("/", 1)[1] for u in requests) == sorted(f"{s}.gz" for s in MNIST_FILES[2:])


def test_download_checksum_mismatch_leaves_no_file(tmp_path, fake_server):
    serve, requests = fake_server
    serve(transform=lambda name, body: body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(DatasetNotFound, match="does not match the pinned value") as info:
        load_dataset("mnist")
    assert "downloading failed" in str(info.value)
    assert len(requests) == len(download._MIRRORS["mnist"])  # both mirrors tried for the first file, then gave up
    assert not (tmp_path / "cache").exists()  # the folders the attempt made are gone with it


def test_download_partial_corruption_keeps_only_verified_files(tmp_path, fake_server):
    serve, _ = fake_server
    bad = f"{MNIST_FILES[2]}.gz"
    serve(transform=lambda name, body: b"\x1f\x8b corrupted" if name == bad else body)
    with pytest.raises(DatasetNotFound, match=bad):
        load_dataset("mnist")
    left = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert left == sorted(f"{s}.gz" for s in MNIST_FILES[:2])  # verified ones kept, nothing else


def test_download_network_failure(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download, "_fetch_url", offline)
    with pytest.raises(DatasetNotFound, match="no route to host") as info:
        load_dataset("mnist")
    assert str(tmp_path / "cache" / "mnist") in str(info.value)
    assert not (tmp_path / "cache").exists()


def _offline(url, timeout):
    raise urllib.error.URLError("no route to host")


def test_a_failed_download_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_fetch_url", _offline)
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(DatasetNotFound, match="no route to host"):
        load_dataset("mnist", cache_dir=cache)
    assert not (tmp_path / "deep").exists()  # deep/er/cache/mnist: all made by the attempt, all gone

    (cache / "fashion-mnist").mkdir(parents=True)  # the cache existed before: only mnist/ is the attempt's
    (cache / "fashion-mnist" / "keep").write_bytes(b"x")
    with pytest.raises(DatasetNotFound):
        load_dataset("mnist", cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == ["fashion-mnist"]
    assert (cache / "fashion-mnist" / "keep").read_bytes() == b"x"

    (cache / "mnist").mkdir()  # an empty folder that was there before the attempt is not its to remove
    with pytest.raises(DatasetNotFound), pytest.warns(DataFolderWarning, match="lacks"):
        load_dataset("mnist", cache_dir=cache)
    assert (cache / "mnist").is_dir() and list((cache / "mnist").iterdir()) == []


def test_an_interrupted_download_removes_the_folders_it_made(tmp_path, monkeypatch):
    def interrupted(url, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_fetch_url", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist")
    assert not (tmp_path / "cache").exists()


def test_download_cache_not_writable(tmp_path, monkeypatch):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DatasetNotFound, match="downloading failed"):
        load_dataset("mnist", cache_dir=tmp_path / "file")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist package")
def test_pinned_fashion_hashes_accept_debian_copies(tmp_path, monkeypatch):
    monkeypatch.setitem(download.SYSTEM_DATA_DIRS, "fashion-mnist", ())
    requests = []

    def fetch(url, timeout):
        requests.append(url)
        return (DEBIAN_FASHION / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(download, "_fetch_url", fetch)
    data = load_dataset("fashion-mnist")
    assert data.X_train.shape == (60000, 784)
    assert all(u.startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/") for u in requests)
    assert len(requests) == 4


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist package")
def test_real_fashion_mnist():
    data = load_dataset("fashion-mnist", download=False)
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert data.X_train.dtype == np.float32 and data.X_test.dtype == np.float32
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0 and 0.0 <= data.X_test.min()
    assert data.n_classes == 10
    np.testing.assert_array_equal(np.bincount(data.y_train), np.full(10, 6000))
    assert data.describe() == (
        f"fashion-mnist: 60000 train / 10000 test, 784 features, 10 classes, from {DEBIAN_FASHION}"
    )
