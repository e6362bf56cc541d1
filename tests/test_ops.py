"""The op contract: every op of the vocabulary, on every backend (cpu, cpu-numpy, cuda-host, cuda), against its
reference in mlp_xp.reference.

One input generator and one tolerance table serve every backend: the cases of mlp_xp.selfcheck (shapes from
1x1 to 3x10000, both float dtypes, logits of +-1e4, equal and one-hot rows, bad labels, ReLU's kink, sign(0),
stale outputs that must not leak in) and its TOLERANCE. ``mlp-xp doctor`` runs the same cases on a user's
machine. Implementation-specific checks (builds, raw-pointer guards, launch geometry, sanitizers) live in the
test file of each implementation.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import mlp_xp
from mlp_xp import selfcheck
from mlp_xp.backend.base import STEP_OPS

CASES = selfcheck.cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_its_reference(ops, case):
    err, where = selfcheck.run_case(ops, case)
    assert err <= 1, f"{case.id}: {err:.3g} x tolerance at {where}"


def test_every_op_of_the_vocabulary_has_cases():
    covered = {c.op for c in CASES}
    # copy, fill, replay and run_program move or run what other ops computed; they have no formula of their own
    # (a replayed step is held to its op-by-op numbers in tests/test_program.py).
    assert covered == set(STEP_OPS) - {"copy", "fill", "replay", "run_program"} | {"permutation"}
    for op in covered - {"permutation"}:
        assert {c.dtype.name for c in CASES if c.op == op} == {"float32", "float64"}, op


def _on_device(ops):
    """The backend's own device and stream (CUDA), so that a test's write is ordered like the op's own."""
    dev = getattr(ops, "dev", None)
    return dev.on if dev is not None else contextlib.nullcontext()


def test_a_wrong_op_fails_its_case(ops, monkeypatch):
    """The comparison can fail: an op whose output is off by one part in a thousand is caught."""
    real = type(ops).bias_grad

    def off(self, g, out, **kwargs):
        real(self, g, out, **kwargs)
        with _on_device(self):
            out *= 1.001

    monkeypatch.setattr(type(ops), "bias_grad", off)
    case = next(c for c in CASES if c.op == "bias_grad" and c.dtype.name == "float32")
    err, _ = selfcheck.run_case(ops, case)
    assert err > 1


def test_nan_where_the_reference_has_none_fails(ops, monkeypatch):
    real = type(ops).bias_act

    def poisoned(self, z, b, activation, slope):
        real(self, z, b, activation, slope)
        with _on_device(self):
            z[0, 0] = np.nan

    monkeypatch.setattr(type(ops), "bias_act", poisoned)
    case = next(c for c in CASES if c.op == "bias_act")
    assert selfcheck.run_case(ops, case)[0] == float("inf")


def test_unknown_names_are_refused_on_every_backend(ops):
    z = ops.zeros((2, 3), np.float32)
    with pytest.raises(mlp_xp.ConfigError, match="unknown activation 'swish'"):
        ops.bias_act(z, ops.zeros((3,), np.float32), "swish", 0.01)
    with pytest.raises(mlp_xp.ConfigError, match="unknown activation 'swish'"):
        ops.act_backward(z, ops.zeros((2, 3), np.float32), "swish", 0.01)
    with pytest.raises(mlp_xp.ConfigError, match="unknown loss 'hinge'"):
        ops.loss_grad(z, ops.zeros((2,), np.int32), ops.zeros((2,), np.float64), "hinge")


def test_flags_are_keyword_only(ops):
    a = ops.zeros((2, 2), np.float32)
    with pytest.raises(TypeError):
        ops.matmul(a, a, a, True)
    with pytest.raises(TypeError):
        ops.loss_grad(a, ops.zeros((2,), np.int32), ops.zeros((2,), np.float64), "cross_entropy", False)


def test_the_old_keyword_names_still_work_with_a_warning(ops):
    a = ops.asarray(np.eye(2), np.float32)
    out = ops.asarray(np.ones((2, 2)), np.float32)
    with pytest.warns(FutureWarning, match=r"matmul\(beta=...\) is now matmul\(accumulate=...\)"):
        ops.matmul(a, a, out, beta=0.5)
    np.testing.assert_array_equal(ops.to_host(out), np.eye(2) + 0.5)


def test_the_subnormal_flush_changes_only_subnormal_entries(ops):
    tiny = np.finfo(np.float32).tiny
    v0 = np.array([tiny / 4, 1e-3, -tiny / 3, 0.5], np.float32)
    results = []
    for flush in (False, True):
        p, v = ops.asarray(np.ones(4), np.float32), ops.asarray(v0)
        ops.sgd_update(p, None, v, 4, 0.0, momentum=0.9, folded=True, flush_subnormals=flush)
        results.append(ops.to_host(v))
    plain, flushed = results
    np.testing.assert_array_equal(flushed[[1, 3]], plain[[1, 3]])
    assert set(flushed[[0, 2]]) <= {0.0, *plain[[0, 2]]}  # zeroed where the backend flushes, else untouched
