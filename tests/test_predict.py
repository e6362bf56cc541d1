"""mlp-xp predict: every input kind, labels and probabilities, outputs written whole, and bounded memory."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.data.idx import write_idx

from .cli_runner import run

pd = pytest.importorskip("pandas")


@pytest.fixture
def images_model(tmp_path):
    model = MLP([16, 8, 3], device="cpu", seed=2)
    path = tmp_path / "m.npz"
    model.save(path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 4, 4), dtype=np.uint8)
    return model, path, images


def _written(path):
    return np.load(path) if str(path).endswith(".npy") else pd.read_csv(path).to_numpy()


@pytest.mark.parametrize("kind", ["npy", "npz-X", "npz-X_test", "csv", "parquet", "idx", "idx.gz"])
@pytest.mark.parametrize("out", ["csv", "npy"])
def test_every_input_kind_gives_the_models_predictions(tmp_path, capsys, images_model, kind, out):
    model, path, images = images_model
    X = images.reshape(len(images), -1) / np.float32(255)
    src = tmp_path / f"in.{kind}"
    if kind == "npy":
        np.save(src, X)
    elif kind.startswith("npz"):
        src = tmp_path / "in.npz"
        np.savez(src, **{kind.split("-")[1]: X})
    elif kind in ("csv", "parquet"):
        frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(16)])
        frame.to_csv(src, index=False) if kind == "csv" else frame.to_parquet(src)
    else:
        src = tmp_path / ("images-idx3-ubyte" + (".gz" if kind.endswith("gz") else ""))
        write_idx(src, images)
    dst = tmp_path / f"pred.{out}"
    code, _, err = run(capsys, f"predict {path} --input {src} --output {dst} --batch-size 10 --device cpu")
    assert code == 0, err
    assert "wrote predictions for 37 rows" in err
    np.testing.assert_array_equal(_written(dst).reshape(-1), model.predict(X))
    code, _, err = run(capsys, f"predict {path} --input {src} --output {dst} --proba --batch-size 10 --device cpu")
    assert code == 0, err
    got = _written(dst)
    # the same batches as predict's: the same GEMM shapes, the same rounding (9 digits hold a float32 exactly)
    np.testing.assert_array_equal(got.astype(np.float32), model.predict_proba(X, batch_size=10))
    if out == "csv":
        assert list(pd.read_csv(dst).columns) == ["0", "1", "2"]


def test_string_labels_and_probability_columns_by_label(tmp_path, capsys):
    from mlp_xp.data.preprocess import LabelVocabulary, TablePreprocessor

    frame = pd.DataFrame({"x": np.linspace(-1, 1, 20), "c": ["a", "b"] * 10})
    model = MLP([3, 4, 3], device="cpu")
    model.preprocessing = TablePreprocessor().fit(frame)
    model.labels, model.target = LabelVocabulary(np.array(["cat", "dog", "eel"])), "animal"
    path, src = tmp_path / "m.npz", tmp_path / "rows.csv"
    model.save(path)
    frame.assign(animal="ignored").to_csv(src, index=False)  # a target column in the input is ignored
    for flags, columns in (("", ["animal"]), ("--proba", ["cat", "dog", "eel"])):
        code, _, err = run(capsys, f"predict {path} --input {src} --output {tmp_path / 'o.csv'} {flags} --device cpu")
        assert code == 0, err
        got = pd.read_csv(tmp_path / "o.csv")
        assert list(got.columns) == columns
    np.testing.assert_allclose(got.to_numpy(), model.predict_proba(frame), rtol=1e-6)
    code, _, err = run(capsys, f"predict {path} --input {src} --output {tmp_path / 'o.npy'} --device cpu")
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), model.predict(frame))
    assert np.load(tmp_path / "o.npy").dtype.kind == "U"


def test_unseen_categories_are_reported(tmp_path, capsys):
    from mlp_xp.data.preprocess import TablePreprocessor

    model = MLP([3, 4, 2], device="cpu")
    model.preprocessing = TablePreprocessor().fit(pd.DataFrame({"x": [0.0, 1.0], "c": ["a", "b"]}))
    path, src = tmp_path / "m.npz", tmp_path / "rows.csv"
    model.save(path)
    pd.DataFrame({"x": [0.5, 0.2, 0.1], "c": ["a", "z", "z"]}).to_csv(src, index=False)
    code, _, err = run(capsys, f"predict {path} --input {src} --output {tmp_path / 'o.csv'} --device cpu")
    assert code == 0 and "2 rows of column c held categories unseen in training" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--input nothere.npy --output {d}/o.csv", "--input nothere.npy does not exist"),
        ("--input {d}/x.npy --output {d}/o.txt", "write a .csv or a .npy file"),
        ("--input {d}/x.npy --output {d}/no/o.csv", "does not exist: create it"),
        ("--input {d}/x.npy --output {d}/x.npy", "is the input file"),
        ("--input {d}/x.npy --output {d}/o.csv --batch-size 0", "--batch-size"),
        ("--input {d}/x.bin --output {d}/o.csv", "cannot tell its kind from its name"),
        ("--input {d}/row.npy --output {d}/o.csv", "is 1-D (16 values), and the model takes rows of 16 features: save"),
        ("--input {d}/keys.npz --output {d}/o.csv", "holds ['features', 'labels'], but no X or X_test: save the rows"),
    ],
)
def test_bad_requests_are_refused_before_any_row(tmp_path, capsys, images_model, args, message):
    _, path, _ = images_model
    np.save(tmp_path / "x.npy", np.zeros((3, 16), np.float32))
    np.save(tmp_path / "row.npy", np.zeros(16, np.float32))
    np.savez(tmp_path / "keys.npz", features=np.zeros((3, 16)), labels=np.zeros(3))
    (tmp_path / "x.bin").write_bytes(b"0")
    code, _, err = run(capsys, f"predict {path} " + args.format(d=tmp_path) + " --device cpu")
    assert code == 2 and message in err, err


def test_wrong_width_leaves_an_existing_output_as_it_was(tmp_path, capsys, images_model):
    _, path, _ = images_model
    np.save(tmp_path / "x.npy", np.zeros((30, 5), np.float32))
    dst = tmp_path / "o.csv"
    dst.write_text("old\n")
    code, _, err = run(capsys, f"predict {path} --input {tmp_path / 'x.npy'} --output {dst} --device cpu")
    assert code == 2 and "has 5 features but the model expects 16" in err
    assert dst.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("kind", ["npy", "npz", "csv"])
def test_a_nan_past_the_first_batch_is_named_by_its_row_in_the_file(tmp_path, capsys, images_model, kind):
    _, path, _ = images_model
    X = np.zeros((30, 16), np.float32)
    X[23, 5] = np.nan  # in the third batch of 10
    src = tmp_path / f"x.{kind}"
    if kind == "csv":
        pd.DataFrame(X, columns=[f"p{i}" for i in range(16)]).to_csv(src, index=False)
    else:
        np.save(src, X) if kind == "npy" else np.savez(src, X=X)
    dst = tmp_path / "o.csv"
    code, _, err = run(capsys, f"predict {path} --input {src} --output {dst} --batch-size 10 --device cpu")
    where = "data row 23, column 5, counted from 0 after the header" if kind == "csv" else "row 23, column 5, counted"
    assert code == 2 and f"--input {src} contains NaN or Inf (first at {where}" in err, err
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_folder_as_output_is_refused_with_an_example_that_works(tmp_path, capsys, images_model):
    _, path, images = images_model
    src, folder = tmp_path / "x.npy", tmp_path / "adir.csv"
    np.save(src, images.reshape(len(images), -1) / np.float32(255))
    folder.mkdir()
    code, _, err = run(capsys, f"predict {path} --input {src} --output {folder} --device cpu")
    example = folder / "predictions.csv"
    assert code == 2 and f"--output {folder} is a folder: give a file name, e.g. {example}" in err, err
    code, _, err = run(capsys, f"predict {path} --input {src} --output {example} --device cpu")
    assert code == 0 and len(_written(example)) == len(images), err


def test_regressor_refuses_proba(tmp_path, capsys):
    model = MLP([2, 3, 1], loss="mse", device="cpu")
    model.save(tmp_path / "r.npz")
    np.save(tmp_path / "x.npy", np.ones((4, 2), np.float32))
    code, _, err = run(
        capsys, f"predict {tmp_path / 'r.npz'} --input {tmp_path / 'x.npy'} --output {tmp_path / 'o.csv'} --proba"
    )
    assert code == 2 and "predicts values (mse)" in err
    code, _, err = run(
        capsys, f"predict {tmp_path / 'r.npz'} --input {tmp_path / 'x.npy'} --output {tmp_path / 'o.csv'} --device cpu"
    )
    assert code == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "o.csv")["prediction"], model.predict(np.ones((4, 2))), rtol=1e-6)


MEMORY_PROBE = textwrap.dedent(
    """
    import sys, tracemalloc
    import numpy as np
    from mlp_xp import MLP
    from mlp_xp.predict import predict_file

    model = MLP.load(sys.argv[1], device="cpu")
    model.predict_proba(np.zeros((4096, 784), np.float32))  # BLAS and the compiled loops warmed up first

    def anon_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))

    before = anon_kib()
    tracemalloc.start()
    n = predict_file(model, sys.argv[2], sys.argv[3], proba=True, progress=False)
    print(n, tracemalloc.get_traced_memory()[1], (anon_kib() - before) * 1024)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_beyond_the_input_stays_under_64_mib_for_100000_rows(tmp_path):
    """100,000 rows of 784 features (313 MB of float32) predicted with probabilities: NumPy's allocations
    (tracemalloc) and the process's anonymous memory both grow by less than 64 MiB."""
    model = MLP([784, 512, 256, 10], device="cpu")
    model.save(tmp_path / "m.npz")
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(100_000, 784))
    X[:] = np.random.default_rng(0).random((100_000, 784), dtype=np.float32)
    X.flush()
    del X
    r = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "m.npz"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    n, traced, anon = map(int, r.stdout.split())
    assert n == 100_000 and np.load(tmp_path / "p.npy", mmap_mode="r").shape == (100_000, 10)
    assert traced < 64 << 20, traced
    assert anon < 64 << 20, anon


