"""Folders in the MNIST layout: the four IDX files of a train and a test split, raw or gzip-compressed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .idx import read_idx

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


def _read_split(folder: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _find_file(folder, images_stem), _find_file(folder, labels_stem)
    assert images_path is not None and labels_path is not None  # load_mnist_folder checked
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim < 2:
        raise DataError(
            f"{images_path} holds {images.dtype} data of shape {images.shape}, not unsigned-byte images "
            "(N, rows, cols): replace it with an MNIST-format image file"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds {labels.dtype} data of shape {labels.shape}, not a 1-D unsigned-byte label "
            "list: replace it with an MNIST-format label file"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images: "
            "re-download the pair so that they match"
        )
    X = _BYTE_TO_UNIT[images.reshape(len(images), -1)]
    return X, labels.astype(np.int64)


def load_mnist_folder(path: str | os.PathLike[str], *, name: str | None = None) -> Dataset:
    """Load a folder holding the four MNIST-layout IDX files.

    Parameters
    ----------
    path : str or path-like
        Folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
        and ``t10k-labels-idx1-ubyte``, each raw or gzip-compressed with a ``.gz`` suffix (raw wins if
        both exist).
    name : str, optional
        Name for the dataset; defaults to the folder's name.

    Returns
    -------
    Dataset
        Images flattened to float32 rows of ``rows * cols`` values ``k / 255``; labels as int64;
        ``n_classes`` is the largest label + 1.

    Raises
    ------
    DataError
        If files are missing, corrupt, of the wrong type, or the label and image counts differ.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: pass a folder holding the four MNIST-layout files")
    missing = _missing_files(folder)
    if missing:
        raise DataError(
            f"{folder} lacks {', '.join(missing)} (raw or .gz): put all four of {', '.join(MNIST_FILES)} there"
        )
    X_train, y_train = _read_split(folder, MNIST_FILES[0], MNIST_FILES[1])
    X_test, y_test = _read_split(folder, MNIST_FILES[2], MNIST_FILES[3])
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(
            f"training images in {folder} have {X_train.shape[1]} pixels but test images have "
            f"{X_test.shape[1]}: replace the files so both splits come from the same dataset"
        )
    labels_max = max(int(y_train.max(initial=-1)), int(y_test.max(initial=-1)))
    return Dataset(
        name=name or folder.name,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        n_classes=labels_max + 1,
        source=str(folder),
    )
