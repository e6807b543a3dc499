"""The Hydra application behind `regbench run`: compose, hand to `runner.run`, report.

Importing this module registers the schema and the `regbench_run_id` resolver, which the
output folders in conf/config.yaml use.
"""

from __future__ import annotations

import copy
import json
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from regbench.engine import gcpause, interrupt
from regbench.cli.schema import check, config_dir, config_search_dirs, preset_conflicts, register


def _run_id() -> str:
    # Time for humans, pid and random bits so that two runs started in the same second on
    # one machine or on several sharing a file system never share a folder.
    return f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}{secrets.token_hex(2)}"


def _regularizers_help() -> str:
    from regbench.regularizers import knob_table

    return knob_table()


if not OmegaConf.has_resolver("regbench_run_id"):
    OmegaConf.register_new_resolver("regbench_run_id", _run_id, use_cache=True)
if not OmegaConf.has_resolver("regbench_regularizers"):  # the knobs' table of `regbench run --help`
    OmegaConf.register_new_resolver("regbench_regularizers", _regularizers_help)
register()


def threads_per_job(requested: Any, launcher: Any) -> int:
    """torch's thread count for one job: `requested`, or with auto the machine's cores divided
    by the jobs the launcher runs at once, so that jobs times threads never exceeds the cores."""
    if requested != "auto":
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if launcher.get("n_jobs") is not None:  # joblib: -1 means all cores, -2 all but one, ...
        n = int(launcher.n_jobs)
        return max(1, cores // (n if n > 0 else max(1, cores + 1 + n)))
    if launcher.get("cpus_per_task"):  # submitit (local or SLURM): the cores asked for each job
        return max(1, min(cores, int(launcher.cpus_per_task)))
    if "LocalLauncher" in str(launcher.get("_target_", "")):  # submitit_local starts every job at once
        return 1
    return cores


def finished_result(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """The folder's result.json if it holds status ok for this very config (on this very
    version of a user's data: regbench.results.identity), else None."""
    from regbench.results import RESULT_FILE, flatten, identity

    try:
        result = json.loads((out_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None
    if result.get("config_hash") != identity(flatten(OmegaConf.to_container(cfg, resolve=True)))[0]:
        return None
    return result


def rerun_notice(cfg: DictConfig, out_dir: Path, label: str) -> str | None:
    """The line saying that `out_dir` holds a finished result (ok or diverged) of this very
    configuration on another version of a user's data, which this run replaces; None otherwise.

    The run goes on in the same folder: rerunning a configuration into its folder asks for its
    result on the data as it is now, and its result.json is overwritten (regbench.results.other_data).
    """
    from regbench.results import RESULT_FILE, flatten, identity, other_data

    try:
        old = json.loads((out_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("status") not in ("ok", "diverged"):
        return None
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    what = other_data(old, params, identity(params)[1])
    if what is None:
        return None
    return f"[{label}] {out_dir} holds a result on {what}: running again (this run's result.json replaces it)"


def hydra_main() -> None:
    """`regbench run`: Hydra reads sys.argv, composes conf/ and runs `job` once or as a sweep.

    Hydra's decorator is applied here, when the command runs, not at import: `hydra.main`
    sets Hydra's version base for the whole process, and importing this module (the stacked
    launcher, tests and scripts do) must leave that to the app that runs.
    """
    hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(job)()


def job(cfg: DictConfig) -> Any:
    """Runs one job; returns its validation loss (the monitored value, for sweepers)."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.RUN:  # checked (and warned about) before Hydra made the folder: regbench.cli.callbacks;
        problems = preset_conflicts(hc.overrides.task) or check(cfg)  # again here, should the callbacks be off
        if problems:  # answered before torch is even imported
            print(f"regbench: error: {'; '.join(problems)}", file=sys.stderr)
            sys.exit(2)

    done = finished_result(cfg, out_dir)
    label = f"job {hc.job.num}" if hc.mode == RunMode.MULTIRUN else "run"
    if done is not None:  # resuming a sweep: this job already holds its result
        print(f"[{label}] already done in {out_dir} (status ok, same config): skipped")
        return monitored(done)
    notice = rerun_notice(cfg, out_dir, label)
    if notice:
        print(notice, flush=True)

    with gcpause.imports():
        import torch
        from rich.console import Console

        from regbench import UserInputError
        from regbench.console import one_line, result_summary, result_table, result_title
        from regbench.engine.folderlock import FolderBusy
        from regbench.engine.runner import run

    torch.set_num_threads(threads_per_job(cfg.trainer.num_threads, hc.launcher))
    console = Console()
    if cfg.search.seeds > 1:
        try:
            return trial(cfg, out_dir, console, f"job {hc.job.num}" if hc.mode == RunMode.MULTIRUN else "run")
        except KeyboardInterrupt as e:
            key, folder = ("hydra.run.dir", hc.run.dir) if hc.mode == RunMode.RUN else ("hydra.sweep.dir", hc.sweep.dir)
            raise interrupt.resumable(e, f"{key}={interrupt.hydra_value(str(folder))}") from None
        except UserInputError as e:  # found before any seed trained: nothing written
            return refused(e, out_dir, hc)
    try:
        result = run(cfg, out_dir, console, config_search_dirs())
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM: the command's last line says how to resume
        key, folder = ("hydra.run.dir", hc.run.dir) if hc.mode == RunMode.RUN else ("hydra.sweep.dir", hc.sweep.dir)
        raise interrupt.resumable(e, f"{key}={interrupt.hydra_value(str(folder))}") from None
    except FolderBusy as e:  # nothing written: the other process owns the folder
        if hc.mode == RunMode.MULTIRUN:
            print(f"[job {hc.job.num}] skipped: {e}")
            return None
        print(f"regbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except UserInputError as e:  # bad input found once the data was loaded or the model built: not a run
        return refused(e, out_dir, hc)
    unwritten = result.get("files_not_written") or {}
    lost = "; ".join(f"{name} ({why})" for name, why in unwritten.items())
    if hc.mode == RunMode.MULTIRUN:
        console.print(one_line(result, f"job {hc.job.num}"), highlight=False, markup=False, soft_wrap=True)
        if unwritten:
            print(f"regbench: error: [job {hc.job.num}] not written in {out_dir}: {lost}", file=sys.stderr)
    elif unwritten:  # what was computed is printed, then which files are missing
        console.print(result_title(result), highlight=False, soft_wrap=True)
        if result["status"] != "failed":
            console.print(result_table(result))
            console.print(result_summary(result), highlight=False, soft_wrap=True)
        print(f"regbench: error: not written in {out_dir}: {lost}", file=sys.stderr)
        sys.exit(1)
    elif result["status"] == "failed":
        print(f"regbench: error: {result['error']}", file=sys.stderr)
        sys.exit(2 if result.get("error_type") == "UserInputError" else 1)
    else:
        console.print(result_title(result), highlight=False, soft_wrap=True)
        console.print(result_table(result))
        console.print(result_summary(result), highlight=False, soft_wrap=True)
        console.print(f"run folder: {out_dir}", highlight=False, soft_wrap=True)
    return monitored(result)


def refused(error: Exception, out_dir: Path, hc: Any) -> None:
    """A job refused before it wrote anything (runner.run raised its bad input): its folder goes,
    when this command made it (regbench.cli.callbacks.discard), and one line says why. A single
    run ends with exit 2; a sweep's job returns None (a failed trial to a sweeper), and the
    sweep's summary counts it and exits 2."""
    from regbench.cli.callbacks import REFUSED, discard

    discard(out_dir)
    if hc.mode == RunMode.MULTIRUN:
        REFUSED.append(hc.job.num)
        print(f"regbench: error: [job {hc.job.num}] refused: {error}", file=sys.stderr)
        return None
    print(f"regbench: error: {error}", file=sys.stderr)
    sys.exit(2)


def trial(cfg: DictConfig, out_dir: Path, console: Any, label: str) -> float | None:
    """A search trial with search.seeds = n: the runs of seeds seed .. seed + n - 1 (the same for
    every trial, so trials are compared on paired seeds), each in `out_dir`/seed_<s>/ like any run,
    as one stack when they share a structure (a fixed dataset.split_seed), else one by one;
    returns the mean of their monitored values, None when any failed (the sweeper's FAIL).
    `out_dir`/trial.json records the seeds, their values and the mean."""
    from regbench import UserInputError
    from regbench.reporting.collect import TRIAL_FILE

    seeds = [cfg.seed + i for i in range(cfg.search.seeds)]
    jobs = []
    for s in seeds:
        seed_cfg = copy.deepcopy(cfg)
        with open_dict(seed_cfg):
            seed_cfg.seed = s
            seed_cfg.search.seeds = 1
        jobs.append((seed_cfg, out_dir / f"seed_{s}"))
    record = {"seeds": seeds, "values": None, "mean": None}
    out_dir.mkdir(parents=True, exist_ok=True)
    wrote = not (out_dir / TRIAL_FILE).exists()
    (out_dir / TRIAL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    try:
        return _trial(jobs, seeds, record, out_dir, console, label)
    except UserInputError:  # bad input, raised before any seed trained (runner.run): no trial either
        if wrote:
            (out_dir / TRIAL_FILE).unlink(missing_ok=True)
        raise


def _trial(jobs: list[tuple[DictConfig, Path]], seeds: list[int], record: dict[str, Any], out_dir: Path,
           console: Any, label: str) -> float | None:
    from regbench import UserInputError
    from regbench.console import one_line
    from regbench.engine.folderlock import FolderBusy
    from regbench.engine.runner import run
    from regbench.engine.grouping import stack_key
    from regbench.reporting.collect import TRIAL_FILE

    results: dict[int, dict[str, Any]] = {i: done for i, (c, d) in enumerate(jobs) if (done := finished_result(c, d))}
    todo = [i for i in range(len(jobs)) if i not in results]
    for i in todo:
        notice = rerun_notice(jobs[i][0], jobs[i][1], f"{label} seed {seeds[i]}")
        if notice:
            console.print(notice, highlight=False, markup=False, soft_wrap=True)
    search = config_search_dirs()
    keys = {stack_key(jobs[i][0], search) for i in todo}
    if len(todo) > 1 and len(keys) == 1 and None not in keys:
        from regbench.engine.sweep import train

        console.print(f"[{label}] search.seeds: seeds {', '.join(str(seeds[i]) for i in todo)} train as one model",
                      highlight=False, markup=False, soft_wrap=True)
        done: dict[int, dict[str, Any]] = {}
        try:
            train([jobs[i] for i in todo], console, done, lambda index, result: None, search)
        except UserInputError as e:  # bad input (the data, the model), before training: no seed can run
            if not isinstance(e, FolderBusy):
                raise
            console.print(f"[{label}] search.seeds: {e}; the seeds run one by one", highlight=False, markup=False,
                          soft_wrap=True)
        except Exception as e:  # as the stacked launcher does: the unfinished seeds run one by one
            console.print(f"[{label}] search.seeds: the stack failed ({type(e).__name__}: {e}); its unfinished seeds "
                          "run one by one", highlight=False, markup=False, soft_wrap=True)
        results.update({todo[index]: result for index, result in done.items()})
    elif len(todo) > 1:
        console.print(f"[{label}] search.seeds: seeds {', '.join(str(seeds[i]) for i in todo)} train one by one "
                      "(their splits differ: dataset.split_seed follows seed; fix it, e.g. dataset.split_seed=0, "
                      "to train them as one model)", highlight=False, markup=False, soft_wrap=True)
    for i in todo:
        if i not in results:
            try:
                results[i] = run(jobs[i][0], jobs[i][1], console, search)
            except FolderBusy as e:  # nothing written: the other process owns that seed's folder
                console.print(f"[{label} seed {seeds[i]}] skipped: {e}", highlight=False, markup=False, soft_wrap=True)
    for i, s in enumerate(seeds):
        if i in results:
            console.print(one_line(results[i], f"{label} seed {s}"), highlight=False, markup=False, soft_wrap=True)
    values = [monitored(results[i]) if i in results else None for i in range(len(seeds))]
    mean = None if any(v is None for v in values) else sum(values) / len(values)
    record.update(values=values, mean=mean)
    (out_dir / TRIAL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"[{label}] mean val_loss over seeds {seeds[0]}-{seeds[-1]}: "
                  + (f"{mean:.6g}" if mean is not None else "none (a seed failed or did not run: the trial counts as failed)"),
                  highlight=False, markup=False, soft_wrap=True)
    return mean


def monitored(result: dict[str, Any]) -> float | None:
    """The value a sweeper optimises: the validation loss of an ok run. None (never NaN, which
    crashes Optuna's sweeper) tells it the trial failed; diverged runs count as failed too."""
    value = result["metrics"]["val_loss"]
    return value if result["status"] == "ok" and value is not None and math.isfinite(value) else None
