"""CLI start-up: `regbench --help` and `regbench run --cfg job` (the console script on PATH, and
`python -m regbench` without any launcher shim), median wall time of several subprocess runs,
and which of torch, torchvision, pandas, sklearn each one imported (`cli_startup`); and a whole
`regbench run` on the embedded default, next to the `seconds` of its result.json, whose
difference from its epochs' `seconds` is the run's fixed cost (`cli_whole_run`).
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HEAVY = ("torch", "torchvision", "pandas", "sklearn")  # none of them may load for --help or run --cfg job


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
