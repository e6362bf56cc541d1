"""Deprecated alias of :mod:`mlp_xp.backend.scratch`."""

from ..backend.scratch import Scratch, ScratchCache, constant, fresh

__all__ = ["Scratch", "ScratchCache", "constant", "fresh"]
