"""The :class:`Dataset` every loader returns.

It lives apart from :mod:`mlp_xp.data.datasets` so that the loaders, which return it, and the dispatcher
there, which imports the loaders, need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset"]


@dataclass
class Dataset:
    """A train/test split ready for training.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"fashion-mnist"`` or ``"synthetic:6000x20x10"``.
    X_train : numpy.ndarray
        float32, shape (n, d); image data scaled to [0, 1].
    y_train : numpy.ndarray
        int64 class labels of shape (n,) when ``n_classes > 0``; float32 targets of shape (n,) or (n, k)
        otherwise (regression or multi-label, from .npz files).
    X_test, y_test : numpy.ndarray or None
        The held-out split, or None when there is none.
    n_classes : int
        Number of classes: the training labels' 0..C-1, or the count given to ``load_dataset(classes=...)``
        (see :mod:`mlp_xp.data.labels`); 0 for float targets.
    source : str
        Where the data came from, for people to read (a folder, a file, a generator).
    seeded : bool
        Whether the data seed draws the split (or the data): False where the files fix both (an MNIST-layout
        folder, a .npz), so that another seed gives the same rows.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    n_classes: int
    source: str
    seeded: bool = True

    @property
    def n_features(self) -> int:
        """Number of input features (columns of ``X_train``)."""
        return int(self.X_train.shape[1])

    def describe(self) -> str:
        """One line such as ``"mnist: 60000 train / 10000 test, 784 features, 10 classes, from DIR"``."""
        test = f"{len(self.X_test)} test" if self.X_test is not None else "no test"
        if self.n_classes > 0:
            target = f"{self.n_classes} classes"
        else:
            k = 1 if self.y_train.ndim == 1 else self.y_train.shape[1]
            target = f"{k} float target{'s' if k != 1 else ''}"
        return (
            f"{self.name}: {len(self.X_train)} train / {test}, {self.n_features} features, {target}, from {self.source}"
        )
