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

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench import UserInputError
from regbench.data import files, labels

MISSING = "(missing)"  # the category of a gap in a categorical column
TEST_VALUES = ("test",)  # split column: these rows are the official test split
TRAIN_VALUES = ("train",)
# A text column is an identifier when it has this many distinct values per training row: a
# one-hot column per value, which almost no validation or test row shares (refused)...
ID_SHARE = 0.9
ID_MIN_ROWS = 20  # ...on enough rows to tell: 5 categories over 5 rows are no id
# ...and looks like free text when its values are this long and many distinct (warned: long
# category names exist)
TEXT_LENGTH, TEXT_SHARE = 30, 0.5


def read(ds: Any) -> dict[str, Any]:
    """The table's rows, as regbench.data.datasets.Source's fields (with the facts of its
    `summary`).

    Raises:
        UserInputError: an unreadable file, a header with fewer names than the rows have fields
            (and no dataset.index_col saying so), an absent target or dropped column, a split
            column with other values than train/test, no rows or no feature left.
    """
    path = files.resolve(ds.path)
    frame = read_frame(path, ds.index_col)
    test = read_frame(files.resolve(ds.test_path), ds.index_col) if ds.test_path else None
    target, drop, split = ds.target, list(ds.drop), ds.split_column
    for name, key in [(target, "target"), *((c, "drop") for c in drop), (split, "split_column")]:
        if name is not None and name not in frame.columns:
            raise UserInputError(f"{path}: dataset.{key}={name} is not a column; its columns: {_columns(frame)}")
    summary = {"kind": "table", "path": str(path), "rows": len(frame), "columns": frame.shape[1], "target": target,
               "dropped_columns": list(drop), "split_column": split, "index_fields": ds.index_col or 0,
               "test_path": str(files.resolve(ds.test_path)) if ds.test_path else None,
               "test_rows": len(test) if test is not None else None}
    if split is not None:
        frame, test = _by_split_column(frame, split, path)
        drop.append(split)
        summary["test_rows"] = len(test)
    n_read = len(frame) + (len(test) if test is not None else 0)
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
    summary["rows_without_target"] = n_read - len(frame) - (len(test) if test is not None else 0)
    features = frame.drop(columns=[target, *drop])
    if features.shape[1] == 0:
        raise UserInputError(f"{path}: no feature column is left once the target {target} and dataset.drop are "
                             "set aside; drop fewer columns")
    summary["feature_columns"] = features.shape[1]
    y_all = frame[target].to_numpy() if test is None else np.concatenate([frame[target].to_numpy(),
                                                                          test[target].to_numpy()])
    y_all, task, classes = labels.encode(y_all, ds.task, f"{path} column {target}")
    featurize = functools.partial(TableEncoder, source=path, drop=list(ds.drop))
    out = {"x": features, "y": y_all[: len(frame)], "task": task, "classes": classes, "featurize": featurize,
           "summary": summary}
    if test is not None:
        out.update(x_test=test[features.columns], y_test=y_all[len(frame):])
    return out


def summary_line(s: dict[str, Any]) -> str:
    """The one line that says what a table gave: rows read, columns, features after encoding
    (naming the one-hot expansions), classes, and what was set aside."""
    name = Path(s["path"]).name + (f" + {Path(s['test_path']).name}" if s["test_path"] else "")
    rows = f"{s['rows']} rows"
    if s["test_path"]:
        rows += f" + {s['test_rows']} test rows"
    elif s["split_column"]:
        rows += f" ({s['test_rows']} marked test by {s['split_column']})"
    parts = [f"{c} -> {n}" for c, n in s["one_hot"].items()]
    if s["missing_indicators"]:
        parts.append(f"{s['missing_indicators']} missing-value indicator{'s' * (s['missing_indicators'] > 1)}")
    shown = f" ({', '.join(parts[:8])}{', ...' if len(parts) > 8 else ''})" if parts else ""
    outcome = f"{s['classes']} classes" if s["task"] == "classification" else "regression"
    line = f"table {name}: {rows}, {s['columns']} columns -> {s['features']} features{shown}, {outcome}"
    notes = [f"{_n(s['rows_without_target'], 'row')} without a {s['target']} dropped" if s["rows_without_target"] else "",
             f"set aside: {', '.join(s['dropped_columns'])} (dataset.drop)" if s["dropped_columns"] else "",
             f"{_n(s['index_fields'], 'leading index field')} set aside (dataset.index_col)" if s["index_fields"] else "",
             f"no training value: {', '.join(s['empty_columns'])}" if s["empty_columns"] else ""]
    return "; ".join([line, *(n for n in notes if n)])


