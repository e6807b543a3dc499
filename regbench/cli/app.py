"""The Hydra application behind `regbench run`: compose, hand to `runner.run`, report.

Importing this module registers the schema and the `regbench_run_id` resolver, which the
output folders in conf/config.yaml use.
"""

from __future__ import annotations

import copy
import json
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

from regbench.config.paths import config_dir, config_search_dirs
from regbench.config.schema import register
from regbench.engine import gcpause, interrupt
from regbench.jobs import REFUSED, discard, finished_result, monitored, rerun_notice, threads_per_job


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
    # The config was checked where Hydra composed it, before any folder was made (the callbacks,
    # regbench.cli.callbacks: a run, or every job of a sweep before any ran); the runner checks
    # what was not (another sweeper's jobs, a trial's seeds).
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
    when this command made it (regbench.jobs.discard), and one line says why. A single
    run ends with exit 2; a sweep's job returns None (a failed trial to a sweeper), and the
    sweep's summary counts it and exits 2."""
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
