"""Gradient checking (mlp_xp.gradcheck): the hand-derived gradients of every activation x loss x penalty, on every
backend, against central differences in float64, and a negative control."""

import numpy as np
import pytest

from mlp_xp import MLP
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
