"""Checks of the data a run takes (features and targets), run before any work starts, each failing with one
sentence that names the fix. Settings have their rules in :mod:`mlp_xp.constraints`."""

from __future__ import annotations

import numpy as np

from .errors import DataError


def _is_device_array(a) -> bool:
    """A CuPy array (by the CUDA array interface: a pandas frame has a ``get`` method too, a different one)."""
    return hasattr(a, "__cuda_array_interface__") and callable(getattr(a, "get", None))


def is_sparse(X) -> bool:
    """A SciPy sparse matrix or array (told without importing SciPy)."""
    return type(X).__module__.startswith("scipy.sparse") and hasattr(X, "tocsr")


def check_sparse_features(X, n_features: int | None, dtype, name: str = "X"):
    """A SciPy sparse X as CSR of ``dtype``, sorted indices, finite, with ``n_features`` columns (kept sparse:
    batches are densified one at a time)."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty 2-D sparse matrix, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(
            f"{name} has {X.shape[1]} features but the model expects {n_features}: use data of the model's input size"
        )
    X = X.tocsr().astype(dtype)
    X.sort_indices()
    if not np.isfinite(X.data).all():
        raise DataError(f"{name} contains NaN or Inf among its stored values: clean or impute the data first")
    return X


def check_features(X, n_features: int | None, dtype, name: str = "X") -> np.ndarray:
    """X as a C-contiguous 2-D float array of ``dtype``: non-empty, finite, with ``n_features`` columns."""
    if _is_device_array(X):  # checks run on the host
        X = X.get()
    given = X
    try:
        X = np.asarray(X)
    except Exception as e:
        raise DataError(f"{name} could not be read as a numeric array ({e}): pass a 2-D array of numbers") from None
    if X.dtype == object or X.dtype.kind not in "biuf":
        raise DataError(
            _frame_problem(given, name) or f"{name} has dtype {X.dtype}, not numbers: pass a 2-D array of floats"
        )
    if X.ndim == 1 and n_features == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        if X.ndim > 2:  # (images: one row of pixels a sample)
            fix = "reshape it, e.g. X.reshape(len(X), -1)"
        elif X.ndim == 1 and n_features is not None and X.size == n_features:
            fix = f"for one sample of {n_features} features, reshape it: X.reshape(1, -1)"
        else:  # (scikit-learn's advice)
            fix = "reshape it: X.reshape(-1, 1) if it is one feature, X.reshape(1, -1) if one sample"
        raise DataError(f"{name} must be 2-D (samples x features), got shape {X.shape}: {fix}")
    if X.shape[0] == 0:
        raise DataError(f"{name} is empty (0 samples): pass at least one sample")
    if X.shape[1] == 0:
        raise DataError(f"{name} has 0 features: pass at least one feature column")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(
            f"{name} has {X.shape[1]} features but the model expects {n_features}: use data of the model's input size"
        )
    X = np.ascontiguousarray(X, dtype=dtype)
    bad = first_nonfinite(X)
    if bad is not None:
        raise DataError(
            f"{name} contains NaN or Inf (first at row {bad[0]}, column {bad[1]}): clean or impute the data first"
        )
    return X


def first_nonfinite(X: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN or Inf of the 2-D float array ``X``, or None where it has none."""
    if np.isfinite(X).all():
        return None
    row, column = np.argwhere(~np.isfinite(X))[0]
    return int(row), int(column)


def _frame_problem(data, name: str, *, features: bool = True) -> str | None:
    """Why a pandas DataFrame or Series became an array of objects, by column or row (text columns: ``features``
    only, a target's fix is its loss's); None for other inputs. Only on the error path: a frame of numbers (numeric
    categoricals and repeated column names too) never comes here."""
    if not type(data).__module__.startswith("pandas"):
        return None
    missing = np.asarray(data.isna()).any(axis=0)  # (pandas' NA in a nullable column: an object array)
    if data.ndim == 1:
        if missing and not (features and _kind(data.dtype) not in "biuf"):  # (text features: the dtype's message)
            row = int(np.flatnonzero(np.asarray(data.isna()))[0])
            what = "values" if features else "labels"
            return f"{name} has missing {what} (the first at row {row}): drop those rows, or fill them in"
        return None
    columns = [str(c) for c in data.columns]
    kinds = [_kind(t) for t in data.dtypes]
    text = [c for c, k in zip(columns, kinds, strict=True) if k not in "biuf"]
    if text and features:
        return (
            f"{name} has columns of a dtype that is not numeric ({_first_few(text)}): encode them as numbers, or train "
            "with mlp_xp.estimator's preprocessing='auto', which one-hot encodes them"
        )
    holes = [c for c, m in zip(columns, missing, strict=True) if m]
    if holes:
        return f"{name} has missing values in column(s) {_first_few(holes)}: impute them, or drop those rows"
    return None


