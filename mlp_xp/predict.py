"""``mlp-xp predict MODEL --input FILE --output FILE``: a saved model's predictions for a file of rows.

Inputs: ``.npy`` (2-D rows, or images of any shape flattened per row; memory-mapped, not read whole), ``.npz``
(its ``X`` or ``X_test``), ``.csv`` and ``.parquet`` (read in batches; a model trained on a table takes its raw
columns through its stored preprocessing, another model every numeric column), and IDX image files (scaled to
[0, 1] as the MNIST loaders scale them). ``.npy`` and ``.npz`` values are taken as they are.

Outputs: ``.csv`` or ``.npy`` of one prediction per row (the original class labels for a model trained on
labels, class indices otherwise, values for regression) or, with ``proba``, one column per class. The output is
written batch by batch to a temporary file that takes the output's name only when every row is done, so that
memory beyond the input is bounded by the batch whatever the input's size, and an output on disk is never
replaced by half of one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .data.idx import read_idx
from .data.preprocess import text_columns
from .data.tables import check_readers, is_table, iter_table, table_columns
from .errors import ConfigError, DataError, DatasetNotFound
from .files import atomic_writer, not_an_archive
from .validation import first_nonfinite

__all__ = ["INPUT_KINDS", "OUTPUT_KINDS", "check_paths", "predict_file"]

INPUT_KINDS = ".npy, .npz, .csv, .parquet or an IDX images file"
OUTPUT_KINDS = (".csv", ".npy")


def _is_idx(path: Path) -> bool:
    return "idx" in path.name.lower() or path.suffix.lower() in (".idx", ".ubyte")


def check_paths(model, input_path, output_path, proba: bool) -> None:
    """Everything about the paths and the request that can be refused before any row is read; ``model`` None:
    what can be refused before the model is loaded (the CLI's first checks)."""
    src = Path(os.fspath(input_path)).expanduser()
    if not src.exists():
        raise DatasetNotFound(f"--input {src} does not exist: check the path")
    if src.is_dir():
        raise DataError(f"--input {src} is a folder: give a file ({INPUT_KINDS})")
    suffix = src.suffix.lower()
    if not (suffix in (".npy", ".npz") or is_table(src) or _is_idx(src) or suffix == ".gz" and _is_idx(src)):
        raise DataError(f"--input {src}: cannot tell its kind from its name; give {INPUT_KINDS}")
    if Path(os.fspath(output_path)).suffix.lower() not in OUTPUT_KINDS:
        raise ConfigError(f"--output {output_path}: write a .csv or a .npy file")
    if os.path.realpath(src) == os.path.realpath(output_path):
        raise ConfigError(f"--output {output_path} is the input file: write the predictions elsewhere")
    if is_table(src):
        check_readers(src)  # (pandas' install hint, before the model is loaded)
    if model is None:
        return
    if model.preprocessing is not None and not is_table(src):
        raise DataError(
            f"this model was trained on a table and takes its raw columns ({', '.join(model.preprocessing.columns[:6])}"
            f"{', ...' if len(model.preprocessing.columns) > 6 else ''}): give --input as a .csv or .parquet file"
        )
    if proba and model.loss == "mse":
        raise ConfigError("--proba gives class probabilities, and this model predicts values (mse): leave it out")


def _npz_rows(src: Path) -> np.ndarray:
    kind = not_an_archive(src)
    if kind is not None:
        raise DataError(f"--input {src} {kind}, not an .npz archive: save the rows with np.savez(path, X=...)")
    try:
        with np.load(src, allow_pickle=False) as npz:
            key = next((k for k in ("X", "X_test") if k in npz.files), None)
            if key is None:
                raise DataError(f"--input {src} holds {sorted(npz.files)}, but no X or X_test: save the rows as X")
            return npz[key]
    except DataError:  # (a ValueError too: the file was readable, its keys are what is wrong)
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"--input {src} is not a readable .npz of plain arrays ({e})") from None


