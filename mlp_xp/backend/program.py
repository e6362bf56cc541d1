"""A CPU training step recorded once and replayed by one compiled call: the CPU's counterpart of a CUDA graph.

The CPU backend's step ops end in calls into compiled code: BLAS for the products and the SGD update, the
compiled loops (``kernels/cpu.cpp``) for the rest. While a :class:`Program` records (:meth:`NumpyOps.recording
<mlp_xp.backend.numpy_ops.NumpyOps.recording>`), those calls are written down instead of made, with their
arguments; ``run_program`` in ``cpu.cpp`` then makes the same calls, in the same order, with the same arguments,
on every step. So a replayed step computes what the op-by-op step computes, bit for bit, without the Python
dispatch between the calls (about 85 us a step for a three-layer model on the EPYC AVX2, while the second core
waits).

What changes from step to step is named when recording: the learning rate, Adam's bias corrections, the L2
penalty (scikit-learn's alpha over a batch's weights changes every step) and the loss's divisor (a weighted batch's
sum of weights) are :class:`StepScalar` values (a word of the instruction scaled by the step's value), and the
batch's row indices are a step pointer (an array whose address the replay replaces). Anything else is fixed at
the recording, so a program is only valid for the buffers and settings it was recorded with:
:class:`mlp_xp.step.TrainStep` keys its programs on them. Every pointer a program holds must lie inside one of
the buffers given to it, which it keeps alive, so a replay never writes into freed memory. An op that would take
the NumPy path raises :class:`NotRecordable` instead, and the step stays op by op.
"""

from __future__ import annotations

import ctypes
import struct

import numpy as np
from numpy.lib.array_utils import byte_bounds

from .pointers import address

#: Words per instruction and the first pointer slot: cpu.cpp's MAX_WORDS and POINTER_SLOT.
MAX_WORDS, POINTER_SLOT = 16, 16
INSTRUCTION = np.dtype(
    [("op", np.int32), ("n_words", np.int32), ("slot", np.int8, MAX_WORDS), ("w", np.int64, MAX_WORDS)]
)
_FLOAT_TYPES = (ctypes.c_float, ctypes.c_double)


class NotRecordable(Exception):
    """An op of the step that cannot be recorded (it would run NumPy code, or point outside the step's buffers)."""


class StepScalar:
    """A number of the step that the recording does not know: ``scale`` times the step's value number ``slot``."""

    __slots__ = ("slot", "scale")

    def __init__(self, slot: int, scale: float = 1.0) -> None:
        self.slot, self.scale = slot, scale

    def __neg__(self) -> StepScalar:
        return StepScalar(self.slot, -self.scale)

    def __repr__(self) -> str:
        return f"StepScalar({self.slot}, {self.scale})"


#: The step's values, in the order ``run_program`` takes them: the learning rate, Adam's two bias corrections, the
#: L2 penalty, the loss's divisor.
LR, CORRECTION1, CORRECTION2, L2, DIVISOR = (StepScalar(k) for k in range(5))
N_STEP_VALUES = 5


def _word_of_float(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


class Program:
    """The instructions of one recorded step, and what they point into.

    Parameters
    ----------
    loops : mlp_xp.backend.cpu_loops.CompiledLoops
        The compiled library that numbers the ops and runs the program.
    buffers : list of arrays
        Every array the step's calls may point into (kept alive by the program).
    step_pointers : list of arrays
        Arrays standing for what each replay passes anew (the batch's row indices), in ``run``'s order.
    """

    def __init__(self, loops, buffers, step_pointers) -> None:
        self.loops = loops
        self.buffers = [b for b in buffers if b is not None]
        # (where a call's pointer starts: the calls were checked by the ops that made them, as they are op by op;
        # this check is that no program holds an address outside the memory it keeps alive)
        self._ranges = [byte_bounds(b) for b in self.buffers if b.size]
        self._step_ranges = [byte_bounds(p) for p in step_pointers]
        self._instructions: list[tuple] = []
        self.table = np.zeros(0, INSTRUCTION)
        self._scalars = np.zeros(N_STEP_VALUES, np.float64)
        self._pointers = np.zeros(max(1, len(step_pointers)), np.uint64)

    def __len__(self) -> int:
        return len(self.table) if len(self.table) else len(self._instructions)

    def recorder(self, name: str, fn, fn_address: int | None = None):
        """A stand-in for the ctypes function ``fn`` that records each call as op ``name`` (a BLAS routine: with
        its address as the first word)."""
        code = self.loops.op_code(name)
        argtypes = list(fn.argtypes)

        def record(*args):
            if code < 0:  # (a loop not yet in cpu.cpp's MLP_XP_PROGRAM_OPS: its step goes op by op)
                raise NotRecordable(f"{name} is not an op run_program knows")
            self.add(code, name, argtypes, args, fn_address)

        return record

    def add(self, code: int, name: str, argtypes, args, fn_address: int | None = None) -> None:
        """Append one call: its words, and where each comes from (see cpu.cpp's Instr)."""
        words, slots = ([fn_address], [-1]) if fn_address is not None else ([], [])
        for t, a in zip(argtypes, args, strict=True):
            slot = -1
            if isinstance(a, StepScalar):
                if not 0 <= a.slot < len(self._scalars):  # (run_program reads that many)
                    raise NotRecordable(f"{name}: no step value {a.slot}")
                word, slot = _word_of_float(a.scale), a.slot
            elif t in _FLOAT_TYPES:
                word = _word_of_float(float(a))
            elif t is ctypes.c_void_p:
                word, slot = self._pointer(name, 0 if a is None else int(a))
            else:
                word = int(a)
            words.append(word)
            slots.append(slot)
        if len(words) > MAX_WORDS:
            raise NotRecordable(f"{name} has {len(words)} arguments, more than an instruction holds")
        self._instructions.append((code, words, slots))

    def _pointer(self, name: str, p: int) -> tuple[int, int]:
        if p == 0:
            return 0, -1
        for k, (lo, hi) in enumerate(self._step_ranges):
            if lo <= p <= hi:
                return p - lo, POINTER_SLOT + k
        for lo, hi in self._ranges:
            if lo <= p <= hi:
                return p, -1
        raise NotRecordable(f"{name} points outside the step's buffers")

    def finish(self) -> Program:
        """Pack the recorded calls into the table ``run_program`` reads."""
        table = np.zeros(len(self._instructions), INSTRUCTION)
        table["slot"] = -1
        for k, (code, words, slots) in enumerate(self._instructions):
            table["op"][k], table["n_words"][k] = code, len(words)
            table["slot"][k, : len(slots)] = slots
            table["w"][k, : len(words)] = words
        self.table, self._instructions = table, []
        self._table_address = address(table) if len(table) else 0
        return self

    def run(self, pointers, scalars) -> None:
        """One replay: the step's arrays (``pointers``, as recorded: the same shapes, int64, C-contiguous) and
        values (:data:`N_STEP_VALUES` of them: the learning rate, Adam's corrections, the L2 penalty, the loss's
        divisor; those the program does not read may be anything)."""
        for k, p in enumerate(pointers):
            self._pointers[k] = address(p)
        self._scalars[:] = scalars
        self.loops.run_program(self._table_address, len(self.table), self._scalars, self._pointers)
