"""The divergence guard and early stopping (mlp_xp.stopping) on their own, record by record; through fit they
are tested in tests/test_trainer.py."""

import math

import numpy as np
import pytest

from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.stopping import DivergenceGuard, EarlyStopping


@pytest.fixture
def params():
    return np.zeros(4)


def test_the_guard_restores_the_last_snapshot_on_a_non_finite_loss(params):
    guard = DivergenceGuard(NumpyOps(fast=False), params)
    params[:] = 1.0
    guard.snapshot()
    params[:] = 2.0
    assert guard.check({"epoch": 3, "train_loss": 0.5, "val_loss": 0.7}, lr=0.1) is None
    assert (params == 2.0).all()
    message = guard.check({"epoch": 4, "train_loss": 0.5, "val_loss": math.nan}, lr=0.1)
    assert message.startswith("training diverged in epoch 4 (val_loss became nan;")
    assert "end of epoch 3" in message and "it was 0.1" in message
    assert (params == 1.0).all()
    # a first epoch has no end of an epoch before it: what is kept is what the run started with
    message = guard.check({"epoch": 1, "train_loss": math.inf}, lr=0.1)
    assert "the model keeps the weights it started the run with)" in message and "epoch 0" not in message


@pytest.mark.parametrize(
    "monitor, scores, stop_at, best",
    [
        ("val_loss", [1.0, 0.9, 0.95, 0.92, 0.91], 5, 2),  # down is better
        ("val_accuracy", [0.5, 0.7, 0.6, 0.7, 0.65], 5, 2),  # up is better; a tie is no improvement
        ("val_mse", [3.0, 2.0, 1.0, 0.5, 0.4], None, 5),
    ],
)
def test_early_stopping_waits_patience_epochs_and_keeps_the_best(params, monitor, scores, stop_at, best):
    early = EarlyStopping(NumpyOps(fast=False), params, monitor, patience=3, min_delta=0.0)
    stopped = None
    for epoch, score in enumerate(scores, start=1):
        params[:] = epoch
        reason = early.update({"epoch": epoch, monitor: score})
        if reason:
            stopped = epoch
            assert reason == f"early stopping: {monitor} did not improve for 3 epochs; restored epoch {best}"
            break
    assert stopped == stop_at and early.best_epoch == best
    early.restore()
    assert (params == best).all()


def test_min_delta_is_the_smallest_change_that_counts(params):
    early = EarlyStopping(NumpyOps(fast=False), params, "val_loss", patience=2, min_delta=0.1)
    assert early.update({"epoch": 1, "val_loss": 1.0}) is None
    assert early.update({"epoch": 2, "val_loss": 0.95}) is None  # better, but by less than min_delta
    assert early.update({"epoch": 3, "val_loss": 0.92}).startswith("early stopping")
    assert early.best_epoch == 1


def test_restore_before_any_epoch_changes_nothing(params):
    params[:] = 7.0
    EarlyStopping(NumpyOps(fast=False), params, "val_loss", patience=1, min_delta=0.0).restore()
    assert (params == 7.0).all()


def test_a_model_whose_weights_are_nan_before_training_is_refused_up_front():
    """Its first epoch read as a divergence, with "lower the learning rate" as the fix."""
    import mlp_xp

    model = mlp_xp.MLP([3, 4, 2], device="cpu", seed=0)
    flat = model.get_flat()
    flat[[0, -1]] = np.nan, np.inf  # (W1 and b2)
    model.set_flat(flat)
    X, y = np.random.default_rng(0).random((10, 3)), np.arange(10) % 2
    with pytest.raises(mlp_xp.ConfigError) as e:
        mlp_xp.fit(model, X, y, epochs=1)
    assert str(e.value) == (
        "the model's weights hold NaN or Inf before training (W1, b2): make a new model, or load a good model file "
        "(set_flat took them as given)"
    )
    good = mlp_xp.MLP([3, 4, 2], device="cpu", seed=0)
    history = mlp_xp.fit(good, X, y, epochs=1)
    model.set_flat(flat)  # a warm start from them: it read as a divergence in epoch 2, "keeping" the NaN weights
    with pytest.raises(mlp_xp.ConfigError, match=r"^the model's weights hold NaN or Inf before training \(W1, b2\)"):
        mlp_xp.fit(model, X, y, epochs=2, warm_state=history.state)
    assert model.nonfinite_arrays() == ["W1", "b2"] and good.nonfinite_arrays() == []
