"""Benchmark: regbench's runner against a tutorial-style loop and a minimal tensor-resident loop.

    python scripts/bench.py                 # the full benchmark (a few minutes on 2 CPU cores)
    python scripts/bench.py --quick         # smoke mode: few epochs, (b) on a 10% subsample; not for reporting
    python scripts/bench.py --json out.json # also write every number (and every repeat) as JSON

What it measures, in one process and one run (peak memory and CLI start-up in subprocesses):

1. **Training speed**, three ways on the same workload, interleaved (each repeat runs all
   three, the order rotating), reporting the median over repeats of epochs per second:
   - `runner`: regbench's real code path, `regbench.engine.runner.run(cfg, tmpdir)` on a config
     composed with Hydra's compose API exactly as `regbench run` composes it (`reg=l2`,
     `trainer.patience=null`, fixed `trainer.max_epochs`). Epochs/s come from the per-epoch
     `seconds` column of its metrics.csv (training + evaluation, no data loading or
     start-up). Its whole-run wall time is reported too, and for (a) the marginal wall-clock
     cost of an epoch, (wall(E epochs) - wall(1 epoch)) / (E - 1), which also counts what
     the runner does between epochs (metrics.csv row, progress bar, last.pt checkpoint).
   - `reference`: the loop of the PyTorch tutorials: `DataLoader(TensorDataset(x, y),
     batch_size, shuffle=True)` over float inputs (images standardised once, up front),
     `loss.item()` every step, and evaluation through DataLoaders with `.item()` per batch.
   - `minimal`: the practical floor of one sequential run: the tensors regbench's loader put
     on the device (images as uint8, standardised per batch), `torch.randperm` index
     batches, no host sync in the loop, one `.tolist()` per epoch. It draws its batches from
     the same seeded generator as the runner, so its metrics must equal the runner's
     bit for bit: the benchmark checks that, as proof that both do the same work.
   All three do the same work per epoch: the same model (`regbench.models.build_model`
   after the same seed, so the same initial weights), Adam with the config's lr (1e-3),
   cross-entropy plus the same L2 penalty term (`regbench.regularizers.elasticnet.elastic_net` on the
   weights with dim >= 2), the same batch size, then one eval-mode pass over the whole
   training and validation splits (loss and accuracy, chunks of trainer.eval_batch_size).
   Torch uses the thread count `regbench run` would use (`trainer.num_threads=auto`: the
   machine's cores), or `--threads`.

2. Workloads: (a) `digits` with the default MLP (64-256-128-10, batch 64; small and
   overhead-bound) and (b) MNIST with an MLP 784-512-512-10, batch 128, on the full
   48000-sample training split (compute-bound). MNIST is read by regbench's own loader from
   `dataset.root` when that root holds it, else the original .gz files are copied from
   ../shared/data/MNIST/raw (or $REGBENCH_SHARED_DATA) into a temporary root.

3. For (b), the achieved GFLOP/s of each loop: matrix-multiply FLOPs of an epoch divided by
   its time. Per Linear(in, out) and sample: forward 2*in*out; backward 2*2*in*out, except
   for the first layer, whose input needs no gradient (2*in*out: the weight gradient only);
   plus the forward passes of the evaluation of the training and validation splits.
   Elementwise work (bias, ReLU, loss, Adam) is not counted. It is printed beside the
   matrix-multiply peak measured in the same process (torch.matmul of 2048x2048 float32,
   repeated; measured before (a) and after (b), the higher is the peak). A shorter probe of
   the same kind before every repeat shows whether the machine's speed drifted (on a shared
   or virtual machine it does; rerun when the probes or the repeats spread widely).

4. (c) A stacked sweep: `regbench run -m dataset=digits model=mlp reg=l2 reg.alpha=<8 strengths>`
   (log-spaced from 1e-6 to 1e-2; 32 with --device cuda), every other option the default,
   early stopping included. The same jobs run in-process one after another (`runner.run` per
   job, as Hydra's basic launcher calls it) and as one stack (`sweep.train`, as
   hydra/launcher=stacked calls it), interleaved and repeated; reported: the sweep's wall
   time (data loading, every job's files), the speed-up, and the largest difference between
   a job's stacked and lone metrics. Then stacks of 1, 2, 4, 8 and 16 jobs (32 too on CUDA)
   of 30 epochs without early stopping against the same jobs one by one (how the speed-up
   grows with the stack), and the same sweep from the shell with each launcher (fresh
   subprocesses: start-up, composition and the automatic sweep report included).

(d) What each regularizer costs: for every row of REG_ROWS (each preset; SWA averaging from
   the first epoch), the runner's median epoch time with it over the same run without it (its
   baseline: reg=none, or batch norm alone for SWA's update_bn pass), on (a)'s and (b)'s MLPs,
   fixed epochs, no early stopping, rows and baselines interleaved and repeated. Targets on
   MNIST, where the arithmetic dominates: EMA and mixup at most 1.10x, SAM at most 2.3x (two
   forward-backward passes a step: near 2x by nature).

5. Peak memory of run (b): the peak resident set size (VmHWM) of a fresh subprocess
   that runs `runner.run` on workload (b) for the same number of epochs, next to
   subprocesses that only import (torch and regbench.engine.runner; then also torchvision, which
   loading MNIST imports), and one that imports and loads the data
   (`regbench.data.datasets.load`), with the size of the uint8 images for context.

6. CLI start-up: `regbench --help` and `regbench run --cfg job` (the console script on PATH,
   and `python -m regbench` without any launcher shim), median wall time of several
   subprocess runs, and which of torch, torchvision, pandas, sklearn each one imported; and
   a whole `regbench run` on the embedded default, next to the `seconds` of its result.json.

Targets (from the performance issue): runner within 10% of the minimal loop on both
workloads (runner/minimal >= 0.91 in epochs/s); the 8-job stacked sweep (c) at least 1.5x
faster than its jobs one by one on the CPU (32 jobs, 5x on CUDA); both commands under 1 s without importing
torch, torchvision, pandas or scikit-learn; images kept once, as uint8. The load averages
before and after are printed: rerun when another process shared the machine.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REGBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

WORKLOAD_A = ["dataset=digits", "model=mlp"]
WORKLOAD_B = ["dataset=mnist", "model=mlp", "model.hidden_sizes=[512,512]", "trainer.batch_size=128"]
COMMON = ["reg=l2", "trainer.patience=null"]
HEAVY = ("torch", "torchvision", "pandas", "sklearn")
VARIANTS = ("runner", "reference", "minimal")
# (c) the stacked sweep: one strength axis of an L2 penalty, the rest of the config the default
# (digits, MLP 64-256-128-10, Adam, early stopping with patience 10, at most 200 epochs).
WORKLOAD_C = ["dataset=digits", "model=mlp", "reg=l2"]
STACK_TARGETS = {"cpu": (8, 1.5), "cuda": (32, 5.0)}  # device -> (jobs, speed-up over the jobs one by one)
# (d) what each regularizer costs: (row, its overrides, the baseline's overrides), on the MLPs of (a) and (b).
# SWA starts averaging at once (reg.swa=0.01: S = 0) so that every timed epoch pays for it.
REG_ROWS = [
    ("l1 (proximal)", ["reg=l1"], []), ("l2", ["reg=l2"], []), ("weight_decay", ["reg=weight_decay"], []),
    ("dropout", ["reg=dropout"], []), ("augment", ["reg=augment"], []),
    ("batchnorm", ["reg=batchnorm"], []), ("label_smoothing", ["reg=label_smoothing"], []),
    ("mixup", ["reg=mixup"], []), ("cutmix", ["reg=cutmix"], []), ("cutout", ["reg=cutout"], []),
    ("input_noise", ["reg=input_noise"], []), ("ema", ["reg=ema"], []),
    ("swa", ["reg=swa", "reg.swa=0.01"], []),
    ("swa + batchnorm (update_bn)", ["reg=[swa,batchnorm]", "reg.swa=0.01"], ["reg=batchnorm"]),
    ("sam", ["reg=sam"], []), ("asam", ["reg=asam"], []),
    ("drop_path (resmlp)", ["model=resmlp", "reg=drop_path"], ["model=resmlp"]),
    ("shakedrop (resmlp)", ["model=resmlp", "reg=shakedrop"], ["model=resmlp"]),
]
# targets of (d) on (b), where the arithmetic dominates: (row, the most its epoch may cost relative to the baseline)
REG_TARGETS = [("ema", 1.10), ("mixup", 1.10), ("sam", 2.3)]


# --------------------------------------------------------------------------- config and data


def compose_cfg(overrides: list[str]) -> Any:
    """Composes conf/config.yaml with `overrides`, as `regbench run` does (see tests/conftest.py)."""
    from hydra import compose, initialize_config_dir

    from regbench.cli.app import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _has_mnist(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


def mnist_root(workdir: Path) -> tuple[str, str]:
    """The dataset.root for MNIST: the configured default when it holds MNIST, else a temporary
    root with the original .gz files copied from the shared data folder. Returns (root, where)."""
    default = Path(str(compose_cfg(["dataset=mnist"]).dataset.root)).expanduser()
    if _has_mnist(default):
        return str(default), f"{default} (the default root)"
    source = SHARED_DATA / "MNIST" / "raw"
    if not all((source / f"{f}.gz").is_file() for f in MNIST_FILES):
        sys.exit(f"bench: MNIST not found in {default} nor in {source} (set REGBENCH_SHARED_DATA)")
    raw = workdir / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        shutil.copy(source / f"{f}.gz", raw / f"{f}.gz")
    return str(workdir / "data"), f"{source} (copied into a temporary root)"


class CpuWatch:
    """CPU time the rest of the machine used while a block ran: /proc/stat's busy time minus
    this process's own (and its children's). Above a few percent of the wall time, another
    process shared the cores and the timings of that block are suspect."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float]:
        tick = os.sysconf("SC_CLK_TCK")
        busy = steal = 0.0
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            busy = (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / tick
            steal = fields[7] / tick if len(fields) > 7 else 0.0
        except (OSError, ValueError, IndexError):
            pass
        t = os.times()
        return busy, steal, t.user + t.system + t.children_user + t.children_system, time.perf_counter()

    def foreign(self) -> dict[str, float]:
        busy, steal, own, wall = self._sample()
        b0, s0, o0, w0 = self.start
        wall = max(wall - w0, 1e-9)
        other = max(0.0, (busy - b0) - (own - o0))
        return {"wall_s": wall, "other_cpu_s": other, "other_cpu_share": other / (wall * (os.cpu_count() or 1)),
                "steal_s": steal - s0}


def spread(seconds: list[float]) -> dict[str, Any]:
    """Median, range and every repeat of a list of wall times."""
    return {"wall_seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "repeats": seconds}


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- the three loops


def run_runner(cfg: Any, workdir: Path) -> dict[str, Any]:
    """regbench's real code path: runner.run into a fresh folder; per-epoch seconds from metrics.csv."""
    from rich.console import Console

    from regbench.engine.runner import run

    out = Path(tempfile.mkdtemp(dir=workdir, prefix="run_"))
    start = time.perf_counter()
    result = run(cfg, out, Console(file=io.StringIO()))
    wall = time.perf_counter() - start
    if result["status"] != "ok":
        sys.exit(f"bench: the runner's run ended {result['status']}: {result['error']}")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "epoch_seconds": [float(r["seconds"]) for r in rows],
        "wall": wall,
        "metrics": [[float(r[k]) for k in ("train_loss", "train_acc", "val_loss", "val_acc")] for r in rows],
    }


def _build(cfg: Any, data: Any, device: Any) -> tuple[Any, Any, list]:
    """The runner's model and optimizer for this seed: same initial weights."""
    import random

    import numpy as np
    import torch

    from regbench.models import build_model

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task).to(device)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    return model, optimizer, weights


