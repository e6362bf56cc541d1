"""Every op of a backend against its reference, on one set of cases and one tolerance table.

The cases (:func:`cases`) cover each op of the vocabulary on many shapes, both float dtypes, extreme and
degenerate inputs (logits of +-1e4, equal and one-hot rows, bad labels, a kink of ReLU, sign(0) in L1, a
stale output that must not leak in). :func:`run_case` runs one case on a backend and on
:class:`~mlp_xp.backend.reference_ops.ReferenceOps` in float64, from the same inputs rounded to the case's
dtype, and measures the worst error of every output. ``tests/test_ops.py`` asserts every case on every backend;
``mlp-xp doctor`` runs them on a user's machine (:func:`check_backend`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .backend import Ops
from .backend.reference_ops import ReferenceOps
from .reference.layer import ACTIVATIONS

#: The most an output may differ from its reference: |got - ref| <= tol (1 + |ref|) elementwise, for the
#: precision the op ran in (float32: its rounding, and a GPU's fused multiply-adds; float64 likewise).
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}

#: Where each op writes: the positions (ints) and keywords (strs) of its output arguments; None is the
#: returned array.
OUTPUTS: dict[str, tuple] = {
    "gather_rows": (3, 4, "wb"),
    "matmul": (2,),
    "bias_act": (0,),
    "act_backward": (0,),
    "bias_grad": (1,),
    "loss_grad": (0, 2),
    "output_act": (0,),
    "sgd_update": (0, 2),  # params, velocity (the gradient buffer is the op's to overwrite)
    "adam_update": (0, 2, 3),
    "permutation": (None,),
}

#: Arguments that are float64 whatever the op's dtype: the float64 sums of the loss ops.
FLOAT64_ARGUMENTS: dict[str, tuple] = {"loss_grad": (2,)}

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Case:
    """One call of one op: ``make(rng)`` returns its (args, kwargs) in float64 (ints where the op takes ints).

    ``scale`` widens the tolerance where the output is a sum whose rounding grows with its length (a matrix
    product of depth k: sqrt(k)); ``exact`` asks for bit-for-bit equality."""

    op: str
    name: str
    dtype: np.dtype
    make: Callable = field(repr=False, compare=False)
    scale: float = 1.0
    exact: bool = False

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}-{self.dtype.name}"


# ---- the input generator ----


def logits(rng, B: int, C: int, kind: str) -> np.ndarray:
    """Logits of a kind: normal (std 5), huge (+-1e4: exp overflows unless shifted), equal rows (ties), one-hot
    (one large logit, ties elsewhere)."""
    if kind == "huge":
        return rng.choice([-1e4, 1e4, 0.0, 9999.5], size=(B, C))
    if kind == "equal":
        return np.full((B, C), 3.0)
    if kind == "onehot":
        z = np.zeros((B, C))
        z[np.arange(B), rng.integers(0, C, B)] = 50.0
        return z
    return rng.standard_normal((B, C)) * 5


def _softmax_cases(dtype) -> list[Case]:
    out = []
    sizes = [(1, 2), (3, 3), (3, 10), (37, 10), (128, 10), (5, 33), (7, 1000), (2, 4097), (3, 10000)]
    for B, C in sizes:
        for kind in ("normal", "huge", "equal", "onehot"):
            for write_grad in (True, False):

                def make(rng, B=B, C=C, kind=kind, write_grad=write_grad):
                    y = rng.integers(0, C, B).astype(np.int32)
                    return (logits(rng, B, C, kind), y, np.zeros(2), "cross_entropy"), {"write_grad": write_grad}

                out.append(Case("loss_grad", f"xent-{B}x{C}-{kind}-{'grad' if write_grad else 'p'}", dtype, make))
    for B, C in [(19, 2), (19, 10), (19, 300), (7, 1000), (128, 10), (2, 10000)]:
        for kind in ("normal", "huge", "equal", "onehot"):
            for write_grad in (True, False):

                def make(rng, B=B, C=C, kind=kind, write_grad=write_grad):
                    y = rng.integers(0, C, B).astype(np.int32)
                    w = rng.uniform(0.2, 3.0, C)
                    options = {"write_grad": write_grad, "smoothing": 0.1, "class_weight": w}
                    return (logits(rng, B, C, kind), y, np.zeros(2), "cross_entropy"), options

                tag = "grad" if write_grad else "p"
                out.append(Case("loss_grad", f"xent-{B}x{C}-{kind}-{tag}-smoothing-weights", dtype, make))

    def bad_labels(rng):  # outside [0, C): a NaN loss, a zero gradient row, never a hit
        return (np.ones((4, 4)), np.array([1, 4, -1, 7], np.int32), np.zeros(2), "cross_entropy"), {}

    out.append(Case("loss_grad", "xent-bad-labels", dtype, bad_labels))
    for B, C in [(1, 2), (19, 10), (128, 10), (7, 1000)]:
        for kind in ("normal", "huge", "onehot"):
            for options in ("rows", "rows-smoothing-classes", "divisor"):

                def make(rng, B=B, C=C, kind=kind, options=options):
                    y = rng.integers(0, C, B).astype(np.int32)
                    return (logits(rng, B, C, kind), y, np.zeros(2), "cross_entropy"), _row_options(rng, B, C, options)

                out.append(Case("loss_grad", f"xent-{B}x{C}-{kind}-{options}", dtype, make))
    return out


def _row_options(rng, B: int, C: int, options: str) -> dict:
    """Per-row weights (zeros among them, as scikit-learn allows) with their sum as the divisor, or only a
    divisor (a data-parallel step's global row count); with ``smoothing-classes`` also label smoothing and class
    weights."""
    if options == "divisor":
        return {"divisor": float(3 * B + 1)}
    w = rng.uniform(0.0, 3.0, B)
    w[:: max(2, B // 3)] = 0.0
    if w.sum() == 0:
        w[-1] = 1.5
    kw = {"sample_weight": w, "divisor": float(w.sum())}
    if options == "rows-smoothing-classes":
        kw.update(smoothing=0.1, class_weight=rng.uniform(0.2, 3.0, C))
    return kw


def _other_loss_cases(dtype) -> list[Case]:
    out = []
    for B, K in [(1, 1), (5, 3), (7, 3), (64, 1), (9, 40), (33, 3), (9, 300), (300, 5), (3, 600)]:
        for write_grad in (True, False):

            def bce(rng, B=B, K=K, write_grad=write_grad):
                z = rng.standard_normal((B, K)) * 4
                z.flat[::7], z.flat[3::11] = 1e4, -1e4  # no overflow, no log(0)
                y = rng.integers(0, 2, (B, K)).astype(float)
                return (z, y, np.zeros(2), "binary_cross_entropy"), {"write_grad": write_grad}

            def mse(rng, B=B, K=K, write_grad=write_grad):
                z, y = rng.standard_normal((B, K)) * 3, rng.standard_normal((B, K))
                return (z, y, np.zeros(2), "mse"), {"write_grad": write_grad}

            tag = "grad" if write_grad else "p"
            out += [
                Case("loss_grad", f"bce-{B}x{K}-{tag}", dtype, bce),
                Case("loss_grad", f"mse-{B}x{K}-{tag}", dtype, mse),
            ]
    for B, K in [(1, 1), (9, 3), (64, 1), (33, 40)]:
        for options in ("rows", "divisor"):

            def bce_rows(rng, B=B, K=K, options=options):
                z = rng.standard_normal((B, K)) * 4
                y = rng.integers(0, 2, (B, K)).astype(float)
                return (z, y, np.zeros(2), "binary_cross_entropy"), _row_options(rng, B, K, options)

            def mse_rows(rng, B=B, K=K, options=options):
                z, y = rng.standard_normal((B, K)) * 3, rng.standard_normal((B, K))
                return (z, y, np.zeros(2), "mse"), _row_options(rng, B, K, options)

            out += [
                Case("loss_grad", f"bce-{B}x{K}-{options}", dtype, bce_rows),
                Case("loss_grad", f"mse-{B}x{K}-{options}", dtype, mse_rows),
            ]
    for output in ("softmax", "sigmoid", "identity"):
        for B, C in [(11, 7), (3, 1000)]:

            def make(rng, B=B, C=C, output=output):
                return (rng.standard_normal((B, C)) * 30, output), {}

            out.append(Case("output_act", f"{output}-{B}x{C}", dtype, make))
    return out


_LAYER_SHAPES = [(1, 1), (3, 7), (3, 17), (128, 10), (7, 513), (128, 512), (33, 1000)]


def _layer_cases(dtype) -> list[Case]:
    from .reference.layer import activate

    out = []
    for rows, cols in _LAYER_SHAPES:
        for act in ACTIVATIONS:

            def forward(rng, rows=rows, cols=cols, act=act):
                z, b = rng.standard_normal((rows, cols)) * 3, rng.standard_normal(cols)
                z.flat[::5] = -b[np.arange(0, z.size, 5) % cols]  # some z + b exactly 0: the kink
                return (z, b, act, 0.01), {}

            def backward(rng, rows=rows, cols=cols, act=act):
                h = activate(rng.standard_normal((rows, cols)) * 3, act, 0.01)  # a layer's output
                h.flat[::9] = 0.0  # exactly at ReLU's kink
                return (rng.standard_normal((rows, cols)), h, act, 0.01), {}

            out += [
                Case("bias_act", f"{act}-{rows}x{cols}", dtype, forward),
                Case("act_backward", f"{act}-{rows}x{cols}", dtype, backward),
            ]
    for rows, cols in [*_LAYER_SHAPES, (5, 33), (1000, 10), (4096, 3)]:
        for accumulate in (0.0, 0.9):

            def bias_grad(rng, rows=rows, cols=cols, accumulate=accumulate):
                # with accumulate = 0 the NaN already in the output must not leak in
                out = rng.standard_normal(cols) if accumulate else np.full(cols, np.nan)
                return (rng.standard_normal((rows, cols)), out), {"accumulate": accumulate}

            out.append(Case("bias_grad", f"{rows}x{cols}-acc{accumulate}", dtype, bias_grad, scale=np.sqrt(rows)))
    small = [
        (m, k, n, ta, tb, acc)
        for m, k, n in [(1, 1, 1), (7, 5, 3), (37, 53, 29), (64, 16, 64), (130, 70, 65), (128, 200, 10)]
        for ta in (False, True)
        for tb in (False, True)
        for acc in (0.0, 0.9)
    ]
    # and the step's own products: z = h W, dW = h^T g + mu V, dh = g W^T (784-512-256-10, batch 128)
    step = [(128, 784, 512, False, False, 0.0), (784, 128, 512, True, False, 0.9), (128, 256, 512, False, True, 0.0)]
    for m, k, n, trans_a, trans_b, accumulate in small + step:

        def matmul(rng, m=m, k=k, n=n, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate):
            a = rng.standard_normal((k, m) if trans_a else (m, k))
            b = rng.standard_normal((n, k) if trans_b else (k, n))
            c = rng.standard_normal((m, n)) if accumulate else np.full((m, n), np.nan)
            return (a, b, c), {"trans_a": trans_a, "trans_b": trans_b, "accumulate": accumulate}

        name = f"{m}x{k}x{n}-{'T' if trans_a else 'N'}{'T' if trans_b else 'N'}-acc{accumulate}"
        out.append(Case("matmul", name, dtype, matmul, scale=np.sqrt(k)))
    return out


def _update_cases(dtype) -> list[Case]:
    out = []
    sizes = [(1, 1), (300, 200), (1001, 900), (70000, 65000)]
    for n, n_w in sizes:
        for l2, l1 in [(0.0, 0.0), (0.01, 0.0), (0.0, 0.003), (0.01, 0.003)]:

            def state(rng, n=n):
                p, g = rng.standard_normal(n), rng.standard_normal(n)
                p[:5] = 0.0  # sign(0) = 0 in the L1 term
                return p, g, rng.standard_normal(n) * 0.1, rng.uniform(0, 0.1, n)

            for rule in ("sgd", "momentum", "nesterov", "folded"):

                def sgd(rng, n_w=n_w, l2=l2, l1=l1, rule=rule, state=state):
                    p, g, v, _ = state(rng)
                    kw = {
                        "momentum": 0.0 if rule == "sgd" else 0.9,
                        "nesterov": rule == "nesterov",
                        "l2": l2,
                        "l1": l1,
                        "folded": rule == "folded",
                    }
                    return (p, None if rule == "folded" else g, v, n_w, 0.05), kw

                out.append(Case("sgd_update", f"{rule}-{n}-l2{l2}-l1{l1}", dtype, sgd))
            for step in (1, 3, 1000):

                def adam(rng, n_w=n_w, l2=l2, l1=l1, step=step, state=state):
                    p, g, m, v = state(rng)
                    return (p, g, m, v, n_w, 1e-3, step), {
                        "beta1": 0.9,
                        "beta2": 0.999,
                        "eps": 1e-8,
                        "l2": l2,
                        "l1": l1,
                    }

                out.append(Case("adam_update", f"t{step}-{n}-l2{l2}-l1{l1}", dtype, adam))
    return out


def _data_cases(dtype) -> list[Case]:
    def gather(rng, classes: bool):
        X = rng.standard_normal((300, 17))
        Y = rng.integers(0, 9, 300).astype(np.int32) if classes else rng.standard_normal((300, 4))
        idx = rng.permutation(300)[:64].astype(np.int64)
        yb = np.zeros((64,), np.int32) if classes else np.zeros((64, 4))
        return (X, Y, idx, np.zeros((64, 17)), yb), {}

    def gather_weights(rng):
        (X, Y, idx, xb, yb), _ = gather(rng, True)
        return (X, Y, idx, xb, yb), {"W": rng.uniform(0, 5, 300), "wb": np.zeros(64)}

    out = [
        Case("gather_rows", f"{what}", dtype, lambda rng, c=c: gather(rng, c), exact=True)
        for what, c in (("labels", True), ("targets", False))
    ]
    out.append(Case("gather_rows", "labels-weights", dtype, gather_weights, exact=True))
    if dtype == DTYPES[0]:  # a permutation has no float dtype: once
        out += [
            Case("permutation", f"n{n}", dtype, lambda rng, n=n: ((n, 11, 4), {}), exact=True)
            for n in (1, 2, 1000, 60000)
        ]
    return out


def cases(dtypes=DTYPES) -> list[Case]:
    """Every case, for each of ``dtypes``."""
    out = []
    for dt in dtypes:
        for family in (_softmax_cases, _other_loss_cases, _layer_cases, _update_cases, _data_cases):
            out += family(np.dtype(dt))
    return out


# ---- running a case ----


def _error(got, ref) -> float:
    """max |got - ref| / (1 + |ref|); inf where the two differ in shape or in a non-finite value."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    fin = np.isfinite(ref)
    if not np.array_equal(np.isfinite(got), fin) or not np.array_equal(got[~fin], ref[~fin], equal_nan=True):
        return float("inf")
    return float((np.abs(got[fin] - ref[fin]) / (1 + np.abs(ref[fin]))).max(initial=0.0))


def _rounded(a, dtype):
    """An input as the op sees it in ``dtype``: float arrays rounded to it (and back to float64 for the
    reference); ints, labels and scalars as they are."""
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return a.astype(dtype).astype(np.float64)
    return a


def _on(ops: Ops, a, dtype):
    if isinstance(a, np.ndarray):
        return ops.asarray(a, dtype if a.dtype.kind == "f" else a.dtype)
    return a


def run_case(ops: Ops, case: Case, seed: int = 0, method: str | None = None) -> tuple[float, str]:
    """Run ``case`` on ``ops`` (its op, or ``method`` of it) and on the reference; (worst error in units of the
    tolerance, what was worst). An error above 1 fails the case; ``exact`` cases give 0 or inf."""
    args, kwargs = case.make(np.random.default_rng(seed))
    f64 = FLOAT64_ARGUMENTS.get(case.op, ())
    dtypes = [np.dtype(np.float64) if i in f64 else case.dtype for i in range(len(args))]
    args = [_rounded(a, dt) for a, dt in zip(args, dtypes)]
    kwargs = {k: _rounded(v, case.dtype) for k, v in kwargs.items()}
    ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ref_kwargs = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    ref_result = getattr(ReferenceOps(), case.op)(*ref_args, **ref_kwargs)
    dev_args = [_on(ops, a, dt) for a, dt in zip(args, dtypes)]
    dev_kwargs = {k: _on(ops, v, case.dtype) for k, v in kwargs.items()}
    result = getattr(ops, method or case.op)(*dev_args, **dev_kwargs)
    worst, where = 0.0, ""
    for pos in OUTPUTS[case.op]:
        if isinstance(pos, str):  # an output passed by keyword, where the case passes it
            if pos not in kwargs:
                continue
            got, ref = ops.to_host(dev_kwargs[pos]), ref_kwargs[pos]
        else:
            got = ops.to_host(result if pos is None else dev_args[pos])
            ref = ref_result if pos is None else ref_args[pos]
        if case.exact:
            err = 0.0 if np.array_equal(got, ref) else float("inf")
        else:
            # float64 sums (acc) are as precise as the op that fed them
            err = _error(got, ref) / (TOLERANCE[case.dtype] * case.scale)
        if not err <= worst:  # NaN counts as worst
            worst, where = err, f"output {'returned' if pos is None else pos}"
    return worst, where


@dataclass
class CheckResult:
    """One op in one dtype on one backend: whether every case matched the reference, and the worst error in
    units of the tolerance (1 = at the tolerance)."""

    op: str
    dtype: str
    cases: int
    worst: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_backend(ops: Ops, selected: list[Case] | None = None) -> list[CheckResult]:
    """Every case (or ``selected``) on ``ops``; one result per (op, dtype), in the order of the cases.

    On the CUDA backend the matmul cases also run through its own GEMM kernel (``gemm_kernel``, what a captured
    CUDA graph uses instead of cuBLAS), reported as ``matmul:gemm_kernel``."""
    runs = [(case, None) for case in (cases() if selected is None else selected)]
    if hasattr(ops, "gemm_kernel"):
        runs += [(case, "gemm_kernel") for case, _ in runs if case.op == "matmul"]
    results: dict[tuple[str, str], CheckResult] = {}
    for case, method in runs:
        err, where = run_case(ops, case, method=method)
        op = case.op if method is None else f"{case.op}:{method}"
        r = results.setdefault((op, case.dtype.name), CheckResult(op, case.dtype.name, 0, 0.0))
        r.cases += 1
        r.worst = max(r.worst, err)
        if not err <= 1:
            r.failures.append(f"{case.name}: {err:.3g} x tolerance at {where}")
    return list(results.values())


def format_results(results: list[CheckResult], device: str, seconds: float) -> str:
    lines = [f"mlp-xp doctor: {device}"]
    for r in results:
        status = "verified" if r.ok else "FAILING"
        detail = f"  first failure: {r.failures[0]}" if r.failures else ""
        lines.append(
            f"  {r.op:<18s} {r.dtype:<8s} {status:<9s} {r.cases:>4d} cases, worst {r.worst:.2g} x tolerance{detail}"
        )
    bad = sum(not r.ok for r in results)
    lines.append(
        f"{len(results) - bad}/{len(results)} ops verified in {seconds:.1f}s" + (f"; {bad} FAILING" if bad else "")
    )
    return "\n".join(lines)


def timed_check(ops: Ops) -> tuple[list[CheckResult], float]:
    t = time.perf_counter()
    results = check_backend(ops)
    return results, time.perf_counter() - t
