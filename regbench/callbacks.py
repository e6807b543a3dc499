"""Hydra callbacks of a multirun: check every job before the first runs, summarise at the end.

Enabled in conf/config.yaml (hydra.callbacks.sweep_summary), so they run whatever the launcher.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.config_errors import describe
from regbench.schema import check, notices, preset_conflicts

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def foreign_job(sweep_dir: Path, jobs: list[list[str]]) -> str | None:
    """Describes the first job folder of `sweep_dir` that another job list wrote, or None.

    Resuming a sweep in its old folder is only safe when job N still means the same
    overrides; otherwise two studies would mix in one folder.
    """
    from omegaconf import OmegaConf

    if not sweep_dir.is_dir():
        return None
    for folder in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        saved = folder / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            continue
        old = [str(o) for o in OmegaConf.load(saved)]
        n = int(folder.name)
        if n >= len(jobs):
            return f"job {n} ({' '.join(old)}) is not part of this sweep of {len(jobs)} jobs"
        if sorted(old) != sorted(jobs[n]):
            return f"job {n} was `{' '.join(old)}`, now it would be `{' '.join(jobs[n])}`"
    return None


def _job_overrides(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of a basic-sweeper multirun (its `hydra.sweeper.params`
    included), or None for other sweepers."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    # As BasicSweeper.sweep builds them: hydra.sweeper.params first, then the command line's
    # overrides, as typed (`${...}` unresolved).
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())  # for glob(...) choices
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + [str(o) for o in task])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _as_job(sweep_config: DictConfig, num: int) -> None:
    """Makes `sweep_config` (a job's config with its hydra node) the current HydraConfig, as
    Hydra's launchers and run_job set it for job number `num`: its number, id and output folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    with read_write(sweep_config.hydra), open_dict(sweep_config.hydra):
        sweep_config.hydra.job.id = num
        sweep_config.hydra.job.num = num
    HydraConfig.instance().set_config(sweep_config)
    out = os.path.join(str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir))
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = os.path.abspath(out)
    HydraConfig.instance().set_config(sweep_config)


