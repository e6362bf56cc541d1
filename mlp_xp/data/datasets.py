"""Datasets by name or path: MNIST, Fashion-MNIST, scikit-learn's digits, a synthetic set, .npz files.

Named image sets are looked for, in order, in ``$MLP_XP_DATA/<name>/``, in the cache folder
``<cache>/<name>/`` (see :func:`default_cache_dir`), in the system folders of :data:`SYSTEM_DATA_DIRS`
(Debian's ``dataset-fashion-mnist`` package), and are finally downloaded into the cache, each file
checked against a SHA-256 pinned below.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp_xp.data.idx import read_idx
from mlp_xp.errors import ConfigError, DataError, DatasetNotFound
from mlp_xp.files import atomic_writer, cache_root
from mlp_xp.validation import check_features, check_fraction, check_positive

__all__ = [
    "DATASET_NAMES",
    "MNIST_FILES",
    "SYSTEM_DATA_DIRS",
    "DataFolderWarning",
    "Dataset",
    "default_cache_dir",
    "load_dataset",
    "load_mnist_folder",
    "make_synthetic",
]

#: Names :func:`load_dataset` understands (besides ``synthetic:NxD[xC]`` strings, .npz files and folders).
DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "digits", "synthetic")

#: The four files of an MNIST-layout folder, each stored raw or with a ``.gz`` suffix.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Read-only folders that packages install datasets into, searched after the cache; tests patch this.
SYSTEM_DATA_DIRS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
}

_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# SHA-256 of the .gz files a download may accept. For Fashion-MNIST the first value is the file the
# canonical server sends; the second is Debian's copy (dataset-fashion-mnist), which holds the same
# images but was re-gzipped without the stored file name, so its bytes, and hash, differ.
_SHA256: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
        "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
        "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaf5e0c6e5d41a1163",),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    },
}

_APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
_DOWNLOAD_TIMEOUT_S = 30.0
_SYNTHETIC_RE = re.compile(r"synthetic:(\d+)x(\d+)(?:x(\d+))?")
# 1/255 steps computed once, so that k/255 is the correctly rounded float32 (a multiply by 1/255 is not).
_BYTE_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


class DataFolderWarning(UserWarning):
    """A folder searched for a named dataset exists but lacks some of its files, so it was passed over."""


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
        Number of classes (largest label + 1); 0 for float targets.
    source : str
        Where the data came from, for people to read (a folder, a file, a generator).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    n_classes: int
    source: str

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


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder downloads go to: ``cache_dir``, else ``$MLP_XP_CACHE``, else ``$XDG_CACHE_HOME/mlp_xp``,
    else ``~/.cache/mlp_xp``.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        An explicit folder, which wins over the environment.

    Returns
    -------
    pathlib.Path
        The folder (not created); each dataset lives in a subfolder named after it.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return cache_root()


# ---------------------------------------------------------------------------------------------------------
# MNIST-layout folders


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
            "(N, rows, cols); replace it with an MNIST-format image file."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds {labels.dtype} data of shape {labels.shape}, not a 1-D unsigned-byte label "
            "list; replace it with an MNIST-format label file."
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "re-download the pair so that they match."
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
        raise DataError(f"{folder} is not a folder; pass a folder holding the four MNIST-layout files.")
    missing = _missing_files(folder)
    if missing:
        raise DataError(
            f"{folder} lacks {', '.join(missing)} (raw or .gz); put all four of {', '.join(MNIST_FILES)} there."
        )
    X_train, y_train = _read_split(folder, MNIST_FILES[0], MNIST_FILES[1])
    X_test, y_test = _read_split(folder, MNIST_FILES[2], MNIST_FILES[3])
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(
            f"Training images in {folder} have {X_train.shape[1]} pixels but test images have "
            f"{X_test.shape[1]}; replace the files so both splits come from the same dataset."
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


# ---------------------------------------------------------------------------------------------------------
# Named image datasets: lookup and download


def _fetch_url(url: str, timeout: float) -> bytes:
    """Return the body of ``url``; the one function that touches the network, so tests replace it."""
    request = urllib.request.Request(url, headers={"User-Agent": "mlp_xp"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _download(name: str, folder: Path) -> None:
    """Fetch into ``folder`` each file it lacks, from the first mirror that serves the pinned bytes.

    Raises OSError with the reason when some file could not be had from any mirror.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stem in _missing_files(folder):
        filename = f"{stem}.gz"
        failures = []
        for base in _MIRRORS[name]:
            url = base + filename
            try:
                body = _fetch_url(url, _DOWNLOAD_TIMEOUT_S)
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"{url}: {err}")
                continue
            digest = hashlib.sha256(body).hexdigest()
            if digest not in _SHA256[name][filename]:
                failures.append(f"{url}: SHA-256 {digest[:12]}... does not match the pinned value")
                continue
            with atomic_writer(folder / filename) as f:
                f.write(body)
            break
        else:
            raise OSError("; ".join(failures))


