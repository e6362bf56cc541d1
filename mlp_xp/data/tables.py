"""Tables on disk: CSV files read with pandas, Parquet files with pyarrow (both optional: the ``tables`` extra).

:func:`read_table` reads a whole file (training); :func:`iter_table` reads one in batches of rows, so that
``mlp-xp predict`` holds one batch at a time whatever the file's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError, DataError, DatasetNotFound, install_hint
from ..files import special_file

__all__ = ["TABLE_SUFFIXES", "is_table", "iter_table", "read_table", "table_columns"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_table(path) -> bool:
    """Whether ``path`` names a CSV or Parquet file (by its suffix)."""
    return Path(os.fspath(path)).suffix.lower() in TABLE_SUFFIXES


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigError(f"reading CSV or Parquet tables needs pandas: {install_hint('tables')}") from None
    return pandas


def check_readers(path) -> None:
    """Before any work: what reading the table at ``path`` takes is installed (pandas; pyarrow for Parquet), else
    the ConfigError with its install hint."""
    _pandas()
    if _is_parquet(Path(path)):
        _pyarrow_parquet()


def _pyarrow_parquet():
    try:
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(f"reading Parquet tables needs pyarrow: {install_hint('tables')}") from None
    return pyarrow.parquet


def _existing(path) -> Path:
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DatasetNotFound(f"{p} does not exist: check the path")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a table file: give a .csv or .parquet file")
    special = special_file(p)
    if special:  # (a table is read more than once, header first: a pipe's rows would be gone, or never come)
        raise DataError(f"{p} is {special}, not a table file: write the table to a file first")
    return p


def _separator(path: Path) -> str:
    """The CSV's field separator, sniffed from its first lines among , ; tab and | (a comma where none stands
    out): spreadsheets in many locales write semicolons."""
    import csv

    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            sample = f.read(1 << 16)
    except OSError:
        return ","
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        sample = "\n".join(lines[:-1])  # a line cut off by the sample's end is no evidence
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _select(columns: list[str], wanted: list[str] | None, path: Path) -> list[str]:
    if wanted is None:
        return columns
    absent = [c for c in wanted if c not in columns]
    if absent:
        raise DataError(
            f"{path} has no column{'s' if len(absent) > 1 else ''} {', '.join(absent)}: its columns are "
            f"{', '.join(columns[:20])}{', ...' if len(columns) > 20 else ''}"
        )
    return list(wanted)


def table_columns(path) -> list[str]:
    """The column names of a table file, read from its header (CSV) or schema (Parquet) only."""
    p = _existing(path)
    if _is_parquet(p):
        try:
            return list(_pyarrow_parquet().ParquetFile(p).schema_arrow.names)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{p} is not a readable Parquet file ({e}): write it again") from None
    pd = _pandas()
    try:
        names = [str(c) for c in pd.read_csv(p, nrows=0, sep=_separator(p)).columns]
        # (the first line as written: pandas renames a repeated name, and a row of data repeats values)
        line = pd.read_csv(p, nrows=1, header=None, dtype=str, keep_default_na=False, sep=_separator(p))
        first = [str(v) for v in line.iloc[0]]
    except pd.errors.EmptyDataError:
        raise DataError(f"{p} is empty: a CSV table needs a header line of column names and rows") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{p} is not a readable CSV file ({e}): write it again as UTF-8 CSV") from None
    if _looks_like_data(first):  # (read as the header, the first row would be lost, every row shifted by one)
        shown = ", ".join(first[:4]) + (", ..." if len(first) > 4 else "")
        raise DataError(
            f"{p} begins with a row of numbers ({shown}), not a header line of column names: add a header line "
            "(pandas writes one: DataFrame(X).to_csv(path, index=False))"
        )
    return names


def _looks_like_data(cells: list[str]) -> bool:
    """Whether a CSV's first line is a row of numbers rather than column names: every cell a number (an empty one
    aside: pandas' index column has no name), and one of them not an integer or two of them equal. Integer names
    (0..d-1 as pandas writes an array's, years, kept feature numbers) are names; a header can never tell itself
    from a row of distinct integers, nor from a row holding text, so those pass as headers."""
    given = [c.strip() for c in cells if c.strip()]
    try:
        values = [float(c) for c in given]
    except ValueError:
        return False
    integers = all(c.lstrip("+-").isdigit() for c in given)
    return bool(values) and (not integers or len(set(values)) < len(values))


def _dtypes(columns: list[str], as_text: list[str]) -> dict:
    return {c: str for c in as_text if c in columns}


def read_table(path, columns: list[str] | None = None, as_text: list[str] = ()):
    """The whole table at ``path`` as a pandas DataFrame (only ``columns``, when given), with the columns of
    ``as_text`` read as strings (a categorical column of digit codes stays categorical)."""
    p = _existing(path)
    names = _select(table_columns(p), columns, p)
    pd = _pandas()
    try:
        if _is_parquet(p):
            frame = _pyarrow_parquet().read_table(p, columns=names).to_pandas()
            for c in as_text:
                if c in frame.columns:
                    frame[c] = frame[c].astype(str).where(frame[c].notna())
        else:
            frame = pd.read_csv(p, usecols=names, dtype=_dtypes(names, list(as_text)), sep=_separator(p))[names]
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{p} could not be read as a table ({e}): check the file") from None
    if len(frame) == 0:
        raise DataError(f"{p} has a header but no rows: give a table with data")
    return frame


def iter_table(path, rows: int, columns: list[str] | None = None, as_text: list[str] = ()) -> Iterator:
    """The table at ``path`` as DataFrames of at most ``rows`` rows each, in order."""
    p = _existing(path)
    names = _select(table_columns(p), columns, p)
    pd = _pandas()
    try:
        if _is_parquet(p):
            # Parquet decodes a row group at a time (its unit of compression): memory follows the file's row
            # groups, and mapping the file instead of buffering it keeps that to the decoded batch's columns.
            parquet = _pyarrow_parquet().ParquetFile(p, memory_map=True, pre_buffer=False)
            for batch in parquet.iter_batches(batch_size=rows, columns=names, use_threads=False):
                frame = batch.to_pandas()
                for c in as_text:
                    if c in frame.columns:
                        frame[c] = frame[c].astype(str).where(frame[c].notna())
                yield frame
        else:
            options = {"usecols": names, "dtype": _dtypes(names, list(as_text)), "sep": _separator(p)}
            with pd.read_csv(p, chunksize=rows, **options) as reader:
                for frame in reader:
                    yield frame[names]
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{p} could not be read as a table ({e}): check the file") from None
