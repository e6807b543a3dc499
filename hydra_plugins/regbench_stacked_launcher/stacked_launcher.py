"""`hydra/launcher=stacked`: runs the jobs of a sweep that share a structure as one stacked model.

The jobs of each `launch` call (all of a basic sweep; each batch of an Optuna sweep) are
grouped by `regbench.engine.grouping.stack_key`, from their configs alone, each resolved with the
job's own Hydra config. Every group of two or more jobs trains as one stack
(`regbench.engine.sweep.train`), which writes each job's metrics.csv and result.json into the
job's own folder; then every job goes through Hydra's `run_job` as with the basic launcher
(its .hydra/ folder, log file and return value), where a stacked job only reports the result
it already has. Jobs that cannot be stacked (any other Hydra app's included), and the
unfinished jobs of a stack that failed, run one after another as the basic launcher runs
them; torch and regbench's training are imported only when something stacks.

Module level imports stay light: Hydra imports every plugin on start-up, `--help` included.
No `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules,
where dataclasses cannot resolve string annotations.
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import (
    JobReturn,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.regbench_stacked_launcher.stacked_launcher.StackedLauncher"
    # Most jobs in one stack; a larger group is split into stacks of at most this many.
    max_stack: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="regbench")


class StackedLauncher(Launcher):
    def __init__(self, max_stack: int = 64) -> None:
        self.max_stack = max_stack
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if self.max_stack < 1:
            raise ValueError(f"hydra.launcher.max_stack must be at least 1, got {self.max_stack}")
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, stacked where they share a structure")
        jobs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            jobs.append(sweep_config)
        try:
            stacked = _train_stacks(jobs, self.max_stack)
        except KeyboardInterrupt as e:  # Ctrl-C: the command's last line says how to resume
            from regbench.engine.interrupt import resumable

            raise resumable(e, f"hydra.sweep.dir={self.config.hydra.sweep.dir}") from None
        runs = []
        for sweep_config in jobs:
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=_reporting(self.task_function, stacked.get(sweep_config.hydra.job.num)),
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            runs.append(ret)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs


def _task_config(sweep_config: DictConfig) -> tuple[DictConfig, Path] | None:
    """A regbench job's config as its task function receives it, with every value resolved for
    this very job, and its output folder; None for a job of another app, or one whose values
    do not resolve (it runs alone and reports that itself).

    `${hydra:...}` values read the current HydraConfig: resolved later, they would read the
    last job's (all jobs are composed before any trains). So they are resolved here, with
    HydraConfig and `hydra.runtime.output_dir` set as Hydra's run_job sets them for the job.
    """
    from omegaconf.errors import OmegaConfBaseException

    from regbench.engine.grouping import is_regbench
    from regbench.jobs import as_job, task_config  # loaded already: regbench's app is running

    task_cfg = task_config(sweep_config)
    if not is_regbench(task_cfg):
        return None
    as_job(sweep_config, sweep_config.hydra.job.num)
    try:
        with read_write(task_cfg):
            OmegaConf.resolve(task_cfg)
    except OmegaConfBaseException:
        return None
    return task_cfg, Path(str(sweep_config.hydra.runtime.output_dir))


def _train_stacks(jobs: list[DictConfig], max_stack: int) -> dict[int, dict[str, Any]]:
    """Trains every group of two or more stackable, unfinished jobs; returns job number -> result.

    Stackability is decided from the configs alone (regbench.engine.grouping, no torch): a sweep
    where nothing stacks, such as any other app's, imports nothing of regbench's training.
    """
    if "regbench.config.schema" not in sys.modules:  # not regbench's app: none of its jobs can stack
        return {}
    from regbench.config.paths import config_search_dirs
    from regbench.engine.grouping import stack_key, why_alone

    groups: dict[str, list[tuple[int, DictConfig, Path]]] = {}
    alone: dict[str, list[int]] = {}
    search = config_search_dirs(jobs[0].hydra) if jobs else ()
    for sweep_config in jobs:
        task = _task_config(sweep_config)
        key = stack_key(task[0], search) if task is not None else None
        if key is not None:
            groups.setdefault(key, []).append((sweep_config.hydra.job.num, *task))
        elif task is not None:
            reason = why_alone(task[0], search)
            if reason:
                alone.setdefault(reason, []).append(sweep_config.hydra.job.num)
    for reason, nums in alone.items():  # a regularizer that cannot stack says why in its module
        print(f"stacked: jobs {_ranges(nums)} run alone: {reason}", flush=True)
    if all(len(g) < 2 for g in groups.values()):
        return {}
    from regbench.engine import gcpause

    with gcpause.imports():
        import torch
        from rich.console import Console

        from regbench import UserInputError
        from regbench.console import one_line
        from regbench.engine.sweep import train
        from regbench.jobs import finished_result, rerun_notice, threads_per_job

    # A finished job only reports its result (its task function says so); the others stack.
    groups = {k: [m for m in g if finished_result(m[1], m[2]) is None] for k, g in groups.items()}
    stacks = [g[i : i + max_stack] for g in groups.values() for i in range(0, len(g), max_stack)]
    results: dict[int, dict[str, Any]] = {}
    console = Console()
    for members in (s for s in stacks if len(s) > 1):
        cfg = members[0][1]
        torch.set_num_threads(threads_per_job(cfg.trainer.num_threads, {}))
        nums = [num for num, _, _ in members]
        console.print(f"stacked: jobs {_ranges(nums)} train as one model ({len(members)} members)",
                      highlight=False, markup=False, soft_wrap=True)
        for num, member_cfg, out in members:  # a job that runs alone says it in its task function
            notice = rerun_notice(member_cfg, out, f"job {num}")
            if notice:
                console.print(notice, highlight=False, markup=False, soft_wrap=True)
        done: dict[int, dict[str, Any]] = {}

        def finished(index: int, result: dict[str, Any], nums: list[int] = nums) -> None:
            console.print(one_line(result, f"job {nums[index]}") + " [stacked]", highlight=False, markup=False,
                          soft_wrap=True)

        try:
            train([(c, out) for _, c, out in members], console, done, finished, search)
        except UserInputError as e:  # each job reports it again when it runs alone
            console.print(f"stacked: jobs {_ranges(nums)} did not start ({e}); they run one by one instead",
                          highlight=False, markup=False, soft_wrap=True)
        except Exception as e:  # a stack that fails must not lose its jobs: they run alone instead
            log.warning(f"the stack of jobs {_ranges(nums)} failed ({type(e).__name__}: {e}); "
                        f"its {len(members) - len(done)} unfinished jobs run one by one")
        results.update({nums[i]: result for i, result in done.items()})
    return results


def _reporting(task_function: TaskFunction, result: dict[str, Any] | None) -> TaskFunction:
    """The job's task function: the real one, or for a stacked job one that returns its result."""
    if result is None:
        return task_function

    def report(cfg: DictConfig) -> Any:
        from regbench.jobs import monitored

        return monitored(result)  # its line was printed when its stack member finished

    return report


def _ranges(nums: list[int]) -> str:
    """'0-3,5' for [0, 1, 2, 3, 5]."""
    parts, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)
