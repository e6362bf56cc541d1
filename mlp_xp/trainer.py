"""The training loop: epochs of steps on the device, metrics to the host once per epoch.

One run (:func:`fit`): the settings are checked against the model, the data are checked and copied to the
device once; each epoch draws its permutation on the device and runs its steps (:mod:`mlp_xp.step`); the loss
and the count of correct rows add up on the device and reach the host once, at the epoch's end, where the
validation and test sets are scored, the record is made, and the divergence guard, early stopping and the
callbacks (:mod:`mlp_xp.stopping`) decide whether to go on.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as _checkpoint
from . import distributed as _distributed
from . import step as _step
from .backend.base import require_memory
from .deprecation import warn_renamed
from .errors import ConfigError, DataError, DivergenceError, MLPXPError, TrainingInterrupted, setting_name, spell
from .files import write_json_atomic
from .model import MLP, Workspace
from .optim import Gradients, Optimizer
from .reference.data import permutation as _permutation
from .schedules import Schedule
from .settings import TRAIN_SETTINGS, TrainConfig, resolve_names
from .stopping import DivergenceGuard, EarlyStopping
from .validation import (
    check_features,
    check_sample_weight,
    check_sparse_features,
    check_split_weights,
    check_targets,
    is_sparse,
)

__all__ = ["History", "TrainConfig", "evaluate", "fit", "preprocess_split", "split_validation", "validation_rows"]


def __getattr__(name: str):
    # TrainStep and GraphStep lived here; they are in mlp_xp.step now
    if name in ("TrainStep", "GraphStep"):
        warn_renamed(f"mlp_xp.trainer.{name}", f"mlp_xp.step.{name}")
        return getattr(_step, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Rows per batch when scoring the validation and test sets.
EVAL_BATCH = 4096


@dataclass
class History:
    """Per-epoch records of a run: epoch, train_loss, train_accuracy (or train_mse), val_* and test_*
    when those sets exist, lr, seconds (training wall time of the epoch) and eval_seconds."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stop_reason: str = "completed"
    #: The run's state at its end (what a checkpoint holds: parameters, optimizer state, clocks), for
    #: ``fit(..., warm_state=history.state)`` to go on from; None when the run raised.
    state: tuple[dict, dict] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    @property
    def best(self) -> dict:
        """The record of the epoch whose weights the model holds: the restored best epoch with early stopping,
        else the last epoch."""
        if self.best_epoch is not None:
            return next((r for r in self.records if r["epoch"] == self.best_epoch), self.last)
        return self.last

    def to_json(self, path) -> None:
        """Write the records as a JSON list, whole or not at all."""
        write_json_atomic(path, self.records)


Callback = Callable[[dict, MLP], "bool | None"]


def fit(
    model: MLP,
    X,
    y,
    config: TrainConfig | None = None,
    *,
    X_val=None,
    y_val=None,
    X_test=None,
    y_test=None,
    callbacks: tuple[Callback, ...] | list = (),
    warm_state: tuple[dict, dict] | None = None,
    sample_weight=None,
    sample_weight_val=None,
    comm=None,
    **settings,
) -> History:
    """Train ``model`` in place on (X, y) and return the per-epoch :class:`History`.

    ``settings`` override fields of ``config`` (see :class:`TrainConfig`). Validation data come from
    ``X_val``/``y_val`` or, failing that, from ``validation_fraction`` of the training data. A test set, if
    given, is scored after every epoch (it never steers training). Each callback receives the epoch's
    record and the model; returning True stops training.

    With ``checkpoint=DIR`` the run writes a checkpoint there (:mod:`mlp_xp.checkpoint`) every
    ``checkpoint_every`` epochs, after ``checkpoint_minutes`` at the next step boundary, and on an interrupt;
    ``resume=True`` continues from it. SIGINT and SIGTERM (from the main thread) stop the run at the next step
    boundary with :class:`mlp_xp.errors.TrainingInterrupted`, the model holding what the run would return there;
    a second one stops it at once (on the CPU, once the running step's replay, one compiled call, returns).

    ``sample_weight`` (one non-negative weight per training row) weighs each row's loss: a batch's loss is
    sum(w_i loss_i) / sum(w_i) (:mod:`mlp_xp.reference.loss`), and the epoch's train_loss and metric are weighted
    the same way; integer weights train as the rows repeated would. The weights follow their rows into the
    validation split, whose val_loss and metric (and so early stopping's score) are weighted alike, as
    scikit-learn scores its split; ``sample_weight_val`` weighs ``X_val``'s rows the same way. The test scores
    are not weighted.

    ``comm`` (a :class:`mlp_xp.distributed.Communicator`; by default one process) trains data-parallel across
    its ranks (:mod:`mlp_xp.distributed`): every rank passes the same model, data and settings.

    ``warm_state`` (a finished run's :attr:`History.state`) goes on from where that run ended, on these data or
    others: its parameters, its optimizer's state (velocity, Adam's moments and step count) and its clocks (the
    epoch count, which draws the permutations, and the step count, which drives the schedule), up to ``epochs``
    in all. The mechanism a checkpoint's resume uses, so that 3 epochs and then 2 warm ones are the 5 epochs of one
    run, bit for bit (same machine and build).
    """
    # renamed settings resolved here, so that their warnings point at fit's caller
    settings = resolve_names(settings, TRAIN_SETTINGS, "training", stacklevel=3)
    if config is not None and not isinstance(config, TrainConfig):
        hint = "fit(model, X, y, **settings)" if isinstance(config, dict) else "a TrainConfig or keyword settings"
        raise ConfigError(f"config must be a TrainConfig, not {type(config).__name__}: pass {hint}")
    callbacks = _check_callbacks(callbacks)
    cfg = (config or TrainConfig()).replace(**settings).validate()
    comm = comm or _distributed.Communicator()
    resumes = cfg.resume  # (a rank but the first resumes from rank 0's checkpoint, sent to it)
    if comm.size > 1:
        cfg = _check_distributed(cfg, model, comm)
    has_val = X_val is not None or cfg.validation_fraction > 0
    check_against_model(cfg, model.loss, model.ops, has_validation=has_val)
    if cfg.checkpoint is not None:
        _checkpoint.check_folder(cfg.checkpoint, cfg.resume)
    elif cfg.resume:
        raise ConfigError(
            f"{setting_name('resume')} needs the checkpoint folder: set {spell('checkpoint', 'DIR', placeholder=True)}"
        )
    if warm_state is not None and cfg.resume:
        raise ConfigError("warm_state and resume both say where to go on from: give one of them")
    if cfg.l2 and cfg.l2_per_sample:
        raise ConfigError("l2 and l2_per_sample are two scalings of one penalty: give one of them")
    if not cfg.resume:  # (a warm start too: its weights are the model's as it is now)
        _check_finite_start(model)
    data = _TrainingData.prepare(model, cfg, X, y, X_val, y_val, X_test, y_test, sample_weight, sample_weight_val)
    if comm.size > 1:
        _same_run_everywhere(comm, model, cfg, data)
    run = _Run(model, cfg, data, comm)
    run.resumes = resumes
    run.warm = warm_state
    # A diverging run overflows before its loss turns non-finite; the epoch check reports that once,
    # so NumPy's per-operation warnings would only bury the message.
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return run.train(callbacks)
    finally:  # also when interrupted or diverged: the weights kept were trained with these settings
        model.trained_on = {**(model.trained_on or {}), **_trained_on(cfg)}


