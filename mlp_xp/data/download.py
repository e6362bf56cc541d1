"""Named image datasets (MNIST, Fashion-MNIST): where they are looked for, and their download.

A named set is looked for, in order, in ``$MLP_XP_DATA/<name>/``, in the cache folder ``<cache>/<name>/``
(see :func:`default_cache_dir`), in the system folders of :data:`SYSTEM_DATA_DIRS` (Debian's
``dataset-fashion-mnist`` package), and is finally downloaded into the cache, each file checked against a
SHA-256 pinned below.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
import warnings
from pathlib import Path

from ..errors import DatasetNotFound
from ..files import atomic_writer, cache_root
from .dataset import Dataset
from .folders import MNIST_FILES, _missing_files, load_mnist_folder

__all__ = ["SYSTEM_DATA_DIRS", "DataFolderWarning", "default_cache_dir"]

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


class DataFolderWarning(UserWarning):
    """A folder searched for a named dataset exists but lacks some of its files, so it was passed over."""


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


def _fetch_url(url: str, timeout: float) -> bytes:
    """Return the body of ``url``; the one function that touches the network, so tests replace it."""
    request = urllib.request.Request(url, headers={"User-Agent": "mlp_xp"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _made_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what ``mkdir(parents=True)``
    is about to make."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def _download(name: str, folder: Path) -> None:
    """Fetch into ``folder`` each file it lacks, from the first mirror that serves the pinned bytes.

    Raises OSError with the reason when some file could not be had from any mirror. A failed or interrupted
    attempt removes the folders it made that it left empty (the cache folder of a first download that found
    no mirror, for instance), and nothing else: a file fetched and verified before the failure stays, for the
    next attempt to complete, and what was there before stays as it was.
    """
    made = _made_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _fetch_missing(name, folder)
    except BaseException:
        for path in made:  # deepest first; rmdir removes a folder only while it is empty
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _fetch_missing(name: str, folder: Path) -> None:
    for stem in _missing_files(folder):
        filename = f"{stem}.gz"
        failures = []
        for base in _MIRRORS[name]:
            url = base + filename
            try:
                body = _fetch_url(url, _DOWNLOAD_TIMEOUT_S)
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"{url} failed with {err}")
                continue
            digest = hashlib.sha256(body).hexdigest()
            if digest not in _SHA256[name][filename]:
                failures.append(f"{url} sent SHA-256 {digest[:12]}..., which does not match the pinned value")
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


def load_named_images(
    name: str, cache_dir: str | os.PathLike[str] | None, download: bool, classes: int | None = None
) -> Dataset:
    cache = default_cache_dir(cache_dir)
    looked = []
    # A folder missing some files is passed over with a warning rather than an error: the cache one may
    # hold an interrupted download, which the download step below completes, and a later folder may be whole.
    for folder in _candidate_folders(name, cache):
        if folder.is_dir():
            missing = _missing_files(folder)
            if not missing:
                return load_mnist_folder(folder, name=name, classes=classes)
            if download and folder == cache / name:
                fix = "the missing files are downloaded into it unless a later folder holds the whole set"
            else:
                fix = "add those files there, or remove the folder"
            warnings.warn(
                f"skipping {folder} while looking for {name!r} because it lacks {', '.join(missing)} "
                f"(raw or .gz): {fix}",
                DataFolderWarning,
                stacklevel=3,  # the caller of load_dataset, which calls this directly
            )
        looked.append(str(folder))
    why = "downloading is off"
    if download:
        try:
            _download(name, cache / name)
        except OSError as err:
            why = f"downloading failed ({err})"
        else:
            return load_mnist_folder(cache / name, name=name, classes=classes)
    hints = [f"put the four files {', '.join(MNIST_FILES)} (raw or .gz) in {cache / name}"]
    if name in _APT_PACKAGES:
        hints.insert(0, f"run `apt-get install {_APT_PACKAGES[name]}`")
    hints += [
        f"set MLP_XP_DATA to a folder holding {name}/",
        "pass the folder's path as the dataset name (mlp-xp train --data DIR)",
    ]
    raise DatasetNotFound(f"dataset {name!r} is not in {', '.join(looked)} and {why}: {', or '.join(hints)}")