def _array_rows(src: Path) -> np.ndarray:
    suffix = src.suffix.lower()
    if suffix == ".npy":
        try:
            X = np.load(src, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"--input {src} is not a readable .npy array ({e})") from None
    elif suffix == ".npz":
        X = _npz_rows(src)
    else:
        X = read_idx(src)
        if X.dtype != np.uint8 or X.ndim < 2:
            raise DataError(f"--input {src} is an IDX file of {X.dtype} {X.shape}, not images: give an images file")
    if X.ndim < 1 or X.shape[0] == 0:
        raise DataError(f"--input {src} holds no rows (shape {X.shape})")
    return X


def _batches(model, src: Path, batch: int) -> tuple[Iterator, int | None]:
    """(batches of rows as the model's predict takes them, the row count where known)."""
    if is_table(src):
        if model.preprocessing is not None:
            columns, as_text = model.preprocessing.columns, list(model.preprocessing.categories)
        else:
            columns = [c for c in table_columns(src) if c != model.target]
            as_text = []
        frames = iter_table(src, batch, columns, as_text)
        if model.preprocessing is not None:
            return frames, None
        return (_numbers(f, src) for f in frames), None
    X = _array_rows(src)
    if X.ndim == 1 and model.n_inputs != 1:
        raise DataError(
            f"--input {src} is 1-D ({X.shape[0]} values), and the model takes rows of {model.n_inputs} features: "
            "save one row as shape (1, features), e.g. x.reshape(1, -1), or rows as (rows, features)"
        )
    n = X.shape[0]
    scale = _is_idx(src) and X.dtype == np.uint8

    def rows() -> Iterator[np.ndarray]:
        for s in range(0, n, batch):
            part = np.asarray(X[s : s + batch]).reshape(min(batch, n - s), -1)
            yield part / np.float32(255) if scale else part

    return rows(), n


def _check_finite(part, src: Path, first: int) -> None:
    """A NaN or Inf in a batch of numbers, named by its row in the input (predict's own check would count from the
    batch's first row); a table's batch for its preprocessing says its own rows."""
    bad = first_nonfinite(part) if isinstance(part, np.ndarray) and part.dtype.kind in "fc" else None
    if bad is not None:
        row, column = bad
        where = "data row" if is_table(src) else "row"
        raise DataError(
            f"--input {src} contains NaN or Inf (first at {where} {first + row}, column {column}, counted from 0"
            f"{' after the header' if is_table(src) else ''}): clean or impute the data first"
        )


def _numbers(frame, src: Path) -> np.ndarray:
    """A batch of a table for a model that takes numbers only (it was not trained on a table)."""
    text = text_columns(frame)
    if text and len(frame):  # (a header alone reads as text columns: it is refused as having no rows)
        raise DataError(
            f"--input {src}: {'columns' if len(text) > 1 else 'column'} {', '.join(text[:5])} "
            f"{'hold' if len(text) > 1 else 'holds'} text, and this model takes numbers only (it was not trained on a "
            "table): give numeric columns"
        )
    return frame.to_numpy()


def _columns_for(model, proba: bool) -> list[str]:
    if proba:
        if model.labels is not None:
            return [str(c) for c in model.labels.to_json()]
        k = model.n_outputs
        return [str(c) for c in range(k)]
    if model.n_outputs > 1 and model.loss != "cross_entropy":
        return [f"{model.target or 'output'}_{j}" for j in range(model.n_outputs)]
    return [model.target or "prediction"]


def _rows_out(model, p: np.ndarray, proba: bool) -> np.ndarray:
    if not proba:
        return model.labels_of(p)
    if model.loss == "binary_cross_entropy" and model.labels is not None:  # one sigmoid: both labels' columns
        return np.concatenate([1 - p, p], axis=1)
    return p


