"""(a) and (b): regbench's runner against a tutorial-style loop and a minimal tensor-resident loop.

**Training speed**, three ways on the same workload, interleaved (each repeat runs all three,
the order rotating), reporting the median over repeats of epochs per second:

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

Workloads: (a) `digits` with the default MLP (64-256-128-10, batch 64; small and
overhead-bound) and (b) MNIST with an MLP 784-512-512-10, batch 128, on the full
48000-sample training split (compute-bound). MNIST is read by regbench's own loader from
`dataset.root` when that root holds it, else the original .gz files are copied from
../shared/data/MNIST/raw (or $REGBENCH_SHARED_DATA) into a temporary root.

For (b), the achieved GFLOP/s of each loop: matrix-multiply FLOPs of an epoch divided by
its time. Per Linear(in, out) and sample: forward 2*in*out; backward 2*2*in*out, except
for the first layer, whose input needs no gradient (2*in*out: the weight gradient only);
plus the forward passes of the evaluation of the training and validation splits.
Elementwise work (bias, ReLU, loss, Adam) is not counted. It is printed beside the
matrix-multiply peak measured in the same process (common.matmul_peak).
"""

from __future__ import annotations

import csv
import gc
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .common import CpuWatch, matmul_peak

WORKLOAD_A = ["dataset=digits", "model=mlp"]
WORKLOAD_B = ["dataset=mnist", "model=mlp", "model.hidden_sizes=[512,512]", "trainer.batch_size=128"]
COMMON = ["reg=l2", "trainer.patience=null"]
VARIANTS = ("runner", "reference", "minimal")


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


def trained_samples(n: int, batch: int) -> int:
    """The samples an epoch trains on, of `n` in batches of `batch`."""
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
    n_used = trained_samples(n, batch)
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
