"""Datasets stored as ``.npz`` files: ``X_train`` and ``y_train``, optionally ``X_test`` and ``y_test``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import not_an_archive
from ..validation import check_features
from .dataset import Dataset
from .labels import class_count


def _npz_targets(y: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, bool]:
    """Return the targets converted, and whether they are class labels."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        if len(y) and y.min() < 0:
            raise DataError(f"{key} in {path} has negative labels: store class labels as 0, 1, 2, ...")
        return y.astype(np.int64), True
    if y.ndim in (1, 2) and y.dtype.kind in "biuf":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"{key} in {path} contains NaN or Inf: remove or fill those rows")
        return y, False
    raise DataError(
        f"{key} in {path} has dtype {y.dtype} and shape {y.shape}: store integer class labels of shape (n,) "
        "or float targets of shape (n,) or (n, k)"
    )


def _npz_features(X: np.ndarray, key: str, path: Path) -> np.ndarray:
    # Values too large for float32 become Inf in the cast and are reported as such.
    with np.errstate(over="ignore"):
        return check_features(X, None, np.float32, name=f"{key} in {path}")


def load_npz(path: Path, classes: int | None = None) -> Dataset:
    """The splits of the .npz file at ``path``; ``classes`` as for :func:`mlp_xp.data.load_dataset`."""
    kind = not_an_archive(path)
    if kind is not None:  # (np.load would call a text file "pickled data", which it is not)
        raise DataError(
            f"{path} {kind}, not an .npz archive: save the splits with np.savez(path, X_train=..., y_train=...)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        # ValueError covers object arrays, which would need pickle, and non-.npz content.
        raise DataError(f"{path} is not a readable .npz of plain arrays ({err}): re-save it with numpy.savez") from err
    if arrays is None:  # np.load gave one array: the file is .npy content under an .npz name
        raise DataError(
            f"{path} holds a single .npy array, not an .npz archive: save the splits by name with "
            "np.savez(path, X_train=..., y_train=...)"
        )
    missing = [key for key in ("X_train", "y_train") if key not in arrays]
    if missing or (("X_test" in arrays) != ("y_test" in arrays)):
        raise DataError(
            f"{path} holds {sorted(arrays)} but needs X_train and y_train, plus X_test and y_test together "
            "or neither: re-save it with those keys"
        )
    if "X_test" in arrays and arrays["X_test"].shape[:1] == arrays["y_test"].shape[:1] == (0,):
        del arrays["X_test"], arrays["y_test"]  # an empty test split is no test split
    X_train = _npz_features(arrays["X_train"], "X_train", path)
    y_train, labels = _npz_targets(arrays["y_train"], "y_train", path)
    splits = [("X_train", X_train, "y_train", y_train)]
    X_test = y_test = None
    if "X_test" in arrays:
        X_test = _npz_features(arrays["X_test"], "X_test", path)
        y_test, test_labels = _npz_targets(arrays["y_test"], "y_test", path)
        if test_labels != labels or y_test.shape[1:] != y_train.shape[1:] or X_test.shape[1] != X_train.shape[1]:
            raise DataError(
                f"the test split in {path} (X {X_test.shape}, y {y_test.dtype} {y_test.shape}) does not "
                f"match the training split (X {X_train.shape}, y {y_train.dtype} {y_train.shape}): re-save "
                "them with the same columns and target kind"
            )
        splits.append(("X_test", X_test, "y_test", y_test))
    for xkey, X, ykey, y in splits:
        if len(X) != len(y):
            raise DataError(f"{path} has {len(X)} rows in {xkey} but {len(y)} in {ykey}: re-save them paired")
    n_classes = 0
    if labels:
        n_classes = class_count(
            y_train,
            y_test,
            classes,
            train_name=f"the training labels (y_train in {path})",
            test_name=f"the test labels (y_test in {path})",
        )
    elif classes is not None:
        raise DataError(
            f"{path} holds float or multi-column targets, not class labels, so classes={classes} does not apply: "
            "leave the class count out, or store y_train as 1-D integer labels"
        )
    return Dataset(path.stem, X_train, y_train, X_test, y_test, n_classes, str(path), seeded=False)
