"""mlp_xp.sklearn: scikit-learn's MLPClassifier and MLPRegressor, parameter for parameter, trained by mlp_xp.

The reference is scikit-learn's own test file for its MLPs (sklearn/neural_network/tests/test_mlp.py, shipped in
its wheel): its tests run here on the drop-in, but for the ones listed in NOT_YET and DIFFERENT with the reason."""

import importlib
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from mlp_xp.sklearn import TRANSLATION, MLPClassifier, MLPRegressor  # noqa: E402

try:
    sk_tests = importlib.import_module("sklearn.neural_network.tests.test_mlp")
except ImportError:  # a scikit-learn installed without its tests
    sk_tests = None

#: scikit-learn's tests of what the drop-in refuses for now, each with a clear error.
NOT_YET = {
    "test_lbfgs_classification": "solver='lbfgs'",
    "test_lbfgs_regression": "solver='lbfgs'",
    "test_lbfgs_classification_maxfun": "solver='lbfgs' (max_fun)",
    "test_lbfgs_regression_maxfun": "solver='lbfgs' (max_fun)",
    "test_gradient": "solver='lbfgs' and scikit-learn's private _backprop",
    "test_multilabel_classification": "solver='lbfgs'",
    "test_multioutput_regression": "solver='lbfgs'",
    "test_predict_proba_multilabel": "solver='lbfgs'",
    "test_warm_start": "solver='lbfgs'",
    "test_sparse_matrices": "solver='lbfgs' (sparse X itself: test_sparse_x_trains_as_its_dense_copy_...)",
    "test_mlp_vs_poisson_glm_equivalent": "loss='poisson'",
}
#: scikit-learn's tests whose expectation the drop-in does not meet on purpose or by nature.
DIFFERENT = {
    # float32 against float64 training within rtol 5e-4 after 150 epochs: chaotic in the seed; scikit-learn's own
    # estimator misses it too at random_state=5 (3.9e-2), this one at random_state=1 (2.9e-3, other shuffles)
    "test_mlp_regressor_dtypes_casting": "float32 vs float64 within 5e-4 depends on the seed",
}


@pytest.fixture
def ours(monkeypatch):
    monkeypatch.setattr(sk_tests, "MLPClassifier", MLPClassifier)
    monkeypatch.setattr(sk_tests, "MLPRegressor", MLPRegressor)


def _sk_cases():
    if sk_tests is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="scikit-learn installed without its tests"))]
    cases = []
    for name in sorted(n for n in dir(sk_tests) if n.startswith("test_")):
        if name in NOT_YET or name in DIFFERENT:
            continue
        cases.append(pytest.param(name, id=name))
    return cases


@pytest.mark.parametrize("name", _sk_cases())
def test_scikit_learns_own_mlp_tests(name, ours, request):
    """Each of scikit-learn's MLP tests, on the drop-in (parametrized ones over their own parameter sets)."""
    func = getattr(sk_tests, name)
    marks = [m for m in getattr(func, "pytestmark", []) if m.name == "parametrize"]
    combos = [{}]
    for mark in marks:
        argnames = [a.strip() for a in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])]
        new = []
        for values in mark.args[1]:
            values = values.values if hasattr(values, "values") else values
            values = values if len(argnames) > 1 else (values,)
            for c in combos:
                new.append({**c, **dict(zip(argnames, values))})
        combos = new
    params = set(func.__code__.co_varnames[: func.__code__.co_argcount])
    for kwargs in combos:
        if kwargs.get("solver") == "lbfgs":  # NOT_YET, as a parameter of a test that covers the other solvers too
            continue
        extra = {}
        if "tmp_path" in params:
            extra["tmp_path"] = request.getfixturevalue("tmp_path")
        if "capsys" in params:
            extra["capsys"] = request.getfixturevalue("capsys")
        if "MLPEstimator" in kwargs or "Estimator" in kwargs:  # the drop-in's classes, not scikit-learn's
            for key in ("MLPEstimator", "Estimator"):
                if key in kwargs:
                    kwargs[key] = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kwargs[key].__name__]
        func(**kwargs, **extra)


