"""Per-row sample weights in training (mlp_xp.fit, every backend): a batch's loss is sum(w_i l_i) / sum(w_i),
computed inside the fused loss ops with the weights gathered with the rows."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp.errors import ConfigError, DataError
from mlp_xp.reference.loss import softmax_xent


def _data(loss: str, rng):
    X = rng.normal(size=(40, 5))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, 40), 3
    if loss == "binary_cross_entropy":
        return X, (X[:, :2] > 0).astype(float), 2
    return X, 0.5 * X[:, :2], 2


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_integer_weights_train_as_the_rows_repeated(ops, loss, optimizer):
    """Full-batch gradient descent in float64: weights 0..3 give the parameters of each row repeated that many
    times (0: left out), to 1e-12."""
    rng = np.random.default_rng(0)
    X, Y, k = _data(loss, rng)
    w = rng.integers(0, 4, len(X))
    w[0] = 2
    repeated = (np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0))
    kw = {"epochs": 4, "lr": 0.1, "optimizer": optimizer, "l2": 1e-3}
    a = mlp_xp.MLP([5, 7, k], "tanh", loss, dtype="float64", device=ops, seed=1)
    b = mlp_xp.MLP([5, 7, k], "tanh", loss, dtype="float64", device=ops, seed=1)
    ha = mlp_xp.fit(a, X, Y, batch_size=len(X), sample_weight=w, **kw)
    hb = mlp_xp.fit(b, *repeated, batch_size=len(repeated[0]), **kw)
    np.testing.assert_allclose(a.get_flat(), b.get_flat(), rtol=0, atol=1e-12)
    assert ha.last["train_loss"] == pytest.approx(hb.last["train_loss"], rel=1e-12)


def test_the_epoch_loss_is_the_weighted_mean():
    """With a learning rate too small to move anything, train_loss is sum(w_i l_i) / sum(w_i) at the initial
    weights, over mini-batches of uneven weight."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    w = rng.uniform(0, 2, 50)
    model = mlp_xp.MLP([4, 6, 3], dtype="float64", device="cpu", seed=2)
    z = model.predict_proba(X)  # probabilities: their logs are the logits up to a row's constant
    acc = np.zeros(2)
    softmax_xent(np.log(z), y, acc, sample_weight=w, divisor=w.sum(), write_grad=False)
    history = mlp_xp.fit(model, X, y, epochs=1, batch_size=16, lr=1e-300, optimizer="sgd", sample_weight=w)
    assert history.last["train_loss"] == pytest.approx(acc[0] / w.sum(), rel=1e-12)
    assert history.last["train_accuracy"] == pytest.approx(acc[1] / w.sum(), rel=1e-12)


