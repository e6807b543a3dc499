"""Run folders: reading their metrics.csv rows and result.json files, and writing a result.json
as the runner writes it."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file (metrics.csv, runs.csv...) as csv.DictReader reads it: strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics_rows(folder: Path) -> list[dict[str, str]]:
    """A run folder's metrics.csv rows as strings, without the wall-clock `seconds` column (what
    two runs that end bit for bit share)."""
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def metrics_floats(folder: Path) -> list[dict[str, float]]:
    """A run folder's metrics.csv rows, every column (seconds too) as a float."""
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def epochs_in(csv: Path) -> int:
    try:
        return max(0, len(csv.read_text().splitlines()) - 1)
    except OSError:
        return 0


def results_under(folder: Path) -> list[dict]:
    """Every result.json below `folder`, in the order of their paths."""
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("result.json"))]


# digits' splits with the default fractions (test 0.2, val 0.2): what its runs record in result.json
# (test_split_sizes_recorded_by_a_run_and_derived_from_its_config checks this against a real run)
DIGITS_SIZES = {"train": 1149, "val": 288, "test": 360}


def write_run(folder: Path, *, reg="none", alpha=0.0, seed=0, val=0.9, train=1.0, test=0.85, status="ok",
              dataset="digits", error=None, task="classification", extra=None, split_seed=None, sizes=DIGITS_SIZES,
              **fields) -> Path:
    """A result.json as the runner writes it (the fields the report reads); `fields` override top-level ones.
    `split_seed` None follows the seed (the default config: each seed re-splits); `sizes` None: no
    split_sizes recorded (a run of an older regbench)."""
    folder.mkdir(parents=True)
    m = "acc" if task == "classification" else "r2"
    params = {"dataset.name": dataset, "model.name": "mlp", "reg.alpha": alpha, "seed": seed,
              "dataset.split_seed": seed if split_seed is None else split_seed, "optim.lr": 0.001,
              "model.hidden_sizes": [8]}
    params.update(extra or {})
    result = {
        "status": status, "error": error, "task": task, "dataset": dataset, "model": "mlp", "reg": reg,
        "seed": seed, "params": params,
        "metrics": {f"train_{m}": train, f"val_{m}": val, f"test_{m}": test,
                    "train_loss": 1 - train, "val_loss": 1 - val, "test_loss": 1 - test},
        "gap": {m: train - val, "loss": val - train},
        "best_epoch": 5, "epochs_run": 15, "stopped_early": True, "sparsity": 0.0, "n_params": 10,
        "seconds": 1.0, "device": "cpu", "versions": {"regbench": "0.1.0", "torch": "x", "python": "3"},
        **({"split_sizes": sizes} if sizes else {}), **fields,
    }
    (folder / "result.json").write_text(json.dumps(result))
    return folder