def _n_used(n: int, batch: int) -> int:
    return n - 1 if n % batch == 1 and n > 1 else n  # the runner's rule (a batch of one is skipped)


def minimal_loop(cfg: Any, data: Any, device: Any, epochs: int) -> dict[str, Any]:
    """Tensors on the device, randperm index batches, no host sync inside the epoch."""
    import torch
    from torch.nn import functional as F

    from regbench.regularizers.elasticnet import elastic_net

    model, optimizer, weights = _build(cfg, data, device)
    alpha, l1_ratio = float(cfg.reg.alpha), float(cfg.reg.l1_ratio)
    batch, eval_batch = int(cfg.trainer.batch_size), int(cfg.trainer.eval_batch_size)
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    n_used = _n_used(n, batch)
    order = torch.Generator(device=device).manual_seed(int(cfg.seed))  # the runner's data-order stream
    splits = [(data.x_train, data.y_train), (data.x_val, data.y_val)]
    seconds, metrics = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=order, device=device)
        total = torch.zeros((), device=device)
        for s in range(0, n_used, batch):
            idx = perm[s : min(s + batch, n_used)]
            loss = F.cross_entropy(model(data.prepare(x[idx])), y[idx])
            total = total + loss.detach()
            loss = loss + elastic_net(weights, alpha, l1_ratio)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        scores = [total.double().reshape(1)]
        with torch.no_grad():
            for xs, ys in splits:
                loss_sum = torch.zeros((), device=device, dtype=torch.float64)
                hits = torch.zeros((), device=device, dtype=torch.float64)
                for s in range(0, xs.shape[0], eval_batch):
                    out, target = model(data.prepare(xs[s : s + eval_batch])), ys[s : s + eval_batch]
                    loss_sum += F.cross_entropy(out, target, reduction="sum")
                    hits += (out.argmax(dim=1) == target).sum()
                scores.append(torch.stack([loss_sum / xs.shape[0], hits / xs.shape[0]]))
        values = torch.cat(scores).tolist()  # the epoch's one host sync
        seconds.append(time.perf_counter() - start)
        metrics.append(values[1:])
    return {"epoch_seconds": seconds, "metrics": metrics}


