"""Tables in: CSV and Parquet read with pandas and pyarrow, the stored preprocessing (standardized numbers,
one-hot categories, fitted on the training rows only), string class labels, and their errors."""

import json

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.data.preprocess import LabelVocabulary, TablePreprocessor
from mlp_xp.errors import DataError
from mlp_xp.trainer import preprocess_split, split_validation, validation_rows

from .cli_runner import run

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def small_frame():
    return pd.DataFrame(
        {
            "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "colour": ["red", "blue", "red", "green", "blue", "red"],
            "flag": [True, False, True, True, False, False],
        }
    )


def test_preprocessor_standardizes_and_one_hot_encodes_by_hand():
    p = TablePreprocessor().fit(small_frame())
    assert p.columns == ["size", "colour", "flag"]
    assert p.numeric == ["size", "flag"] and p.categories == {"colour": ["blue", "green", "red"]}
    assert p.feature_names_out() == ["size", "colour=blue", "colour=green", "colour=red", "flag"]
    X = p.transform(small_frame())
    # size: mean 3.5, population std sqrt(17.5 / 6)
    np.testing.assert_allclose(X[:, 0], (np.arange(1, 7) - 3.5) / np.sqrt(17.5 / 6), rtol=1e-15)
    np.testing.assert_array_equal(X[:, 1:4], [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(X[:, 4], np.array([1, -1, 1, 1, -1, -1]), rtol=1e-15)  # mean 1/2, std 1/2


def test_constant_column_scales_by_one_and_given_categorical_columns():
    frame = pd.DataFrame({"k": [7, 7, 7], "code": [10, 20, 10]})
    p = TablePreprocessor(categorical=["code"]).fit(frame)
    assert p.scale[0] == 1.0 and p.categories == {"code": ["10", "20"]}
    np.testing.assert_array_equal(p.transform(frame), [[0, 1, 0], [0, 0, 1], [0, 1, 0]])


def test_unseen_category_is_zeros_and_counted_or_an_error():
    p = TablePreprocessor().fit(small_frame())
    X = p.transform(pd.DataFrame({"size": [1.0, 2.0], "colour": ["violet", "red"], "flag": [True, True]}))
    np.testing.assert_array_equal(X[:, 1:4], [[0, 0, 0], [0, 0, 1]])
    assert p.unknown_seen == {"colour": 1}
    strict = TablePreprocessor(unknown="error").fit(small_frame())
    with pytest.raises(DataError, match=r"column colour holds categories unseen in training \('violet'"):
        strict.transform(pd.DataFrame({"size": [1.0], "colour": ["violet"], "flag": [True]}))


def test_missing_values_name_the_columns_and_rows():
    frame = small_frame()
    frame.loc[1, "size"] = np.nan
    frame.loc[[1, 3], "colour"] = None
    with pytest.raises(DataError, match=r"in size \(1 row\), colour \(2 rows\); 2 rows in all \(data rows 1, 3, "):
        TablePreprocessor().fit(frame)


def test_missing_column_at_transform_time():
    p = TablePreprocessor().fit(small_frame())
    with pytest.raises(DataError, match="lacks the column flag that the model was trained with"):
        p.transform(small_frame().drop(columns="flag"))


def test_preprocessing_is_fitted_on_the_training_rows_only():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=50), "c": rng.choice(["a", "b"], 50)})
    y = rng.integers(0, 2, 50)
    train, val = validation_rows(50, 0.2, 7)
    X_tr, y_tr, X_val, y_val = preprocess_split(p := TablePreprocessor(), frame, y, 0.2, 7)
    assert p.mean[0] == pytest.approx(frame["x"].iloc[train].mean(), rel=1e-14)
    assert p.mean[0] != pytest.approx(frame["x"].mean(), rel=1e-6)
    np.testing.assert_array_equal(y_val, y[val])
    # the same rows as the trainer's own validation split
    _, _, _, y_val2 = split_validation(np.zeros((50, 1)), y, 0.2, 7)
    np.testing.assert_array_equal(y_val, y_val2)
    # a validation row's value moves nothing the preprocessing learned
    changed = frame.copy()
    changed.loc[val[0], "x"] = 1e6
    preprocess_split(q := TablePreprocessor(), changed, y, 0.2, 7)
    assert q.mean[0] == p.mean[0] and q.scale[0] == p.scale[0]