def read_frame(path: Path, index_col: int | None = None) -> pd.DataFrame:
    """The file as pandas reads it, by its suffix, without row labels (a fresh 0..n-1 index).

    `index_col`: how many leading fields of a CSV's or TSV's rows are row labels the header
    does not name (as R's write.table writes them); they are set aside.

    Raises:
        UserInputError: an unknown suffix, a file pandas cannot read (its first line of why),
            or rows with another number of leading unnamed fields than `index_col`.
    """
    fmt = files.table_format(path)
    try:
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            frame = pd.read_csv(path, sep=sep)
            _check_header(path, sep, frame, index_col or 0)
            return frame.reset_index(drop=True)
        if index_col:
            raise UserInputError(f"{path}: dataset.index_col applies to CSV and TSV files only; list the "
                                 "index column in dataset.drop")
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_feather(path)
    except UserInputError:
        raise
    except ImportError as e:  # Parquet and Feather need pyarrow
        raise UserInputError(f"{path}: reading {fmt} needs pyarrow: pip install pyarrow ({e})") from e
    except Exception as e:  # pandas' and pyarrow's parsers raise many kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{path}: not a readable {fmt} file ({first}); check the file, or its suffix") from e


def _check_header(path: Path, sep: str, frame: pd.DataFrame, index_col: int) -> None:
    """Refuses rows with more fields than the header has names, unless `index_col` says so.

    pandas then silently takes the leading fields for an index (scikit-learn's breast_cancer.csv,
    whose first line is `569,30,malignant,benign`, keeps 4 of its 31 columns) and names the last
    fields: which one can tell from the fields only, not from the frame (an index 0..n-1 comes
    back as a plain RangeIndex).
    """
    if len(frame) == 0:
        return
    first = pd.read_csv(path, sep=sep, header=None, skiprows=1, nrows=1, dtype=str, keep_default_na=False)
    fields, names = first.shape[1], frame.shape[1]
    unnamed = max(fields - names, 0)  # a short first row is filled with gaps, not shifted
    if unnamed == index_col:
        return
    if not index_col and (first.iloc[0, names:] == "").all():  # `1,2,` under `a,b`: a separator ends each row
        raise UserInputError(f"{path}: its header has {names} names but its rows have {fields} fields, the last "
                             f"{'one' if unnamed == 1 else unnamed} empty: pandas would take the first "
                             f"{_n(unnamed, 'field')} for an index and give the names to the last {names}; remove "
                             "the separator that ends each row")
    if index_col:
        raise UserInputError(f"{path}: dataset.index_col={index_col} but its header has {names} names and its rows "
                             f"have {fields} fields ({_n(unnamed, 'leading field')} without a name); set "
                             f"dataset.index_col={unnamed}" if unnamed > 0 else
                             f"{path}: dataset.index_col={index_col} but its header names every field of its rows "
                             f"({names}); drop dataset.index_col, and list an index column in dataset.drop")
    raise UserInputError(f"{path}: its header has {names} names but its rows have {fields} fields: pandas would "
                         f"take the first {_n(unnamed, 'field')} for an index and give the names to the last {names}; "
                         f"add a header row with one name per field (or set dataset.index_col={unnamed} if those "
                         "leading fields really are row labels)")


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
        source: the file, named by a refusal.
        drop: dataset.drop, which the fix a refusal suggests extends.

    Raises:
        UserInputError: a text column that looks like an identifier (see `text_columns`).
    """

    def __init__(self, train: pd.DataFrame, source: Path | str = "the table", drop: list[str] = ()):
        numeric = [c for c in train.columns if _is_numeric(train[c])]
        values = _numbers(train, numeric)
        seen = ~np.isnan(values).all(axis=0)  # a column without any training value carries nothing
        self.numeric = [c for c, s in zip(numeric, seen) if s]
        self.empty = [c for c, s in zip(numeric, seen) if not s]
        self.categorical = [c for c in train.columns if c not in numeric]
        self.warnings = text_columns(train, self.categorical, source, list(drop))
        values = values[:, seen]
        gaps = np.isnan(values)
        self.medians = np.nanmedian(values, axis=0) if values.size else np.zeros(values.shape[1])
        self.flagged = np.flatnonzero(gaps.any(axis=0))  # the columns that get a missing-indicator
        filled = self._numeric(train)
        self.mean = filled.mean(axis=0)
        sd = filled.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)  # a constant column: centred, not divided by zero
        self.categories = {c: np.unique(_texts(train[c])) for c in self.categorical}

    def describe(self) -> dict[str, Any]:
        """What the encoding made of the columns, for the data summary: the features, the
        one-hot expansions (column -> features), the missing-value indicators, the numeric
        columns without any training value (set aside), and the warnings about text columns."""
        return {"features": self.n_features, "one_hot": {str(c): len(v) for c, v in self.categories.items()},
                "missing_indicators": len(self.flagged), "empty_columns": [str(c) for c in self.empty],
                "warnings": list(self.warnings)}

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


def text_columns(train: pd.DataFrame, categorical: list[Any], source: Path | str, drop: list[str]) -> list[str]:
    """Checks the text columns about to be one-hot encoded; returns the warnings.

    A column with at least ID_SHARE distinct values per training row (an id, a name, an email)
    is refused: each value becomes a feature that almost no validation or test row shares, so
    it cannot help a prediction, only let the network memorise its training rows, which is
    what a regularisation benchmark measures. A column of long values (TEXT_LENGTH characters
    on the median) with many distinct ones (TEXT_SHARE per row) is only warned about: it may be
    free text, or a category with long names. A numeric column is never either.

    Raises:
        UserInputError: one line naming the identifier columns and the dataset.drop that sets them aside.
    """
    n = len(train)
    if n < ID_MIN_ROWS:
        return []
    ids, warnings = [], []
    for c in categorical:
        text = _texts(train[c])
        distinct = len(np.unique(text))
        if distinct >= ID_SHARE * n:
            ids.append((c, distinct))
        elif distinct >= TEXT_SHARE * n and np.median([len(t) for t in text]) >= TEXT_LENGTH:
            warnings.append(f"{source}: column {c} looks like free text ({distinct} distinct values of "
                            f"{n} training rows, {int(np.median([len(t) for t in text]))} characters on the median), "
                            f"one-hot encoded into {distinct} features; set it aside with "
                            f"dataset.drop=[{','.join([*drop, str(c)])}] unless it is a category")
    if ids:
        named = ", ".join(f"{c} ({k} distinct values)" for c, k in ids)
        fix = ",".join([*drop, *(str(c) for c, _ in ids)])
        one = len(ids) == 1
        raise UserInputError(f"{source}: {'column' if one else 'columns'} {named} of {n} training rows "
                             f"{'looks like an identifier' if one else 'look like identifiers'} or free text: one-hot "
                             "encoded, each value would be a feature that almost no validation or test row shares; "
                             f"set {'it' if one else 'them'} aside with dataset.drop=[{fix}]")
    return warnings


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'s' if k != 1 else ''}"


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