def reference_loop(cfg: Any, data: Any, device: Any, epochs: int) -> dict[str, Any]:
    """The PyTorch tutorials' loop: DataLoader over a TensorDataset, `.item()` every step."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from regbench.regularizers.elasticnet import elastic_net

    model, optimizer, weights = _build(cfg, data, device)
    alpha, l1_ratio = float(cfg.reg.alpha), float(cfg.reg.l1_ratio)
    batch, eval_batch = int(cfg.trainer.batch_size), int(cfg.trainer.eval_batch_size)
    if data.x_train.shape[0] % batch == 1:
        raise ValueError("the reference loop keeps a trailing batch of one sample; the runner drops it")
    # As in the tutorials: float inputs, standardised once before training (not timed).
    with torch.no_grad():
        x_train, x_val = data.prepare(data.x_train), data.prepare(data.x_val)
    train_loader = DataLoader(TensorDataset(x_train, data.y_train), batch_size=batch, shuffle=True)
    eval_loaders = [DataLoader(TensorDataset(x_train, data.y_train), batch_size=eval_batch),
                    DataLoader(TensorDataset(x_val, data.y_val), batch_size=eval_batch)]
    seconds, metrics = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        running = 0.0
        for xb, yb in train_loader:
            loss = F.cross_entropy(model(xb), yb)
            running += loss.item()
            loss = loss + elastic_net(weights, alpha, l1_ratio)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        row = []
        with torch.no_grad():
            for loader in eval_loaders:
                loss_sum, correct, count = 0.0, 0, 0
                for xb, yb in loader:
                    out = model(xb)
                    loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
                    correct += (out.argmax(dim=1) == yb).sum().item()
                    count += len(yb)
                row += [loss_sum / count, correct / count]
        seconds.append(time.perf_counter() - start)
        metrics.append(row)
    return {"epoch_seconds": seconds, "metrics": metrics}


# --------------------------------------------------------------------------- measurements


def matmul_peak(device: Any, n: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a large float32 matrix multiply: the median of `repeats` timed products."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        torch.matmul(a, b)
    sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def mlp_flops(sizes: list[int], n_train_steps_samples: int, n_eval_samples: int) -> float:
    """Matmul FLOPs of one epoch of an MLP with layer widths `sizes` (input first)."""
    forward = sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
    backward = sum((1 if i == 0 else 2) * 2 * a * b for i, (a, b) in enumerate(zip(sizes, sizes[1:])))
    return n_train_steps_samples * (forward + backward) + n_eval_samples * forward


def bench_workload(name: str, cfg: Any, runner_cfg_1: Any | None, epochs: int, repeats: int,
                   workdir: Path, device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """Runs runner, reference and minimal `repeats` times each, interleaved, order rotating."""
    from regbench.data.datasets import load

    t = time.perf_counter()
    data = load(cfg.dataset, device)  # the loops' data, loaded once (the runner loads its own)
    load_seconds = time.perf_counter() - t
    fns = {
        "runner": lambda: run_runner(cfg, workdir),
        "reference": lambda: reference_loop(cfg, data, device, epochs),
        "minimal": lambda: minimal_loop(cfg, data, device, epochs),
    }
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    runner_1_walls: list[float] = []
    watch = CpuWatch()
    probes: list[float] = []
    for r in range(repeats):
        probes.append(matmul_peak(device, n=1024, repeats=5))  # the machine's speed right now
        order = VARIANTS[r % 3:] + VARIANTS[: r % 3]
        for v in order:
            gc.collect()
            out = fns[v]()
            out["epochs_per_s"] = len(out["epoch_seconds"]) / sum(out["epoch_seconds"])
            runs[v].append(out)
            if v == "runner" and runner_cfg_1 is not None:
                gc.collect()
                runner_1_walls.append(run_runner(runner_cfg_1, workdir)["wall"])
        log(f"  {name} repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {runs[v][-1]['epochs_per_s']:.3g} ep/s" for v in VARIANTS))
    res: dict[str, Any] = {
        "machine_sharing": watch.foreign(),
        "speed_probe_gflops": probes,
        "epochs": epochs,
        "repeats": repeats,
        "n_train": int(data.x_train.shape[0]),
        "n_val": int(data.x_val.shape[0]),
        "n_test": int(data.x_test.shape[0]),
        "data_load_seconds": load_seconds,
        "image_bytes_uint8": sum(t.numel() * t.element_size() for t in (data.x_train, data.x_val, data.x_test)) if data.is_image else None,
        "x_dtype": str(data.x_train.dtype),
    }
    for v in VARIANTS:
        rates = [o["epochs_per_s"] for o in runs[v]]
        res[v] = {"epochs_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": rates,
                  "final_val_loss": runs[v][-1]["metrics"][-1][2], "final_val_acc": runs[v][-1]["metrics"][-1][3]}
    walls = [o["wall"] for o in runs["runner"]]
    res["runner"]["wall_seconds"] = statistics.median(walls)
    res["runner"]["wall_minus_epochs_seconds"] = statistics.median(o["wall"] - sum(o["epoch_seconds"]) for o in runs["runner"])
    if runner_1_walls:
        marginal = [(o["wall"] - w1) / (epochs - 1) for o, w1 in zip(runs["runner"], runner_1_walls)]
        res["runner"]["wall_1_epoch_seconds"] = statistics.median(runner_1_walls)
        res["runner"]["marginal_wall_epochs_per_s"] = 1.0 / statistics.median(marginal)
    # Same seed, same batches, same ops: the minimal loop must reproduce the runner's metrics.
    diffs = [abs(a - b) for m, r_ in zip(runs["minimal"], runs["runner"])
             for ma, ra in zip(m["metrics"], r_["metrics"]) for a, b in zip(ma, ra)]
    res["minimal_equals_runner_max_abs_diff"] = max(diffs) if diffs else None
    for v in ("runner", "reference"):
        res[f"{v}/minimal"] = res[v]["epochs_per_s"] / res["minimal"]["epochs_per_s"]
        res[f"{v}/minimal_per_repeat"] = [a["epochs_per_s"] / b["epochs_per_s"] for a, b in zip(runs[v], runs["minimal"])]
    if runner_1_walls:
        res["runner_marginal_wall/minimal"] = res["runner"]["marginal_wall_epochs_per_s"] / res["minimal"]["epochs_per_s"]
    return res


def stack_alphas(n: int) -> list[float]:
    """n strengths, log-spaced from 1e-6 to 1e-2 (three significant digits, as a user would type them)."""
    if n == 1:
        return [1e-4]
    return [float(f"{10 ** (-6 + 4 * i / (n - 1)):.3g}") for i in range(n)]


def _sweep_summary(results: list[dict[str, Any]]) -> list[list[Any]]:
    keys = ("val_loss", "val_acc", "test_acc")
    return [[r["status"], r["epochs_run"], *(r["metrics"][k] for k in keys)] for r in results]


def warm_up_stacking(cfgs: list[Any], workdir: Path) -> None:
    """Untimed: a short lone run and a short stack, so that no timing pays first-call costs
    (importing torch._dynamo with the first torch optimizer, about 1 s; the first kernels)."""
    from omegaconf import open_dict
    from rich.console import Console

    from regbench.engine import sweep as stacking
    from regbench.engine.runner import run

    short = []
    for c in cfgs[:2]:
        c = copy.deepcopy(c)
        with open_dict(c):
            c.trainer.max_epochs = 2
        short.append(c)
    base = Path(tempfile.mkdtemp(dir=workdir, prefix="warm_"))
    quiet = Console(file=io.StringIO())
    run(short[0], base / "lone", quiet)
    stacking.train([(c, base / str(i)) for i, c in enumerate(short)], quiet)
    shutil.rmtree(base, ignore_errors=True)


def bench_stacked(cfgs: list[Any], repeats: int, workdir: Path, device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """The same jobs, in-process, as regbench runs them: one after another (`runner.run` per job,
    which is what the basic launcher calls) and as one stack (`sweep.train`, what
    hydra/launcher=stacked calls); interleaved, the order alternating. Wall time of the whole
    sweep, data loading, early stopping and every job's files included."""
    from rich.console import Console

    from regbench.engine import sweep as stacking
    from regbench.engine.runner import run

    quiet = Console(file=io.StringIO())

    def sequential() -> list[dict[str, Any]]:
        base = Path(tempfile.mkdtemp(dir=workdir, prefix="seq_"))
        out = [run(c, base / str(i), quiet) for i, c in enumerate(cfgs)]
        shutil.rmtree(base, ignore_errors=True)
        return out

    def stacked() -> list[dict[str, Any]]:
        base = Path(tempfile.mkdtemp(dir=workdir, prefix="stack_"))
        out = stacking.train([(c, base / str(i)) for i, c in enumerate(cfgs)], quiet)
        shutil.rmtree(base, ignore_errors=True)
        return out

    fns = {"sequential": sequential, "stacked": stacked}
    walls: dict[str, list[float]] = {v: [] for v in fns}
    results: dict[str, list[dict[str, Any]]] = {}
    watch = CpuWatch()
    probes: list[float] = []
    for r in range(repeats):
        probes.append(matmul_peak(device, n=1024, repeats=5))
        for v in (("sequential", "stacked") if r % 2 == 0 else ("stacked", "sequential")):
            gc.collect()
            sync(device)
            start = time.perf_counter()
            results[v] = fns[v]()
            sync(device)
            walls[v].append(time.perf_counter() - start)
        log(f"  (c) repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {walls[v][-1]:.2f} s" for v in fns))
    seq, stk = results["sequential"], results["stacked"]
    diffs = {k: max(abs(a["metrics"][k] - b["metrics"][k]) for a, b in zip(seq, stk) if a["status"] == b["status"] == "ok")
             for k in ("val_loss", "val_acc", "test_acc")}
    res: dict[str, Any] = {
        "machine_sharing": watch.foreign(),
        "speed_probe_gflops": probes,
        "jobs": len(cfgs),
        "repeats": repeats,
        "alphas": [float(c.reg.alpha) for c in cfgs],
        "max_epochs": int(cfgs[0].trainer.max_epochs),
        "patience": cfgs[0].trainer.patience,
        "epochs_run": {v: [r["epochs_run"] for r in results[v]] for v in fns},
        "summary": {v: _sweep_summary(results[v]) for v in fns},
        "stacked_vs_sequential_max_abs_diff": diffs,
        "same_epochs_run": [r["epochs_run"] for r in seq] == [r["epochs_run"] for r in stk],
    }
    for v in fns:
        res[v] = spread(walls[v])
    res["speedup"] = res["sequential"]["wall_seconds"] / res["stacked"]["wall_seconds"]
    res["speedup_per_repeat"] = [a / b for a, b in zip(walls["sequential"], walls["stacked"])]
    return res