def _candidate_folders(name: str, cache: Path) -> list[Path]:
    folders = []
    if os.environ.get("MLP_XP_DATA"):
        folders.append(Path(os.environ["MLP_XP_DATA"]).expanduser() / name)
    folders.append(cache / name)
    folders.extend(Path(p) for p in SYSTEM_DATA_DIRS.get(name, ()))
    return folders


def _load_named_images(name: str, cache_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    cache = default_cache_dir(cache_dir)
    looked = []
    # A folder missing some files is passed over with a warning rather than an error: the cache one may
    # hold an interrupted download, which the download step below completes, and a later folder may be whole.
    for folder in _candidate_folders(name, cache):
        if folder.is_dir():
            missing = _missing_files(folder)
            if not missing:
                return load_mnist_folder(folder, name=name)
            if download and folder == cache / name:
                fix = "the missing files are downloaded into it unless a later folder holds the whole set"
            else:
                fix = "add those files there, or remove the folder"
            warnings.warn(
                f"Skipping {folder} while looking for {name!r}: it lacks {', '.join(missing)} (raw or .gz); {fix}.",
                DataFolderWarning,
                stacklevel=3,  # the caller of load_dataset
            )
        looked.append(str(folder))
    why = "downloading is off"
    if download:
        try:
            _download(name, cache / name)
        except OSError as err:
            why = f"downloading failed ({err})"
        else:
            return load_mnist_folder(cache / name, name=name)
    hints = [f"put the four files {', '.join(MNIST_FILES)} (raw or .gz) in {cache / name}"]
    if name in _APT_PACKAGES:
        hints.insert(0, f"run `apt-get install {_APT_PACKAGES[name]}`")
    hints += [
        f"set MLP_XP_DATA to a folder holding {name}/",
        "pass the folder's path as the dataset name (mlp-xp --data DIR)",
    ]
    raise DatasetNotFound(
        f"Dataset {name!r} is not in {', '.join(looked)} and {why}; to fix it, {', or '.join(hints)}."
    )


# ---------------------------------------------------------------------------------------------------------
# Generated and bundled datasets


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


def _load_digits(seed: int, test_fraction: float = 0.2) -> Dataset:
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetNotFound(
            'The "digits" dataset comes from scikit-learn, which is not installed; run `pip install "mlp-xp[sklearn]"`.'
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


_LATENT_DIM = 4
_CLUSTERS_PER_CLASS = 4
_CLUSTER_STD = 0.15
_HIDDEN_DIM = 8
_FEATURE_STD = 0.2
_FEATURE_NOISE = 0.03
_CHUNK_ROWS = 8192


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
    """
    n_samples = check_positive(n_samples, "n_samples", integer=True)
    n_features = check_positive(n_features, "n_features", integer=True)
    n_classes = check_positive(n_classes, "n_classes", integer=True)
    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}; pass 2 or more classes.")
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    n_test = int(round(n_samples * test_fraction / (1.0 - test_fraction)))

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


# ---------------------------------------------------------------------------------------------------------
# .npz files


def _npz_targets(y: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, bool]:
    """Return the targets converted, and whether they are class labels."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        if len(y) and y.min() < 0:
            raise DataError(f"{key} in {path} has negative labels; store class labels as 0, 1, 2, ...")
        return y.astype(np.int64), True
    if y.ndim in (1, 2) and y.dtype.kind in "biuf":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"{key} in {path} contains NaN or Inf; remove or fill those rows.")
        return y, False
    raise DataError(
        f"{key} in {path} has dtype {y.dtype} and shape {y.shape}; store integer class labels of shape (n,) "
        "or float targets of shape (n,) or (n, k)."
    )


def _npz_features(X: np.ndarray, key: str, path: Path) -> np.ndarray:
    # Values too large for float32 become Inf in the cast and are reported as such.
    with np.errstate(over="ignore"):
        return check_features(X, None, np.float32, name=f"{key} in {path}")


def _load_npz(path: Path) -> Dataset:
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        # ValueError covers object arrays, which would need pickle, and non-.npz content.
        raise DataError(f"{path} is not a readable .npz of plain arrays ({err}); re-save it with numpy.savez.") from err
    if arrays is None:  # np.load gave one array: the file is .npy content under an .npz name
        raise DataError(
            f"{path} holds a single .npy array, not an .npz archive; save the splits by name with "
            "np.savez(path, X_train=..., y_train=...)."
        )
    missing = [key for key in ("X_train", "y_train") if key not in arrays]
    if missing or (("X_test" in arrays) != ("y_test" in arrays)):
        raise DataError(
            f"{path} holds {sorted(arrays)}; it needs X_train and y_train, plus X_test and y_test together "
            "or neither, so re-save it with those keys."
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
                f"The test split in {path} (X {X_test.shape}, y {y_test.dtype} {y_test.shape}) does not "
                f"match the training split (X {X_train.shape}, y {y_train.dtype} {y_train.shape}); re-save "
                "them with the same columns and target kind."
            )
        splits.append(("X_test", X_test, "y_test", y_test))
    for xkey, X, ykey, y in splits:
        if len(X) != len(y):
            raise DataError(f"{path} has {len(X)} rows in {xkey} but {len(y)} in {ykey}; re-save them paired.")
    n_classes = 0
    if labels:
        n_classes = int(max(y.max(initial=-1) for _, _, _, y in splits)) + 1
    return Dataset(path.stem, X_train, y_train, X_test, y_test, n_classes, str(path))


# ---------------------------------------------------------------------------------------------------------
# Entry point


def _check_kwargs(what: str, kwargs: dict, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        accepted = ", ".join(allowed) if allowed else "none"
        raise ConfigError(f"{what} takes no option {', '.join(extra)}; use only these: {accepted}.")


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 0,
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
        If the files found are corrupt or inconsistent, or an existing path is neither a .npz file nor a
        folder.
    ConfigError
        If the name is unknown, an option does not apply or is out of range, or ``seed`` is negative.

    Warns
    -----
    DataFolderWarning
        When a folder searched for a named set exists but lacks some of its files (it is passed over).
    """
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    text = os.fspath(name_or_path)
    key = text.strip().lower().replace("_", "-")
    if key in ("mnist", "fashion-mnist"):
        _check_kwargs(key, kwargs, ())
        return _load_named_images(key, cache_dir, download)
    if key == "digits":
        _check_kwargs(key, kwargs, ("test_fraction",))
        return _load_digits(seed, **kwargs)  # type: ignore[arg-type]
    if key == "synthetic" or key.startswith("synthetic:"):
        options: dict = {}
        if key != "synthetic":
            match = _SYNTHETIC_RE.fullmatch(key)
            if match is None:
                raise ConfigError(
                    f"Cannot read {text!r} as a synthetic dataset; write synthetic:NxD or synthetic:NxDxC, "
                    "e.g. synthetic:60000x784."
                )
            options = {"n_samples": int(match[1]), "n_features": int(match[2])}
            if match[3]:
                options["n_classes"] = int(match[3])
        _check_kwargs("synthetic", kwargs, ("n_samples", "n_features", "n_classes", "test_fraction"))
        return make_synthetic(**{**options, **kwargs}, seed=seed)
    path = Path(text).expanduser()
    if path.is_dir():
        _check_kwargs("an MNIST-layout folder", kwargs, ())
        return load_mnist_folder(path)
    is_npz = path.suffix.lower() == ".npz"
    if is_npz and path.is_file():
        _check_kwargs("a .npz file", kwargs, ())
        return _load_npz(path)
    if path.exists():
        raise DataError(
            f"{path} is neither a .npz file nor a folder of MNIST-layout files; pass one of those or a "
            f"dataset name ({', '.join(DATASET_NAMES)})."
        )
    if is_npz or os.sep in text or (os.altsep and os.altsep in text):
        raise DatasetNotFound(
            f"{path} does not exist; check the path, or pass a dataset name ({', '.join(DATASET_NAMES)}), "
            "a .npz file or a folder of MNIST-layout files."
        )
    raise ConfigError(
        f"Unknown dataset {text!r}; use one of {', '.join(DATASET_NAMES)}, synthetic:NxD[xC], a .npz file "
        "or a folder of MNIST-layout files."
    )
