"""Grid and random search on a validation split, and the command-line search-space syntax."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import mlp_xp.estimator  # noqa: E402
from mlp_xp.errors import ConfigError, DataError  # noqa: E402
from mlp_xp.estimator import MLPClassifier, MLPRegressor  # noqa: E402
from mlp_xp.search import estimator_param_names, format_table, parse_space, run_search  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X / 16, y, test_size=0.25, random_state=0)
    return X_train[:800], y_train[:800], X_val, y_val


class TrainingStarted(BaseException):
    """Not an Exception: a candidate's failure is a row of the table, but this must end the search."""


@pytest.fixture
def no_training(monkeypatch):
    """Makes any model fit fail loudly: for tests that must fail before the first candidate trains."""

    def fit(*args, **kwargs):
        raise TrainingStarted("a model started training")

    monkeypatch.setattr(mlp_xp.estimator, "fit", fit)


@pytest.fixture(scope="module")
def smooth():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (300, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    return X[:200], y[:200], X[200:], y[200:]


# ---- parse_space ----
def test_parse_lists_of_scalars():
    space = parse_space(["lr=0.01,1e-1", "epochs=10,20", "optimizer=sgd, adam", "early_stopping=true,False"])
    assert space == {
        "lr": [0.01, 0.1],
        "epochs": [10, 20],
        "optimizer": ["sgd", "adam"],
        "early_stopping": [True, False],
    }
    assert all(type(v) is int for v in space["epochs"])


@pytest.mark.parametrize(
    "spec", ["hidden=64,128x64", "hidden=64;128,64", "hidden=64;128x64", "hidden=choice:64,128x64"]
)
def test_parse_hidden_choices(spec):
    assert parse_space([spec]) == {"hidden": [(64,), (128, 64)]}


def test_parse_hidden_none_is_no_hidden_layer():
    assert parse_space(["hidden=none,32"]) == {"hidden": [(), (32,)]}


def test_parse_words_with_colons_are_values_not_distributions():
    assert parse_space(["device=cuda:0,cpu"]) == {"device": ["cuda:0", "cpu"]}
    assert parse_space(["device=cuda:1"]) == {"device": ["cuda:1"]}
    assert parse_space(["device=choice:cuda:0,cpu"]) == {"device": ["cuda:0", "cpu"]}


def test_parse_new_schedule_settings():
    space = parse_space(["schedule=step", "step_size=5,10", "gamma=0.5", "min_lr=0,1e-4", "drop_last=true,false"])
    assert space == {
        "schedule": ["step"],
        "step_size": [5, 10],
        "gamma": [0.5],
        "min_lr": [0, 1e-4],
        "drop_last": [True, False],
    }


def test_parse_distributions():
    space = parse_space(
        [
            "lr=loguniform:1e-4:1e-1",
            "momentum=uniform:0.5:0.99",
            "epochs=randint:10:12",
            "batch_size=choice:32,64,128",
            "seed=randint:0:3",
        ]
    )
    rng = np.random.RandomState(0)
    lr = [space["lr"].rvs(random_state=rng) for _ in range(200)]
    assert 1e-4 <= min(lr) and max(lr) <= 1e-1
    mu = [space["momentum"].rvs(random_state=rng) for _ in range(200)]
    assert 0.5 <= min(mu) and max(mu) <= 0.99
    # randint includes both ends.
    assert {int(space["epochs"].rvs(random_state=rng)) for _ in range(200)} == {10, 11, 12}
    assert space["batch_size"] == [32, 64, 128]
    # randint reaches 0: a seed of 0 can be drawn.
    assert {int(space["seed"].rvs(random_state=rng)) for _ in range(200)} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "spec, match",
    [
        ("lr", "NAME=VALUES"),
        ("=0.1", "NAME=VALUES"),
        ("lr=", "no values"),
        ("lrr=0.1", "unknown parameter 'lrr'"),
        ("lr=0.1,,0.2", "empty value"),
        ("lr=normal:0:1", "unknown distribution 'normal'.*: use loguniform"),
        ("lr=fast", "lr takes numbers, got 'fast'.*: write e.g. lr=A,B"),
        ("lr=loguniform:0:1", "0 < LO < HI"),
        ("lr=loguniform:1e-3", "two numbers"),
        ("lr=uniform:a:b", "two numbers"),
        ("momentum=uniform:0.9:0.5", "LO < HI"),
        ("epochs=randint:1.5:3", "integers"),
        ("epochs=1.5", "epochs takes integers, got '1.5'.*: write whole numbers, e.g. epochs=10,20"),
        ("epochs=inf", "epochs takes finite integers, got 'inf'.*: write whole numbers"),
        ("epochs=-inf", "finite integers"),
        ("epochs=nan", "epochs takes finite integers, got 'nan'"),
        ("batch_size=10,nan", "finite integers"),
        ("seed=uniform:0:3", "seed takes integers.*uniform.*: write seed=randint:0:3"),
        ("batch_size=loguniform:16:256", "batch_size takes integers.*: write batch_size=randint:16:256"),
        ("patience=uniform:2.5:2.7", "write patience=randint:10:50"),
        ("optimizer=uniform:0:1", "optimizer takes a list of values, not a distribution"),
        ("early_stopping=randint:0:1", "not a distribution"),
        ("lr=uniform:0:inf", "finite bounds"),
        ("hidden=loguniform:8:64", "not a distribution"),
        ("hidden=64,abc", "bad hidden layers"),
        ("hidden=0", "bad hidden layers"),
    ],
)
def test_parse_errors_name_the_fix(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_space([spec])


def test_parse_rejects_a_parameter_given_twice():
    with pytest.raises(ConfigError, match="given twice"):
        parse_space(["lr=0.1", "lr=0.2"])


# ---- run_search ----
def test_grid_search_ranks_the_working_learning_rate_first(digits):
    space = parse_space(["lr=1e-6,0.05", "hidden=16,32"])
    rows = run_search(*digits, space, mode="grid", base_params={"epochs": 10})
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["params"]["lr"] for r in rows[:2]} == {0.05}
    assert {r["params"]["hidden"] for r in rows[:2]} == {(16,), (32,)}
    assert rows[0]["score"] > 0.9 and rows[-1]["score"] < 0.5
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for r in rows:
        assert set(r) == {"rank", "candidate", "params", "score", "fit_seconds", "epochs", "status", "reason", "worker"}
        assert r["status"] == "ok" and r["epochs"] == 10 and r["fit_seconds"] > 0 and r["reason"] == ""
        assert r["worker"]["device"].startswith("cpu") and r["worker"]["pid"] == os.getpid()
    # "candidate" is the search's order (ParameterGrid's: the last name, lr, varies fastest)
    assert sorted((r["candidate"], r["params"]["hidden"], r["params"]["lr"]) for r in rows) == [
        (1, (16,), 1e-6),
        (2, (16,), 0.05),
        (3, (32,), 1e-6),
        (4, (32,), 0.05),
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["rank", "score", "epochs", "seconds", "params"]
    assert len(lines) == 5 and "lr=0.05" in lines[1] and "lr=1e-06" in lines[4]


def test_random_search_is_deterministic_for_a_seed(digits):
    space = parse_space(["lr=loguniform:1e-3:1e-1", "hidden=8,16", "batch_size=choice:64,128"])
    kw = {"mode": "random", "n_iter": 3, "base_params": {"epochs": 2}}
    first = run_search(*digits, space, seed=7, **kw)
    again = run_search(*digits, space, seed=7, **kw)
    assert len(first) == 3
    assert [(r["params"], r["score"]) for r in first] == [(r["params"], r["score"]) for r in again]
    other = run_search(*digits, space, seed=8, **kw)
    assert sorted(map(str, (r["params"] for r in other))) != sorted(map(str, (r["params"] for r in first)))
    # Draws are plain Python values (they go to JSON and to the table).
    assert all(type(r["params"]["lr"]) is float and type(r["params"]["batch_size"]) is int for r in first)


def test_random_search_over_a_small_grid_takes_it_whole_and_quietly(smooth):
    space = parse_space(["lr=0.01,0.02"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = run_search(
            *smooth, space, mode="random", n_iter=10, task="regression", base_params={"hidden": (4,), "epochs": 1}
        )
    assert sorted(r["params"]["lr"] for r in rows) == [0.01, 0.02]


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_reasons_name_settings_as_the_caller_set_them_in_worker_processes_too(smooth, n_jobs):
    """Found in review: joblib's workers (loky here, Dask's and Ray's alike) have contexts of their own, so a CLI
    search's failure reasons named Python's keywords there ("set checkpoint=DIR") and its flags in-process."""
    from mlp_xp.errors import settings_as_flags

    space, base = parse_space(["lr=0.01,0.02"]), {"hidden": (4,), "epochs": 1, "resume": True}
    with settings_as_flags():
        rows = run_search(*smooth, space, task="regression", base_params=base, n_jobs=n_jobs)
    said = "ConfigError: --resume needs the checkpoint folder: set --checkpoint DIR"
    assert [r["reason"] for r in rows] == [said, said]
    rows = run_search(*smooth, space, task="regression", base_params=base, n_jobs=n_jobs)
    said = "ConfigError: resume needs the checkpoint folder: set checkpoint=DIR"
    assert [r["reason"] for r in rows] == [said, said]


def test_a_diverging_candidate_is_reported_not_raised_and_ranks_last(smooth):
    # The diverging candidate comes first: a sort on -score alone would leave its NaN in front.
    space = parse_space(["lr=1e6,0.01,1e6,0.02"])
    rows = run_search(*smooth, space, task="regression", base_params={"hidden": (16,), "epochs": 5, "optimizer": "sgd"})
    assert [r["status"] for r in rows] == ["ok", "ok", "diverged", "diverged"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["params"]["lr"] for r in rows[:2]} == {0.01, 0.02} and rows[0]["score"] >= rows[1]["score"]
    for bad in rows[2:]:
        assert bad["params"] == {"lr": 1e6} and math.isnan(bad["score"]) and bad["epochs"] < 5
        assert bad["reason"].startswith("training diverged in epoch")
        assert "the estimator" not in bad["reason"]  # (each candidate is a fresh one: "stays unfitted" says nothing)
    assert [r["candidate"] for r in rows[2:]] == [1, 3]  # ties among the diverged keep the search's order
    assert "diverged" in format_table(rows).splitlines()[3]


def test_a_failing_candidate_is_a_row_with_its_reason_not_a_failed_search(smooth):
    # a memory check that only the fit can make (the layer widths pass every setting's rule)
    space = parse_space(["hidden=4,2000000x2000000"])
    rows = run_search(*smooth, space, task="regression", base_params={"epochs": 1})
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[1]["reason"].startswith("DeviceMemoryError: the model's 4,000,010,000,001 parameters need")
    assert "failed" in format_table(rows).splitlines()[2]


def test_empty_space_runs_the_base_parameters(smooth):
    rows = run_search(*smooth, {}, task="regression", base_params={"hidden": (8,), "epochs": 3})
    assert len(rows) == 1 and rows[0]["params"] == {} and rows[0]["epochs"] == 3
    assert "(base parameters)" in format_table(rows)


@pytest.mark.parametrize(
    "space, kw, match",
    [
        ({"lr": [0.1]}, {"mode": "exhaustive"}, "unknown search mode"),
        ({"lr": [0.1]}, {"task": "ranking"}, "unknown search task"),
        ({"lr": [0.1]}, {"mode": "random", "n_iter": 0}, "n_iter must be a positive integer, got 0: pass e.g."),
        ({"activation": ["relu", "relux"]}, {}, "activation"),
        ({"lr": [0.1, -1.0]}, {}, "learning rate"),
        ({"schedule": ["step"], "gamma": [0.5, 0.0]}, {}, "gamma"),
        ({"lr": [0.1]}, {"base_params": {"hidden_layer_sizes": (8,)}}, "unknown MLPRegressor parameter"),
        ({"label_smoothing": [0.1]}, {}, "unknown MLPRegressor parameter.*label_smoothing.*: drop them"),
        ({"lr": 0.1}, {}, "non-empty list"),
    ],
)
def test_bad_searches_fail_before_training(smooth, no_training, space, kw, match):
    # The bad candidate comes last where there is one: nothing may train before the error.
    with pytest.raises(ConfigError, match=match):
        run_search(*smooth, space, **{"task": "regression", **kw})


def test_the_no_training_fixture_catches_a_fit(smooth, no_training):
    with pytest.raises(TrainingStarted, match="started training"):
        run_search(*smooth, {"lr": [0.1]}, task="regression")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda Xv, yv: (Xv[:, :1], yv), "X_val has 1 features but the model expects 2"),
        (lambda Xv, yv: (np.where(np.arange(Xv.size).reshape(Xv.shape) == 3, np.nan, Xv), yv), "X_val contains NaN"),
        (lambda Xv, yv: (Xv, yv[:-1]), "y_val has 99 entries but X_val has 100 samples"),
        (lambda Xv, yv: (Xv, np.column_stack([yv, yv])), "y_val has shape .* outputs"),
        (lambda Xv, yv: (Xv, np.where(np.arange(len(yv)) == 0, np.inf, yv)), "y_val contains NaN or Inf"),
        (lambda Xv, yv: (Xv, np.array(["a"] * len(yv))), "y_val has dtype"),
    ],
)
def test_bad_regression_validation_data_fails_before_training(smooth, no_training, change, match):
    X_train, y_train, X_val, y_val = smooth
    with pytest.raises(DataError, match=match):
        run_search(X_train, y_train, *change(X_val, y_val), {"lr": [0.1]}, task="regression")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda Xv, yv: (Xv[:, :10], yv), "X_val has 10 features but the model expects 64"),
        (lambda Xv, yv: (Xv, yv[:10]), "y_val has 10 entries but X_val has .* samples: pass"),
        (
            lambda Xv, yv: (Xv, np.where(yv == 9, 42, yv)),
            r"y_val has 1 class label\(s\) that y_train lacks \(42\).*: split",
        ),
        (lambda Xv, yv: (Xv, np.column_stack([yv, yv])), "y_val has shape .*: pass 1-D validation labels"),
    ],
)
def test_bad_classification_validation_data_fails_before_training(digits, no_training, change, match):
    X_train, y_train, X_val, y_val = digits
    with pytest.raises(DataError, match=match):
        run_search(X_train, y_train, *change(X_val, y_val), {"lr": [0.1]})