class _NpyOut:
    """An .npy written batch by batch: rows go to a temporary file, and the header (which needs the row count)
    plus the rows go to the output at the end, whole or not at all."""

    def __init__(self, path: str) -> None:
        self.path, self.n, self.dtype, self.shape = path, 0, None, ()
        self.tmp = tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(path)))

    def write(self, rows: np.ndarray) -> None:
        if self.dtype is None:
            self.dtype, self.shape = rows.dtype, rows.shape[1:]
        self.tmp.write(np.ascontiguousarray(rows, self.dtype).tobytes())
        self.n += len(rows)

    def finish(self) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
        header["shape"] = (self.n, *self.shape)
        self.tmp.seek(0)
        with atomic_writer(self.path) as f:
            np.lib.format.write_array_header_1_0(f, header)
            while chunk := self.tmp.read(1 << 22):
                f.write(chunk)

    def close(self) -> None:
        self.tmp.close()


class _CsvOut:
    """A .csv written batch by batch to a temporary file that takes the output's name at the end."""

    def __init__(self, path: str, columns: list[str]) -> None:
        self.path, self.n = path, 0
        self._ctx = atomic_writer(path)
        self.file = self._ctx.__enter__()
        self.text = io.TextIOWrapper(self.file, encoding="utf-8", newline="", write_through=True)
        self.writer = csv.writer(self.text)
        self.writer.writerow(columns)

    def write(self, rows: np.ndarray) -> None:
        self.n += len(rows)
        if rows.dtype.kind == "f":
            fmt = "%.9g" if rows.dtype.itemsize <= 4 else "%.17g"
            lines = [fmt % v for v in rows] if rows.ndim == 1 else [",".join(fmt % v for v in r) for r in rows]
            self.text.write("".join(line + "\r\n" for line in lines))
        else:
            self.writer.writerows([[v] for v in rows.tolist()] if rows.ndim == 1 else rows.tolist())

    def finish(self) -> None:
        self.text.flush()
        self.text.detach()
        self._ctx.__exit__(None, None, None)
        self._ctx = None

    def close(self) -> None:
        if self._ctx is not None:  # an error before the end: the temporary file goes, the output stays as it was
            with contextlib.suppress(Exception):
                self._ctx.__exit__(RuntimeError, RuntimeError("predict stopped"), None)


def predict_file(model, input_path, output_path, *, proba: bool = False, batch: int = 4096, progress=None) -> int:
    """Write ``model``'s predictions for the rows of ``input_path`` to ``output_path``; the rows written.

    ``progress``: show a progress bar (default: when standard error is a terminal)."""
    check_paths(model, input_path, output_path, proba)
    src = Path(os.fspath(input_path)).expanduser()
    batches, total = _batches(model, src, batch)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="rows", desc="predict", leave=False)
    path = os.fspath(output_path)
    out = _NpyOut(path) if path.lower().endswith(".npy") else _CsvOut(path, _columns_for(model, proba))
    unknown: dict[str, int] = {}
    first = 0  # the batch's first row in the input
    try:
        for part in batches:
            if len(part) == 0:  # a table with a header and no rows reads as one empty batch
                continue
            _check_finite(part, src, first)
            first += len(part)
            p = model.predict_proba(part, batch_size=batch)
            for col, n in (model.preprocessing.unknown_seen if model.preprocessing is not None else {}).items():
                unknown[col] = unknown.get(col, 0) + n
            out.write(_rows_out(model, p, proba))
            if bar is not None:
                bar.update(len(p))
        if out.n == 0:
            raise DataError(f"--input {src} has no rows (a header only?): give rows to predict")
        out.finish()
    finally:
        out.close()
        if bar is not None:
            bar.close()
    for col, n in unknown.items():
        print(
            f"mlp-xp: warning: {n} row{'s' if n != 1 else ''} of column {col} held categories unseen in training "
            "(encoded as none of the known ones)",
            file=sys.stderr,
        )
    return out.n
