"""The one-node SLURM cluster the SLURM tests run against (CI starts it with
`bash scripts/slurm_local.sh start`, as root): what it offers, or a one-line skip; a job's
state and the wait for its end.

The tests never start the cluster themselves. A job's state is read with `scontrol show job`,
not `sacct`: without an accounting database (as on the local cluster) sacct lists no jobs,
while slurmctld keeps an ended job for MinJobAge seconds (300 on the local cluster).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

START = "bash scripts/slurm_local.sh start"  # as root; CI runs it
# A job in one of these states has ended (scontrol's JobState; REQUEUED, PENDING, RUNNING... have not).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}


@dataclass(frozen=True)
class Cluster:
    """What the running cluster's node offers."""

    node: str
    cpus: int
    memory_mb: int
    partition: str


def _answer(*cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cluster() -> Cluster:
    """The running cluster's node, or skips the test, saying in one line why and how to start it."""
    how = f"start it with `{START}` (root)"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        pytest.skip(f"needs a SLURM cluster: no sbatch/sinfo on the PATH; {how}")
    try:
        out = _answer("sinfo", "-h", "-N", "-o", "%N|%c|%m|%P|%T")
    except subprocess.TimeoutExpired:
        pytest.skip(f"needs a SLURM cluster: sinfo did not answer in 10 s; {how}")
    if out.returncode != 0 or not out.stdout.strip():
        why = (out.stderr.strip().splitlines() or ["no node"])[-1]
        pytest.skip(f"needs a SLURM cluster: sinfo says: {why}; {how}")
    node, cpus, memory, partition, state = out.stdout.strip().splitlines()[0].split("|")
    if not re.match(r"(idle|mixed|allocated|completing)", state):
        pytest.skip(f"needs a SLURM cluster: its node {node} is {state}, not up; {how}")
    return Cluster(node=node, cpus=int(cpus), memory_mb=int(memory), partition=partition.rstrip("*"))


# The partition of the local cluster whose jobs preempt those of its default one (scripts/slurm_local.sh).
URGENT = "urgent"


def urgent_partition(node: Cluster) -> str:
    """The partition whose jobs preempt (requeue) those of `node.partition`, the default one, or
    skips the test in one line: the cluster must preempt by partition in REQUEUE mode, as the
    one-node cluster of scripts/slurm_local.sh does since its config version 2."""
    how = f"restart it with `{START}` (root): it writes such a config and restarts the daemons"
    config = _answer("scontrol", "show", "config").stdout
    preempt = dict(re.findall(r"^(PreemptType|PreemptMode)\s*=\s*(\S+)", config, flags=re.M))
    if preempt.get("PreemptType") != "preempt/partition_prio" or "REQUEUE" not in preempt.get("PreemptMode", ""):
        pytest.skip(f"needs a SLURM cluster that preempts by partition in REQUEUE mode, this one has "
                    f"PreemptType={preempt.get('PreemptType', '?')} PreemptMode={preempt.get('PreemptMode', '?')}; {how}")
    tiers = {}
    for line in _answer("scontrol", "show", "partition", "-o").stdout.splitlines():
        name, tier = re.search(r"\bPartitionName=(\S+)", line), re.search(r"\bPriorityTier=(\d+)", line)
        if name and tier:
            tiers[name.group(1)] = int(tier.group(1))
    if tiers.get(URGENT, 0) <= tiers.get(node.partition, 0):
        pytest.skip(f"needs a SLURM partition `{URGENT}` of a higher PriorityTier than `{node.partition}` "
                    f"(partitions and tiers: {tiers}); {how}")
    return URGENT


def job_state(job_id: str) -> str:
    """A job's state as slurmctld has it (`scontrol show job`): PENDING, RUNNING, COMPLETED, ...;
    for an array job, the state of its first task. "UNKNOWN" once slurmctld has forgotten it."""
    out = _answer("scontrol", "show", "job", "-o", job_id)
    found = re.search(r"\bJobState=(\S+)", out.stdout)
    return found.group(1) if out.returncode == 0 and found else "UNKNOWN"


def array_states(job_id: str) -> dict[str, str]:
    """Each task of job `job_id` (an array's, or the job itself) and its state, from `scontrol show job`."""
    out = _answer("scontrol", "show", "job", "-o", job_id)
    states = {}
    for line in out.stdout.splitlines():
        task = re.search(r"\bJobId=(\d+)(?:.*?\bArrayTaskId=(\S+))?", line)
        state = re.search(r"\bJobState=(\S+)", line)
        if task and state:
            states[task.group(2) or task.group(1)] = state.group(1)
    return states


def wait_for(job_id: str, timeout: float = 120) -> dict[str, str]:
    """Waits until every task of job `job_id` has ended (a state in ENDED); returns their states.

    Raises:
        AssertionError: the job has not ended after `timeout` seconds (its states in the message).
    """
    deadline = time.monotonic() + timeout
    while True:
        states = array_states(job_id)
        if states and all(s in ENDED for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"SLURM job {job_id} has not ended after {timeout:.0f} s: {states or 'unknown'}")
        time.sleep(0.5)
