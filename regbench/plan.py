"""A sweep's plan: the jobs of a multirun, how they are grouped into stacks, and where each
stack runs, written into the sweep folder before any of them starts.

The stacked launcher (hydra_plugins.regbench_stacked_launcher) writes it when it hands the
stacks to worker processes, to SLURM array elements, or to shards; it is what the folder needs
to be understood while, or after, other processes work in it:

- an element or shard reads it first: a sweep folder on a disk the element's node does not see
  has no plan there, which is one clear line instead of results written nowhere;
- `regbench report` counts the planned jobs that have no result yet (pending, still running, or
  cancelled: re-launching the same command runs them);
- re-launching the same command finds the same plan (the grouping is a function of the jobs'
  configs alone), so each shard and each re-submission runs the same stacks.

Torch-free and pandas-free: the launcher writes it before anything trains.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from regbench.record import RESULT_FILE

PLAN_DIR = ".regbench"
PLAN_FILE = "plan.json"
FORMAT = "regbench-plan-1"
FINISHED = ("ok", "diverged", "failed")  # a job with one of these in its result.json ran to its end


def path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / PLAN_DIR / PLAN_FILE


def write(sweep_dir: Path, jobs: Sequence[dict[str, Any]], stacks: Sequence[Sequence[int]], executor: str,
          command: str = "") -> Path:
    """Writes the plan (atomically: a reader never sees half of it).

    Args:
        sweep_dir: the sweep folder.
        jobs: one dict per job: `num` (Hydra's job number), `dir` (its folder, relative to the
            sweep folder), `overrides` (its overrides, as Hydra composed it).
        stacks: the job numbers of each stack, in the plan's order (a job that runs alone is a
            stack of one).
        executor: where the stacks run (`inprocess`, `local`, `slurm`, `shards`).
        command: the command line that made it.
    """
    target = path(sweep_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "executor": executor, "command": command, "jobs": list(jobs), "stacks": [list(s) for s in stacks]}
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".plan-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, target)
    return target


def read(sweep_dir: Path) -> dict[str, Any] | None:
    """The plan in `sweep_dir`, or None where there is none (a sweep that ran in one process)."""
    try:
        record = json.loads(path(sweep_dir).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def shard_of(stacks: Sequence[Sequence[int]], shard: int, num_shards: int) -> list[list[int]]:
    """The plan's stacks that shard `shard` of `num_shards` runs: every num_shards-th, from its own
    index on (the plan lists a group's stacks together: this spreads each group over the shards)."""
    return [list(s) for s in stacks[shard::num_shards]]


def status(sweep_dir: Path, job_dir: str) -> str | None:
    """The status in a planned job's result.json, or None where it has none yet."""
    try:
        return json.loads((Path(sweep_dir) / job_dir / RESULT_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def pending(sweep_dir: Path) -> tuple[int, int] | None:
    """(planned jobs without a finished result, planned jobs), or None where the folder has no plan."""
    record = read(sweep_dir)
    if record is None:
        return None
    jobs = record["jobs"]
    return sum(status(sweep_dir, j["dir"]) not in FINISHED for j in jobs), len(jobs)


__all__ = ["PLAN_DIR", "PLAN_FILE", "FINISHED", "path", "write", "read", "shard_of", "status", "pending"]
