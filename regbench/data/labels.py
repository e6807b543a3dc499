"""Targets of a user's data: which task they make, and class labels of any type as 0..K-1.

The task follows what scikit-learn's `type_of_target` users expect: numbers with a fraction
part, or whole numbers with many distinct values, make a regression; anything else (strings,
booleans, a few whole numbers) names classes. `dataset.task` overrides the guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from regbench import UserInputError

# Whole-number targets with more distinct values than this are taken for a regression
# (a count, an age); a 0..9 digit label or a 1..5 rating stay classes.
MAX_WHOLE_CLASSES = 20


def infer_task(values: np.ndarray) -> str:
    """classification or regression, from every non-missing target value."""
    if values.dtype.kind not in "iuf":
        return "classification"
    if values.dtype.kind == "f" and np.any(values != np.round(values)):
        return "regression"
    return "regression" if len(np.unique(values)) > MAX_WHOLE_CLASSES else "classification"


def encode(values: np.ndarray, task: str, where: str) -> tuple[np.ndarray, str, list[str] | None]:
    """The targets as regbench trains on them.

    Args:
        values: every row's target (training, validation and test rows: the classes are the
            labels that occur anywhere, not a statistic fitted on them).
        task: auto, classification or regression (`dataset.task`).
        where: the file (and column) named in errors.

    Returns:
        (targets, task, class names): int64 class indices 0..K-1 in the sorted order of the
        labels (numbers by value, anything else by its text), or float64 targets and None.

    Raises:
        UserInputError: a regression target that is not numeric, or a single class.
    """
    values = np.asarray(values)
    if task == "auto":
        task = infer_task(values)
    if task == "regression":
        if values.dtype.kind not in "iuf":
            raise UserInputError(f"{where}: dataset.task=regression needs a numeric target, but it holds "
                                 f"{_example(values)}; use dataset.task=classification or another target")
        return values.astype(np.float64), task, None
    if values.dtype.kind in "iuf":
        classes, codes = np.unique(values, return_inverse=True)
        names = [_name(c) for c in classes]
    else:
        text = np.array([str(v) for v in values.tolist()], dtype=object)
        classes, codes = np.unique(text, return_inverse=True)
        names = [str(c) for c in classes]
    if len(classes) < 2:
        raise UserInputError(f"{where}: the target has a single class ({names[0] if names else 'none'}); "
                             "a classifier needs at least two: choose another target column")
    return codes.astype(np.int64).reshape(-1), task, names


def _name(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _example(values: np.ndarray) -> str:
    return ", ".join(repr(str(v)) for v in values[:3].tolist()) + (", ..." if len(values) > 3 else "")
