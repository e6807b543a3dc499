"""The run folder's files: metrics.csv (one row per epoch) and result.json (written atomically),
and a run's identity (config_hash).

A run folder describes itself: with Hydra's .hydra/ beside them, these two files are enough to
understand and re-aggregate a run without the code that wrote it. What result.json holds is
declared, and read back, by regbench.record.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from regbench.config.keys import NOT_PARAMS, hashed
from regbench.record import RESULT_FILE, Record

METRICS_FILE = "metrics.csv"
MODEL_FILE = "model.pt"


def metric_name(task: str) -> str:
    """`acc` for classification, `r2` for regression."""
    return "acc" if task == "classification" else "r2"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Flattens a resolved config mapping into dotted keys: {"reg.alpha": 1e-4, ...}
    (without the top-level NOT_PARAMS)."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if not prefix and key in NOT_PARAMS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_hash(params: dict[str, Any], data: str | None = None) -> str:
    """A digest of a run's flattened, resolved config: two runs with the same hash compute
    the same thing (resuming a sweep compares it, not just the job number).

    `data`: the digest of a user's data (regbench.data.fingerprint), hashed with the config, so
    that a run on an edited file has another hash; None for the bundled datasets, whose hash is
    the config's alone. Call `identity`, which computes it, for a run's hash.

    Only the keys that make the run's identity are hashed (regbench.config.keys.hashed, from each
    key's declaration): what is kept rather than computed is left out, and so are the keys added
    after the first release where a run from before would not have had them (a schedule knob
    the run's schedule does not read, `optim.schedule=constant`, a regularizer knob or a key of
    a user's data at its default, a model knob for another model, optim=fista's knobs for
    another optimizer): runs from before they existed keep their hash, so their sweeps still
    resume."""
    import hashlib

    kept = hashed(params)
    if data is not None:  # not a config key: no config can collide with it
        kept["data fingerprint"] = data
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def identity(params: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """A run's identity: its config_hash, with the fingerprint of a user's data hashed in, and
    that fingerprint (None for a bundled dataset). The one place a run's hash is computed: the
    result it writes, the skip of a finished run, the refusal of another configuration's folder
    and the checkpoints all use it, so that they cannot disagree."""
    from regbench.data.fingerprint import of_params

    data = of_params(params)
    return config_hash(params, data["sha256"] if data else None), data


def other_data(old: dict[str, Any], params: dict[str, Any], data: dict[str, Any] | None) -> str | None:
    """What changed when `old` (a result.json) is a run of this very configuration on another
    version of its data (`data`, this run's fingerprint), e.g. `another version of data.csv
    (sha256 1a2b3c4d -> 3c4d5e6f)`; None when it is not (the same data, another configuration,
    or a bundled dataset). A result written before regbench fingerprinted data counts as run on
    an unknown version."""
    from regbench.data.fingerprint import SHORT

    if data is None or not isinstance(old, dict):
        return None
    before = old.get("data_fingerprint") if isinstance(old.get("data_fingerprint"), dict) else {}
    if before.get("sha256") == data["sha256"] or old.get("config_hash") != config_hash(params, before.get("sha256")):
        return None
    names = {key: Path(entry["path"]).name for key, entry in data["files"].items()}
    if not before:
        return f"a version of {' and '.join(names.values())} regbench did not record (it was run before data fingerprints)"
    old_files = before.get("files") if isinstance(before.get("files"), dict) else {}
    changed = [f"{names[key]} (sha256 {str((old_files.get(key) or {}).get('sha256', '?'))[:SHORT]} -> "
               f"{entry['sha256'][:SHORT]})" for key, entry in data["files"].items()
               if (old_files.get(key) or {}).get("sha256") != entry["sha256"]]
    return f"another version of {' and '.join(changed or names.values())}"


def versions() -> dict[str, str]:
    import torch

    from regbench import __version__

    return {"regbench": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def early_best(best_epoch: int | None, patience: int | None, stopped_early: bool) -> bool:
    """Whether early stopping reported an epoch within the first `patience` epochs: the model
    barely trained before the validation loss stopped improving (often a penalty too strong to
    learn under). A run cut short by `trainer.max_epochs` is not flagged: its length was chosen."""
    return stopped_early and patience is not None and best_epoch is not None and best_epoch <= patience


def write_result(folder: Path, result: Record) -> None:
    """Stamps `finished_at` (UTC, ISO 8601) and writes result.json atomically: the report keeps
    the newest of several runs of one configuration and seed by it."""
    from datetime import datetime, timezone

    result["finished_at"] = datetime.now(timezone.utc).isoformat()
    write_json_atomic(Path(folder) / RESULT_FILE, result)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over `path`.

    A reader never sees a half-written file, even if the process is killed mid-write.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite_or_none(payload), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from collaborators
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MetricsWriter:
    """Appends one row per epoch to metrics.csv, flushed so a killed run keeps its history.

    A row that cannot be written (a full disk) does not stop training: `error` keeps the
    OSError, later rows are not attempted, and the caller rewrites the file from its history.
    """

    def __init__(self, folder: Path, task: str, history: list[dict[str, float]] = ()) -> None:
        """Starts metrics.csv afresh with the rows of `history` (a resumed run's epochs so far)."""
        m = metric_name(task)
        self.columns = ["epoch", "train_loss", f"train_{m}", "val_loss", f"val_{m}", "lr", "seconds"]
        self.error: OSError | None = None
        self._file = open(Path(folder) / METRICS_FILE, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self._guard(lambda: (self._writer.writeheader(), self._writer.writerows(history), self._file.flush()))

    def _guard(self, write: Any) -> None:
        if self.error is not None:
            return
        try:
            write()
        except OSError as e:
            self.error = e

    def write(self, row: dict[str, float]) -> None:
        # str(float) round-trips: every digit is kept
        self._guard(lambda: (self._writer.writerow(row), self._file.flush()))

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as e:  # the buffered rest could not be written
            self.error = self.error or e

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
