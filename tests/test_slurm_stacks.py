"""`hydra.launcher.executor=slurm` against a real scheduler (issue 24 items 1, 2, 4, 5): the stacks of
a sweep as SLURM array elements, on the one-node cluster CI starts (`bash scripts/slurm_local.sh
start`); every test skips in one line where no cluster answers (tests/helpers/slurm.py).

Each sweep's results are compared, job for job and bit for bit (one thread), with the same sweep
run in-process: a plain sweep as several elements; a chunked array under a small maximum array
size; an element cancelled and the sweep re-launched; an element past its time limit, requeued
from its stack's checkpoint; an element preempted mid-stack (SLURM's own kill-and-requeue, and the
SIGTERM and USR2 a preemption sends), requeued and resumed from its stack's checkpoint, also with
one member left; an element preempted by the scheduler itself (a job of a higher partition); an element killed outright (SIGKILL, as when its node dies), its sweep
re-launched; sbatch's refusal, one line; an element whose node does not see the sweep folder, one line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from regbench import plan
from tests.helpers import slurm
from tests.helpers.cli import regbench, start
from tests.helpers.compare import SAME
from tests.helpers.rundirs import epochs_in, metrics_rows

pytestmark = pytest.mark.slow

# Twelve jobs in eight stacks of at most two (each seed re-splits the data: its three jobs share
# a structure); one thread, so that the element and this process compute alike.
SWEEP = ["hydra/launcher=stacked", "hydra.launcher.max_stack=2", "reg=none,l2,dropout", "seed=0,1,2,3",
         "trainer.max_epochs=2", "model.hidden_sizes=[16]", "trainer.num_threads=1", "device=cpu"]
SLURM = "hydra.launcher.executor=slurm"


@pytest.fixture(scope="module")
def node() -> slurm.Cluster:
    return slurm.cluster()


def same_as(sweep: Path, reference: Path, jobs: int) -> None:
    for n in range(jobs):
        ran = json.loads((sweep / str(n) / "result.json").read_text())
        ref = json.loads((reference / str(n) / "result.json").read_text())
        assert ran["status"] == "ok", ran.get("error")
        assert {k: ran[k] for k in SAME} == {k: ref[k] for k in SAME}, n
        assert metrics_rows(sweep / str(n)) == metrics_rows(reference / str(n)), n


def in_process(tmp: Path, sweep: list[str]) -> Path:
    out = regbench("run", "-m", *sweep, "hydra.sweep.dir=reference", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp / "reference"


def arrays(sweep: Path) -> dict[str, str]:
    """array id -> its submission script."""
    return {p.name: (p / f"{p.name}_submission.sh").read_text() for p in (sweep / ".submitit").iterdir()
            if p.is_dir() and re.fullmatch(r"\d+", p.name)}


@pytest.fixture(scope="module")
def reference(node, tmp_path_factory) -> Path:
    return in_process(tmp_path_factory.mktemp("inprocess"), SWEEP)


def test_a_sweep_runs_as_array_elements_of_stacks_with_the_in_process_results(node, reference, tmp_path):
    out = regbench("run", "-m", *SWEEP, SLURM, "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert re.search(r"stacked: 8 stacks submitted as 1 SLURM array \(\d+; logs in ", out.stdout), out.stdout
    assert "sweep done: 12 ok" in out.stdout
    shown = out.stdout + out.stderr
    assert "sacct" not in shown and "accounting storage is disabled" not in shown  # quiet without accounting
    (array, script), = arrays(tmp_path / "sweep").items()
    assert "#SBATCH --array=0-7%8\n" in script and "#SBATCH --mem=2GB\n" in script, script  # 1 + 0.05 x 2 GB
    tasks = slurm.array_states(array)
    assert len(tasks) in (0, 8) and all(s == "COMPLETED" for s in tasks.values()), tasks
    same_as(tmp_path / "sweep", reference, 12)
    written = plan.read(tmp_path / "sweep")
    assert written["executor"] == "slurm" and len(written["stacks"]) == 8


def test_a_long_array_goes_in_chunks_one_after_another(node, tmp_path):
    sweep = ["hydra/launcher=stacked", "hydra.launcher.max_stack=1", "reg=none,l2", "seed=0,1,2",
             "trainer.max_epochs=2", "model.hidden_sizes=[16]", "trainer.num_threads=1", "device=cpu"]
    reference = in_process(tmp_path, sweep)
    out = regbench("run", "-m", *sweep, SLURM, "hydra.launcher.slurm.max_array_size=2",
                   "hydra.launcher.slurm.array_parallelism=1", "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "stacked: 6 stacks submitted as 3 SLURM arrays" in out.stdout
    scripts = [s for _, s in sorted(arrays(tmp_path / "sweep").items(), key=lambda a: int(a[0]))]
    ids = sorted(arrays(tmp_path / "sweep"), key=int)
    assert all("#SBATCH --array=0-1%1\n" in s for s in scripts)
    assert "--dependency" not in scripts[0]
    for before, script in zip(ids, scripts[1:]):  # each chunk waits for the one before it to end
        assert f"#SBATCH --dependency=afterany:{before}\n" in script, script
    same_as(tmp_path / "sweep", reference, 6)


def test_a_cancelled_element_keeps_the_others_and_a_relaunch_runs_only_its_jobs(node, reference, tmp_path):
    submit = ["run", "-m", *SWEEP, SLURM, "hydra.launcher.slurm.array_parallelism=1", "hydra.sweep.dir=sweep"]
    out = regbench(*submit, "hydra.launcher.slurm.wait=false", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "not waiting (hydra.launcher.slurm.wait=false)" in out.stdout
    (array, _), = arrays(tmp_path / "sweep").items()
    subprocess.run(["scancel", f"{array}_5"], check=True)  # the sixth stack, still waiting its turn
    slurm.wait_for(array, timeout=300)
    cancelled = plan.read(tmp_path / "sweep")["stacks"][5]
    missing = [n for n in range(12) if not (tmp_path / "sweep" / str(n) / "result.json").exists()]
    assert missing == cancelled, (missing, cancelled)
    report = regbench("report", "sweep", cwd=tmp_path)
    assert report.returncode == 0
    assert f"sweep: {len(cancelled)} of its 12 planned jobs have no result yet" in report.stderr, report.stderr
    again = regbench(*submit, cwd=tmp_path, timeout=600)  # the same command again
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "stacked: 7 of 8 stacks already finished: not submitted" in again.stdout
    assert "stacked: 1 stack submitted as 1 SLURM array" in again.stdout
    assert "sweep done: 12 ok" in again.stdout
    same_as(tmp_path / "sweep", reference, 12)


def _start_requeued_at_once(stop: threading.Event) -> None:
    """SLURM holds a requeued job back for about two minutes (BeginTime); the test does not wait."""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-o", "%i %r"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            job, reason = line.split(maxsplit=1)
            if reason.strip() == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def test_an_element_past_its_time_limit_is_requeued_and_finishes_bit_for_bit(node, tmp_path):
    """A stack of two that needs about 50 s of training, in elements of one minute whose time-limit
    signal is asked 20 s early: each element trains a part, stops after an epoch, writes the
    stack's checkpoint, and is requeued; the results equal an uninterrupted in-process run.

    SLURM checks its time limits every 30 s (slurmctld's PERIODIC_TIMEOUT) and sends the signal
    up to 30 s before it is due, here 10-40 s into an element: at least two elements, and never
    in the element's first second, before submitit answers USR2 (a signal asked 45 s early came
    0.5 s in and killed the element)."""
    sweep = ["hydra/launcher=stacked", "reg=none,l2", "seed=0", "trainer.max_epochs=1200", "trainer.patience=null",
             "model.hidden_sizes=[256,256]", "trainer.num_threads=1", "device=cpu"]
    reference = in_process(tmp_path, sweep)
    stop = threading.Event()
    helper = threading.Thread(target=_start_requeued_at_once, args=(stop,), daemon=True)
    helper.start()
    try:
        out = regbench("run", "-m", *sweep, SLURM, "hydra.launcher.slurm.timeout_min=1",
                       "hydra.launcher.slurm.signal_delay_s=20", "hydra.launcher.slurm.max_num_timeout=30",
                       "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=900)
    finally:
        stop.set()
    log = "".join(p.read_text() for p in sorted((tmp_path / "sweep" / ".submitit").glob("*/*_log.*")))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:] + "\nthe element's logs:\n" + log[-4000:]
    # started again after the signal (submitit's "Requeued job" line may die with the process it ends)
    assert log.count("Starting with JobEnvironment") >= 2 and "Calling checkpoint method" in log, log[-3000:]
    assert "resuming the stack from the checkpoint of epoch" in log, log[-3000:]
    assert "SLURM's time-limit signal (USR2): stopping after this epoch" in log
    same_as(tmp_path / "sweep", reference, 2)
    assert not list((tmp_path / "sweep").glob("*/stack*.pt"))  # finished: no checkpoint left behind


def test_sbatch_refusing_an_element_s_memory_is_one_line(node, tmp_path):
    gb = node.memory_mb // 1024 + 2
    out = regbench("run", "-m", "hydra/launcher=stacked", "reg=none,l2", "trainer.max_epochs=1", SLURM,
                   f"hydra.launcher.slurm.mem_gb={gb}", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    assert out.stderr.startswith("regbench: error: sbatch refused the submission: sbatch: Memory specification "
                                 "can not be satisfied"), out.stderr
    assert not list((tmp_path / "sweep").glob("*/result.json"))


def test_an_element_that_does_not_see_the_sweep_folder_is_one_line_and_loses_nothing(node, tmp_path):
    """A sweep folder on a disk the nodes do not see, on one node: each element's python runs in
    a mount namespace of its own (hydra.launcher.slurm.python, a wrapper script: `unshare
    --mount`, then an empty tmpfs over the sweep folder), so the element finds no plan there,
    as a node that mounts another disk (or none) at that path would. submitit's folder is
    elsewhere, on a disk both see: the element's failure comes back to the submitting process,
    which says it in one line and exits 1; nothing is written into the sweep's job folders, and
    the same command without the wrapper then runs every job."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1): the element hides the sweep folder in a mount namespace of its own")
    sweep = tmp_path / "sweep"
    hide = tmp_path / "python-elsewhere"
    hide.write_text("#!/bin/sh\n# python where the sweep folder is an empty tmpfs (a node without the submit host's disk)\n"
                    f"exec unshare --mount --propagation private sh -c 'mount -t tmpfs elsewhere \"$0\" && exec \"$@\"' "
                    f"{shlex.quote(str(sweep))} {shlex.quote(sys.executable)} \"$@\"\n")
    hide.chmod(0o755)
    args = ["run", "-m", "hydra/launcher=stacked", "reg=none,l2", "seed=0,1", "hydra.launcher.max_stack=2",
            "trainer.max_epochs=1", "model.hidden_sizes=[16]", "trainer.num_threads=1", "device=cpu", SLURM,
            f"hydra.launcher.slurm.submitit_folder={tmp_path}/submitit/%j", "hydra.sweep.dir=sweep"]
    out = regbench(*args, f"hydra.launcher.slurm.python={hide}", cwd=tmp_path, timeout=600)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    said = (r"regbench: error: the sweep folder sweep has no \.regbench/plan\.json on this node \(\S+\): put "
            r"the sweep on a disk every node mounts at the same path \(hydra\.sweep\.dir=\.\.\.\)")
    ids = sorted(p.name for p in (tmp_path / "submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(ids) == 2, ids  # two stacks, two elements: both failed for the one cause, said once
    lines = [line for line in out.stderr.splitlines() if "plan.json" in line]
    assert len(lines) == 1 and re.fullmatch(f"stacked: SLURM elements {', '.join(ids)} failed: {said}", lines[0]), \
        out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert "stacked: 2 elements ended without finishing" in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "regbench: no finished runs (result.json) under sweep", out.stderr
    assert not [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]  # no job folder
    again = regbench(*args, cwd=tmp_path, timeout=600)  # the same command, the sweep folder seen
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "stacked: 2 stacks submitted as 1 SLURM array" in again.stdout and "sweep done: 4 ok" in again.stdout


def test_a_relaunch_while_the_elements_still_wait_submits_nothing_again_and_waits_for_them(node, reference, tmp_path):
    submit = ["run", "-m", *SWEEP, SLURM, "hydra.launcher.slurm.array_parallelism=1", "hydra.sweep.dir=sweep"]
    first = regbench(*submit, "hydra.launcher.slurm.wait=false", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    before = regbench("report", "sweep", cwd=tmp_path)  # at once: nothing has finished yet, or a few jobs
    assert "planned jobs ha" in before.stderr, before.stderr
    again = regbench(*submit, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert re.search(r"stacked: \d+ stacks? still queued or running as SLURM elements of an earlier launch", again.stdout)
    assert "submitted as" not in again.stdout and len(arrays(tmp_path / "sweep")) == 1  # no second array
    assert "sweep done: 12 ok" in again.stdout
    # the first launch's elements ran every job: none counts as run by this one (they did, before)
    counts = re.search(r"\((\d+) skipped as already done, 0 resumed, 0 ran(?:, (\d+) run by another process "
                       r"meanwhile)?\)", again.stdout)
    assert counts and int(counts[1]) + int(counts[2] or 0) == 12, again.stdout[-1500:]
    same_as(tmp_path / "sweep", reference, 12)


# Faults mid-stack: four jobs in two stacks of two (one per seed), one element each, the second
# starting when the first has ended (one element fills the node's two cores). Each stack trains
# about 15 s, writing its checkpoint every 2 s, so that a fault comes in the middle of the second.
FAULTS = ["hydra/launcher=stacked", "seed=0,1", "reg=none,l2", "trainer.max_epochs=300", "trainer.patience=null",
          "model.hidden_sizes=[256,256]", "trainer.num_threads=1", "trainer.checkpoint_seconds=2", "device=cpu"]


@pytest.fixture(scope="module")
def faults_reference(node, tmp_path_factory) -> Path:
    return in_process(tmp_path_factory.mktemp("faults"), FAULTS)


def _mid_stack(sweep: Path, stack: int, epochs: int = 40, timeout: float = 240) -> tuple[str, list[int]]:
    """Waits until every member of the plan's `stack` has trained `epochs` epochs and holds its
    share of a stack checkpoint; returns its SLURM element (`<array>_<stack>`) and its jobs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = plan.read(sweep)
        ids = [p.name for p in (sweep / ".submitit").glob("*") if re.fullmatch(r"\d+", p.name)]
        if written is not None and ids:
            nums = written["stacks"][stack]
            if all(epochs_in(sweep / str(n) / "metrics.csv") >= epochs and (sweep / str(n) / "stack.pt").is_file()
                   for n in nums):
                return f"{ids[0]}_{stack}", nums
        time.sleep(0.2)
    raise AssertionError(f"stack {stack} of {sweep} did not reach epoch {epochs} in {timeout:.0f} s")


def _element_log(sweep: Path, element: str) -> str:
    return "".join(p.read_text() for p in sorted((sweep / ".submitit" / element).glob("*_log.*")))


def _finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def _first_stack_untouched(sweep: Path, element: str, finished: dict[int, float]) -> None:
    """The stack that had finished before the fault: one run of its element, its results as written then."""
    assert _element_log(sweep, element).count("Starting with JobEnvironment") == 1
    assert {n: (sweep / str(n) / "result.json").stat().st_mtime_ns for n in finished} == finished


def _preempted(tmp_path: Path, reference: Path, signal_it) -> tuple[str, str, int, list[int]]:
    """The FAULTS sweep on SLURM, its second element preempted by `signal_it(element)` mid-stack and
    requeued (started at once); returns the command's output, the element's log, the epoch at
    which it was signalled and its jobs, once the results are checked against `reference`."""
    sweep = tmp_path / "sweep"
    stop = threading.Event()
    helper = threading.Thread(target=_start_requeued_at_once, args=(stop,), daemon=True)
    helper.start()
    try:
        proc = start(["run", "-m", *FAULTS, SLURM, "hydra.sweep.dir=sweep"], cwd=tmp_path)
        try:
            element, nums = _mid_stack(sweep, 1)
            first = [n for n in range(4) if n not in nums]
            finished = {n: (sweep / str(n) / "result.json").stat().st_mtime_ns for n in first}
            at = min(epochs_in(sweep / str(n) / "metrics.csv") for n in nums)
            signal_it(element)
            code, out = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        stop.set()
    assert code == 0, out[-4000:]
    assert "sweep done: 4 ok" in out, out[-3000:]
    log = _element_log(sweep, element)
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]  # ran, was requeued, ran again
    same_as(sweep, reference, 4)
    _first_stack_untouched(sweep, f"{element.split('_')[0]}_0", finished)
    for n in nums:  # resumed from the checkpoint the stop wrote: the epoch it was in when signalled, or a later one
        resumed = json.loads((sweep / str(n) / "result.json").read_text())["resumed_from_epoch"]
        assert resumed is not None and resumed >= at, (resumed, at)
    assert f"resuming the stack from the checkpoint of epoch {resumed}" in log, log[-3000:]
    assert not list(sweep.glob("*/stack*.pt"))  # finished: no checkpoint left behind
    return out, log, at, nums


def test_an_element_slurm_requeues_mid_stack_resumes_from_its_checkpoint_bit_for_bit(node, faults_reference, tmp_path):
    """`scontrol requeue` is what SLURM does to a job it preempts (PreemptMode=REQUEUE): SIGCONT
    and SIGTERM, SIGKILL KillWait seconds later, back to the queue. The element stops its stack
    after the epoch, writes the checkpoint and exits; SLURM starts it again and the stack resumes."""
    out, log, _, _ = _preempted(tmp_path, faults_reference,
                                lambda element: subprocess.run(["scontrol", "requeue", element], check=True))
    assert "regbench: SIGTERM: stopping after this epoch, once its checkpoint is written" in log, log[-3000:]
    assert "Requeued job" not in log  # SLURM requeued it, not submitit


def test_a_preempted_element_hearing_sigterm_and_usr2_stops_after_its_epoch_and_is_requeued(node, faults_reference,
                                                                                          tmp_path):
    """A preemption with a grace time sends SIGTERM and, as the element's end moves near,
    submitit's USR2; submitit's own test of a preemption (`SlurmJob._interrupt`) sends both at
    once. Neither is taken as the second signal that stops at once: the stack stops after its
    epoch with its checkpoint written, and submitit requeues the element (as preempted: no time-out used up)."""
    def preempt(element: str) -> None:
        subprocess.run(["scancel", "--signal=TERM", element], check=True)
        subprocess.run(["scancel", "--signal=USR2", element], check=True)

    out, log, _, _ = _preempted(tmp_path, faults_reference, preempt)
    # submitit took it as a preemption and requeued it: its "Requeued job ... (3 remaining timeouts)"
    # line, unless SLURM's kill of the requeued process came first (seen 2026-12-07 under a load
    # of 11): then slurmstepd's line says the requeue came from `scontrol requeue` (submitit's)
    assert "this job is preempted" in log and "Job has not timed out" in log, log[-3000:]  # no time-out used up
    assert "Calling checkpoint method" in log and ("Requeued job" in log or "DUE TO JOB REQUEUE" in log), log[-3000:]
    assert re.search(r"stacked: (USR2 after SIGTERM|SIGTERM with USR2) \(a preemption\)", log), log[-3000:]
    assert "Requeued job" not in log or "(3 remaining timeouts)" in log, log[-3000:]  # max_num_timeout not used up


def test_an_element_preempted_by_a_job_of_a_higher_partition_resumes_from_its_checkpoint_bit_for_bit(
        node, faults_reference, tmp_path):
    """A real preemption, the scheduler's own: the one-node cluster preempts by partition in
    REQUEUE mode (scripts/slurm_local.sh: `debug`, the default, PriorityTier=1; `urgent`,
    PriorityTier=2). The first stack of the FAULTS sweep (seed 0, one element in `debug`, the
    node's every core) once both members have trained 40 epochs; then a job in `urgent` that
    needs every core: SLURM preempts the element (SIGCONT and SIGTERM, GraceTime=0, SIGKILL
    KillWait = 5 s later), runs the urgent job, and requeues the element, which resumes its
    stack from the checkpoint its SIGTERM wrote; both results equal the in-process sweep's."""
    urgent = slurm.urgent_partition(node)
    sweep = tmp_path / "sweep"
    args = [a if a != "seed=0,1" else "seed=0" for a in FAULTS]  # jobs 0 and 1 of FAULTS: one stack
    stop = threading.Event()
    helper = threading.Thread(target=_start_requeued_at_once, args=(stop,), daemon=True)
    helper.start()
    try:
        proc = start(["run", "-m", *args, SLURM, f"hydra.launcher.slurm.partition={node.partition}",
                      "hydra.sweep.dir=sweep"], cwd=tmp_path)
        try:
            element, nums = _mid_stack(sweep, 0)
            at = min(epochs_in(sweep / str(n) / "metrics.csv") for n in nums)
            element = element.split("_")[0]  # one stack: a plain job, not an array
            assert slurm.job_state(element) == "RUNNING"
            preemptor = subprocess.run(["sbatch", "--parsable", f"--partition={urgent}", f"--cpus-per-task={node.cpus}",
                                        f"--output={tmp_path}/urgent_%j.out", "--wrap", "sleep 1"],
                                       capture_output=True, text=True, timeout=30, check=True).stdout.strip()
            assert slurm.wait_for(preemptor, timeout=120) == {preemptor: "COMPLETED"}
            code, out = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        stop.set()
    log = _element_log(sweep, element)
    assert code == 0, out[-4000:] + "\nthe element's log:\n" + log[-3000:]
    assert "sweep done: 2 ok" in out, out[-3000:]
    assert nums == [0, 1]
    assert "CANCELLED AT" in log and "DUE TO PREEMPTION" in log, log[-3000:]  # slurmstepd's line: the scheduler did it
    assert "regbench: SIGTERM: stopping after this epoch, once its checkpoint is written" in log, log[-3000:]
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]  # ran, was preempted, ran again
    assert "Requeued job" not in log  # SLURM requeued it, not submitit
    assert re.search(r"\bRestarts=1\b", subprocess.run(["scontrol", "show", "job", element], capture_output=True,
                                                        text=True).stdout)
    for n in nums:  # resumed from the checkpoint the stop wrote: the epoch it was in when preempted, or a later one
        resumed = json.loads((sweep / str(n) / "result.json").read_text())["resumed_from_epoch"]
        assert resumed is not None and resumed >= at, (resumed, at)
    assert f"resuming the stack from the checkpoint of epoch {resumed}" in log, log[-3000:]
    same_as(sweep, faults_reference, 2)
    assert not list(sweep.glob("*/stack*.pt"))


def test_an_element_killed_mid_stack_keeps_its_finished_jobs_and_a_relaunch_resumes_it_bit_for_bit(
        node, faults_reference, tmp_path):
    """SIGKILL to the element's process, as when its node dies: nothing runs after it, the
    element ends (FAILED) and is not requeued. The stack that had finished stays finished; the
    same command again resumes the killed stack from its last checkpoint (every
    trainer.checkpoint_seconds) and ends bit for bit."""
    sweep = tmp_path / "sweep"
    command = ["run", "-m", *FAULTS, SLURM, "hydra.sweep.dir=sweep"]
    proc = start(command, cwd=tmp_path)
    try:
        element, nums = _mid_stack(sweep, 1)
        first = [n for n in range(4) if n not in nums]
        finished = {n: (sweep / str(n) / "result.json").stat().st_mtime_ns for n in first}
        # the process training the stack (its folders' lock holder) dies at once, as on a node that
        # dies; `scancel --signal=KILL` would not do: SLURM takes it as scancel (SIGTERM first)
        os.kill(int(re.match(r"pid (\d+) ", (sweep / str(nums[0]) / ".regbench.lock").read_text())[1]), signal.SIGKILL)
        code, out = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1, out[-4000:]
    assert nums == [2, 3]
    assert f"stacked: SLURM element {element} (jobs 2-3) ended without finishing" in out, out[-3000:]
    assert "sweep done: 2 ok" in out and "2 without a result" in out, out[-3000:]
    log = _element_log(sweep, element)
    assert log.count("Starting with JobEnvironment") == 1 and "stopping after this epoch" not in log, log[-3000:]
    kept = [n for n in nums if (sweep / str(n) / "stack.pt").is_file()]
    assert kept == nums and not any((sweep / str(n) / "result.json").exists() for n in nums)
    again = regbench(*command, cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "stacked: 1 of 2 stacks already finished: not submitted" in again.stdout
    assert "stacked: 1 stack submitted as 1 SLURM array" in again.stdout
    assert "sweep done: 4 ok" in again.stdout
    same_as(sweep, faults_reference, 4)
    _first_stack_untouched(sweep, f"{element.split('_')[0]}_0", finished)
    (array, _), = [(a, s) for a, s in arrays(sweep).items() if a != element.split("_")[0]]
    resumed = {json.loads((sweep / str(n) / "result.json").read_text())["resumed_from_epoch"] for n in nums}
    assert len(resumed) == 1 and None not in resumed, resumed
    assert f"resuming the stack from the checkpoint of epoch {resumed.pop()}" in _element_log(sweep, array), \
        _element_log(sweep, array)[-3000:]
    assert not list(sweep.glob("*/stack*.pt"))


def test_a_preempted_stack_with_one_member_left_resumes_it_from_the_stack_checkpoint(node, tmp_path):
    """A stack of two whose first member stops early (epoch 34) and whose second trains 300
    epochs, preempted (`scontrol requeue`) after the first has finished: the requeued element
    skips it and continues the other from the stack's checkpoint as a stack of one (a lone run
    would start it afresh and leave stack.pt behind), bit for bit."""
    sweep_args = ["hydra/launcher=stacked", "seed=0", "optim.lr=0.001,0.00003", "trainer.max_epochs=300",
                  "trainer.patience=20", "model.hidden_sizes=[256,256]", "trainer.num_threads=1",
                  "trainer.checkpoint_seconds=2", "device=cpu"]
    reference = in_process(tmp_path, sweep_args)
    assert json.loads((reference / "0" / "result.json").read_text())["epochs_run"] < 60
    sweep = tmp_path / "sweep"
    stop = threading.Event()
    helper = threading.Thread(target=_start_requeued_at_once, args=(stop,), daemon=True)
    helper.start()
    try:
        proc = start(["run", "-m", *sweep_args, SLURM, "hydra.sweep.dir=sweep"], cwd=tmp_path)
        try:
            deadline = time.monotonic() + 240
            while not ((sweep / "0" / "result.json").is_file() and (sweep / "1" / "stack.pt").is_file()
                       and epochs_in(sweep / "1" / "metrics.csv") >= 80):
                assert time.monotonic() < deadline, "job 1 did not reach epoch 80 in 240 s"
                time.sleep(0.2)
            finished = (sweep / "0" / "result.json").stat().st_mtime_ns
            at = epochs_in(sweep / "1" / "metrics.csv")
            (element, _), = arrays(sweep).items()  # one stack: one element, a plain job
            subprocess.run(["scontrol", "requeue", element], check=True)
            code, out = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        stop.set()
    assert code == 0, out[-4000:]
    assert "sweep done: 2 ok" in out, out[-3000:]
    log = _element_log(sweep, element)
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]
    assert "stacked: job 1 continues its stack's checkpoint alone (its other members finished)" in log, log[-3000:]
    resumed = json.loads((sweep / "1" / "result.json").read_text())["resumed_from_epoch"]
    assert resumed is not None and resumed >= at, (resumed, at)
    assert f"resuming the stack from the checkpoint of epoch {resumed}" in log, log[-3000:]
    assert (sweep / "0" / "result.json").stat().st_mtime_ns == finished
    same_as(sweep, reference, 2)
    assert not list(sweep.glob("*/stack*.pt"))
