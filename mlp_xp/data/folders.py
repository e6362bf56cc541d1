"""Folders in the MNIST layout: the four IDX files of a train and a test split, raw or gzip-compressed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from .labels import class_count

__all__ = ["MNIST_FILES", "load_mnist_folder"]

#: The four files of an MNIST-layout folder, each stored raw or with a ``.gz`` suffix.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# 1/255 steps computed once, so that k/255 is the correctly rounded float32 (a multiply by 1/255 is not).
_BYTE_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


def _find_file(folder: Path, stem: str) -> Path | None:
    # Raw first: it reads faster, and a folder holding both has presumably just been gunzipped.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(folder: Path) -> list[str]:
    return [stem for stem in MNIST_FILES if _find_file(folder, stem) is None]


def _read_split(folder: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray, Path]:
    images_path, labels_path = _find_file(folder, images_stem), _find_file(folder, labels_stem)
    assert images_path is not None and labels_path is not None  # load_mnist_folder checked
    images = read_idx(images_path, magic=IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=IDX_LABELS_MAGIC)
    # The magic numbers fixed the dtypes (uint8) and shapes (N, rows, cols) and (N,).
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images: "
            "re-download the pair so that they match"
        )
    X = _BYTE_TO_UNIT[images.reshape(len(images), -1)]
    return X, labels.astype(np.int64), labels_path


def load_mnist_folder(path: str | os.PathLike[str], *, name: str | None = None, classes: int | None = None) -> Dataset:
    """Load a folder holding the four MNIST-layout IDX files.

    Parameters
    ----------
    path : str or path-like
        Folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
        and ``t10k-labels-idx1-ubyte``, each raw or gzip-compressed with a ``.gz`` suffix (raw wins if
        both exist).
    name : str, optional
        Name for the dataset; defaults to the folder's name.
    classes : int, optional
        The number of classes C (>= 2), for a subset that lacks some classes; every label must then be below
        C. By default the training labels define the classes (see :func:`mlp_xp.data.labels.class_count`).

    Returns
    -------
    Dataset
        Images flattened to float32 rows of ``rows * cols`` values ``k / 255``; labels as int64;
        ``n_classes`` is ``classes``, or else the number of classes of the training labels.

    Raises
    ------
    DataError
        If files are missing, corrupt, of the wrong type (a wrong magic number included), the label and image
        counts differ, the training labels are not exactly 0..C-1, or a test label is outside them (a label
        ``classes`` or more, when it is given).
    ConfigError
        If ``classes`` is not an integer >= 2.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: pass a folder holding the four MNIST-layout files")
    missing = _missing_files(folder)
    if missing:
        raise DataError(
            f"{folder} lacks {', '.join(missing)} (raw or .gz): put all four of {', '.join(MNIST_FILES)} there"
        )
    X_train, y_train, train_labels = _read_split(folder, MNIST_FILES[0], MNIST_FILES[1])
    X_test, y_test, test_labels = _read_split(folder, MNIST_FILES[2], MNIST_FILES[3])
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(
            f"training images in {folder} have {X_train.shape[1]} pixels but test images have "
            f"{X_test.shape[1]}: replace the files so both splits come from the same dataset"
        )
    n_classes = class_count(
        y_train,
        y_test,
        classes,
        train_name=f"the training labels ({train_labels})",
        test_name=f"the test labels ({test_labels})",
    )
    return Dataset(
        name=name or folder.name,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        n_classes=n_classes,
        source=str(folder),
        seeded=False,
    )
