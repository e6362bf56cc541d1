"""The training loop: mini-batches on the device, metrics to the host once per epoch.

One run: the data are checked and copied to the device once; each epoch draws its permutation on the
device; each step gathers its rows there, runs forward, the fused loss, backward and one optimizer op;
the loss and the count of correct rows add up on the device and reach the host once, at the epoch's
end, where validation, early stopping, divergence checks and the progress line happen.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, DataError, DivergenceError
from .files import write_json_atomic
from .model import MLP, Workspace
from .optim import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, Schedule
from .validation import check_choice, check_features, check_fraction, check_positive, check_targets


@dataclass
class TrainConfig:
    """Every setting of a training run. ``validate()`` checks them all before any work starts.

    Parameters
    ----------
    epochs : int
        Passes over the training data.
    batch_size : int
        Rows per step, from 1 (pure SGD) to n (full batch); larger values are clipped to n.
    optimizer : {"sgd", "momentum", "nesterov", "adam"}
    lr : float
        Base learning rate.
    momentum : float
        mu of momentum and Nesterov.
    beta1, beta2, eps : float
        Adam's settings.
    weight_decay, l1 : float
        L2 and L1 penalties on the weights (never the biases).
    schedule : {"constant", "inverse_time", "power", "step", "cosine"}
        Learning-rate schedule (see :mod:`mlp_xp.schedules`), with ``decay``, ``step_size``, ``gamma``,
        ``min_lr`` and ``warmup`` (epochs of linear warm-up).
    drop_last : bool
        Skip the last partial batch of each epoch instead of training on it.
    validation_fraction : float
        Part of the training data held out for validation when no explicit validation set is given.
    early_stopping : bool
        Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs, then restore the
        best weights.
    label_smoothing : float
        eps of label smoothing (cross_entropy only).
    class_weight : sequence of float or None
        Per-class loss weights (cross_entropy only).
    seed : int
        Seed of the validation split and of the epoch permutations.
    on_divergence : {"raise", "stop"}
        What a non-finite loss does after the last good weights are restored: raise DivergenceError, or
        stop quietly with ``history.stop_reason`` set.
    cuda_graph : bool
        On the CUDA backend, capture each step's gather, forward, loss and backward as one CUDA graph
        (:class:`GraphStep`): fewer launches for small, launch-bound models.
    verbose : bool
        Show a progress bar per epoch and print a summary line after each.
    """

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "momentum"
    lr: float = 0.05
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    l1: float = 0.0
    schedule: str = "constant"
    decay: float = 0.0
    step_size: float = 10.0
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup: float = 0.0
    drop_last: bool = False
    validation_fraction: float = 0.0
    early_stopping: bool = False
    patience: int = 5
    min_delta: float = 0.0
    monitor: str = "val_loss"
    label_smoothing: float = 0.0
    class_weight: list | None = None
    seed: int = 0
    on_divergence: str = "raise"
    cuda_graph: bool = False
    verbose: bool = False

    def replace(self, **changes) -> TrainConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown training setting(s) {sorted(unknown)}: see TrainConfig for the names")
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        check_positive(self.epochs, "epochs", integer=True)
        check_positive(self.batch_size, "batch_size", integer=True)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.on_divergence, "on_divergence", ("raise", "stop"))
        check_choice(self.monitor, "monitor", ("val_loss", "val_accuracy", "val_mse"))
        check_fraction(self.validation_fraction, "validation_fraction")
        check_fraction(self.label_smoothing, "label_smoothing")
        check_positive(self.patience, "patience", integer=True)
        check_positive(self.min_delta, "min_delta", allow_zero=True)
        check_positive(self.seed, "seed", integer=True, allow_zero=True)
        self.lr_schedule()  # checks lr and the schedule's settings
        Optimizer(
            self.optimizer,
            _NullOps(),
            0,
            0,
            np.float32,
            momentum=self.momentum,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            l2=self.weight_decay,
            l1=self.l1,
        )
        return self

    def lr_schedule(self) -> Schedule:
        check_choice(self.schedule, "schedule", SCHEDULES)
        return Schedule(
            self.schedule, self.lr, self.decay, self.step_size, self.gamma, self.epochs, self.min_lr, self.warmup
        )


class _NullOps:
    """Lets ``validate`` build an Optimizer to check its settings without allocating anything."""

    def zeros(self, shape, dtype):
        return None


@dataclass
class History:
    """Per-epoch records of a run: epoch, train_loss, train_accuracy (or train_mse), val_* and test_*
    when those sets exist, lr, seconds (training wall time of the epoch) and eval_seconds."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stop_reason: str = "completed"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

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
    **settings,
) -> History:
    """Train ``model`` in place on (X, y) and return the per-epoch :class:`History`.

    ``settings`` override fields of ``config`` (see :class:`TrainConfig`). Validation data come from
    ``X_val``/``y_val`` or, failing that, from ``validation_fraction`` of the training data. A test set, if
    given, is scored after every epoch (it never steers training). Each callback receives the epoch's
    record and the model; returning True stops training.
    """
    cfg = (config or TrainConfig()).replace(**settings).validate()
    run = _Run(model, cfg, X, y, X_val, y_val, X_test, y_test)
    # A diverging run overflows before its loss turns non-finite; the epoch check reports that once,
    # so NumPy's per-operation warnings would only bury the message.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run.train(list(callbacks))