class ComposeOnce:
    """Hydra composes every job of a sweep several times: regbench's check before anything runs
    (below), the sweeper's own check, and the launcher to run it, each about 45 ms. Put on
    Hydra's config loader for the duration of a multirun, this composes each job once and
    hands out copies (a copy takes about 2 ms).

    It shadows `load_sweep_config` on that one loader object. joblib and submitit pickle the
    loader into their workers: it travels without its cache, and composes there as before.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.cache: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key not in self.cache:  # the master is kept with its job so that its id stays unique
            job = type(self.loader).load_sweep_config(self.loader, master_config, sweep_overrides)
            self.cache[key] = (master_config, job)
        return copy.deepcopy(self.cache[key][1])

    def __getstate__(self) -> dict[str, Any]:
        return {"loader": self.loader, "cache": {}}

    @classmethod
    def install(cls, loader: Any) -> ComposeOnce:
        if not isinstance(loader.__dict__.get("load_sweep_config"), cls):
            loader.load_sweep_config = cls(loader)
        return loader.load_sweep_config

    @staticmethod
    def remove(loader: Any) -> None:
        loader.__dict__.pop("load_sweep_config", None)


class SweepSummary(Callback):
    """Refuses a sweep with a bad job before any job runs; reports the sweep when it ends."""

    started = 0.0

    def _actions(self, runs: Any) -> str:
        """How many jobs this invocation skipped (result already there), resumed and ran."""
        skipped = resumed = ran = 0
        for folder, resumed_from in zip(runs["folder"], runs.get("resumed_from_epoch", [None] * len(runs))):
            if (Path(folder) / "result.json").stat().st_mtime < self.started:
                skipped += 1
            elif resumed_from == resumed_from and resumed_from is not None:  # not NaN, not None
                resumed += 1
            else:
                ran += 1
        return f"{skipped} skipped as already done, {resumed} resumed, {ran} ran"

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import open_dict

        self.started = time.time()
        compose = ComposeOnce.install(GlobalHydra.instance().config_loader())
        max_stack = config.hydra.launcher.get("max_stack")
        if max_stack is not None and max_stack < 1:  # hydra/launcher=stacked
            print(f"regbench: error: hydra.launcher.max_stack must be at least 1 (got {max_stack})", file=sys.stderr)
            print("regbench: nothing was run", file=sys.stderr)
            sys.exit(2)
        jobs = _job_overrides(config)
        if jobs is None:  # other sweepers choose their values as they go; each job checks itself
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        foreign = foreign_job(sweep_dir, jobs)
        if foreign:
            print(f"regbench: error: {sweep_dir} holds a different sweep: {foreign}; "
                  "resume with the same overrides or choose another hydra.sweep.dir", file=sys.stderr)
            sys.exit(2)
        problems: dict[str, list[str]] = {}
        warnings: dict[str, list[str]] = {}
        cuda_jobs = []
        hydra_config = HydraConfig.instance().cfg
        try:
            for num, overrides in enumerate(jobs):
                job = " ".join(overrides)
                try:
                    cfg = compose(config, overrides)  # as the launcher will compose it
                except Exception as e:  # Hydra's own message for an unknown option or key
                    problems.setdefault(describe(e), []).append(job)
                    continue
                _as_job(cfg, num)  # `${hydra:...}` values read the job's own Hydra config
                cfg = copy.deepcopy(cfg)  # HydraConfig keeps the job's config, hydra node included
                with open_dict(cfg):
                    del cfg["hydra"]  # the task's config, as Hydra's run_job hands it over
                for message in preset_conflicts(overrides) or check(cfg):
                    problems.setdefault(message, []).append(job)
                for message in [] if problems else notices(cfg):
                    warnings.setdefault(message, []).append(job)
                if cfg.device.startswith("cuda"):
                    cuda_jobs.append(job)
        finally:
            HydraConfig.instance().cfg = hydra_config
        if cuda_jobs and not problems:
            import torch

            if not torch.cuda.is_available():
                problems["device=cuda but CUDA is not available here; use device=cpu or device=auto"] = cuda_jobs
        if problems:
            for message, where in problems.items():
                print(f"regbench: error: {message} (in {len(where)} of {len(jobs)} jobs, e.g. {where[0]})", file=sys.stderr)
            print("regbench: nothing was run", file=sys.stderr)
            sys.exit(2)
        for message, where in warnings.items():
            print(f"regbench: warning: {message} (in {len(where)} of {len(jobs)} jobs, e.g. {where[0]})", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Writes runs.csv and report.csv into the sweep folder, prints the comparison table,
        one line per diverged or failed job, and exits 1 when any job failed or did not finish."""
        from hydra.core.global_hydra import GlobalHydra

        from regbench import gcpause

        ComposeOnce.remove(GlobalHydra.instance().config_loader())
        with gcpause.imports():
            from regbench.report import build, render, wide_console, write

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build([sweep_dir])
        except ValueError as e:
            print(f"regbench: {e}", file=sys.stderr)
            sys.exit(1)
        write(report, sweep_dir)
        render(report, wide_console())
        for note in report.notes:
            print(f"regbench: warning: {note}", file=sys.stderr)
        status = report.runs["status"]
        counts = {s: int((status == s).sum()) for s in ("ok", "diverged", "failed")}
        jobs = _job_overrides(config)  # None for other sweepers, whose job count is theirs
        unfinished = max(0, len(jobs) - len(report.runs)) if jobs is not None else 0
        print(
            f"sweep done: {counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed"
            + (f", {unfinished} without a result" if unfinished else "")
            + f" ({self._actions(report.runs)}); runs.csv and report.csv in {sweep_dir}"
        )
        if counts["failed"] or unfinished:
            sys.exit(1)
