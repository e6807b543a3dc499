"""(f) a search from the shell, its trials stacked against one trial at a time (`--skip search`):
`regbench run -m dataset=digits model=mlp +search=elasticnet hydra.sweeper.n_trials=16` (--search-trials;
every other option the preset's and the config's: the digits MLP, early stopping, at most
--search-epochs epochs, the config's 200 by default), run

- with `hydra.sweeper.batch=8 hydra/launcher=stacked`: 8 trials asked at a time and trained as
  one stack;
- with `hydra.sweeper.batch=1 hydra/launcher=stacked`: one trial at a time (a stack of one),
  the reference of the target;
- with `hydra.sweeper.batch=1` and Hydra's basic launcher: one trial at a time as before the
  stacked launcher (`--skip search-basic` leaves it out).

Same sampler (the preset's TPE, seed 0), same budget, same trials: with TPE, batches of 8 and of
1 ask different trials once the sampler models (it learns between batches), so every command
sets `hydra.sweeper.sampler.n_startup_trials` to the number of trials, which makes every trial a
startup trial drawn by TPE's seeded random sampler in the same order; the benchmark reads every
run's study back (`optuna.db` in its sweep folder, `optuna.load_study`) and stops with an error
unless all of them hold exactly the same trials with the same parameters. It also reports the
largest difference between the trials' values (a stack's member against the same run alone).

Each command in a fresh subprocess and a fresh sweep folder, from its start to its end
(start-up, composition, the study's storage, every run's folder, the sweep report), interleaved
and repeated (--search-repeats); reported: wall times (medians), per trial, the ratios, and the
share of the cores other processes used during each command (on a shared machine a repeat far
slower than the others is a shared one: compare the quiet repeats).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .common import CpuWatch, spread

SEARCH = ["dataset=digits", "model=mlp", "+search=elasticnet"]
STUDY = "regbench_elasticnet"  # conf/search/elasticnet.yaml's hydra.sweeper.study_name
BATCH = 8  # the K
STACKED, ONE, BASIC = "stacked, 8 a batch", "stacked, 1 a batch", "basic launcher, 1 a batch"
VARIANTS = {
    STACKED: [f"hydra.sweeper.batch={BATCH}", "hydra/launcher=stacked"],
    ONE: ["hydra.sweeper.batch=1", "hydra/launcher=stacked"],
    BASIC: ["hydra.sweeper.batch=1"],
}
TARGET = 2.0  # issue 25: the stacked search at least 2x faster than one trial at a time, K = 8


def study_trials(sweep: Path) -> list[dict[str, Any]]:
    """The trials of the study in a sweep folder's optuna.db: number, state, parameters, value."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep.resolve() / 'optuna.db'}")
    return [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value}
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def same_trials_problem(studies: dict[str, list[dict[str, Any]]], trials: int) -> str | None:
    """Why the studies of the runs are not the same search (one line), or None: each must hold
    `trials` complete trials, and all of them the same parameters, trial for trial."""
    for name, study in studies.items():
        done = [t for t in study if t["state"] == "COMPLETE"]
        if len(study) != trials or len(done) != trials:
            states = sorted({t["state"] for t in study})
            return f"{name}: {len(study)} trials ({len(done)} complete, states {states}), expected {trials} complete"
    (first, ref), *others = studies.items()
    for name, study in others:
        for a, b in zip(ref, study):
            if a["params"] != b["params"]:
                return f"{name} asked other trials than {first}: trial {b['number']} {b['params']} vs {a['params']}"
    return None


def epochs_run(sweep: Path) -> int:
    """Epochs trained by every run of a sweep folder (each trial's result.json, any seeds)."""
    return sum(json.loads(p.read_text())["epochs_run"] for p in sweep.glob("**/result.json"))


def search_sweep(trials: int, epochs: int | None, repeats: int, device: str, basic: bool,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """The same search from the shell, 8 trials a batch stacked against one trial at a time
    (and the basic launcher, if `basic`), `repeats` times interleaved, each in a fresh
    subprocess and sweep folder; stops (sys.exit) unless every run's study holds the same trials."""
    exe = shutil.which("regbench")
    base = [exe] if exe else [sys.executable, "-m", "regbench"]
    # n_startup_trials = trials: every trial a startup trial, so that every batch size asks the same ones
    sweep = ["run", "-m", *SEARCH, f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.sampler.n_startup_trials={trials}",
             *([f"trainer.max_epochs={epochs}"] if epochs else []), f"device={device}"]
    variants = {v: o for v, o in VARIANTS.items() if basic or v != BASIC}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    shared: dict[str, list[float]] = {v: [] for v in variants}  # other processes' share of the cores, per command
    studies: dict[str, list[dict[str, Any]]] = {}
    epochs_done: dict[str, int] = {}
    watch = CpuWatch()
    with tempfile.TemporaryDirectory(prefix="regbench_search_") as cwd:
        for r in range(repeats):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for v in order:
                folder = f"sweep_{r}_{list(variants).index(v)}"
                cmd = [*base, *sweep, *variants[v], f"hydra.sweep.dir={folder}"]
                start, command_watch = time.perf_counter(), CpuWatch()
                p = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=3600)
                walls[v].append(time.perf_counter() - start)
                shared[v].append(command_watch.foreign()["other_cpu_share"])
                if p.returncode != 0 or f"sweep done: {trials} ok" not in p.stdout:
                    sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
                studies[f"{v}, repeat {r + 1}"] = study_trials(Path(cwd) / folder)
                epochs_done[v] = epochs_run(Path(cwd) / folder)
            log(f"  (f) search repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {walls[v][-1]:.1f} s" for v in variants))
    problem = same_trials_problem(studies, trials)
    if problem:
        sys.exit(f"bench: (f) the runs did not search the same trials, so their times do not compare: {problem}")
    values = list(studies.values())
    diff = max(abs(a["value"] - b["value"]) for other in values[1:] for a, b in zip(values[0], other))
    res: dict[str, Any] = {
        "command": "regbench " + " ".join(sweep), "trials": trials, "batch": BATCH, "repeats": repeats,
        "max_epochs": epochs, "variants": {v: " ".join(o) for v, o in variants.items()},
        "machine_sharing": watch.foreign(), "same_trials": True, "trial_value_max_abs_diff": diff,
        "epochs_run": epochs_done,
        "params": [t["params"] for t in values[0]],
    }
    for v in variants:
        res[v] = spread(walls[v])
        res[v]["per_trial_seconds"] = res[v]["wall_seconds"] / trials
        res[v]["other_cpu_share"] = shared[v]
    res["speedup"] = res[ONE]["wall_seconds"] / res[STACKED]["wall_seconds"]
    res["speedup_per_repeat"] = [a / b for a, b in zip(walls[ONE], walls[STACKED])]
    if BASIC in variants:
        res["speedup_vs_basic"] = res[BASIC]["wall_seconds"] / res[STACKED]["wall_seconds"]
    return res