def test_bad_multilabel_validation_data_fails_before_training(no_training):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.integers(0, 2, (20, 4))
    with pytest.raises(DataError, match="y_val has shape .* 4 outputs"):
        run_search(X, Y, X, Y[:, :3], {"lr": [0.1]})
    with pytest.raises(DataError, match="y_val has values outside"):
        run_search(X, Y, X, Y * 2, {"lr": [0.1]})


def test_validation_labels_as_a_column_and_strings_are_accepted(no_training):
    X = np.eye(4)
    y = np.array(["a", "b", "a", "b"])
    with pytest.raises(TrainingStarted, match="started training"):  # the checks passed, training began
        run_search(X, y, X, y[:, None], {"lr": [0.1]})


def test_estimator_param_names_match_the_estimators():
    assert estimator_param_names("classification") == set(MLPClassifier().get_params())
    assert estimator_param_names("regression") == set(MLPRegressor().get_params())
    only_classification = estimator_param_names("classification") - estimator_param_names("regression")
    assert only_classification == {"label_smoothing", "class_weight"}
    assert {"step_size", "gamma", "min_lr", "drop_last"} <= estimator_param_names("regression")
    with pytest.raises(ConfigError, match="unknown search task 'ranking': use one of"):
        estimator_param_names("ranking")


