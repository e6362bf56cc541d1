"""The data checks (mlp_xp.validation): bad features and targets get one clear error, naming the problem and
the fix, before any work starts and before the model changes."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, fit


@pytest.fixture
def model():
    return MLP([3, 4, 2], device="cpu", seed=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 3)), rng.integers(0, 2, 20)


def _untouched(model, before):
    assert np.array_equal(model.get_flat(), before)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (
            lambda X, y: (np.where(np.arange(60).reshape(20, 3) == 7, np.nan, X), y),
            r"NaN or Inf \(first at row 2, column 1\)",
        ),
        (lambda X, y: (np.where(np.arange(60).reshape(20, 3) == 0, np.inf, X), y), "NaN or Inf"),
        (lambda X, y: (X, y[:-1]), "19 entries but X has 20 samples"),
        (lambda X, y: (X[:, :2], y), "2 features but the model expects 3"),
        (lambda X, y: (X[:0], y[:0]), "empty"),
        (lambda X, y: (X.ravel(), y), "must be 2-D"),
        (lambda X, y: (X, y + 5), r"labels in \[5, 6\] but the model has 2 classes"),
        (lambda X, y: (X, y - 1), r"labels in \[-1, 0\]"),
        (lambda X, y: (X, y + 0.5), "non-integer values but cross_entropy needs class labels"),
        (lambda X, y: (X, np.stack([y, y], 1)), "must be 1-D class labels"),
        (lambda X, y: (X, np.array(["a", "b"] * 10)), "not numbers"),
        (lambda X, y: (X.astype(object), y), "not numbers"),
    ],
)
def test_bad_data_is_refused_before_training(model, data, mutate, match):
    before = model.get_flat()
    X, y = mutate(*data)
    with pytest.raises(mlp_xp.DataError, match=match):
        fit(model, X, y, epochs=1)
    _untouched(model, before)


def test_binary_cross_entropy_needs_targets_in_0_1(data):
    X, y = data
    m = MLP([3, 1], loss="binary_cross_entropy", device="cpu")
    with pytest.raises(mlp_xp.DataError, match=r"outside \[0, 1\]"):
        fit(m, X, y * 3)


def test_mse_targets_must_match_the_output_width(data):
    X, _ = data
    with pytest.raises(mlp_xp.DataError, match=r"pass targets of shape \(n_samples, 2\)"):
        fit(MLP([3, 2], loss="mse", device="cpu"), X, np.zeros((20, 3)))


def test_predict_checks_its_input(model):
    with pytest.raises(mlp_xp.DataError, match="features but the model expects 3"):
        model.predict(np.zeros((2, 5)))
    with pytest.raises(mlp_xp.DataError, match="NaN"):
        model.predict(np.full((2, 3), np.nan))


class _Frame:
    """Like a pandas DataFrame or Series: array-convertible, with a ``get(key)`` that is not CuPy's."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)

    def get(self, key, default=None):
        return default


def test_objects_with_a_get_method_are_read_as_arrays(model, data):
    X, y = data
    h = fit(model, _Frame(X), _Frame(y), epochs=1, batch_size=8)
    assert np.isfinite(h.last["train_loss"])
    np.testing.assert_array_equal(model.predict(_Frame(X)), model.predict(X))


def test_a_1d_x_gets_the_reshape_that_fits_it():
    """One sample given as a 1-D row was told to reshape it as X.reshape(len(X), -1), which made one feature of
    it; images (3-D) keep that advice."""
    from mlp_xp.errors import DataError
    from mlp_xp.validation import check_features

    cases = [
        (np.ones(4), 4, "got shape (4,): for one sample of 4 features, reshape it: X.reshape(1, -1)"),
        (np.ones(5), 4, "got shape (5,): reshape it: X.reshape(-1, 1) if it is one feature, X.reshape(1, -1) if one"),
        (np.ones(5), None, "X.reshape(-1, 1) if it is one feature"),
        (np.ones((2, 2, 2)), 4, "got shape (2, 2, 2): reshape it, e.g. X.reshape(len(X), -1)"),
    ]
    for X, n, message in cases:
        with pytest.raises(DataError) as e:
            check_features(X, n, np.float32)
        assert message in str(e.value), (X.shape, str(e.value))
    model = mlp_xp.MLP([4, 3, 2], device="cpu")
    with pytest.raises(DataError, match=r"for one sample of 4 features, reshape it: X\.reshape\(1, -1\)"):
        model.predict(np.ones(4))


