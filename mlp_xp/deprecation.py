"""Renamed public names keep working for a while: each use of an old name warns once per place, naming the new
one (CHANGELOG.md lists them all)."""

from __future__ import annotations

import warnings


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """A FutureWarning that ``old`` is now ``new`` and will be removed (FutureWarning: shown to users too)."""
    warnings.warn(f"{old} is now {new}; {old} will be removed", FutureWarning, stacklevel=stacklevel)
