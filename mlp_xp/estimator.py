"""scikit-learn compatible estimators over :class:`mlp_xp.MLP` and :func:`mlp_xp.fit`.

``MLPClassifier`` and ``MLPRegressor`` follow scikit-learn's conventions (``get_params``/``set_params``,
``clone``, ``fit`` returning ``self``, fitted attributes ending in ``_``), so they work in
``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. scikit-learn is an optional dependency: this
module needs it, ``import mlp_xp`` does not.

Example
-------
>>> from mlp_xp.estimator import MLPClassifier
>>> clf = MLPClassifier(hidden=(64,), epochs=30).fit(X_train, y_train)   # doctest: +SKIP
>>> clf.score(X_test, y_test)                                             # doctest: +SKIP
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as e:  # pragma: no cover - exercised only where scikit-learn is absent
    raise ImportError('mlp_xp.estimator needs scikit-learn: pip install "mlp-xp[sklearn]"') from e
try:
    from sklearn.utils.validation import validate_data
except ImportError as e:  # pragma: no cover - scikit-learn < 1.6
    raise ImportError('mlp_xp.estimator needs scikit-learn >= 1.6: pip install -U "mlp-xp[sklearn]"') from e

from .backend import parse_device
from .errors import ConfigError, DataError
from .functions.activations import ACTIVATIONS
from .model import INITS, MLP
from .trainer import History, TrainConfig, fit
from .validation import check_choice, check_dtype

__all__ = ["MLPClassifier", "MLPRegressor"]

# float32 input stays float32 (the model's default dtype); everything else becomes float64 first.
_X_DTYPES = (np.float64, np.float32)
# What scikit-learn's validate_data(reset=True) sets on the estimator before training starts.
_INPUT_ATTRS = ("n_features_in_", "feature_names_in_")


def _hidden_sizes(hidden) -> list[int]:
    """``hidden`` as a list of layer widths; an int means one hidden layer, () none."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        sizes = list(hidden)
        ok = all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in sizes)
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(f"hidden must be a tuple of positive layer widths such as (128, 64), got {hidden!r}")
    return [int(h) for h in sizes]


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: building the MLP, training it, pickling it."""

    def _train_settings(self) -> dict:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "weight_decay": self.weight_decay,
            "l1": self.l1,
            "schedule": self.schedule,
            "decay": self.decay,
            "step_size": self.step_size,
            "gamma": self.gamma,
            "min_lr": self.min_lr,
            "warmup": self.warmup,
            "drop_last": self.drop_last,
            "early_stopping": self.early_stopping,
            # The trainer holds out validation_fraction whenever it is non-zero; here it means the
            # early-stopping split only, as in scikit-learn.
            "validation_fraction": self.validation_fraction if self.early_stopping else 0.0,
            "patience": self.patience,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    def _check_settings(self) -> None:
        """Raise ConfigError for any unusable setting, without building a model or touching data.

        :func:`mlp_xp.search.run_search` calls this on every candidate before the first fit, so that a
        typo in the search space fails at once instead of hours in.
        """
        _hidden_sizes(self.hidden)
        for a in [self.activation] if isinstance(self.activation, str) else list(self.activation):
            check_choice(a, "activation", ACTIVATIONS)
        check_choice(self.init, "init", INITS)
        check_dtype(self.dtype)
        parse_device(self.device)
        TrainConfig(**self._train_settings()).validate()

    @contextmanager
    def _keeping_fitted_state(self):
        """Undo what input validation set on the estimator if the fit fails, so that a failed refit
        leaves the previous fitted state whole (and a failed first fit leaves the estimator unfitted)."""
        before = {k: self.__dict__[k] for k in _INPUT_ATTRS if k in self.__dict__}
        try:
            yield
        except BaseException:
            for k in _INPUT_ATTRS:
                self.__dict__.pop(k, None)
            self.__dict__.update(before)
            raise

    def _train(self, X: np.ndarray, Y: np.ndarray, loss: str, n_outputs: int) -> tuple[MLP, History]:
        """Build and train a fresh model; sets nothing on the estimator (the caller does, on success)."""
        model = MLP(
            [X.shape[1], *_hidden_sizes(self.hidden), n_outputs],
            self.activation,
            loss,
            init=self.init,
            dtype=self.dtype,
            device=self.device,
            seed=self.seed,
        )
        # DivergenceError propagates: GridSearchCV records error_score for the candidate, and a
        # silently half-trained estimator would be worse than an error.
        return model, fit(model, X, Y, **self._train_settings())

    def _set_fitted(self, model: MLP, history: History, **attrs) -> None:
        """Record a finished run: called only after training succeeded."""
        self.model_: MLP = model
        self.history_: History = history
        self.loss_curve_: list[float] = history["train_loss"]
        self.n_iter_: int = len(history)
        for k, v in attrs.items():
            setattr(self, k, v)

    def _outputs(self, X) -> np.ndarray:
        """The model's outputs for X (probabilities or values) as float64, after sklearn's input checks."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_X_DTYPES)
        return self.model_.predict_proba(X).astype(np.float64)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained with mini-batch gradient descent.

    Binary and multiclass targets train a softmax output with cross-entropy (one output per class);
    a 2-D 0/1 indicator matrix (multi-label) trains independent sigmoid outputs with binary
    cross-entropy.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers, e.g. ``(128, 64)``; ``()`` gives a linear (softmax) model.
    activation : str or list of str
        Hidden activation: relu, leaky_relu, sigmoid, tanh or identity (or one per hidden layer).
    optimizer : {"sgd", "momentum", "nesterov", "adam"}
    lr : float
        Base learning rate.
    momentum : float
        mu of momentum and Nesterov.
    batch_size : int
        Rows per step (clipped to the number of samples).
    epochs : int
        Passes over the training data (fewer if early stopping ends training).
    weight_decay, l1 : float
        L2 and L1 penalties on the weights.
    schedule : {"constant", "inverse_time", "power", "step", "cosine"}
        Learning-rate schedule, with ``decay``, ``step_size``, ``gamma``, ``min_lr`` and ``warmup``
        (see :mod:`mlp_xp.schedules`).
    decay : float
        delta of the inverse_time and power schedules.
    step_size : float
        Epochs between the step schedule's drops (``lr * gamma ** floor(epoch / step_size)``).
    gamma : float
        Factor of each drop of the step schedule.
    min_lr : float
        The cosine schedule's final learning rate.
    warmup : float
        Epochs of linear learning-rate warm-up.
    drop_last : bool
        Skip the last partial batch of each epoch instead of training on it.
    early_stopping : bool
        Hold out ``validation_fraction`` of the training data, stop when its loss has not improved for
        ``patience`` epochs, and keep the best weights.
    validation_fraction : float
        Part of the training data held out for early stopping (unused otherwise).
    patience : int
        Epochs without improvement before early stopping.
    init : {"glorot", "he"}
        Weight initialization.
    dtype : {"float32", "float64"}
        Precision of the parameters and of the computation.
    device : str
        ``cpu`` (default, deterministic and quiet), ``cuda``, ``cuda:N`` or ``auto``.
    seed : int
        Seed of the initial weights, the shuffling and the validation split.
    label_smoothing : float
        eps of label smoothing (softmax outputs only).
    verbose : bool
        Print a progress bar and a line per epoch to stderr.
    beta1, beta2 : float
        Adam's decay rates.

    Attributes
    ----------
    classes_ : ndarray
        The class labels (for multi-label targets, ``arange(K)``).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``fit`` got a DataFrame with string column names.
    model_ : mlp_xp.MLP
        The trained network.
    history_ : mlp_xp.History
        Per-epoch records of the run.
    loss_curve_ : list of float
        Training loss of each epoch.
    n_iter_ : int
        Epochs run.
    """

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        optimizer="momentum",
        lr=0.05,
        momentum=0.9,
        batch_size=128,
        epochs=30,
        weight_decay=0.0,
        l1=0.0,
        schedule="constant",
        decay=0.0,
        step_size=10.0,
        gamma=0.1,
        min_lr=0.0,
        warmup=0.0,
        drop_last=False,
        early_stopping=False,
        validation_fraction=0.1,
        patience=5,
        init="glorot",
        dtype="float32",
        device="cpu",
        seed=0,
        label_smoothing=0.0,
        verbose=False,
        beta1=0.9,
        beta2=0.999,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.l1 = l1
        self.schedule = schedule
        self.decay = decay
        self.step_size = step_size
        self.gamma = gamma
        self.min_lr = min_lr
        self.warmup = warmup
        self.drop_last = drop_last
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.init = init
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.label_smoothing = label_smoothing
        self.verbose = verbose
        self.beta1 = beta1
        self.beta2 = beta2

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _train_settings(self) -> dict:
        # Passed for multi-label targets too, where a non-zero value is a ConfigError rather than ignored.
        return {**super()._train_settings(), "label_smoothing": self.label_smoothing}

    def fit(self, X, y) -> MLPClassifier:
        """Train on features X (n, d) and labels y (n,) of any hashable kind, or a 0/1 indicator (n, K).

        Returns
        -------
        self

        Raises
        ------
        DataError
            For y with a single class, or 2-D y of class labels (multiclass-multioutput).
        ConfigError
            For an unusable setting.
        DivergenceError
            When training produces a non-finite loss. A failed fit changes no fitted attribute: after a
            failed refit the estimator still predicts as before.
        """
        with self._keeping_fitted_state():
            X, y = validate_data(self, X, y, dtype=_X_DTYPES, multi_output=True)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            multilabel = type_of_target(y) == "multilabel-indicator"
            if multilabel:
                classes = np.arange(y.shape[1])
                model, history = self._train(X, y, "binary_cross_entropy", y.shape[1])
            elif y.ndim == 2:
                raise DataError(
                    "y is a 2-D array of class labels (multiclass-multioutput), which MLPClassifier "
                    "does not support: pass 1-D labels, or a 0/1 indicator matrix for multi-label"
                )
            else:
                classes, encoded = np.unique(y, return_inverse=True)
                if len(classes) < 2:
                    only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
                    raise DataError(
                        f"MLPClassifier needs samples of at least 2 classes, but y contains only one "
                        f"class ({only!r}): add samples of another class to the training data"
                    )
                model, history = self._train(X, encoded, "cross_entropy", len(classes))
        self._set_fitted(model, history, classes_=classes, _multilabel=multilabel)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, n_classes) in the order of ``classes_`` (per-label
        probabilities of shape (n, K) for multi-label targets)."""
        p = self._outputs(X)
        if not self._multilabel:
            # The model computes in float32 by default; renormalizing in float64 makes rows sum to 1.
            p /= p.sum(axis=1, keepdims=True)
        return p

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (from ``classes_``), or a 0/1 indicator matrix for multi-label targets."""
        p = self.predict_proba(X)
        if self._multilabel:
            return (p > 0.5).astype(np.int64)
        return self.classes_[p.argmax(axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor: identity outputs trained on the mean squared error.

    Takes the parameters of :class:`MLPClassifier` except ``label_smoothing``. y may be 1-D (one target,
    ``predict`` returns shape (n,)) or 2-D (n, K) (K targets, ``predict`` returns (n, K)). ``score`` is
    R^2. Scaling the targets (e.g. with ``TransformedTargetRegressor``) helps when they are far from
    unit size.

    Parameters
    ----------
    hidden, activation, optimizer, lr, momentum, batch_size, epochs, weight_decay, l1, schedule, decay, \
step_size, gamma, min_lr, warmup, drop_last, early_stopping, validation_fraction, patience, init, dtype, \
device, seed, verbose, beta1, beta2
        As in :class:`MLPClassifier`.

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    n_features_in_, feature_names_in_, model_, history_, loss_curve_, n_iter_
        As in :class:`MLPClassifier`.
    """

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        optimizer="momentum",
        lr=0.05,
        momentum=0.9,
        batch_size=128,
        epochs=30,
        weight_decay=0.0,
        l1=0.0,
        schedule="constant",
        decay=0.0,
        step_size=10.0,
        gamma=0.1,
        min_lr=0.0,
        warmup=0.0,
        drop_last=False,
        early_stopping=False,
        validation_fraction=0.1,
        patience=5,
        init="glorot",
        dtype="float32",
        device="cpu",
        seed=0,
        verbose=False,
        beta1=0.9,
        beta2=0.999,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.l1 = l1
        self.schedule = schedule
        self.decay = decay
        self.step_size = step_size
        self.gamma = gamma
        self.min_lr = min_lr
        self.warmup = warmup
        self.drop_last = drop_last
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.init = init
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.verbose = verbose
        self.beta1 = beta1
        self.beta2 = beta2

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y) -> MLPRegressor:
        """Train on features X (n, d) and targets y (n,) or (n, K).

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            For an unusable setting.
        DivergenceError
            When training produces a non-finite loss. A failed fit changes no fitted attribute: after a
            failed refit the estimator still predicts as before.
        """
        with self._keeping_fitted_state():
            X, y = validate_data(self, X, y, dtype=_X_DTYPES, multi_output=True, y_numeric=True)
            y_1d = y.ndim == 1
            Y = y.reshape(-1, 1) if y_1d else y
            model, history = self._train(X, Y, "mse", Y.shape[1])
        self._set_fitted(model, history, n_outputs_=Y.shape[1], _y_1d=y_1d)
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted values, shape (n,) for a 1-D training target, else (n, K)."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out
