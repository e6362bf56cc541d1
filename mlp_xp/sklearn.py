"""A drop-in for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``: change the import, keep the code.

    from mlp_xp.sklearn import MLPClassifier      # was: from sklearn.neural_network import MLPClassifier

The constructors are scikit-learn's, parameter for parameter (plus ``device``), and so are the fitted attributes
(``coefs_``, ``intercepts_``, ``n_iter_``, ``t_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
``best_validation_score_``, ``classes_``, ``out_activation_``, ...). Training is :func:`mlp_xp.fit`, the trainer of
every other front end: :data:`TRANSLATION` is the one table that says what each of scikit-learn's parameters
becomes, and the rest of this module is scikit-learn's bookkeeping around it (its stopping rule on ``tol`` and
``n_iter_no_change``, the ``adaptive`` rate, the stratified early-stopping split, ``partial_fit`` and
``warm_start``, which go on from the last run's optimizer state as a checkpoint's resume does).

Where it differs from scikit-learn on purpose (README, "scikit-learn's MLPs"): a run whose loss turns non-finite
stops there with scikit-learn's ValueError and keeps the weights of its last good epoch (a fit from new weights
that diverges in its first epoch leaves the estimator as it was), where scikit-learn trains on with NaN weights
first; ``warm_start`` keeps the optimizer's state (scikit-learn starts a new optimizer), so 3
epochs and then 2 warm ones are exactly 5; the per-epoch loss adds the penalty of the epoch's final weights.
``sample_weight`` weighs each row in the fused loss ops (a batch's loss is sum(w_i l_i) / sum(w_i), the penalty
alpha / sum(w_i), as scikit-learn's). Sparse ``X`` (CSR) trains on the CPU backend, a batch's rows densified at a
time. Not yet: ``solver="lbfgs"``, ``loss="poisson"``: each is refused with a line saying what to do instead.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from .errors import ConfigError
from .model import MLP
from .trainer import fit

__all__ = ["TRANSLATION", "MLPClassifier", "MLPRegressor"]

#: scikit-learn's parameter -> what mlp_xp's trainer is given (the README's table is this one).
TRANSLATION: tuple[tuple[str, str], ...] = (
    ("hidden_layer_sizes", "hidden"),
    ("activation", "activation; 'logistic' is sigmoid"),
    ("solver", "optimizer: 'sgd' is momentum (nesterov with nesterovs_momentum, sgd with momentum=0), 'adam' adam"),
    ("alpha", "l2_per_sample: alpha W / (the batch's rows, or its sum of sample weights), as scikit-learn adds it"),
    ("batch_size", "batch_size; 'auto' is min(200, n_samples)"),
    (
        "learning_rate",
        "the rate of each run: 'constant'; 'invscaling' lr / (1 + samples seen)^power_t, set each epoch; "
        "'adaptive' divided by 5 each time the stopping rule fires, until at most 1e-6 (sgd's velocity rescaled "
        "to scikit-learn's when the rate changes)",
    ),
    ("learning_rate_init", "lr"),
    ("power_t", "decay of the invscaling schedule"),
    ("max_iter", "epochs of this fit"),
    ("shuffle", "shuffle"),
    ("random_state", "the initial weights (scikit-learn's draws), the early-stopping split and seed"),
    ("tol, n_iter_no_change", "scikit-learn's stopping rule, on the training loss or the validation score"),
    ("verbose", "scikit-learn's per-epoch lines"),
    ("warm_start", "fit(..., warm_state=...): the last run's weights, optimizer state and clocks"),
    ("momentum", "momentum"),
    ("nesterovs_momentum", "optimizer nesterov"),
    ("early_stopping", "scikit-learn's validation split, scored every epoch; the best epoch's weights are kept"),
    ("validation_fraction", "the size of that split"),
    ("beta_1, beta_2, epsilon", "beta1, beta2, eps"),
    ("max_fun", "lbfgs only: refused unless left at 15000"),
    ("loss (MLPRegressor)", "'squared_error' is mse; 'poisson' refused"),
    ("device (mlp_xp only)", "device: 'cpu', 'auto', 'cuda' or 'cuda:N'"),
)

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_X_DTYPES = (np.float64, np.float32)


class _Stopping:
    """scikit-learn's ``_update_no_improvement_count`` as a callback of :func:`mlp_xp.fit`: after each epoch, the
    loss curve and (with early stopping) the validation score; True stops the run when neither improved by
    ``tol`` for more than ``n_iter_no_change`` epochs."""

    def __init__(self, est, X_val, y_val, w_val, n_rows: int, batch: int) -> None:
        self.est, self.X_val, self.y_val, self.w_val = est, X_val, y_val, w_val
        self.batches = math.ceil(n_rows / batch)
        self.n_rows = n_rows
        self.fired = False
        self.epochs = 0

    def __call__(self, record: dict, model: MLP) -> bool:
        est = self.est
        self.epochs += 1
        penalty = 0.0
        if est.alpha:  # (a host copy of the weights each epoch, only where there is a penalty to add)
            squares = sum(float(np.dot(w.ravel(), w.ravel())) for w, _ in model.weights())
            penalty = 0.5 * est.alpha * squares * self.batches / self.n_rows
        # scikit-learn's squared loss is the mean over every output, mlp_xp's the sum over a row's outputs
        loss = float(record["train_loss"]) / est._outputs_per_loss(model) + penalty
        est.loss_curve_.append(loss)
        est.t_ += self.n_rows
        if est.verbose:
            print(f"Iteration {len(est.loss_curve_)}, loss = {loss:.8f}")
        if self.X_val is not None:
            score = est._score_model(model, self.X_val, self.y_val, self.w_val)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_flat = model.get_flat()
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
        if est._no_improvement_count > est.n_iter_no_change:
            self.fired = True
            return True
        return False


def _keep(est, values: dict) -> None:
    """scikit-learn's rule for ``__init__``: every parameter stored as given, under its own name (the signature
    lists them: get_params reads it)."""
    for name in inspect.signature(type(est).__init__).parameters:
        if name != "self":
            setattr(est, name, values[name])


def _stochastic(est) -> bool:
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {est.solver} is not.")
    return True


def _finite_or_nan(score_of, p) -> float:
    """scikit-learn's score of predictions, NaN where they are not finite (a diverged run's)."""
    return float(score_of(p)) if np.isfinite(p).all() else float("nan")


class _DropIn(BaseEstimator):
    """What the classifier and the regressor share."""

    _is_classifier = True

    def _check_supported(self, sample_weight) -> None:
        if self.solver == "lbfgs":
            raise ConfigError(
                "solver='lbfgs' is not in mlp_xp (it trains by mini-batches on the device): use solver='adam' (the "
                "default) or 'sgd', or scikit-learn's own estimator for lbfgs"
            )
        if self.max_fun != 15000:
            raise ConfigError("max_fun applies to solver='lbfgs', which mlp_xp does not have: leave it at 15000")
        if getattr(self, "loss", "squared_error") != "squared_error":
            raise ConfigError(
                f"loss={self.loss!r} is not in mlp_xp yet: use loss='squared_error', or scikit-learn's own "
                "MLPRegressor for a Poisson loss"
            )

    def _validate(self, X, y, reset: bool):
        # sparse X stays CSR: the CPU backend densifies one batch's rows at a time
        return validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=_X_DTYPES,
            accept_sparse="csr",
            multi_output=True,
            y_numeric=not self._is_classifier,
        )

    def _new_model(self, n_features: int, n_outputs: int, loss: str, dtype) -> MLP:
        """scikit-learn's initial weights (its draws from ``random_state``: uniform in +-sqrt(f / (fan_in +
        fan_out)), f = 2 for logistic, else 6, biases too) in an MLP on ``device``."""
        self._random_state = check_random_state(self.random_state)
        sizes = [n_features, *self._hidden(), n_outputs]
        model = MLP(
            sizes,
            _ACTIVATIONS[self.activation],
            loss,
            dtype=np.dtype(dtype).name,
            device=self.device,
            seed=0,
        )
        factor = 2.0 if self.activation == "logistic" else 6.0
        Ws, bs = model.layout.views(np.empty(model.layout.n_params, np.float64))
        for W, b, fan_in, fan_out in zip(Ws, bs, sizes, sizes[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            W[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b[...] = self._random_state.uniform(-bound, bound, fan_out)
        flat = np.concatenate([np.concatenate([W.ravel() for W in Ws]), np.concatenate(bs)])
        model.set_flat(np.asarray(flat, model.dtype))
        return model

    def _hidden(self) -> tuple:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if np.isscalar(sizes) else tuple(sizes)
        if not all(isinstance(h, (int, np.integer)) and h > 0 for h in sizes):
            raise ConfigError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return tuple(int(h) for h in sizes)

    def _train_settings(self, n_rows: int) -> dict:
        """:data:`TRANSLATION`, applied: the trainer's settings for this fit."""
        batch = min(200, n_rows) if self.batch_size == "auto" else int(np.clip(self.batch_size, 1, n_rows))
        if self.batch_size != "auto" and not 1 <= self.batch_size <= n_rows:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=3
            )
        if self.solver == "adam":
            optimizer = {"optimizer": "adam", "beta1": self.beta_1, "beta2": self.beta_2, "eps": self.epsilon}
        elif self.momentum == 0:
            optimizer = {"optimizer": "sgd"}
        else:
            optimizer = {"optimizer": "nesterov" if self.nesterovs_momentum else "momentum", "momentum": self.momentum}
        schedule = {"schedule": "constant"}  # each run's rate is set by _rate, on scikit-learn's clocks
        return {
            "batch_size": batch,
            "l2_per_sample": self.alpha,
            "shuffle": bool(self.shuffle),
            "seed": self._seed,
            "on_divergence": "stop",
            **optimizer,
            **schedule,
        }

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        self._validate_params()
        self._check_supported(sample_weight)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        # as scikit-learn: coefs_ are the weights a warm fit goes on from (set by a fit, or by hand)
        warm = hasattr(self, "coefs_") and (incremental or self.warm_start)
        # a fit from new weights that diverges before its first epoch ends has no weights worth keeping: it leaves
        # the estimator as it was (fitted or not), never with the untrained weights of its start. With early
        # stopping scikit-learn returns from such a fit (NaN validation scores, finite weights), and so does this.
        before = None if warm or self.early_stopping else dict(self.__dict__)
        X, y = self._validate(X, y, reset=not warm)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        Y, loss, n_outputs = self._encode(y, classes, first=not warm)
        if warm and not incremental and self._is_classifier and not self._multilabel:
            now = unique_labels(y)
            if len(now) != len(self.classes_) or (now != self.classes_).any():
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                    f"Previously got {self.classes_}, `y` has {now}"
                )
        if not warm:
            self._model = self._new_model(X.shape[1], n_outputs, loss, X.dtype)
            self._state, self._epochs_done = None, 0
            self.loss_curve_, self.t_, self._no_improvement_count = [], 0, 0
            self.best_loss_ = np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._lr = self.learning_rate_init
        else:
            self._take_coefs(loss, n_outputs, X.dtype)
            self._random_state = check_random_state(self.random_state)  # anew each fit, as scikit-learn does
            if X.shape[1] != self._model.n_inputs:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self._model.n_inputs} "
                    "features as input"
                )
        X_val = y_val = w_val = None
        if self.early_stopping:
            # scikit-learn's split (the same draws from random_state), stratified as it stratifies: by the
            # binarized labels of a classifier with one output, so two classes (it does not stratify more)
            stratify = None
            if self._is_classifier and not self._multilabel and n_outputs == 1:
                stratify = LabelBinarizer().fit(self.classes_).transform(y).astype(bool)
            train, val = train_test_split(
                np.arange(X.shape[0]),
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            X, X_val, Y, y_val = X[train], X[val], Y[train], np.asarray(y)[val]
            if sample_weight is not None:
                sample_weight, w_val = sample_weight[train], sample_weight[val]
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            self._best_flat = self._model.get_flat()
        if not warm or not hasattr(self, "_seed"):
            # the trainer's shuffles: one seed per estimator, drawn after scikit-learn's own draws (the initial
            # weights, then the early-stopping split), kept across warm fits (their epochs go on counting)
            self._seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        settings = self._train_settings(X.shape[0])
        epochs = 1 if incremental else self.max_iter
        stop = _Stopping(self, X_val, y_val, w_val, X.shape[0], settings["batch_size"])
        diverged = ""
        # scikit-learn's invscaling sets the rate at each epoch's end: an epoch a call then, as below
        chunk = 1 if self.solver == "sgd" and self.learning_rate == "invscaling" else epochs
        while stop.epochs < epochs:
            stop.fired = False
            lr = self._rate()
            self._carry_velocity(lr)
            history = fit(
                self._model,
                X,
                Y,
                epochs=self._epochs_done + min(chunk, epochs - stop.epochs),
                lr=lr,
                warm_state=self._state,
                callbacks=[stop],
                sample_weight=sample_weight,
                **settings,
            )
            self._state, self._state_lr = history.state, lr
            self._epochs_done = history.state[0]["next_epoch"] - 1
            if history.stop_reason.startswith("diverged"):
                diverged = history.stop_reason.removeprefix("diverged: ")
                break
            if not stop.fired:
                continue  # the chunk ended (invscaling: an epoch), or the loop does, on max_iter
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
            # scikit-learn's trigger_stopping: only sgd's adaptive rate goes on, a fifth as fast
            if self.solver == "sgd" and self.learning_rate == "adaptive" and self._lr > 1e-6:
                self._lr /= 5
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{msg} Setting learning rate to {self._lr:f}")
                continue
            if self.verbose:
                print(f"{msg} Stopping.")
            break
        if diverged and before is not None and stop.epochs == 0:
            self.__dict__.clear()
            self.__dict__.update(before)
            kept = "keeps its previous fit" if hasattr(self, "coefs_") else "stays unfitted"
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and need to "
                f"be preprocessed. (mlp_xp: {diverged}. No epoch of this fit ended, so the estimator {kept}.)"
            )
        self.n_iter_ = stop.epochs
        if diverged:  # the diverged epoch, as scikit-learn records it
            self.n_iter_ += 1
            self.loss_curve_.append(float("nan"))
            if self.early_stopping:
                self.validation_scores_.append(float("nan"))
        if self.early_stopping:
            self._model.set_flat(self._best_flat)
            self.best_loss_ = None
        self._set_coefs()
        if diverged and not self.early_stopping:
            # scikit-learn's error; its weights would be NaN, these are the last good epoch's
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and need to "
                f"be preprocessed. (mlp_xp: {diverged}.)"
            )
        if not diverged and not incremental and not stop.fired and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization hasn't "
                "converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_outputs_ = n_outputs
        return self

    def _set_coefs(self) -> None:
        """coefs_ and intercepts_: host copies of the model's weights, in scikit-learn's layout."""
        Ws = self._model.weights()
        self.coefs_ = [np.array(W) for W, _ in Ws]
        self.intercepts_ = [np.array(b) for _, b in Ws]
        self.n_layers_ = len(Ws) + 1

    def _take_coefs(self, loss: str, n_outputs: int, dtype) -> None:
        """Before a warm fit: the model holds coefs_ and intercepts_ as they are now (a fit's, or set by hand as
        scikit-learn allows); without a model yet (set by hand only), one is made around them."""
        coefs = [np.asarray(c, np.float64) for c in self.coefs_]
        intercepts = [np.asarray(b, np.float64).reshape(-1) for b in self.intercepts_]
        sizes = [coefs[0].shape[0], *(c.shape[1] for c in coefs)]
        if not hasattr(self, "_model"):
            dtype = np.asarray(self.coefs_[0]).dtype if np.asarray(self.coefs_[0]).dtype in _X_DTYPES else dtype
            self._model = MLP(
                sizes, _ACTIVATIONS[self.activation], loss, dtype=np.dtype(dtype).name, device=self.device
            )
            self._random_state = check_random_state(self.random_state)
            self._state, self._epochs_done, self._lr = None, 0, self.learning_rate_init
            for name, value in (("loss_curve_", []), ("t_", 0), ("_no_improvement_count", 0), ("best_loss_", np.inf)):
                if not hasattr(self, name):
                    setattr(self, name, value)
            self.validation_scores_ = getattr(self, "validation_scores_", None)
            self.best_validation_score_ = getattr(self, "best_validation_score_", None)
        if sizes != self._model.sizes or n_outputs != self._model.n_outputs:
            raise ValueError(
                f"coefs_ have the layer sizes {sizes}, but the data need {n_outputs} outputs of a model of "
                f"{self._model.sizes}: fit without warm_start"
            )
        bad = [f"{name}[{k}]" for name, arrays in (("coefs_", coefs), ("intercepts_", intercepts))
               for k, a in enumerate(arrays) if not np.isfinite(a).all()]  # fmt: skip
        if bad:  # (scikit-learn would train on from them, and end with its non-finite weights error)
            raise ValueError(
                f"{', '.join(bad)} hold NaN or Inf, so a warm fit cannot go on from them: set finite weights, or fit "
                "without warm_start"
            )
        flat = np.concatenate([*(c.ravel() for c in coefs), *intercepts]).astype(self._model.dtype)
        self._model.set_flat(flat)
        if self._state is not None:
            self._state[1]["params"] = flat

    def _rate(self) -> float:
        """The learning rate of the next epoch, by scikit-learn's clocks."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            return self.learning_rate_init / (self.t_ + 1) ** self.power_t
        return self._lr

    def _carry_velocity(self, lr: float) -> None:
        """scikit-learn's velocity holds the rate it was built with (v <- mu v - lr g); mlp_xp's does not (V <-
        mu V + g, W <- W - lr V). When the rate changes between two runs, scaling V by old / new rate makes the
        next steps scikit-learn's exactly (its v = -lr V)."""
        old = getattr(self, "_state_lr", None)
        if self._state is None or old is None or old == lr or "velocity" not in self._state[1]:
            return
        v = self._state[1]["velocity"]
        v *= v.dtype.type(old / lr)

    @property
    def _optimizer(self):
        """What scikit-learn's tests read of its optimizer: the learning rate the next epoch would use."""
        from types import SimpleNamespace

        lr = getattr(self, "_lr", self.learning_rate_init)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            lr = self.learning_rate_init / (getattr(self, "t_", 0) + 1) ** self.power_t
        return SimpleNamespace(learning_rate=lr)

    def _outputs_per_loss(self, model) -> int:
        return model.n_outputs if not self._is_classifier else 1

    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, reset=False, dtype=_X_DTYPES, accept_sparse="csr")
        # in the input's dtype, as scikit-learn returns it (a float32 model given float64 X computes in float32)
        return self._model.predict_proba(X).astype(X.dtype, copy=False)


