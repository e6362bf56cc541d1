"""Bad input gets one clear error, naming the problem and the fix, before any work starts."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, fit
from mlp_xp.backend import cuda_status, get_backend


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


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop': use one of sgd, momentum, nesterov, adam"),
        ({"schedule": "exponential"}, "unknown schedule 'exponential'"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"batch_size": -4}, "batch_size must be > 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"lr": 0}, "learning rate must be > 0"),
        ({"lr": -0.1}, "learning rate must be > 0"),
        ({"lr": float("nan")}, "learning rate must be a number"),
        ({"epochs": 0}, "epochs must be > 0"),
        ({"momentum": 1.5}, r"momentum must be in \[0, 1\)"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ({"weight_decay": -1}, "weight decay"),
        ({"early_stopping": True}, "early_stopping needs validation data"),
        ({"label_smoothing": 1.2}, "label_smoothing"),
        ({"class_weight": [1.0]}, "class_weight must be 2 non-negative numbers"),
        ({"learning_rate": 0.1}, "unknown training setting"),
        ({"monitor": "val_mse"}, "does not fit loss cross_entropy"),
    ],
)
def test_bad_settings_are_refused_before_training(model, data, settings, match):
    before = model.get_flat()
    with pytest.raises(mlp_xp.ConfigError, match=match):
        fit(model, *data, **settings)
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


def test_cuda_request_without_a_usable_device_names_the_reason():
    ok, why = cuda_status()
    if ok:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(mlp_xp.BackendUnavailable, match="CUDA backend unavailable: .+") as e:
        get_backend("cuda")
    assert why in str(e.value)
    assert any(w in why for w in ("CuPy is not installed", "driver", "no CUDA device", "CUDA is not usable"))


def test_auto_falls_back_to_the_cpu_and_says_so(capfd):
    from mlp_xp.backend import _auto_choice

    _auto_choice.cache_clear()
    ops = get_backend("auto")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlp_xp: using ")
    assert ("cuda" in ops.kind) == ("cuda:0" in err)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cuda:-1", 3])
def test_unknown_device_strings(spec):
    with pytest.raises(mlp_xp.ConfigError, match="auto', 'cpu', 'cuda'"):
        get_backend(spec)
