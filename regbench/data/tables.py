"""`dataset=table`: a CSV, TSV, Parquet or Feather file, read with pandas, and the encoder that
turns its columns into standardised features.

The encoder is fitted on the training rows only (regbench.data.datasets fits it once the
split, the `train_size` subsample and the label noise are done) and is, column for column,
scikit-learn's

    ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=MISSING),
                              OneHotEncoder(handle_unknown="ignore")), categorical)])

(tests/test_tables.py holds it to that): numeric columns imputed with the training median,
a missing-indicator column for each one that has gaps in the training rows, all of them
standardised with training statistics; categorical columns one-hot over the training
categories, a gap being a category of its own and an unseen category all zeros.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench import UserInputError
from regbench.data import files, labels

MISSING = "(missing)"  # the category of a gap in a categorical column
TEST_VALUES = ("test",)  # split column: these rows are the official test split
TRAIN_VALUES = ("train",)


def read(ds: Any) -> dict[str, Any]:
    """The table's rows, as regbench.data.datasets.Source's fields.

    Raises:
        UserInputError: an unreadable file, an absent target or dropped column, a split
            column with other values than train/test, no rows or no feature left.
    """
    path = files.resolve(ds.path)
    frame = read_frame(path)
    test = read_frame(files.resolve(ds.test_path)) if ds.test_path else None
    target, drop, split = ds.target, list(ds.drop), ds.split_column
    for name, key in [(target, "target"), *((c, "drop") for c in drop), (split, "split_column")]:
        if name is not None and name not in frame.columns:
            raise UserInputError(f"{path}: dataset.{key}={name} is not a column; its columns: {_columns(frame)}")
    if split is not None:
        frame, test = _by_split_column(frame, split, path)
        drop.append(split)
    frame = _labelled(frame, target, path)
    if test is not None:
        test_file = files.resolve(ds.test_path) if ds.test_path else path
        if ds.test_path:
            if target not in test.columns:
                raise UserInputError(f"{test_file}: the target column {target} is absent; its columns: {_columns(test)}")
            test = _labelled(test, target, test_file)
        absent = [c for c in frame.columns if c not in test.columns and c not in drop]
        if absent:
            raise UserInputError(f"{test_file}: the test rows lack the training file's columns {', '.join(absent)}")
    features = frame.drop(columns=[target, *drop])
    if features.shape[1] == 0:
        raise UserInputError(f"{path}: no feature column is left once the target {target} and dataset.drop are "
                             "set aside; drop fewer columns")
    y_all = frame[target].to_numpy() if test is None else np.concatenate([frame[target].to_numpy(),
                                                                          test[target].to_numpy()])
    y_all, task, classes = labels.encode(y_all, ds.task, f"{path} column {target}")
    out = {"x": features, "y": y_all[: len(frame)], "task": task, "classes": classes, "featurize": TableEncoder}
    if test is not None:
        out.update(x_test=test[features.columns], y_test=y_all[len(frame):])
    return out


def read_frame(path: Path) -> pd.DataFrame:
    """The file as pandas reads it, by its suffix.

    Raises:
        UserInputError: an unknown suffix, or a file pandas cannot read (its first line of why).
    """
    fmt = files.table_format(path)
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if fmt == "csv" else "\t")
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_feather(path)
    except ImportError as e:  # Parquet and Feather need pyarrow
        raise UserInputError(f"{path}: reading {fmt} needs pyarrow: pip install pyarrow ({e})") from e
    except Exception as e:  # pandas' and pyarrow's parsers raise many kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{path}: not a readable {fmt} file ({first}); check the file, or its suffix") from e


def _columns(frame: pd.DataFrame, shown: int = 20) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _by_split_column(frame: pd.DataFrame, split: str, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    values = pd.Series(["(missing)" if pd.isna(v) else str(v).strip().lower() for v in frame[split].tolist()])
    unknown = sorted(set(values) - {*TEST_VALUES, *TRAIN_VALUES})
    if unknown:
        raise UserInputError(f"{path}: the split column {split} holds {', '.join(unknown[:5])}; its values must "
                             "be train or test")
    test = values.isin(TEST_VALUES).to_numpy()
    if not test.any():
        raise UserInputError(f"{path}: no row of the split column {split} says test; mark the official test rows, "
                             "or leave dataset.split_column unset for a held-out fraction")
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def _labelled(frame: pd.DataFrame, target: str, path: Path) -> pd.DataFrame:
    """The rows whose target is present (a row without one can neither train nor score)."""
    kept = frame[frame[target].notna()].reset_index(drop=True)
    if len(kept) == 0:
        raise UserInputError(f"{path}: no row is left once the rows without a {target} are dropped; "
                             "check the target column")
    return kept


class TableEncoder:
    """Features from a table's columns, fitted on its training rows (see the module's docstring).

    Args:
        train: the training rows' feature columns.
    """

    def __init__(self, train: pd.DataFrame):
        numeric = [c for c in train.columns if _is_numeric(train[c])]
        values = _numbers(train, numeric)
        seen = ~np.isnan(values).all(axis=0)  # a column without any training value carries nothing
        self.numeric = [c for c, s in zip(numeric, seen) if s]
        self.categorical = [c for c in train.columns if c not in numeric]
        values = values[:, seen]
        gaps = np.isnan(values)
        self.medians = np.nanmedian(values, axis=0) if values.size else np.zeros(values.shape[1])
        self.flagged = np.flatnonzero(gaps.any(axis=0))  # the columns that get a missing-indicator
        filled = self._numeric(train)
        self.mean = filled.mean(axis=0)
        sd = filled.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)  # a constant column: centred, not divided by zero
        self.categories = {c: np.unique(_texts(train[c])) for c in self.categorical}

    @property
    def n_features(self) -> int:
        return len(self.numeric) + len(self.flagged) + sum(len(v) for v in self.categories.values())

    def _numeric(self, frame: pd.DataFrame) -> np.ndarray:
        values = _numbers(frame, self.numeric)
        gaps = np.isnan(values)
        values = np.where(gaps, self.medians, values)
        return np.hstack([values, gaps[:, self.flagged].astype(np.float64)])

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 feature matrix of `frame`'s rows."""
        parts = [(self._numeric(frame) - self.mean) / self.scale]
        for c, categories in self.categories.items():
            codes = np.searchsorted(categories, _texts(frame[c]))
            codes = np.minimum(codes, len(categories) - 1)
            known = categories[codes] == _texts(frame[c])
            onehot = np.zeros((len(frame), len(categories)))
            onehot[np.flatnonzero(known), codes[known]] = 1.0  # an unseen category: all zeros
            parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((len(frame), 0))


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _numbers(frame: pd.DataFrame, columns: list[Any]) -> np.ndarray:
    if not columns:
        return np.zeros((len(frame), 0))
    return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)


def _texts(column: pd.Series) -> np.ndarray:
    """A categorical column's values as text, a gap as MISSING (so that 1 and "1" agree)."""
    gaps = column.isna().to_numpy()
    text = np.array([str(v) for v in column.tolist()], dtype=object)
    text[gaps] = MISSING
    return text