def bench_stack_sizes(cfgs_by_size: dict[int, list[Any]], repeats: int, workdir: Path, device: Any,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """How the speed-up grows with the stack: k jobs of a fixed number of epochs (no early
    stopping), one by one and as one stack, for each k; interleaved, medians of wall times."""
    from rich.console import Console

    from regbench.engine import sweep as stacking
    from regbench.engine.runner import run

    quiet = Console(file=io.StringIO())
    rows: dict[int, dict[str, list[float]]] = {k: {"lone": [], "stacked": []} for k in cfgs_by_size}
    for r in range(repeats):
        for k, cfgs in cfgs_by_size.items():
            base = Path(tempfile.mkdtemp(dir=workdir, prefix=f"sizes{k}_"))
            for v in (("lone", "stacked") if r % 2 == 0 else ("stacked", "lone")):
                gc.collect()
                sync(device)
                start = time.perf_counter()
                if v == "lone":
                    for i, c in enumerate(cfgs):
                        run(c, base / f"lone{i}", quiet)
                else:
                    stacking.train([(c, base / f"stacked{i}") for i, c in enumerate(cfgs)], quiet)
                sync(device)
                rows[k][v].append(time.perf_counter() - start)
            shutil.rmtree(base, ignore_errors=True)
        log(f"  (c) stack sizes, repeat {r + 1}/{repeats}: " + ", ".join(
            f"{k}: {rows[k]['lone'][-1] / rows[k]['stacked'][-1]:.2f}x" for k in rows))
    first = next(iter(cfgs_by_size.values()))[0]
    out: dict[str, Any] = {"epochs": int(first.trainer.max_epochs), "repeats": repeats, "sizes": {}}
    for k, walls in rows.items():
        lone, stacked = statistics.median(walls["lone"]), statistics.median(walls["stacked"])
        out["sizes"][k] = {"lone_seconds": lone, "stacked_seconds": stacked, "speedup": lone / stacked}
    return out


def bench_regularizers(workloads: dict[str, list[str]], rows: list[tuple[str, list[str], list[str]]], epochs: dict[str, int],
                       repeats: int, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """(d) Each regularizer's epoch time relative to its baseline's, per workload: runner.run with
    fixed epochs and no early stopping, the rows and their baselines interleaved (the order
    rotating each repeat); the median per-epoch seconds of each run, then the median over repeats."""
    out: dict[str, Any] = {"epochs": epochs, "repeats": repeats, "workloads": {}}
    watch = CpuWatch()
    for name, base in workloads.items():
        variants = {tuple(b) for _, _, b in rows} | {None}
        configs: dict[Any, Any] = {}
        for label, over, b in rows:
            configs[label] = compose_cfg([*base, *over, "trainer.patience=null", f"trainer.max_epochs={epochs[name]}"])
        for b in variants - {None}:
            configs[("baseline", b)] = compose_cfg([*base, *b, "trainer.patience=null", f"trainer.max_epochs={epochs[name]}"])
        seconds: dict[Any, list[float]] = {key: [] for key in configs}
        keys = list(configs)
        for r in range(repeats):
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:
                gc.collect()
                seconds[key].append(statistics.median(run_runner(configs[key], workdir)["epoch_seconds"]))
        table = {}
        for label, _, b in rows:
            mine, theirs = statistics.median(seconds[label]), statistics.median(seconds[("baseline", tuple(b))])
            table[label] = {"epoch_seconds": mine, "baseline_epoch_seconds": theirs, "ratio": mine / theirs,
                            "baseline": " ".join(b) or "reg=none"}
        out["workloads"][name] = table
        log(f"(d) {name}: " + ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in table.items()))
    out["machine_sharing"] = watch.foreign()
    return out


def cli_sweep(alphas: list[float], extra: list[str], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """What a user feels: `regbench run -m reg=l2 reg.alpha=<alphas>` from the shell, with the
    basic launcher and with hydra/launcher=stacked, each in a fresh subprocess (start-up,
    composition, every job's folder and the automatic sweep report included); interleaved."""
    exe = shutil.which("regbench")
    base = [exe] if exe else [sys.executable, "-m", "regbench"]
    sweep = ["run", "-m", *WORKLOAD_C, "reg.alpha=" + ",".join(repr(a) for a in alphas), *extra]
    variants = {"basic launcher": [], "hydra/launcher=stacked": ["hydra/launcher=stacked"]}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as cwd:
        for r in range(repeats):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for v in order:
                cmd = [*base, *sweep, *variants[v], f"hydra.sweep.dir=sweep_{r}_{len(walls[v])}_{v[:5]}"]
                start = time.perf_counter()
                p = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=1800)
                walls[v].append(time.perf_counter() - start)
                if p.returncode != 0:
                    sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            log(f"  CLI sweep repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {walls[v][-1]:.1f} s" for v in variants))
    res: dict[str, Any] = {"command": "regbench " + " ".join(sweep), "repeats": repeats}
    for v in variants:
        res[v] = spread(walls[v])
    res["speedup"] = res["basic launcher"]["wall_seconds"] / res["hydra/launcher=stacked"]["wall_seconds"]
    return res


