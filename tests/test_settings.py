"""The settings table (mlp_xp.settings) and everything that derives from it: TrainConfig's fields, the CLI's
flags, the estimators' parameters and docstrings, and the checks, which refuse a bad value before any work
starts with one sentence that names it."""

import inspect

import numpy as np
import pytest

import mlp_xp
from mlp_xp import MLP, TrainConfig, fit, settings
from mlp_xp.cli import build_parser


def test_trainconfig_has_one_field_per_training_setting():
    assert list(TrainConfig.__dataclass_fields__) == [s.name for s in settings.TRAIN_SETTINGS]
    with pytest.raises(TypeError):
        TrainConfig(20)  # keyword-only
    config = TrainConfig()
    for s in settings.TRAIN_SETTINGS:
        assert getattr(config, s.name) == s.default
        assert s.name in TrainConfig.__doc__


def test_the_six_settings_that_were_unreachable_are_reachable_everywhere():
    pytest.importorskip("sklearn")
    from mlp_xp.estimator import MLPClassifier

    six = ["class_weight", "eps", "min_delta", "monitor", "on_divergence", "cuda_graph"]
    flags = {a.dest for a in _subparser("train")._actions}
    assert set(six) <= flags
    assert set(six) <= set(MLPClassifier().get_params())
    assert set(six) <= set(TrainConfig.__dataclass_fields__)


def _subparser(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


@pytest.mark.parametrize("command", ["train", "search"])
def test_every_cli_setting_is_a_flag_with_the_tables_help(command):
    actions = {a.dest: a for a in _subparser(command)._actions}
    for s in settings.SETTINGS:
        if not s.cli:
            assert s.name not in actions
            continue
        action = actions[s.name]
        assert action.option_strings == [s.flag]
        assert s.help in action.help and "default" in action.help


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_estimators_take_the_tables_settings(task):
    pytest.importorskip("sklearn")
    from mlp_xp.estimator import MLPClassifier, MLPRegressor

    cls = MLPClassifier if task == "classification" else MLPRegressor
    params = inspect.signature(cls.__init__).parameters
    expected = [s.name for s in settings.estimator_settings(task)] + ["weight_decay"]
    assert [p for p in params if p != "self"] == expected
    for s in settings.estimator_settings(task):
        assert params[s.name].default == s.estimator_default
        assert f"{s.name} : " in cls.__doc__
    # hidden and activation may be given by position; everything after them only by name
    assert [p.name for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD] == ["self", "hidden", "activation"]


@pytest.mark.parametrize(
    "values, match",
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
        ({"l2": -1}, r"l2 \(weight decay\) must be >= 0"),
        ({"early_stopping": True}, "early_stopping needs validation data"),
        ({"label_smoothing": 1.2}, "label_smoothing"),
        ({"class_weight": [1.0]}, "class_weight must be 2 non-negative numbers"),
        ({"class_weight": [1.0, -1.0]}, "class_weight must hold non-negative numbers, got -1.0 for class 1"),
        ({"class_weight": {5: 2.0}}, r"class_weight names class\(es\) \[5\] but the model has classes 0..1"),
        ({"class_weight": "heavy"}, "class_weight must be 'balanced'"),
        ({"learning_rate": 0.1}, "unknown training setting 'learning_rate': did you mean 'lr'?"),
        ({"monitor": "val_mse"}, "does not fit loss cross_entropy"),
        ({"monitor": "val_f1"}, "unknown monitor 'val_f1'"),
        ({"on_divergence": "ignore"}, "unknown on_divergence 'ignore': use one of raise, stop"),
        ({"cuda_graph": True}, "cuda_graph needs the CUDA backend"),
        ({"cuda_graph": "yes"}, "cuda_graph must be True or False"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"min_delta": -1.0}, "min_delta must be >= 0"),
        ({"schedule": "cosine", "lr": 0.01, "min_lr": 0.1}, "min_lr 0.1 is above lr 0.01, so the cosine schedule"),
        ({"callbacks": [print, 5]}, r"callbacks\[1\] is 5, not a function: each callback is called as f"),
        ({"callbacks": print}, r"callbacks must be a list of functions: pass callbacks=\[f\], not callbacks=f"),
        ({"callbacks": 3}, r"callbacks must be a list of functions, not int"),
        ({"config": {"epochs": 2}}, r"config must be a TrainConfig, not dict: pass fit\(model, X, y, \*\*settings\)"),
    ],
)
def test_bad_settings_are_refused_before_training(values, match):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    model = MLP([3, 4, 2], device="cpu", seed=0)
    before = model.get_flat()
    with pytest.raises(mlp_xp.ConfigError, match=match):
        fit(model, X, y, **values)
    assert np.array_equal(model.get_flat(), before)


