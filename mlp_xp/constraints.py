"""The rules a setting's value must keep, as objects: each checks a value (from Python, including a search's
candidates, through the estimators) or parses one (from the command line) and fails with one :class:`ConfigError`
sentence naming the setting and the fix.

The settings table (:mod:`mlp_xp.settings`) gives every setting one of these, as scikit-learn's
``_parameter_constraints`` gives its estimators' parameters an ``Interval`` or ``StrOptions``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

import numpy as np

from .errors import ConfigError

FLOAT_DTYPES = ("float32", "float64")


class Constraint:
    """A rule for one setting. ``check`` takes a Python value, ``parse`` the text of a command-line flag; both
    return the value as the code uses it, or raise ConfigError naming ``label`` (the setting)."""

    #: The annotation of a setting that keeps this rule (TrainConfig's field types).
    python_type: object = object

    def check(self, value, label: str):
        raise NotImplementedError

    def parse(self, text: str, label: str):
        return self.check(text, label)

    def describe(self) -> str:
        """A few words for help texts, e.g. "> 0" or "one of sgd, momentum"."""
        return ""

    def doc_type(self) -> str:
        """The Python type for numpydoc, e.g. "float" or "{'sgd', 'adam'}"."""
        return "object"


class Number(Constraint):
    """A finite int or float between optional bounds, each end open or closed.

    ``Number(low=0, low_open=True)`` is "> 0", ``Number(low=0, high=1, high_open=True)`` is "in [0, 1)".
    """

    def __init__(
        self,
        *,
        integer: bool = False,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.integer, self.low, self.high = integer, low, high
        self.low_open, self.high_open = low_open, high_open

    def doc_type(self) -> str:
        return "int" if self.integer else "float"

    @property
    def python_type(self):
        return int if self.integer else float

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return ""

    def check(self, value, label: str):
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            raise ConfigError(f"{label} must be {'an integer' if self.integer else 'a number'}, got {value!r}")
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            raise ConfigError(f"{label} must be {self.describe()}, got {value!r}")
        return int(value) if self.integer else float(value)

    def parse(self, text: str, label: str):
        try:
            value = int(text) if self.integer else float(text)
        except (TypeError, ValueError):
            raise ConfigError(f"{label} must be {'an integer' if self.integer else 'a number'}, got {text!r}") from None
        return self.check(value, label)


class Options(Constraint):
    """One of a fixed set of words."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    python_type = str

    def doc_type(self) -> str:
        return "{" + ", ".join(repr(c) for c in self.choices) + "}"

    def check(self, value, label: str):
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(f"unknown {label} {value!r}: use one of {', '.join(self.choices)}")
        return value


class Flag(Constraint):
    """True or False (0 or 1 too, as scikit-learn's ``verbose=0``); on the command line a switch, or the text
    ``true`` or ``false``."""

    def describe(self) -> str:
        return "true or false"

    python_type = bool

    def doc_type(self) -> str:
        return "bool"

    def check(self, value, label: str):
        # 0 and 1 too: scikit-learn's estimators are often given verbose=0
        if not isinstance(value, (bool, np.bool_)) and not (isinstance(value, numbers.Integral) and value in (0, 1)):
            raise ConfigError(f"{label} must be True or False, got {value!r}")
        return bool(value)

    def parse(self, text: str, label: str):
        low = str(text).strip().lower()
        if low not in ("true", "false"):
            raise ConfigError(f"{label} must be true or false, got {text!r}")
        return low == "true"


class Folder(Constraint):
    """A folder's path, or None (nothing); the folder need not exist yet."""

    python_type = "str | None"

    def describe(self) -> str:
        return "a folder"

    def doc_type(self) -> str:
        return "str or None"

    def check(self, value, label: str):
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise ConfigError(f"{label} must be a folder's path, got {value!r}")
        return os.fspath(value)


class EachOf(Constraint):
    """One value of ``item``, or a list with one per element (hidden activations: one name, or one per layer).

    On the command line a list is written with commas: ``relu,tanh``."""

    def __init__(self, item: Constraint) -> None:
        self.item = item

    def describe(self) -> str:
        return f"{self.item.describe()}; or one per hidden layer, separated by commas"

    def doc_type(self) -> str:
        return f"{self.item.doc_type()} or list of them"

    def check(self, value, label: str):
        if isinstance(value, str):
            return self.item.check(value, label)
        if not isinstance(value, Sequence) or isinstance(value, bytes):
            raise ConfigError(f"{label} must be a name or a list of names, got {value!r}")
        return [self.item.check(v, label) for v in value]

    def parse(self, text: str, label: str):
        parts = [p.strip() for p in str(text).split(",")]
        return self.check(parts[0] if len(parts) == 1 else parts, label)


class LayerWidths(Constraint):
    """Hidden layer widths: a tuple of positive ints, an int for one layer, ``()`` for none.

    On the command line: ``512,256``, or ``512x256`` as a search writes one choice; ``none`` (or an empty string)
    for a linear model."""

    def describe(self) -> str:
        return "widths such as 512,256 (or 512x256), or none"

    def doc_type(self) -> str:
        return "tuple of int"

    def check(self, value, label: str):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = (value,)
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
        ok = ok and all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in value)
        if not ok:
            raise ConfigError(
                f"{label} must be a tuple of positive layer widths such as (128, 64), got {value!r}: "
                "pass () for no hidden layer"
            )
        return tuple(int(h) for h in value)

    def parse(self, text: str, label: str):
        text = str(text).strip()
        if text.lower() in ("", "none", "()"):
            return ()
        # (one joiner or the other: 512x256,128 mixes a search's list of choices into one model's widths)
        joiner = "x" if "x" in text.lower() and "," not in text else ","
        try:
            widths = tuple(int(t) for t in text.lower().split(joiner))
        except ValueError:
            raise ConfigError(
                f"{label} takes widths separated by commas (or joined by x), e.g. 512,256; got {text!r}"
            ) from None
        if any(w < 1 for w in widths):
            raise ConfigError(f"{label} widths must be positive integers, got {text!r}: e.g. 512,256")
        return widths


