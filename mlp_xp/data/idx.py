"""Reading and writing IDX files, the format of the MNIST and Fashion-MNIST distributions.

An IDX file is two zero bytes, a type byte, a dimension-count byte (together the magic number, e.g.
0x00000801 for MNIST's labels: unsigned bytes, one dimension), one big-endian uint32 per dimension, then the
values in C order (multi-byte values big-endian). The files are often
gzip-compressed; :func:`read_idx` recognises that from the content, not from the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_writer

__all__ = ["IDX_DTYPES", "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "write_idx"]

#: IDX type code -> dtype as stored in the file (big-endian for multi-byte types).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: The magic numbers of MNIST's files: labels are unsigned bytes in 1 dimension, images in 3.
IDX_LABELS_MAGIC, IDX_IMAGES_MAGIC = 0x00000801, 0x00000803
_MAGIC_KINDS = {
    IDX_LABELS_MAGIC: ("a 1-D unsigned-byte label list", "label"),
    IDX_IMAGES_MAGIC: ("unsigned-byte images (N, rows, cols)", "image"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1
# NumPy arrays have at most 32 dimensions before NumPy 2.0 and 64 since; an IDX header may declare 255.
_NUMPY_MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32
_NUMPY_MAX_BYTES = int(np.iinfo(np.intp).max)


def _read_payload(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist: check the path or re-download the file") from None
    except OSError as err:
        raise DataError(
            f"IDX file {path} cannot be read ({err.strerror or err}): check that the path is a readable file"
        ) from err
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        # gzip reports a cut-off stream as EOFError and a bad CRC or header as BadGzipFile (an OSError).
        raise DataError(f"IDX file {path} is a corrupt gzip stream ({err}): delete it and re-download it") from err


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = IDX_DTYPES[code].newbyteorder("=").name if code in IDX_DTYPES else f"unknown type 0x{code:02X}"
    return f"{kind}, {ndim} dimension{'s' if ndim != 1 else ''}"


def _check_magic(path: Path, data: bytes, magic: int) -> None:
    if data[:4] == magic.to_bytes(4, "big"):
        return
    kind, what = _MAGIC_KINDS.get(magic, ("an IDX file of that type and shape", "IDX"))
    if len(data) < 4:
        raise DataError(
            f"IDX file {path} holds {len(data)} bytes, too few for its magic number 0x{magic:08X} "
            f"({_describe_magic(magic)}): replace it with an MNIST-format {what} file (re-download it)"
        )
    got = int.from_bytes(data[:4], "big")
    other = _MAGIC_KINDS.get(got, (None, None))[1]
    if other is not None and other != what:
        article = "an" if other[0] in "aeiou" else "a"
        fix = f"give each file its MNIST name (0x{got:08X} marks {article} {other} file, so the files look swapped)"
    else:
        fix = f"replace it with an MNIST-format {what} file (re-download it)"
    raise DataError(
        f"IDX file {path} has the wrong magic number 0x{got:08X} ({_describe_magic(got)}) instead of "
        f"0x{magic:08X} ({_describe_magic(magic)}), so it is not {kind}: {fix}"
    )


def read_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is detected from the magic bytes ``1f 8b``, whatever the name.
    magic : int, optional
        The magic number the file must start with (the type and dimension count), e.g.
        :data:`IDX_LABELS_MAGIC` (0x00000801) or :data:`IDX_IMAGES_MAGIC` (0x00000803); any valid one when
        None. A file of another kind is then reported as such rather than by what its header misreads as.

    Returns
    -------
    numpy.ndarray
        A writable, native-endian array whose shape is the file's dimensions.

    Raises
    ------
    DataError
        If the file is missing, unreadable, a corrupt gzip stream, has a bad header (including
        dimensions too large for a NumPy array) or another magic number than ``magic``, or its payload is
        shorter or longer than the header's dimensions require.
    """
    path = Path(path)
    data = _read_payload(path)
    if magic is not None:
        _check_magic(path, data, magic)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        start = data[:4].hex(" ") or "nothing"
        raise DataError(
            f"{path} is not an IDX file (it starts with {start}, but an IDX file starts with two zero bytes): pass "
            "an MNIST-format IDX file"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(
            f"IDX file {path} has unknown type code 0x{code:02X} (known: {known}): re-download or rewrite it"
        )
    if ndim < 1:
        raise DataError(f"IDX file {path} declares 0 dimensions: rewrite it with at least one dimension")
    if ndim > _NUMPY_MAX_NDIM:
        raise DataError(
            f"IDX file {path} declares {ndim} dimensions but NumPy arrays have at most {_NUMPY_MAX_NDIM}, so its "
            "header is probably corrupt: re-download the file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {path} is truncated inside its header (expected {header} bytes, got {len(data)}): re-download it"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    # Everything below is checked with Python ints (no overflow however large a corrupt header claims to be)
    # against the bytes actually read, before NumPy allocates anything.
    expected = dtype.itemsize
    nonzero = dtype.itemsize  # what NumPy checks: a 0 dimension does not excuse the others being huge
    for d in dims:
        expected *= d
        nonzero *= max(d, 1)
    got = len(data) - header
    if nonzero > _NUMPY_MAX_BYTES:
        raise DataError(
            f"IDX file {path} has a corrupt header (its dimensions {dims} describe an array of {nonzero} bytes, "
            f"larger than NumPy can hold, for {got} bytes of data): re-download it"
        )
    if got < expected:
        raise DataError(f"IDX file {path} is truncated (expected {expected} bytes of data, got {got}): re-download it")
    if got > expected:
        found = int.from_bytes(data[:4], "big")
        declared = f"magic number 0x{found:08X}, {_describe_magic(found)}, dimensions {dims}"
        raise DataError(
            f"IDX file {path} has {got - expected} trailing bytes after the {expected} bytes of data its "
            f"header ({declared}) declares: re-download it"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # astype copies, which also makes the result writable (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file, atomically; gzip-compressed when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or path-like
        Destination. Its folder must exist. An existing file is replaced only once the new one is complete.
    array : array-like
        At least one dimension, each below 2**32, of dtype uint8, int8, int16, int32, float32 or float64.

    Raises
    ------
    DataError
        If the array has no dimensions, a dimension too large for IDX, or an unsupported dtype.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(
            f"IDX cannot store dtype {array.dtype}: convert the array to uint8, int8, int16, int32, float32 "
            "or float64 first"
        )
    # IDX allows up to 255 dimensions, more than any NumPy array has, so only the lower bound can fail.
    if array.ndim < 1:
        raise DataError("IDX needs at least one dimension but the array is a scalar: wrap it, e.g. np.atleast_1d")
    if max(array.shape) > _MAX_DIM:
        raise DataError(f"IDX dimensions must be below 2**32 but the shape is {array.shape}: split the array")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    with atomic_writer(path) as f:
        if path.name.endswith(".gz"):
            # filename="" and mtime=0 keep the temp file's name and the time out of the header,
            # so the same array always gives the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)