def test_label_vocabulary_round_trip_and_unknown_label():
    v = LabelVocabulary.fit(np.array(["no", "yes", "no", "maybe"], dtype=object))
    assert v.to_json() == ["maybe", "no", "yes"]
    np.testing.assert_array_equal(v.encode(["yes", "maybe"]), [2, 0])
    np.testing.assert_array_equal(v.decode([1, 2]), ["no", "yes"])
    with pytest.raises(DataError, match=r"labels the training data lack \('perhaps'"):
        v.encode(["perhaps"])
    with pytest.raises(DataError, match="at least 2 classes"):
        LabelVocabulary.fit(["one", "one"])


def _table_model(tmp_path, suffix):
    frame = small_frame()
    p = TablePreprocessor().fit(frame)
    model = MLP([p.n_features_out, 4, 3], device="cpu", seed=1)
    model.preprocessing, model.labels, model.target = p, LabelVocabulary(np.array(["a", "b", "c"])), "kind"
    path = tmp_path / f"m{suffix}"
    model.save(path)
    return model, path, frame


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_model_file_keeps_preprocessing_labels_and_target(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model, path, frame = _table_model(tmp_path, suffix)
    back = MLP.load(path, device="cpu")
    assert back.target == "kind" and back.labels.to_json() == ["a", "b", "c"]
    np.testing.assert_array_equal(back.preprocessing.mean, model.preprocessing.mean)
    np.testing.assert_array_equal(back.preprocessing.scale, model.preprocessing.scale)
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))
    assert set(back.predict(frame)) <= {"a", "b", "c"}
    if suffix == ".npz":  # the statistics as plain arrays beside the weights
        with np.load(path) as z:
            np.testing.assert_array_equal(z["preprocessing.mean.npy".removesuffix(".npy")], model.preprocessing.mean)
            meta = json.loads(z["metadata"].tobytes())
        assert meta["preprocessing"]["categories"] == {"colour": ["blue", "green", "red"]}


def test_damaged_stored_preprocessing_is_a_model_file_error(tmp_path):
    from mlp_xp.errors import ModelFileError
    from mlp_xp.serialization import load_arrays, save_arrays

    _, path, _ = _table_model(tmp_path, ".npz")
    meta, arrays = load_arrays(path)
    arrays["preprocessing.mean"] = arrays["preprocessing.mean"][:1]
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
    save_arrays(path, meta, arrays)
    with pytest.raises(ModelFileError, match="stored preprocessing is damaged"):
        MLP.load(path, device="cpu")


