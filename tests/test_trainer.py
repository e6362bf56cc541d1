"""The training loop: exact steps, partial batches, schedules, early stopping, divergence, convergence."""

import math

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, fit
from mlp_xp.gradcheck import loss_and_gradient
from mlp_xp.reference.data import permutation
from mlp_xp.schedules import Schedule


@pytest.fixture(scope="module")
def digits():
    sk = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    d = sk.load_digits()
    return train_test_split(d.data / 16.0, d.target, test_size=0.25, random_state=0, stratify=d.target)


@pytest.mark.parametrize("batch_size, drop_last", [(32, False), (32, True), (100, False), (1, False)])
def test_fit_takes_exactly_the_sgd_steps_of_the_notes(ops, batch_size, drop_last):
    """Two epochs of fit equal SGD replayed by hand: same permutation, mean gradient of each batch,
    the last partial batch averaged over its own rows (or skipped with drop_last)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((70, 6)), rng.integers(0, 3, 70)
    m = MLP([6, 5, 3], "tanh", device=ops, dtype="float64", seed=0)
    ref = MLP([6, 5, 3], "tanh", device="cpu", dtype="float64", seed=0)
    fit(m, X, y, epochs=2, batch_size=batch_size, optimizer="sgd", lr=0.1, drop_last=drop_last, seed=5)
    theta = ref.get_flat()
    for epoch in (1, 2):
        perm = permutation(70, 5, epoch)
        stop = 70 - 70 % batch_size if drop_last else 70
        for s in range(0, stop, batch_size):
            idx = perm[s : s + batch_size]
            ref.set_flat(theta)
            _, g = loss_and_gradient(ref, X[idx], y[idx])
            theta = theta - 0.1 * g
    np.testing.assert_allclose(m.get_flat(), theta, rtol=1e-10, atol=1e-12)


def test_epoch_loss_is_the_mean_over_every_row_seen(ops):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((10, 4)), rng.integers(0, 2, 10)
    m = MLP([4, 2], "relu", device=ops, dtype="float64", seed=0)
    before, _ = loss_and_gradient(m, X, y)
    h = fit(m, X, y, epochs=1, batch_size=10, optimizer="sgd", lr=0.5)  # one full-batch step
    assert h.records[0]["train_loss"] == pytest.approx(before, rel=1e-12)


def test_same_seed_reproduces_bit_for_bit_on_cpu():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((200, 8)).astype(np.float32), rng.integers(0, 4, 200)
    runs = []
    for _ in range(2):
        m = MLP([8, 16, 4], device="cpu", seed=3)
        h = fit(m, X, y, epochs=3, batch_size=16, optimizer="adam", lr=1e-2, seed=4)
        runs.append((m.get_flat(), h["train_loss"]))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    m = MLP([8, 16, 4], device="cpu", seed=3)
    fit(m, X, y, epochs=3, batch_size=16, optimizer="adam", lr=1e-2, seed=5)
    assert not np.array_equal(runs[0][0], m.get_flat())


def test_history_records_every_metric_of_every_set(digits):
    Xtr, Xte, ytr, yte = digits
    m = MLP([64, 32, 10], device="cpu")
    h = fit(m, Xtr, ytr, epochs=2, validation_fraction=0.2, X_test=Xte, y_test=yte)
    keys = {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "lr",
        "seconds",
        "eval_seconds",
    }
    assert set(h.records[0]) == keys
    assert h["epoch"] == [1, 2]
    assert all(r["seconds"] > 0 for r in h.records)


@pytest.mark.parametrize("optimizer, lr", [("momentum", 0.05), ("nesterov", 0.01), ("adam", 3e-3)])
def test_digits_converges(digits, optimizer, lr):
    Xtr, Xte, ytr, yte = digits
    m = MLP([64, 64, 10], "relu", device="cpu", seed=0)
    fit(m, Xtr, ytr, epochs=30, batch_size=32, optimizer=optimizer, lr=lr)
    assert (m.predict(Xte) == yte).mean() >= 0.95


def test_early_stopping_restores_the_best_epoch(digits):
    Xtr, _, ytr, _ = digits
    seen = {}

    def keep(record, model):
        seen[record["epoch"]] = model.get_flat()

    m = MLP([64, 128, 10], device="cpu", seed=0)
    # A tiny training set and a large rate overfit quickly, so the validation loss turns up.
    h = fit(
        m,
        Xtr[:120],
        ytr[:120],
        X_val=Xtr[500:],
        y_val=ytr[500:],
        epochs=200,
        lr=0.1,
        batch_size=8,
        early_stopping=True,
        patience=3,
        callbacks=[keep],
    )
    assert h.stop_reason.startswith("early stopping")
    assert len(h) < 200
    assert len(h) == h.best_epoch + 3
    best = min(h.records, key=lambda r: r["val_loss"])
    assert best["epoch"] == h.best_epoch
    assert np.array_equal(m.get_flat(), seen[h.best_epoch])


def test_divergence_stops_with_a_message_and_keeps_the_last_good_weights(digits):
    Xtr, _, ytr, _ = digits
    seen = {}

    def keep(record, model):
        seen[record["epoch"]] = model.get_flat()

    # The rate grows 10^5-fold each epoch (a step schedule with gamma > 1) until the loss is no longer finite.
    m = MLP([64, 32, 10], "tanh", device="cpu", seed=0)
    with pytest.raises(mlp_xp.DivergenceError, match=r"diverged in epoch \d \(.*\): lower the learning rate") as e:
        fit(m, Xtr, ytr, epochs=10, optimizer="sgd", lr=0.01, schedule="step", step_size=1, gamma=1e5, callbacks=[keep])
    h = e.value.history
    assert 1 <= len(h) < 10 and h.stop_reason.startswith("diverged")
    assert np.isfinite(m.get_flat()).all()
    assert np.array_equal(m.get_flat(), seen[len(h)])  # the weights at the end of the last good epoch

    m2 = MLP([64, 32, 10], "tanh", device="cpu", seed=0)
    h2 = fit(
        m2, Xtr, ytr, epochs=10, optimizer="sgd", lr=0.01, schedule="step", step_size=1, gamma=1e5, on_divergence="stop"
    )
    assert h2.stop_reason == h.stop_reason and len(h2) == len(h)
    assert np.array_equal(m2.get_flat(), m.get_flat())


def test_divergence_in_the_first_epoch_restores_the_initial_weights(digits):
    Xtr, _, ytr, _ = digits
    m = MLP([64, 32, 10], device="cpu", seed=0)
    start = m.get_flat()
    h = fit(m, Xtr, ytr, epochs=3, optimizer="sgd", lr=1e10, on_divergence="stop")
    assert len(h) == 0 and "epoch 1" in h.stop_reason
    assert np.array_equal(m.get_flat(), start)


def test_callback_can_stop_training(digits):
    Xtr, _, ytr, _ = digits
    h = fit(MLP([64, 10], device="cpu"), Xtr, ytr, epochs=10, callbacks=[lambda r, m: r["epoch"] == 2])
    assert len(h) == 2 and "callback" in h.stop_reason


def test_regression_reports_mse():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (400, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    m = MLP([2, 32, 32, 1], "tanh", "mse", device="cpu", seed=0)
    h = fit(m, X, y, epochs=150, batch_size=32, optimizer="adam", lr=1e-2, validation_fraction=0.25)
    assert h.last["val_mse"] < 0.01
    assert h.last["train_loss"] == pytest.approx(h.last["train_mse"] / 2, rel=0.5)


def test_multilabel_with_binary_cross_entropy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] ** 2 > 1], axis=1).astype(float)
    m = MLP([4, 32, 3], "relu", "binary_cross_entropy", device="cpu", seed=0)
    h = fit(m, X[:500], Y[:500], epochs=60, batch_size=32, optimizer="adam", lr=1e-2, X_test=X[500:], y_test=Y[500:])
    assert h.last["test_accuracy"] >= 0.85  # every one of the 3 labels right
    assert (m.predict(X[500:]) == Y[500:]).all(axis=1).mean() == pytest.approx(h.last["test_accuracy"])


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("constant", {}, [0.1, 0.1, 0.1, 0.1]),
        ("inverse_time", {"decay": 0.5}, [0.1, 0.1 / 1.5, 0.05, 0.1 / 2.5]),
        ("power", {"decay": 0.5}, [0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3), 0.05]),
        ("step", {"step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05]),
        (
            "cosine",
            {"epochs": 4},
            [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05, 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2],
        ),
    ],
)
def test_schedules_at_epoch_boundaries(name, kwargs, expected):
    s = Schedule(name, lr=0.1, **kwargs)
    assert [s.lr_at(e * 10, 10) for e in range(4)] == pytest.approx(expected)


def test_warmup_rises_linearly_then_hands_over():
    s = Schedule("step", lr=0.1, warmup=1, step_size=1, gamma=0.5)
    assert [s.lr_at(k, 4) for k in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert s.lr_at(4, 4) == pytest.approx(0.1) and s.lr_at(8, 4) == pytest.approx(0.05)


def test_lr_is_recorded_per_epoch():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    h = fit(MLP([3, 2], device="cpu"), X, y, epochs=3, batch_size=10, lr=0.1, schedule="step", step_size=1, gamma=0.1)
    assert h["lr"] == pytest.approx([0.1, 0.01, 0.001])


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
def test_fit_takes_exactly_the_steps_of_each_optimizer(ops, optimizer):
    """Momentum's fused path (mu V + dL/dW written by the backward GEMMs) and the others, replayed by hand."""
    from mlp_xp.reference import optimizer as optimizers

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((50, 4)), rng.integers(0, 3, 50)
    m = MLP([4, 6, 3], "tanh", device=ops, dtype="float64", seed=1)
    ref = MLP([4, 6, 3], "tanh", device="cpu", dtype="float64", seed=1)
    lr = 1e-2 if optimizer == "adam" else 0.1
    fit(m, X, y, epochs=2, batch_size=16, optimizer=optimizer, lr=lr, l2=0.01, l1=0.001, seed=2)
    theta = ref.get_flat()
    v, mom, step = np.zeros_like(theta), np.zeros_like(theta), 0
    nw = ref.layout.n_weights
    for epoch in (1, 2):
        perm = permutation(50, 2, epoch)
        for s in range(0, 50, 16):
            ref.set_flat(theta)
            _, g = loss_and_gradient(ref, X[perm[s : s + 16]], y[perm[s : s + 16]])
            step += 1
            if optimizer == "adam":
                optimizers.adam_update(
                    theta, g, mom, v, nw, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.01, l1=0.001
                )
            else:
                optimizers.sgd_update(
                    theta, g, v, nw, lr, momentum=0.9, nesterov=optimizer == "nesterov", l2=0.01, l1=0.001
                )
    np.testing.assert_allclose(m.get_flat(), theta, rtol=1e-9, atol=1e-12)


def test_synthetic_set_converges():
    """The default synthetic set: a linear model gets about half of it (tests/test_data_generated.py); an MLP 95%+."""
    from mlp_xp.data import load_dataset

    ds = load_dataset("synthetic")
    m = MLP([ds.X_train.shape[1], 128, 64, ds.n_classes], "relu", device="cpu", seed=0)
    h = fit(
        m,
        ds.X_train,
        ds.y_train,
        epochs=40,
        batch_size=64,
        optimizer="adam",
        lr=3e-3,
        X_test=ds.X_test,
        y_test=ds.y_test,
    )
    assert h.last["test_accuracy"] >= 0.95
