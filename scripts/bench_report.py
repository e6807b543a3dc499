"""Benchmark: how long `regbench report` takes on many result files.

    python scripts/bench_report.py [--runs 10000] [--keep DIR]

Writes N result.json files shaped like a real sweep (labels x strengths x dropout x seeds,
with the full set of params a run records) into a temporary folder, then times, in this one
process, reading them, aggregating them (with the paired baseline tests) and writing
runs.csv/report.csv/report.md plus the printed table. The target is under 10 seconds for
10,000 files; the script prints the time and the ratio to that budget.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console


def fake_params(label: str, alpha: float, dropout: float, seed: int) -> dict:
    """Every key a real run's `params` holds (see result.json's table in docs/reference/output.md)."""
    ratio = {"l1": 1.0, "l2": 0.0, "elasticnet": 0.5, "none": 0.5}[label]
    return {
        "dataset.name": "digits", "dataset.root": "~/.cache/regbench/data", "dataset.download": True,
        "dataset.train_size": None, "dataset.val_fraction": 0.2, "dataset.test_fraction": 0.2,
        "dataset.label_noise": 0.0, "dataset.split_seed": seed, "dataset.n_samples": 1000,
        "dataset.n_features": 100, "dataset.n_informative": 10, "dataset.noise": 10.0,
        "dataset.generator_seed": 0, "dataset.hflip": False, "model.name": "mlp",
        "model.hidden_sizes": [256, 128], "model.activation": "relu", "model.channels": [32, 64],
        "reg.alpha": alpha, "reg.l1_ratio": ratio, "reg.l1_proximal": True, "reg.weight_decay": 0.0,
        "reg.dropout": dropout, "reg.batchnorm": False, "reg.label_smoothing": 0.0, "reg.augment": False,
        "optim.name": "adam", "optim.lr": 0.001, "optim.momentum": 0.0, "trainer.max_epochs": 200,
        "trainer.batch_size": 64, "trainer.eval_batch_size": 8192, "trainer.patience": 10,
        "trainer.min_delta": 0.0, "seed": seed, "device": "auto", "save_model": False,
    }


def generate(root: Path, n_runs: int) -> None:
    rng = random.Random(0)
    alphas = [10.0 ** e for e in range(-6, 0)]
    dropouts = [0.0, 0.1, 0.2, 0.3, 0.5]
    configs = [("none", 0.0, d) for d in dropouts] + [(l, a, d) for l in ("l1", "l2", "elasticnet") for a in alphas for d in dropouts]
    for i in range(n_runs):
        label, alpha, dropout = configs[i % len(configs)]
        seed = i // len(configs)
        train, val = 1.0 - rng.random() * 0.02, 0.95 - rng.random() * 0.05
        status = "ok" if rng.random() > 0.01 else rng.choice(["diverged", "failed"])
        folder = root / f"{i}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({
            "status": status, "error": "RuntimeError: synthetic" if status == "failed" else None,
            "task": "classification", "dataset": "digits", "model": "mlp",
            "reg": label + ("+dropout" if dropout else "") if label != "none" or not dropout else "dropout",
            "seed": seed, "params": fake_params(label, alpha, dropout, seed),
            "metrics": {"train_loss": 1 - train, "val_loss": 1 - val, "test_loss": 1 - val,
                        "train_acc": train, "val_acc": val, "test_acc": val - 0.01},
            "gap": {"acc": train - val, "loss": val - train}, "best_epoch": 30, "epochs_run": 40,
            "stopped_early": True, "sparsity": rng.random(), "n_params": 50826, "seconds": 5.0,
            "device": "cpu", "versions": {"regbench": "0.1.0", "torch": "2.14.1", "python": "3.11.7"},
        }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "sweep"
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(root, args.runs)
        print(f"generated {args.runs} result files in {time.perf_counter() - start:.1f}s")

        from regbench.reporting.report import build  # imported before timing: a fair CLI has paid this
        from regbench.reporting.report_format import render, write

        start = time.perf_counter()
        report = build([root])
        built = time.perf_counter()
        write(report, root, "md")
        render(report, Console(file=io.StringIO(), width=250))
        done = time.perf_counter()
    total = done - start
    print(f"read + aggregate: {built - start:.2f}s; write + render: {done - built:.2f}s")
    print(f"report of {len(report.runs)} runs in {len(report.table)} configurations: {total:.2f}s "
          f"({total / 10.0:.2f} of the 10 s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
