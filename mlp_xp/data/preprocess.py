"""Preprocessing a table's rows into the numbers an MLP takes, and its class labels into 0..C-1 and back.

:class:`TablePreprocessor` standardizes the numeric columns, x' = (x - mean) / std over the training rows, and
one-hot encodes the categorical ones (a column of C categories becomes C columns of 0/1). It is fitted on the
training part only (the callers carve the validation and test rows out first, so that no statistic of them
leaks into training), and its fitted values travel in the model file: :meth:`TablePreprocessor.state` gives
them as JSON plus float64 arrays, :meth:`TablePreprocessor.from_state` takes them back, so that a saved model
takes raw rows.

A category not seen in training is encoded as all zeros in that column's one-hot block (none of the known
categories: the block's weights add nothing) and counted in :attr:`TablePreprocessor.unknown_seen`, which the
command line reports; with ``unknown="error"`` it is an error instead.

:class:`LabelVocabulary` keeps the class labels (strings, numbers) in sorted order; class c of the model is
``classes[c]``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["LabelVocabulary", "TablePreprocessor", "TargetScaler", "check_no_missing", "is_frame", "text_columns"]
#: A text column with more categories than this, most of them seen once, draws a warning when fitted.
WIDE_CATEGORIES = 32

_UNKNOWN = ("ignore", "error")


def is_frame(X) -> bool:
    """Whether X is a pandas DataFrame (told without importing pandas)."""
    return type(X).__name__ == "DataFrame" and hasattr(X, "columns") and hasattr(X, "dtypes")


def text_columns(frame) -> list[str]:
    """The names of a DataFrame's columns that are not numbers (bool counts as one)."""
    return [str(c) for c, t in frame.dtypes.items() if getattr(t, "kind", "O") not in "biuf"]


def _is_numeric(series) -> bool:
    # bool counts as a number (0/1); pandas' nullable and NumPy dtypes alike expose .kind
    return getattr(series.dtype, "kind", "O") in "biuf"


def check_no_missing(frame, what: str) -> None:
    """One error naming every column with missing values (NaN, None, empty cells) and how many rows they hit."""
    missing = frame.isna()
    per_column = missing.sum()
    bad = [(str(c), int(n)) for c, n in per_column.items() if n]
    if not bad:
        return
    hit = np.flatnonzero(missing.to_numpy().any(axis=1))
    rows = len(hit)
    listed = ", ".join(f"{c} ({n} row{'s' if n != 1 else ''})" for c, n in bad[:8])
    more = f" and {len(bad) - 8} more columns" if len(bad) > 8 else ""
    where = ", ".join(str(frame.index[i]) for i in hit[:5]) + (", ..." if rows > 5 else "")
    raise DataError(
        f"{what} has missing values (NaN or empty cells) in {listed}{more}; {rows} row{'s' if rows != 1 else ''} "
        f"in all (data row{'s' if rows != 1 else ''} {where}, counted from 0 after the header): fill them (e.g. "
        "with the column's median or a category of their own) or drop those rows first"
    )


def _first_non_number(series):
    """(row label, value) of the first cell of ``series`` that is not a number, or None."""
    import pandas as pd

    parsed = pd.to_numeric(series, errors="coerce")
    bad = parsed.isna() & series.notna()
    if not bad.any():
        return None
    label = bad.index[np.argmax(bad.to_numpy())]
    return label, series.loc[label], int(bad.sum())


def _labels_as_json(values: np.ndarray) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


