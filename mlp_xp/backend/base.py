"""The op vocabulary every backend implements, and the counters that watch it.

Model and trainer code touch arrays only through these ops. Because every device operation of a training
step passes through one class, the ops per step, the host synchronizations and the allocations can be
counted, and tests assert on the counts (the step budget of ARCHITECTURE.md).

Conventions of every op:

* arrays are the backend's own (NumPy on the CPU, CuPy on a GPU), C-contiguous, of the model's dtype
  (float32 or float64); class labels are int32;
* outputs are written into arrays the caller allocated once (``out=`` or in place); no op returns a
  new array except the few named as allocating (``empty``, ``zeros``, ``asarray``, ``permutation``);
* flags and options are keyword-only;
* what each op computes is its reference in :mod:`mlp_xp.reference`, which names every implementation.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, DeviceMemoryError

#: Ops a training step dispatches; each call adds one to ``Ops.counts.ops``.
STEP_OPS = (
    "gather_rows",
    "matmul",
    "bias_act",
    "act_backward",
    "bias_grad",
    "loss_grad",
    "output_act",
    "sgd_update",
    "adam_update",
    "copy",
    "fill",
    "replay",
    "run_program",
)

#: Keyword arguments of the ops that were renamed (old -> new); the old names still work, with a warning.
RENAMED_ARGUMENTS = {"beta": "accumulate", "accumulated": "folded"}


@dataclass
class OpCounts:
    """What a backend has done since the last ``reset``: ops by name, allocations and host syncs."""

    ops: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    allocations: int = 0
    syncs: int = 0

    def reset(self) -> None:
        self.ops = self.allocations = self.syncs = 0
        self.by_op.clear()


def _renamed(kwargs: dict, op: str) -> dict:
    for old, new in RENAMED_ARGUMENTS.items():
        if old in kwargs:
            warnings.warn(f"{op}({old}=...) is now {op}({new}=...)", FutureWarning, stacklevel=3)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def _counted(name: str, fn):
    def op(self, *args, **kwargs):
        c = self.counts
        c.ops += 1
        c.by_op[name] = c.by_op.get(name, 0) + 1
        if kwargs and not kwargs.keys().isdisjoint(RENAMED_ARGUMENTS):
            kwargs = _renamed(kwargs, name)
        return fn(self, *args, **kwargs)

    op.__name__ = fn.__name__
    op.__qualname__ = fn.__qualname__
    op.__doc__ = fn.__doc__
    op.__wrapped__ = fn
    return op


def matmul_shape(a, b, out, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """(m, n, k) of out <- op(a) op(b), or a DataError when the shapes do not fit (before any raw pointer
    reaches BLAS or a kernel)."""
    m, k = a.shape[::-1] if trans_a else a.shape
    k2, n = b.shape[::-1] if trans_b else b.shape
    if k != k2 or out.shape != (m, n):
        raise DataError(f"matmul shapes do not fit: op(a) {m}x{k}, op(b) {k2}x{n}, out {out.shape}")
    return m, n, k


def host_free_memory() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), or None off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_memory(ops, nbytes: int, what: str, fix: str) -> None:
    """Refuse, before allocating, what would not fit: one line naming the size, what is free and what to shrink."""
    free = ops.free_memory()
    if free is not None and nbytes > free:
        gib = 1 << 30
        raise DeviceMemoryError(
            f"{what} need {nbytes / gib:,.2f} GiB but {ops.device} has {free / gib:,.2f} GiB free: {fix}"
        )


class Ops:
    """Base of the backends: the op vocabulary, with counting wrapped around every step op.

    Subclasses implement the methods below; ``__init_subclass__`` wraps each one named in
    :data:`STEP_OPS` so that calling it is counted.
    """

    #: "cpu" or "cuda"
    kind: str = "cpu"
    #: The device string that selects this backend again: "cpu" or "cuda:N".
    device: str = "cpu"
    #: Human-readable name, e.g. "cpu (NumPy 2.1, OpenBLAS)" or "cuda:0 (NVIDIA H100)".
    name: str = "cpu"
    #: The array module of this backend (numpy or cupy); for allocation and host transfer only.
    xp: Any = np
    #: Whether ``capture`` and ``replay`` (CUDA graphs) are available.
    can_capture: bool = False
    #: Whether a training step of a large model updates each layer's weights right after that layer's backward
    #: pass (:class:`mlp_xp.step.TrainStep`): where the update is a pass over memory that is faster while the
    #: layer's gradient is in cache (the CPU). The rules are elementwise: the same rule either way, the same
    #: numbers within rounding.
    updates_per_layer: bool = False
    #: Whether a training step can be recorded once and replayed by one call (``recording``, ``run_program``;
    #: :mod:`mlp_xp.backend.program`): the CPU backend with NumPy's BLAS and the compiled loops.
    records_steps: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for op_name in STEP_OPS:
            fn = cls.__dict__.get(op_name)
            if fn is not None:
                setattr(cls, op_name, _counted(op_name, fn))

    def __init__(self) -> None:
        self.counts = OpCounts()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ---- memory: allocation and host transfer (counted as allocations / syncs) ----
    def empty(self, shape, dtype):
        """A new uninitialized device array."""
        self.counts.allocations += 1
        return self.xp.empty(shape, dtype)

    def zeros(self, shape, dtype):
        """A new zero-filled device array."""
        self.counts.allocations += 1
        return self.xp.zeros(shape, dtype)

    def asarray(self, host: np.ndarray, dtype=None):
        """A device copy of a host array (one transfer, one allocation)."""
        raise NotImplementedError

    def to_host(self, a) -> np.ndarray:
        """A host copy of a device array. On a GPU this waits for the device: one sync, counted."""
        raise NotImplementedError

    def all_finite(self, a) -> bool:
        """Whether a device array holds no NaN or Inf (through a host copy here: one sync, counted)."""
        return bool(np.isfinite(self.to_host(a)).all())

    def peek(self, a) -> np.ndarray:
        """The latest value of a small device array that is available *without* waiting for the device.

        On the CPU it is the current value; on a GPU it may lag a few steps. For progress display only.
        """
        raise NotImplementedError

    def timestamp(self):
        """A point in the device's timeline (read it with ``seconds_between`` after the next sync)."""
        return time.perf_counter()

    def seconds_between(self, start, end) -> float:
        """Wall seconds between two timestamps; on a GPU, valid once the device has passed ``end``."""
        return end - start

    def synchronize(self) -> None:
        """Wait for all queued device work (for timing). Counted as a sync."""
        self.counts.syncs += 1

    def free_memory(self) -> int | None:
        """Bytes this backend's arrays can still take (None where that cannot be told)."""
        return host_free_memory()

    # ---- step ops (references: mlp_xp/reference) ----
    def gather_rows(self, X, Y, idx, xb, yb, W=None, wb=None) -> None:
        """xb <- X[idx], yb <- Y[idx] (and wb <- W[idx], the rows' weights, where W is given): the rows of one
        mini-batch, gathered on the device (idx in [0, len(X)))."""
        raise NotImplementedError

    def matmul(self, a, b, out, *, trans_a: bool = False, trans_b: bool = False, accumulate: float = 0.0) -> None:
        """out <- op(a) op(b) + accumulate out, where op(x) is x.T when its flag is set."""
        raise NotImplementedError

    def bias_act(self, z, b, activation: str, slope: float) -> None:
        """z <- g(z + b) in place (forward of a layer after its matmul)."""
        raise NotImplementedError

    def act_backward(self, dh, h, activation: str, slope: float) -> None:
        """dh <- dh * g'(z) in place, g' read off the layer output h."""
        raise NotImplementedError

    def bias_grad(self, g, out, *, accumulate: float = 0.0) -> None:
        """out <- sum over rows of g + accumulate out (db = sum of the batch's dL/dz)."""
        raise NotImplementedError

    def loss_grad(
        self,
        z,
        y,
        acc,
        loss: str,
        *,
        write_grad: bool = True,
        smoothing: float = 0.0,
        class_weight=None,
        sample_weight=None,
        divisor: float | None = None,
    ) -> None:
        """Fused output layer + loss: acc += (sum of losses, correct rows or squared error) and
        z <- dL/dz (training) or z <- output p (evaluation). ``sample_weight``: a device array of one weight per
        row (the model's dtype), each row's loss, count and gradient scaled by it; ``divisor``: the gradient's
        denominator (default the batch's rows). See :mod:`mlp_xp.reference.loss`."""
        raise NotImplementedError

    def output_act(self, z, output: str) -> None:
        """z <- p = softmax(z), sigmoid(z) or z, in place (prediction without labels)."""
        raise NotImplementedError

    def sgd_update(
        self,
        params,
        grads,
        velocity,
        n_weights: int,
        lr: float,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        l2: float = 0.0,
        l1: float = 0.0,
        folded: bool = False,
        flush_subnormals: bool = False,
    ) -> None:
        """One SGD, momentum or Nesterov step over the flat buffers (:mod:`mlp_xp.reference.optimizer`).

        ``folded``: the backward pass already wrote mu V + dL/dW into ``velocity`` (``grads`` unused).
        ``flush_subnormals``: also set the velocity's subnormal entries to zero, where subnormal arithmetic is
        slow (the CPU; see kernels/cpu.cpp). The result differs from the reference only in those entries."""
        raise NotImplementedError

    def adam_update(
        self,
        params,
        grads,
        m,
        v,
        n_weights: int,
        lr: float,
        step: int,
        *,
        beta1: float,
        beta2: float,
        eps: float,
        l2: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        """One Adam step (``step`` = t, from 1) over the flat buffers (:mod:`mlp_xp.reference.optimizer`)."""
        raise NotImplementedError

    def copy(self, dst, src) -> None:
        """dst <- src, device to device (snapshots of the parameters)."""
        raise NotImplementedError

    def fill(self, a, value: float) -> None:
        """a <- value everywhere (resetting accumulators)."""
        raise NotImplementedError

    def run_program(self, program, pointers, scalars) -> None:
        """One replay of a recorded step (``records_steps`` backends): ``pointers``, the arrays standing for the
        recording's step pointers (the batch's row indices); ``scalars``, the step's values (the learning rate, Adam's
        two corrections, the L2 penalty, the loss's divisor: :data:`mlp_xp.backend.program.N_STEP_VALUES`)."""
        raise NotImplementedError

    # ---- per epoch ----
    def permutation(self, n: int, seed: int, epoch: int):
        """The epoch's row order as a device int array (:func:`mlp_xp.reference.data.permutation`); allocates."""
        raise NotImplementedError
