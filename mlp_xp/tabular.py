"""Training and scoring on tables (CSV, Parquet): the command line's ``--data FILE.csv --target COLUMN``.

:func:`prepare_training` reads the table, holds out the test rows (``--test FILE`` or ``--test-fraction F``,
stratified by class for classification), encodes the target for the loss, carves the validation rows the
trainer would carve, and fits a :class:`~mlp_xp.data.preprocess.TablePreprocessor` on what is left: the
training part only. :func:`scoring_rows` reads the rows a saved model is scored on, through the model's own
preprocessing and labels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .data.dataset import Dataset
from .data.preprocess import LabelVocabulary, TablePreprocessor, TargetScaler, check_no_missing
from .data.tables import read_table, table_columns
from .errors import ConfigError, DataError
from .trainer import preprocess_split

__all__ = ["TableRun", "prepare_training", "scoring_rows", "split_test_rows"]


@dataclass
class TableRun:
    """A table ready for :func:`mlp_xp.fit`: ``dataset`` holds the encoded training part (without the
    validation rows), ``X_val``/``y_val`` those rows (None without validation)."""

    dataset: Dataset
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    preprocessing: TablePreprocessor
    labels: LabelVocabulary | None
    target: str
    target_scaler: TargetScaler | None = None


def _columns(path, target: str | None, features: list[str] | None, fix: str) -> tuple[list[str], str]:
    names = table_columns(path)
    if target is None:
        raise ConfigError(f"{path} is a table: name the column to predict with {fix}")
    if target not in names:
        raise DataError(
            f"{path} has no column {target!r} to predict: its columns are {', '.join(names[:20])}"
            f"{', ...' if len(names) > 20 else ''}"
        )
    if features is None:
        features = [c for c in names if c != target]
    if target in features:
        raise ConfigError(f"--features includes the target column {target!r}: leave it out")
    if not features:
        raise DataError(f"{path} has no column besides the target {target!r}: give a table with features")
    return features, target


def _target(frame, target: str, path) -> np.ndarray:
    check_no_missing(frame[[target]], f"the target column of {path}")
    return frame[target].to_numpy()


def encode_target(
    y: np.ndarray, loss: str, labels: LabelVocabulary | None, what: str, scaler: TargetScaler | None = None
) -> np.ndarray:
    """The target column as the loss takes it: class indices (cross_entropy), 0/1 (binary_cross_entropy, from a
    vocabulary of two labels), floats (mse; standardized by ``scaler`` where given)."""
    if loss == "mse":
        if y.dtype.kind not in "biuf":
            example = next((v for v in y if not isinstance(v, (int, float))), y[0])
            raise DataError(
                f"{what} is not numeric (e.g. {example!r}), but regression (--loss mse) needs numbers: use --loss "
                "cross_entropy to classify by it"
            )
        y = y.astype(np.float64)
        return scaler.transform(y) if scaler is not None else y
    assert labels is not None
    codes = labels.encode(y, what)
    return codes.astype(np.float64) if loss == "binary_cross_entropy" else codes


def split_test_rows(n: int, fraction: float, seed: int, classes: np.ndarray | None = None):
    """(training rows, test rows), sorted: ``fraction`` of the n rows for the test, drawn with ``seed``; with
    ``classes`` (a label per row) the same fraction of each class (stratified), so every class is in both
    parts where it has two rows or more."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--test-fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    if classes is None:
        order = rng.permutation(n)
        k = min(max(1, int(round(n * fraction))), n - 1) if n > 1 else 0
        test = order[:k]
    else:
        parts = []
        for c in np.unique(classes):
            idx = np.flatnonzero(classes == c)
            rng.shuffle(idx)
            k = min(int(round(len(idx) * fraction)), len(idx) - 1)
            parts.append(idx[:k])
        test = np.concatenate(parts)
    if len(test) == 0 or len(test) == n:
        raise DataError(
            f"--test-fraction {fraction} of {n} rows leaves {'no test rows' if len(test) == 0 else 'no training rows'}:"
            " give a table with more rows, or another fraction"
        )
    mask = np.zeros(n, bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def prepare_training(
    path,
    *,
    target: str | None,
    features: list[str] | None,
    loss: str,
    test: str | None = None,
    test_fraction: float | None = None,
    data_seed: int = 0,
    validation_fraction: float = 0.0,
    seed: int = 0,
    categorical: list[str] | None = None,
) -> TableRun:
    """Read the table at ``path`` and make it a :class:`TableRun` (see the module's docstring); the split of
    validation rows is :func:`mlp_xp.trainer.validation_rows`' with ``validation_fraction`` and ``seed``."""
    if test is not None and test_fraction is not None:
        raise ConfigError("--test and --test-fraction both choose the test rows: give one of them")
    features, target = _columns(path, target, features, "--target COLUMN")
    absent = [c for c in categorical or [] if c not in features]
    if absent:
        raise ConfigError(
            f"--categorical {', '.join(absent)}: not among the feature columns ({', '.join(features[:10])}"
            f"{', ...' if len(features) > 10 else ''})"
        )
    as_text = list(categorical or [])
    frame = read_table(path, [*features, target], as_text)
    check_no_missing(frame, str(path))
    y_all = _target(frame, target, path)
    is_classes = loss != "mse"
    if is_classes:
        _refuse_quantity(y_all, target, path)
    test_frame = y_test_raw = None
    if test is not None:
        test_frame = read_table(test, [*features, target], as_text)
        check_no_missing(test_frame, str(test))
        y_test_raw = _target(test_frame, target, test)
    elif test_fraction is not None:
        strata = np.asarray(y_all).astype(str) if is_classes else None
        train_rows, test_rows = split_test_rows(len(frame), test_fraction, data_seed, strata)
        test_frame, y_test_raw = frame.iloc[test_rows], y_all[test_rows]
        frame, y_all = frame.iloc[train_rows], y_all[train_rows]
    labels = None
    if is_classes:
        labels = LabelVocabulary.fit(y_all)
        _warn_if_a_quantity(labels.classes, len(y_all), target, path)
        if loss == "binary_cross_entropy" and len(labels) != 2:
            raise DataError(
                f"binary_cross_entropy needs a target of 2 classes, but {target!r} has {len(labels)}: use "
                "--loss cross_entropy"
            )
    y = encode_target(y_all, loss, labels, f"the target column {target!r} of {path}")
    preprocessing = TablePreprocessor(categorical=categorical)
    X_train, y_train, X_val, y_val = preprocess_split(preprocessing, frame[features], y, validation_fraction, seed)
    scaler = None
    if loss == "mse":  # the target standardized by its training rows too (the validation rows are carved)
        scaler = TargetScaler.fit(y_train)
        y_train = scaler.transform(y_train)
        y_val = None if y_val is None else scaler.transform(y_val)
    X_test = y_test = None
    if test_frame is not None:
        X_test = preprocessing.transform(test_frame[features])
        y_test = encode_target(y_test_raw, loss, labels, f"the target column {target!r} of the test rows", scaler)
    n_classes = len(labels) if labels is not None else 0
    name = f"{getattr(path, 'name', None) or str(path).rsplit('/', 1)[-1]}[{target}]"
    notes = []
    if X_val is not None:
        notes.append(f"+{len(X_val)} validation rows held out before fitting the preprocessing")
    if scaler is not None:
        notes.append(
            f"target standardized (mean {scaler.mean[0]:.6g}, std {scaler.scale[0]:.6g}): the run's loss and mse are "
            "in those units, predictions in the target's own"
        )
    source = f"{path}" + (f" ({'; '.join(notes)})" if notes else "")
    ds = Dataset(name, X_train, y_train, X_test, y_test, n_classes, source)
    return TableRun(ds, X_val, y_val, preprocessing, labels, target, scaler)


def _warn_if_a_quantity(values: np.ndarray, rows: int, target: str, path) -> None:
    """Whole numbers with few rows a value (scikit-learn's diabetes target: 214 values in 442 rows) are more
    likely a quantity than classes; they train as classes, with a warning that says how to regress them.
    ``values``: the target's distinct values, sorted (the label vocabulary's)."""
    n_classes = len(values)
    if values.dtype.kind not in "iuf" or n_classes <= 20 or n_classes * 10 <= rows:
        return
    if values[0] == 0 and values[-1] == n_classes - 1:  # (codes 0..K-1: classes, numbered)
        return
    warnings.warn(
        f"the target column {target!r} of {path} has {n_classes} distinct numbers in {rows} rows ("
        f"{rows / n_classes:.1f} a class), trained as that many classes: if it is a quantity to predict, use "
        "--loss mse",
        UserWarning,
        stacklevel=3,
    )


def _refuse_quantity(y: np.ndarray, target: str, path) -> None:
    """A classifier's target of non-integer numbers is a quantity, not classes (one class per distinct value)."""
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        example = next(v for v in y if v != round(v)).item()  # (a Python float: its repr is the number)
        raise DataError(
            f"the target column {target!r} of {path} holds non-integer numbers (e.g. {example!r}): a quantity, not "
            "classes: use --loss mse to predict it (class labels are text or whole numbers)"
        )


def scoring_rows(model, path, *, target: str | None = None, features: list[str] | None = None):
    """The rows of the table at ``path`` to score ``model`` on: (X encoded as the model takes it, y encoded
    for its loss, the raw labels). The target is the model's own (``target`` overrides it); the features are
    its preprocessing's columns, else ``features`` or every column but the target."""
    if target is not None and model.preprocessing is not None and target in model.preprocessing.columns:
        raise ConfigError(
            f"--target {target}: the model takes {target!r} as a feature and predicts {model.target!r}: leave "
            "--target out"
        )
    target = target or model.target
    if model.preprocessing is not None:
        features = model.preprocessing.columns
    features, target = _columns(path, target, features, "--target COLUMN (the model does not name one)")
    as_text = list(model.preprocessing.categories) if model.preprocessing is not None else []
    frame = read_table(path, [*features, target], as_text)
    check_no_missing(frame, str(path))
    y_raw = _target(frame, target, path)
    X = model.encode(frame[features]) if model.preprocessing is not None else frame[features].to_numpy()
    labels = model.labels
    if labels is None and model.loss != "mse":
        y = y_raw  # class indices already (a model trained on numeric labels): checked by evaluate
    else:
        what = f"the target column {target!r} of {path}"
        y = encode_target(y_raw, model.loss, labels, what, model.target_scaler)
    return X, y, y_raw
