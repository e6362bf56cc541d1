"""Files written whole or not at all: every file mlp_xp writes goes through :func:`atomic_writer`."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` and move it onto ``path`` only if the block succeeds.

    Readers therefore never see a half-written file, and a failure leaves nothing behind (an existing file at
    ``path`` stays as it was). A symbolic link stays one: the file it points to is replaced. A device, pipe or
    socket is refused (OSError, EINVAL), not replaced by a file. ``durable``: the data reach the disk before the
    file takes the name (fsync); without it a power cut may lose the newest version, never the old one's name to a
    half-written file on the filesystems that order a rename after the data (ext4's default, xfs).
    """
    path = write_target(path)
    if path.name in ("", ".", "..") or path.is_dir():  # (named for the folder, before anything is written)
        why = "is a folder, not a file: name a file in it"
        raise IsADirectoryError(errno.EISDIR, why, str(path))
    special = special_file(path)
    if special:  # (a rename would put a file in place of the device or pipe itself)
        raise OSError(errno.EINVAL, f"is {special}, not a file: name a regular file", str(path))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 honours the umask, unlike tempfile's 0o600, so the result is shareable.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:  # named for the file asked for, not for the temporary one nobody asked for
        if isinstance(e, FileNotFoundError) and not path.parent.is_dir():
            why = f"there is no folder {str(path.parent)!r} to write it in: make the folder first"
            raise FileNotFoundError(errno.ENOENT, why, str(path)) from None
        raise type(e)(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_target(path: str | os.PathLike[str]) -> Path:
    """The path a write to ``path`` replaces: the file a symbolic link points to (so that the link stays), else
    ``path`` itself."""
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:  # (realpath would give the link back, and the write would replace it)
            raise OSError(errno.ELOOP, "is a loop of symbolic links: name a file", str(path)) from None
    return Path(os.path.realpath(path))


def special_file(path: str | os.PathLike[str]) -> str | None:
    """What an existing ``path`` is where it is neither a regular file nor a folder ("a character device", "a named
    pipe (FIFO)", ...); None for those, and for a path that does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((what for test, what in kinds if test(mode)), None)


#: How many bytes of a file's start are read to say what it is (:func:`file_kind`).
SNIFF = 512


def file_kind(head: bytes) -> tuple[str, str]:
    """What a file that should have been a NumPy archive is instead, from its first bytes: its kind ("empty",
    "gzip", "pickle", "text" or "binary", for a caller's own advice) and what follows its name in a message: "is
    empty (0 bytes)", "is gzip-compressed", "is a Python pickle", "is a text file (it begins 'x,y')", or "holds
    binary data of an unknown kind (it begins 00 01 ...)"."""
    if not head:
        return "empty", "is empty (0 bytes)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip", "is gzip-compressed"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle", "is a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut off at the end of the sample is still text
        text = head[: e.start].decode("utf-8") if e.start >= len(head) - 3 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n\f" for c in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return "text", f"is a text file (it begins {first!r})"
    return "binary", f"holds binary data of an unknown kind (it begins {head[:8].hex(' ')})"


def not_an_archive(path) -> str | None:
    """What the file at ``path`` is, by :func:`file_kind`, when it is neither a zip archive (.npz) nor a .npy
    array; None when it is one of those, or cannot be read (np.load then says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF)
    except OSError:
        return None
    return None if is_numpy_file(head) else file_kind(head)[1]


def is_numpy_file(head: bytes) -> bool:
    """Whether a file beginning with ``head`` is a zip archive (.npz) or a .npy array, by their magic bytes."""
    return head[:2] == b"PK" or head.startswith(b"\x93NUMPY")


def write_refused(folder, *, as_folder: bool = False) -> str | None:
    """Why a file (``as_folder``: a folder) cannot be made in the existing ``folder`` (its strerror), found by making
    one as the outputs are written (a file beside the target, then renamed); None when it can. ``os.access`` says
    yes to root everywhere, while a read-only mount, /proc or /sys refuse anyway."""
    try:
        if as_folder:
            os.rmdir(tempfile.mkdtemp(prefix=".mlp_xp-probe-", dir=folder))
            return None
        fd, probe = tempfile.mkstemp(prefix=".mlp_xp-probe-", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(probe)
    return None


def check_folder_to_write(folder, setting: str, purpose: str) -> None:
    """Before any work: ``folder`` (given as setting ``setting``, e.g. "checkpoint") can be made or written into,
    for ``purpose`` ("the logs"). It, and folders above it, need not exist yet; the nearest one that does must be a
    writable folder."""
    from .errors import ConfigError, setting_name, spell

    if not str(folder).strip():
        raise ConfigError(f"{setting_name(setting)} is empty: give a folder, or leave {setting_name(setting)} out")
    given = spell(setting, str(folder))  # "--checkpoint ckd" on the command line, "checkpoint='ckd'" in Python
    path = os.path.abspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{given} is a file, not a folder: give a folder for {purpose}")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{given}: {parent} is a file, not a folder: give a folder for {purpose}")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{given}: {parent} is not writable: give a folder you can write to")
    refused = write_refused(parent, as_folder=True)
    if refused:
        raise ConfigError(f"{given}: cannot make a folder in {parent} ({refused}): give a folder you can write to")


def cache_root() -> Path:
    """mlp_xp's cache folder (downloads, compiled CPU kernels): ``$MLP_XP_CACHE``, else
    ``$XDG_CACHE_HOME/mlp_xp``, else ``~/.cache/mlp_xp``. Not created here."""
    # An empty variable counts as unset, as the XDG specification says for XDG_CACHE_HOME.
    if os.environ.get("MLP_XP_CACHE"):
        return Path(os.environ["MLP_XP_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mlp_xp"
    return Path.home() / ".cache" / "mlp_xp"


def write_json_atomic(path: str | os.PathLike[str], obj) -> None:
    """``obj`` as indented JSON at ``path``, whole or not at all."""
    with atomic_writer(path) as f:
        f.write(json.dumps(obj, indent=1).encode())
