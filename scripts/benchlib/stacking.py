"""(c) a stacked sweep: `regbench run -m dataset=digits model=mlp reg=l2 reg.alpha=<8 strengths>`
(log-spaced from 1e-6 to 1e-2; 32 with --device cuda), every other option the default,
early stopping included.

The same jobs run in-process one after another (`runner.run` per job, as Hydra's basic
launcher calls it) and as one stack (`sweep.train`, as hydra/launcher=stacked calls it),
interleaved and repeated; reported: the sweep's wall time (data loading, every job's files),
the speed-up, and the largest difference between a job's stacked and lone metrics
(`bench_stacked`). Then stacks of 1, 2, 4, 8 and 16 jobs (32 too on CUDA) of 30 epochs
without early stopping against the same jobs one by one: how the speed-up grows with the
stack (`bench_stack_sizes`, `--skip c-sizes`); and the same sweep from the shell with each
launcher: fresh subprocesses, start-up, composition and the automatic sweep report included
(`cli_sweep`, `--skip cli-sweep`).
"""

from __future__ import annotations

import copy
import gc
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .common import CpuWatch, matmul_peak, spread, sync

# (c) the stacked sweep: one strength axis of an L2 penalty, the rest of the config the default
# (digits, MLP 64-256-128-10, Adam, early stopping with patience 10, at most 200 epochs).
WORKLOAD_C = ["dataset=digits", "model=mlp", "reg=l2"]
STACK_TARGETS = {"cpu": (8, 1.5), "cuda": (32, 5.0)}  # device -> (jobs, speed-up over the jobs one by one)


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
