"""Finds run folders under the given paths and reads their result.json into one runs table.

A folder that looks like a run (it has `.hydra/`, metrics.csv or result.json) but has no
readable, complete result.json — a run still going, or one that was killed — is skipped with
one warning naming it; the report never crashes on it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from regbench.config.keys import backfill
from regbench.results import RESULT_FILE

REQUIRED = ("status", "task", "dataset", "model", "reg", "seed", "params", "metrics", "gap")
RUN_MARKERS = (RESULT_FILE, "metrics.csv", ".hydra")
# Never searched: Hydra's own folder, and MLflow's artifact roots (`regbench export mlflow` puts
# mlartifacts/ beside its database, mlruns/ is MLflow's file store), which hold copies of
# result.json and metrics.csv, not runs.
NOT_SEARCHED = (".hydra", "mlartifacts", "mlruns")
TRIAL_FILE = "trial.json"  # written by a trial of a search with search.seeds > 1 (regbench.cli.app)


@dataclass
class Collected:
    """The runs table and what was skipped on the way."""

    runs: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know about the runs (data versions)


def run_folders(path: Path) -> list[Path]:
    """Every run folder at or under `path`, sorted (a sweep's job folders, single runs, ...)."""
    path = Path(path)
    found = set()
    for dirpath, dirnames, filenames in os.walk(path):
        names = set(filenames) | set(dirnames)
        # a search trial's folder (search.seeds) is not a run: its runs are its seed_<n>/ folders
        if TRIAL_FILE not in names and any(marker in names for marker in RUN_MARKERS):
            found.add(Path(dirpath))
        dirnames[:] = [d for d in dirnames if d not in NOT_SEARCHED]
    return sorted(found)


def flatten_result(result: dict[str, Any]) -> dict[str, Any]:
    """One runs.csv row: top-level fields as they are, `metrics` unprefixed (val_acc, ...),
    `gap.*`, `params.*`, `versions.*` and `split_sizes.*` dotted; lists become JSON text so they can be grouped."""
    row: dict[str, Any] = {}
    for key, value in result.items():
        if key == "metrics":
            row.update(value)
        elif key in ("gap", "params", "versions", "split_sizes") and isinstance(value, dict):
            row.update({f"{key}.{k}": _scalar(v) for k, v in value.items()})
        elif key != "traceback":
            row[key] = _scalar(value)
    return row


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _read(folder: Path) -> tuple[dict[str, Any] | None, str]:
    path = folder / RESULT_FILE
    if not path.is_file():
        return None, "no result.json (still running, killed, or refused at start)"
    try:
        text = path.read_text()
        if not text.strip():
            return None, "empty result.json"
        result = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable result.json ({type(e).__name__}: {str(e).splitlines()[0]})"
    if not isinstance(result, dict):
        return None, "malformed result.json (not an object)"
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        return None, f"malformed result.json (missing {', '.join(missing)})"
    return result, ""


def _mtime(path: Path) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()


def results(folder_lists: list[list[Path]]) -> Iterator[tuple[Path, dict[str, Any] | None, str]]:
    """Each run folder of `folder_lists` once (folders found under two paths are one run), with
    its result, or None and why it cannot be read."""
    seen: set[Path] = set()
    for folders in folder_lists:
        for folder in folders:
            if folder not in seen:
                seen.add(folder)
                yield folder, *_read(folder)


def collect(paths: list[Path]) -> Collected:
    """Reads every run under `paths` (merged, each folder once) into a runs table.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
    rows, skipped = [], []
    filled: dict[str, tuple[Any, list[int]]] = {}  # column -> (the default, the rows back-filled with it)
    for folder, result, why in results([run_folders(Path(path).resolve()) for path in paths]):
        if result is None:
            skipped.append((folder, why))
            continue
        row = flatten_result(result)
        if not row.get("finished_at"):  # written before the field existed: when the file was written
            row["finished_at"] = _mtime(folder / RESULT_FILE)
        row["folder"] = str(folder)
        params = result["params"] if isinstance(result["params"], dict) else {}
        for key, default in backfill(params).items():
            if params.get(key) is None and default is not None:
                filled.setdefault(f"params.{key}", (_scalar(default), []))[1].append(len(rows))
        rows.append(row)
    runs = pd.DataFrame(rows)
    # A run recorded before a key existed gets the default it ran with, so that merged with newer
    # runs it is the same configuration; assigned into the column (1 -> 1.0 beside newer runs'
    # floats), and only where some run recorded the key: a default adds no constant to the report.
    for column, (default, index) in filled.items():
        if column in runs:
            runs.loc[index, column] = default
    runs, notes = data_versions(runs)
    return Collected(runs=runs, skipped=skipped, notes=notes)


DATA_VERSION = "params.dataset.data_version"  # not a config key: set by `data_versions`
_DATA_FILES = ("params.dataset.name", "params.dataset.path", "params.dataset.test_path")


def data_versions(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keeps runs on two versions of a user's file apart, and says so.

    Runs of one user's dataset (the same dataset.name, path and test_path) whose result.json
    records different data fingerprints (regbench.data.fingerprint) ran on different contents:
    they get a `dataset.data_version` parameter (`data@1a2b3c4d`), which makes them separate
    configurations (never seeds of one), and a note names the versions and how many runs each
    has. Runs recorded before regbench fingerprinted data are of an unknown version: beside
    runs of one known version they are grouped with it, as before (a note says that this cannot
    be checked); beside several, they are a version of their own, `data@unknown`.
    """
    if runs.empty or "data_fingerprint" not in runs or "params.dataset.name" not in runs:
        return runs, []
    from regbench.data.files import OWN_DATA
    from regbench.data.fingerprint import now, short

    sha = runs["data_fingerprint"].map(_data_sha)
    own = runs[runs["params.dataset.name"].isin(OWN_DATA)]
    keys = [k for k in _DATA_FILES if k in runs]
    which = own[keys[0]].map(str)
    for key in keys[1:]:
        which = which + "\x1f" + own[key].map(str)
    version, notes = pd.Series(None, index=runs.index, dtype=object), []
    for _, frame in own.groupby(which, sort=False):
        known = list(dict.fromkeys(s for s in sha.loc[frame.index] if isinstance(s, str)))
        unknown = int((~sha.loc[frame.index].map(lambda s: isinstance(s, str))).sum())
        name = f"dataset {frame['params.dataset.name'].iloc[0]} ({', '.join(str(v) for k, v in frame[keys[1:]].iloc[0].items() if _given(v))})"
        if len(known) > 1:
            version.loc[frame.index] = sha.loc[frame.index].map(short)
            counts = [f"{short(s)} ({int((sha.loc[frame.index] == s).sum())} runs)" for s in known]
            if unknown:
                counts.append(f"{short(None)} ({unknown} runs recorded before data fingerprints)")
            current = _now(runs.loc[frame.index, "data_fingerprint"], now)
            where = (f"; the file(s) now: {short(current)}" if current in known else
                     "; the file(s) now match none of them" if current else "")
            notes.append(f"runs of {name} used {len(known)} versions of its file(s), told apart by the column "
                         f"{DATA_VERSION.removeprefix('params.')}: {', '.join(counts)}; each version is a "
                         f"configuration of its own, not more seeds of one{where}")
        elif known:
            version.loc[frame.index] = short(known[0])
            if unknown:
                notes.append(f"runs of {name}: {unknown} of {len(frame)} were recorded before data fingerprints and "
                             f"are grouped with the runs on {short(known[0])} as one version, which cannot be "
                             "checked; rerun them to be sure")
    if not any("versions of its file" in n for n in notes):  # one version per file: no column to add
        return runs, notes
    return runs.assign(**{DATA_VERSION: version}), notes


def _data_sha(value: Any) -> str | None:
    """The digest of a runs-table `data_fingerprint` cell (JSON text), None when it has none."""
    if not isinstance(value, str):
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return str(record["sha256"]) if isinstance(record, dict) and record.get("sha256") else None


def _now(cells: pd.Series, now: Any) -> str | None:
    """The digest the files recorded in the last fingerprinted run of `cells` have today (None
    when they are gone, e.g. a report read on another machine)."""
    for cell in reversed(list(cells)):
        if _data_sha(cell):
            return now(json.loads(cell))
    return None


def _given(value: Any) -> bool:
    return value is not None and value == value and str(value) not in ("", "None", "nan")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of floats (`epoch` an int); empty when the file is missing."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = []
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                row[key] = int(value) if key == "epoch" else (float(value) if value not in ("", None) else math.nan)
            rows.append(row)
        return rows
