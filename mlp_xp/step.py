"""One training step: the buffers it writes into and the ops it dispatches, plain, recorded once and replayed (the
CPU), or as a captured CUDA graph.

A step gathers the batch's rows on the device, runs forward, the fused loss (adding into the epoch's sums),
backward into the optimizer's gradient buffer, and one optimizer update (on the CPU, for a large model, one per
layer inside the backward pass and one for the biases): 6L + 1 backend ops for L layers (7L + 1 then), no
allocation, no host sync (the step budget in ARCHITECTURE.md). On the CPU those ops' compiled calls are recorded
at a step's second run and replayed by one call each step after (:mod:`mlp_xp.backend.program`): one op a step.
:mod:`mlp_xp.trainer` runs steps epoch by epoch; ``mlp-xp bench`` times them alone.
"""

from __future__ import annotations

import numpy as np

from .backend.program import DIVISOR, L2, LR, NotRecordable, Program
from .deprecation import warn_renamed
from .errors import ConfigError
from .model import MLP, Workspace
from .optim import Optimizer

#: The size from which the CPU backend updates layer by layer. Below it the parameters and the velocity mostly stay
#: in cache anyway and the L extra update calls cost more than they save: on the EPYC AVX2, per layer / once, steps
#: of batch 128 side by side, 1.03-1.09x at 25k-102k parameters, 1.01x at 204k, 0.93-0.97x at 536k in busy hours
#: and 1.01x in a quiet one (benchmarks/README.md).
PER_LAYER_MIN_PARAMS = 1 << 18

#: Recorded programs a TrainStep keeps: one pair (without and with the subnormal flush) per workspace (full and last
#: batch), data set and settings it has stepped with; past this many it starts over, and after starting over twice
#: (a caller passing new arrays or settings every step, where recording would cost more than it saves) it stops
#: recording.
MAX_PROGRAMS = 8