def test_weights_follow_their_rows_into_the_validation_split_and_resume_checks_them(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    w = rng.uniform(0.5, 1.5, 60)
    model = mlp_xp.MLP([4, 5, 2], device="cpu")
    mlp_xp.fit(model, X, y, epochs=2, validation_fraction=0.2, sample_weight=w, checkpoint=tmp_path)
    with pytest.raises(ConfigError, match="sample weights"):
        mlp_xp.fit(
            model, X, y, epochs=3, validation_fraction=0.2, sample_weight=w * 2, checkpoint=tmp_path, resume=True
        )


@pytest.mark.parametrize("given", [False, True])
def test_the_validation_score_is_weighted_as_the_training_loss(ops, given):
    """The held-out rows keep their weights (or X_val takes sample_weight_val): val_loss and val_accuracy are
    sum(w_i l_i) / sum(w_i) over them at the run's weights, as scikit-learn scores its early-stopping split; they
    were the unweighted means. The test set stays unweighted."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    w = rng.uniform(0, 2, 60)
    model = mlp_xp.MLP([4, 6, 3], dtype="float64", device=ops, seed=2)
    train, val = mlp_xp.trainer.validation_rows(60, 0.25, 0)
    z = model.predict_proba(X)  # the initial weights: lr 1e-300 moves none of them
    kw = {"epochs": 1, "batch_size": 16, "lr": 1e-300, "optimizer": "sgd", "X_test": X[val], "y_test": y[val]}
    if given:
        history = mlp_xp.fit(
            model,
            X[train],
            y[train],
            sample_weight=w[train],
            X_val=X[val],
            y_val=y[val],
            sample_weight_val=w[val],
            **kw,
        )
    else:
        history = mlp_xp.fit(model, X, y, validation_fraction=0.25, seed=0, sample_weight=w, **kw)
    weighted, plain = np.zeros(2), np.zeros(2)
    softmax_xent(np.log(z[val]), y[val], weighted, sample_weight=w[val], divisor=w[val].sum(), write_grad=False)
    softmax_xent(np.log(z[val]), y[val], plain, write_grad=False)
    assert history.last["val_loss"] == pytest.approx(weighted[0] / w[val].sum(), rel=1e-10)
    assert history.last["val_accuracy"] == pytest.approx(weighted[1] / w[val].sum(), rel=1e-12)
    assert history.last["test_loss"] == pytest.approx(plain[0] / len(val), rel=1e-10)
    assert history.last["val_loss"] != pytest.approx(history.last["test_loss"], rel=1e-3)


def test_validation_weights_are_checked_and_part_of_the_checkpoint(tmp_path):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    train, val = mlp_xp.trainer.validation_rows(40, 0.25, 0)
    w = np.ones(40)
    w[val] = 0.0
    with pytest.raises(DataError, match="every row of the validation split has weight 0"):
        mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), X, y, epochs=1, validation_fraction=0.25, sample_weight=w)
    with pytest.raises(DataError, match="sample_weight_val weighs the rows of X_val: pass X_val"):
        mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), X, y, epochs=1, sample_weight_val=np.ones(40))
    with pytest.raises(DataError, match=r"sample_weight_val has shape \(3,\) but there are 10 rows"):
        mlp_xp.fit(
            mlp_xp.MLP([3, 2], device="cpu"), X, y, epochs=1, X_val=X[:10], y_val=y[:10], sample_weight_val=[1] * 3
        )
    with pytest.raises(DataError, match="sample_weight_val is zero for every row: its weighted score would be 0/0"):
        mlp_xp.fit(
            mlp_xp.MLP([3, 2], device="cpu"), X, y, epochs=1, X_val=X[:10], y_val=y[:10], sample_weight_val=np.zeros(10)
        )
    model = mlp_xp.MLP([3, 2], device="cpu")
    w = rng.uniform(0.5, 1.5, 40)
    mlp_xp.fit(model, X, y, epochs=1, validation_fraction=0.25, sample_weight=w, checkpoint=tmp_path)
    w[val] *= 2  # (the training rows' weights as before)
    with pytest.raises(ConfigError, match="the validation sample weights differ"):
        mlp_xp.fit(model, X, y, epochs=2, validation_fraction=0.25, sample_weight=w, checkpoint=tmp_path, resume=True)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(7), "has shape \\(7,\\) but there are 10 rows"),
        (-np.ones(10), "negative, NaN or infinite"),
        (np.full(10, np.nan), "negative, NaN or infinite"),
        (np.zeros(10), "zero for every row"),
        (np.array(["a"] * 10), "not numbers"),
    ],
)
def test_bad_weights_are_one_clear_error(weights, message):
    X, y = np.ones((10, 3)), np.arange(10) % 2
    with pytest.raises(DataError, match=message):
        mlp_xp.fit(mlp_xp.MLP([3, 2], device="cpu"), X, y, epochs=1, sample_weight=weights)


def test_cuda_graph_with_weights_is_refused(host_kernels):
    from .conftest import cuda_host_backend

    X, y = np.ones((10, 3)), np.arange(10) % 2
    model = mlp_xp.MLP([3, 2], device=cuda_host_backend(host_kernels))
    with pytest.raises(ConfigError, match="cuda_graph with sample_weight"):
        mlp_xp.fit(model, X, y, epochs=1, sample_weight=np.ones(10), cuda_graph=True)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_gradcheck_with_sample_weights(ops, loss):
    """The backpropagated gradient of sum(w_i l_i) / sum(w_i) against central differences, on every backend."""
    from mlp_xp.gradcheck import gradcheck

    rng = np.random.default_rng(5)
    X, Y, k = _data(loss, rng)
    X, Y = X[:12], Y[:12]
    w = rng.uniform(0, 3, 12)
    w[3] = 0.0
    model = mlp_xp.MLP([5, 6, k], "tanh", loss, dtype="float64", device=ops, seed=3)
    options = {"smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5]} if loss == "cross_entropy" else {}
    result = gradcheck(model, X, Y, sample_weight=w, l2=1e-3, **options)
    assert result.ok, result
    assert result.max_rel_error < 1e-6