def test_every_refusal_says_what_to_do_instead():
    from mlp_xp.errors import ConfigError

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    for est, match in (
        (MLPClassifier(solver="lbfgs"), "solver='lbfgs' is not in mlp_xp .*use solver='adam'"),
        (MLPClassifier(max_fun=100), "max_fun applies to solver='lbfgs'"),
        (MLPRegressor(loss="poisson"), "loss='poisson' is not in mlp_xp yet: use loss='squared_error'"),
    ):
        with pytest.raises(ConfigError, match=match):
            est.fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_warm_start_3_then_2_epochs_equal_5_bit_for_bit(solver):
    X, y = _digits()
    kw = {"hidden_layer_sizes": (32,), "solver": solver, "random_state": 0, "n_iter_no_change": 99}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        five = MLPClassifier(max_iter=5, **kw).fit(X, y)
        warm = MLPClassifier(max_iter=3, warm_start=True, **kw).fit(X, y)
        warm.set_params(max_iter=2).fit(X, y)
    for a, b in zip(five.coefs_ + five.intercepts_, warm.coefs_ + warm.intercepts_):
        assert a.tobytes() == b.tobytes()
    assert warm.loss_curve_ == five.loss_curve_ and warm.t_ == five.t_ == 5 * len(X)
    assert warm.n_iter_ == 2 and five.n_iter_ == 5


def test_partial_fit_epochs_are_fit_epochs():
    X, y = _digits()
    kw = {"hidden_layer_sizes": (16,), "solver": "sgd", "random_state": 3, "n_iter_no_change": 99}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = MLPClassifier(max_iter=4, **kw).fit(X, y)
    parts = MLPClassifier(**kw)
    parts.partial_fit(X, y, classes=np.unique(y))
    for _ in range(3):
        parts.partial_fit(X, y)
    np.testing.assert_array_equal(parts.coefs_[0], whole.coefs_[0])
    assert parts.loss_curve_ == whole.loss_curve_


def test_convergence_warning_on_max_iter_and_not_when_the_rule_stops():
    X, y = _digits()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, tol=0.5, random_state=0).fit(X, y)
    assert clf.n_iter_ == 12  # epoch 1 sets best_loss_; 11 more without a gain of tol: > n_iter_no_change (10)


def test_fitted_attributes_in_scikit_learns_layout_and_dtypes():
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=4, random_state=0).fit(X, y)
        binary = MLPClassifier(max_iter=2, random_state=0).fit(X[y < 2].astype(np.float32), y[y < 2])
        reg = MLPRegressor(max_iter=3, random_state=0, early_stopping=True).fit(X, X[:, 10])
    assert [c.shape for c in clf.coefs_] == [(64, 20), (20, 10), (10, 10)]
    assert [b.shape for b in clf.intercepts_] == [(20,), (10,), (10,)]
    assert clf.coefs_[0].dtype == np.float64 and clf.out_activation_ == "softmax" and clf.n_layers_ == 4
    assert clf.t_ == 4 * len(X) and len(clf.loss_curve_) == clf.n_iter_ == 4 and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    # two classes: one logistic unit, as scikit-learn has, and float32 kept from the input
    assert binary.coefs_[-1].shape == (100, 1) and binary.out_activation_ == "logistic"
    assert binary.coefs_[0].dtype == np.float32 and binary.predict_proba(X[:3].astype(np.float32)).shape == (3, 2)
    assert reg.best_loss_ is None and len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_) and reg.out_activation_ == "identity"


def test_the_initial_weights_are_scikit_learns_draws():
    """The same random_state gives the same starting weights as scikit-learn's estimator (its _init_coef)."""
    from sklearn.neural_network import MLPClassifier as Sk

    X, y = _digits()
    kw = {"hidden_layer_sizes": (7,), "random_state": 4, "max_iter": 1, "learning_rate_init": 1e-12}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kw).fit(X, y), Sk(**kw).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_adaptive_rate_divides_by_five_until_1e_6():
    X = [[3, 2], [1, 6]]
    y = [1, 0]
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive").fit(X, y)
    assert clf.n_iter_ < 3000 and clf._optimizer.learning_rate <= 1e-6
    lr = 1e-3
    while lr > 1e-6:
        lr /= 5
    assert clf._optimizer.learning_rate == pytest.approx(lr, rel=1e-12)


