"""Tests of mlp_xp.data.folders: MNIST-layout folders of IDX files. write_mnist_folder serves the other
test_data_* files too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlp_xp.data import MNIST_FILES, load_mnist_folder, write_idx
from mlp_xp.errors import DataError


def write_mnist_folder(
    folder: Path, *, n_train=4, n_test=2, rows=8, cols=8, label=None, gz=(), raw=MNIST_FILES
) -> dict[str, np.ndarray]:
    """Write the four MNIST-layout files, the stems in ``gz`` compressed, and return the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images = (np.arange(n_train * rows * cols) % 256).astype(np.uint8).reshape(n_train, rows, cols)
    test_images = (255 - np.arange(n_test * rows * cols) % 256).astype(np.uint8).reshape(n_test, rows, cols)
    train_labels = np.arange(n_train, dtype=np.uint8) % 10 if label is None else np.full(n_train, label, np.uint8)
    test_labels = np.arange(n_test, dtype=np.uint8) % 10 if label is None else np.full(n_test, label, np.uint8)
    arrays = dict(zip(MNIST_FILES, (train_images, train_labels, test_images, test_labels), strict=True))
    for stem, array in arrays.items():
        if stem in gz:
            write_idx(folder / f"{stem}.gz", array)
        if stem in raw and stem not in gz:
            write_idx(folder / stem, array)
    return arrays


def test_mnist_folder_mixed_raw_and_gz(tmp_path):
    folder = tmp_path / "digits28"
    arrays = write_mnist_folder(folder, gz={MNIST_FILES[1], MNIST_FILES[2]})
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MNIST_FILES[0], MNIST_FILES[1] + ".gz", MNIST_FILES[2] + ".gz", MNIST_FILES[3]]
    )
    data = load_mnist_folder(folder)
    assert data.X_train.dtype == np.float32 and data.X_train.shape == (4, 64)
    assert data.X_test.shape == (2, 64)
    # 4 images of 64 pixels hold each byte value 0..255 once: every one must map to exactly k/255.
    np.testing.assert_array_equal(data.X_train.ravel(), np.arange(256, dtype=np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.X_test * 255, arrays[MNIST_FILES[2]].reshape(2, -1).astype(np.float32))
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.y_train, [0, 1, 2, 3])
    np.testing.assert_array_equal(data.y_test, [0, 1])
    assert data.n_classes == 4
    assert data.name == "digits28" and data.source == str(folder)
    assert not data.seeded  # (the files fix the split: evaluate does not warn of another data seed)
    assert data.describe() == f"digits28: 4 train / 2 test, 64 features, 4 classes, from {folder}"


def test_mnist_folder_non_square_images_and_both_forms(tmp_path):
    folder = tmp_path / "f"
    write_mnist_folder(folder, rows=3, cols=5, gz=set(MNIST_FILES))
    write_mnist_folder(folder, rows=3, cols=5)  # raw copies next to the .gz ones
    data = load_mnist_folder(folder)
    assert data.X_train.shape == (4, 15) and data.X_test.shape == (2, 15)


def test_mnist_folder_raw_file_wins_over_gz(tmp_path):
    folder = tmp_path / "f"
    write_mnist_folder(folder, label=7, gz=set(MNIST_FILES))
    write_mnist_folder(folder, label=3)  # raw copies with different labels next to the .gz ones
    assert len(list(folder.iterdir())) == 8
    data = load_mnist_folder(folder, classes=10)  # one label throughout: the classes must be given
    assert set(data.y_train) == {3} and set(data.y_test) == {3}


def test_mnist_folder_missing_files(tmp_path):
    folder = tmp_path / "partial"
    write_mnist_folder(folder, raw=MNIST_FILES[:2])
    with pytest.raises(DataError) as info:
        load_mnist_folder(folder)
    message = str(info.value)
    assert "lacks t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (raw or .gz)" in message
    assert all(stem in message for stem in MNIST_FILES)


def test_mnist_folder_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_mnist_folder(tmp_path / "absent")


def test_mnist_folder_count_mismatch(tmp_path):
    folder = tmp_path / "f"
    write_mnist_folder(folder)
    write_idx(folder / MNIST_FILES[1], np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="has 3 labels but .* has 4 images"):
        load_mnist_folder(folder)


@pytest.mark.parametrize(
    ("stem", "array", "match"),
    [
        (MNIST_FILES[1], np.zeros(4, np.int32), "not a 1-D unsigned-byte label"),
        (MNIST_FILES[1], np.zeros((4, 1), np.uint8), "not a 1-D unsigned-byte label"),
        (MNIST_FILES[0], np.zeros((4, 8, 8), np.float32), "not unsigned-byte images"),
        (MNIST_FILES[0], np.zeros(4, np.uint8), "not unsigned-byte images"),
    ],
)
def test_mnist_folder_wrong_types(tmp_path, stem, array, match):
    folder = tmp_path / "f"
    write_mnist_folder(folder)
    write_idx(folder / stem, array)
    with pytest.raises(DataError, match=match):
        load_mnist_folder(folder)


def test_mnist_folder_train_test_pixel_mismatch(tmp_path):
    folder = tmp_path / "f"
    write_mnist_folder(folder)
    write_idx(folder / MNIST_FILES[2], np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="64 pixels but test images have 16"):
        load_mnist_folder(folder)
