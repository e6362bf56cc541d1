"""Generated and bundled datasets: scikit-learn's 8x8 digits, and a synthetic classification problem that a
linear model solves only partly and an MLP solves well (:func:`make_synthetic`)."""

from __future__ import annotations

import numpy as np

from .. import settings
from ..backend.base import host_free_memory
from ..constraints import Number
from ..errors import DataError, DatasetNotFound, install_hint
from .dataset import Dataset

__all__ = ["make_synthetic"]

# The shape of the synthetic problem, as make_synthetic's docstring states it; the accuracies quoted there
# were measured with these values.
_LATENT_DIM = 4
_CLUSTERS_PER_CLASS = 4
_CLUSTER_STD = 0.15
_HIDDEN_DIM = 8
_FEATURE_STD = 0.2
_FEATURE_NOISE = 0.03
# Rows per block of make_synthetic's draw, which bounds the size of its temporary noise array.
_CHUNK_ROWS = 8192


def _stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        # At least one row of each class stays in training, however close to 1 the fraction is.
        n_test = min(int(round(len(idx) * test_fraction)), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    # Shuffle across classes too, so that a caller taking the first rows gets every class.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


_COUNT, _FRACTION = Number(integer=True, low=0, low_open=True), Number(low=0, high=1, high_open=True)


def load_digits(seed: int, test_fraction: float = 0.2) -> Dataset:
    seed = settings.check("seed", seed)
    test_fraction = _FRACTION.check(test_fraction, "test_fraction")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetNotFound(
            f'the "digits" dataset comes from scikit-learn, which is not installed: {install_hint("sklearn")}'
        ) from None
    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)  # pixel intensities are 0..16
    y = bunch.target.astype(np.int64)
    train, test = _stratified_split(y, test_fraction, np.random.default_rng(seed))
    # A fraction too small to give any class a test row (or 0) means no test split, as for synthetic.
    X_test, y_test = (X[test], y[test]) if len(test) else (None, None)
    return Dataset("digits", X[train], y[train], X_test, y_test, 10, "scikit-learn load_digits")


