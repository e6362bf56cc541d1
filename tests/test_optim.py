"""The optimizer owns its state: where the backward pass writes the gradient, the velocity, Adam's moments, the
step count, and the phase of the CPU's subnormal flush."""

import numpy as np
import pytest

import mlp_xp
from mlp_xp.gradcheck import loss_and_gradient
from mlp_xp.model import Layout
from mlp_xp.optim import FLUSH_EVERY, Optimizer


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_the_gradient_goes_into_the_velocity_only_for_momentum(ops, name):
    layout = Layout([3, 4, 2])
    opt = Optimizer(name, ops, layout, np.float32, momentum=0.9)
    grads = opt.gradients()
    assert opt.gradients() is grads  # one buffer for the whole run
    if name == "momentum":
        assert grads.flat is opt.velocity and grads.momentum == 0.9 and opt.folds_momentum
    else:
        assert grads.flat is not opt.velocity and grads.momentum == 0.0 and not opt.folds_momentum
    assert [w.shape for w in grads.dW] == [(3, 4), (4, 2)] and [b.shape for b in grads.db] == [(4,), (2,)]


def test_momentum_without_mu_does_not_fold(ops):
    opt = Optimizer("momentum", ops, Layout([3, 2]), np.float32, momentum=0.0)
    assert not opt.folds_momentum and opt.gradients().momentum == 0.0


def test_the_folded_step_is_momentum_by_the_notes(ops):
    """Backward writes V <- mu V + dL/dW through the GEMM's accumulate; the step adds l2 W and moves W by lr V."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    model = mlp_xp.MLP([3, 2], device=ops, dtype="float64", seed=0)
    opt = Optimizer("momentum", ops, model.layout, model.dtype, momentum=0.9, l2=0.01)
    grads = opt.gradients()
    ws = model.workspace(8)
    xd = ops.asarray(X)
    ops.copy(ws.yb, ops.asarray(y.astype(np.int32)))
    theta, v = model.get_flat(), np.zeros(model.layout.n_params)
    for _ in range(3):
        ref = mlp_xp.MLP([3, 2], device="cpu", dtype="float64")
        ref.set_flat(theta)
        _, g = loss_and_gradient(ref, X, y)
        v = 0.9 * v + g
        v[: model.layout.n_weights] += 0.01 * theta[: model.layout.n_weights]
        theta = theta - 0.1 * v
        z = model.forward(xd, ws)
        ops.fill(ws.acc, 0.0)
        ops.loss_grad(z, ws.yb, ws.acc, model.loss)
        model.backward(xd, ws, grads)
        opt.step(model.params, 0.1)
    np.testing.assert_allclose(model.get_flat(), theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ops.to_host(opt.velocity), v, rtol=1e-12, atol=1e-14)


def test_the_flush_follows_the_optimizers_own_step_count(monkeypatch):
    """Two optimizers taking turns on one backend each flush every FLUSH_EVERY of their own steps, and an
    optimizer resumed at step t flushes where the uninterrupted one would have."""
    ops = mlp_xp.get_backend("cpu")
    flushed = []
    real = type(ops).sgd_update

    def spy(self, *args, flush_subnormals=False, **kwargs):
        flushed.append((id(args[2]), flush_subnormals))
        return real(self, *args, flush_subnormals=flush_subnormals, **kwargs)

    monkeypatch.setattr(type(ops), "sgd_update", spy)
    layout = Layout([3, 2])
    a, b = (Optimizer("momentum", ops, layout, np.float32) for _ in range(2))
    p = ops.zeros((layout.n_params,), np.float32)
    for _ in range(FLUSH_EVERY + 3):
        a.step(p, 0.01)
        b.step(p, 0.01)
    for opt in (a, b):
        mine = [f for key, f in flushed if key == id(opt.velocity)]
        assert [i + 1 for i, f in enumerate(mine) if f] == [FLUSH_EVERY]
    resumed = Optimizer("momentum", ops, layout, np.float32)
    resumed.t = FLUSH_EVERY - 1
    flushed.clear()
    resumed.step(p, 0.01)
    assert flushed == [(id(resumed.velocity), True)]


@pytest.mark.parametrize(
    "setting, value, match",
    [
        ("name", "rmsprop", "unknown optimizer 'rmsprop'"),
        ("momentum", 1.0, r"momentum must be in \[0, 1\)"),
        ("eps", 0.0, "eps must be > 0"),
        ("l2", -1.0, r"l2 \(weight decay\) must be >= 0"),
    ],
)
def test_bad_hyperparameters_are_refused(setting, value, match):
    args = {"name": "adam", "momentum": 0.9, "eps": 1e-8, "l2": 0.0, setting: value}
    with pytest.raises(mlp_xp.ConfigError, match=match):
        Optimizer(args.pop("name"), mlp_xp.get_backend("cpu"), Layout([3, 2]), np.float32, **args)
