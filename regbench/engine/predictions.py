"""Saved predictions: a finished run's validation and test outputs in predictions.npz (the file's
format: regbench.predictions), so that `regbench report --ensemble / --temperature`
(regbench.reporting.ensemble) evaluates ensembles and recalibration without retraining.

`keep` is called once per run, after its final metrics (regbench.engine.runner for a lone run,
regbench.engine.sweep for each member of a stack, which holds its reported weights in its own
network by then): the same eval-mode forward passes as regbench.engine.loop.evaluate, on the
same weights, read back in one host sync. It is kept apart from `final_metrics` so that the
metrics' own read stays as it was; it costs one more forward pass over val and test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from regbench import predictions
from regbench.data.datasets import Data
from regbench.record import Record

AUTO_MAX_VALUES = 10_000_000
"""save_predictions=auto keeps a run's outputs while val and test hold at most this many output
values (rows x outputs): 40 MB in float32 before compression; true keeps them at any size."""


def wanted(setting: Any, data: Data) -> bool:
    """Whether `save_predictions` (auto, true or false) keeps this data's outputs."""
    if setting == "auto":
        return (len(data.y_val) + len(data.y_test)) * data.n_outputs <= AUTO_MAX_VALUES
    return bool(setting)


@torch.no_grad()
def outputs(model: nn.Module, data: Data, split: str, batch: int) -> torch.Tensor:
    """The eval-mode outputs (logits or predictions) of `model` on one split, on the device, in
    regbench.engine.loop.evaluate's batches."""
    model.eval()
    x = getattr(data, f"x_{split}")
    return torch.cat([model(data.prepare(x[start : start + batch])) for start in range(0, x.shape[0], batch)])


def keep(out_dir: Path, result: Record, model: nn.Module, data: Data, cfg: Any) -> str | None:
    """Writes `out_dir`/predictions.npz for a run whose status is ok and whose save_predictions
    asks for it; returns why the file could not be written (a full disk), or None."""
    if result.get("status") != "ok" or not wanted(cfg.get("save_predictions", "auto"), data):
        return None
    batch = cfg.trainer.eval_batch_size
    out = {s: outputs(model, data, s, batch).float() for s in predictions.SPLITS}
    targets = {s: getattr(data, f"y_{s}") for s in predictions.SPLITS}
    # one host sync: the outputs and the targets (labels and float32 targets are exact in float64)
    parts = [*out.values(), *targets.values()]
    read = torch.cat([t.reshape(-1).double() for t in parts]).cpu().numpy()
    arrays, at = [], 0
    for t in parts:
        arrays.append(read[at : at + t.numel()].reshape(tuple(t.shape)))
        at += t.numel()
    host_out = {s: a.astype(np.float32) for s, a in zip(out, arrays[: len(out)])}
    host_targets = {s: (a.astype(np.int64) if data.task == "classification" else a.astype(np.float32))
                    for s, a in zip(targets, arrays[len(out):])}
    bins = cfg.trainer.get("ece_bins", 15)
    dtype, largest = predictions.storage(data.task, host_out, host_targets, bins)
    meta = {"task": data.task, "dtype": dtype.name, "tolerance": predictions.TOLERANCE,
            "largest_change": largest if math.isfinite(largest) else None, "config_hash": result["config_hash"],
            "seed": result["seed"], "weights": result.get("weights"), "bins": bins}
    try:
        predictions.write(Path(out_dir) / predictions.PREDICTIONS_FILE, host_out, host_targets, meta)
    except OSError as e:
        return e.strerror or str(e)
    return None