class TablePreprocessor:
    """Standardize a table's numeric columns and one-hot encode its categorical ones.

    Parameters
    ----------
    categorical : list of str, optional
        Columns to treat as categories whatever their type (integer codes, say). By default the columns that
        are not numbers (strings, pandas categories) are categorical and the rest numeric (bool as 0/1).
    unknown : {"ignore", "error"}
        What a category unseen in training becomes: all zeros in its column's one-hot block (counted in
        :attr:`unknown_seen`), or a :class:`DataError`.

    Attributes
    ----------
    columns : list of str
        The input columns, in the order their encodings appear in the output.
    numeric : list of str
        The standardized columns; ``mean`` and ``scale`` (float64) hold their training statistics (a column
        constant in training has scale 1).
    categories : dict of str to list of str
        Each categorical column's categories, sorted, as strings.
    unknown_seen : dict of str to int
        Per column, the rows of the last :meth:`transform` whose category was unseen (``unknown="ignore"``).
    """

    def __init__(self, categorical: list[str] | None = None, unknown: str = "ignore") -> None:
        self.categorical = categorical
        self.unknown = unknown

    # scikit-learn's clone (GridSearchCV) copies an estimator's parameters through these
    def get_params(self, deep: bool = True) -> dict:
        return {"categorical": self.categorical, "unknown": self.unknown}

    def set_params(self, **params) -> TablePreprocessor:
        for k, v in params.items():
            if k not in ("categorical", "unknown"):
                raise ConfigError(f"TablePreprocessor has no parameter {k!r}: use categorical or unknown")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        fitted = f", {len(self.columns)} columns -> {self.n_features_out} features" if self.fitted else ""
        return f"TablePreprocessor(categorical={self.categorical!r}, unknown={self.unknown!r}{fitted})"

    @property
    def fitted(self) -> bool:
        return hasattr(self, "columns")

    def fit(self, frame) -> TablePreprocessor:
        """Learn the columns' kinds, the numeric columns' mean and standard deviation and the categories, from
        the training rows ``frame`` (a pandas DataFrame with no missing values)."""
        if self.unknown not in _UNKNOWN:
            raise ConfigError(f"unknown={self.unknown!r}: use 'ignore' (all zeros) or 'error'")
        if not is_frame(frame):
            raise DataError(
                f"TablePreprocessor.fit takes a pandas DataFrame, not {type(frame).__name__}: pass the table's "
                "feature columns as a DataFrame"
            )
        if len(frame) == 0 or len(frame.columns) == 0:
            raise DataError(f"the table to fit on is empty ({len(frame)} rows x {len(frame.columns)} columns)")
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            raise DataError(f"the table has repeated column names {names}: give each column its own name")
        given = [str(c) for c in (self.categorical or [])]
        absent = [c for c in given if c not in names]
        if absent:
            raise DataError(f"categorical={absent} names columns the table lacks: it has {names}")
        check_no_missing(frame, "the training table")
        self.columns = names
        self.numeric, self.categories = [], {}
        for name, col in zip(names, frame.columns):
            series = frame[col]
            if name in given or not _is_numeric(series):
                if name not in given:
                    _refuse_mostly_numbers(name, series)
                self.categories[name] = sorted(set(series.astype(str)))
                k = len(self.categories[name])
                if k > WIDE_CATEGORIES and k > len(frame) / 2:
                    warnings.warn(
                        f"column {name} has {k} distinct values in {len(frame)} rows, one-hot encoded as {k} features, "
                        "and new rows will mostly hold values it has not seen (an identifier or a date?): leave it "
                        "out of the features, or derive a coarser column from it",
                        UserWarning,
                        stacklevel=2,
                    )
            else:
                self.numeric.append(name)
        values = frame[[frame.columns[names.index(n)] for n in self.numeric]].to_numpy(np.float64)
        self.mean = values.mean(axis=0) if self.numeric else np.zeros(0)
        std = values.std(axis=0) if self.numeric else np.zeros(0)
        self.scale = np.where(std > 0, std, 1.0)
        self.unknown_seen = {}
        return self

    @property
    def n_features_out(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories.values())

    def feature_names_out(self) -> list[str]:
        """The output columns' names: a numeric column's own, ``column=category`` for one-hot columns."""
        out = []
        for name in self.columns:
            out += [f"{name}={c}" for c in self.categories[name]] if name in self.categories else [name]
        return out

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError("this TablePreprocessor is not fitted yet: call fit on the training rows first")

    def transform(self, frame, dtype=np.float64) -> np.ndarray:
        """The encoded rows of ``frame`` (which must hold every fitted column; others are ignored), shape
        (rows, :attr:`n_features_out`)."""
        self._require_fitted()
        if not is_frame(frame):
            raise DataError(
                f"this model's preprocessing takes a pandas DataFrame of the raw columns {self.columns}, not "
                f"{type(frame).__name__}"
            )
        have = {str(c): c for c in frame.columns}
        absent = [c for c in self.columns if c not in have]
        if absent:
            raise DataError(
                f"the table lacks the column{'s' if len(absent) > 1 else ''} {', '.join(absent)} that the model "
                f"was trained with (it needs {', '.join(self.columns)}): add {'them' if len(absent) > 1 else 'it'}"
            )
        check_no_missing(frame[[have[c] for c in self.columns]], "the table")
        out = np.zeros((len(frame), self.n_features_out), dtype)
        j, k = 0, 0
        self.unknown_seen = {}
        for name in self.columns:
            series = frame[have[name]]
            if name in self.categories:
                cats = self.categories[name]
                index = {c: i for i, c in enumerate(cats)}
                codes = np.array([index.get(v, -1) for v in series.astype(str)], np.int64)
                unseen = codes < 0
                if unseen.any():
                    examples = sorted(set(series.astype(str)[unseen]))[:3]
                    if self.unknown == "error":
                        raise DataError(
                            f"column {name} holds categories unseen in training ({', '.join(map(repr, examples))} "
                            f"in {int(unseen.sum())} rows; it knows {', '.join(map(repr, cats[:6]))}"
                            f"{', ...' if len(cats) > 6 else ''}): map them to a known one, or use unknown='ignore'"
                        )
                    self.unknown_seen[name] = int(unseen.sum())
                rows = np.flatnonzero(~unseen)
                out[rows, j + codes[rows]] = 1
                j += len(cats)
            else:
                try:
                    x = series.to_numpy(np.float64)
                except (TypeError, ValueError):
                    found = _first_non_number(series)
                    row, value = (found[0], found[1]) if found else (series.index[0], series.iloc[0])
                    raise DataError(
                        f"column {name} was numeric in training but holds {value!r} in data row {row} here: give it "
                        "numbers"
                    ) from None
                out[:, j] = (x - self.mean[k]) / self.scale[k]
                j += 1
                k += 1
        return out

    def fit_transform(self, frame, dtype=np.float64) -> np.ndarray:
        return self.fit(frame).transform(frame, dtype)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The fitted values: (JSON-able dict, float64 arrays ``mean`` and ``scale``)."""
        self._require_fitted()
        meta = {
            "kind": "table",
            "columns": self.columns,
            "numeric": self.numeric,
            "categories": self.categories,
            "unknown": self.unknown,
            "categorical": self.categorical,
        }
        return meta, {"mean": np.asarray(self.mean, np.float64), "scale": np.asarray(self.scale, np.float64)}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> TablePreprocessor:
        """The preprocessor :meth:`state` described; a :class:`DataError` for a state that does not add up."""
        try:
            if meta.get("kind") != "table":
                raise ValueError(f"kind {meta.get('kind')!r}")
            p = cls(meta.get("categorical"), meta.get("unknown", "ignore"))
            p.columns = [str(c) for c in meta["columns"]]
            p.numeric = [str(c) for c in meta["numeric"]]
            p.categories = {str(k): [str(c) for c in v] for k, v in meta["categories"].items()}
            p.mean = np.asarray(arrays["mean"], np.float64).reshape(-1)
            p.scale = np.asarray(arrays["scale"], np.float64).reshape(-1)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise DataError(f"the stored preprocessing is damaged ({e})") from None
        if (
            len(p.mean) != len(p.numeric)
            or len(p.scale) != len(p.numeric)
            or set(p.numeric) | set(p.categories) != set(p.columns)
            or not (np.isfinite(p.mean).all() and (p.scale > 0).all())
        ):
            raise DataError("the stored preprocessing is damaged (its columns and statistics do not match)")
        p.unknown_seen = {}
        return p


def _refuse_mostly_numbers(name: str, series) -> None:
    """A text column whose cells are numbers but for a few is a typo, not categories: one-hot encoding it would
    make a feature of every distinct number. Refused, naming the first odd cell."""
    found = _first_non_number(series)
    if found is None or found[2] > len(series) / 2:
        return
    row, value, count = found
    raise DataError(
        f"column {name} holds numbers but for {count} cell{'s' if count != 1 else ''} (the first: {value!r}, data row "
        f"{row}): fix {'those cells' if count != 1 else 'it'}, or treat the column as categories (--categorical "
        f"{name} on the command line, categorical=[{name!r}] in Python)"
    )


class TargetScaler:
    """A regression target standardized for training, y' = (y - mean) / std over the training rows, and undone on
    the outputs: the network then fits targets of unit size whatever their units (a price in dollars, a count)."""

    def __init__(self, mean, scale) -> None:
        self.mean = np.asarray(mean, np.float64).reshape(-1)
        self.scale = np.asarray(scale, np.float64).reshape(-1)
        if len(self.mean) != len(self.scale) or not (np.isfinite(self.mean).all() and (self.scale > 0).all()):
            raise DataError("the stored target scaling is damaged")

    @classmethod
    def fit(cls, y) -> TargetScaler:
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        std = y.std(axis=0)
        return cls(y.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, y) -> np.ndarray:
        y = np.asarray(y, np.float64)
        return (y - self.mean[0]) / self.scale[0] if y.ndim == 1 else (y - self.mean) / self.scale

    def inverse(self, out: np.ndarray) -> np.ndarray:
        """The outputs (rows x targets) in the target's own units, in their dtype."""
        return (out * self.scale + self.mean).astype(out.dtype, copy=False)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, values) -> TargetScaler:
        try:
            return cls(values["mean"], values["scale"])
        except (KeyError, TypeError, ValueError):
            raise DataError("the stored target scaling is damaged") from None