def test_header_only_and_text_columns_for_a_numbers_model(tmp_path, capsys, images_model):
    _, path, _ = images_model
    header = tmp_path / "h.csv"
    header.write_text(",".join(f"p{i}" for i in range(16)) + "\n")
    dst = tmp_path / "o.csv"
    code, _, err = run(capsys, f"predict {path} --input {header} --output {dst} --device cpu")
    assert code == 2 and "has no rows (a header only?)" in err and not dst.exists()
    text = tmp_path / "t.csv"
    pd.DataFrame({**{f"p{i}": [0.5, 0.2] for i in range(15)}, "kind": ["a", "b"]}).to_csv(text, index=False)
    code, _, err = run(capsys, f"predict {path} --input {text} --output {dst} --device cpu")
    assert code == 2 and "column kind holds text, and this model takes numbers only" in err


def test_an_input_that_is_not_an_archive_is_said_as_what_it_is(tmp_path, capsys):
    from mlp_xp.cli import main

    model = tmp_path / "m.npz"
    assert (
        main(
            ["train", "--data", "synthetic:200x8", "--epochs", "1", "--quiet", "--device", "cpu", "--save", str(model)]
        )
        == 0
    )
    text = tmp_path / "rows.npz"
    text.write_text("1,2,3\n")
    capsys.readouterr()
    assert main(["predict", str(model), "--input", str(text), "--output", str(tmp_path / "p.csv")]) == 2
    assert "rows.npz is a text file (it begins '1,2,3'), not an .npz archive" in capsys.readouterr().err