def _peak_rss_kib() -> int:
    """This process's peak resident set size in KiB: VmHWM, which (unlike ru_maxrss, which
    Linux carries over from the parent through fork and exec) counts this program only."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child_main(mode: str, root: str, epochs: int, threads: int, train_size: str) -> None:
    """Subprocess for peak memory: prints JSON with the peak RSS after imports and at the end."""
    import torch

    import regbench.engine.runner  # noqa: F401  (everything a run imports)

    torch.set_num_threads(threads)
    overrides = ["device=cpu", *WORKLOAD_B, *COMMON, f"trainer.max_epochs={epochs}", f"dataset.root={root}"]
    if train_size != "none":
        overrides.append(f"dataset.train_size={train_size}")
    cfg = compose_cfg(overrides)
    base = _peak_rss_kib()
    start = time.perf_counter()
    if mode == "torchvision":
        import torchvision.datasets  # noqa: F401  (what loading MNIST imports before reading a byte)
    elif mode == "load":
        from regbench.data.datasets import load

        load(cfg.dataset, torch.device("cpu"))
    elif mode == "run":
        with tempfile.TemporaryDirectory() as tmp:
            run_runner(cfg, Path(tmp))
    seconds = time.perf_counter() - start
    peak = _peak_rss_kib()
    print(json.dumps({"mode": mode, "after_imports_kib": base, "peak_kib": peak, "seconds": seconds}))


def peak_memory(root: str, epochs: int, threads: int, train_size: str, log: Callable[[str], None]) -> dict[str, Any]:
    res = {}
    for mode in ("imports", "torchvision", "load", "run"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, root, str(epochs), str(threads), train_size]
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            sys.exit(f"bench: memory subprocess ({mode}) failed:\n{p.stderr[-3000:]}")
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
        log(f"  peak memory, {mode}: {res[mode]['peak_kib'] / 1024:.0f} MiB")
    return res


def cli_startup(n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Median wall time of CLI commands in subprocesses, and the heavy modules each imported."""
    script = shutil.which("regbench")
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write('BENCH_MODULES ' + ','.join(m for m in %r if m in sys.modules) + '\\n'))\n"
             "from regbench.cli.main import main\n"
             "sys.argv = ['regbench', *sys.argv[1:]]\n"
             "sys.exit(main())\n") % (HEAVY,)
    commands = {}
    for args in (["--help"], ["run", "--cfg", "job"]):
        label = "regbench " + " ".join(args)
        if script:
            commands[f"{label}  [{script}]"] = [script, *args]
        commands[f"{label}  [python -m regbench]"] = [sys.executable, "-m", "regbench", *args]
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cwd:
        for label, cmd in commands.items():
            times = []
            for _ in range(n):
                start = time.perf_counter()
                p = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=120)
                times.append(time.perf_counter() - start)
                if p.returncode != 0:
                    sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
            res[label] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
        for args in (["--help"], ["run", "--cfg", "job"]):
            p = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=120)
            line = next((ln for ln in p.stderr.splitlines() if ln.startswith("BENCH_MODULES")), "BENCH_MODULES ?")
            mods = line.split(" ", 1)[1] if " " in line else ""
            res["imports: regbench " + " ".join(args)] = [m for m in mods.split(",") if m]
    log("  CLI start-up measured")
    return res


def cli_whole_run(n: int, device_name: str, log: Callable[[str], None]) -> dict[str, Any]:
    """`regbench run` on the embedded default (digits), as a new user types it: median wall time
    of `n` subprocess runs, next to the `seconds` its result.json reports (data loading,
    training, evaluation, files), so that the rest is the command's start-up and exit."""
    script = shutil.which("regbench")
    cmd = [script] if script else [sys.executable, "-m", "regbench"]
    walls, inside, fixed = [], [], []
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(n):
            start = time.perf_counter()
            p = subprocess.run([*cmd, "run", f"device={device_name}", f"hydra.run.dir=run{i}"], cwd=cwd, check=False,
                               capture_output=True, text=True, timeout=600)
            walls.append(time.perf_counter() - start)
            if p.returncode != 0:
                sys.exit(f"bench: regbench run failed:\n{p.stderr[-2000:]}")
            inside.append(json.loads((Path(cwd) / f"run{i}" / "result.json").read_text())["seconds"])
            with open(Path(cwd) / f"run{i}" / "metrics.csv", newline="") as f:
                epochs = sum(float(row["seconds"]) for row in csv.DictReader(f))
            fixed.append(inside[-1] - epochs)  # data, model, optimizer state, files: what is not an epoch
    log("  whole default run measured")
    return {"command": f"regbench run device={device_name}", "runs": n, "median_s": statistics.median(walls),
            "min_s": min(walls), "max_s": max(walls), "result_seconds_median": statistics.median(inside),
            "fixed_seconds_median": statistics.median(fixed)}


# --------------------------------------------------------------------------- report


def fmt_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def sharing(m: dict[str, float]) -> str:
    flag = "  <- the machine was shared: rerun when it is idle" if m["other_cpu_share"] > 0.03 else ""
    return (f"{m['other_cpu_s']:.1f} CPU-s in {m['wall_s']:.0f} s ({100 * m['other_cpu_share']:.1f}% of the cores), "
            f"steal {m['steal_s']:.1f} s{flag}")


def regularizer_table(d: dict[str, Any]) -> list[str]:
    """(d)'s lines of the report: every row's ratio (and epoch time) per workload."""
    tables = d["workloads"]
    names = list(tables)
    rows = [[label, tables[names[0]][label]["baseline"],
             *[f"{tables[n][label]['ratio']:.2f}x ({tables[n][label]['epoch_seconds'] * 1000:.0f} ms)" for n in names]]
            for label in tables[names[0]]]
    return ["", "(d) what each regularizer costs: the runner's median epoch time (training + evaluation) with it over "
            f"its baseline's; epochs {d['epochs']}, {d['repeats']} interleaved repeats, medians",
            f"other processes during (d): {sharing(d['machine_sharing'])}",
            fmt_table(rows, ["regularizer", "baseline", *names])]


