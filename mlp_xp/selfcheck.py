"""Every kernel of a backend against its NumPy twin, on random and extreme inputs: what ``mlp-xp doctor``
runs on a user's GPU, and what the ``gpu`` tests assert. Also runs against the CPU harness in CI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .backend import Ops
from .backend.kernels import C_TYPES, KERNELS, kernel_name
from .backend.numpy_ops import NumpyOps
from .functions.activations import ACTIVATIONS

#: Allowed |kernel - float64 twin| / (1 + |twin|), by dtype.
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}


@dataclass
class CheckResult:
    """One kernel instantiation: whether it matched its twin, and the worst error seen."""

    kernel: str
    ok: bool
    max_error: float
    detail: str = ""


def _err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not np.array_equal(np.isfinite(got), np.isfinite(ref)):
        return float("inf")
    fin = np.isfinite(ref)
    return float((np.abs(got[fin] - ref[fin]) / (1 + np.abs(ref[fin]))).max(initial=0.0))


class _Checker:
    def __init__(self, ops: Ops, twin: Ops, seed: int) -> None:
        self.ops, self.twin = ops, twin
        self.rng = np.random.default_rng(seed)
        self.errors: dict[str, list[float]] = {}
        self.failures: dict[str, list[str]] = {}

    def dev(self, a, dtype=None):
        return self.ops.asarray(a, dtype)

    def record(self, kernel: str, got, ref, what: str, exact: bool = False) -> None:
        err = float(not np.array_equal(got, ref)) if exact else _err(got, ref)
        self.errors.setdefault(kernel, []).append(err)
        # the precision of the kernel, not of the output (the sums are float64 for every kernel)
        tol = 0.0 if exact else TOLERANCE[np.dtype(np.float64 if "<double" in kernel else np.float32)]
        if not err <= tol:
            self.failures.setdefault(kernel, []).append(f"{what}: error {err:.3g}")

    def host(self, a) -> np.ndarray:
        return self.ops.to_host(a)

    # -- one method per kernel family --
    def loss(self, dt) -> None:
        cases = [(1, 2, "normal"), (64, 10, "normal"), (7, 1000, "huge"), (3, 10000, "normal"), (5, 10, "equal")]
        for B, C, kind in cases:
            z = self.rng.standard_normal((B, C)) * 5
            if kind == "huge":
                z = self.rng.choice([-1e4, 1e4, 0.0], (B, C))
            elif kind == "equal":
                z[:] = 2.0
            y = self.rng.integers(0, C, B).astype(np.int32)
            for write_grad in (True, False):
                zd, acc = self.dev(z, dt), self.ops.zeros((2,), np.float64)
                self.ops.loss_grad(zd, self.dev(y), acc, "cross_entropy", write_grad)
                zt, acct = z.copy(), np.zeros(2)
                self.twin.loss_grad(zt, y, acct, "cross_entropy", write_grad)
                k = kernel_name("softmax_xent", C_TYPES[dt])
                self.record(k, self.host(zd), zt, f"B={B} C={C} {kind} out")
                self.record(k, self.host(acc), acct, f"B={B} C={C} {kind} sums")
        for loss, make in (
            ("binary_cross_entropy", lambda s: self.rng.integers(0, 2, s).astype(float)),
            ("mse", lambda s: self.rng.standard_normal(s)),
        ):
            base = "sigmoid_bce" if loss == "binary_cross_entropy" else "squared_error"
            for B, K in ((1, 1), (33, 3), (9, 300)):
                z, y = self.rng.standard_normal((B, K)) * 4, make((B, K))
                zd, acc = self.dev(z, dt), self.ops.zeros((2,), np.float64)
                self.ops.loss_grad(zd, self.dev(y, dt), acc, loss, True)
                zt, acct = z.copy(), np.zeros(2)
                self.twin.loss_grad(zt, y, acct, loss, True)
                k = kernel_name(base, C_TYPES[dt])
                self.record(k, self.host(zd), zt, f"B={B} K={K} grad")
                self.record(k, self.host(acc), acct, f"B={B} K={K} sums")

    def activation(self, dt) -> None:
        for rows, cols in ((1, 1), (128, 512), (33, 1000)):
            for act in ACTIVATIONS:
                z, b = self.rng.standard_normal((rows, cols)) * 3, self.rng.standard_normal(cols)
                zd = self.dev(z, dt)
                self.ops.bias_act(zd, self.dev(b, dt), act, 0.01)
                self.twin.bias_act(z, b, act, 0.01)
                self.record(kernel_name("bias_act_fwd", C_TYPES[dt]), self.host(zd), z, f"{act} {rows}x{cols}")
                if act == "identity":
                    continue
                dh = self.rng.standard_normal((rows, cols))
                dhd = self.dev(dh, dt)
                self.ops.act_backward(dhd, zd, act, 0.01)
                self.twin.act_backward(dh, self.host(zd).astype(np.float64), act, 0.01)
                self.record(kernel_name("act_bwd", C_TYPES[dt]), self.host(dhd), dh, f"{act} {rows}x{cols}")
            g = self.rng.standard_normal((rows, cols))
            out = self.ops.empty((cols,), dt)
            self.ops.bias_grad(self.dev(g, dt), out)
            self.record(kernel_name("bias_grad", C_TYPES[dt]), self.host(out), g.sum(0), f"{rows}x{cols}")

    def optimizer(self, dt) -> None:
        n, n_w = 70001, 65000
        for rule in ("sgd", "momentum", "nesterov", "adam"):
            p, g, m, v = (
                self.rng.standard_normal(n),
                self.rng.standard_normal(n),
                self.rng.standard_normal(n),
                self.rng.uniform(0, 1, n),
            )
            dev = [self.dev(a, dt) for a in (p, g, m, v)]
            for ops, (pp, gg, mm, vv) in ((self.ops, dev), (self.twin, (p, g, m, v))):
                if rule == "adam":
                    ops.adam_update(pp, gg, mm, vv, n_w, 1e-3, 2, 0.9, 0.999, 1e-8, 1e-2, 1e-3)
                else:
                    ops.sgd_update(pp, gg, mm, n_w, 0.05, 0.0 if rule == "sgd" else 0.9, rule == "nesterov", 1e-2, 1e-3)
            k = kernel_name("adam_update" if rule == "adam" else "sgd_update", C_TYPES[dt])
            self.record(k, self.host(dev[0]), p, f"{rule} params")
            self.record(k, self.host(dev[2]), m, f"{rule} state")

    def gemm(self, dt) -> None:
        """The graph-capturable GEMM kernel (the cuBLAS path is CuPy's, not ours to check)."""
        for (m, k, n), trans_a, trans_b, beta in (
            ((128, 784, 512), False, False, 0.0),
            ((784, 128, 512), True, False, 0.9),
            ((128, 256, 512), False, True, 0.0),
            ((37, 5, 3), True, True, 0.5),
        ):
            a = self.rng.uniform(-1, 1, (k, m) if trans_a else (m, k))
            b = self.rng.uniform(-1, 1, (n, k) if trans_b else (k, n))
            c = self.rng.uniform(-1, 1, (m, n))
            out = self.dev(c, dt)
            self.ops.gemm_kernel(self.dev(a, dt), self.dev(b, dt), out, trans_a, trans_b, beta)
            ref = (a.T if trans_a else a) @ (b.T if trans_b else b) + beta * c
            # a sum of k products rounds like sqrt(k) float32 additions
            self.record(
                kernel_name("gemm", C_TYPES[dt]),
                self.host(out) / np.sqrt(k),
                ref / np.sqrt(k),
                f"{m}x{k}x{n} trans {trans_a:d}{trans_b:d} beta {beta}",
            )

    def data(self, dt) -> None:
        X = self.rng.standard_normal((300, 17))
        for Y in (self.rng.integers(0, 9, 300).astype(np.int32), self.rng.standard_normal((300, 4))):
            ydt = np.int32 if Y.dtype == np.int32 else dt
            idx = self.rng.permutation(300)[:64]
            xb, yb = self.ops.empty((64, 17), dt), self.ops.empty((64,) + Y.shape[1:], ydt)
            self.ops.gather_rows(self.dev(X, dt), self.dev(Y, ydt), self.dev(idx, np.int64), xb, yb)
            k = kernel_name("gather_rows", C_TYPES[dt], C_TYPES[np.dtype(ydt)])
            self.record(k, self.host(xb), X[idx].astype(dt), "rows", exact=True)
            self.record(k, self.host(yb), Y[idx].astype(ydt), "labels", exact=True)
        perm = self.host(self.ops.permutation(60000, 3, 7))
        self.record("shuffle_keys", perm, self.twin.permutation(60000, 3, 7), "permutation", exact=True)


def check_backend(ops: Ops, seed: int = 0) -> list[CheckResult]:
    """Run every kernel of ``ops`` (float32 and float64) against the NumPy twins; one result per kernel."""
    c = _Checker(ops, NumpyOps(fast=False), seed)
    for dt in (np.dtype(np.float32), np.dtype(np.float64)):
        for family in (c.loss, c.activation, c.optimizer, c.gemm, c.data):
            family(dt)
    results = []
    for names in KERNELS.values():
        for name in names:
            errs = c.errors.get(name)
            if errs is None:
                results.append(CheckResult(name, False, float("nan"), "not exercised"))
            else:
                fails = c.failures.get(name, [])
                results.append(CheckResult(name, not fails, max(errs), "; ".join(fails[:3])))
    return results


def check_cpu_kernels(seed: int = 0) -> list[CheckResult]:
    """The compiled CPU loops (kernels/cpu.cpp) against the NumPy twins; empty where they are not built."""
    from .backend import cpu_kernels
    from .functions import activations, losses, optimizers

    k = cpu_kernels.find()
    if k is None:
        return []
    rng = np.random.default_rng(seed)
    errors: dict[str, list[float]] = {}
    for dt in (np.dtype(np.float32), np.dtype(np.float64)):
        suffix = "f32" if dt == np.float32 else "f64"
        for B, C in ((1, 2), (128, 10), (7, 1000)):
            z, y = rng.standard_normal((B, C)) * 5, rng.integers(0, C, B).astype(np.int32)
            zk, acc, zt, acct = z.astype(dt), np.zeros(2), z.copy(), np.zeros(2)
            k.softmax_xent(zk, y, acc, True, 0.0, None)
            losses.softmax_cross_entropy(zt, y, acct, True)
            errors.setdefault(f"softmax_xent_{suffix}", []).extend([_err(zk, zt), _err(acc / B, acct / B)])
        for rows, cols in ((1, 1), (128, 512)):
            for act in activations.ACTIVATIONS:
                z, b, dh = (
                    rng.standard_normal((rows, cols)) * 3,
                    rng.standard_normal(cols),
                    rng.standard_normal((rows, cols)),
                )
                zk, dhk = z.astype(dt), dh.astype(dt)
                k.bias_act(zk, b.astype(dt), act, 0.01)
                activations.bias_act_forward(z, b, act, 0.01)
                k.act_backward(dhk, zk, act, 0.01)
                activations.act_backward(dh, zk.astype(np.float64), act, 0.01)
                errors.setdefault(f"bias_act_{suffix}", []).append(_err(zk, z))
                errors.setdefault(f"act_bwd_{suffix}", []).append(_err(dhk, dh))
            g, out = rng.standard_normal((rows, cols)), np.empty(cols, dt)
            k.bias_grad(g.astype(dt), out, 0.0)
            errors.setdefault(f"bias_grad_{suffix}", []).append(_err(out / np.sqrt(rows), g.sum(0) / np.sqrt(rows)))
        n, n_w = 70001, 65000
        p, g, m, v = (rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n), rng.uniform(0, 1, n))
        got = [a.astype(dt) for a in (p, g, m, v)]
        c1, c2 = optimizers.adam_corrections(2, 0.9, 0.999)
        k.adam_update(*got, n_w, 1e-3, 0.9, 0.999, 1e-8, c1, c2, 1e-2, 1e-3)
        optimizers.adam_update(p, g, m, v, n_w, 1e-3, 2, 0.9, 0.999, 1e-8, 1e-2, 1e-3)
        errors[f"adam_update_{suffix}"] = [_err(got[0], p), _err(got[2], m), _err(got[3], v)]
        tiny = np.finfo(dt).tiny
        a = np.array([tiny / 2, 1.0, -tiny / 3, np.nan, tiny, -np.inf], dt)
        k.flush_subnormals(a)
        # exact: a flush that did nothing is off by 1e-38 only, under any relative tolerance
        errors[f"flush_subnormals_{suffix}"] = [
            0.0
            if np.array_equal(a, np.array([0.0, 1.0, 0.0, np.nan, tiny, -np.inf], dt), equal_nan=True)
            else float("inf")
        ]
    return [
        CheckResult(
            name, max(errs) <= TOLERANCE[np.dtype(np.float32 if name.endswith("f32") else np.float64)], max(errs)
        )
        for name, errs in errors.items()
    ]


def format_results(results: list[CheckResult], device: str, seconds: float) -> str:
    lines = [f"mlp-xp doctor: {device}"]
    for r in results:
        status = "verified" if r.ok else "FAILING"
        lines.append(f"  {r.kernel:<34s} {status:<9s} max err {r.max_error:.2e}  {r.detail}".rstrip())
    bad = sum(not r.ok for r in results)
    lines.append(
        f"{len(results) - bad}/{len(results)} kernels verified in {seconds:.1f}s"
        + ("" if not bad else f"; {bad} FAILING")
    )
    return "\n".join(lines)


def timed_check(ops: Ops) -> tuple[list[CheckResult], float]:
    t = time.perf_counter()
    results = check_backend(ops)
    return results, time.perf_counter() - t