def _spread_points(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    # Greedy farthest-point choice among random candidates: centres end up evenly spread, so how hard
    # the problem is depends little on the seed (plain random centres sometimes land on top of each other).
    candidates = rng.uniform(-1.0, 1.0, size=(min(max(16 * n, 256), max(n, 20000)), dim))
    chosen = [0]
    dist = np.linalg.norm(candidates - candidates[0], axis=1)
    for _ in range(n - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        np.minimum(dist, np.linalg.norm(candidates - candidates[i], axis=1), out=dist)
    return candidates[rng.permutation(chosen)]


def _check_memory(n_train: int, n_test: int, n_features: int) -> None:
    """Refuse, before drawing a row, a data set this machine cannot hold while training on it: its float32 rows,
    and as much again (a training run of mlp-xp peaks at about twice its data: 1.6 GB for 0.75 GB of rows)."""
    need = 2 * (n_train + n_test) * (4 * n_features + 8)
    free = host_free_memory()
    if free is not None and need > free:
        gib = 1 << 30
        raise DataError(
            f"synthetic:{n_train}x{n_features} needs about {need / gib:,.1f} GiB of memory to train on ("
            f"{n_train + n_test:,} rows with the test rows, twice) but this machine has {free / gib:,.1f} GiB "
            "free: give fewer rows or features"
        )


def make_synthetic(
    n_samples: int = 6000,
    n_features: int = 20,
    n_classes: int = 10,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """Generate a classification problem that a linear model solves only partly and an MLP solves well.

    Each class is a mixture of 4 Gaussian clusters (std 0.15) in a 4-D latent space (fewer dimensions
    if ``n_features < 4``); the cluster centres are spread evenly over [-1, 1]^4 and dealt to classes at
    random, so each class occupies several separated regions. A latent point ``z`` goes through a fixed
    random one-hidden-layer map: ``u = tanh(z @ A + b)`` with 8 hidden units, then the features are
    ``u @ W + c`` plus N(0, 0.03^2) noise, clipped to [0, 1] (``W`` and ``c`` set each feature's mean to
    0.5 and std to about 0.2, so clipping is rare). Because every feature is a linear function of the
    same 8 values ``u``, a linear classifier on any number of features can do no better than one on
    ``u``, which the cluster layout keeps well short of separable. With the defaults, logistic regression
    reaches 33-55 % test accuracy (seeds 0-3), 5-nearest neighbours about 98.5 % and a (256, 128) MLP
    about 97.5 % after 50 epochs; at 784 features logistic regression still stays near 65 %.

    Parameters
    ----------
    n_samples : int
        Number of training rows. The test rows come on top, so that they are ``test_fraction`` of all
        rows: ``round(n_samples * test_fraction / (1 - test_fraction))`` (1500 for 6000 at 0.2).
    n_features : int
        Number of features.
    n_classes : int
        Number of classes; the labels of each split are balanced to within one row.
    seed : int
        Seeds everything (>= 0): the same arguments give the same arrays. The problem itself (centres and
        maps) depends only on ``seed``, ``n_features`` and ``n_classes``, not on ``n_samples``.
    test_fraction : float
        In [0, 1); 0 gives no test split.

    Returns
    -------
    Dataset
        float32 features in [0, 1], int64 labels, named ``synthetic:{n_samples}x{n_features}x{n_classes}``.

    Raises
    ------
    ConfigError
        If a count is not an integer or below its minimum, ``seed`` is negative, or ``test_fraction`` is
        outside [0, 1).
    DataError
        If the rows, and as much again (what training on them takes), would not fit in the free memory.
    """
    n_samples = _COUNT.check(n_samples, "n_samples")
    n_features = _COUNT.check(n_features, "n_features")
    n_classes = Number(integer=True, low=2).check(n_classes, "n_classes")
    seed = settings.check("seed", seed)
    test_fraction = _FRACTION.check(test_fraction, "test_fraction")
    n_test = int(round(n_samples * test_fraction / (1.0 - test_fraction)))
    _check_memory(n_samples, n_test, n_features)

    problem = np.random.default_rng([seed, 0])
    latent = min(_LATENT_DIM, n_features)
    n_clusters = n_classes * _CLUSTERS_PER_CLASS
    centres = _spread_points(problem, n_clusters, latent).astype(np.float32)
    # Scaling by 1/sqrt(latent) keeps tanh's input near unit variance: nonlinear, rarely saturated.
    A = (problem.standard_normal((latent, _HIDDEN_DIM)) / np.sqrt(latent)).astype(np.float32)
    b = problem.uniform(-0.5, 0.5, _HIDDEN_DIM).astype(np.float32)
    W = problem.standard_normal((_HIDDEN_DIM, n_features)).astype(np.float32)
    # Calibrate each feature's centre and spread on a sample, so values fill [0, 1] and rarely need clipping.
    z = centres[problem.integers(0, n_clusters, 4096)]
    z += _CLUSTER_STD * problem.standard_normal(z.shape, dtype=np.float32)
    features = np.tanh(z @ A + b) @ W
    scale = _FEATURE_STD / np.maximum(features.std(axis=0), 1e-6)
    W *= scale
    c = 0.5 - features.mean(axis=0) * scale
    sampler = np.random.default_rng([seed, 1])

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = sampler.permutation(np.arange(n) % n_classes)
        cluster = y * _CLUSTERS_PER_CLASS + sampler.integers(0, _CLUSTERS_PER_CLASS, n)
        z = centres[cluster] + _CLUSTER_STD * sampler.standard_normal((n, latent), dtype=np.float32)
        u = np.tanh(z @ A + b)
        X = np.empty((n, n_features), dtype=np.float32)
        # In chunks, so that the noise never needs a second full-size array.
        for start in range(0, n, _CHUNK_ROWS):
            block = X[start : start + _CHUNK_ROWS]
            np.matmul(u[start : start + _CHUNK_ROWS], W, out=block)
            block += c
            block += _FEATURE_NOISE * sampler.standard_normal(block.shape, dtype=np.float32)
            np.clip(block, 0.0, 1.0, out=block)
        return X, y.astype(np.int64)

    X_train, y_train = draw(n_samples)
    X_test, y_test = draw(n_test) if n_test > 0 else (None, None)
    return Dataset(
        name=f"synthetic:{n_samples}x{n_features}x{n_classes}",
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        n_classes=n_classes,
        source=f"make_synthetic(seed={seed})",
    )