def _check_finite_start(model: MLP) -> None:
    """A ConfigError before any work for a model whose weights are already NaN or Inf: no learning rate can train
    it, and its first epoch would read as a divergence."""
    bad = model.nonfinite_arrays()
    if not bad:
        return
    raise ConfigError(
        f"the model's weights hold NaN or Inf before training ({', '.join(bad)}): make a new model, or load a good "
        "model file (set_flat took them as given)"
    )


def _check_callbacks(callbacks) -> list:
    """The callbacks as a list, or a ConfigError before any work where one cannot be called."""
    if callable(callbacks):
        raise ConfigError("callbacks must be a list of functions: pass callbacks=[f], not callbacks=f")
    try:
        callbacks = list(callbacks or ())
    except TypeError:
        raise ConfigError(
            f"callbacks must be a list of functions, not {type(callbacks).__name__}: pass callbacks=[f]"
        ) from None
    for k, f in enumerate(callbacks):
        if not callable(f):
            raise ConfigError(
                f"callbacks[{k}] is {f!r}, not a function: each callback is called as f(record, model) after an epoch"
            )
    return callbacks


def _trained_on(cfg: TrainConfig) -> dict:
    """What a saved model records of its run: the settings that shape the math (not the checkpointing, output
    or verbosity, which hold paths or change nothing), and the library's version."""
    from . import __version__

    shaping = {k: v for k, v in settings_of(cfg).items() if k not in _checkpoint.MAY_CHANGE or k == "epochs"}
    return {"settings": shaping, "mlp_xp": __version__}


def check_against_model(cfg: TrainConfig, loss: str, ops, *, has_validation: bool) -> None:
    """The settings that depend on the model's loss and backend, checked before any data are touched."""
    if cfg.early_stopping and not has_validation:
        raise ConfigError("early_stopping needs validation data: set validation_fraction or pass X_val/y_val")
    check_against_loss(cfg, loss)
    if cfg.cuda_graph and not ops.can_capture:
        raise ConfigError(
            f"cuda_graph needs the CUDA backend; this model is on {ops.name}: turn cuda_graph off, or train on a "
            "cuda device"
        )


def check_against_loss(cfg: TrainConfig, loss: str) -> None:
    """The settings that depend on the loss alone: the monitored metric, and what applies to cross_entropy only
    (a search checks them on every candidate before the first fit)."""
    metric = metric_name(loss)
    if cfg.monitor not in ("val_loss", f"val_{metric}"):
        raise ConfigError(f"monitor {cfg.monitor!r} does not fit loss {loss}: use 'val_loss' or 'val_{metric}'")
    if loss != "cross_entropy":
        for name in ("label_smoothing", "class_weight"):
            if getattr(cfg, name) not in (0.0, None):
                raise ConfigError(f"{name} applies to cross_entropy only: remove it for loss {loss}")


def evaluate(model: MLP, X, y, batch_size: int = EVAL_BATCH) -> dict:
    """Mean loss and accuracy (classification) or mse (regression) of ``model`` on host data (X, y)."""
    Xc = check_features(X, model.n_inputs, model.dtype)
    Yc = check_targets(y, len(Xc), model.loss, model.n_outputs, model.dtype)
    ws = model.workspace(min(batch_size, len(Xc)), with_grads=False)
    ops = model.ops
    ops.fill(ws.acc, 0.0)
    _accumulate(model, ops.asarray(Xc), ops.asarray(Yc), ws, ws.acc)
    loss, metric = _summarize(model, ops.to_host(ws.acc), len(Xc))
    return {"loss": loss, metric_name(model.loss): metric}


def metric_name(loss: str) -> str:
    """What the loss ops' second sum counts: accuracy for classification, mse for regression."""
    return "mse" if loss == "mse" else "accuracy"


