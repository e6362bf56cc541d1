"""Tests of mlp_xp.data.datasets: load_dataset's reading of names, paths and options, and Dataset."""

from __future__ import annotations

import copy
import os
import pickle

import pytest

from mlp_xp.data import DATASET_NAMES, Dataset, UnknownDataset, load_dataset, make_synthetic
from mlp_xp.errors import ConfigError, DataError, DatasetNotFound

from .test_data_folders import write_mnist_folder


@pytest.mark.parametrize("name", ["digits", "synthetic", "mnist"])
def test_negative_seed_is_refused(name):
    with pytest.raises(ConfigError, match="seed must be >= 0, got -1"):
        load_dataset(name, seed=-1)


def test_synthetic_names_and_options():
    assert load_dataset("synthetic").X_train.shape == (6000, 20)
    data = load_dataset("synthetic:1200x784")
    assert data.X_train.shape == (1200, 784) and data.X_test.shape == (300, 784) and data.n_classes == 10
    data = load_dataset("synthetic:100x5x3", n_classes=4, test_fraction=0.0)
    assert data.n_classes == 4 and data.X_test is None and data.y_test is None
    assert data.describe().startswith("synthetic:100x5x4: 100 train / no test, 5 features, 4 classes")
    assert make_synthetic(60, 2, 2).X_train.shape == (60, 2)  # fewer features than latent dimensions


@pytest.mark.parametrize("text", ["synthetic:", "synthetic:10", "synthetic:10x", "synthetic:axb", "synthetic:1x2x3x4"])
def test_synthetic_bad_strings(text):
    with pytest.raises(ConfigError, match="synthetic:NxD"):
        load_dataset(text)


def test_folder_path_and_unknown_inputs(tmp_path):
    folder = tmp_path / "my-set"
    write_mnist_folder(folder)
    data = load_dataset(folder)
    assert isinstance(data, Dataset) and data.name == "my-set" and data.X_train.shape == (4, 64)
    with pytest.raises(ConfigError) as info:
        load_dataset("mnsit")
    assert all(name in str(info.value) for name in DATASET_NAMES)
    assert str(info.value).endswith(", a .npz file or a folder of MNIST-layout files")  # (tables: the CLI's)
    wider = UnknownDataset("mnsit", ("a table",))
    for copied in (pickle.loads(pickle.dumps(wider)), copy.deepcopy(wider)):  # (a search's workers pickle errors)
        assert type(copied) is UnknownDataset and str(copied) == str(wider) and str(wider).endswith(" or a table")
    missing = os.path.join(str(tmp_path), "nothing-here")
    with pytest.raises(DatasetNotFound) as info:
        load_dataset(missing)
    message = str(info.value)
    assert message.startswith(f"{missing} does not exist: check the path, or pass a dataset name")
    assert all(name in message for name in DATASET_NAMES)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="neither a .npz file nor a folder of MNIST-layout files") as info:
        load_dataset(tmp_path / "file.txt")
    assert not isinstance(info.value, DatasetNotFound)
    assert all(name in str(info.value) for name in DATASET_NAMES)


def test_options_that_do_not_apply():
    with pytest.raises(ConfigError, match="no option n_features"):
        load_dataset("mnist", n_features=3)
    with pytest.raises(ConfigError, match="no option colour"):
        load_dataset("synthetic", colour="red")


@pytest.mark.parametrize(
    ("spec", "low"),
    [
        ("synthetic:0x5x2", "N (rows) at least 1"),
        ("synthetic:10x0", "D (features) at least 1"),
        ("synthetic:10x5x1", "C (classes) at least 2"),
        ("synthetic:0x0x0", "N (rows) at least 1 and D (features) at least 1 and C (classes) at least 2"),
    ],
)
def test_a_synthetic_spec_below_its_minimums_is_named_in_its_own_terms(spec, low):
    """A new user's --data synthetic:0x5x2 was "n_samples must be > 0, got 0": make_synthetic's argument names."""
    with pytest.raises(ConfigError) as e:
        load_dataset(spec)
    assert str(e.value) == f"{spec!r}: synthetic:NxDxC needs {low}, e.g. synthetic:6000x20x10"
