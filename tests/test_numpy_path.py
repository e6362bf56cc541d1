"""The NumPy path (mlp_xp.backend.numpy_path) where it differs from its reference by design: in place, without
allocating (tests/test_step.py counts that), and never overflowing. Its values are the op contract's
(tests/test_ops.py, backend cpu-numpy)."""

import numpy as np

from mlp_xp.backend import numpy_path
from mlp_xp.backend.scratch import ScratchCache


def test_sigmoid_in_place_never_overflows():
    z = np.array([[-1e4, 1e4, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        numpy_path.sigmoid(z)
    np.testing.assert_array_equal(z, [[0.0, 1.0, 0.5]])


def test_scratch_buffers_are_made_once():
    scratch = ScratchCache()
    z, y, acc = np.zeros((4, 3)), np.array([0, 1, 2, 1], np.int32), np.zeros(2)
    numpy_path.softmax_xent(z, y, acc, scratch=scratch)
    kept = dict(scratch._buffers)
    numpy_path.softmax_xent(np.zeros((4, 3)), y, acc, scratch=scratch)
    assert scratch._buffers.keys() == kept.keys() and all(scratch._buffers[k] is v for k, v in kept.items())
