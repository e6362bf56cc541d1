"""Every setting of a model and of a training run, declared once: name, default, rule, help.

:data:`SETTINGS` is the one table. Everything else derives from it:

* :class:`TrainConfig`, the settings :func:`mlp_xp.fit` takes, has one field per training setting;
* the ``mlp-xp`` command's flags (``--name-with-dashes``) and their help (:mod:`mlp_xp.cli`);
* the scikit-learn estimators' parameters and their docstrings (:mod:`mlp_xp.estimator`; their explicit
  ``__init__`` is checked against the table by the tests);
* every check: :func:`check` applies a setting's rule (:mod:`mlp_xp.constraints`), wherever the value came from.

A new setting is one row here; the CLI, the estimators and the checks then know it.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from dataclasses import dataclass

from .constraints import (
    ClassWeights,
    Constraint,
    Device,
    EachOf,
    Flag,
    FloatDtype,
    Folder,
    LayerWidths,
    Number,
    Options,
    Preprocessing,
)
from .errors import ConfigError
from .reference.layer import ACTIVATIONS
from .reference.loss import LOSSES

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "inverse_time", "power", "step", "cosine", "invscaling")
INITS = ("glorot", "he")
MONITORS = ("val_loss", "val_accuracy", "val_mse")

#: ``Setting.estimator`` for a setting the scikit-learn estimators do not take.
NOT_AN_ESTIMATOR_PARAMETER = "not an estimator parameter"
_SAME = object()


@dataclass(frozen=True)
class Setting:
    """One row of the table.

    ``uses`` says which object consumes the value: ``"model"`` (:class:`mlp_xp.MLP`), ``"train"``
    (:class:`TrainConfig`) or ``"both"``. ``label`` is how messages name the setting where its name alone
    would read badly. ``estimator`` is the estimators' default where it differs from ``default`` (or
    :data:`NOT_AN_ESTIMATOR_PARAMETER`); ``cli`` is False for settings the command line sets another way.
    ``renamed_from`` lists old names still accepted, with a FutureWarning. ``tasks`` are the estimators that
    take the setting (MLPClassifier: classification, MLPRegressor: regression).
    """

    name: str
    default: object
    rule: Constraint
    help: str
    group: str
    uses: str = "train"
    label: str = ""
    estimator: object = _SAME
    cli: bool = True
    renamed_from: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ("classification", "regression")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def estimator_default(self):
        return self.default if self.estimator is _SAME else self.estimator

    def check(self, value):
        """The value as the code uses it, or a ConfigError naming this setting (and, for a number, an example)."""
        return self._applying(self.rule.check, value)

    def parse(self, text: str):
        """A value from command-line text (``--lr 0.1``), checked."""
        return self._applying(self.rule.parse, text)

    def _applying(self, how, value):
        try:
            return how(value, self.label or self.name)
        except ConfigError as e:
            if isinstance(self.rule, Number) and ":" not in str(e):  # the fix: a value that works
                raise ConfigError(f"{e}: use e.g. {self.default}, the default") from None
            raise


def _positive(integer: bool = False) -> Number:
    return Number(integer=integer, low=0, low_open=True)


def _non_negative(integer: bool = False) -> Number:
    return Number(integer=integer, low=0)


def _fraction() -> Number:
    return Number(low=0, high=1, high_open=True)


SETTINGS: tuple[Setting, ...] = (
    # ---- the model ----
    Setting("hidden", (256, 128), LayerWidths(), "hidden layer widths", "model", "model", estimator=(100,)),
    Setting("activation", "relu", EachOf(Options(*ACTIVATIONS)), "hidden activation(s)", "model", "model"),
    Setting(
        "loss",
        "cross_entropy",
        Options(*LOSSES),
        "loss and output layer: cross_entropy (softmax), binary_cross_entropy (sigmoid), mse (identity)",
        "model",
        "model",
        estimator=NOT_AN_ESTIMATOR_PARAMETER,  # the estimator's task decides it
    ),
    Setting("init", "glorot", Options(*INITS), "weight initialization", "model", "model"),
    Setting(
        "leaky_slope",
        0.01,
        Number(low=0, high=1, low_open=True, high_open=True),
        "slope of leaky_relu for negative inputs",
        "model",
        "model",
    ),
    Setting("dtype", "float32", FloatDtype(), "precision of the parameters and the computation", "model", "model"),
    Setting("device", "auto", Device(), "backend", "model", "model", estimator="cpu"),
    Setting(
        "preprocessing",
        None,
        Preprocessing(),
        "for a pandas DataFrame X: 'auto' (or a TablePreprocessor) standardizes its numeric columns and one-hot "
        "encodes the others, fitted on the training rows only (after the validation rows are held out) and kept "
        "with the model, so that predict takes raw rows; None takes the frame as numbers",
        "model",
        "model",
        cli=False,
    ),
    Setting(
        "seed", 0, _non_negative(True), "seed of the weights, the validation split and the shuffles", "model", "both"
    ),
    # ---- the run ----
    Setting("epochs", 20, _positive(True), "passes over the training data", "training", estimator=30),
    Setting("batch_size", 128, _positive(True), "rows per step (clipped to the number of rows)", "training"),
    Setting("drop_last", False, Flag(), "skip each epoch's last partial batch", "training"),
    Setting(
        "shuffle",
        True,
        Flag(),
        "draw a new row order every epoch (False: the rows in their order, every epoch)",
        "training",
        estimator=NOT_AN_ESTIMATOR_PARAMETER,
        cli=False,
    ),
    Setting("optimizer", "momentum", Options(*OPTIMIZERS), "update rule", "optimizer"),
    Setting("lr", 0.05, _positive(), "base learning rate", "optimizer", label="learning rate"),
    Setting("momentum", 0.9, _fraction(), "the momentum coefficient mu (momentum and nesterov)", "optimizer"),
    Setting("beta1", 0.9, _fraction(), "adam's decay of the first moment", "optimizer"),
    Setting("beta2", 0.999, _fraction(), "adam's decay of the second moment", "optimizer"),
    Setting("eps", 1e-8, _positive(), "adam's denominator offset", "optimizer"),
    Setting(
        "l2",
        0.0,
        _non_negative(),
        "L2 penalty on the weights (not the biases): adds l2 W to dL/dW",
        "optimizer",
        label="l2 (weight decay)",
        renamed_from=("weight_decay",),
    ),
    Setting("l1", 0.0, _non_negative(), "L1 penalty on the weights: adds l1 sign(W) to dL/dW", "optimizer"),
    Setting(
        "l2_per_sample",
        0.0,
        _non_negative(),
        "L2 penalty divided by each step's rows (with sample weights: their sum), scikit-learn's alpha: adds "
        "l2_per_sample W / rows to dL/dW; instead of l2",
        "optimizer",
        estimator=NOT_AN_ESTIMATOR_PARAMETER,
        cli=False,
    ),
    Setting("schedule", "constant", Options(*SCHEDULES), "learning-rate schedule", "schedule"),
    Setting("decay", 0.0, _non_negative(), "delta of the inverse_time, power and invscaling schedules", "schedule"),
    Setting("step_size", 10.0, _positive(), "epochs between the step schedule's drops", "schedule"),
    Setting("gamma", 0.1, _positive(), "factor of each drop of the step schedule", "schedule"),
    Setting("min_lr", 0.0, _non_negative(), "final learning rate of the cosine schedule", "schedule"),
    Setting("warmup", 0.0, _non_negative(), "epochs of linear learning-rate warm-up", "schedule"),
    Setting(
        "validation_fraction",
        0.0,
        _fraction(),
        "part of the training data held out for validation",
        "stopping",
        estimator=0.1,
    ),
    Setting("early_stopping", False, Flag(), "stop when monitor stops improving, keeping the best weights", "stopping"),
    Setting("monitor", "val_loss", Options(*MONITORS), "what early stopping watches", "stopping"),
    Setting("patience", 5, _positive(True), "epochs without improvement before early stopping", "stopping"),
    Setting("min_delta", 0.0, _non_negative(), "smallest change of monitor that counts as improvement", "stopping"),
    Setting(
        "label_smoothing",
        0.0,
        _fraction(),
        "label smoothing's eps (cross_entropy only)",
        "loss",
        tasks=("classification",),
    ),
    Setting(
        "class_weight",
        None,
        ClassWeights(),
        "per-class loss weights (cross_entropy only)",
        "loss",
        tasks=("classification",),
    ),
    Setting(
        "on_divergence",
        "raise",
        Options("raise", "stop"),
        "after restoring the last good weights on a non-finite loss: raise DivergenceError, or stop",
        "run",
    ),
    Setting("cuda_graph", False, Flag(), "capture each step as a CUDA graph (CUDA backend only)", "run"),
    Setting(
        "checkpoint",
        None,
        Folder(),
        "folder for the run's checkpoint, written at the end of epochs and on an interrupt (resume from it)",
        "run",
    ),
    Setting(
        "checkpoint_every",
        1,
        _positive(True),
        "epochs between checkpoints",
        "run",
    ),
    Setting(
        "checkpoint_minutes",
        0.0,
        _non_negative(),
        "also checkpoint at the first step boundary after this many minutes since the last one (0: off)",
        "run",
    ),
    Setting(
        "resume",
        False,
        Flag(),
        "continue from the checkpoint in the checkpoint folder (refused if the data or the math differ; an "
        "estimator goes on from its fit's checkpoint where there is one)",
        "run",
    ),
    Setting("verbose", False, Flag(), "progress bar and a line per epoch on stderr", "run", cli=False),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
#: The settings of a training run: the fields of TrainConfig.
TRAIN_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.uses in ("train", "both"))


def estimator_settings(task: str) -> tuple[Setting, ...]:
    """The parameters of the estimator of ``task`` ("classification" or "regression"), in the table's order."""
    return tuple(s for s in SETTINGS if s.estimator != NOT_AN_ESTIMATOR_PARAMETER and task in s.tasks)