def evaluate(model: MLP, X, y, batch_size: int = 4096) -> dict:
    """Mean loss and accuracy (classification) or mse (regression) of ``model`` on host data (X, y)."""
    Xc = check_features(X, model.n_inputs, model.dtype)
    Yc = check_targets(y, len(Xc), model.loss, model.n_outputs, model.dtype)
    ws = model.workspace(min(batch_size, len(Xc)), with_grads=False)
    ops = model.ops
    ops.fill(ws.acc, 0.0)
    _accumulate(model, ops.asarray(Xc), ops.asarray(Yc), ws, ws.acc)
    loss, metric = _summarize(model, ops.to_host(ws.acc), len(Xc))
    return {"loss": loss, _metric_name(model): metric}


def _metric_name(model: MLP) -> str:
    return "mse" if model.loss == "mse" else "accuracy"


def _accumulate(model: MLP, Xd, Yd, ws: Workspace, acc, smoothing: float = 0.0, class_weight=None) -> None:
    """acc += (sum of losses, correct rows or squared error) over device arrays, in batches; no sync."""
    n = len(Xd)
    for s in range(0, n, ws.batch_size):
        part = ws.rows(min(ws.batch_size, n - s))
        z = model.forward(Xd[s : s + part.batch_size], part)
        model.ops.loss_grad(z, Yd[s : s + part.batch_size], acc, model.loss, False, smoothing, class_weight)


def _summarize(model: MLP, acc: np.ndarray, n: int) -> tuple[float, float]:
    loss = float(acc[0]) / n
    metric = float(acc[1]) / (n * model.n_outputs) if model.loss == "mse" else float(acc[1]) / n
    return loss, metric


