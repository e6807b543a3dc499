"""`dataset=digits`, `breast_cancer`, `wine`, `diabetes`: scikit-learn's bundled toy datasets.

Digits is read from scikit-learn's data file without importing scikit-learn; the others
through its loaders (imported when one of them is read).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {"digits": "classification", "breast_cancer": "classification", "wine": "classification",
         "diabetes": "regression"}


def read(ds: Any) -> dict[str, Any]:
    """The dataset `ds` names, as regbench.data.datasets.Source's fields (no official test split)."""
    if ds.name == "digits":
        x, y = _digits()
    else:
        from sklearn import datasets as skd

        bunch = getattr(skd, f"load_{ds.name}")()
        x, y = bunch.data.astype(np.float64), bunch.target.astype(np.float64 if ds.name == "diabetes" else np.int64)
    return {"x": x, "y": y, "task": TASKS[ds.name]}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, as `load_digits` returns them, read from its data
    file without importing scikit-learn: the import (0.6-1 s) would take longer than the
    default run's training."""
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        flat, target = table[:, :-1], table[:, -1].astype(int)
    else:  # another layout of scikit-learn's package: its own loader
        from sklearn.datasets import load_digits

        bunch = load_digits()
        flat, target = bunch.data, bunch.target
    return flat.reshape(-1, 1, 8, 8).astype(np.float64), target
