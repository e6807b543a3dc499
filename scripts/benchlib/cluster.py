"""(e) a sweep on a SLURM cluster, from the shell (`--skip cluster`; needs a cluster that answers,
such as the one-node cluster of `bash scripts/slurm_local.sh start`, else skipped with the reason):
the same 32-job digits sweep (reg=l2, 8 strengths x 4 seeds, 30 epochs (--cluster-epochs) without early stopping,
so that every variant does the same work) run

- in-process, stacked (`hydra/launcher=stacked`): the reference;
- as stacks, one SLURM array element per stack (`hydra.launcher.executor=slurm`; each seed
  re-splits the data, so 4 stacks of 8), an element asking for one core
  (`hydra.launcher.slurm.cpus_per_task=1`) so that the node runs two at once;
- one SLURM array element per job (`hydra/launcher=slurm`, the preset on Hydra's submitit
  launcher), also one core each, two at once: what stacking removes is each element's
  start-up (a Python process, torch, the data) and the scheduler's cost per element.

Each command in a fresh subprocess, from its start to its end (composition, submission,
waiting, the sweep report), interleaved and repeated; reported: wall times and the two ratios.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from .common import spread
from .stacking import stack_alphas

SWEEP = ["dataset=digits", "model=mlp", "reg=l2", "seed=0,1,2,3", "trainer.patience=null", "device=cpu"]
EPOCHS = 30  # each job's (no early stopping): --cluster-epochs
VARIANTS = {
    "in-process stacked": ["hydra/launcher=stacked"],
    "stacks as SLURM elements": ["hydra/launcher=stacked", "hydra.launcher.executor=slurm",
                                 "hydra.launcher.slurm.cpus_per_task=1"],
    "one SLURM element per job": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"],
}
# Targets (issue 24): stacks as elements at least 2x faster than one element per job, at most 10% slower than in-process.
TARGETS = {"elements_vs_per_job": 2.0, "elements_vs_inprocess": 1.10}


def cluster_problem() -> str | None:
    """Why the cluster part cannot run here (one line), or None."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM commands on the PATH (start a one-node cluster: sudo bash scripts/slurm_local.sh start)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(("idle", "mixed", "allocated")) for s in states):
        return f"no SLURM node up (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    busy = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout.strip()
    if busy:
        return "the cluster is running other jobs: timings would not be this sweep's"
    return None


def cluster_sweep(repeats: int, log: Callable[[str], None], epochs: int = EPOCHS) -> dict[str, Any]:
    problem = cluster_problem()
    if problem:
        log(f"  (e) skipped: {problem}")
        return {"skipped": problem}
    exe = shutil.which("regbench")
    base = [exe] if exe else [sys.executable, "-m", "regbench"]
    sweep = ["run", "-m", *SWEEP, f"trainer.max_epochs={epochs}", "reg.alpha=" + ",".join(repr(a) for a in stack_alphas(8))]
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(dir=".") as cwd:  # on a disk the node sees: this machine's
        for r in range(repeats):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for v in order:
                cmd = [*base, *sweep, *VARIANTS[v], f"hydra.sweep.dir=sweep_{r}_{v.split()[0]}_{len(walls[v])}"]
                start = time.perf_counter()
                p = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=3600)
                walls[v].append(time.perf_counter() - start)
                if p.returncode != 0 or "sweep done: 32 ok" not in p.stdout:
                    sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            log(f"  (e) SLURM sweep repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {walls[v][-1]:.1f} s" for v in VARIANTS))
    res: dict[str, Any] = {"command": "regbench " + " ".join(sweep), "repeats": repeats,
                           "variants": {v: " ".join(o) for v, o in VARIANTS.items()}}
    for v in VARIANTS:
        res[v] = spread(walls[v])
    med = {v: res[v]["wall_seconds"] for v in VARIANTS}
    res["elements_vs_per_job"] = med["one SLURM element per job"] / med["stacks as SLURM elements"]
    res["elements_vs_inprocess"] = med["stacks as SLURM elements"] / med["in-process stacked"]
    return res
