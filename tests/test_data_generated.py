"""Tests of mlp_xp.data.generated: scikit-learn's digits and the synthetic problem of make_synthetic."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mlp_xp.data import load_dataset, make_synthetic
from mlp_xp.errors import ConfigError, DataError, DatasetNotFound


def test_digits():
    pytest.importorskip("sklearn")
    data = load_dataset("digits", seed=3)
    assert data.X_train.shape == (1438, 64) and data.X_test.shape == (359, 64)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0 and data.X_test.max() <= 1.0
    assert data.n_classes == 10 and set(data.y_test) == set(range(10))
    # Stratified: each class's share of the test set is within one row of 20 %.
    train_counts, test_counts = np.bincount(data.y_train), np.bincount(data.y_test)
    assert np.all(np.abs(test_counts - 0.2 * (train_counts + test_counts)) <= 0.5)
    again = load_dataset("digits", seed=3)
    np.testing.assert_array_equal(again.X_test, data.X_test)
    assert not np.array_equal(load_dataset("digits", seed=4).y_test, data.y_test) and data.seeded
    assert load_dataset("digits", test_fraction=0.5).X_test.shape[0] in (898, 899, 900)


def test_digits_small_or_zero_test_fraction_gives_no_test_split():
    pytest.importorskip("sklearn")
    for fraction in (0.0, 0.001):  # 0.001 rounds to 0 test rows in every class
        data = load_dataset("digits", test_fraction=fraction)
        assert data.X_test is None and data.y_test is None
        assert data.X_train.shape == (1797, 64)
        assert "/ no test," in data.describe()
    # Close to 1, every class still keeps a training row.
    assert np.array_equal(np.bincount(load_dataset("digits", test_fraction=0.999).y_train), np.ones(10))


@pytest.mark.parametrize(
    ("fraction", "match"), [(1.0, r"in \[0, 1\), got 1.0"), (-0.1, r"in \[0, 1\), got -0.1"), ("0.2", "a number")]
)
def test_digits_bad_test_fraction(fraction, match):
    pytest.importorskip("sklearn")
    with pytest.raises(ConfigError, match=f"test_fraction must be.*{match}"):
        load_dataset("digits", test_fraction=fraction)


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetNotFound, match=r"pip install 'scikit-learn>=1.6' \(or, in mlp_xp's folder"):
        load_dataset("digits")


def test_synthetic_shapes_and_determinism():
    data = load_dataset("synthetic:300x12x3", seed=5)
    assert data.name == "synthetic:300x12x3"
    assert data.X_train.shape == (300, 12) and data.X_test.shape == (75, 12)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    assert data.n_classes == 3
    np.testing.assert_array_equal(np.bincount(data.y_train), [100, 100, 100])
    same = make_synthetic(300, 12, 3, seed=5)
    np.testing.assert_array_equal(same.X_train, data.X_train)
    np.testing.assert_array_equal(same.y_test, data.y_test)
    assert not np.array_equal(make_synthetic(300, 12, 3, seed=6).X_train, data.X_train)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be > 0, got 0"),
        ({"n_features": -3}, "n_features must be > 0, got -3"),
        ({"n_classes": 1}, "n_classes must be >= 2, got 1"),
        ({"n_classes": True}, "n_classes must be an integer"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\), got 1.0"),
        ({"test_fraction": -0.5}, r"test_fraction must be in \[0, 1\), got -0.5"),
        ({"n_samples": 2.5}, "n_samples must be an integer, got 2.5"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_make_synthetic_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_synthetic(**kwargs)


def test_make_synthetic_accepts_numpy_integers():
    data = make_synthetic(np.int64(30), np.int32(3), np.uint8(2), seed=np.int64(1))
    assert data.name == "synthetic:30x3x2" and data.X_train.shape == (30, 3)


def test_synthetic_needs_a_nonlinear_model():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier

    data = make_synthetic()
    assert data.X_test.shape == (1500, 20)
    # A least-squares linear classifier, 60x faster than logistic regression; it scores 0.49 here, and
    # converged logistic regression 0.54, so the bound below holds with a wide margin for either.
    linear = RidgeClassifier().fit(data.X_train, data.y_train).score(data.X_test, data.y_test)
    knn = KNeighborsClassifier(5).fit(data.X_train, data.y_train).score(data.X_test, data.y_test)
    assert linear < 0.8, linear
    assert knn > 0.95, knn


def test_a_synthetic_set_that_would_not_fit_is_refused_before_a_row_is_drawn(monkeypatch):
    from mlp_xp.data import generated

    monkeypatch.setattr(generated, "host_free_memory", lambda: 1 << 30)  # 1 GiB free
    # 200,000 x 784 (with its 50,000 test rows) is 0.73 GiB of float32: twice that does not fit in 1 GiB
    with pytest.raises(DataError, match=r"synthetic:200000x784 needs about 1\.5 GiB .* has 1\.0 GiB free"):
        generated.make_synthetic(200_000, 784)
    assert generated.make_synthetic(1000, 784).X_train.shape == (1000, 784)  # (what fits is made as before)