class TrainStep:
    """One training step and the buffers it writes into, allocated once for a batch size.

    ``smoothing`` and ``class_weight`` (a device array, one weight per class) are cross_entropy's options.
    ``weighted``: the steps take per-row weights (``W``, gathered with the rows) and the step's ``divisor``, their
    sum over the batch. ``per_layer``: update each W_l inside the backward pass (True), once after it (False), or
    by default where the backend updates layer by layer and the model has at least :data:`PER_LAYER_MIN_PARAMS`
    parameters. ``record``: where the backend records steps (the CPU's, :mod:`mlp_xp.backend.program`), record a
    step's calls once per workspace, data set and settings (at its second run: a step that runs once is cheaper op
    by op) and replay them by one compiled call each step (True, the default), or dispatch every op each step
    (False: what the recording records, op by op). The learning rate, the L2 penalty and the divisor are the
    step's values, not the recording's: they may change every step. A step whose ops cannot be recorded (an op on
    the NumPy path: arrays the compiled code cannot take; sparse data) goes op by op.
    """

    def __init__(
        self,
        model: MLP,
        batch_size: int,
        optimizer: Optimizer,
        *,
        smoothing: float = 0.0,
        class_weight=None,
        weighted: bool = False,
        per_layer: bool | None = None,
        record: bool = True,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.smoothing, self.class_weight = smoothing, class_weight
        self.ws = model.workspace(batch_size, weighted=weighted)
        self.grads = optimizer.gradients()
        if per_layer is None:
            per_layer = model.ops.updates_per_layer and model.layout.n_params >= PER_LAYER_MIN_PARAMS
        #: Per layer, the update of W_l follows layer l's backward at once, while dW_l is still in cache, and one
        #: more updates the biases: L + 1 update ops instead of one (None: one update after the backward pass).
        self.update_parts = optimizer.parts(model.params, model.layout.update_parts()) if per_layer else None
        self._lr, self._flush = 0.0, None
        self.record = bool(record) and model.ops.records_steps
        #: key -> ((the program without the subnormal flush, the one with it; None where the step could not be
        #: recorded), what the key's ids name)
        self._programs: dict[tuple, tuple] = {}
        self._seen: set[tuple] = set()  # keys stepped with once: the second such step records
        self._restarts = 0

    def __call__(
        self, X, Y, idx, acc, lr: float, ws: Workspace | None = None, *, W=None, divisor: float | None = None
    ) -> None:
        """A whole step on the rows ``idx`` of the device arrays (X, Y), adding the batch's sums into ``acc``."""
        opt = self.optimizer
        programs = self._programs_for(X, Y, idx, acc, ws or self.ws, W, divisor) if self.record else None
        if programs is not None:
            opt.start_step()
            values = (*opt.step_scalars(lr), 1.0 if divisor is None else float(divisor))
            self.model.ops.run_program(programs[opt.flushes_now], (idx,), values)
        else:
            self._dispatch(X, Y, idx, acc, lr, ws, W, divisor)

    def _dispatch(self, X, Y, idx, acc, lr, ws, W, divisor, *, recording: bool = False, flush=None) -> None:
        """The step op by op, counting its update (not while recording, where ``lr`` is a :class:`StepScalar` and
        ``flush`` says which of the two programs this is)."""
        opt = self.optimizer
        if self.update_parts is None:
            self._backprop(X, Y, idx, acc, ws, W, divisor, None)
            if not recording:
                opt.start_step()
            opt.update(opt.whole(self.model.params), lr, flush=flush)
            return
        if not recording:
            opt.start_step()
        self._lr, self._flush = lr, flush
        self._backprop(X, Y, idx, acc, ws, W, divisor, self._update_layer)
        opt.update(self.update_parts[-1], lr, flush=flush)  # the biases

    def _update_layer(self, l: int) -> None:
        self.optimizer.update(self.update_parts[l], self._lr, flush=self._flush)

    def _programs_for(self, X, Y, idx, acc, part: Workspace, W, divisor) -> tuple[Program, Program] | None:
        """The recorded step for these arrays and the current settings, without and with the subnormal flush
        (recorded now at the second step with them), or None where it is not, or cannot be, recorded. A program is
        only valid for what it was recorded with, so the key names every buffer (by id, the objects kept alive
        beside it) and every setting the recorded calls hold as numbers."""
        if not (
            isinstance(X, np.ndarray)
            and isinstance(Y, np.ndarray)
            and isinstance(idx, np.ndarray)
            and idx.dtype == np.int64
            and idx.shape == (part.batch_size,)
            and idx.flags.c_contiguous
            and (W is None or isinstance(W, np.ndarray))
        ):
            return None
        opt, model = self.optimizer, self.model
        named = (part, X, Y, W, acc, model.params, self.grads, self.class_weight, opt.velocity, opt.m, opt.v)
        # (the L2 penalty's and the divisor's values are the step's: only whether there is one is the recording's)
        settings = (self.smoothing, opt.name, opt.momentum, opt.l2 != 0, opt.l1, opt.beta1, opt.beta2, opt.eps)
        settings += (divisor is None,)
        math = (model.loss, model.leaky_slope, *model.activations, self.update_parts is None)
        key = (*map(id, named), *settings, *math)
        found = self._programs.get(key)
        if found is None:
            if key not in self._seen:
                # a step that runs once (a partial_fit of one batch) is cheaper op by op than recorded
                if len(self._seen) >= 4 * MAX_PROGRAMS:  # (keys that never came back, e.g. a new workspace a call)
                    self._seen.clear()
                self._seen.add(key)
                return None
            if len(self._programs) >= MAX_PROGRAMS:
                self._start_over()
                if not self.record:
                    return None
            # both flush phases at once, so that no later step records (or allocates)
            without = self._record(X, Y, acc, part, W, divisor, flush=False)
            flushes = without is not None and opt.velocity is not None
            with_flush = self._record(X, Y, acc, part, W, divisor, flush=True) if flushes else without
            found = self._programs[key] = ((without, with_flush), named)
        return None if found[0][0] is None else found[0]

    def _start_over(self) -> None:
        """Forget every program and key; the second time, stop recording (see MAX_PROGRAMS)."""
        self._programs.clear()
        self._seen.clear()
        self._restarts += 1
        self.record = self._restarts < 2

    def _record(self, X, Y, acc, part: Workspace, W, divisor, *, flush: bool) -> Program | None:
        """Record the step's calls (nothing runs), or None where an op cannot be recorded. The model and the
        optimizer dispatch to the backend's recording copy meanwhile (the backend itself is shared)."""
        opt, model = self.optimizer, self.model
        idx = np.zeros(part.batch_size, np.int64)  # stands for each replay's row indices
        buffers = [X, Y, W, acc, part.xb, part.yb, part.wb, *part.hs, *part.dhs, model.params, self.grads.flat]
        buffers += [opt.velocity, opt.m, opt.v, self.class_weight]
        ops, l2 = model.ops, opt.l2
        divisor = None if divisor is None else DIVISOR
        try:
            with ops.recording(buffers, [idx]) as (program, recorder):
                model.ops = opt.ops = recorder
                opt.l2 = L2 if l2 else 0.0
                try:
                    self._dispatch(X, Y, idx, acc, LR, part, W, divisor, recording=True, flush=flush)
                finally:
                    model.ops, opt.ops, opt.l2 = ops, ops, l2
        except NotRecordable:
            return None
        return program

    def gradients(self, X, Y, idx, acc, ws: Workspace | None = None) -> None:
        """Deprecated: the old name of :meth:`backprop`."""
        warn_renamed("TrainStep.gradients", "TrainStep.backprop")
        self.backprop(X, Y, idx, acc, ws)

    def backprop(self, X, Y, idx, acc, ws: Workspace | None = None, *, W=None, divisor: float | None = None) -> None:
        """Everything of a step but the update: gather, forward, fused loss, backward (``ws``: the workspace cut
        to a smaller last batch; ``W``: the rows' weights, with the batch's sum of them as ``divisor``)."""
        self._backprop(X, Y, idx, acc, ws, W, divisor, None)

    def _backprop(self, X, Y, idx, acc, ws, W, divisor, after_layer) -> None:
        model, ops = self.model, self.model.ops
        part = ws or self.ws
        rows = {} if divisor is None else {"divisor": divisor}
        if W is None:
            ops.gather_rows(X, Y, idx, part.xb, part.yb)
        else:
            ops.gather_rows(X, Y, idx, part.xb, part.yb, W, part.wb)
            rows["sample_weight"] = part.wb
        z = model.forward(part.xb, part)
        ops.loss_grad(z, part.yb, acc, model.loss, smoothing=self.smoothing, class_weight=self.class_weight, **rows)
        model.backward(part.xb, part, self.grads, after_layer)


class GraphStep:
    """A :class:`TrainStep` whose gather, forward, loss and backward are captured once as a CUDA graph.

    A step is then three launches instead of 6L + 1: a copy of the batch's row indices into a fixed device
    buffer (the graph reads them there), the graph, and the optimizer update, which stays outside the graph
    because its learning rate (and Adam's corrections) change every step. Batches of the captured size
    only; the trainer runs a last partial batch through the plain step.
    """

    def __init__(self, step: TrainStep, X, Y, acc, *, divisor: float | None = None) -> None:
        ops = step.model.ops
        if not ops.can_capture:
            raise ConfigError(f"cuda_graph needs the CUDA backend; this model is on {ops.name}")
        self.step, self.ops = step, ops
        self.idx = ops.zeros((step.ws.batch_size,), np.int64)
        # divisor: the loss's denominator, where it is not the captured rows (data-parallel ranks: the global batch's)
        self.graph = ops.capture(lambda: step.backprop(X, Y, self.idx, acc, divisor=divisor))

    def __call__(self, idx, lr: float) -> None:
        self.backprop(idx)
        self.step.optimizer.step(self.step.model.params, lr)

    def backprop(self, idx) -> None:
        """The captured gather, forward, loss and backward on the rows ``idx``, without the update (data-parallel
        ranks all-reduce the gradient between the two, on the same stream)."""
        self.ops.copy(self.idx, idx)
        self.ops.replay(self.graph)
