"""The model (mlp_xp.model): its layout, forward and backward by hand on a tiny net, initialization, model files,
and the checks of its architecture. Gradcheck on every combination: tests/test_gradcheck.py."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP
from mlp_xp.gradcheck import loss_and_gradient


def test_forward_and_backward_by_hand(ops):
    # sizes 2-2-1, relu, mse. x = [1, 2], y = -10. In the notes' column form, with N_l the notes' matrices:
    m = MLP([2, 2, 1], "relu", "mse", device=ops, dtype="float64")
    N1, b1, N2, b2 = np.array([[1.0, -1.0], [0.5, 2.0]]), [0.0, 1.0], np.array([[1.0, -2.0]]), [0.5]
    m.set_flat(np.concatenate([N1.T.ravel(), N2.T.ravel(), b1, b2]))  # stored as W = N^T, (fan_in, fan_out)
    # z1 = N1 x + b1 = [-1, 5.5], h1 = [0, 5.5]; z2 = N2 h1 + b2 = -10.5
    np.testing.assert_allclose(m.predict([[1.0, 2.0]]), [-10.5])
    loss, g = loss_and_gradient(m, [[1.0, 2.0]], [-10.0])
    assert loss == pytest.approx(0.125)  # (1/2) (-10.5 + 10)^2
    # dz2 = -0.5; dN2 = dz2 h1 = [0, -2.75]; db2 = -0.5; dh1 = N2^T dz2 = [-0.5, 1]; dz1 = [0, 1]
    # dN1 = dz1 x^T = [[0, 0], [1, 2]]; db1 = [0, 1]; stored transposed: dW1 = [[0, 1], [0, 2]], dW2 = [0, -2.75]
    np.testing.assert_allclose(g, [0, 1, 0, 2, 0, -2.75, 0, 1, -0.5])


def test_layout_puts_weights_before_biases():
    m = MLP([3, 4, 2], device="cpu")
    assert m.layout.weight_shapes == [(3, 4), (4, 2)] and [W.shape for W in m.W] == [(3, 4), (4, 2)]
    assert m.layout.n_weights == 3 * 4 + 4 * 2
    assert m.layout.n_params == m.layout.n_weights + 4 + 2
    assert np.all(m.get_flat()[m.layout.n_weights :] == 0)  # biases start at zero


def test_glorot_and_he_init_ranges():
    m = MLP([400, 300, 10], init="glorot", device="cpu", seed=0)
    (W1, _), (W2, _) = m.weights()
    r = np.sqrt(6) / np.sqrt(400 + 300)
    assert np.abs(W1).max() <= r and np.abs(W1).max() > 0.99 * r
    assert W1.std() == pytest.approx(r / np.sqrt(3), rel=0.02)  # std of U(-r, r)
    h = MLP([400, 300, 10], init="he", device="cpu", seed=0)
    assert h.weights()[0][0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (MLP([5, 7, 3], device="cpu", seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.get_flat(), b.get_flat())
    assert not np.array_equal(a.get_flat(), c.get_flat())


def test_float64_on_request():
    m = MLP([3, 2], "relu", "cross_entropy", dtype="float64", device="cpu")
    assert m.params.dtype == np.float64
    assert m.predict_proba(np.ones((2, 3))).dtype == np.float64


def test_predict_shapes_for_each_loss():
    X = np.random.default_rng(0).standard_normal((6, 4))
    p = MLP([4, 5, 3], loss="cross_entropy", device="cpu").predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    assert MLP([4, 5, 3], loss="cross_entropy", device="cpu").predict(X).shape == (6,)
    assert set(MLP([4, 5, 1], loss="binary_cross_entropy", device="cpu").predict(X)) <= {0, 1}
    assert MLP([4, 5, 2], loss="binary_cross_entropy", device="cpu").predict(X).shape == (6, 2)
    assert MLP([4, 5, 1], loss="mse", device="cpu").predict(X).shape == (6,)


def test_save_load_round_trip(tmp_path):
    m = MLP([5, 4, 3], ["tanh"], "cross_entropy", dtype="float64", device="cpu", seed=9)
    path = tmp_path / "model.npz"
    m.save(path)
    back = MLP.load(path, device="cpu")
    assert back.config() == m.config()
    assert np.array_equal(back.get_flat(), m.get_flat())
    with np.load(path, allow_pickle=False) as z:  # plain arrays: W1, b1, W2, b2, metadata
        assert sorted(z.files) == ["W1", "W2", "b1", "b2", "metadata"]
        assert z["W1"].shape == (5, 4)  # (fan_in, fan_out)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_array", "bad_version"])
def test_corrupt_model_files_are_refused_clearly(tmp_path, damage):
    m = MLP([3, 2], device="cpu")
    path = tmp_path / "m.npz"
    m.save(path)
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a model at all")
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "missing_array":
            del arrays["W1"]
        else:
            arrays["metadata"] = np.frombuffer(
                arrays["metadata"].tobytes().replace(b'"format_version": 1', b'"format_version": 99'), np.uint8
            )
        np.savez(path, **arrays)
    with pytest.raises(mlp_xp.ModelFileError, match="save|upgrade"):
        MLP.load(path, device="cpu")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    m = MLP([3, 2], device="cpu")
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError):
        MLP([3, 2], device="cpu", seed=5).save(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sizes": [3]}, "at least an input and an output"),
        ({"sizes": [3, 0, 2]}, "positive integer"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"dtype": "float16"}, "float32' or 'float64"),
        ({"init": "zeros"}, "unknown init"),
        ({"activation": ["relu", "tanh"]}, "2 activations given for 1 hidden layer: give one per hidden layer"),
        ({"sizes": [3, 4, 1], "loss": "cross_entropy"}, "at least 2 output classes"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_architecture_is_refused(kwargs, match):
    args = {"sizes": [3, 4, 2], **kwargs}
    with pytest.raises(mlp_xp.ConfigError, match=match):
        MLP(args.pop("sizes"), device=args.pop("device", "cpu"), **args)


def test_a_file_saved_on_one_backend_loads_on_the_other(tmp_path, host_kernels):
    from .conftest import make_backend

    gpu = make_backend("cuda-host", host_kernels)
    X = np.random.default_rng(0).standard_normal((9, 6))
    on_gpu = MLP([6, 5, 3], "tanh", device=gpu, seed=4)
    on_gpu.save(tmp_path / "g.npz")
    on_cpu = MLP.load(tmp_path / "g.npz", device="cpu")
    assert on_cpu.ops.kind == "cpu" and np.array_equal(on_cpu.get_flat(), on_gpu.get_flat())
    np.testing.assert_allclose(on_cpu.predict_proba(X), on_gpu.predict_proba(X), rtol=1e-5)
    on_cpu.save(tmp_path / "c.npz")
    back = MLP.load(tmp_path / "c.npz", device=gpu)
    assert back.ops is gpu and np.array_equal(back.get_flat(), on_gpu.get_flat())
