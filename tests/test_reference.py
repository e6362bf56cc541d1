"""The references (mlp_xp.reference), the oracle of every implementation, against numbers computed by hand."""

import numpy as np
import pytest

from mlp_xp.reference import data as shuffle
from mlp_xp.reference import layer as activations
from mlp_xp.reference import loss as losses
from mlp_xp.reference import optimizer as optimizers


def test_softmax_cross_entropy_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    acc = np.zeros(2)
    losses.softmax_xent(z, y, acc)
    # row 0: lse = 3 + log(1 + e^-1 + e^-2) = 3.4076059644; loss = lse - 3
    # row 1: all equal: loss = log 3; argmax is the first column, which is the label
    assert acc[0] == pytest.approx(0.4076059644 + np.log(3), rel=1e-9)
    assert acc[1] == 2
    p0 = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()  # [0.09003057, 0.24472847, 0.66524096]
    expected = np.array([p0 - [0, 0, 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2
    np.testing.assert_allclose(z, expected, rtol=1e-12)
    np.testing.assert_allclose(z[0], [0.045015285, 0.122364235, -0.16737952], rtol=1e-7)


def test_softmax_cross_entropy_eval_writes_probabilities_and_counts_misses():
    z = np.array([[5.0, 1.0], [0.0, 2.0]])
    acc = np.zeros(2)
    losses.softmax_xent(z, np.array([1, 1]), acc, write_grad=False)
    assert acc[1] == 1  # the first row predicts class 0
    np.testing.assert_allclose(z.sum(1), 1.0)
    np.testing.assert_allclose(z[1], [1 / (1 + np.e**2), np.e**2 / (1 + np.e**2)])


def test_label_smoothing_and_class_weight_by_hand():
    z = np.array([[0.0, np.log(3.0)]])  # p = [1/4, 3/4]
    acc = np.zeros(2)
    losses.softmax_xent(z, np.array([1]), acc, smoothing=0.2, class_weight=np.array([1.0, 2.0]))
    # q = 0.8 onehot + 0.1 = [0.1, 0.9]; loss = -w (0.1 log 1/4 + 0.9 log 3/4) = 2 (0.1386294 + 0.2589163)
    assert acc[0] == pytest.approx(2 * (0.1 * np.log(4) + 0.9 * np.log(4 / 3)), rel=1e-12)
    np.testing.assert_allclose(z, 2 * np.array([[0.25 - 0.1, 0.75 - 0.9]]), rtol=1e-12)


def test_softmax_cross_entropy_extreme_logits_are_finite():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    acc = np.zeros(2)
    losses.softmax_xent(z, np.array([1, 2]), acc)
    assert np.isfinite(z).all()
    assert acc[0] == pytest.approx(2e4 + np.log(3), rel=1e-6)


def test_sigmoid_binary_cross_entropy_by_hand():
    z = np.array([[0.0], [2.0]])
    y = np.array([[1.0], [0.0]])
    acc = np.zeros(2)
    losses.sigmoid_bce(z, y, acc)
    # log(1 + e^0) = log 2; 2 + log(1 + e^-2) = 2.1269280110
    assert acc[0] == pytest.approx(np.log(2) + 2.1269280110, rel=1e-9)
    assert acc[1] == 0  # z = 0 predicts 0 against 1; z = 2 predicts 1 against 0
    np.testing.assert_allclose(z, [[-0.25], [0.8807970780 / 2]], rtol=1e-9)


def test_sigmoid_bce_multilabel_row_is_correct_only_when_every_label_is():
    z = np.array([[3.0, -3.0], [3.0, 3.0]])
    acc = np.zeros(2)
    losses.sigmoid_bce(z, np.array([[1.0, 0.0], [1.0, 0.0]]), acc)
    assert acc[1] == 1


def test_squared_error_by_hand():
    z = np.array([[1.0, 2.0], [0.0, 0.0]])
    y = np.array([[0.0, 4.0], [0.0, 1.0]])
    acc = np.zeros(2)
    losses.squared_error(z, y, acc)
    assert acc[0] == pytest.approx(0.5 * (1 + 4 + 0 + 1))
    assert acc[1] == pytest.approx(6.0)
    np.testing.assert_allclose(z, [[0.5, -1.0], [0.0, -0.5]])


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_derivative_matches_finite_difference(name):
    rng = np.random.default_rng(0)
    z = rng.uniform(-3, 3, (4, 5))
    z[np.abs(z) < 1e-3] = 0.5  # keep away from the kinks of relu and leaky relu
    h = z.copy()
    activations.bias_act(h, np.zeros(5), name)
    eps = 1e-6
    up, down = z + eps, z - eps
    activations.bias_act(up, np.zeros(5), name)
    activations.bias_act(down, np.zeros(5), name)
    dh = np.ones_like(z)
    activations.act_backward(dh, h, name)
    np.testing.assert_allclose(dh, (up - down) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_activation_values_by_hand():
    z = np.array([[-2.0, 0.0, 3.0]])
    expect = {
        "identity": [-2.0, 0.0, 3.0],
        "relu": [0.0, 0.0, 3.0],
        "leaky_relu": [-0.02, 0.0, 3.0],
        "sigmoid": [0.1192029220, 0.5, 0.9525741268],
        "tanh": [-0.9640275801, 0.0, 0.9950547537],
    }
    for name, want in expect.items():
        h = z.copy()
        activations.bias_act(h, np.array([0.0, 0.0, 0.0]), name)
        np.testing.assert_allclose(h[0], want, rtol=1e-9, err_msg=name)
    h = z.copy()
    activations.bias_act(h, np.array([1.0, -1.0, 0.0]), "relu")
    np.testing.assert_array_equal(h, [[0.0, 0.0, 3.0]])


def test_sigmoid_never_overflows():
    z = np.array([[-1e4, 1e4]])
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(activations.sigmoid(z), [[0.0, 1.0]])
        np.testing.assert_array_equal(activations.activate(z, "sigmoid"), [[0.0, 1.0]])


def _flat(w, b):
    return np.array([w, b], dtype=np.float64)


def test_momentum_two_steps_by_hand():
    # W = 1, b = 1, G = 0.5 each, lr = 0.1, mu = 0.9: V = 0.5, W = 0.95; V = 0.95, W = 0.855
    p, v = _flat(1.0, 1.0), np.zeros(2)
    for want in (0.95, 0.855):
        optimizers.sgd_update(p, np.full(2, 0.5), v, 1, lr=0.1, momentum=0.9)
        np.testing.assert_allclose(p, [want, want])


def test_nesterov_step_by_hand():
    p, v = _flat(1.0, 1.0), np.zeros(2)
    optimizers.sgd_update(p, np.full(2, 0.5), v, 1, lr=0.1, momentum=0.9, nesterov=True)
    # V = 0.5; W -= 0.1 (0.5 + 0.9 * 0.5) = 0.095
    np.testing.assert_allclose(p, [0.905, 0.905])
    np.testing.assert_allclose(v, [0.5, 0.5])


def test_weight_decay_and_l1_touch_weights_only():
    p = _flat(2.0, 2.0)
    optimizers.sgd_update(p, np.zeros(2), None, 1, lr=0.5, l2=0.1, l1=0.2)
    # weight: G = 0.1 * 2 + 0.2 * sign(2) = 0.4, W = 2 - 0.5 * 0.4 = 1.8; bias untouched
    np.testing.assert_allclose(p, [1.8, 2.0])


def test_adam_first_steps_by_hand():
    p, m, v = _flat(1.0, 1.0), np.zeros(2), np.zeros(2)
    optimizers.adam_update(p, np.full(2, 0.5), m, v, 1, lr=0.1, step=1, beta1=0.9, beta2=0.999, eps=1e-8)
    # m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25: step = 0.1 * 0.5 / (0.5 + 1e-8)
    np.testing.assert_allclose(p, 1 - 0.1 * 0.5 / (0.5 + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(m, 0.05)
    np.testing.assert_allclose(v, 0.00025)
    optimizers.adam_update(p, np.full(2, -0.5), m, v, 1, lr=0.1, step=2, beta1=0.9, beta2=0.999, eps=1e-8)
    m2, v2 = 0.9 * 0.05 - 0.05, 0.999 * 0.00025 + 0.001 * 0.25
    mh, vh = m2 / (1 - 0.81), v2 / (1 - 0.999**2)
    np.testing.assert_allclose(p, 1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * mh / (np.sqrt(vh) + 1e-8), rtol=1e-12)


def test_permutation_is_a_permutation_and_a_function_of_seed_and_epoch():
    a = shuffle.permutation(1000, seed=3, epoch=1)
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    np.testing.assert_array_equal(a, shuffle.permutation(1000, seed=3, epoch=1))
    assert not np.array_equal(a, shuffle.permutation(1000, seed=3, epoch=2))
    assert not np.array_equal(a, shuffle.permutation(1000, seed=4, epoch=1))


def test_shuffle_keys_match_the_scalar_hash():
    keys = shuffle.shuffle_keys(5, seed=7, epoch=2)
    base = shuffle.epoch_base(7, 2)
    for i, k in enumerate(keys):
        assert int(k) == shuffle.mix64(base + i * shuffle.GAMMA)


def test_gather_rows():
    X = np.arange(12.0).reshape(6, 2)
    Y = np.arange(6, dtype=np.int32)
    xb, yb = np.empty((3, 2)), np.empty(3, np.int32)
    shuffle.gather_rows(X, Y, np.array([5, 0, 2]), xb, yb)
    np.testing.assert_array_equal(xb, [[10, 11], [0, 1], [4, 5]])
    np.testing.assert_array_equal(yb, [5, 0, 2])