def test_settings_are_checked_before_the_data():
    # The settings are wrong and so are the data: the settings' error comes first.
    with pytest.raises(mlp_xp.ConfigError, match="unknown optimizer"):
        fit(MLP([3, 2], device="cpu"), np.full((4, 3), np.nan), [0, 1, 0, 1], optimizer="rmsprop")


def test_a_renamed_setting_still_works_with_a_warning():
    with pytest.warns(FutureWarning, match="'weight_decay' is now called 'l2'"):
        config = TrainConfig(weight_decay=0.01)
    assert config.l2 == 0.01
    with pytest.warns(FutureWarning), pytest.raises(mlp_xp.ConfigError, match="same setting: give only 'l2'"):
        TrainConfig(weight_decay=0.01, l2=0.02)
    with pytest.warns(FutureWarning):
        assert TrainConfig().replace(weight_decay=0.5).l2 == 0.5


def test_class_weight_balanced_counts_the_training_rows():
    from mlp_xp.trainer import class_weights

    labels = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights("balanced", 3, labels), [4 / 6, 2.0, 1.0])  # class 2 absent: 1
    np.testing.assert_allclose(class_weights({1: 3.0}, 3, labels), [1.0, 3.0, 1.0])
    np.testing.assert_allclose(class_weights([1, 2, 3], 3, labels), [1.0, 2.0, 3.0])


def test_balanced_class_weights_train_like_the_explicit_weights():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 3)), np.r_[np.zeros(30, int), np.ones(10, int)]
    flats = []
    for weights in ("balanced", [40 / 60, 40 / 20]):
        m = MLP([3, 2], device="cpu", dtype="float64", seed=0)
        fit(m, X, y, epochs=2, batch_size=8, class_weight=weights)
        flats.append(m.get_flat())
    np.testing.assert_allclose(flats[0], flats[1], rtol=1e-12)


def test_each_constraint_parses_the_command_line_form():
    rules = settings.BY_NAME
    assert rules["hidden"].parse("512,256") == (512, 256) and rules["hidden"].parse("none") == ()
    # (a search's form of one choice, which a user copies from its table into train)
    assert rules["hidden"].parse("512x256") == (512, 256) == rules["hidden"].parse("512X256")
    assert rules["activation"].parse("relu,tanh") == ["relu", "tanh"]
    assert rules["class_weight"].parse("balanced") == "balanced"
    assert rules["class_weight"].parse("1,2.5") == [1.0, 2.5]
    assert rules["class_weight"].parse("3:2.5,7:0.5") == {3: 2.5, 7: 0.5}
    assert rules["early_stopping"].parse("true") is True
    assert rules["epochs"].parse("7") == 7
    for name, text, match in [
        ("epochs", "1.5", "epochs must be an integer, got '1.5'"),
        ("seed", "-1", "seed must be >= 0, got -1"),
        ("hidden", "abc", "hidden takes widths separated by commas"),
        ("hidden", "0", "hidden widths must be positive"),
        ("hidden", "64x32,16", "hidden takes widths separated by commas \\(or joined by x\\)"),
        ("hidden", "64x0", "hidden widths must be positive"),
        ("lr", "fast", "learning rate must be a number, got 'fast'"),
        ("class_weight", "1:x", "class_weight takes 'balanced'"),
    ]:
        with pytest.raises(mlp_xp.ConfigError, match=match):
            rules[name].parse(text)
