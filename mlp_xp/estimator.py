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

import hashlib
import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import install_hint

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
except ImportError as e:  # pragma: no cover - exercised only where scikit-learn is absent
    raise ImportError(f"mlp_xp.estimator needs scikit-learn: {install_hint('sklearn')}") from e
try:
    from sklearn.utils.validation import validate_data
except ImportError as e:  # pragma: no cover - scikit-learn < 1.6
    raise ImportError(f"mlp_xp.estimator needs scikit-learn >= 1.6: {install_hint('sklearn')}") from e

import copy

from . import settings
from .data.preprocess import LabelVocabulary, TablePreprocessor, is_frame, text_columns
from .errors import ConfigError, DataError, DivergenceError
from .model import MLP
from .trainer import History, TrainConfig, check_against_loss, fit, preprocess_split, validation_rows
from .validation import check_split_weights

__all__ = ["MLPClassifier", "MLPRegressor"]

# float32 input stays float32 (the model's default dtype); everything else becomes float64 first.
_X_DTYPES = (np.float64, np.float32)
#: scikit-learn's checks of X, but for NaN and Inf: the model's own check refuses them, naming the first (one pass
#: over X, not two).
_CHECKS = {"dtype": _X_DTYPES, "accept_sparse": "csr", "ensure_all_finite": False}
# What scikit-learn's validate_data(reset=True) sets on the estimator before training starts.
_INPUT_ATTRS = ("n_features_in_", "feature_names_in_")


_TRAINING = {s.name for s in settings.TRAIN_SETTINGS}
_DOC_PARAMETERS = """Parameters
    ----------
{parameters}
    weight_decay : float, deprecated
        The old name of ``l2``; still accepted with a FutureWarning, and to be removed."""


def _parameters_doc(task: str) -> str:
    notes = {"validation_fraction": "Held out only with early_stopping, as in scikit-learn."}
    text = settings.numpydoc(settings.estimator_settings(task), default_of=lambda s: s.estimator_default, notes=notes)
    return _DOC_PARAMETERS.format(parameters="\n".join("    " + line for line in text.splitlines()))


#: Parameters that do not change what a fit computes: left out of its checkpoint folder's key.
_NOT_IN_KEY = frozenset({"checkpoint", "checkpoint_every", "checkpoint_minutes", "resume", "verbose", "device"})


def _checkpoint_folder(root, values: dict, X: np.ndarray, Y: np.ndarray, w: np.ndarray | None) -> Path:
    """``root/fit-<key>``: the key hashes the parameters that shape the fit and a fingerprint of its data (its
    sample weights too, where it has them)."""
    from .checkpoint import fingerprint

    params = json.dumps(_plain({k: v for k, v in sorted(values.items()) if k not in _NOT_IN_KEY}), default=str)
    data = [X, Y] if w is None else [X, Y, w]  # (the key of a fit without weights is what it always was)
    key = hashlib.blake2b(f"{params}|{fingerprint(data)}".encode(), digest_size=8).hexdigest()
    return Path(root) / f"fit-{key}"


