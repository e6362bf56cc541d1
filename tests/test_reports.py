"""mlp-xp evaluate's report: per-class precision, recall, F1 and the confusion matrix, or MSE, MAE and R^2, equal to
scikit-learn's own functions on the model's predictions; --json and --plot."""

import json

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.reports import classification_report, format_report, regression_report

from .cli_runner import run

metrics = pytest.importorskip("sklearn.metrics")


def test_classification_report_equals_scikit_learns():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    pred[:5] = 3  # class 3 over-predicted; no row of class 2 predicted right in a few
    r = classification_report(y, pred, ["a", "b", "c", "d"])
    p, rc, f, s = metrics.precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    for i, c in enumerate(r["classes"]):
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == (p[i], rc[i], f[i], s[i])
    assert r["confusion_matrix"] == metrics.confusion_matrix(y, pred).tolist()
    assert r["accuracy"] == metrics.accuracy_score(y, pred)
    assert r["averages"]["macro"]["f1"] == metrics.f1_score(y, pred, average="macro")
    assert r["averages"]["weighted"]["recall"] == metrics.recall_score(y, pred, average="weighted")
    text = format_report(r)
    assert "macro avg" in text and "confusion matrix" in text


def test_a_class_never_predicted_has_zero_precision_not_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = classification_report(np.array([0, 1, 2]), np.array([0, 1, 1]), ["x", "y", "z"])
    assert r["classes"][2]["precision"] == 0.0 and r["confusion_matrix"][2] == [0, 1, 0]


def test_regression_report_equals_scikit_learns():
    rng = np.random.default_rng(1)
    y, pred = rng.normal(size=50), rng.normal(size=(50, 1))
    r = regression_report(y, pred)
    assert r["mse"] == metrics.mean_squared_error(y, pred[:, 0])
    assert r["mae"] == metrics.mean_absolute_error(y, pred[:, 0])
    assert r["r2"] == metrics.r2_score(y, pred[:, 0])


def test_evaluate_prints_and_writes_the_report_and_draws_the_matrix(tmp_path, capsys):
    model, report, plot = tmp_path / "m.npz", tmp_path / "r.json", tmp_path / "cm.png"
    code, _, err = run(capsys, f"train --data digits --hidden 32 --epochs 3 --device cpu --quiet --save {model}")
    assert code == 0, err
    code, out, err = run(capsys, f"evaluate {model} --device cpu --json {report} --plot {plot}")
    assert code == 0, err
    got = json.loads(report.read_text())
    from mlp_xp.data import load_dataset

    ds = load_dataset("digits")
    pred = MLP.load(model, device="cpu").predict(ds.X_test)
    assert got["report"]["confusion_matrix"] == metrics.confusion_matrix(ds.y_test, pred).tolist()
    assert got["scores"]["accuracy"] == pytest.approx(metrics.accuracy_score(ds.y_test, pred), abs=1e-12)
    f1 = metrics.f1_score(ds.y_test, pred, average=None)
    np.testing.assert_array_equal([c["f1"] for c in got["report"]["classes"]], f1)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "precision  recall" in out and "weighted avg" in out


def test_evaluate_refuses_a_plot_for_a_regressor_and_a_bad_json_path(tmp_path, capsys):
    model = MLP([64, 4, 1], loss="mse", device="cpu")
    model.save(tmp_path / "r.npz")
    code, _, err = run(capsys, f"evaluate {tmp_path / 'r.npz'} --plot {tmp_path / 'x.png'} --device cpu")
    assert code == 2 and "this model is a regressor" in err
    code, _, err = run(capsys, f"evaluate {tmp_path / 'r.npz'} --json {tmp_path / 'no' / 'r.json'} --device cpu")
    assert code == 2 and "does not exist" in err