def test_a_csv_without_a_header_is_refused_not_read_a_row_short(tmp_path, capsys, images_model):
    """Found by a new user: a CSV of numbers without a header line gave predictions for 19 of its 20 rows, each
    line of the output one row off its input (the first row was read as the column names)."""
    model, path, images = images_model
    X = images.reshape(len(images), -1) / np.float32(255)
    src, out = tmp_path / "rows.csv", tmp_path / "o.csv"
    np.savetxt(src, X, delimiter=",", fmt="%.6f")
    code, _, err = run(capsys, f"predict {path} --input {src} --output {out} --device cpu")
    shown = ", ".join(f"{v:.6f}" for v in X[0, :4])
    assert code == 2 and err == (
        f"mlp-xp: error: {src} begins with a row of numbers ({shown}, ...), not a header line of column names: add a "
        "header line (pandas writes one: DataFrame(X).to_csv(path, index=False))\n"
    )
    assert not out.exists()
    pd.DataFrame(X).to_csv(src, index=False)  # (pandas' header: 0..d-1, numbers too, but a header)
    code, _, err = run(capsys, f"predict {path} --input {src} --output {out} --device cpu")
    assert code == 0 and len(pd.read_csv(out)) == len(X)


def test_the_request_is_refused_before_the_model_is_loaded(tmp_path, capsys, monkeypatch):
    """A new user's --output o.txt, or a CSV without pandas, was refused only once the model (and its device)
    had been loaded: here the model file does not even exist, and the request's own error comes first."""
    np.save(src := tmp_path / "x.npy", np.zeros((2, 3)))
    (csv_src := tmp_path / "x.csv").write_text("a,b\n1,2\n")
    missing = tmp_path / "none.npz"
    code, _, err = run(capsys, f"predict {missing} --input {src} --output {tmp_path / 'o.txt'} --device cpu")
    assert code == 2 and err == f"mlp-xp: error: --output {tmp_path / 'o.txt'}: write a .csv or a .npy file\n"
    monkeypatch.setitem(sys.modules, "pandas", None)  # (import pandas then fails, as where it is not installed)
    code, _, err = run(capsys, f"predict {missing} --input {csv_src} --output {tmp_path / 'o.csv'} --device cpu")
    assert code == 2 and err.startswith("mlp-xp: error: reading CSV or Parquet tables needs pandas: ")
