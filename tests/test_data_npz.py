"""Tests of mlp_xp.data.npz: datasets stored as .npz files."""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp.data import load_dataset
from mlp_xp.errors import DataError, DatasetNotFound


def test_npz_classification(tmp_path):
    path = tmp_path / "blobs.npz"
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(path, X_train=X, y_train=np.array([0, 1, 2, 0, 1, 2], np.uint8), X_test=X[:2], y_test=[4, 0])
    data = load_dataset(path, classes=5)  # the test split's 4 is not a training class: the count is given
    assert data.name == "blobs" and data.source == str(path) and not data.seeded
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.X_train, X.astype(np.float32))
    assert data.n_classes == 5


def test_npz_regression_and_no_test(tmp_path):
    path = tmp_path / "reg.npz"
    np.savez(path, X_train=np.ones((4, 3), np.int32), y_train=np.linspace(0, 1, 4))
    data = load_dataset(str(path))
    assert data.n_classes == 0 and data.y_train.dtype == np.float32 and data.X_test is None
    assert data.describe() == f"reg: 4 train / no test, 3 features, 1 float target, from {path}"
    np.savez(path, X_train=np.ones((4, 3)), y_train=np.eye(4, 2, dtype=np.int64))  # 2-D targets: multi-label
    data = load_dataset(path)
    assert data.n_classes == 0 and data.y_train.shape == (4, 2) and "2 float targets" in data.describe()


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X_train": np.ones((3, 2))}, "needs X_train and y_train"),
        ({"X_train": np.ones((3, 2)), "y_train": np.zeros(3, int), "X_test": np.ones((1, 2))}, "together"),
        ({"X_train": np.ones((3, 2, 2)), "y_train": np.zeros(3, int)}, r"X_train in .* must be 2-D"),
        ({"X_train": np.ones(3), "y_train": np.zeros(3, int)}, r"X_train in .* must be 2-D"),
        ({"X_train": np.array([["a"], ["b"]]), "y_train": np.zeros(2, int)}, r"X_train in .* not numbers"),
        ({"X_train": np.full((2, 1), 1e300), "y_train": np.zeros(2, int)}, r"X_train in .* NaN or Inf"),
        ({"X_train": np.ones((3, 2)), "y_train": np.zeros(4, int)}, "3 rows in X_train but 4 in y_train"),
        ({"X_train": np.full((3, 2), np.nan), "y_train": np.zeros(3, int)}, "NaN or Inf"),
        ({"X_train": np.ones((3, 2)), "y_train": np.array([0, -1, 1])}, "negative labels"),
        ({"X_train": np.ones((3, 2)), "y_train": np.array(["a", "b", "c"])}, "integer class labels"),
        ({"X_train": np.ones((0, 2)), "y_train": np.zeros(0, int)}, r"X_train in .* is empty"),
        (
            {"X_train": np.ones((3, 2)), "y_train": np.zeros(3, int), "X_test": np.ones((0, 2)), "y_test": [1]},
            r"X_test in .* is empty",
        ),
        (
            {
                "X_train": np.ones((3, 2)),
                "y_train": np.zeros(3, int),
                "X_test": np.ones((1, 3)),
                "y_test": [0],
            },
            "does not match the training split",
        ),
        (
            {
                "X_train": np.ones((3, 2)),
                "y_train": np.zeros(3, int),
                "X_test": np.ones((1, 2)),
                "y_test": [0.5],
            },
            "does not match the training split",
        ),
    ],
)
def test_npz_invalid(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_npz_features_are_float32_and_empty_test_split_is_none(tmp_path):
    path = tmp_path / "a.npz"
    X = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(3, 2))
    np.savez(path, X_train=X, y_train=np.zeros(3, int), X_test=np.ones((0, 2)), y_test=np.zeros(0, int))
    data = load_dataset(path)
    assert data.X_train.dtype == np.float32 and data.X_train.flags.c_contiguous
    np.testing.assert_array_equal(data.X_train, X)
    assert data.X_test is None and data.y_test is None


def test_npz_name_holding_npy_content(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones((3, 2)))
    with pytest.raises(DataError, match=r"single \.npy array, not an \.npz archive.*np\.savez\(path, X_train="):
        load_dataset(path)


def test_npz_unreadable(tmp_path):
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, X_train=np.array([None, 1], dtype=object), y_train=np.zeros(2, int))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(pickled)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    # (said as what it is: np.load calls a text file "pickled (object) data", which it is not)
    with pytest.raises(DataError, match=r"junk.npz is a text file \(it begins 'this is not a zip file'\), not an .npz"):
        load_dataset(junk)
    with pytest.raises(DatasetNotFound, match="absent.npz does not exist: check the path"):
        load_dataset(tmp_path / "absent.npz")