def _plain(value):
    """JSON-able: dict keys as text (class_weight may be keyed by NumPy integers), in a fixed order."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: the settings (one parameter per row of the settings table
    that the task takes), building the MLP, training it, pickling it."""

    _task = "classification"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # (CSR: the CPU backend densifies a batch's rows at a time)
        return tags

    def _settings(self) -> dict:
        """The parameters as the trainer takes them: checked by the table's rules, renamed ones resolved."""
        values = {s.name: s.check(getattr(self, s.name)) for s in settings.estimator_settings(self._task)}
        if self.weight_decay != "deprecated":
            warnings.warn(
                "the parameter 'weight_decay' is now called 'l2'; 'weight_decay' will be removed",
                FutureWarning,
                stacklevel=3,
            )
            if self.l2 != 0.0:
                raise ConfigError("weight_decay and l2 are the same setting: give only l2")
            values["l2"] = settings.check("l2", self.weight_decay)
        # The trainer holds out validation_fraction whenever it is non-zero; here it means the early-stopping
        # split only, as in scikit-learn.
        if not values["early_stopping"]:
            values["validation_fraction"] = 0.0
        return values

    def _train_settings(self, values: dict, classes=None) -> dict:
        train = {k: v for k, v in values.items() if k in _TRAINING}
        if classes is not None and isinstance(train.get("class_weight"), dict):
            train["class_weight"] = _weights_by_index(train["class_weight"], classes)
        return train

    def _check_settings(self) -> None:
        """Raise ConfigError for any unusable setting, without building a model or touching data.

        :func:`mlp_xp.search.run_search` calls this on every candidate before the first fit, so that a
        typo in the search space fails at once instead of hours in.
        """
        cfg = TrainConfig(**self._train_settings(self._settings())).validate()
        # (a classifier's loss is cross_entropy, or binary_cross_entropy for multi-label targets: the monitor is
        # val_accuracy either way, and what needs cross_entropy is checked again at the fit)
        check_against_loss(cfg, "mse" if isinstance(self, RegressorMixin) else "cross_entropy")

    @contextmanager
    def _keeping_fitted_state(self):
        """Undo what input validation set on the estimator if the fit fails, so that a failed refit
        leaves the previous fitted state whole (and a failed first fit leaves the estimator unfitted)."""
        before = {k: self.__dict__[k] for k in _INPUT_ATTRS if k in self.__dict__}
        try:
            yield
        except BaseException as e:
            for k in _INPUT_ATTRS:
                self.__dict__.pop(k, None)
            self.__dict__.update(before)
            if isinstance(e, DivergenceError):  # (the weights the trainer kept are the failed fit's model's)
                kept = "keeps its previous fit" if hasattr(self, "model_") else "stays unfitted"
                e.args = (f"{e.reason}; the estimator {kept}",)  # (the same error: its traceback stays)
            raise

    def _preprocessor(self, X):
        """A fresh copy of the preprocessing to fit, when X is a DataFrame and ``preprocessing`` is set; else
        None (X is then taken as numbers)."""
        chosen = settings.check("preprocessing", self.preprocessing)
        if chosen is None or not is_frame(X):
            return None
        return TablePreprocessor() if chosen == "auto" else copy.deepcopy(chosen)

    def _table_input(self, X, y):
        """For a DataFrame with preprocessing: (X, y as an array, the preprocessor), setting what validate_data
        would (the input's width and column names); else (X, y, None) untouched."""
        prep = self._preprocessor(X)
        if prep is None:
            if is_frame(X):
                text = text_columns(X)
                if text:
                    raise DataError(
                        f"X has columns that are not numbers ({', '.join(text[:5])}"
                        f"{', ...' if len(text) > 5 else ''}): pass preprocessing='auto' to one-hot encode them "
                        "(and standardize the numeric ones), or encode them first"
                    )
            return X, y, None
        y = np.asarray(y)
        if len(y) != len(X):
            raise DataError(f"y has {len(y)} entries but X has {len(X)} rows: they must match")
        self.n_features_in_ = len(X.columns)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        return X, y, prep

    def _train(
        self, X, Y: np.ndarray, loss: str, n_outputs: int, classes=None, prep=None, w=None
    ) -> tuple[MLP, History]:
        """Build and train a fresh model; sets nothing on the estimator (the caller does, on success). With a
        preprocessor ``prep`` X is a DataFrame, and ``prep`` is fitted on its training rows only; ``w``: the
        sample weights, one a row of X."""
        v = self._settings()
        validation = {}
        if prep is not None:
            w_val = None
            if w is not None and v["validation_fraction"]:  # (the rows preprocess_split keeps, and holds out)
                train, val = validation_rows(len(X), v["validation_fraction"], v["seed"])
                w, w_val = w[train], w[val]
                check_split_weights(w_val)
            X, Y, X_val, Y_val = preprocess_split(prep, X, Y, v["validation_fraction"], v["seed"])
            if X_val is not None:
                validation = {"X_val": X_val, "y_val": Y_val, "sample_weight_val": w_val}
        model = MLP(
            [X.shape[1], *v["hidden"], n_outputs],
            v["activation"],
            loss,
            init=v["init"],
            dtype=v["dtype"],
            device=v["device"],
            seed=v["seed"],
            leaky_slope=v["leaky_slope"],
        )
        train = self._train_settings(v, classes)
        if train.get("checkpoint") is not None:
            # one folder per fit, keyed by the parameters and the data, so that GridSearchCV's candidates and
            # folds never share a checkpoint; resume goes on from this fit's own checkpoint where there is one
            folder = _checkpoint_folder(train["checkpoint"], v, X, Y, w)
            train["checkpoint"] = str(folder)
            saved = folder / "checkpoint.npz"
            train["resume"] = bool(train.get("resume")) and saved.is_file()
            if not train["resume"] and saved.is_file():  # a refit of this same fit from scratch, as asked
                saved.unlink()
        model.preprocessing = prep
        # DivergenceError propagates: GridSearchCV records error_score for the candidate, and a
        # silently half-trained estimator would be worse than an error.
        return model, fit(model, X, Y, **train, **validation, sample_weight=w)

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
        if self.model_.preprocessing is not None and is_frame(X):
            return self.model_.predict_proba(X).astype(np.float64)  # the raw columns, through the preprocessing
        X = validate_data(self, X, reset=False, **_CHECKS)
        return self.model_.predict_proba(X).astype(np.float64)  # (which refuses NaN and Inf, naming the first)