def _accumulate(model: MLP, Xd, Yd, ws: Workspace, acc, smoothing: float = 0.0, class_weight=None, Wd=None) -> None:
    """acc += (sum of losses, correct rows or squared error) over device arrays, in batches; no sync. ``Wd``: one
    weight per row, which scales each row's loss and count."""
    n = Xd.shape[0]
    for s in range(0, n, ws.batch_size):
        part = ws.rows(min(ws.batch_size, n - s))
        xb = Xd[s : s + part.batch_size]
        if is_sparse(xb):  # a sparse set is densified one batch at a time
            xb = xb.toarray()
        z = model.forward(xb, part)
        model.ops.loss_grad(
            z,
            Yd[s : s + part.batch_size],
            acc,
            model.loss,
            write_grad=False,
            smoothing=smoothing,
            class_weight=class_weight,
            sample_weight=None if Wd is None else Wd[s : s + part.batch_size],
        )


def _summarize(model: MLP, acc: np.ndarray, n: int) -> tuple[float, float]:
    loss = float(acc[0]) / n
    metric = float(acc[1]) / (n * model.n_outputs) if model.loss == "mse" else float(acc[1]) / n
    return loss, metric


@dataclass
class _TrainingData:
    """The checked data of one run, on the device: training arrays and the named evaluation sets."""

    X: object
    Y: object
    n: int
    sets: dict  # "val" / "test" -> (X, Y) on the device
    class_weight: object  # one weight per class on the device, or None
    fingerprint: dict | None = None  # of each host array, when the run checkpoints
    W: object = None  # one weight per training row on the device, or None
    w_host: np.ndarray | None = None  # the same weights on the host (the steps' divisors are sums of them)
    set_weights: dict = field(default_factory=dict)  # "val" -> (one weight per row on the device, their sum)

    @classmethod
    def prepare(
        cls,
        model: MLP,
        cfg: TrainConfig,
        X,
        y,
        X_val,
        y_val,
        X_test,
        y_test,
        sample_weight=None,
        sample_weight_val=None,
    ) -> _TrainingData:
        dt, loss, k = model.dtype, model.loss, model.n_outputs
        if (X_val is None) != (y_val is None) or (X_test is None) != (y_test is None):
            raise DataError("pass features and targets together (X_val with y_val, X_test with y_test)")
        if sample_weight_val is not None and X_val is None:
            raise DataError("sample_weight_val weighs the rows of X_val: pass X_val and y_val with it")
        sparse = is_sparse(X)
        if sparse and not getattr(model.ops, "takes_sparse", False):
            raise DataError(
                f"sparse X trains on the CPU backend only, and this model is on {model.ops.name}: train on the CPU, "
                "or pass X.toarray() (a dense copy; mind its size)"
            )
        features = _features_checker(sparse)
        X = features(X, model.n_inputs, dt)
        n = X.shape[0]
        Y = check_targets(y, n, loss, k, dt)
        w = None if sample_weight is None else check_sample_weight(sample_weight, n, dt)
        if w is not None and cfg.cuda_graph:
            raise ConfigError(
                "cuda_graph with sample_weight: a captured step cannot take each batch's sum of weights; leave "
                "cuda_graph off"
            )
        w_val = None
        if X_val is not None:
            X_val = _features_checker(is_sparse(X_val) and sparse)(X_val, model.n_inputs, dt, "X_val")
            y_val = check_targets(y_val, X_val.shape[0], loss, k, dt, "y_val")
            if sample_weight_val is not None:
                w_val = check_sample_weight(sample_weight_val, X_val.shape[0], dt, "sample_weight_val")
        elif cfg.validation_fraction:
            train, val = validation_rows(n, cfg.validation_fraction, cfg.seed)
            X, Y, X_val, y_val = X[train], Y[train], X[val], Y[val]
            if w is not None:
                w, w_val = w[train], w[val]
                if not w.any():
                    raise DataError("every training row left after the validation split has weight 0: nothing to fit")
                check_split_weights(w_val)
        if X_test is not None:
            X_test = _features_checker(is_sparse(X_test) and sparse)(X_test, model.n_inputs, dt, "X_test")
            y_test = check_targets(y_test, X_test.shape[0], loss, k, dt, "y_test")
        weights = None if cfg.class_weight is None else class_weights(cfg.class_weight, k, Y)
        ops = model.ops
        # The data go to the device once; every later step reads them there.
        sets = {
            name: (_on_device(ops, Xs), ops.asarray(Ys))
            for name, Xs, Ys in (("val", X_val, y_val), ("test", X_test, y_test))
            if Xs is not None
        }
        cw = None if weights is None else ops.asarray(weights, dt)
        fp = None
        if cfg.checkpoint is not None:  # once per run: what a resume must find again
            parts = {
                "training features": X,
                "training targets": Y,
                "validation features": X_val,
                "validation targets": y_val,
                "test features": X_test,
                "test targets": y_test,
            }
            if w is not None:
                parts["sample weights"] = w
            if w_val is not None:
                parts["validation sample weights"] = w_val
            fp = {name: _checkpoint.fingerprint([a]) for name, a in parts.items()}
        W = None if w is None else ops.asarray(w)
        set_weights = {} if w_val is None else {"val": (ops.asarray(w_val), float(w_val.astype(np.float64).sum()))}
        return cls(_on_device(ops, X), ops.asarray(Y), X.shape[0], sets, cw, fp, W, w, set_weights)


def _features_checker(sparse: bool):
    return check_sparse_features if sparse else check_features


def _on_device(ops, X):
    """Features on the device; a sparse X stays the host CSR matrix it is (the CPU backend gathers and densifies
    a batch's rows at a time)."""
    return X if is_sparse(X) else ops.asarray(X)