def test_the_translation_table_covers_every_parameter():
    named = {part.strip() for name, _ in TRANSLATION for part in name.split("(")[0].split(",")}
    for cls in (MLPClassifier, MLPRegressor):
        missing = set(cls().get_params()) - named - {"loss"}
        assert not missing, missing


def test_side_by_side_with_scikit_learn_on_digits_and_iris():
    """Test accuracy at least scikit-learn's less 1%, mean over 5 seeds (benchmarks/sklearn_dropin.py measures 10
    seeds and the fit times; these are a guard against a regression)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as Sk

    for X, y, iters in ((*_digits(), 60), (*load_iris(return_X_y=True), 300)):
        ours, theirs = [], []
        for seed in range(5):
            Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=seed, stratify=y)
            kw = {"hidden_layer_sizes": (32,), "max_iter": iters, "random_state": seed}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ours.append(MLPClassifier(**kw).fit(Xtr, ytr).score(Xte, yte))
                theirs.append(Sk(**kw).fit(Xtr, ytr).score(Xte, yte))
        assert np.mean(ours) >= np.mean(theirs) - 0.01, (np.mean(ours), np.mean(theirs))


@parametrize_with_checks([MLPClassifier(max_iter=50, random_state=0), MLPRegressor(max_iter=50, random_state=0)])
def test_scikit_learns_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_the_readme_shows_the_translation_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, what in TRANSLATION:
        assert f"| `{name}` | {what} |" in readme, name


def test_sparse_x_trains_as_its_dense_copy_and_sample_weight_as_repeated_rows():
    from scipy import sparse

    X, y = _digits()
    kw = {"hidden_layer_sizes": (16,), "max_iter": 3, "random_state": 0, "solver": "sgd"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**kw).fit(X, y)
        csr = MLPClassifier(**kw).fit(sparse.csr_matrix(X), y)
    for a, b in zip(dense.coefs_, csr.coefs_):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(dense.predict_proba(X), csr.predict_proba(sparse.csr_matrix(X)))
    # integer weights, full batch, float64: the parameters of the rows repeated
    w = np.random.default_rng(0).integers(0, 3, 300)
    Xs, ys = X[:300], y[:300]
    kw = {"hidden_layer_sizes": (8,), "max_iter": 3, "random_state": 0, "solver": "sgd", "alpha": 1e-3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPClassifier(batch_size=300, **kw).fit(Xs, ys, sample_weight=w)
        rows = int(w.sum())
        repeated = MLPClassifier(batch_size=rows, **kw).fit(np.repeat(Xs, w, axis=0), np.repeat(ys, w))
    for a, b in zip(weighted.coefs_, repeated.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("learning_rate", "extra"),
    [("invscaling", {"power_t": 0.25}), ("adaptive", {"tol": 0.05, "n_iter_no_change": 1}), ("constant", {})],
)
@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_with_momentum_follows_scikit_learn_when_the_rate_changes(learning_rate, extra, nesterov):
    """Without shuffling (the only thing that differs: the row order), sgd with momentum gives scikit-learn's loss
    curve, also when the rate changes between epochs: mlp_xp's velocity is rescaled to scikit-learn's then."""
    from sklearn.neural_network import MLPClassifier as Sk

    X, y = _digits()
    kw = {
        "hidden_layer_sizes": (32,),
        "solver": "sgd",
        "learning_rate": learning_rate,
        "learning_rate_init": 0.1,
        "max_iter": 8,
        "random_state": 0,
        "shuffle": False,
        "momentum": 0.9,
        "nesterovs_momentum": nesterov,
        **extra,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kw).fit(X, y), Sk(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


def test_multi_output_loss_early_stopping_split_and_warm_start_classes_as_scikit_learns():
    from sklearn.neural_network import MLPClassifier as Sk
    from sklearn.neural_network import MLPRegressor as SkR

    X, y = _digits()
    Y = np.c_[X[:, 10], X[:, 20], X[:, 30]]
    kw = {"max_iter": 4, "random_state": 0, "shuffle": False, "solver": "sgd"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPRegressor(**kw).fit(X, Y), SkR(**kw).fit(X, Y)
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)  # the mean over every output
        es = {"hidden_layer_sizes": (16,), "early_stopping": True, "max_iter": 5, "random_state": 1, "shuffle": False}
        es["solver"] = "sgd"  # (adam adds its epsilon elsewhere: README)
        ours, theirs = MLPClassifier(**es).fit(X, y), Sk(**es).fit(X, y)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-12)  # the same split
    warm = MLPClassifier(max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        warm.fit(X[y < 5], y[y < 5])
    assert warm.predict_proba(X.astype(np.float32)[:2]).dtype == np.float32  # the input's dtype, as scikit-learn


def test_a_fit_that_diverges_in_its_first_epoch_leaves_the_estimator_as_it_was():
    """Found by a new user: a refit at a rate that diverged at once replaced a fitted regressor's weights by the
    untrained ones, and it still looked fitted. The failed fit now changes nothing; a first fit stays unfitted."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import NotFittedError
    from sklearn.neural_network import MLPRegressor as SkR

    X, y = load_digits(return_X_y=True)
    X, y = (X / 16).astype(np.float32), y.astype(np.float64)
    est = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    before = est.predict(X)
    coefs, curve, n_iter = [c.copy() for c in est.coefs_], list(est.loss_curve_), est.n_iter_
    est.set_params(solver="sgd", learning_rate_init=1.0)
    with pytest.raises(ValueError, match=r"No epoch of this fit ended, so the estimator keeps its previous fit"):
        est.fit(X, y * 1e12)
    np.testing.assert_array_equal(est.predict(X), before)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, coefs, strict=True))
    assert est.loss_curve_ == curve and est.n_iter_ == n_iter
    fresh = MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=1.0, max_iter=5)
    with pytest.raises(ValueError, match=r"so the estimator stays unfitted"):
        fresh.fit(X, y * 1e12)
    with pytest.raises(NotFittedError):
        fresh.predict(X)
    # with early stopping scikit-learn returns from it (NaN scores, the initial weights), and so does the drop-in
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for E in (MLPRegressor, SkR):
            es = E(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=1.0, max_iter=5, early_stopping=True)
            es.fit(X, y * 1e12)
            assert np.isnan(es.validation_scores_).all() and all(np.isfinite(c).all() for c in es.coefs_)


