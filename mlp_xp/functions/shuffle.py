"""Deprecated aliases of :mod:`mlp_xp.reference.data` and the NumPy path's gather."""

from ..backend.numpy_path import gather_rows
from ..reference.data import GAMMA, MASK64, epoch_base, mix64, permutation, shuffle_keys

__all__ = ["GAMMA", "MASK64", "epoch_base", "gather_rows", "mix64", "permutation", "shuffle_keys"]