class MLPClassifier(ClassifierMixin, _DropIn):
    """scikit-learn's ``MLPClassifier``, trained by mlp_xp (see the module's docstring; parameters as
    scikit-learn's, plus ``device``)."""

    _parameter_constraints = {**_SkClassifier._parameter_constraints, "device": [str]}

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
    ):
        _keep(self, locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y, sample_weight=None) -> MLPClassifier:
        """Fit to X (n, d) and labels y (n,) of any kind, or a 0/1 indicator matrix (n, K) for multi-label."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, classes=None, sample_weight=None) -> MLPClassifier:
        """One epoch over (X, y), going on from the last call's weights and optimizer state; ``classes`` (every
        class there will be) on the first call."""
        _check_partial_fit_first_call(self, classes)
        return self._fit(X, y, sample_weight, incremental=True, classes=self.classes_)

    def _encode(self, y, classes, first: bool):
        """The targets as the loss takes them: one logistic output for two classes (and one), softmax for more,
        logistic per label for a 0/1 indicator matrix; sets ``classes_`` and ``out_activation_``."""
        multilabel = type_of_target(y) == "multilabel-indicator"
        if multilabel:
            if first and classes is None:
                self.classes_ = np.arange(y.shape[1])
            self._multilabel = True
            self.out_activation_ = "logistic"
            return np.asarray(y, np.float64), "binary_cross_entropy", y.shape[1]
        if np.ndim(y) == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # scikit-learn's DataConversionWarning
        if first and classes is None:
            self.classes_ = unique_labels(y)
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if len(unseen):
            raise ValueError(
                f"`y` has classes not in `self.classes_`: {unseen.tolist()} (the classes were {self.classes_.tolist()})"
            )
        self._multilabel = False
        index = np.searchsorted(self.classes_, y)
        k = len(self.classes_)
        if k <= 2:  # one logistic unit: the positive class is classes_[1] (a single class: all negative)
            self.out_activation_ = "logistic"
            return (index == 1).astype(np.float64).reshape(-1, 1), "binary_cross_entropy", 1
        self.out_activation_ = "softmax"
        return index.astype(np.int64), "cross_entropy", k

    def _score_model(self, model, X, y, sample_weight=None) -> float:
        """accuracy_score of the model's predictions: what scikit-learn's early stopping reads."""
        p = model.predict_proba(X)
        return _finite_or_nan(lambda p: accuracy_score(y, self._labels(p), sample_weight=sample_weight), p)

    def _labels(self, p: np.ndarray) -> np.ndarray:
        if self._multilabel:
            return (p > 0.5).astype(int)
        if p.shape[1] == 1:
            return (
                self.classes_[(p[:, 0] > 0.5).astype(int)]
                if len(self.classes_) == 2
                else self.classes_[np.zeros(len(p), int)]
            )
        return self.classes_[p.argmax(axis=1)]

    def predict(self, X) -> np.ndarray:
        """The class labels (a 0/1 indicator matrix for multi-label)."""
        return self._labels(self._raw(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per class of ``classes_`` (two for a binary problem)."""
        p = self._raw(X)
        if p.shape[1] == 1 and not self._multilabel:
            return np.hstack([1 - p, p])
        return p

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class MLPRegressor(RegressorMixin, _DropIn):
    """scikit-learn's ``MLPRegressor``, trained by mlp_xp (see the module's docstring; parameters as
    scikit-learn's, plus ``device``)."""

    _is_classifier = False
    _parameter_constraints = {**_SkRegressor._parameter_constraints, "device": [str]}

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
    ):
        _keep(self, locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y, sample_weight=None) -> MLPRegressor:
        """Fit to X (n, d) and targets y (n,) or (n, K)."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None) -> MLPRegressor:
        """One epoch over (X, y), going on from the last call's weights and optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode(self, y, classes, first: bool):
        self.out_activation_ = "identity"
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:  # as scikit-learn: one column is a 1-D target, predicted as (n,)
            y = column_or_1d(y, warn=True)
        self._y_1d = y.ndim == 1
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return np.asarray(Y, np.float64), "mse", Y.shape[1]

    def _score_model(self, model, X, y, sample_weight=None) -> float:
        p = model.predict_proba(X)
        return _finite_or_nan(lambda p: r2_score(y, p[:, 0] if self._y_1d else p, sample_weight=sample_weight), p)

    def predict(self, X) -> np.ndarray:
        """Predicted values, (n,) for a 1-D training target, else (n, K), in the input's float dtype."""
        p = self._raw(X)
        return p[:, 0] if self._y_1d else p
