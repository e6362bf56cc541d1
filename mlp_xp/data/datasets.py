"""The entry point :func:`load_dataset`: a dataset by name (MNIST, Fashion-MNIST, scikit-learn's digits,
synthetic data) or by path (a ``.npz`` file, an MNIST-layout folder), handed to the loader of its module."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .. import settings
from ..errors import ConfigError, DataError, DatasetNotFound
from .dataset import Dataset
from .download import load_named_images
from .folders import load_mnist_folder
from .generated import load_digits, make_synthetic
from .labels import check_classes, class_count
from .npz import load_npz

__all__ = ["DATASET_NAMES", "UnknownDataset", "load_dataset"]

#: Names :func:`load_dataset` understands (besides ``synthetic:NxD[xC]`` strings, .npz files and folders).
DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "digits", "synthetic")

_SYNTHETIC_RE = re.compile(r"synthetic:(\d+)x(\d+)(?:x(\d+))?")


class UnknownDataset(ConfigError):
    """A name that is no dataset and no file; ``also``: more choices the caller reads (the command line's tables)."""

    def __init__(self, text: str, also: tuple[str, ...] = ()) -> None:
        self.text, self.also = text, tuple(also)
        choices = [*DATASET_NAMES, "synthetic:NxD[xC]", "a .npz file", "a folder of MNIST-layout files", *also]
        super().__init__(f"unknown dataset {text!r}: use one of {', '.join(choices[:-1])} or {choices[-1]}")

    def __reduce__(self):
        # (pickle and copy rebuild an exception from its args, here the whole message: a search's workers send it)
        return type(self), (self.text, self.also)


def _check_kwargs(what: str, kwargs: dict, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        if allowed:
            fix = f"use only {', '.join(allowed)}"
        else:
            fix = f"it takes no options, so leave {'them' if len(extra) > 1 else 'it'} out"
        raise ConfigError(f"{what} takes no option {', '.join(extra)}: {fix}")


def _with_classes(dataset: Dataset, classes: int | None) -> Dataset:
    """A generated dataset (whose class count is its own) with an explicit class count, its labels checked."""
    if classes is None:
        return dataset
    n = class_count(
        dataset.y_train,
        dataset.y_test,
        classes,
        train_name=f"the training labels of {dataset.name}",
        test_name=f"the test labels of {dataset.name}",
    )
    return dataclasses.replace(dataset, n_classes=n)


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 0,
    classes: int | None = None,
    **kwargs: object,
) -> Dataset:
    """Load a dataset by name or path.

    Parameters
    ----------
    name_or_path : str or path-like
        One of

        * ``"mnist"`` or ``"fashion-mnist"``: looked for in ``$MLP_XP_DATA/<name>/``, then
          ``<cache>/<name>/``, then the folders of :data:`SYSTEM_DATA_DIRS`, then downloaded into the
          cache (when ``download``), each file checked against a pinned SHA-256;
        * ``"digits"``: scikit-learn's 8x8 digits scaled to [0, 1], split with ``seed``, stratified
          (option ``test_fraction`` in [0, 1), default 0.2; no test split when it leaves none);
        * ``"synthetic"`` or ``"synthetic:NxD"`` / ``"synthetic:NxDxC"`` (N training rows, D features,
          C classes, default 10): see :func:`make_synthetic`, whose other arguments may be given as options;
        * a path to a ``.npz`` file with ``X_train``, ``y_train`` and optionally ``X_test``, ``y_test``
          (1-D integer targets are class labels; float, bool or 2-D targets are kept as float32 with
          ``n_classes = 0``);
        * a path to a folder with the four MNIST-layout files (see :func:`load_mnist_folder`).

        Names are matched case-insensitively, with ``_`` read as ``-``, and win over a folder of the
        same name in the current directory (write ``./mnist`` for that).
    cache_dir : str or path-like, optional
        Cache folder; see :func:`default_cache_dir`.
    download : bool
        Whether a named image set missing everywhere may be downloaded.
    seed : int
        Seed (>= 0) for the digits split and for the synthetic data.
    classes : int, optional
        The number of classes C (>= 2), given explicitly, for data that lack some classes (a subset): every
        label of either split must then be below C, and ``n_classes`` is C. By default the training labels
        define the classes: they must be exactly 0..C-1 with none missing, and every test label must be one
        of them, so that a stray label (one 200 among 0..9) or a class found only in the test split is an
        error rather than a model with extra outputs. Generated sets (digits, synthetic) have their own count.
    **kwargs
        Options of ``"synthetic"`` (``n_samples``, ``n_features``, ``n_classes``, ``test_fraction``) and of
        ``"digits"`` (``test_fraction``).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetNotFound
        If a named set is nowhere to be found or downloaded, scikit-learn is missing, or a path does not
        exist.
    DataError
        If the files found are corrupt or inconsistent, an existing path is neither a .npz file nor a
        folder, the training labels are not 0..C-1 with no class missing, or a test label is not one of them
        (with ``classes``: a label is ``classes`` or more, or the targets are not class labels).
    ConfigError
        If the name is unknown, an option does not apply or is out of range, ``seed`` is negative, or
        ``classes`` is not an integer >= 2.

    Warns
    -----
    DataFolderWarning
        When a folder searched for a named set exists but lacks some of its files (it is passed over).
    """
    seed = settings.check("seed", seed)
    classes = check_classes(classes)
    text = os.fspath(name_or_path)
    key = text.strip().lower().replace("_", "-")
    if key in ("mnist", "fashion-mnist"):
        _check_kwargs(key, kwargs, ())
        return load_named_images(key, cache_dir, download, classes)
    if key == "digits":
        _check_kwargs(key, kwargs, ("test_fraction",))
        return _with_classes(load_digits(seed, **kwargs), classes)  # type: ignore[arg-type]
    if key == "synthetic" or key.startswith("synthetic:"):
        options: dict = {}
        if key != "synthetic":
            match = _SYNTHETIC_RE.fullmatch(key)
            if match is None:
                raise ConfigError(
                    f"cannot read {text!r} as a synthetic dataset: write synthetic:NxD or synthetic:NxDxC, "
                    "e.g. synthetic:60000x784"
                )
            options = {"n_samples": int(match[1]), "n_features": int(match[2])}
            if match[3]:
                options["n_classes"] = int(match[3])
            low = [f"{what} at least {least}" for what, name, least in
                   (("N (rows)", "n_samples", 1), ("D (features)", "n_features", 1), ("C (classes)", "n_classes", 2))
                   if options.get(name, least) < least]  # fmt: skip
            if low:  # (in the spec's own terms, not make_synthetic's argument names)
                raise ConfigError(f"{text!r}: synthetic:NxDxC needs {' and '.join(low)}, e.g. synthetic:6000x20x10")
        _check_kwargs("synthetic", kwargs, ("n_samples", "n_features", "n_classes", "test_fraction"))
        return _with_classes(make_synthetic(**{**options, **kwargs}, seed=seed), classes)
    path = Path(text).expanduser()
    if path.is_dir():
        _check_kwargs("an MNIST-layout folder", kwargs, ())
        return load_mnist_folder(path, classes=classes)
    is_npz = path.suffix.lower() == ".npz"
    if is_npz and path.is_file():
        _check_kwargs("a .npz file", kwargs, ())
        return load_npz(path, classes)
    if path.exists():
        raise DataError(
            f"{path} is neither a .npz file nor a folder of MNIST-layout files: pass one of those or a "
            f"dataset name ({', '.join(DATASET_NAMES)})"
        )
    if is_npz or os.sep in text or (os.altsep and os.altsep in text):
        raise DatasetNotFound(
            f"{path} does not exist: check the path, or pass a dataset name ({', '.join(DATASET_NAMES)}), "
            "a .npz file or a folder of MNIST-layout files"
        )
    raise UnknownDataset(text)