@pytest.fixture
def breast_cancer(tmp_path):
    """scikit-learn's breast-cancer table plus a categorical column, as a training CSV and a held-out CSV."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer(as_frame=True)
    df = d.frame.drop(columns="target")
    rng = np.random.default_rng(0)
    # a categorical column that carries signal: a coarse size band of the mean radius, as text
    df["size band"] = pd.cut(df["mean radius"], [0, 12, 16, 100], labels=["small", "medium", "large"]).astype(str)
    df["clinic"] = rng.choice(["north", "south", "east"], len(df))
    df["diagnosis"] = np.where(d.target == 1, "benign", "malignant")
    order = rng.permutation(len(df))
    train, held_out = tmp_path / "train.csv", tmp_path / "held_out.csv"
    df.iloc[order[:450]].to_csv(train, index=False)
    df.iloc[order[450:]].to_csv(held_out, index=False)
    return train, held_out, df.iloc[order[450:]]


def test_breast_cancer_csv_from_the_command_line_predicts_raw_rows(tmp_path, capsys, breast_cancer):
    train, held_out, rows = breast_cancer
    model = tmp_path / "bc.npz"
    code, out, err = run(
        capsys,
        f"train --data {train} --target diagnosis --hidden 64 --epochs 30 --early-stopping --device cpu --quiet "
        f"--save {model}",
    )
    assert code == 0, err
    assert "33 features" not in err and "train.csv[diagnosis]" in err  # 30 numbers + 3 bands + 3 clinics = 36
    assert "36 features, 2 classes" in err and "validation rows held out before fitting" in err
    predictions = tmp_path / "pred.csv"
    code, _, err = run(capsys, f"predict {model} --input {held_out} --output {predictions} --device cpu")
    assert code == 0, err
    got = pd.read_csv(predictions)["diagnosis"].to_numpy()
    accuracy = float((got == rows["diagnosis"].to_numpy()).mean())
    assert accuracy >= 0.93, accuracy
    loaded = MLP.load(model, device="cpu")
    assert loaded.preprocessing.categories["size band"] == ["large", "medium", "small"]
    np.testing.assert_array_equal(loaded.predict(rows.drop(columns="diagnosis")), got)


def test_parquet_with_test_file_and_string_labels(tmp_path, capsys, breast_cancer):
    train, held_out, _ = breast_cancer
    pq = tmp_path / "train.parquet"
    pd.read_csv(train).to_parquet(pq)
    code, out, err = run(
        capsys,
        f"train --data {pq} --target diagnosis --test {held_out} --features mean_radius --device cpu --quiet",
    )
    assert code == 2 and "has no column mean_radius" in err
    code, out, err = run(
        capsys,
        f"train --data {pq} --target diagnosis --test {held_out} --hidden 32 --epochs 20 --device cpu --quiet",
    )
    assert code == 0, err
    assert "train.parquet[diagnosis]: 450 train / 119 test" in err
    assert float(out.split("test_accuracy ")[1].split("%")[0]) >= 93


def test_test_fraction_is_stratified_and_evaluate_finds_the_same_rows(tmp_path, capsys, breast_cancer):
    train, _, _ = breast_cancer
    model, report = tmp_path / "m.npz", tmp_path / "r.json"
    code, out, err = run(
        capsys,
        f"train --data {train} --target diagnosis --test-fraction 0.25 --data-seed 3 --hidden 32 --epochs 15 "
        f"--device cpu --quiet --save {model}",
    )
    assert code == 0, err
    test_acc = float(out.split("test_accuracy ")[1].split("%")[0]) / 100
    code, out, err = run(
        capsys, f"evaluate {model} --data {train} --test-fraction 0.25 --data-seed 3 --device cpu --json {report}"
    )
    assert code == 0, err
    scored = json.loads(report.read_text())
    assert scored["scores"]["accuracy"] == pytest.approx(test_acc, abs=5e-5)  # printed to 0.01%
    frame = pd.read_csv(train)
    share = (frame["diagnosis"] == "malignant").mean()
    support = {c["label"]: c["support"] for c in scored["report"]["classes"]}
    assert support["malignant"] / sum(support.values()) == pytest.approx(share, abs=0.01)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "is a table: name the column to predict with --target COLUMN"),
        ("--target nope", "has no column 'nope' to predict"),
        ("--target diagnosis --loss mse", "is not numeric (e.g. 'benign'), but regression (--loss mse) needs numbers"),
        ("--target diagnosis --features diagnosis", "--features includes the target column"),
        ("--target diagnosis --test-fraction 1.5", "--test-fraction"),
        ("--target diagnosis --test x.csv --test-fraction 0.2", "give one of them"),
        ("--target diagnosis --classes 3", "--classes applies to class labels"),
    ],
)
def test_table_errors_are_one_line_before_training(tmp_path, capsys, breast_cancer, extra, message):
    train, _, _ = breast_cancer
    code, _, err = run(capsys, f"train --data {train} {extra} --device cpu --quiet")
    assert code == 2, err
    assert message in err and err.count("\n") == 1, err


def test_nan_cells_are_named(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,x,0\n,y,1\n3,,0\n4,x,1\n")
    code, _, err = run(capsys, f"train --data {path} --target y --device cpu --quiet")
    assert code == 2 and "in a (1 row), b (1 row); 2 rows in all" in err


def test_table_flags_refused_for_other_data(capsys):
    code, _, err = run(capsys, "train --data digits --target y --device cpu")
    assert code == 2 and "--target applies to tables: give --data FILE.csv" in err


def test_regression_on_a_table_and_its_report(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    c = rng.choice(["p", "q"], n)
    y = 2 * x + np.where(c == "p", 1.0, -1.0) + 0.05 * rng.normal(size=n)
    path, model, report = tmp_path / "r.csv", tmp_path / "r.npz", tmp_path / "r.json"
    pd.DataFrame({"x": x, "c": c, "y": y}).to_csv(path, index=False)
    code, out, err = run(
        capsys,
        f"train --data {path} --target y --loss mse --hidden 16 --epochs 40 --lr 0.01 --device cpu --quiet "
        f"--save {model}",
    )
    assert code == 0, err
    code, out, err = run(capsys, f"evaluate {model} --data {path} --device cpu --json {report}")
    assert code == 0, err
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    pred = MLP.load(model, device="cpu").predict(pd.read_csv(path))
    got = json.loads(report.read_text())["report"]
    assert got["mse"] == pytest.approx(mean_squared_error(y, pred), rel=1e-9)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-9)
    assert got["r2"] == pytest.approx(r2_score(y, pred), rel=1e-9) and got["r2"] > 0.95
    assert "MSE" in out and "R^2" in out


def test_estimator_preprocessing_auto_on_a_dataframe(breast_cancer):
    from sklearn.base import clone

    from mlp_xp.estimator import MLPClassifier

    train, held_out, _ = breast_cancer
    tr, te = pd.read_csv(train), pd.read_csv(held_out)
    X, y = tr.drop(columns="diagnosis"), tr["diagnosis"]
    clf = MLPClassifier(hidden=(32,), epochs=20, preprocessing="auto", early_stopping=True).fit(X, y)
    assert clf.n_features_in_ == 32 and list(clf.feature_names_in_[-2:]) == ["size band", "clinic"]
    assert clf.model_.preprocessing.n_features_out == 36
    assert clf.score(te.drop(columns="diagnosis"), te["diagnosis"]) >= 0.93
    assert set(clf.predict(te.drop(columns="diagnosis"))) == {"benign", "malignant"}
    assert clone(clf).get_params()["preprocessing"] == "auto"
    with pytest.raises(DataError, match=r"not numbers \(size band, clinic\): pass preprocessing='auto'"):
        MLPClassifier(epochs=1).fit(X, y)


def test_onnx_of_a_table_model_names_its_features_and_labels(tmp_path):
    onnx = pytest.importorskip("onnx")
    model, path, _ = _table_model(tmp_path, ".npz")
    model.to_onnx(tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert props == {
        "mlp_xp.features": ["size", "colour=blue", "colour=green", "colour=red", "flag"],
        "mlp_xp.labels": ["a", "b", "c"],
    }


def test_a_float_target_is_not_taken_as_classes(tmp_path, capsys, breast_cancer):
    train, _, _ = breast_cancer
    code, _, err = run(capsys, ["train", "--data", str(train), "--target", "mean radius", "--device", "cpu"])
    assert code == 2 and "holds non-integer numbers (e.g. " in err and "use --loss mse to predict it" in err
    assert "np.float64" not in err  # (the number, not its repr)


def test_whole_numbers_with_few_rows_a_value_train_as_classes_with_a_warning(tmp_path, capsys):
    """scikit-learn's diabetes target: whole numbers, 214 values in 442 rows. Classes, as asked, but said."""
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{a:.3f},{t}" for a, t in zip(rng.random(200), rng.integers(25, 346, 200)))
    path = tmp_path / "d.csv"
    path.write_text("a,target\n" + rows + "\n")
    code, _, err = run(capsys, ["train", "--data", str(path), "--target", "target", "--epochs", "1", "--device", "cpu"])
    assert (
        code == 0
        and "warning: the target column 'target' of " in err
        and "if it is a quantity to predict, use --loss mse" in err
    )
    few = tmp_path / "c.csv"
    few.write_text(
        "a,target\n" + "\n".join(f"{a:.3f},{t}" for a, t in zip(rng.random(200), rng.integers(0, 5, 200))) + "\n"
    )
    code, _, err = run(capsys, ["train", "--data", str(few), "--target", "target", "--epochs", "1", "--device", "cpu"])
    assert code == 0 and "warning" not in err  # (5 classes of 40 rows each: classes)
    letters = tmp_path / "l.csv"  # 26 classes coded 0..25 in 130 rows: numbered classes, not a quantity
    letters.write_text("a,target\n" + "\n".join(f"{a:.3f},{t % 26}" for t, a in enumerate(rng.random(130))) + "\n")
    code, _, err = run(
        capsys, ["train", "--data", str(letters), "--target", "target", "--epochs", "1", "--device", "cpu"]
    )
    assert code == 0 and "warning" not in err


