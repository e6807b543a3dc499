"""Peak memory of run (b): the peak resident set size (VmHWM) of a fresh subprocess that runs
`runner.run` on workload (b) for the same number of epochs, next to subprocesses that only
import (torch and regbench.engine.runner; then also torchvision, which loading MNIST imports),
and one that imports and loads the data (`regbench.data.datasets.load`), with the size of the
uint8 images for context.

Each subprocess is scripts/bench.py itself with the hidden `--child` option (`child_main`), so
that it imports what the entry imports and nothing more.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .common import REPO, compose_cfg
from .loops import COMMON, WORKLOAD_B, run_runner

ENTRY = REPO / "scripts" / "bench.py"  # run with --child in each subprocess


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


def child_main(mode: str, root: str, epochs: int, threads: int, train_size: str) -> None:
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
    """The peak RSS and time of each child mode (imports, torchvision, load, run), each in a fresh process."""
    res = {}
    for mode in ("imports", "torchvision", "load", "run"):
        cmd = [sys.executable, str(ENTRY), "--child", mode, root, str(epochs), str(threads), train_size]
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            sys.exit(f"bench: memory subprocess ({mode}) failed:\n{p.stderr[-3000:]}")
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
        log(f"  peak memory, {mode}: {res[mode]['peak_kib'] / 1024:.0f} MiB")
    return res
