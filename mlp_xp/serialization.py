"""Model files: plain arrays plus JSON metadata in one .npz, never a pickle.

Layout: ``W1, b1, ..., WL, bL`` (W_l stored as (fan_in, fan_out), the model's layout) and ``metadata``, a uint8 array of
UTF-8 JSON with the format version and the architecture. Files are written to a temporary name and
renamed into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from .errors import ConfigError, ModelFileError
from .model import MLP

FORMAT = "mlp_xp.model"
FORMAT_VERSION = 1


def save_model(model: MLP, path) -> None:
    """Write ``model`` to ``path`` atomically (see the module docstring for the layout)."""
    path = os.fspath(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.config()}
    arrays = {}
    for l, (W, b) in enumerate(model.weights(), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_model(path, device="auto") -> MLP:
    """Read a model file written by :func:`save_model` onto ``device``; pickles are refused."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist: check the path")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ModelFileError(f"{path!r} is not a readable mlp_xp model file (truncated or corrupt: {e}); "
                             "save the model again") from None
    if "metadata" not in arrays:
        raise ModelFileError(f"{path!r} has no metadata entry, so it is not an mlp_xp model file: "
                             "save it with MLP.save or mlp-xp train --save")
    try:
        meta = json.loads(arrays.pop("metadata").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path!r} has corrupt metadata ({e}): save the model again") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not an mlp_xp model file (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path!r} has format version {meta.get('format_version')!r}; this mlp_xp reads "
                             f"version {FORMAT_VERSION}: upgrade mlp_xp or re-save the model")
    try:
        model = MLP(meta["sizes"], meta["activation"], meta["loss"], init=meta.get("init", "glorot"),
                    dtype=meta["dtype"], device=device, seed=meta.get("seed", 0),
                    leaky_slope=meta.get("leaky_slope", 0.01))
    except (KeyError, TypeError, ConfigError) as e:
        raise ModelFileError(f"{path!r} has invalid metadata ({e}): save the model again") from None
    flat = np.empty(model.layout.n_params, model.dtype)
    Ws, bs = model.layout.views(flat)
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        for name, dst in ((f"W{l}", W), (f"b{l}", b)):
            src = arrays.get(name)
            if src is None or src.shape != dst.shape:
                got = "missing" if src is None else f"shape {src.shape}"
                raise ModelFileError(f"{path!r}: {name} is {got}, expected shape {dst.shape}; the file is "
                                     "corrupt, save the model again")
            dst[...] = src
    if not np.isfinite(flat).all():
        raise ModelFileError(f"{path!r} holds NaN or Inf weights: retrain (with a lower learning rate) and save")
    model.set_flat(flat)
    return model
