"""Renamed public names keep working, each with a FutureWarning that names the new one (CHANGELOG.md); and the
inputs that worked before the settings table still work (arrays for class_weight and hidden, 0/1 for flags)."""

import importlib
import sys

import numpy as np
import pytest

import mlp_xp
from mlp_xp.model import Layout


def test_the_old_math_modules_still_work():
    sys.modules.pop("mlp_xp.functions", None)
    with pytest.warns(FutureWarning, match="mlp_xp.functions is deprecated"):
        importlib.import_module("mlp_xp.functions")
    from mlp_xp.functions import activations, losses, optimizers, shuffle

    z, acc = np.array([[0.0, np.log(3.0)]]), np.zeros(2)
    losses.softmax_cross_entropy(z, np.array([1]), acc, True)  # the old positional flags
    np.testing.assert_allclose(z, [[0.25, -0.25]])
    p, v = np.ones(2), np.zeros(2)
    optimizers.sgd_update(p, np.full(2, 0.5), v, 1, 0.1, 0.9)
    np.testing.assert_allclose(p, [0.95, 0.95])
    h = np.array([[-1.0, 2.0]])
    activations.bias_act_forward(h, np.zeros(2), "relu")
    assert h.tolist() == [[0.0, 2.0]] and activations.ACTIVATIONS["tanh"] == 4
    np.testing.assert_array_equal(shuffle.permutation(9, 1, 2), mlp_xp.get_backend("cpu").permutation(9, 1, 2))


def test_the_old_backend_names_still_work():
    sys.modules.pop("mlp_xp.backend.cpu_kernels", None)
    with pytest.warns(FutureWarning, match="mlp_xp.backend.cpu_kernels is now mlp_xp.backend.cpu_loops"):
        cpu_kernels = importlib.import_module("mlp_xp.backend.cpu_kernels")
    from mlp_xp.backend import cpu_loops

    assert cpu_kernels.CpuKernels is cpu_loops.CompiledLoops
    ops = mlp_xp.get_backend("cpu")
    with pytest.warns(FutureWarning, match="NumpyOps.kernels is now NumpyOps.loops"):
        assert ops.kernels is ops.loops
    from mlp_xp.backend import cupy_device, cupy_ops

    with pytest.warns(FutureWarning, match="cupy_ops.CupyDevice is now mlp_xp.backend.cupy_device.CupyDevice"):
        assert cupy_ops.CupyDevice is cupy_device.CupyDevice


def test_the_old_step_names_still_work():
    from mlp_xp import step, trainer
    from mlp_xp.optim import Optimizer

    with pytest.warns(FutureWarning, match="mlp_xp.trainer.TrainStep is now mlp_xp.step.TrainStep"):
        assert trainer.TrainStep is step.TrainStep
    model = mlp_xp.MLP([3, 2], device="cpu")
    opt = Optimizer("momentum", model.ops, model.layout, model.dtype)
    with pytest.warns(FutureWarning, match="Optimizer.accumulates is now Optimizer.folds_momentum"):
        assert opt.accumulates is True
    train_step = step.TrainStep(model, 4, opt)
    ops = model.ops
    X, Y = ops.asarray(np.ones((4, 3))), ops.asarray(np.array([0, 1, 0, 1], np.int32))
    with pytest.warns(FutureWarning, match="TrainStep.gradients is now TrainStep.backprop"):
        train_step.gradients(X, Y, ops.permutation(4, 0, 1), ops.zeros((2,), np.float64))


def test_the_old_layout_shapes_keep_their_old_meaning():
    layout = Layout([3, 4, 2])
    assert layout.weight_shapes == [(3, 4), (4, 2)]
    with pytest.warns(FutureWarning, match="Layout.w_shapes"):
        assert layout.w_shapes == [(4, 3), (2, 4)]  # (fan_out, fan_in), as it always was


def test_the_old_keyword_of_the_estimators_still_works():
    pytest.importorskip("sklearn")
    from mlp_xp.estimator import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    with pytest.warns(FutureWarning, match="'weight_decay' is now called 'l2'"):
        clf = MLPClassifier(hidden=(4,), epochs=2, weight_decay=0.01).fit(X, y)
    assert clf.get_params()["weight_decay"] == 0.01
    with pytest.warns(FutureWarning), pytest.raises(mlp_xp.ConfigError, match="give only l2"):
        MLPClassifier(epochs=1, weight_decay=0.01, l2=0.1).fit(X, y)


def test_inputs_that_worked_before_still_work():
    pytest.importorskip("sklearn")
    from mlp_xp.estimator import MLPClassifier

    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    m = mlp_xp.MLP([3, 2], device="cpu")
    mlp_xp.fit(m, X, y, epochs=1, class_weight=np.array([1.0, 2.0]), early_stopping=0, verbose=0)
    clf = MLPClassifier(hidden=np.array([4, 3]), epochs=1, verbose=0, class_weight=np.array([1.0, 2.0])).fit(X, y)
    assert clf.model_.sizes == [3, 4, 3, 2]