RENAMED: dict[str, str] = {old: s.name for s in SETTINGS for old in s.renamed_from}
#: What other libraries (scikit-learn, PyTorch) call some settings; only for the hint of an unknown name.
OTHER_NAMES = {
    "learning_rate": "lr",
    "learning_rate_init": "lr",
    "alpha": "l2",
    "max_iter": "epochs",
    "hidden_layer_sizes": "hidden",
    "n_iter_no_change": "patience",
    "tol": "min_delta",
    "random_state": "seed",
    "nesterovs_momentum": "optimizer",
}


def check(name: str, value):
    """Apply setting ``name``'s rule to ``value`` (see :meth:`Setting.check`)."""
    return BY_NAME[name].check(value)


def resolve_names(values: dict, allowed: tuple[Setting, ...], what: str, stacklevel: int = 3) -> dict:
    """``values`` with renamed settings under their new names (a FutureWarning each, pointing ``stacklevel``
    frames up); ConfigError for a name that is not among ``allowed``, with the closest real name."""
    names = {s.name for s in allowed}
    out = {}
    for key, value in values.items():
        if key in RENAMED and RENAMED[key] in names:
            new = RENAMED[key]
            warnings.warn(
                f"the setting {key!r} is now called {new!r}; {key!r} will be removed",
                FutureWarning,
                stacklevel=stacklevel,
            )
            if new in values:
                raise ConfigError(f"{key!r} and {new!r} are the same setting: give only {new!r}")
            key = new
        elif key not in names:
            close = [OTHER_NAMES[key]] if key in OTHER_NAMES else difflib.get_close_matches(key, sorted(names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown {what} setting {key!r}: {hint}see mlp_xp.settings.SETTINGS for the names")
        out[key] = value
    return out


def numpydoc(settings: tuple[Setting, ...], default_of=lambda s: s.default, notes: dict | None = None) -> str:
    """The ``Parameters`` entries of ``settings`` in numpydoc form (for generated docstrings), with ``notes``
    {name: sentence} added where a setting means something more there."""
    lines = []
    for s in settings:
        bounds = f" ({s.rule.describe()})" if isinstance(s.rule, Number) and s.rule.describe() else ""
        note = f" {notes[s.name]}" if notes and s.name in notes else ""
        lines.append(f"{s.name} : {s.rule.doc_type()}, default={default_of(s)!r}")
        lines.append(f"    {s.help[0].upper()}{s.help[1:]}{bounds}.{note}")
    return "\n".join(lines)


def _config_methods() -> dict:
    def __init__(self, **values):
        _generated_init(self, **resolve_names(values, TRAIN_SETTINGS, "training"))

    def replace(self, **changes):
        """A copy with ``changes`` applied (names checked, renamed ones accepted with a warning)."""
        return dataclasses.replace(self, **resolve_names(changes, TRAIN_SETTINGS, "training"))

    def validate(self):
        """Check every setting against its rule (values normalized in place); return self."""
        for s in TRAIN_SETTINGS:
            setattr(self, s.name, s.check(getattr(self, s.name)))
        if self.schedule == "cosine" and self.min_lr > self.lr:
            raise ConfigError(
                f"min_lr {self.min_lr:g} is above lr {self.lr:g}, so the cosine schedule would raise the rate: "
                "min_lr is the rate it decays to; give a min_lr below lr"
            )
        return self

    return {"__init__": __init__, "replace": replace, "validate": validate}


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(s.name, s.rule.python_type, dataclasses.field(default=s.default)) for s in TRAIN_SETTINGS],
    kw_only=True,
    namespace={"__module__": __name__},
)
_generated_init = TrainConfig.__init__
for _name, _method in _config_methods().items():
    setattr(TrainConfig, _name, _method)
TrainConfig.__doc__ = (
    "Every setting of a training run, one field per row of :data:`SETTINGS` that a run uses.\n\n"
    "Pass them as keywords (``TrainConfig(epochs=10, lr=0.1)``); ``validate()`` checks them all before any work "
    "starts.\n\nParameters\n----------\n" + numpydoc(TRAIN_SETTINGS)
)