def conditions(w: dict[str, Any]) -> list[str]:
    """Two lines on how the machine behaved during one workload: other processes, speed drift."""
    pr = w["speed_probe_gflops"]
    drift = max(pr) / min(pr) - 1
    return [f"other processes during this workload: {sharing(w['machine_sharing'])}",
            "machine speed before each repeat (1024x1024 matmul, GFLOP/s): " + ", ".join(f"{x:.0f}" for x in pr)
            + (f"  <- varied by {100 * drift:.0f}%: timings are noisy, rerun" if drift > 0.1 else "")]


def report(res: dict[str, Any]) -> str:
    out = []
    env = res["environment"]
    out.append(f"regbench benchmark ({'QUICK SMOKE MODE: not for reporting' if res['quick'] else 'full'})")
    out.append(f"machine: {env['cpus']} CPUs ({env['processor']}), torch {env['torch']} on {env['device']}, "
               f"{env['threads']} threads, python {env['python']}")
    out.append(f"load average before / after: {env['loadavg_before']} / {env['loadavg_after']}; "
               f"total benchmark time {res['total_seconds']:.0f} s")
    out.append(f"other processes on this machine during the benchmark: {sharing(res['machine_sharing'])}")
    peak = max(res["matmul_peak_gflops"])
    out.append("matmul peak (2048x2048 float32, median of 20, before (a) / after (b)): "
               + " / ".join(f"{g:.1f}" for g in res["matmul_peak_gflops"]) + f" GFLOP/s -> peak {peak:.1f}")
    for key, title in (("a", "(a) digits, MLP 64-256-128-10, batch 64, reg=l2"),
                       ("b", "(b) MNIST, MLP 784-512-512-10, batch 128, reg=l2")):
        w = res.get(key)
        if w is None:
            continue
        out.append("")
        out.append(f"{title}: {w['n_train']} train / {w['n_val']} val samples, "
                   f"{w['epochs']} epochs x {w['repeats']} repeats, interleaved; medians over repeats")
        out += conditions(w)
        header = ["loop", "epochs/s", "min..max", "vs minimal", "final val loss", "val acc"]
        if key == "b":
            header += ["GFLOP/s", "% of peak"]
        rows = []
        for v in VARIANTS:
            r = w[v]
            row = [v, f"{r['epochs_per_s']:.3f}", f"{r['min']:.3f}..{r['max']:.3f}",
                   f"{r['epochs_per_s'] / w['minimal']['epochs_per_s']:.3f}",
                   f"{r['final_val_loss']:.4f}", f"{r['final_val_acc']:.4f}"]
            if key == "b":
                g = r["epochs_per_s"] * w["flops_per_epoch"] / 1e9
                row += [f"{g:.1f}", f"{100 * g / peak:.0f}%"]
            rows.append(row)
        out.append(fmt_table(rows, header))
        rr = w["runner"]
        for v in ("runner", "reference"):
            per = w[f"{v}/minimal_per_repeat"]
            out.append(f"{v}/minimal: {w[f'{v}/minimal']:.3f} (ratio of the medians); paired within each repeat: "
                       f"median {statistics.median(per):.3f}, per repeat " + ", ".join(f"{x:.3f}" for x in per))
        out.append(f"runner whole-run wall {rr['wall_seconds']:.2f} s for {w['epochs']} epochs, of which "
                   f"{rr['wall_minus_epochs_seconds']:.2f} s outside the epochs' `seconds` (data loading took "
                   f"{w['data_load_seconds']:.2f} s when loaded by the benchmark)")
        if "marginal_wall_epochs_per_s" in rr:
            out.append(f"runner marginal wall-clock epoch, (wall({w['epochs']}) - wall(1)) / {w['epochs'] - 1}: "
                       f"{rr['marginal_wall_epochs_per_s']:.3f} epochs/s = {w['runner_marginal_wall/minimal']:.3f} x minimal "
                       f"(includes metrics.csv, progress bar and the last.pt checkpoint of every epoch)")
        d = w["minimal_equals_runner_max_abs_diff"]
        out.append(f"minimal loop reproduces the runner's per-epoch metrics: "
                   f"{'yes, bit for bit' if d == 0 else f'max abs difference {d:.3g}'}")
        if key == "b":
            out.append(f"matmul work per epoch: {w['flops_per_epoch'] / 1e9:.1f} GFLOP "
                       f"(training steps on {w['n_train']} samples + eval of train and val); "
                       f"images stored as {w['x_dtype']}, {w['image_bytes_uint8'] / 2**20:.1f} MiB "
                       f"(float32 would be {4 * w['image_bytes_uint8'] / 2**20:.1f} MiB)")
    if "c" in res:
        c = res["c"]
        out.append("")
        out.append(f"(c) stacked sweep: {c['jobs']} jobs of `regbench run -m {' '.join(WORKLOAD_C)} reg.alpha=...` "
                   f"(alphas {', '.join(f'{a:g}' for a in c['alphas'])}; early stopping, patience {c['patience']}, "
                   f"at most {c['max_epochs']} epochs), in-process, {c['repeats']} repeats interleaved; medians")
        out += conditions(c)
        rows = [[v, f"{c[v]['wall_seconds']:.2f} s", f"{c[v]['min']:.2f}..{c[v]['max']:.2f}",
                 str(sum(c["epochs_run"][v])), f"{sum(c['epochs_run'][v]) / c[v]['wall_seconds']:.1f}"]
                for v in ("sequential", "stacked")]
        out.append(fmt_table(rows, ["jobs run", "sweep wall", "min..max", "epochs (all jobs)", "job-epochs/s"]))
        out.append(f"stacked speed-up: {c['speedup']:.2f}x (ratio of the medians); per repeat "
                   + ", ".join(f"{x:.2f}x" for x in c["speedup_per_repeat"]))
        d = c["stacked_vs_sequential_max_abs_diff"]
        out.append(f"stacked vs one by one, largest difference over the jobs: val_loss {d['val_loss']:.2g}, "
                   f"val_acc {d['val_acc']:.2g}, test_acc {d['test_acc']:.2g}; epochs run "
                   f"{'the same for every job' if c['same_epochs_run'] else 'differ: ' + str(c['epochs_run'])}")
    if "c_sizes" in res:
        cz = res["c_sizes"]
        out.append("")
        out.append(f"(c) by stack size: k jobs of {cz['epochs']} epochs each (no early stopping), one by one vs one stack; "
                   f"medians of {cz['repeats']} interleaved repeats")
        rows = [[str(k), f"{v['lone_seconds']:.2f} s", f"{v['stacked_seconds']:.2f} s", f"{v['speedup']:.2f}x"]
                for k, v in cz["sizes"].items()]
        out.append(fmt_table(rows, ["jobs", "one by one", "stacked", "speed-up"]))
    if "cli_sweep" in res:
        cs = res["cli_sweep"]
        out.append("")
        out.append(f"(c) from the shell, {cs['repeats']} repeat(s) each, interleaved (start-up, composition, folders and "
                   f"the sweep report included): {cs['command']}")
        rows = [[v, f"{cs[v]['wall_seconds']:.1f} s", f"{cs[v]['min']:.1f}..{cs[v]['max']:.1f}"]
                for v in ("basic launcher", "hydra/launcher=stacked")]
        out.append(fmt_table(rows, ["launcher", "wall", "min..max"]))
        out.append(f"stacked speed-up from the shell: {cs['speedup']:.2f}x")
    if "memory" in res:
        m = res["memory"]
        out.append("")
        out.append(f"peak memory (peak RSS, VmHWM, of fresh subprocesses; workload (b), {res['memory_epochs']} epoch(s)):")
        out.append(fmt_table([
            ["imports only (torch, regbench.engine.runner)", f"{m['imports']['peak_kib'] / 1024:.0f} MiB", "-"],
            ["+ import torchvision.datasets", f"{m['torchvision']['peak_kib'] / 1024:.0f} MiB", "-"],
            ["+ regbench.data.datasets.load(mnist)", f"{m['load']['peak_kib'] / 1024:.0f} MiB", f"{m['load']['seconds']:.2f} s"],
            ["+ runner.run (load, train, evaluate)", f"{m['run']['peak_kib'] / 1024:.0f} MiB", f"{m['run']['seconds']:.2f} s"],
        ], ["process", "peak RSS", "time"]))
        mib = lambda k: k / 1024
        line = (f"peak RSS of run (b): {mib(m['run']['peak_kib']):.0f} MiB, {mib(m['run']['peak_kib'] - m['imports']['peak_kib']):.0f} MiB "
                f"above the imports, of which importing torchvision {mib(m['torchvision']['peak_kib'] - m['imports']['peak_kib']):.0f} MiB; "
                f"loading alone peaks at {mib(m['load']['peak_kib']):.0f} MiB")
        if "b" in res:
            line += f"; the uint8 images are {res['b']['image_bytes_uint8'] / 2**20:.1f} MiB"
        out.append(line)
    if "cli" in res:
        out.append("")
        out.append(f"CLI start-up (subprocess wall time, {res['cli_repeats']} runs each, median; target < 1 s):")
        rows = [[k, f"{v['median_s']:.3f} s", f"{v['min_s']:.3f}..{v['max_s']:.3f}"]
                for k, v in res["cli"].items() if not k.startswith("imports")]
        out.append(fmt_table(rows, ["command", "median", "min..max"]))
        for k, v in res["cli"].items():
            if k.startswith("imports"):
                out.append(f"{k}: heavy modules imported: {', '.join(v) or 'none'}")
    if "cli_run" in res:
        r = res["cli_run"]
        out.append(f"`{r['command']}` (the embedded default, digits) from the shell, {r['runs']} runs: median "
                   f"{r['median_s']:.2f} s ({r['min_s']:.2f}..{r['max_s']:.2f}), of which {r['result_seconds_median']:.2f} s "
                   f"inside the run (result.json's `seconds`) and {r['median_s'] - r['result_seconds_median']:.2f} s "
                   f"start-up and exit; the run's fixed cost (its `seconds` minus its epochs' `seconds`: data, model, "
                   f"files) {r['fixed_seconds_median']:.3f} s (target < 0.3 s)")
    if "d" in res:
        out += regularizer_table(res["d"])
    out.append("")
    out.append("targets:")
    for line in res["targets"]:
        out.append(f"  {line}")
    return "\n".join(out)


