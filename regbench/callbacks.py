"""Hydra callbacks of a multirun: check every job before the first runs, summarise at the end.

Enabled in conf/config.yaml (hydra.callbacks.sweep_summary), so they run whatever the launcher.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.schema import check

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _one_line(message: str) -> str:
    """Folds Hydra's multi-line composition error into one line, without the search path."""
    head = message.partition("\nConfig search path")[0]
    lines = [x.strip() for x in head.splitlines() if x.strip()]
    out = lines[0] if lines else message
    for prev, line in zip(lines, lines[1:]):
        out += (" " if prev.endswith(":") else ", " if head.count("\t") else "; ") + line
    return out


def _job_overrides(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of a basic-sweeper multirun, or None for other sweepers."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class SweepSummary(Callback):
    """Refuses a sweep with a bad job before any job runs; reports the sweep when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        jobs = _job_overrides(config)
        if jobs is None:  # other sweepers choose their values as they go; each job checks itself
            return
        problems: dict[str, list[str]] = {}
        cuda_jobs = []
        for overrides in jobs:
            try:
                cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
            except Exception as e:  # Hydra's own message for an unknown option or key
                problems.setdefault(_one_line(str(e)), []).append(" ".join(overrides))
                continue
            for message in check(cfg):
                problems.setdefault(message, []).append(" ".join(overrides))
            if cfg.device.startswith("cuda"):
                cuda_jobs.append(" ".join(overrides))
        if cuda_jobs and not problems:
            import torch

            if not torch.cuda.is_available():
                problems["device=cuda but CUDA is not available here; use device=cpu or device=auto"] = cuda_jobs
        if problems:
            for message, where in problems.items():
                print(f"regbench: error: {message} (in {len(where)} of {len(jobs)} jobs, e.g. {where[0]})", file=sys.stderr)
            print("regbench: nothing was run", file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Writes runs.csv and report.csv into the sweep folder, prints the comparison table,
        one line per diverged or failed job, and exits 1 when any job failed."""
        from regbench.report import build, render, wide_console, write

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build([sweep_dir])
        except ValueError as e:
            print(f"regbench: {e}", file=sys.stderr)
            sys.exit(1)
        write(report, sweep_dir)
        render(report, wide_console())
        status = report.runs["status"]
        counts = {s: int((status == s).sum()) for s in ("ok", "diverged", "failed")}
        print(
            f"sweep done: {counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed; "
            f"runs.csv and report.csv in {sweep_dir}"
        )
        if counts["failed"]:
            sys.exit(1)
