"""Deprecated: the old home of the math. The readable formulas are :mod:`mlp_xp.reference`; the tuned NumPy the
CPU backend falls back to is :mod:`mlp_xp.backend.numpy_path`. These modules keep the old names and signatures
working, with a FutureWarning, and will be removed."""

import warnings

warnings.warn(
    "mlp_xp.functions is deprecated: use mlp_xp.reference (the formulas) or mlp_xp.backend.numpy_path (the tuned "
    "NumPy); see CHANGELOG.md",
    FutureWarning,
    stacklevel=2,
)