def test_a_number_column_with_a_typo_is_refused_unless_declared_categorical(tmp_path, capsys):
    path = tmp_path / "t.csv"
    rows = "\n".join(f"{i * 0.5},{i % 2}" for i in range(20))
    path.write_text("x,y\n" + rows.replace("3.0,0", "abc,0", 1) + "\n")
    code, _, err = run(capsys, f"train --data {path} --target y --device cpu --quiet --epochs 1")
    assert code == 2, err
    assert "column x holds numbers but for 1 cell (the first: 'abc', data row 6): fix it, or treat" in err
    code, _, err = run(capsys, f"train --data {path} --target y --categorical x --device cpu --quiet --epochs 1")
    assert code == 0, err
    code, _, err = run(capsys, f"train --data {path} --target y --categorical z --device cpu --quiet --epochs 1")
    assert code == 2 and "--categorical z: not among the feature columns (x)" in err


def test_a_numeric_column_with_text_at_predict_time_names_the_cell(tmp_path, capsys):
    model = MLP([1, 3, 2], device="cpu")
    model.preprocessing = TablePreprocessor().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}))
    with pytest.raises(DataError, match=r"column x was numeric in training but holds 'abc' in data row 2 here"):
        model.predict(pd.DataFrame({"x": ["1.5", "2", "abc"]}))


