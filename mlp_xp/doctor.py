"""``mlp-xp doctor``: every op of this machine's backends against its reference (:mod:`mlp_xp.selfcheck`):
the CPU backend as it runs here (compiled loops, direct BLAS, NumPy path) and the CUDA kernels on each GPU.
After the CPU's check, one line says whether its recorded step (:mod:`mlp_xp.backend.program`) replays the
op-by-op step bit for bit here, and a few lines time its compiled loops against the NumPy path on this machine
(:mod:`mlp_xp.backend.loop_timing`), since whether they are faster depends on the CPU and the compiler.

Exit statuses: 1 when a check failed (or stopped before its end), else 3 when a GPU was asked for (``all``, the
default, or ``cuda``/``cuda:N``) and it, or one of them, was not usable, else 0. With ``all``, which checks several
backends, the run ends with one ``overall:`` line on standard output that says which of these it is, so that the
last line never reads as a pass (a backend's "N/N ops verified") while the status is 1.
"""

from __future__ import annotations

import sys

import numpy as np

from .backend import cpu_loops, cuda_devices, cuda_status, get_backend, loop_timing
from .backend.numpy_ops import NumpyOps
from .constraints import device_choice
from .errors import EXIT_FAILED as FAILED
from .errors import EXIT_NO_GPU as NO_GPU
from .errors import EXIT_OK as OK
from .errors import BackendUnavailable, OutputLost
from .model import MLP
from .optim import FLUSH_EVERY, Optimizer
from .selfcheck import format_results, timed_check
from .step import TrainStep


def _check(ops, title: str) -> bool:
    results, seconds = timed_check(ops)
    if not results:  # nothing compared is nothing verified, and must not print as "0/0 ops verified"
        print(f"mlp-xp: error: {ops.name} FAILED: no case was checked: reinstall mlp_xp", file=sys.stderr)
        return False
    print(format_results(results, title, seconds))
    return all(r.ok for r in results)


def _guarded(work, stopped: str, default=False):
    """``work()``, or ``default`` where it stops on an error: one line on stderr, ``stopped`` with {why} filled in,
    so that the checks after it still run. The loss of doctor's own output is not a check's error: it goes up to
    the CLI, which reports it."""
    try:
        return work()
    except OutputLost:
        raise
    except Exception as e:
        print(stopped.format(why=f"{type(e).__name__}: {e}"), file=sys.stderr)
        return default


def _check_cpu() -> bool:
    """Check the CPU backend, then time its compiled loops against the NumPy path. A check that stops on an
    error is a failure, on one line of stderr, so that the GPUs are still checked."""

    def checks() -> bool:
        ops = get_backend("cpu")
        ok = _check(ops, f"{ops.name}; compiled loops {cpu_loops.status()}")
        return _check_replay() and ok

    ok = _guarded(checks, "mlp-xp: error: cpu FAILED: the check stopped on {why}", default=None)
    if ok is None:
        return False
    _time_loops(get_backend("cpu"))
    return ok


