"""Model files: plain arrays plus JSON metadata in one .npz, never a pickle.

Layout: named arrays (for an MLP: ``W1, b1, ..., WL, bL``, each W_l stored as (fan_in, fan_out)) and
``metadata``, a uint8 array of UTF-8 JSON holding the format name and version and the architecture. Files are
written to a temporary name and renamed into place, so a crash leaves the old file or the new one, never
half of one. A file holds no time, host or path: the same model gives the same bytes. This module knows the
file format only; :meth:`mlp_xp.MLP.save` and :meth:`mlp_xp.MLP.load` map a model onto it.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .errors import ModelFileError
from .files import atomic_writer

FORMAT = "mlp_xp.model"
FORMAT_VERSION = 1
# The earliest time a zip entry can hold: every entry gets it, so that the bytes do not depend on the clock.
_NO_TIME = (1980, 1, 1, 0, 0, 0)


def save_arrays(
    path,
    metadata: dict,
    arrays: dict[str, np.ndarray],
    *,
    fmt: str = FORMAT,
    version: int = FORMAT_VERSION,
    durable: bool = True,
) -> None:
    """Write ``arrays`` and ``metadata`` (plus the format name and version) to ``path``, atomically.

    The file is a plain .npz that ``numpy.load`` reads, written so that the same arrays and metadata give the
    same bytes: no timestamp in the archive (numpy.savez stores the time of writing), keys in sorted order."""
    path = os.fspath(path)
    meta = {"format": fmt, "format_version": version, **metadata}
    entries = {**arrays, "metadata": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    with atomic_writer(path, durable=durable) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_NO_TIME)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(entries[name]), allow_pickle=False)


def load_arrays(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a file written by :func:`save_arrays`, with pickles refused and the
    format and version checked; anything unreadable is a :class:`ModelFileError` saying what to do."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelFileError(f"{path!r} is a folder, not a model file: give the file mlp-xp train --save wrote")
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist: check the path")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] != b"PK" and magic != b"\x93NUMPY":  # neither a zip archive (.npz) nor a .npy array
        raise ModelFileError(
            f"{path!r} is not an mlp_xp model file (not an .npz archive): give a file written by MLP.save or "
            "mlp-xp train --save"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ModelFileError(
            f"{path!r} is not a readable mlp_xp model file (truncated or corrupt: {e}): save the model again"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
        raise ModelFileError(
            f"{path!r} holds a single NumPy array, not an mlp_xp model archive: save the model "
            "with MLP.save or mlp-xp train --save"
        )
    try:
        with loaded as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        # (a ValueError here is an entry that holds pickled objects, which mlp_xp never loads)
        raise ModelFileError(
            f"{path!r} is not a readable mlp_xp model file (truncated, corrupt or holding pickled objects: {e}): "
            "save the model again"
        ) from None
    if "metadata" not in arrays:
        raise ModelFileError(
            f"{path!r} has no metadata entry, so it is not an mlp_xp model file: "
            "save it with MLP.save or mlp-xp train --save"
        )
    try:
        meta = json.loads(arrays.pop("metadata").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path!r} has corrupt metadata ({e}): save the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path!r} is not an mlp_xp model file (format {meta.get('format') if isinstance(meta, dict) else meta!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has format version {meta.get('format_version')!r}; this mlp_xp reads "
            f"version {FORMAT_VERSION}: upgrade mlp_xp or re-save the model"
        )
    return meta, arrays
