"""Op contracts every backend keeps, beyond what training exercises: the same answer on cpu (compiled loops),
cpu-numpy (the twins alone) and the CUDA kernels on the CPU harness."""

from __future__ import annotations

import numpy as np


def test_bad_labels_give_a_nan_loss_and_zero_gradient_rows(ops):
    z = ops.asarray(np.ones((3, 4)), np.float32)
    acc = ops.zeros((2,), np.float64)
    ops.loss_grad(z, ops.asarray(np.array([1, 4, -1], np.int32)), acc, "cross_entropy")
    loss, hits = ops.to_host(acc)
    assert np.isnan(loss) and hits == 0
    g = ops.to_host(z)
    np.testing.assert_array_equal(g[1:], 0)
    np.testing.assert_allclose(g[0], (np.full(4, 0.25) - [0, 1, 0, 0]) / 3, rtol=1e-6)