def _check_replay() -> bool:
    """One line: a short run of recorded steps against the same run op by op, on this machine's BLAS and build
    (momentum past a subnormal flush, both dtypes, a partial last batch); they must agree bit for bit."""
    if not get_backend("cpu").records_steps:
        print("recorded step: not used here (it needs NumPy's BLAS and the compiled loops): steps go op by op")
        return True
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((100, 12)), rng.integers(0, 3, 100).astype(np.int32)
    for dtype in ("float32", "float64"):
        runs = []
        for record in (True, False):
            model = MLP([12, 16, 8, 3], device=NumpyOps(), seed=0, dtype=dtype)  # (its own counts)
            opt = Optimizer("momentum", model.ops, model.layout, model.dtype, l2=1e-3)
            step = TrainStep(model, 32, opt, record=record)
            tail, acc, Xd = step.ws.rows(100 % 32), np.zeros(2), X.astype(dtype)
            for k in range(FLUSH_EVERY + 4):
                idx = model.ops.permutation(100, 0, k // 4)[(k % 4) * 32 :][:32]
                step(Xd, Y, idx, acc, 0.1, tail if len(idx) < 32 else None)
            runs.append((model.params.copy(), opt.velocity.copy(), acc, model.ops.counts.by_op.get("run_program", 0)))
        (p, v, a, replays), (p0, v0, a0, _) = runs
        if not replays or not (np.array_equal(p, p0) and np.array_equal(v, v0) and np.array_equal(a, a0)):
            why = "replays differ from the op-by-op steps" if replays else "no step was replayed"
            print(f"mlp-xp: error: recorded step FAILED: {dtype}: {why}", file=sys.stderr)
            return False
    print(
        f"recorded step: {replays} of {FLUSH_EVERY + 4} steps replayed (the first of each batch size runs op by op), "
        "the same numbers as op by op, bit for bit (float32, float64)"
    )
    return True


def _time_loops(ops) -> None:
    """A few lines: each compiled loop against the NumPy path on this machine (loop_timing; under a second).
    Information, not a check: a loop slower here is marked, and a timing that stops on an error is a warning on
    stderr, neither of which changes the exit status."""
    if ops.loops is None:
        return
    _guarded(
        lambda: print("\n".join(loop_timing.doctor_lines(ops.loops))),
        "mlp-xp: warning: timing the compiled loops stopped on {why}",
    )


def _check_gpu(index: int) -> bool | None:
    """Check cuda:``index``: True (verified), False (a check failed, or the check could not run to its end), or
    None (the device is not usable: one line on stderr says why)."""
    usable, why = cuda_status(index)
    if not usable:
        print(f"mlp-xp: error: cuda:{index} is not usable, so no CUDA kernel was checked: {why}", file=sys.stderr)
        return None
    try:
        ops = get_backend(f"cuda:{index}")
    except BackendUnavailable as e:  # visible, but the backend cannot run there (its probe failed, no cuBLAS, ...)
        print(f"mlp-xp: error: cuda:{index} is not usable, so no CUDA kernel was checked: {e}", file=sys.stderr)
        return None
    except Exception as e:
        print(f"mlp-xp: error: cuda:{index} FAILED: the backend stopped on {type(e).__name__}: {e}", file=sys.stderr)
        return False
    # (a device that fails mid-check must not keep the next ones from being checked)
    return _guarded(lambda: _check(ops, ops.name), f"mlp-xp: error: cuda:{index} FAILED: the check stopped on {{why}}")


def _overall(outcomes: dict[str, bool | None]) -> int:
    """Print the ``overall:`` line for the backends asked for (True passed, False failed, None not usable; the
    name "GPU" when none is visible) and return the exit status."""
    failed = [name for name, ok in outcomes.items() if ok is False]
    unusable = [name for name, ok in outcomes.items() if ok is None]
    passed = [name for name, ok in outcomes.items() if ok]
    if failed:
        also = f" (passed: {', '.join(passed)})" if passed else ""
        print(f"overall: FAILED on {', '.join(failed)}{also}, exit status {FAILED}")
        return FAILED
    if unusable:
        if unusable == ["GPU"]:
            which = "no GPU was usable, so no CUDA kernel was checked"
        else:
            verb = "was" if len(unusable) == 1 else "were"
            which = f"{', '.join(unusable)} {verb} not usable, so not every GPU was checked"
        print(f"overall: passed on {', '.join(passed)}, but {which}, exit status {NO_GPU}")
        return NO_GPU
    print(f"overall: every check passed on {', '.join(passed)}")
    return OK


def run_doctor(device: str = "all") -> int:
    """Print one line per op and dtype (verified or FAILING) under each backend's name; return the exit status.

    ``device``: "all" (the CPU, then every visible GPU: cuda:0, cuda:1, ...), "cpu", or "cuda"/"cuda:N" (that
    GPU only). Exit status 1 if any check failed or stopped on an error; else 3 if a GPU was asked for ("all" or
    cuda:N) and none, or not every one, could be checked; else 0. With "all", a last line ``overall: ...`` sums
    up the backends (one line on stderr names each failure and each GPU that is not usable).
    """
    kind, index = device_choice(device)
    if kind == "cuda":
        ok = _check_gpu(index)
        return NO_GPU if ok is None else OK if ok else FAILED
    cpu_ok = _check_cpu()
    if kind == "cpu":
        return OK if cpu_ok else FAILED
    outcomes: dict[str, bool | None] = {"cpu": cpu_ok}
    devices = cuda_devices()
    if not devices:
        _, why = cuda_status(0)
        print(
            f"mlp-xp: error: no usable GPU, so no CUDA kernel was checked: {why} (check the CPU alone with "
            "mlp-xp doctor --device cpu)",
            file=sys.stderr,
        )
        outcomes["GPU"] = None
    for i in devices:
        outcomes[f"cuda:{i}"] = _check_gpu(i)
    return _overall(outcomes)
