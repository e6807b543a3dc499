"""What every part of the benchmark shares: the repository and its data roots, config
composition as `regbench run` composes it, the MNIST root, the CPU time other processes used
(CpuWatch), the matmul peak that measures the machine's speed, spreads of wall times and
device syncs.

The matmul peak (`matmul_peak`): torch.matmul of 2048x2048 float32, repeated, median of the
rates; the entry measures it before (a) and after (b) (the higher is the peak), and a shorter
probe of the same kind runs before every repeat of (a), (b) and (c), which shows whether the
machine's speed drifted (on a shared or virtual machine it does; rerun when the probes or the
repeats spread widely).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("REGBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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
    """Waits for the device's queued work (CUDA), so that a wall time covers it; nothing on the CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