class LabelVocabulary:
    """Class labels of any kind (strings, integers) <-> the model's classes 0..C-1, in sorted order."""

    def __init__(self, classes) -> None:
        self.classes = np.asarray(classes)
        if self.classes.ndim != 1 or len(self.classes) < 2:
            raise DataError(
                f"classification needs at least 2 classes, got {len(self.classes)} "
                f"({_labels_as_json(self.classes)}): add rows of another class"
            )

    @classmethod
    def fit(cls, labels, what: str = "the target") -> LabelVocabulary:
        labels = np.asarray(labels)
        if labels.dtype == object:  # strings mixed with numbers would not sort: keep them as strings
            labels = labels.astype(str)
        return cls(np.unique(labels))

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, labels, what: str = "the target") -> np.ndarray:
        """The class index of each label; a label outside the vocabulary is an error naming it."""
        labels = np.asarray(labels)
        if labels.dtype == object or self.classes.dtype.kind == "U":
            labels, classes = labels.astype(str), self.classes.astype(str)
        else:
            classes = self.classes
        idx = np.searchsorted(classes, labels)
        idx = np.minimum(idx, len(classes) - 1)
        bad = classes[idx] != labels
        if bad.any():
            unseen = sorted(set(_labels_as_json(labels[bad])), key=str)[:5]
            raise DataError(
                f"{what} holds labels the training data lack ({', '.join(map(repr, unseen))}; the classes are "
                f"{', '.join(map(repr, _labels_as_json(self.classes[:8])))}{', ...' if len(self) > 8 else ''}): "
                "score only classes the model was trained on"
            )
        return idx.astype(np.int64)

    def decode(self, index) -> np.ndarray:
        return self.classes[np.asarray(index)]

    def to_json(self) -> list:
        return _labels_as_json(self.classes)

    @classmethod
    def from_json(cls, values) -> LabelVocabulary:
        if not isinstance(values, list) or not values:
            raise DataError("the stored class labels are damaged")
        return cls(np.asarray(values))
