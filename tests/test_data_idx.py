"""Tests of mlp_xp.data.idx: reading and writing IDX files, raw and gzip-compressed."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mlp_xp.data import read_idx, write_idx
from mlp_xp.errors import DataError
from mlp_xp.files import atomic_writer

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """IDX bytes built by hand, independently of write_idx."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
        array.flat[:2] = info.min, info.max
    else:
        array = rng.standard_normal((3, 4, 5)).astype(dtype)
        array.flat[:2] = np.finfo(dtype).min, np.finfo(dtype).tiny
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_read_idx_known_bytes(tmp_path):
    path = tmp_path / "two-by-three"
    path.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255]))
    np.testing.assert_array_equal(read_idx(path), np.array([[1, 2, 3], [4, 5, 255]], dtype=np.uint8))

    # Multi-byte values are big-endian: 0x0102 = 258 and 0xFFFE = -2.
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    result = read_idx(path)
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, [258, -2])


def test_write_idx_exact_bytes(tmp_path):
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 255]], dtype=np.uint8))
    assert (tmp_path / "a").read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    write_idx(tmp_path / "b", np.array([1.5], dtype=np.float64))
    assert (tmp_path / "b").read_bytes() == bytes([0, 0, 0x0E, 1, 0, 0, 0, 1]) + struct.pack(">d", 1.5)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    (tmp_path / "compressed.idx").write_bytes(gzip.compress(idx_bytes(array, 0x0C)))
    (tmp_path / "plain.gz").write_bytes(idx_bytes(array, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed.idx"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not an IDX file"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]), "not an IDX file"),
        (bytes([0, 1, 8, 1, 0, 0, 0, 1, 7]), "not an IDX file"),
        (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), "unknown type code 0x0A"),
        (bytes([0, 0, 8, 0, 7]), "0 dimensions"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 1, 0, 0]), "truncated inside its header"),
    ],
)
def test_read_idx_bad_header(tmp_path, content, match):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_idx(path)


def test_read_idx_truncated_payload(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4]))
    with pytest.raises(DataError, match=r"truncated \(expected 6 bytes of data, got 4\): re-download it") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_multibyte_payload(tmp_path):
    path = tmp_path / "short.gz"
    array = np.arange(10, dtype=np.float64)
    path.write_bytes(gzip.compress(idx_bytes(array, 0x0E)[:-3]))
    with pytest.raises(DataError, match="expected 80 bytes of data, got 77"):
        read_idx(path)


@pytest.mark.parametrize(
    "dims",
    [
        (0, 2**32 - 1, 2**32 - 1, 2**32 - 1),  # 0 bytes of data declared, but NumPy cannot hold the shape
        (2**32 - 1,) * 4,
    ],
)
def test_read_idx_huge_declared_size_is_a_data_error(tmp_path, dims):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
    with pytest.raises(
        DataError, match=r"corrupt header \(its dimensions .* larger than NumPy can hold.*\): re-download"
    ):
        read_idx(path)


def test_read_idx_declared_size_checked_against_payload(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(bytes([0, 0, 8, 2]) + struct.pack(">2I", 2**20, 2**20) + b"\x00" * 10)
    with pytest.raises(DataError, match=rf"truncated \(expected {2**40} bytes of data, got 10\)"):
        read_idx(path)


def test_read_idx_zero_dimension_is_an_empty_array(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 28, 28))
    assert read_idx(path).shape == (0, 28, 28)


def test_read_idx_more_dimensions_than_numpy(tmp_path):
    path = tmp_path / "deep"
    path.write_bytes(bytes([0, 0, 8, 200]) + struct.pack(">200I", *([1] * 200)) + b"\x07")
    with pytest.raises(DataError, match="declares 200 dimensions but NumPy arrays have at most"):
        read_idx(path)