def targets(res: dict[str, Any]) -> list[str]:
    lines = []
    for key in ("a", "b"):
        if key in res:
            ratio = res[key]["runner/minimal"]
            lines.append(f"[{'met' if ratio >= 1 / 1.1 else 'MISSED'}] ({key}) runner within 10% of the minimal loop: "
                         f"runner/minimal {ratio:.4f} in epochs/s (needs >= {1 / 1.1:.4f})")
            if "runner_marginal_wall/minimal" in res[key]:
                r2 = res[key]["runner_marginal_wall/minimal"]
                lines.append(f"[{'met' if r2 >= 1 / 1.1 else 'MISSED'}] ({key}) same, counting the runner's whole wall-clock "
                             f"epoch (checkpoint and CSV included): {r2:.4f}")
    if "cli" in res:
        for label, v in res["cli"].items():
            if label.startswith("imports"):
                lines.append(f"[{'met' if not v else 'MISSED'}] {label[len('imports: '):]} imports none of "
                             f"{', '.join(HEAVY)} (imported: {', '.join(v) or 'none'})")
            else:
                lines.append(f"[{'met' if v['median_s'] < 1.0 else 'MISSED'}] {label} under 1 s: {v['median_s']:.3f} s")
    if "c" in res:
        c = res["c"]
        need = STACK_TARGETS.get(res["environment"]["device"].split(":")[0])
        if need and c["jobs"] == need[0]:
            lines.append(f"[{'met' if c['speedup'] >= need[1] else 'MISSED'}] (c) a {c['jobs']}-job stacked sweep at least "
                         f"{need[1]}x faster than its jobs one by one: {c['speedup']:.2f}x")
        else:
            lines.append(f"[n/a] (c) {c['jobs']} jobs on {res['environment']['device']}: the targets are "
                         + ", ".join(f"{j} jobs {x}x on {d}" for d, (j, x) in STACK_TARGETS.items()) + f" ({c['speedup']:.2f}x)")
    if "cli_run" in res:
        fixed = res["cli_run"]["fixed_seconds_median"]
        lines.append(f"[{'met' if fixed < 0.3 else 'MISSED'}] the fixed cost inside a default run (result.json's seconds "
                     f"minus its epochs'): {fixed:.3f} s (needs < 0.3 s)")
    if "d" in res and "mnist" in res["d"]["workloads"]:
        for label, most in REG_TARGETS:
            ratio = res["d"]["workloads"]["mnist"][label]["ratio"]
            lines.append(f"[{'met' if ratio <= most else 'MISSED'}] (d) {label} costs at most {most}x a plain epoch on "
                         f"MNIST: {ratio:.2f}x")
    if "b" in res:
        lines.append(f"[{'met' if res['b']['x_dtype'] == 'torch.uint8' else 'MISSED'}] MNIST images stored as uint8 "
                     f"({res['b']['x_dtype']}) and standardised per batch (Data.prepare)")
    return lines


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke mode: few epochs and repeats, (b) on a 10%% subsample")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats-a", type=int, help="repeats of workload (a) (default 7; quick 2)")
    parser.add_argument("--epochs-a", type=int, help="epochs per repeat of (a) (default 20; quick 4)")
    parser.add_argument("--repeats-b", type=int, help="repeats of workload (b) (default 5; quick 1)")
    parser.add_argument("--epochs-b", type=int, help="epochs per repeat of (b) (default 2; quick 1)")
    parser.add_argument("--epochs-d", type=int, help="epochs per run of (d) on the digits (default 8; quick 3)")
    parser.add_argument("--repeats-d", type=int, help="repeats of (d) (default 3; quick 1)")
    parser.add_argument("--repeats-c", type=int, help="repeats of the stacked sweep (c) (default 3; quick 1)")
    parser.add_argument("--stack-jobs", type=int, help="jobs in the stacked sweep (c) (default 8 on the CPU, 32 on CUDA)")
    parser.add_argument("--cli-sweep-repeats", type=int, help="runs of the sweep (c) from the shell, per launcher (default 2; quick 1)")
    parser.add_argument("--cli-repeats", type=int, help="runs of each CLI command (default 7; quick 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the machine's cores, as regbench run's auto)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (CUDA syncs are in place but untested on a CPU-only machine)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "c-sizes", "cli-sweep", "memory", "cli", "d"], help="parts to leave out")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, root, epochs, threads, train_size = args.child
        _child_main(mode, root, int(epochs), int(threads), train_size)
        return 0

    q = args.quick
    repeats_a = args.repeats_a or (2 if q else 7)
    epochs_a = args.epochs_a or (4 if q else 20)
    repeats_b = args.repeats_b or (1 if q else 5)
    epochs_b = args.epochs_b or (1 if q else 2)
    cli_repeats = args.cli_repeats or (3 if q else 7)
    repeats_c = args.repeats_c or (1 if q else 3)
    cli_sweep_repeats = args.cli_sweep_repeats or (1 if q else 2)
    stack_jobs = args.stack_jobs or (32 if args.device.startswith("cuda") else 8)
    train_size_b = "0.1" if q else "none"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_total = time.perf_counter()
    watch = CpuWatch()
    loadavg_before = tuple(round(x, 2) for x in os.getloadavg())
    import torch

    from regbench.engine.device import resolve_device
    from regbench.jobs import threads_per_job

    threads = args.threads or threads_per_job("auto", {})
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    res: dict[str, Any] = {
        "quick": q,
        "environment": {
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": threads,
            "device": str(device), "loadavg_before": loadavg_before,
        },
        "matmul_peak_gflops": [],
    }
    with tempfile.TemporaryDirectory(prefix="regbench_bench_") as tmp:
        workdir = Path(tmp)
        res["matmul_peak_gflops"].append(matmul_peak(device))
        log(f"matmul peak: {res['matmul_peak_gflops'][-1]:.1f} GFLOP/s")
        dev = [f"device={args.device}"]
        if "a" not in args.skip:
            cfg_a = compose_cfg([*dev, *WORKLOAD_A, *COMMON, f"trainer.max_epochs={epochs_a}"])
            cfg_a1 = compose_cfg([*dev, *WORKLOAD_A, *COMMON, "trainer.max_epochs=1"]) if epochs_a > 1 else None
            # Warm-up, untimed: first calls into torch, sklearn's loader, the file system.
            bench_workload("warm-up", compose_cfg([*dev, *WORKLOAD_A, *COMMON, "trainer.max_epochs=2"]), None, 2, 1, workdir, device, lambda m: None)
            log("workload (a): digits")
            res["a"] = bench_workload("(a)", cfg_a, cfg_a1, epochs_a, repeats_a, workdir, device, log)
        root = None
        if "b" not in args.skip or "memory" not in args.skip:
            root, where = mnist_root(workdir)
            res["mnist_source"] = where
        if "b" not in args.skip:
            over = [*dev, *WORKLOAD_B, *COMMON, f"trainer.max_epochs={epochs_b}", f"dataset.root={root}"]
            if train_size_b != "none":
                over.append(f"dataset.train_size={train_size_b}")
            cfg_b = compose_cfg(over)
            log(f"workload (b): MNIST from {where}")
            res["b"] = bench_workload("(b)", cfg_b, None, epochs_b, repeats_b, workdir, device, log)
            sizes = [784, *cfg_b.model.hidden_sizes, 10]
            n_steps = _n_used(res["b"]["n_train"], int(cfg_b.trainer.batch_size))
            res["b"]["flops_per_epoch"] = mlp_flops(sizes, n_steps, res["b"]["n_train"] + res["b"]["n_val"])
            for v in VARIANTS:
                g = res["b"][v]["epochs_per_s"] * res["b"]["flops_per_epoch"] / 1e9
                res["b"][v]["gflops"] = g
        res["matmul_peak_gflops"].append(matmul_peak(device))
        log(f"matmul peak: {res['matmul_peak_gflops'][-1]:.1f} GFLOP/s")
        alphas = stack_alphas(stack_jobs)
        quick_c = ["trainer.max_epochs=10"] if q else []
        if "c" not in args.skip:
            log(f"workload (c): a stacked sweep of {stack_jobs} jobs")
            cfgs_c = [compose_cfg([*dev, *WORKLOAD_C, f"reg.alpha={a!r}", *quick_c]) for a in alphas]
            warm_up_stacking(cfgs_c, workdir)
            res["c"] = bench_stacked(cfgs_c, repeats_c, workdir, device, log)
        if "c-sizes" not in args.skip:
            sizes = [k for k in (1, 2, 4, 8, 16, 32) if k <= max(16, stack_jobs)]
            epochs_sizes = 5 if q else 30
            log(f"workload (c): stacks of {', '.join(map(str, sizes))} jobs, {epochs_sizes} epochs each")
            cfgs_sizes = {k: [compose_cfg([*dev, *WORKLOAD_C, f"reg.alpha={a!r}", "trainer.patience=null",
                                           f"trainer.max_epochs={epochs_sizes}"]) for a in stack_alphas(k)] for k in sizes}
            warm_up_stacking(cfgs_sizes[max(sizes)], workdir)
            res["c_sizes"] = bench_stack_sizes(cfgs_sizes, 1 if q else 2, workdir, device, log)
        if "d" not in args.skip:
            if root is None:
                root, where = mnist_root(workdir)
            workloads_d = {"digits": [*dev, *WORKLOAD_A],
                           "mnist": [*dev, *WORKLOAD_B, f"dataset.root={root}",
                                     *([f"dataset.train_size={train_size_b}"] if train_size_b != "none" else [])]}
            log("(d) what each regularizer costs")
            res["d"] = bench_regularizers(workloads_d, REG_ROWS, {"digits": args.epochs_d or (3 if q else 8),
                                                                  "mnist": 1 if q else 2},
                                          args.repeats_d or (1 if q else 3), workdir, log)
        if "cli-sweep" not in args.skip:
            res["cli_sweep"] = cli_sweep(alphas, [f"device={args.device}", *quick_c], cli_sweep_repeats, log)
        if "memory" not in args.skip:
            if args.device != "cpu":
                log("peak memory is measured on the CPU only")
            res["memory"] = peak_memory(root, epochs_b, threads, train_size_b, log)
            res["memory_epochs"] = epochs_b
        if "cli" not in args.skip:
            res["cli"] = cli_startup(cli_repeats, log)
            res["cli_repeats"] = cli_repeats
            res["cli_run"] = cli_whole_run(2 if q else 5, args.device, log)
    res["environment"]["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
    res["machine_sharing"] = watch.foreign()
    res["total_seconds"] = time.perf_counter() - t_total
    res["targets"] = targets(res)
    if args.json:  # first: a report that fails to print loses no measurement
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
