"""Records the numbers regbench gives for a fixed set of runs, or compares them with a record.

Usage:
    python scripts/golden.py record OUT.json      # before a refactor
    python scripts/golden.py compare OUT.json     # after it: every number must be equal

Each entry runs `regbench run` in a subprocess (`python -m regbench`, so that PYTHONPATH can
point at another checkout: `PYTHONPATH=/path/to/old/checkout python scripts/golden.py record
old.json`) into a temporary folder and keeps its result.json numbers and its metrics.csv rows
(minus the wall-clock seconds).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

E = "trainer.max_epochs=6"
RUNS: dict[str, list[str]] = {
    "default": [],
    "none": [E, "reg=none"],
    "l1": [E, "reg=l1", "reg.alpha=1e-3"],
    "l1_sgd_momentum": [E, "reg=l1", "reg.alpha=1e-3", "optim=sgd", "optim.lr=0.05", "optim.momentum=0.9"],
    "l1_subgradient": [E, "reg=l1", "reg.alpha=1e-3", "reg.l1_proximal=false"],
    "l2": [E, "reg=l2", "reg.alpha=1e-3"],
    "elasticnet": [E, "reg=elasticnet", "reg.alpha=1e-3"],
    "weight_decay_adam": [E, "reg=weight_decay"],
    "weight_decay_adamw": [E, "reg=weight_decay", "optim=adamw"],
    "weight_decay_sgd": [E, "reg=weight_decay", "optim=sgd", "optim.lr=0.05"],
    "dropout": [E, "reg=dropout"],
    "dropout_linear": [E, "reg=dropout", "model=linear"],
    "batchnorm": [E, "reg=batchnorm"],
    "label_smoothing": [E, "reg=label_smoothing"],
    "augment": [E, "reg=augment"],
    "cnn": ["trainer.max_epochs=3", "model=cnn"],
    "cnn_all": ["trainer.max_epochs=3", "model=cnn", "reg=[elasticnet,dropout,batchnorm,augment,label_smoothing]"],
    "regression_l1": [E, "dataset=diabetes", "reg=l1", "reg.alpha=1e-2", "model=linear", "optim.lr=0.01"],
    "regression_mlp_mix": [E, "dataset=diabetes", "reg=[l2,dropout,batchnorm]"],
    "breast_cancer_mix": [E, "dataset=breast_cancer", "reg=[elasticnet,weight_decay,dropout]"],
    "early_stop": ["trainer.max_epochs=200", "trainer.patience=3", "reg=l2", "dataset.train_size=200"],
    # the regularizers added after the first golden record (2026-12-07), each with its preset
    "mixup": [E, "reg=mixup"],
    "cutmix": [E, "reg=cutmix"],
    "cutout": [E, "reg=cutout"],
    "input_noise": [E, "reg=input_noise"],
    "ema": [E, "reg=ema"],
    "swa": ["trainer.max_epochs=8", "reg=swa"],
    "swa_bn_sgd": ["trainer.max_epochs=8", "reg=[swa,batchnorm]", "optim=sgd", "optim.lr=0.05", "reg.swa_lr=0.02"],
    "sam": [E, "reg=sam"],
    "asam_bn": [E, "reg=[asam,batchnorm,dropout]"],
    "drop_path": [E, "reg=drop_path", "model=resmlp", "model.width=64"],
    "shakedrop": [E, "reg=shakedrop", "model=resmlp", "model.width=64"],
    "resnet_mix": ["trainer.max_epochs=2", "model=resnet", "model.depth=8", "reg=[augment,cutout,mixup,drop_path]",
                   "dataset.train_size=300"],
}
# Interrupted (SIGINT once metrics.csv has this many rows) and resumed: the end is the uninterrupted run's.
RESUMED: dict[str, tuple[int, list[str]]] = {
    "resumed_dropout_augment": (3, ["trainer.max_epochs=8", "reg=[dropout,augment,l1]", "trainer.checkpoint_seconds=0"]),
    "resumed_mixup_ema": (3, ["trainer.max_epochs=8", "reg=[mixup,ema,batchnorm]", "trainer.checkpoint_seconds=0"]),
}
SWEEPS: dict[str, list[str]] = {
    "stacked": ["hydra/launcher=stacked", E, "reg=[elasticnet,dropout]", "reg.alpha=1e-4,1e-3", "reg.dropout=0.2,0.4",
                "seed=0,1"],
    "stacked_bn_sgd": ["hydra/launcher=stacked", E, "reg=[l1,batchnorm]", "reg.alpha=1e-4,1e-3", "optim=sgd",
                       "optim.lr=0.05", "optim.momentum=0.9"],
    "stacked_new": ["hydra/launcher=stacked", E, "reg=[mixup,swa,dropout]", "reg.mixup=0.2,0.4", "reg.dropout=0.1,0.3"],
    "stacked_sam": ["hydra/launcher=stacked", E, "reg=[sam,augment]", "reg.sam=0.02,0.05"],
}


def numbers(folder: Path) -> dict:
    result = json.loads((folder / "result.json").read_text())
    keep = {k: result.get(k) for k in ("status", "reg", "metrics", "gap", "best_epoch", "epochs_run", "stopped_early",
                                       "early_best", "sparsity", "n_params", "config_hash", "weights")}
    with open(folder / "metrics.csv", newline="") as f:
        keep["rows"] = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return keep


def collect() -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in RUNS.items():
            folder = Path(tmp) / name
            subprocess.run([sys.executable, "-m", "regbench", "run", *args, "device=cpu", f"hydra.run.dir={folder}"], check=True,
                           capture_output=True)
            out[name] = numbers(folder)
            print(name, out[name]["metrics"], flush=True)
        for name, (rows, args) in RESUMED.items():
            folder = Path(tmp) / name
            command = [sys.executable, "-m", "regbench", "run", *args, "device=cpu", f"hydra.run.dir={folder}"]
            interrupt_after(command, folder / "metrics.csv", rows)
            subprocess.run(command, check=True, capture_output=True)
            out[name] = numbers(folder)
            print(name, out[name]["metrics"], flush=True)
        for name, args in SWEEPS.items():
            folder = Path(tmp) / name
            subprocess.run([sys.executable, "-m", "regbench", "run", "-m", *args, "device=cpu", f"hydra.sweep.dir={folder}"], check=True,
                           capture_output=True)
            for job in sorted(p for p in folder.iterdir() if (p / "result.json").is_file()):
                out[f"{name}/{job.name}"] = numbers(job)
            print(name, flush=True)
    return out


def interrupt_after(command: list[str], metrics: Path, rows: int) -> None:
    """Starts `command` and sends it SIGINT (a Ctrl-C: it checkpoints and exits 130) once
    `metrics` has `rows` epochs."""
    import signal
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > rows:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    if proc.wait() != 130:
        raise SystemExit(f"{command}: not interrupted (exit {proc.returncode}); make the run longer")


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from diff(a.get(k), b.get(k), f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        yield f"{path}: {a!r} != {b!r}"


if __name__ == "__main__":
    mode, path = sys.argv[1], Path(sys.argv[2])
    now = collect()
    if mode == "record":
        path.write_text(json.dumps(now, indent=1))
    else:
        problems = list(diff(json.loads(path.read_text()), now))
        print("\n".join(problems[:50]) or "all equal", f"({len(problems)} differences)")
        sys.exit(1 if problems else 0)