class FloatDtype(Constraint):
    """float32 or float64, as a name or a NumPy dtype; the value is the NumPy dtype."""

    def describe(self) -> str:
        return "float32 or float64"

    def doc_type(self) -> str:
        return "{'float32', 'float64'}"

    def check(self, value, label: str):
        try:
            dt = np.dtype(value)
        except TypeError:
            dt = None
        if dt is None or dt.name not in FLOAT_DTYPES:
            raise ConfigError(f"{label} must be 'float32' or 'float64', got {value!r}")
        return dt


def parse_device(spec: str) -> tuple[str, int]:
    """Split a device string into (kind, index): "cpu" -> ("cpu", 0), "cuda:1" -> ("cuda", 1)."""
    if not isinstance(spec, str):
        raise ConfigError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', got {spec!r}")
    s = spec.strip().lower()
    if s in ("auto", "cpu", "numpy"):
        return ("cpu" if s == "numpy" else s), 0
    if s == "cuda" or s == "gpu":
        return "cuda", 0
    if s.startswith("cuda:") and s[5:].isdigit():
        return "cuda", int(s[5:])
    raise ConfigError(f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N' (N = device number)")


DEVICE_FORMS = "'all' (the CPU and every GPU), 'cpu', 'cuda' or 'cuda:N' (N = device number: 0, 1, ...)"


def device_choice(spec: str) -> tuple[str, int | None]:
    """The ``--device`` of doctor and bench: ("all", None), ("cpu", None) or ("cuda", N).

    "all" (or "auto") is the CPU and every visible GPU; "cuda" (or "gpu") is cuda:0, as everywhere. Anything
    else raises the :class:`ConfigError` naming the valid forms."""
    text = spec.strip().lower() if isinstance(spec, str) else spec
    if text in ("all", "auto"):
        return "all", None
    if isinstance(text, str) and text.startswith("cuda:") and not text[5:].isdigit():
        raise ConfigError(
            f"unknown device {spec!r}: the N of cuda:N is a device number (0, 1, ...): use e.g. cuda:0, or 'all' for "
            "the CPU and every GPU"
        )
    try:
        kind, index = parse_device(spec)
    except ConfigError:
        raise ConfigError(f"unknown device {spec!r}: use {DEVICE_FORMS}") from None
    return ("cpu", None) if kind == "cpu" else (kind, index)


class Device(Constraint):
    """A device string: auto, cpu, cuda or cuda:N (:func:`parse_device`). (A backend object passed instead is
    the caller's to accept: :class:`mlp_xp.MLP` takes one as it is.)"""

    def describe(self) -> str:
        return "auto, cpu, cuda or cuda:N"

    def doc_type(self) -> str:
        return "str"

    def check(self, value, label: str):
        parse_device(value)  # raises the ConfigError naming the valid forms
        return value


class Preprocessing(Constraint):
    """What the estimators do to a pandas DataFrame X: None (take it as numbers), "auto" (a fresh
    :class:`mlp_xp.data.preprocess.TablePreprocessor`) or a preprocessor object of one's own (with ``fit``,
    ``transform`` and ``state``)."""

    def describe(self) -> str:
        return "None, 'auto' or a TablePreprocessor"

    def doc_type(self) -> str:
        return "None, 'auto' or TablePreprocessor"

    def check(self, value, label: str):
        if (
            value is None
            or value == "auto"
            or all(callable(getattr(value, m, None)) for m in ("fit", "transform", "state"))
        ):
            return value
        raise ConfigError(f"{label} must be None, 'auto' or a TablePreprocessor, not {value!r}")


class ClassWeights(Constraint):
    """Per-class loss weights: None, "balanced" (n / (k * count of the class), counted on the training rows, k the
    classes present there), a list or 1-D array with one non-negative weight per class, or a dict {class: weight}
    (classes left out weigh 1).

    On the command line: ``balanced``, ``1,2,0.5`` (classes 0, 1, 2) or ``3:2.5,7:0.5`` (class: weight)."""

    def describe(self) -> str:
        return "balanced, one weight per class, or class:weight pairs"

    def doc_type(self) -> str:
        return "None, 'balanced', list or dict"

    def check(self, value, label: str):
        if value is None:
            return value
        if isinstance(value, str):
            if value == "balanced":
                return value
            raise ConfigError(f"{label} must be 'balanced', a list of weights or a dict, got {value!r}")
        items = value.items() if isinstance(value, dict) else enumerate(np.ravel(np.asarray(value, dtype=object)))
        for key, w in items:
            ok = isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
            if not ok:
                raise ConfigError(f"{label} must hold non-negative numbers, got {w!r} for class {key!r}")
        return dict(value) if isinstance(value, dict) else [float(w) for w in np.ravel(value)]

    def parse(self, text: str, label: str):
        text = str(text).strip()
        if text.lower() in ("balanced", "none"):
            return None if text.lower() == "none" else "balanced"
        try:
            if ":" in text:
                pairs = (p.split(":") for p in text.split(","))
                return self.check({int(k): float(w) for k, w in pairs}, label)
            return self.check([float(w) for w in text.split(",")], label)
        except ValueError:
            raise ConfigError(
                f"{label} takes 'balanced', weights per class such as 1,2,0.5, or class:weight pairs such as "
                f"3:2.5,7:0.5; got {text!r}"
            ) from None
