"""`hydra.launcher.executor=slurm` against a real scheduler (issue 24 items 1, 2, 4, 5): the stacks of
a sweep as SLURM array elements, on the one-node cluster CI starts (`bash scripts/slurm_local.sh
start`); every test skips in one line where no cluster answers (tests/helpers/slurm.py).

Each sweep's results are compared, job for job and bit for bit (one thread), with the same sweep
run in-process: a plain sweep as several elements; a chunked array under a small maximum array
size; an element cancelled and the sweep re-launched; an element past its time limit, requeued
from its stack's checkpoint; sbatch's refusal, one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from regbench import plan
from tests.helpers import slurm
from tests.helpers.cli import regbench
from tests.helpers.compare import SAME
from tests.helpers.rundirs import metrics_rows

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
    """A stack of two that needs about 25 s of training, in elements of one minute whose time-limit
    signal comes 45 s early: each element trains about 10 s, stops after an epoch, writes the
    stack's checkpoint, and is requeued; the results equal an uninterrupted in-process run."""
    sweep = ["hydra/launcher=stacked", "reg=none,l2", "seed=0", "trainer.max_epochs=600", "trainer.patience=null",
             "model.hidden_sizes=[256,256]", "trainer.num_threads=1", "device=cpu"]
    reference = in_process(tmp_path, sweep)
    stop = threading.Event()
    helper = threading.Thread(target=_start_requeued_at_once, args=(stop,), daemon=True)
    helper.start()
    try:
        out = regbench("run", "-m", *sweep, SLURM, "hydra.launcher.slurm.timeout_min=1",
                       "hydra.launcher.slurm.signal_delay_s=45", "hydra.launcher.slurm.max_num_timeout=10",
                       "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=900)
    finally:
        stop.set()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    log = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").glob("*/*_log.*"))
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
    same_as(tmp_path / "sweep", reference, 12)