def test_targets_that_are_not_numbers_get_the_fix_of_their_loss():
    """A regression target of strings was told to encode labels as integers 0..C-1."""
    from mlp_xp.errors import DataError
    from mlp_xp.validation import check_targets

    y = np.array(["1.5", "2"] * 5)
    for loss, fix in (
        ("cross_entropy", "encode labels as integers 0..C-1"),
        ("binary_cross_entropy", "pass 0/1 values (one column per label)"),
        ("mse", "pass the numeric values to regress on (a regression target is numbers, not labels)"),
    ):
        with pytest.raises(DataError) as e:
            check_targets(y, 10, loss, 1, np.float32)
        assert str(e.value) == f"y has dtype <U3, not numbers: {fix}", loss


def test_pandas_inputs_name_their_column_or_row():
    """A DataFrame with a text column, or with pandas' NA in a nullable one, was "X has dtype object, not
    numbers"; a Series of labels with NA was "y has dtype object". (A first version checked every frame before
    NumPy read it: it refused numeric categoricals and repeated column names, and made predict on a 1 x 5000 frame
    470x slower. These messages are made on the error path only.)"""
    pd = pytest.importorskip("pandas")
    from mlp_xp.errors import DataError

    rng = np.random.default_rng(0)
    X, y = rng.random((20, 2)), rng.integers(0, 2, 20)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1]})
    cases = [
        (
            frame.assign(b=["x"] * 20),
            y,
            "X has columns of a dtype that is not numeric (b): encode them as numbers, or train with "
            "mlp_xp.estimator's preprocessing='auto', which one-hot encodes them",
        ),
        (
            frame.assign(a=pd.array([1] * 19 + [None], dtype="Int64")),
            y,
            "X has missing values in column(s) a: impute them, or drop those rows",
        ),
        (
            frame,
            pd.Series(y, dtype="Int64").mask(np.arange(20) == 3),  # (NumPy reads it as floats, NaN at row 3)
            "y has missing or infinite labels (NaN or Inf, the first at row 3): drop those rows, or fill them in",
        ),
        (
            frame,
            pd.Series(["cat", None] * 10),
            "y has missing labels (the first at row 1): drop those rows, or fill them in",
        ),
        (frame, pd.Series(["cat", "dog"] * 10), "y has dtype object, not numbers: encode labels as integers 0..C-1"),
        (
            pd.DataFrame(rng.random((20, 7)), columns=list("cdefghi")).astype(str),
            y,
            "X has columns of a dtype that is not numeric (c, d, e, f, g, ... (7 in all)): encode them as numbers, or "
            "train with mlp_xp.estimator's preprocessing='auto', which one-hot encodes them",
        ),
    ]
    for X_, y_, message in cases:
        model = mlp_xp.MLP([X_.shape[1], 3, 2], device="cpu", seed=0)
        with pytest.raises(DataError) as e:
            mlp_xp.fit(model, X_, y_, epochs=1)
        assert str(e.value) == message


def test_frames_of_numbers_train_as_before_and_are_not_scanned(monkeypatch):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 3)), rng.integers(0, 2, 20)
    frames = [
        pd.DataFrame(X, columns=["a", "a", "b"]),  # repeated column names
        pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": pd.Categorical(rng.integers(0, 3, 20))}),  # numeric categories
    ]
    for cls in (pd.DataFrame, pd.Series):  # the happy path never looks for missing values
        monkeypatch.setattr(cls, "isna", lambda self: pytest.fail("isna called on a frame of numbers"))
    for frame in frames:
        model = mlp_xp.MLP([3, 4, 2], device="cpu", seed=0)
        history = mlp_xp.fit(model, frame, pd.Series(y), epochs=1)
        assert len(history) == 1 and model.predict(frame).shape == (20,)
        np.testing.assert_array_equal(model.predict(frame), model.predict(np.asarray(frame, np.float64)))


def test_a_numeric_categorical_beside_a_text_column_is_not_named_and_series_features_are_not_labels():
    """Found in review: a categorical of numbers was listed among the non-numeric columns, and a text Series given
    as X was "X has missing labels"."""
    pd = pytest.importorskip("pandas")
    from mlp_xp.errors import DataError
    from mlp_xp.validation import check_features

    frame = pd.DataFrame({"a": pd.Categorical([1, 2]), "b": ["u", "v"]})
    with pytest.raises(DataError, match=r"^X has columns of a dtype that is not numeric \(b\): "):
        check_features(frame, None, np.float32)
    with pytest.raises(DataError) as e:
        check_features(pd.Series(["a", None, "c"]), 1, np.float32)
    assert str(e.value) == "X has dtype object, not numbers: pass a 2-D array of floats"
