"""The same MLP training run three ways, for the CPU benchmarks: mlp_xp, PyTorch's eager loop, scikit-learn.

Each contender trains a ReLU MLP with softmax cross-entropy, SGD with momentum (not Nesterov), no weight
decay, a constant learning rate and a given batch size, reshuffling every epoch and training on the last
partial batch. ``epoch()`` runs one epoch and returns its training wall time; ``train(epochs, after)`` runs
several, calling ``after(seconds)`` after each until it returns True; ``accuracy(X, y)`` scores (untimed).
Per epoch, each one also keeps the running loss and accuracy that mlp_xp reports.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import mlp_xp
from mlp_xp.backend.numpy_ops import NumpyOps
from mlp_xp.data import load_dataset
from mlp_xp.errors import MLPXPError
from mlp_xp.optim import Optimizer
from mlp_xp.step import TrainStep

#: The rows the epoch benchmarks train on: an epoch of MNIST's or Fashion-MNIST's training set.
EPOCH_ROWS = 60000


def epoch_data(parser, name: str):
    """(data set, X, y): the first :data:`EPOCH_ROWS` training rows of ``--data`` ``name`` (``synthetic``: a
    synthetic set of that many 784-wide rows), or a usage error of ``parser`` with the loader's message."""
    try:
        ds = load_dataset(f"synthetic:{EPOCH_ROWS}x784" if name == "synthetic" else name)
    except MLPXPError as e:  # (a name or path that is no data set: the loader's message says what to pass)
        parser.error(f"--data: {e}")
    return ds, ds.X_train[:EPOCH_ROWS], ds.y_train[:EPOCH_ROWS]


class Contender:
    name = ""

    def epoch(self) -> float:
        raise NotImplementedError

    def accuracy(self, X, y) -> float:
        raise NotImplementedError

    def train(self, epochs: int, after) -> None:
        for _ in range(epochs):
            if after(self.epoch()):
                return


class MlpXp(Contender):
    name = "mlp_xp"

    def __init__(self, X, y, hidden, batch, lr, momentum, seed, device="cpu"):
        self.X, self.y, self.batch = X, y, batch
        device = self.backend() if device == "cpu" else device
        self.model = mlp_xp.MLP([X.shape[1], *hidden, int(y.max()) + 1], "relu", device=device, seed=seed)
        self.settings = dict(batch_size=batch, optimizer="momentum", lr=lr, momentum=momentum, seed=seed)
        self.epochs = 0

    def epoch(self) -> float:
        # fit's own per-epoch permutation comes from (seed, epoch); shift the seed so each call differs
        h = mlp_xp.fit(self.model, self.X, self.y, epochs=1, **{**self.settings, "seed": self.epochs})
        self.epochs += 1
        return h.last["seconds"]

    def train(self, epochs: int, after) -> None:
        # One fit call, so that the optimizer's state carries over from epoch to epoch.
        mlp_xp.fit(
            self.model, self.X, self.y, epochs=epochs, callbacks=[lambda r, m: after(r["seconds"])], **self.settings
        )

    def accuracy(self, X, y) -> float:
        return float((self.model.predict(X) == y).mean())

    @staticmethod
    def backend():
        return "cpu"  # (the BLAS MLP_XP_BLAS and the machine choose: mlp_xp.backend.blas.choice)


class MlpXpOpenBLAS(MlpXp):
    """mlp_xp on NumPy's OpenBLAS, where the CPU backend would call another BLAS (MKL on an Intel CPU)."""

    name = "mlp_xp_openblas"

    @staticmethod
    def backend():
        return NumpyOps(blas="numpy")