def class_weights(spec, n_classes: int, labels: np.ndarray) -> np.ndarray:
    """One weight per class from a ``class_weight`` setting: a list of ``n_classes`` weights, a dict
    {class: weight} (others 1), or "balanced": n / (k * count of the class), counted on the training ``labels``
    with k the number of classes present, so that the weights of the n rows add up to n (as scikit-learn's); a
    class absent from them weighs 1, which changes nothing: it adds no loss."""
    if isinstance(spec, str):  # "balanced", the settings' only word
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        present = np.count_nonzero(counts)
        return np.where(counts > 0, len(labels) / (present * np.maximum(counts, 1)), 1.0)
    if isinstance(spec, dict):
        unknown = [c for c in spec if not (isinstance(c, (int, np.integer)) and 0 <= c < n_classes)]
        if unknown:
            raise ConfigError(
                f"class_weight names class(es) {unknown} but the model has classes 0..{n_classes - 1}: "
                "use those class numbers as keys"
            )
        w = np.ones(n_classes)
        w[list(spec)] = list(spec.values())
        return w
    w = np.asarray(spec, dtype=np.float64)
    if w.shape != (n_classes,):
        raise ConfigError(
            f"class_weight must be {n_classes} non-negative numbers (one per class), got {len(w)}: give one "
            "weight per class, a dict {class: weight}, or 'balanced'"
        )
    return w


