"""A training run's checkpoint: everything the run needs to go on from a step boundary, as plain arrays and JSON.

One file per checkpoint folder, ``checkpoint.npz`` (an ``.npz`` of plain arrays and a JSON ``metadata`` entry,
never pickles; loadable on either backend), replaced atomically each time: a crash at any moment, ``kill -9``
included, leaves the previous checkpoint or the new one, whole. It holds the parameters, the optimizer's state
(velocity, Adam's moments and step count), the position in the run (epoch, step, the epoch's partial sums),
the history so far, the divergence guard's and early stopping's weights and counters, the settings, the
model's architecture, and a fingerprint of the data. A resume from it on the same machine and build (the
reproducibility contract of ARCHITECTURE.md) ends with the same model, bit for bit, as the run that was not
interrupted.

A resume is refused, in one line naming what differs, when the data, the architecture or a setting that
changes the math differ. What may change is :data:`MAY_CHANGE`: the number of epochs (schedules that depend on
the total follow the new total), verbosity, the checkpointing itself, what to do on divergence; the device
may change too (the model is built there), and then bit-identity is not promised.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelFileError, flags_spelled, setting_name, spell, spell_without
from .files import check_folder_to_write, not_an_archive
from .serialization import save_arrays
from .validation import is_sparse

FILE = "checkpoint.npz"
FORMAT = "mlp_xp.checkpoint"
FORMAT_VERSION = 1
#: The training settings a resume may change.
MAY_CHANGE = frozenset(
    {
        "epochs",
        "verbose",
        "checkpoint",
        "checkpoint_every",
        "checkpoint_minutes",
        "resume",
        "on_divergence",
        "cuda_graph",
    }
)


def fingerprint(arrays) -> str:
    """A hash of the arrays' dtypes, shapes and bytes (the data a run trains and is scored on): of a sparse
    matrix, its stored values and structure (NumPy would make it an array of one object, hashed by address)."""
    h = hashlib.sha256()  # SHA-256: hardware-accelerated on current CPUs, about 1.4 GB/s here
    for a in _expanded(arrays):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _expanded(arrays):
    for a in arrays:
        if is_sparse(a):  # (as CSR, whatever its format: the same matrix, the same hash; a CSR one is as it is)
            a = a.tocsr()
            yield from (a.data, a.indices, a.indptr, np.asarray(a.shape))
        else:
            yield a


def path_in(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / FILE


def check_folder(folder: str | os.PathLike[str], resume: bool) -> None:
    """Before any data are read: the folder can hold a checkpoint (it, and folders above it, may not exist yet);
    with ``resume`` it holds one, and without it holds none (a new run must not replace a run's checkpoint)."""
    check_folder_to_write(folder, "checkpoint", "the checkpoint")
    if resume and not path_in(folder).is_file():
        raise ConfigError(
            f"{spell('resume')}: there is no checkpoint in {folder} ({FILE}): start the run {spell_without('resume')}"
            f"{', with ' if flags_spelled() else ' and '}{spell('checkpoint', str(folder))}"
        )
    if not resume and path_in(folder).is_file():
        try:  # all of it, as --resume would: a damaged array past the metadata must not be sent to --resume
            read(folder)
        except ModelFileError as e:  # (damaged, another program's file, another version: not --resume here)
            said = getattr(e, "without_resume", None)
            if said is not None:  # (None: the file went meanwhile, and the run can start)
                raise ConfigError(f"{spell('checkpoint', str(folder))} holds {FILE}, {said}") from None
            return
        raise ConfigError(
            f"{spell('checkpoint', str(folder))} holds the checkpoint of another run, which a new run would replace: "
            f"go on from it with {spell('resume')}, or give another folder (or delete it)"
        )


def write(folder: str | os.PathLike[str], meta: dict, arrays: dict, *, durable: bool) -> Path:
    """Write the checkpoint into ``folder`` (made if missing), replacing the previous one atomically."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = path_in(folder)
    for stale in Path(folder).glob(f".{FILE}.*.tmp"):  # what a kill -9 during an earlier write left
        stale.unlink(missing_ok=True)
    save_arrays(path, meta, arrays, fmt=FORMAT, version=FORMAT_VERSION, durable=durable)
    return path


def read(folder: str | os.PathLike[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of the checkpoint in ``folder``; a :class:`ModelFileError` saying what to do if
    it is missing, unreadable or of another format (its ``without_resume``: what :func:`check_folder` says)."""
    path = path_in(folder)
    readable = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelFileError(f"there is no checkpoint in {folder}: start the run {spell_without('resume')}") from None
    except readable as e:
        # (what the file is, where its first bytes tell: NumPy takes any other file for pickled data)
        kind = not_an_archive(path)
        if kind is None:  # (it begins as an archive does: NumPy's advice to unpickle it does not apply)
            kind = "is not an .npz archive" if "pickle" in str(e) else f"cannot be read ({type(e).__name__}: {e})"
        raise _unusable(path, f"not a readable checkpoint: it {kind}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # one .npy array under the checkpoint's name
        raise _unusable(path, "not an mlp_xp checkpoint: it holds one array, not an archive")
    try:
        with z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("metadata").tobytes().decode())
    except readable as e:
        raise _unusable(path, f"not a readable checkpoint: it cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _unusable(path, "not an mlp_xp checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version")
        e = ModelFileError(
            f"{path} is a checkpoint of format version {version}; this mlp_xp reads version {FORMAT_VERSION}: "
            "resume it with the mlp_xp that wrote it, or start the run again"
        )
        e.without_resume = (
            f"a checkpoint of format version {version}, which this mlp_xp cannot resume and a new run would "
            "replace: resume it with the mlp_xp that wrote it, or give another folder"
        )
        raise e
    return meta, arrays


def _unusable(path: Path, reason: str) -> ModelFileError:
    """A file under the checkpoint's name that no run can go on from (damaged, or not a checkpoint)."""
    e = ModelFileError(
        f"{path} is {reason}, so no run can go on from it: delete it, or give another {setting_name('checkpoint')} "
        f"folder, and start the run {spell_without('resume')}"
    )
    e.without_resume = f"which cannot be resumed ({reason}): delete it, or give another folder"
    return e


def differences(saved: dict, now: dict, what: str) -> list[str]:
    """The settings of ``what`` that differ between a checkpoint's and this run's, as "name: a -> b"."""
    keys = sorted(set(saved) | set(now))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def _may_change_text() -> str:
    """What the refusals say may change: MAY_CHANGE as the caller spells it (the command line's --quiet is
    Python's verbose), and what is not a setting."""
    names = ["epochs", "checkpoint_every", "checkpoint_minutes", "on_divergence", "cuda_graph"]
    names.append("quiet" if flags_spelled() else "verbose")
    return f"{', '.join(map(setting_name, names))}, the output paths and the device"


#: Settings added after checkpoints existed, with the value every run before them had.
_NEWER_SETTINGS = {"shuffle": True}


def check_settings(meta: dict, settings: dict, model: dict) -> list[str]:
    """Refuse a resume whose model or math differ from the checkpoint's, or that would stop before the epochs the
    checkpoint has done; return the allowed changes (as "epochs: 20 -> 30"). ``model`` may leave out what only
    the data tell (the input and output widths of ``sizes``): then the hidden widths are compared."""
    saved_model, model = dict(meta["model"]), dict(model)
    if "sizes" in model and len(model["sizes"]) and model["sizes"][0] is None:
        # (said as the flag that sets them: "hidden: [256] -> [128]", not sizes with unknown ends)
        saved_model["hidden"], model["hidden"] = list(saved_model.pop("sizes")[1:-1]), list(model.pop("sizes")[1:-1])
    changed = differences(saved_model, model, "model")
    if changed:
        raise ConfigError(
            f"{spell('resume')}: the model differs from the checkpoint's ({'; '.join(changed)}): use the same model"
        )
    # a setting newer than the checkpoint is taken at its default, which is what the older runs did
    saved = {**{k: v for k, v in _NEWER_SETTINGS.items() if k in settings}, **meta["settings"]}
    changed = differences(
        {k: v for k, v in saved.items() if k not in MAY_CHANGE},
        {k: v for k, v in settings.items() if k not in MAY_CHANGE},
        "settings",
    )
    if changed:
        raise ConfigError(
            f"{spell('resume')}: settings that change the math differ from the checkpoint's ({'; '.join(changed)}): "
            f"resume with the same settings (only {_may_change_text()} may change)"
        )
    done = len(meta["history"]["records"])
    needed = done + (1 if meta["next_step"] else 0)  # a checkpoint inside an epoch needs that epoch too
    if settings["epochs"] < needed:
        raise ConfigError(
            f"{spell('resume')}: the checkpoint's run has done {done} epochs"
            + (f" and part of epoch {done + 1}" if meta["next_step"] else "")
            + f", more than {spell('epochs', settings['epochs'])}: give {spell('epochs', needed)} or more"
        )
    return differences({"epochs": meta["settings"].get("epochs")}, {"epochs": settings.get("epochs")}, "settings")


def check_resumable(meta: dict, settings: dict, model: dict, data: dict, source: dict | None = None) -> list[str]:
    """Refuse a resume whose data, model or math differ from the checkpoint's; return the allowed changes.
    ``source`` (the dataset's name and data seed, where the command line knows them) names what differs."""
    saved = meta["data"] if isinstance(meta["data"], dict) else {}
    differ = [name for name in data if saved.get(name) != data[name]]
    if differ:
        then, now = meta.get("source") or {}, source or {}
        named = differences(then, now, "data") if then and now else []
        said = "; ".join(named) if named else "another dataset, data seed, validation split or scaling?"
        raise ConfigError(
            f"{spell('resume')}: the {', '.join(differ)} differ from those of the run the checkpoint was made by "
            f"({said}): resume with the same data, or start a new run"
        )
    return check_settings(meta, settings, model)