def test_grid_search_refuses_distributions(smooth):
    with pytest.raises(ConfigError, match="random search"):
        run_search(*smooth, parse_space(["lr=loguniform:1e-3:1e-1"]), mode="grid", task="regression")


def test_format_table_aligns_columns():
    rows = [
        {
            "rank": 1,
            "params": {"hidden": (128, 64), "lr": 0.05},
            "score": 0.96123,
            "fit_seconds": 12.5,
            "epochs": 10,
            "status": "ok",
        },
        {
            "rank": 2,
            "params": {"hidden": (), "lr": 1e-06},
            "score": float("nan"),
            "fit_seconds": 0.4,
            "epochs": 0,
            "status": "diverged",
        },
    ]
    lines = format_table(rows).splitlines()
    assert lines[1].split() == ["1", "0.9612", "10", "12.50", "hidden=128x64", "lr=0.05"]
    assert lines[2].split() == ["2", "diverged", "0", "0.40", "hidden=none", "lr=1e-06"]
    assert {line.index("hidden=") for line in lines[1:]} == {lines[0].index("params")}


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 70, np.nan, X), y), r"X_train contains NaN or"),
        (lambda X, y: (X, y[:-1]), "y_train has 799 entries but X_train has 800 samples"),
        (lambda X, y: (X.ravel(), y), "X_train must be 2-D"),
    ],
)
def test_unusable_training_data_is_one_error_before_any_fit(digits, change, match, no_training):
    """Found by a new user: NaN in X_train failed every candidate one by one with scikit-learn's message, and the
    search returned normally. It is now one DataError before the first fit, as for X_val."""
    X_train, y_train, X_val, y_val = digits
    with pytest.raises(DataError, match=match):
        run_search(*change(X_train, y_train), X_val, y_val, {"lr": [0.1, 0.2]}, base_params={"epochs": 1})