def _weights(sample_weight, X) -> np.ndarray | None:
    """scikit-learn's checks of sample weights (one finite, non-negative number a row of X), as float64."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


def _weights_by_index(weights: dict, classes: np.ndarray) -> dict:
    """class_weight keyed by class label -> keyed by the label's index in ``classes`` (as the model sees it)."""
    index = {c.item() if isinstance(c, np.generic) else c: i for i, c in enumerate(classes)}
    unknown = [k for k in weights if k not in index]
    if unknown:
        raise ConfigError(
            f"class_weight names label(s) {unknown} that y does not hold: use labels from {sorted(index, key=str)}"
        )
    return {index[k]: w for k, w in weights.items()}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained with mini-batch gradient descent.

    Binary and multiclass targets train a softmax output with cross-entropy (one output per class);
    a 2-D 0/1 indicator matrix (multi-label) trains independent sigmoid outputs with binary
    cross-entropy. The parameters are the settings of :mod:`mlp_xp.settings`. ``class_weight`` takes
    scikit-learn's forms, a dict {label: weight} (labels left out weigh 1) or ``"balanced"``, and also a
    list of weights in the order of ``classes_``.

    {parameters}

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

    _task = "classification"

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        *,
        init="glorot",
        leaky_slope=0.01,
        dtype="float32",
        device="cpu",
        preprocessing=None,
        seed=0,
        epochs=30,
        batch_size=128,
        drop_last=False,
        optimizer="momentum",
        lr=0.05,
        momentum=0.9,
        beta1=0.9,
        beta2=0.999,
        eps=1e-08,
        l2=0.0,
        l1=0.0,
        schedule="constant",
        decay=0.0,
        step_size=10.0,
        gamma=0.1,
        min_lr=0.0,
        warmup=0.0,
        validation_fraction=0.1,
        early_stopping=False,
        monitor="val_loss",
        patience=5,
        min_delta=0.0,
        label_smoothing=0.0,
        class_weight=None,
        on_divergence="raise",
        cuda_graph=False,
        checkpoint=None,
        checkpoint_every=1,
        checkpoint_minutes=0.0,
        resume=False,
        verbose=False,
        weight_decay="deprecated",
    ):
        self.hidden = hidden
        self.activation = activation
        self.init = init
        self.leaky_slope = leaky_slope
        self.dtype = dtype
        self.device = device
        self.preprocessing = preprocessing
        self.seed = seed
        self.epochs = epochs
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.l2 = l2
        self.l1 = l1
        self.schedule = schedule
        self.decay = decay
        self.step_size = step_size
        self.gamma = gamma
        self.min_lr = min_lr
        self.warmup = warmup
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.on_divergence = on_divergence
        self.cuda_graph = cuda_graph
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.checkpoint_minutes = checkpoint_minutes
        self.resume = resume
        self.verbose = verbose
        self.weight_decay = weight_decay

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X, y, sample_weight=None) -> MLPClassifier:
        """Train on features X (n, d) and labels y (n,) of any hashable kind, or a 0/1 indicator (n, K).

        Parameters
        ----------
        sample_weight : array-like of shape (n_samples,), default=None
            One non-negative weight per row: a batch's loss is sum(w_i l_i) / sum(w_i), and the training loss and
            metric are weighted alike. The early-stopping split's rows keep their weights, which weigh its score as
            :func:`mlp_xp.fit` and scikit-learn weigh it.

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
            X, y, prep = self._table_input(X, y)
            if prep is None:
                X, y = validate_data(self, X, y, **_CHECKS, multi_output=True)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
            w = _weights(sample_weight, X)
            check_classification_targets(y)
            multilabel = type_of_target(y) == "multilabel-indicator"
            if multilabel:
                classes = np.arange(y.shape[1])
                model, history = self._train(X, y, "binary_cross_entropy", y.shape[1], prep=prep, w=w)
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
                model, history = self._train(X, encoded, "cross_entropy", len(classes), classes, prep, w)
                if not np.array_equal(classes, np.arange(len(classes))):
                    # so that model_ saved and loaded alone predicts these labels too, as the estimator does
                    model.labels = LabelVocabulary(classes)
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

    Takes the parameters of :class:`MLPClassifier` except ``label_smoothing`` and ``class_weight``. y may be
    1-D (one target, ``predict`` returns shape (n,)) or 2-D (n, K) (K targets, ``predict`` returns (n, K)).
    ``score`` is R^2. Scaling the targets (e.g. with ``TransformedTargetRegressor``) helps when they are far
    from unit size.

    {parameters}

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    n_features_in_, feature_names_in_, model_, history_, loss_curve_, n_iter_
        As in :class:`MLPClassifier`.
    """

    _task = "regression"

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        *,
        init="glorot",
        leaky_slope=0.01,
        dtype="float32",
        device="cpu",
        preprocessing=None,
        seed=0,
        epochs=30,
        batch_size=128,
        drop_last=False,
        optimizer="momentum",
        lr=0.05,
        momentum=0.9,
        beta1=0.9,
        beta2=0.999,
        eps=1e-08,
        l2=0.0,
        l1=0.0,
        schedule="constant",
        decay=0.0,
        step_size=10.0,
        gamma=0.1,
        min_lr=0.0,
        warmup=0.0,
        validation_fraction=0.1,
        early_stopping=False,
        monitor="val_loss",
        patience=5,
        min_delta=0.0,
        on_divergence="raise",
        cuda_graph=False,
        checkpoint=None,
        checkpoint_every=1,
        checkpoint_minutes=0.0,
        resume=False,
        verbose=False,
        weight_decay="deprecated",
    ):
        self.hidden = hidden
        self.activation = activation
        self.init = init
        self.leaky_slope = leaky_slope
        self.dtype = dtype
        self.device = device
        self.preprocessing = preprocessing
        self.seed = seed
        self.epochs = epochs
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.l2 = l2
        self.l1 = l1
        self.schedule = schedule
        self.decay = decay
        self.step_size = step_size
        self.gamma = gamma
        self.min_lr = min_lr
        self.warmup = warmup
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.on_divergence = on_divergence
        self.cuda_graph = cuda_graph
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.checkpoint_minutes = checkpoint_minutes
        self.resume = resume
        self.verbose = verbose
        self.weight_decay = weight_decay

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y, sample_weight=None) -> MLPRegressor:
        """Train on features X (n, d) and targets y (n,) or (n, K).

        Parameters
        ----------
        sample_weight : array-like of shape (n_samples,), default=None
            One non-negative weight per row: a batch's loss is sum(w_i l_i) / sum(w_i), and the training loss and
            metric are weighted alike. The early-stopping split's rows keep their weights, which weigh its score as
            :func:`mlp_xp.fit` and scikit-learn weigh it.

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
            X, y, prep = self._table_input(X, y)
            if prep is None:
                X, y = validate_data(self, X, y, **_CHECKS, multi_output=True, y_numeric=True)
            elif y.dtype.kind not in "biuf":
                raise DataError(f"y has dtype {y.dtype}, not numbers: a regressor needs numeric targets")
            y_1d = y.ndim == 1
            Y = y.reshape(-1, 1) if y_1d else y
            model, history = self._train(X, Y, "mse", Y.shape[1], prep=prep, w=_weights(sample_weight, X))
        self._set_fitted(model, history, n_outputs_=Y.shape[1], _y_1d=y_1d)
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted values, shape (n,) for a 1-D training target, else (n, K)."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out


MLPClassifier.__doc__ = MLPClassifier.__doc__.replace("{parameters}", _parameters_doc("classification"))
MLPRegressor.__doc__ = MLPRegressor.__doc__.replace("{parameters}", _parameters_doc("regression"))