class TrainStep:
    """One training step and the buffers it writes into, allocated once for a batch size.

    A call gathers the batch's rows on the device, runs forward, the fused loss (adding into ``acc``),
    backward and one optimizer update: 6L + 1 backend ops for L layers, no allocation, no host sync.
    """

    def __init__(
        self, model: MLP, batch_size: int, optimizer: Optimizer, smoothing: float = 0.0, class_weight=None
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.smoothing, self.class_weight = smoothing, class_weight
        self.ws = model.workspace(batch_size)
        if optimizer.accumulates:  # the backward pass writes mu V + dL/dW into V itself
            self.grads, sink, self.beta = None, optimizer.velocity, optimizer.momentum
        else:
            self.grads = sink = model.ops.zeros((model.layout.n_params,), model.dtype)
            self.beta = 0.0
        self.dW, self.db = model.layout.views(sink)

    def __call__(self, X, Y, idx, acc, lr: float, ws: Workspace | None = None) -> None:
        self.gradients(X, Y, idx, acc, ws)
        self.optimizer.step(self.model.params, self.grads, lr)

    def gradients(self, X, Y, idx, acc, ws: Workspace | None = None) -> None:
        """Everything of a step but the update: gather, forward, fused loss, backward."""
        model, ops = self.model, self.model.ops
        part = ws or self.ws
        ops.gather_rows(X, Y, idx, part.xb, part.yb)
        z = model.forward(part.xb, part)
        ops.loss_grad(z, part.yb, acc, model.loss, True, self.smoothing, self.class_weight)
        model.backward(part.xb, part, self.dW, self.db, self.beta)


class GraphStep:
    """A :class:`TrainStep` whose gather, forward, loss and backward are captured once as a CUDA graph.

    A step is then three launches instead of 6L + 1: a copy of the batch's row indices into a fixed device
    buffer (the graph reads them there), the graph, and the optimizer update, which stays outside the graph
    because its learning rate (and Adam's corrections) change every step. Batches of the captured size
    only; the trainer runs a last partial batch through the plain step.
    """

    def __init__(self, step: TrainStep, X, Y, acc) -> None:
        ops = step.model.ops
        if not hasattr(ops, "capture"):
            raise ConfigError(f"cuda_graph needs the CUDA backend; this model is on {ops.name}")
        self.step, self.ops = step, ops
        self.idx = ops.zeros((step.ws.batch_size,), np.int64)
        self.graph = ops.capture(lambda: step.gradients(X, Y, self.idx, acc))

    def __call__(self, idx, lr: float) -> None:
        self.ops.copy(self.idx, idx)
        self.ops.replay(self.graph)
        self.step.optimizer.step(self.step.model.params, self.step.grads, lr)


class _Run:
    """One call of :func:`fit`: the checked data on the device, the buffers, the loop."""

    def __init__(self, model: MLP, cfg: TrainConfig, X, y, X_val, y_val, X_test, y_test) -> None:
        self.model, self.cfg, self.ops = model, cfg, model.ops
        dt, loss, k = model.dtype, model.loss, model.n_outputs
        X = check_features(X, model.n_inputs, dt)
        Y = check_targets(y, len(X), loss, k, dt)
        if (X_val is None) != (y_val is None) or (X_test is None) != (y_test is None):
            raise DataError("pass features and targets together (X_val with y_val, X_test with y_test)")
        if X_val is not None:
            X_val = check_features(X_val, model.n_inputs, dt, "X_val")
            y_val = check_targets(y_val, len(X_val), loss, k, dt, "y_val")
        elif cfg.validation_fraction:
            X, Y, X_val, y_val = split_validation(X, Y, cfg.validation_fraction, cfg.seed)
        if X_test is not None:
            X_test = check_features(X_test, model.n_inputs, dt, "X_test")
            y_test = check_targets(y_test, len(X_test), loss, k, dt, "y_test")
        if cfg.early_stopping and X_val is None:
            raise ConfigError("early_stopping needs validation data: set validation_fraction or pass X_val/y_val")
        if cfg.monitor != "val_loss" and cfg.monitor != f"val_{_metric_name(model)}":
            raise ConfigError(
                f"monitor {cfg.monitor!r} does not fit loss {loss}: use 'val_loss' or 'val_{_metric_name(model)}'"
            )
        if cfg.cuda_graph and not hasattr(self.ops, "capture"):
            raise ConfigError(
                f"cuda_graph needs the CUDA backend; this model is on {self.ops.name}: "
                "drop cuda_graph or use device='cuda'"
            )
        self.smoothing = cfg.label_smoothing
        if self.smoothing and loss != "cross_entropy":
            raise ConfigError("label_smoothing applies to cross_entropy only: set it to 0 for this loss")
        self.class_weight = None
        if cfg.class_weight is not None:
            self.class_weight = self.ops.asarray(_check_class_weight(cfg.class_weight, model), dt)

        self.n = len(X)
        self.batch = min(cfg.batch_size, self.n)
        self.steps = self.n // self.batch if cfg.drop_last else math.ceil(self.n / self.batch)
        self.n_seen = self.steps * self.batch if cfg.drop_last else self.n
        self.schedule = cfg.lr_schedule()
        # The data go to the device once; every later step reads them there.
        self.X, self.Y = self.ops.asarray(X), self.ops.asarray(Y)
        self.sets = {}
        for name, Xs, Ys in (("val", X_val, y_val), ("test", X_test, y_test)):
            if Xs is not None:
                self.sets[name] = (self.ops.asarray(Xs), self.ops.asarray(Ys))

    def train(self, callbacks: list) -> History:
        model, cfg, ops = self.model, self.cfg, self.ops
        layout = model.layout
        opt = Optimizer(
            cfg.optimizer,
            ops,
            layout.n_params,
            layout.n_weights,
            model.dtype,
            momentum=cfg.momentum,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            eps=cfg.eps,
            l2=cfg.weight_decay,
            l1=cfg.l1,
        )
        train_step = TrainStep(model, self.batch, opt, self.smoothing, self.class_weight)
        ws = train_step.ws
        tail = ws.rows(self.n - (self.steps - 1) * self.batch) if not cfg.drop_last else ws
        eval_ws = None
        if self.sets:
            eval_ws = model.workspace(min(4096, max(len(s[0]) for s in self.sets.values())), with_grads=False)
        last_good = ops.empty((layout.n_params,), model.dtype)
        best = ops.empty((layout.n_params,), model.dtype) if cfg.early_stopping else None
        best_score, waited = None, 0
        history = History()
        step = 0
        # Row 0 sums the training batches, rows 1 and 2 the validation and test sets: one array, so
        # that one copy to the host per epoch brings every metric.
        sums = ops.zeros((3, 2), np.float64)
        train_sums = sums[0]  # one view for the whole run (a captured graph keeps its address)
        graph_step = GraphStep(train_step, self.X, self.Y, train_sums) if cfg.cuda_graph else None
        for epoch in range(1, cfg.epochs + 1):
            ops.copy(last_good, model.params)
            ops.fill(sums, 0.0)
            bar = _progress(cfg.verbose, self.steps, epoch, cfg.epochs)
            t0 = ops.timestamp()
            perm = ops.permutation(self.n, cfg.seed, epoch)
            for k in range(self.steps):
                part = tail if k == self.steps - 1 else ws
                s = k * self.batch
                lr = self.schedule.lr_at(step, self.steps)
                if graph_step is not None and part is ws:
                    graph_step(perm[s : s + part.batch_size], lr)
                else:
                    train_step(self.X, self.Y, perm[s : s + part.batch_size], train_sums, lr, part)
                step += 1
                if bar is not None:
                    _tick(bar, ops.peek(train_sums), s + part.batch_size, k, self.steps)
            t1 = ops.timestamp()
            for row, (Xs, Ys) in zip((1, 2), self.sets.values()):
                _accumulate(model, Xs, Ys, eval_ws, sums[row], self.smoothing, self.class_weight)
            t2 = ops.timestamp()
            totals = ops.to_host(sums)  # the epoch's one host sync
            if bar is not None:
                bar.close()
            train_loss, train_metric = _summarize(model, totals[0], self.n_seen)
            record = {"epoch": epoch, "train_loss": train_loss, f"train_{_metric_name(model)}": train_metric, "lr": lr}
            for row, (name, (Xs, _)) in zip((1, 2), self.sets.items()):
                loss, metric = _summarize(model, totals[row], len(Xs))
                record[f"{name}_loss"] = loss
                record[f"{name}_{_metric_name(model)}"] = metric
            record["seconds"] = ops.seconds_between(t0, t1)
            record["eval_seconds"] = ops.seconds_between(t1, t2)
            diverged = [key for key in ("train_loss", "val_loss") if key in record and not math.isfinite(record[key])]
            if diverged:
                ops.copy(model.params, last_good)
                msg = (
                    f"training diverged in epoch {epoch}: {diverged[0]} became {record[diverged[0]]}; the model "
                    f"keeps the weights from the end of epoch {epoch - 1}. Lower the learning rate "
                    f"(it was {lr:.4g}) or use a schedule with warm-up"
                )
                history.stop_reason = "diverged: " + msg
                if cfg.verbose:
                    print(msg, file=sys.stderr)
                if cfg.on_divergence == "raise":
                    raise DivergenceError(msg, history)
                break
            history.records.append(record)
            if cfg.verbose:
                print(_summary_line(record, cfg.epochs), file=sys.stderr)
            stop = False
            if cfg.early_stopping:
                score = record[cfg.monitor]
                sign = -1.0 if cfg.monitor == "val_accuracy" else 1.0
                if best_score is None or sign * (score - best_score) < -cfg.min_delta:
                    best_score, waited, history.best_epoch = score, 0, epoch
                    ops.copy(best, model.params)
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        history.stop_reason = (
                            f"early stopping: {cfg.monitor} did not improve for "
                            f"{cfg.patience} epochs; restored epoch {history.best_epoch}"
                        )
                        stop = True
            for cb in callbacks:
                if cb(record, model):
                    history.stop_reason = f"stopped by callback {getattr(cb, '__name__', cb)!s}"
                    stop = True
            if stop:
                break
        if cfg.early_stopping and history.best_epoch is not None:
            ops.copy(model.params, best)
        return history


def split_validation(X: np.ndarray, Y: np.ndarray, fraction: float, seed: int):
    """Hold out ``fraction`` (in (0, 1)) of the rows for validation, at least one, leaving at least one."""
    check_fraction(fraction, "validation fraction", low_open=True)
    check_positive(seed, "seed", integer=True, allow_zero=True)
    n = len(X)
    if n < 2:
        raise DataError("a validation split needs at least 2 samples: pass more data or X_val/y_val")
    n_val = min(max(1, int(round(n * fraction))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[train], Y[train], X[val], Y[val]


def _check_class_weight(weights, model: MLP) -> np.ndarray:
    if model.loss != "cross_entropy":
        raise ConfigError("class_weight applies to cross_entropy only: remove it for this loss")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (model.n_outputs,) or not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(
            f"class_weight must be {model.n_outputs} non-negative numbers (one per class), got {weights!r}"
        )
    return w


def _progress(verbose: bool, steps: int, epoch: int, epochs: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs get the summary lines only)
    return tqdm(
        total=steps,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        file=sys.stderr,
        mininterval=0.25,
        disable=None,
    )


def _tick(bar, acc, rows_done: int, k: int, steps: int) -> None:
    # peek never waits for a GPU; on one it may show a loss a few steps old.
    every = max(1, steps // 50)
    if k % every == 0 or k == steps - 1:
        bar.set_postfix_str(f"loss {float(acc[0]) / rows_done:.4f}", refresh=False)
        bar.update(k + 1 - bar.n)


def _summary_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']:>3}/{epochs}", f"train_loss {r['train_loss']:.4f}"]
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        if key in r:
            parts.append(f"{key} {100 * r[key]:.2f}%")
    for key in ("train_mse", "val_mse", "test_mse", "val_loss"):
        if key in r:
            parts.append(f"{key} {r[key]:.4g}")
    parts.append(f"lr {r['lr']:.4g}")
    parts.append(f"{r['seconds']:.2f}s")
    return "  ".join(parts)