class TorchEager(Contender):
    name = "pytorch_eager"

    def __init__(self, X, y, hidden, batch, lr, momentum, seed):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        widths = [X.shape[1], *hidden]
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(widths[-1], int(y.max()) + 1))
        self.net = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=momentum)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.X, self.y = torch.from_numpy(np.ascontiguousarray(X, np.float32)), torch.from_numpy(y.astype(np.int64))
        self.batch = batch

    def epoch(self) -> float:
        torch = self.torch
        t = time.perf_counter()
        perm = torch.randperm(len(self.X))
        total, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for s in range(0, len(self.X), self.batch):
            idx = perm[s : s + self.batch]
            xb, yb = self.X[idx], self.y[idx]
            self.opt.zero_grad(set_to_none=True)
            out = self.net(xb)
            loss = self.loss_fn(out, yb)
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                total += loss.detach() * len(yb)
                correct += (out.argmax(1) == yb).sum()
        float(total), int(correct)
        return time.perf_counter() - t

    def accuracy(self, X, y) -> float:
        with self.torch.no_grad():
            out = self.net(self.torch.from_numpy(np.ascontiguousarray(X, np.float32)))
        return float((out.argmax(1).numpy() == y).mean())


class Sklearn(Contender):
    name = "sklearn"

    def __init__(self, X, y, hidden, batch, lr, momentum, seed):
        from sklearn.neural_network import MLPClassifier

        self.X, self.y = X, y
        self.clf = MLPClassifier(
            hidden_layer_sizes=tuple(hidden),
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=batch,
            learning_rate_init=lr,
            momentum=momentum,
            nesterovs_momentum=False,
            max_iter=1,
            shuffle=True,
            random_state=seed,
            tol=0.0,
            n_iter_no_change=10**9,
            warm_start=True,
        )

    def epoch(self) -> float:
        from sklearn.exceptions import ConvergenceWarning

        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf.fit(self.X, self.y)  # warm_start + max_iter=1: one more epoch
        return time.perf_counter() - t

    def accuracy(self, X, y) -> float:
        return float(self.clf.score(X, y))


CONTENDERS = {c.name: c for c in (MlpXp, TorchEager, Sklearn)}
_CPU_BLAS = NumpyOps().blas
if _CPU_BLAS is not None and _CPU_BLAS.kind != "numpy":
    CONTENDERS[MlpXpOpenBLAS.name] = MlpXpOpenBLAS


class GemmOnly(NumpyOps):
    """The CPU backend with every step op but the matrix multiplies turned into no-ops."""


def _nothing(self, *args, **kwargs) -> None:
    return None


for _op in ("gather_rows", "bias_act", "act_backward", "bias_grad", "loss_grad", "sgd_update"):
    setattr(GemmOnly, _op, _nothing)


def gemm_floor_epoch(X, hidden, n_classes, batch, momentum, seed, *, record: bool = True) -> float:
    """The matrix multiplies of one epoch of mlp_xp's own step, alone: the trainer's TrainStep with the same
    calls, shapes, flags and buffers, on a backend where every other op does nothing. Recorded and replayed as
    mlp_xp's step is (``record``), so that the floor is the GEMMs' own time, with no Python dispatch between them;
    ``record=False``: dispatched op by op, the floor before mlp_xp replayed its steps."""
    ops = GemmOnly(blas="numpy")  # (the floor is OpenBLAS's products, whichever BLAS mlp_xp calls)
    m = mlp_xp.MLP([X.shape[1], *hidden, n_classes], "relu", device=ops, seed=seed)
    opt = Optimizer("momentum", ops, m.layout, m.dtype, momentum=momentum)
    step = TrainStep(m, batch, opt, per_layer=False, record=record)
    for buf in (step.ws.xb, *step.ws.hs, *step.ws.dhs):
        buf[...] = X[: buf.shape[0], : buf.shape[1]]  # realistic values: no NaN or denormal slow paths
    acc, n = ops.zeros((2,), np.float64), len(X)
    tail = step.ws.rows(n - (n - 1) // batch * batch)
    order = np.arange(n, dtype=np.int64)  # (the gather does nothing: the rows' indices are only passed)
    labels = np.zeros(n, np.int32)
    t = time.perf_counter()
    for s in range(0, n, batch):
        step(X, labels, order[s : s + batch], acc, 0.01, tail if s + batch > n else None)
    return time.perf_counter() - t