@pytest.fixture
def diabetes(tmp_path):
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False)
    frame = d.frame.rename(columns={"target": "progression"})
    frame["sex"] = frame["sex"].map({1.0: "f", 2.0: "m"})
    order = np.random.default_rng(1).permutation(len(frame))
    train, test = tmp_path / "dtrain.csv", tmp_path / "dtest.csv"
    frame.iloc[order[:350]].to_csv(train, index=False)
    frame.iloc[order[350:]].to_csv(test, index=False)
    return train, test, frame.iloc[order[350:]]


def test_regression_target_is_standardized_and_predictions_are_in_its_units(tmp_path, capsys, diabetes):
    from sklearn.metrics import mean_squared_error, r2_score

    train, test, rows = diabetes
    model, report = tmp_path / "d.npz", tmp_path / "d.json"
    # raw targets of 25..346 diverge at the default learning rate unless they are standardized
    code, _, err = run(
        capsys,
        f"train --data {train} --target progression --loss mse --hidden 16 --epochs 30 --device cpu "
        f"--quiet --save {model}",
    )
    assert code == 0, err
    assert "target standardized (mean " in err
    m = MLP.load(model, device="cpu")
    pred = m.predict(rows.drop(columns="progression"))
    truth = rows["progression"].to_numpy()
    assert r2_score(truth, pred) > 0.3, r2_score(truth, pred)
    code, out, err = run(capsys, f"evaluate {model} --data {test} --device cpu --json {report}")
    assert code == 0, err
    got = json.loads(report.read_text())
    assert got["report"]["mse"] == pytest.approx(mean_squared_error(truth, pred), rel=1e-6)
    # the evaluate line's mse (the trainer's, in standardized units, scaled back) is the same number
    assert got["scores"]["mse"] == pytest.approx(got["report"]["mse"], rel=1e-4)
    onnxruntime = pytest.importorskip("onnxruntime")
    m.to_onnx(tmp_path / "d.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"))
    encoded = m.preprocessing.transform(rows.drop(columns="progression"), np.float32)
    (onnx_pred,) = session.run(None, {"input": encoded})
    np.testing.assert_allclose(onnx_pred[:, 0], pred, rtol=1e-5)


