"""predictions.npz: a run's validation and test outputs, kept so that ensembles and calibration
can be evaluated later without retraining (written by regbench.engine.predictions, read by
regbench.reporting.ensemble); and the metrics of such outputs, computed in numpy exactly as a
run computes its own (regbench.engine.loop.evaluate, regbench.engine.calibration).

The file (np.savez_compressed, readable with `np.load(path)`, no pickle):

- `val_outputs`, `test_outputs`: the network's raw outputs on each split, with the reported
  weights (the same as result.json's final metrics): logits (n, classes) for a classification,
  whose softmax is the class probabilities (logits, not probabilities, so that temperature
  scaling is exact and no small probability underflows), predictions (n, outputs) for a
  regression. float16 where exact enough (`storage`), float32 otherwise.
- `val_targets`, `test_targets`: the labels (int64) or targets (float32) as the run used them;
  the report ensembles only runs whose test targets are identical, element by element.
- `meta`: a JSON text: `format`, `task`, `dtype` (float16 or float32), `tolerance`,
  `largest_change` (the largest change float16 storage made to any metric), `config_hash`,
  `seed`, `weights` (result.json's), `bins` (trainer.ece_bins).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_FILE = "predictions.npz"
FORMAT = 1
TOLERANCE = 1e-4
"""float16 storage is kept only when it changes no metric of either split (loss, accuracy, ECE,
Brier score; MSE, R²) by more than TOLERANCE x max(1, |metric|); otherwise float32 (the
network's own precision: exact)."""
SPLITS = ("val", "test")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of `logits`, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def classification_scores(log_probs: np.ndarray, y: np.ndarray, bins: int) -> dict[str, float]:
    """loss (NLL), acc, ece (top-label, `bins` equal-width bins, the last one holding 1) and
    brier of a classifier's log-probabilities (n, classes) against labels `y`: the conventions of
    regbench.engine.calibration, so a run's own metrics come back from its saved logits."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    probs = np.exp(log_probs)
    predicted = log_probs.argmax(axis=1)
    top = probs[np.arange(n), predicted]
    hits = (predicted == y).astype(np.float64)
    which = np.clip(np.floor(top * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    confidence = np.bincount(which, weights=top, minlength=bins)
    hit_sums = np.bincount(which, weights=hits, minlength=bins)
    onehot = np.zeros_like(probs)
    onehot[np.arange(n), y] = 1.0
    return {
        "loss": float(-log_probs[np.arange(n), y].mean()),
        "acc": float(hits.mean()),
        "ece": float(np.abs(hit_sums - confidence).sum() / n),
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()),
        "bins": {"count": counts.tolist(), "confidence": confidence.tolist(), "hits": hit_sums.tolist()},
    }


def regression_scores(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """loss (MSE, summed over outputs, averaged over rows) and r2, as regbench.engine.loop.evaluate."""
    o, t = np.asarray(outputs, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if o.shape != t.shape:
        o = o.reshape(t.shape)
    sq = ((o - t) ** 2).sum()
    return {"loss": float(sq / len(t)), "r2": float(1.0 - sq / ((t - t.mean()) ** 2).sum())}


def scores(task: str, outputs: np.ndarray, y: np.ndarray, bins: int) -> dict[str, float]:
    """The metrics of one run's raw outputs (logits or predictions) on one split."""
    if task == "classification":
        return classification_scores(log_softmax(outputs), y, bins)
    return regression_scores(outputs, y)


def storage(task: str, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray],
            bins: int) -> tuple[np.dtype, float]:
    """The dtype to keep `outputs` (float32 arrays by split) in, and the largest change float16
    would make to a metric (relative to max(1, |metric|)): float16 when that is within TOLERANCE
    and every output is finite in float16, float32 otherwise."""
    largest = 0.0
    for split, o in outputs.items():
        with np.errstate(over="ignore"):  # beyond float16's range: inf, and float32 below
            half = o.astype(np.float16)
        if not np.isfinite(half).all() and np.isfinite(o).all():
            return np.dtype(np.float32), float("inf")
        exact, rounded = scores(task, o, targets[split], bins), scores(task, half.astype(np.float32), targets[split], bins)
        for k, v in exact.items():
            if k != "bins":
                change = abs(rounded[k] - v) / max(1.0, abs(v)) if np.isfinite(v) else 0.0
                largest = max(largest, change if np.isfinite(change) else float("inf"))
    return (np.dtype(np.float16) if largest <= TOLERANCE else np.dtype(np.float32)), largest


def write(path: Path, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Writes predictions.npz at `path`: compressed in memory, then written to a temporary file
    beside it (`.predictions.npz.<random>.tmp`, which regbench.engine.checkpoint.remove_temporaries
    clears after a kill) and renamed, so no half-written file is ever read.

    Raises:
        OSError: the file could not be written (nothing of it is left behind).
    """
    dtype = np.dtype(meta["dtype"])
    arrays = {f"{s}_outputs": outputs[s].astype(dtype) for s in outputs}
    arrays |= {f"{s}_targets": targets[s] for s in targets}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps({"format": FORMAT, **meta})), **arrays)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0o600 would make it the only private file of the folder
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read(path: Path) -> dict[str, Any]:
    """predictions.npz as {"meta": dict, "<split>_outputs": float32 array, "<split>_targets": array}.

    Raises:
        ValueError: the file is not a readable predictions file of a known format.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            loaded = {k: f[k] for k in f.files}
        meta = json.loads(str(loaded.pop("meta")))
    except Exception as e:  # truncated, not an npz, no meta
        raise ValueError(f"{path} is unreadable ({type(e).__name__})") from e
    if meta.get("format") != FORMAT or any(f"{s}_{k}" not in loaded for s in SPLITS for k in ("outputs", "targets")):
        raise ValueError(f"{path} is not a regbench predictions file of format {FORMAT}")
    return {"meta": meta, **{k: (v.astype(np.float32) if k.endswith("_outputs") else v) for k, v in loaded.items()}}
