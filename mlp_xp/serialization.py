"""Model files: plain arrays plus JSON metadata in one .npz, never a pickle.

Layout: named arrays (for an MLP: ``W1, b1, ..., WL, bL``, each W_l stored as (fan_in, fan_out)) and
``metadata``, a uint8 array of UTF-8 JSON holding the format name and version and the architecture. Files are
written to a temporary name and renamed into place, so a crash leaves the old file or the new one, never
half of one. A file holds no time, host or path: the same model gives the same bytes. This module knows the
file format only; :meth:`mlp_xp.MLP.save` and :meth:`mlp_xp.MLP.load` map a model onto it.

Compatibility: this mlp_xp reads every format version up to :data:`FORMAT_VERSION` (each older one converted
on loading by its entry in ``_UPGRADES``, so that a change of the layout bumps the version and keeps the previous
one loadable), and refuses a file of a newer version, which only a newer mlp_xp can read, asking for an
upgrade. Version 1 is the first and so far the only one: ``format_version`` has been 1 since model files
existed, and any other value below it (0, a negative number, a non-integer) is corrupt metadata.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable

import numpy as np

from .errors import ModelFileError, flags_spelled, install_hint
from .files import SNIFF, atomic_writer, file_kind, is_numpy_file, special_file

FORMAT = "mlp_xp.model"
FORMAT_VERSION = 1
#: For each older format version that :func:`load_arrays` reads, how its (metadata, arrays) become the next
#: version's (with ``format_version`` raised); none yet, as version 1 is the first.
_UPGRADES: dict[int, Callable[[dict, dict[str, np.ndarray]], tuple[dict, dict[str, np.ndarray]]]] = {}
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


_SAVED_BY = "give a file written by MLP.save or mlp-xp train --save"


def _what_it_is(path: str, head: bytes) -> str:
    """The message for a file that is not a zip archive (nor a .npy array), from its first bytes."""
    tag, kind = file_kind(head)
    if tag == "empty":
        return f"{path!r} {kind}, not an mlp_xp model file: save the model again, or copy the whole file"
    if tag == "gzip":
        return (
            f"{path!r} {kind}, not an mlp_xp model file (an .npz archive): decompress it (gunzip) and "
            "give the file inside, or give a file written by MLP.save or mlp-xp train --save"
        )
    if tag == "pickle":
        return f"{path!r} {kind}, which mlp_xp never loads (it is not a model file): {_SAVED_BY}"
    if tag == "text":
        return f"{path!r} {kind}, not an mlp_xp model file (a binary .npz archive): {_SAVED_BY}"
    return f"{path!r} {kind}, not an mlp_xp model file (an .npz archive, which begins 50 4b): {_SAVED_BY}"


def _readable() -> list[int]:
    """The format versions :func:`load_arrays` reads: the current one and each one it can convert."""
    return sorted({FORMAT_VERSION, *_UPGRADES})


def _versions() -> str:
    known = _readable()
    return f"version{'s' if len(known) > 1 else ''} {', '.join(map(str, known))}"


def _check_version(path: str, meta: dict, arrays: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    version = meta.get("format_version")
    known = isinstance(version, int) and not isinstance(version, bool)
    if known and version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} was written by a newer mlp_xp (model format version {version}; this one reads "
            f"{_versions()}): upgrade mlp_xp (pip install --upgrade mlp-xp) to load it"
        )
    if not known or version not in _readable():
        raise ModelFileError(
            f"{path!r} has model format version {version!r}, which no mlp_xp ever wrote (this one reads "
            f"{_versions()}), so its metadata are corrupt: save the model again"
        )
    while version in _UPGRADES:  # an older version: convert it, one version at a time
        meta, arrays = _UPGRADES[version](meta, arrays)
        version = meta["format_version"]
    return meta, arrays


def load_arrays(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a file written by :func:`save_arrays`, with pickles refused and the
    format and version checked; anything unreadable is a :class:`ModelFileError` saying what the file is
    and what to do.

    A file of an older format version that this mlp_xp reads comes back converted to the current one (see
    the module's compatibility policy); a newer version is refused with a request to upgrade mlp_xp."""
    path = os.fspath(path)
    if os.path.isdir(path):
        try:
            inside = sorted(name for name in os.listdir(path) if name.lower().endswith(".npz"))[:3]
        except OSError:
            inside = []
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise ModelFileError(
            f"{path!r} is a folder{hint}, not a model file: give the path of the model file itself, the one "
            "MLP.save or mlp-xp train --save wrote"
        )
    if not os.path.isfile(path):
        special = special_file(path)
        if special:
            raise ModelFileError(f"{path!r} is {special}, not a model file: give the path of a model file")
        raise ModelFileError(f"model file {path!r} does not exist: check the path")
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF)
    except OSError as e:
        raise ModelFileError(
            f"model file {path!r} cannot be read ({e.strerror or e}): check that it is a file you may read"
        ) from None
    if not is_numpy_file(head):
        raise ModelFileError(_what_it_is(path, head))
    try:
        loaded = np.load(path, allow_pickle=False)
    except zipfile.BadZipFile as e:
        raise ModelFileError(
            f"{path!r} begins like a zip archive (.npz) but is truncated or damaged ({e}; a cut-off download or "
            "copy leaves such a file): copy the whole file again, or save the model again"
        ) from None
    except (EOFError, OSError, ValueError) as e:
        if "allow_pickle" in str(e):
            raise ModelFileError(
                f"{path!r} is a .npy file of pickled objects, which mlp_xp never loads, not a model file: {_SAVED_BY}"
            ) from None
        raise ModelFileError(
            f"{path!r} is a truncated or damaged NumPy file ({e}), not a readable model file: save the model again"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
        raise ModelFileError(
            f"{path!r} holds a single NumPy array, not an mlp_xp model archive: save the model "
            "with MLP.save or mlp-xp train --save"
        )
    try:
        with loaded as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise ModelFileError(f"{path!r} holds a damaged array ({e}): save the model again") from None
        raise ModelFileError(
            f"{path!r} is an .npz archive holding pickled (object) arrays, which mlp_xp never loads and never "
            f"writes, so it is not an mlp_xp model file: {_SAVED_BY}"
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ModelFileError(
            f"{path!r} is a damaged .npz archive ({e}; an entry is cut off or fails its checksum): copy the whole "
            "file again, or save the model again"
        ) from None
    metadata = arrays.pop("metadata", None)
    if not isinstance(metadata, np.ndarray):
        raise ModelFileError(
            f"{path!r} is an .npz archive without an mlp_xp metadata entry, so it is not an mlp_xp model file: "
            f"{_SAVED_BY}"
        )
    try:
        meta = json.loads(metadata.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path!r} has corrupt metadata ({e}): save the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        if found == "mlp_xp.checkpoint":
            go_on = (
                "mlp-xp train --checkpoint DIR --resume, or give the file mlp-xp train --save wrote"
                if flags_spelled()
                else "fit(..., checkpoint=DIR, resume=True), or give a file MLP.save wrote"
            )
            raise ModelFileError(f"{path!r} is a training checkpoint, not a model file: go on with its run by {go_on}")
        raise ModelFileError(
            f"{path!r} is not an mlp_xp model file (its metadata give the format {found!r}, not {FORMAT!r}): "
            f"{_SAVED_BY}"
        )
    return _check_version(path, meta, arrays)


# ---- safetensors: the same model, laid out as PyTorch holds an nn.Sequential of nn.Linear layers ----
SAFETENSORS_SUFFIX = ".safetensors"


def is_safetensors(path) -> bool:
    """Whether ``path`` names a safetensors file (by its suffix; a file that exists is also told by its header:
    8 bytes of little-endian header length, then a JSON object)."""
    path = os.fspath(path)
    if path.lower().endswith(SAFETENSORS_SUFFIX):
        return True
    if not os.path.isfile(path):  # (opening a FIFO to look would wait for a writer)
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100 << 20


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ModelFileError(
            f"safetensors files need the safetensors package: {install_hint('safetensors')}; or save as .npz"
        ) from None
    return safetensors


def sequential_names(n_layers: int) -> list[tuple[str, str]]:
    """The state_dict keys of layer l's weight and bias in ``nn.Sequential(Linear, act, Linear, act, ..., Linear)``:
    the Linear layers sit at the even indices 0, 2, 4, ..."""
    return [(f"{2 * l}.weight", f"{2 * l}.bias") for l in range(n_layers)]


def save_safetensors(path, metadata: dict, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the layers' (W, b), W as (fan_in, fan_out), as nn.Linear holds them (weight (out, in), bias (out,)),
    with the metadata as JSON in the header, atomically. The same model gives the same bytes."""
    st = _safetensors()
    tensors = {}
    for (wname, bname), (W, b) in zip(sequential_names(len(layers)), layers, strict=True):
        tensors[wname] = np.ascontiguousarray(np.asarray(W).T)
        tensors[bname] = np.ascontiguousarray(b)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    data = st.numpy.save(tensors, metadata={"mlp_xp": json.dumps(meta, sort_keys=True)})
    with atomic_writer(path) as f:
        f.write(data)


def load_safetensors(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and the ``W1, b1, ...`` arrays (W as (fan_in, fan_out)) of a file :func:`save_safetensors`
    wrote; a :class:`ModelFileError` saying what to do for anything else."""
    st = _safetensors()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist: check the path")
    try:
        with st.safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has keys(), not iteration
    except Exception as e:  # safetensors raises its own SafetensorError for a damaged file
        raise ModelFileError(f"{path!r} is not a readable safetensors file ({e}): save the model again") from None
    if "mlp_xp" not in header:
        raise ModelFileError(
            f"{path!r} is a safetensors file without mlp_xp's metadata: give a file written by MLP.save or "
            "mlp-xp train --save"
        )
    try:
        meta = json.loads(header["mlp_xp"])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path!r} has corrupt metadata ({e}): save the model again") from None
    arrays = {}
    for l, (wname, bname) in enumerate(sequential_names(len(tensors) // 2), start=1):
        if wname not in tensors or bname not in tensors:
            raise ModelFileError(f"{path!r} lacks {wname} or {bname}: the file is corrupt, save the model again")
        arrays[f"W{l}"], arrays[f"b{l}"] = np.ascontiguousarray(tensors[wname].T), tensors[bname]
    return _check_version(path, meta, arrays)