def test_semicolon_csv_and_quoted_feature_names(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    lines = ["sepal, width;länge;espèce"] + [f"{i % 7};{i % 5};{'ab'[i % 2]}" for i in range(40)]
    path.write_text("\n".join(['"sepal, width";länge;espèce', *lines[1:]]) + "\n", encoding="utf-8")
    code, _, err = run(
        capsys,
        [
            "train",
            "--data",
            str(path),
            "--target",
            "espèce",
            "--features",
            '"sepal, width",länge',
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            "1",
        ],
    )
    assert code == 0, err
    assert "semi.csv[espèce]: 40 train / no test, 2 features, 2 classes" in err


def test_missing_cells_of_a_test_file_name_the_file(tmp_path, capsys, breast_cancer):
    train, held_out, _ = breast_cancer
    broken = tmp_path / "broken.csv"
    frame = pd.read_csv(held_out)
    frame.loc[4, "mean area"] = np.nan
    frame.to_csv(broken, index=False)
    code, _, err = run(capsys, f"train --data {train} --target diagnosis --test {broken} --device cpu")
    assert code == 2 and f"{broken} has missing values" in err and "data row 4," in err


def test_evaluate_target_that_is_a_feature_is_refused(tmp_path, capsys, breast_cancer):
    train, held_out, _ = breast_cancer
    model = tmp_path / "m.npz"
    assert (
        run(capsys, f"train --data {train} --target diagnosis --epochs 1 --device cpu --quiet --save {model}")[0] == 0
    )
    code, _, err = run(capsys, f"evaluate {model} --data {held_out} --target clinic --device cpu")
    assert code == 2 and "takes 'clinic' as a feature and predicts 'diagnosis'" in err


def test_a_column_of_mostly_unique_text_draws_a_warning(tmp_path, capsys):
    path = tmp_path / "ids.csv"
    pd.DataFrame({"id": [f"p{i}" for i in range(60)], "x": np.arange(60.0), "y": [0, 1] * 30}).to_csv(path, index=False)
    code, _, err = run(capsys, f"train --data {path} --target y --epochs 1 --device cpu --quiet")
    assert code == 0
    assert "mlp-xp: warning: column id has 60 distinct values in 60 rows, one-hot encoded as 60 features" in err


def test_integer_labels_and_binary_cross_entropy_keep_their_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    path, model, report = tmp_path / "b.csv", tmp_path / "b.npz", tmp_path / "b.json"
    pd.DataFrame({"x": x, "grade": np.where(x > 0, 4, 2)}).to_csv(path, index=False)
    code, _, err = run(
        capsys,
        f"train --data {path} --target grade --loss binary_cross_entropy --epochs 20 --device cpu --quiet "
        f"--save {model}",
    )
    assert code == 0, err
    assert "b.csv[grade]: 200 train / no test, 1 features, 2 classes" in err
    code, _, err = run(capsys, f"evaluate {model} --data {path} --device cpu --json {report}")
    assert code == 0, err
    assert json.loads(report.read_text())["report"]["labels"] == [2, 4]
    assert set(MLP.load(model, device="cpu").predict(pd.read_csv(path))) == {2, 4}


def test_a_table_model_given_an_array_of_another_width_asks_for_its_columns():
    """Found by a new user: "X has 2 features but the model expects 4", the encoded width, for a model trained on
    a table of the columns a and b."""
    from mlp_xp.estimator import MLPClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.random(40), "b": rng.choice(["x", "y", "z"], 40)})
    clf = MLPClassifier(hidden=(8,), epochs=2, preprocessing="auto").fit(frame, rng.integers(0, 2, 40))
    with pytest.raises(DataError) as e:
        clf.model_.predict(np.ones((3, 2)))
    assert str(e.value) == (
        "X has 2 features, but this model was trained on a table of 2 columns (a, b), which it encodes into 4: pass "
        "a DataFrame of those columns"
    )
    assert clf.model_.predict(frame[:3]).shape == (3,)


def test_a_table_on_a_pipe_is_refused_not_waited_on(tmp_path):
    """`--data fifo.csv` waited forever for a writer (and a pipe's rows could not be read twice, header first)."""
    import os

    from mlp_xp.data.tables import table_columns

    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError) as e:
        table_columns(fifo)  # (the first read of every table path)
    assert str(e.value) == f"{fifo} is a named pipe (FIFO), not a table file: write the table to a file first"


def test_numeric_headers_are_headers_and_rows_of_numbers_are_not(tmp_path):
    """The header check (a CSV without one lost its first row in predict) first refused pandas' default to_csv, whose
    index column has an empty name, and integer names other than 0..d-1; a review found both."""
    from mlp_xp.data.tables import table_columns

    rng = np.random.default_rng(0)
    p = tmp_path / "t.csv"
    pd.DataFrame(rng.random((5, 3))).to_csv(p)  # (index=True, pandas' default: the first name is empty)
    assert table_columns(p) == ["Unnamed: 0", "0", "1", "2"]
    for names in ([2019, 2020, 2021], [0, 1, 2, 4], [3, 1, 2]):
        pd.DataFrame(rng.random((5, 3)) if len(names) == 3 else rng.random((5, 4)), columns=names).to_csv(
            p, index=False
        )
        assert table_columns(p) == [str(n) for n in names]
    for row, shown in (("0,0,255,12", "0, 0, 255, 12"), ("0.5,,0.25", "0.5, , 0.25")):  # (repeats; a fraction)
        p.write_text(f"{row}\n1,2,3,4\n")
        with pytest.raises(DataError, match=rf"begins with a row of numbers \({shown}\), not a header line"):
            table_columns(p)