def test_a_warm_fit_from_nan_coefs_is_refused_with_the_estimators_own_names():
    """Found in review: coefs_ set by hand to NaN read as a divergence in the warm fit's first epoch ("lower the
    learning rate"), then as the trainer's advice for models ("make a new model"): neither is this user's fix."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X / 16, y)
    est.coefs_[0][0, 0], est.intercepts_[1][0] = np.nan, np.inf
    with pytest.raises(ValueError) as e:
        est.fit(X / 16, y)
    assert str(e.value) == (
        "coefs_[0], intercepts_[1] hold NaN or Inf, so a warm fit cannot go on from them: set finite weights, or fit "
        "without warm_start"
    )


def test_a_one_column_target_is_a_1d_target_as_in_scikit_learn():
    """y of shape (n, 1): scikit-learn warns (DataConversionWarning) and predicts (n,); the drop-in predicted
    (n, 1), which broadcasts to (n, n) against a 1-D y."""
    from sklearn.exceptions import DataConversionWarning
    from sklearn.neural_network import MLPRegressor as Theirs

    rng = np.random.default_rng(0)
    X, y = rng.random((40, 3)), rng.random((40, 1))
    for cls in (MLPRegressor, Theirs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.warns(DataConversionWarning):
                est = cls(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
        assert est.predict(X[:5]).shape == (5,) and est.n_outputs_ == 1, cls
