"""Hydra callbacks of a multirun: check every job before the first runs, summarise at the end.

Enabled in conf/config.yaml (hydra.callbacks.sweep_summary), so they run whatever the launcher.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.results import iter_result_files
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
    """Refuses a sweep with a bad job before any job runs; lists diverged and failed jobs after."""

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
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = {"ok": 0, "diverged": 0, "failed": 0}
        bad = []
        for path in iter_result_files(sweep_dir):
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            status = result.get("status", "failed")
            counts[status] = counts.get(status, 0) + 1
            if status != "ok":
                bad.append((status, path.parent, result.get("error")))
        print(
            f"sweep done: {counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed; "
            f"results in {sweep_dir}"
        )
        for status, folder, error in bad:
            print(f"  {status}: {folder}" + (f": {error}" if error else ""))
        if counts["failed"]:
            sys.exit(1)
