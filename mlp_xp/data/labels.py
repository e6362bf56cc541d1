"""The class count of a labelled dataset, and the checks that keep a stray label from changing it.

The training labels define the classes: they must be exactly 0..C-1, every class present, and the test labels
must lie in 0..C-1 too. A label file with one stray value of 200 would otherwise make a 201-class model, and a
class seen only in the test labels an extra output that training never fits. An explicit class count
(``classes=``, ``mlp-xp --classes``) is for subsets that lack some classes: it sets C, and then every label of
either split must only be below C.
"""

from __future__ import annotations

import numpy as np

from ..constraints import Number
from ..errors import DataError

__all__ = ["check_classes", "class_count"]

# At least 2: one class is not a classification problem (and cross_entropy needs two outputs).
_CLASSES = Number(integer=True, low=2)
# How many values a message lists before it says "and N more".
_LISTED = 6


def check_classes(classes: int | None) -> int | None:
    """``classes`` as an int (>= 2), or None; a :class:`ConfigError` naming the fix otherwise."""
    return None if classes is None else _CLASSES.check(classes, "classes (the number of classes)")


def _spans(values: np.ndarray) -> str:
    """Sorted distinct ints as ranges: [0, 1, 2, 5, 7, 8] -> "0..2, 5, 7..8"."""
    parts: list[str] = []
    start = prev = int(values[0])
    for v in [*(int(v) for v in values[1:]), None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    more = len(parts) - _LISTED
    return ", ".join(parts[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def _counted(y: np.ndarray, values: np.ndarray) -> str:
    """Each value with the rows holding it: "200 (1 row)", "10 (3 rows), 11 (1 row) and 2 more values"."""
    shown = [
        f"{int(v)} ({n} row{'s' if n != 1 else ''})"
        for v, n in ((v, int(np.count_nonzero(y == v))) for v in values[:_LISTED])
    ]
    more = len(values) - _LISTED
    return ", ".join(shown) + (f" and {more} more value{'s' if more != 1 else ''}" if more > 0 else "")


def class_count(
    y_train: np.ndarray,
    y_test: np.ndarray | None,
    classes: int | None = None,
    *,
    train_name: str = "the training labels",
    test_name: str = "the test labels",
) -> int:
    """The number of classes C of integer labels ``y_train`` (and ``y_test``, which may be None).

    Parameters
    ----------
    y_train, y_test : numpy.ndarray
        Non-negative integer class labels; ``y_test`` may be None.
    classes : int or None
        The class count, given explicitly (>= 2); None reads it off the training labels.
    train_name, test_name : str
        How messages name each split's labels, e.g. ``"the training labels (y_train in data.npz)"``.

    Returns
    -------
    int
        ``classes`` when given, else the number of distinct training labels.

    Raises
    ------
    DataError
        Without ``classes``: if the training labels are empty or not exactly 0..C-1 (a class missing, which is
        how a stray large label shows), or a test label is C or more. With ``classes``: if a label of either
        split is ``classes`` or more. Each message names the offending values and their row counts.
    ConfigError
        If ``classes`` is not an integer >= 2.
    """
    classes = check_classes(classes)
    for name, y in ((train_name, y_train), (test_name, y_test)):
        if y is not None and len(y) and int(y.min()) < 0:
            raise DataError(
                f"{name} hold negative values ({_counted(y, np.unique(y[y < 0]))}): store class labels as 0, 1, 2, ..."
            )
    if classes is not None:
        for name, y in ((train_name, y_train), (test_name, y_test)):
            if y is None or not len(y):
                continue
            over = np.unique(y[y >= classes])
            if len(over):
                raise DataError(
                    f"{name} hold {_counted(y, over)}, but classes={classes} allows only 0..{classes - 1}: give "
                    f"the class count as at least {int(over[-1]) + 1}, or drop or relabel those rows"
                )
        return classes
    if not len(y_train):
        raise DataError(f"{train_name} are empty, so they define no classes: give at least one labelled row")
    present = np.unique(y_train).astype(np.int64)  # int64: uint8's 255 + 1 would wrap to 0 below
    n = int(present[-1]) + 1
    if len(present) != n:
        # The first missing class splits the labels into 0..k-1, which look right, and the rest, which hold
        # the stray values (one 200 among 0..9) or a real class whose neighbours are absent (0, 1, 2, 5).
        # Found from the gaps between the labels present, not from arange(n), which one stray 10**12 would make
        # too large to hold.
        starts = np.concatenate(([0], present[:-1] + 1))
        gaps = starts < present
        spans = [str(a) if a == b - 1 else f"{a}..{b - 1}" for a, b in zip(starts[gaps], present[gaps])]
        missing = ", ".join(spans[:_LISTED]) + (
            f" and {len(spans) - _LISTED} more gaps" if len(spans) > _LISTED else ""
        )
        beyond = present[present > starts[gaps][0]]
        raise DataError(
            f"{train_name} hold {_spans(present)}, so classes {missing} are missing and the labels above "
            f"the gap are {_counted(y_train, beyond)}: relabel or drop those rows if they are strays, or give the "
            f"class count explicitly (classes={n}, --classes {n}) if the data are a subset that lacks some classes"
        )
    if y_test is not None and len(y_test):
        extra = np.unique(y_test[y_test >= n])
        if len(extra):
            raise DataError(
                f"{test_name} hold {_counted(y_test, extra)}, which the training labels do not (they are "
                f"0..{n - 1}): drop or relabel those test rows, or give the class count explicitly "
                f"(classes={int(extra[-1]) + 1}, --classes {int(extra[-1]) + 1}) if training lacks those classes"
            )
    return n
