"""Benchmark: regbench's runner against a tutorial-style loop and a minimal tensor-resident loop.

    python scripts/bench.py                 # the full benchmark (a few minutes on 2 CPU cores)
    python scripts/bench.py --quick         # smoke mode: few epochs, (b) on a 10% subsample; not for reporting
    python scripts/bench.py --json out.json # also write every number (and every repeat) as JSON

What it measures, in one process and one run (peak memory and CLI start-up in subprocesses);
each part is a module of scripts/benchlib/, whose docstring says how (printed below by --help):

1. (a) and (b), benchlib/loops.py: **training speed** of regbench's runner, the PyTorch
   tutorials' loop and a minimal tensor-resident loop, on the same work, interleaved: (a)
   digits with the default MLP (overhead-bound), (b) MNIST with an MLP 784-512-512-10
   (compute-bound), with its GFLOP/s beside the matmul peak (benchlib/common.py).
2. (c), benchlib/stacking.py: a stacked sweep of 8 L2 strengths (32 on CUDA), one by one
   against one stack, in-process; stacks of 1 to 16 jobs (`--skip c-sizes`); the same
   sweep from the shell with each launcher (`--skip cli-sweep`).
3. (d), benchlib/regularizers.py: what each regularizer costs, its epoch time over its
   baseline's, a row per preset of every registered regularizer.
4. benchlib/memory.py: the peak memory of run (b) in fresh subprocesses (`--skip memory`).
5. benchlib/startup.py: the start-up of `regbench --help` and `regbench run --cfg job`, and a
   whole default `regbench run` from the shell (`--skip cli`).
6. (e), benchlib/cluster.py: a 32-job sweep on a SLURM cluster from the shell: in-process
   stacked, stacks as array elements, one element per job (`--skip cluster`; skipped, saying
   why, where no cluster answers: `sudo bash scripts/slurm_local.sh start` makes one).
7. (f), benchlib/search.py: an Optuna search of 16 trials on the digits MLP from the shell,
   8 trials asked at a time and trained as one stack against one trial at a time (and the
   basic launcher, `--skip search-basic`), the same trials checked in their studies (`--skip search`).

This file parses the options, runs the parts ((d) after (c), before the sweep from the
shell) and prints the report (benchlib/report.py).

Targets (from the performance issue): runner within 10% of the minimal loop on both
workloads (runner/minimal >= 0.91 in epochs/s); the 8-job stacked sweep (c) at least 1.5x
faster than its jobs one by one on the CPU (32 jobs, 5x on CUDA); on a SLURM cluster (e), stacks as
array elements at least 2x faster than one element per job and at most 10% slower than in-process; the search (f)
with 8 trials a stack at least 2x faster than one trial at a time; both commands under 1 s without importing
torch, torchvision, pandas or scikit-learn; images kept once, as uint8. The load averages
before and after are printed: rerun when another process shared the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Python puts this script's folder first on sys.path, so its parts import as `benchlib`.
from benchlib import cluster, common, loops, memory, regularizers, report as report_module, search, stacking, startup
from benchlib.common import CpuWatch, compose_cfg, matmul_peak, mnist_root
from benchlib.loops import COMMON, VARIANTS, WORKLOAD_A, WORKLOAD_B, bench_workload, mlp_flops, trained_samples
from benchlib.memory import child_main, peak_memory
from benchlib.regularizers import bench_regularizers, reg_rows, untimed
from benchlib.report import report, targets
from benchlib.stacking import WORKLOAD_C, bench_stack_sizes, bench_stacked, cli_sweep, stack_alphas, warm_up_stacking
from benchlib.startup import cli_startup, cli_whole_run

# --help: the overview above, then how each part measures (its module's docstring)
PARTS = "\n\n".join(f"benchlib/{m.__name__.split('.')[-1]}.py\n{m.__doc__}".rstrip()
                      for m in (loops, common, stacking, regularizers, memory, startup, cluster, search, report_module))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=PARTS, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--cluster-repeats", type=int, help="runs of the SLURM sweep (e), per variant (default 2; quick 1)")
    parser.add_argument("--cluster-epochs", type=int, default=30, help="epochs of each job of the SLURM sweep (e) (default 30)")
    parser.add_argument("--search-repeats", type=int, help="runs of the search (f), per variant (default 2; quick 1)")
    parser.add_argument("--search-trials", type=int, help="trials of the search (f) (default 16; quick 8)")
    parser.add_argument("--search-epochs", type=int, help="at most this many epochs per trial of (f), early stopping kept "
                        "(default: the config's 200; quick 3)")
    parser.add_argument("--cli-repeats", type=int, help="runs of each CLI command (default 7; quick 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the machine's cores, as regbench run's auto)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (CUDA syncs are in place but untested on a CPU-only machine)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "c-sizes", "cli-sweep", "memory", "cli", "d", "cluster", "search", "search-basic"], help="parts to leave out")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, root, epochs, threads, train_size = args.child
        child_main(mode, root, int(epochs), int(threads), train_size)
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
            n_steps = trained_samples(res["b"]["n_train"], int(cfg_b.trainer.batch_size))
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
            if untimed():
                log(f"  no row for {', '.join(untimed())}: no preset of theirs runs on the MLPs (see benchlib/regularizers.py)")
            res["d"] = bench_regularizers(workloads_d, reg_rows(), {"digits": args.epochs_d or (3 if q else 8),
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
        if "cluster" not in args.skip:
            log("(e) a 32-job sweep on SLURM from the shell")
            res["cluster"] = cluster.cluster_sweep(args.cluster_repeats or (1 if q else 2), log, args.cluster_epochs)
        if "search" not in args.skip:
            trials = args.search_trials or (8 if q else 16)
            log(f"(f) a search of {trials} trials from the shell, {search.BATCH} a stack against one at a time")
            res["search"] = search.search_sweep(trials, args.search_epochs or (3 if q else None),
                                                args.search_repeats or (1 if q else 2), args.device,
                                                "search-basic" not in args.skip, log)
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