def _kind(dtype) -> str:
    """NumPy's kind letter of a pandas column's dtype; a categorical's is its categories' (numbers read as such)."""
    categories = getattr(dtype, "categories", None)
    return getattr(dtype, "kind", "O") if categories is None else categories.dtype.kind


def _first_few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def check_targets(y, n_samples: int, loss: str, n_outputs: int, dtype, name: str = "y") -> np.ndarray:
    """Targets in the form the loss kernels take, with clear errors for the wrong kind.

    cross_entropy: integer class labels in [0, n_outputs), returned as int32 (n,).
    binary_cross_entropy: values in [0, 1], returned as float (n, n_outputs).
    mse: finite values, returned as float (n, n_outputs).
    """
    if _is_device_array(y):
        y = y.get()
    given = y
    y = np.asarray(y)
    if y.dtype == object or y.dtype.kind not in "biuf":
        fix = {
            "cross_entropy": "encode labels as integers 0..C-1",
            "binary_cross_entropy": "pass 0/1 values (one column per label)",
        }.get(loss, "pass the numeric values to regress on (a regression target is numbers, not labels)")
        raise DataError(
            _frame_problem(given, name, features=False) or f"{name} has dtype {y.dtype}, not numbers: {fix}"
        )
    if len(y) != n_samples:
        raise DataError(f"{name} has {len(y)} entries but X has {n_samples} samples: they must match")
    if loss == "cross_entropy":
        if y.ndim != 1:
            raise DataError(
                f"{name} must be 1-D class labels for cross_entropy, got shape {y.shape}: "
                "pass integer labels, or use loss='binary_cross_entropy' for multi-label targets"
            )
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():  # (a missing label: pandas' NA in a nullable column reads as NaN)
                row = int(np.flatnonzero(~np.isfinite(y))[0])
                raise DataError(
                    f"{name} has missing or infinite labels (NaN or Inf, the first at row {row}): drop those rows, "
                    "or fill them in"
                )
            if not np.array_equal(y, np.round(y)):
                raise DataError(
                    f"{name} holds non-integer values but cross_entropy needs class labels "
                    "0..C-1: pass integer labels, or use loss='mse' for regression"
                )
        lo, hi = (int(y.min()), int(y.max())) if y.size else (0, 0)
        if lo < 0 or hi >= n_outputs:
            raise DataError(
                f"{name} has labels in [{lo}, {hi}] but the model has {n_outputs} classes "
                f"(labels must be 0..{n_outputs - 1}): relabel, or widen the output layer"
            )
        return np.ascontiguousarray(y, dtype=np.int32)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise DataError(
            f"{name} has shape {y.shape} but the model has {n_outputs} outputs: "
            f"pass targets of shape (n_samples, {n_outputs})"
        )
    y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y).all():
        raise DataError(f"{name} contains NaN or Inf: clean the targets first")
    if loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
        raise DataError(
            f"{name} has values outside [0, 1] but binary_cross_entropy needs 0/1 targets "
            "(or probabilities): rescale them, or use loss='mse' for regression"
        )
    return y


def check_sample_weight(sample_weight, n: int, dtype, name: str = "sample_weight") -> np.ndarray:
    """Per-row weights as a 1-D array of ``dtype``: n finite non-negative numbers, not all zero (``name``: the
    argument, for the messages)."""
    w = np.asarray(sample_weight)
    if w.dtype == object or w.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {w.dtype}, not numbers: give one number per row")
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise DataError(f"{name} has shape {w.shape} but there are {n} rows: give one weight per row")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"{name} holds negative, NaN or infinite weights: give weights >= 0")
    if not w.any():
        nothing = "nothing to fit" if name == "sample_weight" else "its weighted score would be 0/0"
        raise DataError(f"{name} is zero for every row: {nothing}; give some rows a positive weight")
    return w


def check_split_weights(w_val: np.ndarray) -> None:
    """A DataError for a validation split whose rows all weigh 0: its weighted score would be 0/0."""
    if not w_val.any():
        raise DataError(
            "every row of the validation split has weight 0, so its weighted score is 0/0: give some of them weight, "
            "or choose the validation rows (another seed or validation_fraction, or X_val and y_val)"
        )