def test_read_idx_unreadable_path(tmp_path):
    with pytest.raises(DataError, match="cannot be read .*: check that the path is a readable file"):
        read_idx(tmp_path)  # a folder


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.arange(6, dtype=np.uint8), 0x08) + b"\x00\x00")
    with pytest.raises(DataError, match="2 trailing bytes"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32), 0x0C))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt gzip stream.*re-download"):
        read_idx(cut)
    flipped = bytearray(good)
    flipped[-6] ^= 0xFF  # inside the CRC-32 / length trailer
    bad_crc = tmp_path / "crc.gz"
    bad_crc.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(bad_crc)
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(garbage)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("array", [np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16), np.float32(1)])
def test_write_idx_rejects_unsupported(tmp_path, array):
    with pytest.raises(DataError):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_atomic_writer_names_the_missing_folder_and_the_file_asked_for(tmp_path):
    """``model.save("nodir/m.npz")``: the error is about nodir and m.npz, not about a temporary file's name."""
    target = tmp_path / "nodir" / "m.npz"
    with pytest.raises(FileNotFoundError) as caught, atomic_writer(target):
        pass
    assert caught.value.filename == str(target) and ".tmp" not in str(caught.value)
    assert f"there is no folder {str(tmp_path / 'nodir')!r} to write it in: make the folder first" in str(caught.value)


# ---- the magic number of MNIST's files (read_idx(magic=...), as the MNIST-layout folders read them) ----


def test_read_idx_reports_a_wrong_magic_number_as_such(tmp_path):
    from mlp_xp.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC

    images = np.zeros((2, 3, 3), np.uint8)
    path = tmp_path / "train-images-idx3-ubyte"
    # An image file whose header says 1 dimension: read by that header, its rows, cols and pixels are "trailing".
    path.write_bytes(bytes([0, 0, 8, 1]) + idx_bytes(images, 0x08)[4:])
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)
    with pytest.raises(DataError) as info:
        read_idx(path, magic=IDX_IMAGES_MAGIC)
    assert str(info.value) == (
        f"IDX file {path} has the wrong magic number 0x00000801 (uint8, 1 dimension) instead of 0x00000803 (uint8, "
        "3 dimensions), so it is not unsigned-byte images (N, rows, cols): give each file its MNIST name "
        "(0x00000801 marks a label file, so the files look swapped)"
    )
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.int32), 0x0C)))  # the magic is read after gunzip
    with pytest.raises(DataError) as info:
        read_idx(path, magic=IDX_LABELS_MAGIC)
    assert str(info.value) == (
        f"IDX file {path} has the wrong magic number 0x00000C01 (int32, 1 dimension) instead of 0x00000801 (uint8, "
        "1 dimension), so it is not a 1-D unsigned-byte label list: replace it with an MNIST-format label file "
        "(re-download it)"
    )
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="holds 2 bytes, too few for its magic number 0x00000801"):
        read_idx(path, magic=IDX_LABELS_MAGIC)
    path.write_bytes(idx_bytes(images, 0x08))
    np.testing.assert_array_equal(read_idx(path, magic=IDX_IMAGES_MAGIC), images)


def test_an_mnist_folder_reports_a_wrong_magic_number_not_trailing_bytes(tmp_path):
    from mlp_xp.data import MNIST_FILES, load_mnist_folder

    from .test_data_folders import write_mnist_folder

    folder = tmp_path / "f"
    arrays = write_mnist_folder(folder)
    # The training images written with the labels' magic number: before the fix, "... 128 trailing bytes ...".
    (folder / MNIST_FILES[0]).write_bytes(bytes([0, 0, 8, 1]) + idx_bytes(arrays[MNIST_FILES[0]], 0x08)[4:])
    with pytest.raises(DataError) as info:
        load_mnist_folder(folder)
    message = str(info.value)
    assert "trailing" not in message
    assert message.startswith(f"IDX file {folder / MNIST_FILES[0]} has the wrong magic number 0x00000801 ")
    assert "instead of 0x00000803" in message


def test_a_file_that_is_not_idx_says_how_it_starts(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match=r"it starts with 50 4b 03 04, but an IDX file starts with two zero bytes"):
        read_idx(path)