class _Run:
    """One call of :func:`fit`: the optimizer, the steps, the epoch loop."""

    def __init__(self, model: MLP, cfg: TrainConfig, data: _TrainingData, comm=None) -> None:
        self.model, self.cfg, self.ops, self.data = model, cfg, model.ops, data
        self.comm = comm or _distributed.Communicator()
        self.batch = min(cfg.batch_size, data.n)
        self.steps = data.n // self.batch if cfg.drop_last else math.ceil(data.n / self.batch)
        self.n_seen = self.steps * self.batch if cfg.drop_last else data.n
        self.schedule = Schedule.from_config(cfg)
        require_memory(model.ops, _training_bytes(model, cfg, self.batch), "training's buffers", _SHRINK)
        self.optimizer = Optimizer.from_config(cfg, model)
        self.step = _step.TrainStep(
            model,
            -(-self.batch // self.comm.size),  # a rank's part of the global batch
            self.optimizer,
            smoothing=cfg.label_smoothing,
            class_weight=data.class_weight,
            weighted=data.W is not None,
        )
        if self.comm.rank > 0:  # only rank 0 folds mu V into the gradient: the sum is mu V + the global gradient
            g = self.step.grads
            self.step.grads = Gradients(g.flat, g.dW, g.db, 0.0)
        ws = self.step.ws
        self.tail = ws.rows(data.n - (self.steps - 1) * self.batch) if not cfg.drop_last else ws
        self.eval_ws = None
        if data.sets:
            self.eval_ws = model.workspace(
                min(EVAL_BATCH, max(s[0].shape[0] for s in data.sets.values())), with_grads=False
            )
        # Row 0 sums the training batches, rows 1 and 2 the validation and test sets: one array, so that one
        # copy to the host per epoch brings every metric.
        self.sums = self.ops.zeros((3, 2), np.float64)
        self.train_sums = self.sums[0]  # one view for the whole run (a captured graph keeps its address)
        self.graph_step = None
        if cfg.cuda_graph:  # over ranks, a rank's full part of a full global batch: the loss over the global rows
            divisor = float(self.batch) if self.comm.size > 1 else None
            self.graph_step = _step.GraphStep(self.step, data.X, data.Y, self.train_sums, divisor=divisor)
        self.global_step = 0
        self._next_step = 0  # the step the epoch loop is about to run (where an interrupt stops)
        self.stop = _StopRequest()
        self.warm: tuple[dict, dict] | None = None
        self.resumes = cfg.resume
        self.order = None if cfg.shuffle else self.ops.asarray(np.arange(data.n, dtype=np.int64))

    def train(self, callbacks: list) -> History:
        cfg, model = self.cfg, self.model
        self.history = history = History()
        self.guard = guard = DivergenceGuard(self.ops, model.params)
        self.early = early = (
            EarlyStopping(self.ops, model.params, cfg.monitor, cfg.patience, cfg.min_delta)
            if cfg.early_stopping
            else None
        )
        first_epoch, first_step = 1, 0
        if self.warm is not None:
            first_epoch = self._take_state(*self.warm)
        if self.resumes:
            first_epoch, first_step = self._restore()
            if history.stop_reason != "completed":  # the checkpointed run had ended for good (early stopping, ...)
                print(f"mlp_xp: the checkpoint's run had already ended: {history.stop_reason}", file=sys.stderr)
                first_epoch = cfg.epochs + 1
                if history.stop_reason.startswith("diverged") and cfg.on_divergence == "raise":
                    raise DivergenceError(history.stop_reason.removeprefix("diverged: "), history)
        self.last_checkpoint = time.monotonic()
        next_epoch = first_epoch
        with _interrupts() as self.stop:
            for epoch in range(first_epoch, cfg.epochs + 1):
                next_epoch = epoch + 1
                if first_step == 0:
                    guard.snapshot()
                record = self._epoch(epoch, first_step)
                first_step = 0
                if record is None:  # a signal, at a step boundary
                    self._interrupted(epoch)
                diverged = guard.check(record, record["lr"])
                if diverged:
                    history.stop_reason = "diverged: " + diverged
                    if cfg.on_divergence == "raise":
                        if early is not None:  # the model holds the epoch History.best names
                            early.restore()
                        raise DivergenceError(diverged, history)  # whoever catches it reports it
                    if cfg.verbose:
                        print(f"mlp_xp: {diverged}", file=sys.stderr)
                    break
                history.records.append(record)
                if cfg.verbose:
                    print(_summary_line(record, cfg.epochs), file=sys.stderr)
                reasons = [early.update(record)] if early is not None else []
                reasons += [
                    f"stopped by callback {getattr(cb, '__name__', cb)!s}" for cb in callbacks if cb(record, model)
                ]
                reasons = [r for r in reasons if r]
                if self.comm.size > 1:  # rank 0 decides (the records agree; a callback's answer may not)
                    reasons = self.comm.bcast_obj(reasons)
                    self._agree_on_signals()
                if early is not None:
                    history.best_epoch = early.best_epoch
                if reasons:
                    history.stop_reason = reasons[-1]
                    break
                if cfg.checkpoint is not None and epoch < cfg.epochs and epoch % cfg.checkpoint_every == 0:
                    self._save_checkpoint(epoch + 1, 0, durable=False)
                if self.stop.signum is not None:  # a signal during the epoch's end: stop here
                    self._interrupted(epoch + 1)
            # still under the handlers: a signal now only sets the flag, so the run's end is not lost to it
            if cfg.checkpoint is not None:  # before the best weights go back (a resume puts them back)
                self._save_checkpoint(next_epoch, 0, durable=True)
            if early is not None:
                early.restore()
        history.state = self._state(next_epoch, 0)
        return history

    def _agree_on_signals(self) -> None:
        """A signal that reached any rank stops every rank at this epoch's end (one small sum per epoch)."""
        flag = np.array([0.0 if self.stop.signum is None else float(self.stop.signum)])
        self.comm.allreduce(flag)
        if flag[0] and self.stop.signum is None:
            self.stop.signum = signal.SIGINT

    def _take_state(self, meta: dict, arrays: dict) -> int:
        """Go on from a finished run's state (``warm_state``): parameters, optimizer state and clocks; the epoch to
        go on from. Nothing of its data is checked: a warm start may train on other rows."""
        ops, dt, opt = self.ops, self.model.dtype, self.optimizer
        if arrays["params"].shape != (self.model.layout.n_params,):
            raise ConfigError(
                f"warm_state holds {arrays['params'].shape[0]} parameters, the model {self.model.layout.n_params}: "
                "go on from a run of this architecture"
            )
        ops.copy(self.model.params, ops.asarray(arrays["params"], dt))
        for name in ("velocity", "m", "v"):
            if getattr(opt, name) is not None and name in arrays:
                ops.copy(getattr(opt, name), ops.asarray(arrays[name], dt))
        opt.t, self.global_step = meta["optimizer_t"], meta["global_step"]
        return int(meta["next_epoch"])

    # ---- checkpoints ----
    def _state(self, next_epoch: int, next_step: int) -> tuple[dict, dict]:
        """Everything the run needs to go on before step ``next_step`` of epoch ``next_epoch``."""
        ops, opt, early, history = self.ops, self.optimizer, self.early, self.history
        arrays = {"params": ops.to_host(self.model.params), "guard": ops.to_host(self.guard.last_good)}
        arrays["sums"] = ops.to_host(self.sums)
        for name in ("velocity", "m", "v"):
            if getattr(opt, name) is not None:
                arrays[name] = ops.to_host(getattr(opt, name))
        early_state = None
        if early is not None:
            early_state = {"best_score": early.best_score, "best_epoch": early.best_epoch, "waited": early.waited}
            if early.best_epoch is not None:
                arrays["best"] = ops.to_host(early.best)
        meta = {
            "next_epoch": next_epoch,
            "next_step": next_step,
            "global_step": self.global_step,
            "optimizer_t": opt.t,
            "early_stopping": early_state,
            "history": {
                "records": history.records,
                "best_epoch": history.best_epoch,
                "stop_reason": history.stop_reason,
            },
            "settings": settings_of(self.cfg),
            "model": _architecture(self.model),
            "data": self.data.fingerprint,
            "source": _source(self.model),
        }
        return meta, arrays

    def _save_checkpoint(self, next_epoch: int, next_step: int, *, durable: bool):
        meta, arrays = self._state(next_epoch, next_step)
        path = _checkpoint.write(self.cfg.checkpoint, meta, arrays, durable=durable)
        self.last_checkpoint = time.monotonic()
        return path

    def _restore(self) -> tuple[int, int]:
        """Put the checkpoint's state back into the model, optimizer, guard, early stopping and history; the
        epoch and step to go on from."""
        cfg, ops, dt = self.cfg, self.ops, self.model.dtype
        if self.comm.size > 1:  # rank 0 reads and checks the checkpoint; every rank takes what it sends
            payload = None
            if self.comm.rank == 0:
                try:
                    payload = ("ok", *self._read_checkpoint())
                except MLPXPError as e:
                    payload = ("error", str(e))
            payload = self.comm.bcast_obj(payload)
            if payload[0] == "error":
                raise ConfigError(payload[1])
            meta, arrays, changes = payload[1:]
        else:
            meta, arrays, changes = self._read_checkpoint()
        ops.copy(self.model.params, ops.asarray(arrays["params"], dt))
        ops.copy(self.guard.last_good, ops.asarray(arrays["guard"], dt))
        ops.copy(self.sums, ops.asarray(arrays["sums"], np.float64))
        opt = self.optimizer
        for name in ("velocity", "m", "v"):
            if getattr(opt, name) is not None:
                ops.copy(getattr(opt, name), ops.asarray(arrays[name], dt))
        opt.t, self.global_step = meta["optimizer_t"], meta["global_step"]
        early, saved = self.early, meta["early_stopping"]
        if early is not None and saved is not None:
            early.best_score, early.best_epoch, early.waited = saved["best_score"], saved["best_epoch"], saved["waited"]
            if "best" in arrays:
                ops.copy(early.best, ops.asarray(arrays["best"], dt))
        self.history.records = list(meta["history"]["records"])
        self.history.best_epoch = meta["history"]["best_epoch"]
        self.history.stop_reason = meta["history"].get("stop_reason", "completed")
        where = f"epoch {meta['next_epoch']}" + (f", step {meta['next_step'] + 1}" if meta["next_step"] else "")
        said = f" ({'; '.join(changes)}; schedules follow the new total)" if changes else ""
        if self.comm.rank == 0:
            print(f"mlp_xp: resuming from {_checkpoint.path_in(cfg.checkpoint)} at {where}{said}", file=sys.stderr)
        return meta["next_epoch"], meta["next_step"]

    def _read_checkpoint(self) -> tuple[dict, dict, list]:
        """The checkpoint's (metadata, arrays), checked against this run, and the allowed changes."""
        cfg = self.cfg
        meta, arrays = _checkpoint.read(cfg.checkpoint)
        changes = _checkpoint.check_resumable(
            meta, settings_of(cfg), _architecture(self.model), self.data.fingerprint, _source(self.model)
        )
        return meta, arrays, changes

    def _interrupted(self, epoch: int) -> None:
        """Stop for a signal at a step boundary: checkpoint, put back what the run would return, and raise."""
        path = self._save_checkpoint(epoch, self._next_step, durable=True) if self.cfg.checkpoint else None
        if self.early is not None and self.early.best_epoch is not None:
            self.early.restore()
        elif self._next_step:  # inside an epoch: back to the weights at the end of the last finished one
            self.ops.copy(self.model.params, self.guard.last_good)
        self.history.stop_reason = "interrupted"
        where = f"in epoch {epoch}" if self._next_step else f"after epoch {epoch - 1}"
        raise TrainingInterrupted(self.stop.signum, self.history, path, where)

    def _epoch(self, epoch: int, first_step: int = 0) -> dict | None:
        """Train one epoch (from ``first_step``, where a resume goes on), score the evaluation sets, bring the sums
        to the host once; the epoch's record, or None when a signal stopped it at a step boundary."""
        cfg, ops, data = self.cfg, self.ops, self.data
        if first_step == 0:
            ops.fill(self.sums, 0.0)
        bar = _progress(cfg.verbose, self.steps, epoch, cfg.epochs)
        t0 = ops.timestamp()
        perm = ops.permutation(data.n, cfg.seed, epoch) if self.order is None else self.order
        divisors = self._divisors(epoch, perm)
        minutes = cfg.checkpoint_minutes * 60.0 if cfg.checkpoint is not None else 0.0
        shared = self.comm.size > 1
        for k in range(first_step, self.steps):
            self._next_step = k
            if shared:  # signals take effect at the epoch's end on every rank together (see train)
                lr = self._shared_step(k, perm, divisors)
                continue
            if self.stop.signum is not None:
                if bar is not None:
                    bar.close()
                return None
            if minutes and time.monotonic() - self.last_checkpoint >= minutes:
                self._save_checkpoint(epoch, k, durable=False)
            part = self.tail if k == self.steps - 1 else self.step.ws
            s = k * self.batch
            idx = perm[s : s + part.batch_size]
            lr = self.schedule.lr_at(self.global_step, self.steps, self.n_seen)
            if cfg.l2_per_sample:  # scikit-learn's alpha: the penalty over the batch's rows (or weights)
                self.optimizer.l2 = cfg.l2_per_sample / (part.batch_size if divisors is None else divisors[k])
            if self.graph_step is not None and part is self.step.ws:
                self.graph_step(idx, lr)
            elif divisors is not None:
                self.step(data.X, data.Y, idx, self.train_sums, lr, part, W=data.W, divisor=divisors[k])
            else:
                self.step(data.X, data.Y, idx, self.train_sums, lr, part)
            self.global_step += 1
            if _step_hook is not None:  # tests: a signal or a kill at a chosen step
                _step_hook(self.global_step)
            if bar is not None and _bar_updates(k, self.steps):
                _tick(bar, ops.peek(self.train_sums), s + part.batch_size, k)
        self._next_step = 0
        if shared:
            self.comm.allreduce(self.sums[0])  # the epoch's training sums of every rank's rows (device: NCCL)
            if bar is not None:
                _tick(bar, ops.to_host(self.sums[0]), data.n, self.steps - 1)
        t1 = ops.timestamp()
        for row, (name, (Xs, Ys)) in zip((1, 2), data.sets.items()):
            Ws = data.set_weights.get(name, (None,))[0]
            _accumulate(self.model, Xs, Ys, self.eval_ws, self.sums[row], cfg.label_smoothing, data.class_weight, Ws)
        t2 = ops.timestamp()
        totals = ops.to_host(self.sums)  # the epoch's one host sync
        if bar is not None:
            bar.close()
        return self._record(epoch, totals, lr, ops.seconds_between(t0, t1), ops.seconds_between(t1, t2))

    def _shared_step(self, k: int, perm, divisors) -> float:
        """Global step k on this rank: its part of the batch's rows forward and backward (the loss over the whole
        batch's rows or weights), one all-reduce of the gradient buffer, the update every rank applies alike."""
        cfg, data, comm = self.cfg, self.data, self.comm
        s = k * self.batch
        rows = self.batch if cfg.drop_last or k < self.steps - 1 else data.n - s
        lo, hi = _distributed.split_rows(rows, comm.size, comm.rank)
        divisor = float(rows) if divisors is None else divisors[k]
        lr = self.schedule.lr_at(self.global_step, self.steps, self.n_seen)
        if cfg.l2_per_sample:
            self.optimizer.l2 = cfg.l2_per_sample / divisor
        grads = self.step.grads.flat
        if self.graph_step is not None and hi - lo == self.step.ws.batch_size and rows == self.batch:
            self.graph_step.backprop(perm[s + lo : s + hi])  # captured with the global batch's rows as divisor
        elif hi > lo:
            part = self.step.ws.rows(hi - lo)
            self.step.backprop(data.X, data.Y, perm[s + lo : s + hi], self.train_sums, part, W=data.W, divisor=divisor)
        else:  # a rank with no rows of this batch still joins the sum
            self.ops.fill(grads, 0.0)
        comm.allreduce(grads)  # GPU ranks: queued on the backend's stream, between the graph and the update
        self.optimizer.step(self.model.params, lr)
        self.global_step += 1
        if _step_hook is not None:
            _step_hook(self.global_step)
        return lr

    def _divisors(self, epoch: int, perm) -> list[float] | None:
        """With sample weights: each step's sum of its rows' weights (its loss's denominator), from the epoch's
        permutation computed on the host (the reference's, which every backend's permutation equals)."""
        w = self.data.w_host
        if w is None:
            return None
        # the epoch's row order on the host: the CPU backend's own; a device's is the rows' order (no shuffling) or
        # the reference's permutation, which it equals
        if isinstance(perm, np.ndarray):
            order = perm
        elif self.order is not None:
            order = np.arange(self.data.n)
        else:
            order = _permutation(self.data.n, self.cfg.seed, epoch)
        starts = np.arange(0, self.steps * self.batch, self.batch)
        sums = np.add.reduceat(w[order].astype(np.float64), starts)[: self.steps]
        if self.cfg.drop_last or self.steps * self.batch < self.data.n:
            sums = sums.copy()
            sums[-1] = float(w[order[starts[-1] : starts[-1] + self.batch]].astype(np.float64).sum())
        self.weight_seen = float(sums.sum())
        # a batch whose rows all weigh 0 contributes nothing: any positive divisor keeps its gradient 0
        return [float(s) if s > 0 else 1.0 for s in sums]

    def _record(self, epoch: int, totals: np.ndarray, lr: float, seconds: float, eval_seconds: float) -> dict:
        metric = metric_name(self.model.loss)
        seen = self.weight_seen if self.data.w_host is not None else self.n_seen
        loss, value = _summarize(self.model, totals[0], seen)
        record = {"epoch": epoch, "train_loss": loss, f"train_{metric}": value, "lr": lr}
        for row, (name, (Xs, _)) in zip((1, 2), self.data.sets.items()):
            weighed = self.data.set_weights.get(name)
            loss, value = _summarize(self.model, totals[row], Xs.shape[0] if weighed is None else weighed[1])
            record[f"{name}_loss"], record[f"{name}_{metric}"] = loss, value
        record["seconds"], record["eval_seconds"] = seconds, eval_seconds
        return record


_SHRINK = "use a smaller batch size or smaller hidden layers"
#: Parameter-sized buffers of each optimizer: its state and the gradient (momentum's is its velocity).
_OPTIMIZER_COPIES = {"sgd": 1, "momentum": 1, "nesterov": 2, "adam": 3}


def _training_bytes(model: MLP, cfg: TrainConfig, batch: int) -> int:
    """What a run allocates besides the model and the data: the optimizer's buffers, the divergence guard's and
    early stopping's copies of the parameters, and the step's workspace (a few rows of every layer's width)."""
    copies = _parameter_copies(cfg)
    rows = 3 * batch * sum(model.sizes) + 2 * EVAL_BATCH * sum(model.sizes)  # the step's and the scoring's
    return (copies * model.layout.n_params + rows) * model.dtype.itemsize


def training_memory_floor(hidden, cfg: TrainConfig, dtype) -> int:
    """A lower bound of a run's memory known before the data (the hidden layers' weights alone, with their
    optimizer copies), for the command line to refuse an impossible model before it reads anything."""
    widths = list(hidden)
    params = sum(a * b for a, b in zip(widths, widths[1:])) + sum(widths)
    return (1 + _parameter_copies(cfg)) * params * np.dtype(dtype).itemsize  # the model's own, and the run's


def _parameter_copies(cfg: TrainConfig) -> int:
    """Parameter-sized buffers a run allocates besides the model's: the optimizer's (momentum 0 is not folded:
    a velocity and a gradient), the divergence guard's copy, and early stopping's."""
    state = _OPTIMIZER_COPIES[cfg.optimizer] + int(cfg.optimizer == "momentum" and cfg.momentum == 0)
    return state + 1 + int(cfg.early_stopping)


#: Called with the global step count after every step, when set (tests: a signal or a kill at a chosen step).
_step_hook: Callable[[int], None] | None = None


def _architecture(model: MLP) -> dict:
    """The model's architecture as a checkpoint records it (the device may change between runs)."""
    return {k: v for k, v in model.config().items() if k != "device"}


class _StopRequest:
    signum: int | None = None


@contextlib.contextmanager
def _interrupts():
    """SIGINT and SIGTERM, for the duration of a run, ask it to stop at the next step boundary; a second one
    goes to the handler that was there before (Ctrl-C's KeyboardInterrupt), at once. Only in the main thread,
    where Python delivers signals."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {}

    def handler(signum, frame):
        if request.signum is None:
            request.signum = signum
            return
        old = previous.get(signum)
        signal.signal(signum, old if old is not None else signal.SIG_DFL)
        if callable(old):
            old(signum, frame)
        else:
            signal.raise_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is signal.SIG_IGN:  # ignored by whoever started us (a shell's `cmd &`)
            continue
        previous[signum] = signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _source(model: MLP) -> dict:
    """The dataset's name and data seed, where the command line recorded them in ``model.trained_on``."""
    known = model.trained_on or {}
    return {k: known[k] for k in ("dataset", "data_seed") if k in known}


def settings_of(cfg: TrainConfig) -> dict:
    """The run's settings as JSON values (a checkpoint's record of them)."""
    return json.loads(json.dumps({st.name: getattr(cfg, st.name) for st in TRAIN_SETTINGS}, default=str))


def split_validation(X: np.ndarray, Y: np.ndarray, fraction: float, seed: int):
    """Hold out ``fraction`` (in (0, 1)) of the rows for validation, at least one, leaving at least one."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction!r}")
    train, val = validation_rows(len(X), fraction, seed)
    return X[train], Y[train], X[val], Y[val]


def validation_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The row indices (training, validation), each sorted, of :func:`split_validation`'s split of n rows."""
    if n < 2:
        raise DataError("a validation split needs at least 2 samples: pass more data or X_val/y_val")
    n_val = min(max(1, int(round(n * fraction))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def preprocess_split(preprocessing, frame, y, fraction: float, seed: int):
    """Fit ``preprocessing`` (a :class:`mlp_xp.data.preprocess.TablePreprocessor`) on the training rows of the
    table ``frame`` only, after the validation rows (``fraction`` of them, the rows :func:`fit` would hold out
    with this seed) are carved out, so that nothing of them leaks into its statistics. Returns the encoded
    (X_train, y_train, X_val, y_val), the validation pair None when ``fraction`` is 0."""
    y = np.asarray(y)
    if len(y) != len(frame):
        raise DataError(f"y has {len(y)} entries but the table has {len(frame)} rows: they must match")
    if not fraction:
        return preprocessing.fit_transform(frame), y, None, None
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction!r}")
    train, val = validation_rows(len(frame), fraction, seed)
    preprocessing.fit(frame.iloc[train])
    return preprocessing.transform(frame.iloc[train]), y[train], preprocessing.transform(frame.iloc[val]), y[val]


def _progress(verbose: bool, steps: int, epoch: int, epochs: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs get the summary lines only)
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        file=sys.stderr,
        mininterval=0.25,
        disable=None,
    )
    return None if bar.disable else bar  # a disabled bar must not cost a device copy per step


def _bar_updates(k: int, steps: int) -> bool:
    """Whether step k updates the bar (about 50 times an epoch): only then is the device's loss sum peeked."""
    return k % max(1, steps // 50) == 0 or k == steps - 1


def _loss_text(loss: float) -> str:
    """A loss to 4 decimals, or to 4 digits once it is huge (a diverging regression's 4.98e+19, not 20 digits)."""
    return f"{loss:.4f}" if abs(loss) < 1e5 else f"{loss:.4g}"


def _tick(bar, acc, rows_done: int, k: int) -> None:
    # peek never waits for a GPU; on one it may show a loss a few steps old.
    bar.set_postfix_str(f"loss {_loss_text(float(acc[0]) / rows_done)}", refresh=False)
    bar.update(k + 1 - bar.n)


def _summary_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']:>3}/{epochs}", f"train_loss {_loss_text(r['train_loss'])}"]
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        if key in r:
            parts.append(f"{key} {100 * r[key]:.2f}%")
    for key in ("train_mse", "val_mse", "test_mse", "val_loss"):
        if key in r:
            parts.append(f"{key} {r[key]:.4g}")
    parts.append(f"lr {r['lr']:.4g}")
    parts.append(f"{r['seconds']:.2f}s")
    return "  ".join(parts)


def _check_distributed(cfg: TrainConfig, model: MLP, comm) -> TrainConfig:
    """What a data-parallel run takes (refused otherwise, before any data are read), and the settings of this rank:
    rank 0 alone reports and writes checkpoints."""
    kind = model.ops.kind
    on_device = kind == "cuda" and comm.reduces_device_buffers and getattr(comm, "ops", None) is model.ops
    if kind != "cpu" and not on_device:
        how = (
            "make the communicator for this backend: mlp_xp.distributed.for_backend(comm, model.ops) (NCCL)"
            if kind == "cuda"
            else "use --device cpu or cuda"
        )
        raise ConfigError(
            f"training on {comm.size} MPI ranks takes the CPU backend (MPI on host buffers) or the CUDA backend with "
            f"a communicator of its device buffers (NCCL); this model is on {model.ops.name} and the communicator "
            f"is {type(comm).__name__}: {how}"
        )
    if cfg.cuda_graph and not on_device:
        raise ConfigError("cuda_graph is a GPU setting, and these MPI ranks train on the CPU: leave it off")
    if comm.rank > 0:
        cfg = cfg.replace(checkpoint=None, resume=False, verbose=False)
    return cfg


def _same_run_everywhere(comm, model: MLP, cfg: TrainConfig, data: _TrainingData) -> None:
    """Before the first step: rank 0's parameters on every rank, and every rank's run the same (data, settings,
    model), else one clear error on every rank instead of ranks waiting on each other forever."""
    comm.bcast(model.params)  # (GPU ranks: NCCL on the backend's stream)
    host = [a if a is None or isinstance(a, np.ndarray) or is_sparse(a) else model.ops.to_host(a)  # device: once
            for a in (data.X, data.Y, data.w_host)]  # fmt: skip
    digest = _checkpoint.fingerprint(host)
    shaping = {k: v for k, v in settings_of(cfg).items() if k not in ("checkpoint", "resume", "verbose")}
    mine = {
        "data": f"{data.n} rows, sha256 {digest[:16]}",
        "settings": json.dumps(shaping, sort_keys=True),
        # (the initial weights' seed aside: rank 0's weights are every rank's)
        "model": json.dumps({k: v for k, v in _architecture(model).items() if k != "seed"}, sort_keys=True),
    }
    everyone = comm.allgather_obj(mine)
    differ = sorted({key for other in everyone for key in mine if other[key] != everyone[0][key]})
    if differ:
        ranks = [r for r, other in enumerate(everyone) if other != everyone[0]]
        raise ConfigError(
            f"the MPI ranks do not run the same training: the {' and the '.join(differ)} of ranks {ranks} are not "
            "rank 0's: give every rank the same data, settings and model"
        )
