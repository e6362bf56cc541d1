"""Gradient checking (mlp_xp.gradcheck): the hand-derived gradients of every activation x loss x penalty, on every
backend, against central differences in float64, and a negative control."""

import numpy as np
import pytest

from mlp_xp import MLP
from mlp_xp.errors import ConfigError
from mlp_xp.gradcheck import gradcheck
from mlp_xp.reference.layer import ACTIVATIONS

LOSS_TARGETS = {
    "cross_entropy": lambda rng, n, k: rng.integers(0, k, n),
    "binary_cross_entropy": lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(float),
    "mse": lambda rng, n, k: rng.standard_normal((n, k)),
}


def _random_model(ops, activation, loss, seed=1, sizes=(5, 4, 6, 3)):
    m = MLP(list(sizes), activation, loss, device=ops, seed=seed)
    # Random biases as well as weights: with zero biases a ReLU unit sits exactly on its kink.
    m.set_flat(np.random.default_rng(seed).standard_normal(m.layout.n_params) * 0.5)
    return m


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(LOSS_TARGETS))
@pytest.mark.parametrize(
    "penalty", [(0.0, 0.0), (0.1, 0.0), (0.0, 0.05), (0.1, 0.05)], ids=["none", "l2", "l1", "l2+l1"]
)
def test_gradcheck_every_activation_loss_and_penalty(ops, activation, loss, penalty):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 5))
    y = LOSS_TARGETS[loss](rng, 7, 3)
    result = gradcheck(_random_model(ops, activation, loss), X, y, l2=penalty[0], l1=penalty[1])
    assert result.n_checked == 5 * 4 + 4 * 6 + 6 * 3 + 4 + 6 + 3
    assert result.ok, str(result)
    assert result.max_abs_error < 1e-8


def test_gradcheck_with_label_smoothing_and_class_weights(ops):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((9, 5)), rng.integers(0, 3, 9)
    result = gradcheck(_random_model(ops, "tanh", "cross_entropy"), X, y, smoothing=0.1, class_weight=[1.0, 2.0, 0.5])
    assert result.ok, str(result)


from .test_ops import _on_device  # noqa: E402


def test_gradcheck_catches_a_wrong_gradient(ops, monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    m = _random_model(ops, "tanh", "cross_entropy")
    real = type(ops).bias_grad

    def off_by_half(self, g, out, *, accumulate=0.0):
        real(self, g, out, accumulate=accumulate)
        with _on_device(self):
            out *= 0.5

    monkeypatch.setattr(type(ops), "bias_grad", off_by_half)
    assert not gradcheck(m, X, y).ok


# ---- gradcheck's arguments: each out-of-range one is one ConfigError naming it and the fix ----


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_params": 0},
            "gradcheck's max_params must be a positive integer (how many parameters to check) or None (all 30), "
            "got 0: pass max_params >= 1, or leave it out",
        ),
        ({"max_params": -3}, "max_params must be a positive integer"),
        ({"max_params": 2.5}, "max_params must be a positive integer"),
        ({"max_params": True}, "max_params must be a positive integer"),
        ({"eps": 0.0}, "gradcheck's eps must be a number > 0, got 0.0: pass the central difference's step, e.g. 1e-6"),
        ({"eps": float("nan")}, "gradcheck's eps must be a number > 0, got nan"),
        ({"atol": -1e-8}, "gradcheck's atol must be a number >= 0, got -1e-08: pass an absolute tolerance"),
        ({"rtol": "1e-6"}, "gradcheck's rtol must be a number >= 0, got '1e-6'"),
        ({"l2": -0.1}, "gradcheck's l2 must be a number >= 0, got -0.1"),
        ({"l1": float("inf")}, "gradcheck's l1 must be a number >= 0, got inf"),
        ({"smoothing": 1.0}, "gradcheck's smoothing must be in [0, 1), got 1.0"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        (
            {"class_weight": [1.0, 2.0]},
            "gradcheck's class_weight must be 3 finite numbers >= 0 (one per class), got [1.0, 2.0]: pass one weight "
            "per output, or leave it out",
        ),
        ({"class_weight": [1.0, -2.0, 1.0]}, "class_weight must be 3 finite numbers >= 0"),
    ],
)
def test_gradcheck_refuses_bad_arguments_clearly(kwargs, message):
    m = MLP([5, 3, 3], "tanh", device="cpu")
    X, y = np.zeros((4, 5)), np.array([0, 1, 2, 0])
    with pytest.raises(ConfigError) as info:
        gradcheck(m, X, y, **kwargs)
    assert message in str(info.value)


def test_gradcheck_refuses_cross_entropy_options_for_another_loss_and_a_non_model():
    m = MLP([5, 3, 2], "tanh", "mse", device="cpu")
    X, y = np.zeros((4, 5)), np.zeros((4, 2))
    with pytest.raises(ConfigError, match="gradcheck's smoothing applies to the cross_entropy loss only, and the"):
        gradcheck(m, X, y, smoothing=0.1)
    with pytest.raises(ConfigError, match="class_weight applies to the cross_entropy loss only"):
        gradcheck(m, X, y, class_weight=[1.0, 1.0])
    with pytest.raises(ConfigError, match="gradcheck checks an mlp_xp.MLP, got list: pass the model itself"):
        gradcheck([m], X, y)


def test_gradcheck_max_params_checks_that_many_and_at_most_all():
    rng = np.random.default_rng(0)
    m = _random_model(MLP([5, 3], device="cpu").ops, "tanh", "cross_entropy")
    X, y = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    assert gradcheck(m, X, y, max_params=1).n_checked == 1
    assert gradcheck(m, X, y, max_params=10**6).n_checked == m.layout.n_params
