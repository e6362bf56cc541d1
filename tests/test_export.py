"""ONNX export (issue 14, item 1), checked with onnxruntime against predict_proba / predict."""

import numpy as np
import pytest

import mlp_xp

from .test_cli import run

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
def test_an_mnist_shaped_classifier_exports_with_the_same_probabilities_and_labels(tmp_path, activation):
    rng = np.random.default_rng(0)
    X = rng.random((512, 784), dtype=np.float32)
    y = X[:, :10].argmax(1)
    m = mlp_xp.MLP([784, 64, 32, 10], activation, device="cpu", seed=0)
    mlp_xp.fit(m, X, y, epochs=2, batch_size=64, lr=0.01)  # (a linear net of 784 inputs diverges at 0.05)
    m.to_onnx(tmp_path / "m.onnx")
    probabilities, label = _session(tmp_path / "m.onnx").run(None, {"input": X})
    assert label.dtype == np.int64 and np.array_equal(label, m.predict(X))  # 100% argmax agreement
    assert np.abs(probabilities - m.predict_proba(X)).max() <= 1e-5


def test_multi_label_regression_and_float64_models_export(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.random((100, 6))
    multi = mlp_xp.MLP([6, 8, 3], loss="binary_cross_entropy", device="cpu", seed=0)
    mlp_xp.fit(multi, X, (X[:, :3] > 0.5).astype(float), epochs=3, batch_size=16)
    multi.to_onnx(tmp_path / "multi.onnx")
    p, labels = _session(tmp_path / "multi.onnx").run(None, {"input": X.astype(np.float32)})
    np.testing.assert_allclose(p, multi.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(labels, multi.predict_proba(X) > 0.5)
    reg = mlp_xp.MLP([6, 8, 2], loss="mse", dtype="float64", device="cpu", seed=0)
    mlp_xp.fit(reg, X, X[:, :2] * 2, epochs=3, batch_size=16)
    reg.to_onnx(tmp_path / "reg.onnx")
    (pred,) = _session(tmp_path / "reg.onnx").run(None, {"input": X})
    assert pred.dtype == np.float64
    np.testing.assert_allclose(pred, reg.predict(X), rtol=1e-12, atol=1e-12)


def test_mlp_xp_export_writes_onnx_and_refuses_bad_paths_first(tmp_path, capsys):
    model, out = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert run(capsys, f"train --epochs 1 --hidden 8 --device cpu --save {model}")[0] == 0
    code, _, err = run(capsys, f"export {model} --onnx {out}")
    assert code == 0 and out.is_file() and f"wrote {out} (ONNX opset 17)" in err
    for line, message in (
        (f"export {model} --onnx {tmp_path}/m.txt", "give a path ending in .onnx"),
        (f"export {model} --onnx {tmp_path}/nodir/m.onnx", "does not exist: create it"),
        (f"export {tmp_path}/none.npz --onnx {out}", "does not exist: check the path"),
    ):
        code, _, err = run(capsys, line)
        assert code == 2 and err.count("\n") == 1 and message in err, (line, err)


def test_files_of_a_model_trained_on_the_cuda_backend_export_and_load_alike(tmp_path, host_kernels):
    from .conftest import cuda_host_backend

    rng = np.random.default_rng(2)
    X = rng.random((200, 12)).astype(np.float32)
    gpu = mlp_xp.MLP([12, 16, 3], device=cuda_host_backend(host_kernels), seed=0)
    mlp_xp.fit(gpu, X, X[:, :3].argmax(1), epochs=2, batch_size=32)
    gpu.save(tmp_path / "g.npz")
    gpu.save(tmp_path / "g.safetensors")
    a, b = mlp_xp.MLP.load(tmp_path / "g.npz", device="cpu"), mlp_xp.MLP.load(tmp_path / "g.safetensors", device="cpu")
    np.testing.assert_array_equal(a.get_flat(), gpu.get_flat())
    np.testing.assert_array_equal(b.get_flat(), gpu.get_flat())
    gpu.to_onnx(tmp_path / "g.onnx")
    probabilities, label = _session(tmp_path / "g.onnx").run(None, {"input": X})
    assert np.array_equal(label, a.predict(X)) and np.abs(probabilities - a.predict_proba(X)).max() <= 1e-5
