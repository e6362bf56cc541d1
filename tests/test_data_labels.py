"""The class count of labelled datasets (mlp_xp.data.labels): the training labels define the classes 0..C-1, a
stray label or a class seen only in the test split is one clear DataError, and ``load_dataset(classes=C)`` sets
C explicitly for subsets that lack some classes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mlp_xp
from mlp_xp.cli import main
from mlp_xp.data import MNIST_FILES, load_dataset, load_mnist_folder, write_idx
from mlp_xp.data.labels import class_count
from mlp_xp.errors import ConfigError, DataError

from .test_data_folders import write_mnist_folder


def _folder(tmp_path, train_labels, test_labels):
    """An MNIST-layout folder whose label files hold exactly these labels."""
    folder = tmp_path / "set"
    write_mnist_folder(folder, n_train=len(train_labels), n_test=len(test_labels))
    write_idx(folder / MNIST_FILES[1], np.array(train_labels, np.uint8))
    write_idx(folder / MNIST_FILES[3], np.array(test_labels, np.uint8))
    return folder


TEN = list(range(10)) * 3


def test_a_stray_training_label_of_200_is_an_error_not_a_201_class_model(tmp_path):
    folder = _folder(tmp_path, [*TEN, 200], list(range(10)))
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    assert str(info.value) == (
        f"the training labels ({folder / MNIST_FILES[1]}) hold 0..9, 200, so classes 10..199 are missing and the "
        "labels above the gap are 200 (1 row): relabel or drop those rows if they are strays, or give the class "
        "count explicitly (classes=201, --classes 201) if the data are a subset that lacks some classes"
    )


def test_a_class_only_in_the_test_labels_is_an_error_not_an_11_class_model(tmp_path):
    folder = _folder(tmp_path, TEN, [0, 10, 5, 10, 10])
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    assert str(info.value) == (
        f"the test labels ({folder / MNIST_FILES[3]}) hold 10 (3 rows), which the training labels do not (they are "
        "0..9): drop or relabel those test rows, or give the class count explicitly (classes=11, --classes 11) if "
        "training lacks those classes"
    )


def test_training_labels_with_a_gap_name_the_missing_classes_and_the_labels_beyond(tmp_path):
    folder = _folder(tmp_path, [0, 1, 2, 5, 5, 1], [0, 1])
    with pytest.raises(DataError, match=re.escape("hold 0..2, 5, so classes 3..4 are missing")) as info:
        load_mnist_folder(folder)
    assert "the labels above the gap are 5 (2 rows)" in str(info.value)
    assert "classes=6" in str(info.value)


def test_complete_labels_give_their_count(tmp_path):
    data = load_dataset(_folder(tmp_path, TEN, [3, 9, 0]))
    assert data.n_classes == 10
    assert class_count(np.array([1, 0, 2, 2]), None) == 3
    assert class_count(np.array([1, 0]), np.array([], np.int64)) == 2


def test_an_explicit_class_count_allows_missing_classes_and_checks_only_the_upper_bound(tmp_path):
    folder = _folder(tmp_path, [0, 1, 2, 5], [7, 0])  # a subset: classes 3, 4, 6, 7+ absent from training
    data = load_dataset(folder, classes=10)
    assert data.n_classes == 10 and data.describe() == f"set: 4 train / 2 test, 64 features, 10 classes, from {folder}"
    assert load_mnist_folder(folder, classes=8).n_classes == 8
    with pytest.raises(DataError) as info:
        load_dataset(folder, classes=6)
    assert str(info.value) == (
        f"the test labels ({folder / MNIST_FILES[3]}) hold 7 (1 row), but classes=6 allows only 0..5: give the "
        "class count as at least 8, or drop or relabel those rows"
    )
    with pytest.raises(DataError, match=r"training labels .* hold 5 \(1 row\), but classes=4 allows only 0\.\.3"):
        load_dataset(folder, classes=4)


@pytest.mark.parametrize(
    ("classes", "match"),
    [(1, "classes (the number of classes) must be >= 2, got 1"), (2.5, "must be an integer"), (True, "integer")],
)
def test_a_bad_class_count_is_a_config_error_before_any_file_is_read(tmp_path, classes, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        load_dataset(tmp_path / "no such folder", classes=classes)


def test_npz_labels_follow_the_same_rule(tmp_path):
    path = tmp_path / "d.npz"
    X = np.ones((4, 2))
    np.savez(path, X_train=X, y_train=np.array([0, 1, 1, 0]), X_test=X[:2], y_test=np.array([2, 0]))
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(
        f"the test labels (y_test in {path}) hold 2 (1 row), which the training labels do not (they are 0..1): "
    )
    assert load_dataset(path, classes=3).n_classes == 3
    np.savez(path, X_train=X, y_train=np.linspace(0, 1, 4))
    with pytest.raises(DataError, match="not class labels, so classes=3 does not apply"):
        load_dataset(path, classes=3)


def test_generated_sets_take_an_explicit_count_too():
    data = load_dataset("synthetic:60x3x3", classes=5)
    assert data.n_classes == 5 and set(data.y_train) == {0, 1, 2}
    with pytest.raises(DataError, match=r"hold 2 \(20 rows\), but classes=2 allows only 0\.\.1"):
        load_dataset("synthetic:60x3x3", classes=2)


def test_long_lists_of_values_are_cut_short():
    y = np.array([0, 1, *range(10, 30)])
    with pytest.raises(DataError, match=r"are 10 \(1 row\), 11 \(1 row\), .*15 \(1 row\) and 14 more values: "):
        class_count(y, None)


def test_the_cli_reports_a_stray_label_as_bad_input(tmp_path, capsys):
    folder = _folder(tmp_path, [*TEN, 200], list(range(10)))
    assert main(["train", "--data", str(folder), "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlp-xp: error: the training labels (") and "200 (1 row)" in err


def test_the_command_line_takes_classes_for_data_that_miss_some(tmp_path, capsys):
    from mlp_xp.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "gap.npz"
    np.savez(path, X_train=rng.random((40, 5)).astype(np.float32), y_train=np.array([0, 1, 2, 5] * 10))
    assert main(["train", "--data", str(path), "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "classes 3..4 are missing" in err and "--classes 6" in err
    model = tmp_path / "m.npz"
    assert (
        main(["train", "--data", str(path), "--epochs", "1", "--device", "cpu", "--classes", "6", "--save", str(model)])
        == 0
    )
    assert mlp_xp.MLP.load(model, device="cpu").n_outputs == 6
    assert main(["train", "--data", str(path), "--classes", "1"]) == 2
    assert "--classes must be >= 2, got 1" in capsys.readouterr().err
