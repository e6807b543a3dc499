"""The stacked launcher's executors and shards on one machine (issue 24 items 1, 3, 4): the same
sweep run in this process, over worker processes, and as shards in separate processes gives
every job the same result bit for bit; the plan in the sweep folder; a report while shards are
pending; a re-launch runs only what is unfinished; the refusals, one line each before any work.
The SLURM executor against a real scheduler: tests/test_slurm_stacks.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from regbench import plan
from tests.helpers.cli import regbench
from tests.helpers.compare import SAME
from tests.helpers.rundirs import metrics_rows

# Twelve jobs: three regularizers x four seeds; each seed re-splits the data, so the jobs of a
# seed share a stack (three members), cut into stacks of at most two: eight stacks. One thread,
# so that every process computes alike.
SWEEP = ["hydra/launcher=stacked", "hydra.launcher.max_stack=2", "reg=none,l2,dropout", "seed=0,1,2,3",
         "trainer.max_epochs=2", "model.hidden_sizes=[16]", "trainer.num_threads=1", "device=cpu"]
N_JOBS = 12


def results(sweep: Path) -> dict[int, dict]:
    return {n: json.loads((sweep / str(n) / "result.json").read_text()) for n in range(N_JOBS)
            if (sweep / str(n) / "result.json").exists()}


def same_as(sweep: Path, reference: Path) -> None:
    ran, ref = results(sweep), results(reference)
    assert sorted(ran) == list(range(N_JOBS)), sorted(ran)
    for n in range(N_JOBS):
        assert ran[n]["status"] == "ok", ran[n].get("error")
        assert {k: ran[n][k] for k in SAME} == {k: ref[n][k] for k in SAME}, n
        assert metrics_rows(sweep / str(n)) == metrics_rows(reference / str(n)), n


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep as it always ran: stacked, one stack after another, in the command's process."""
    tmp = tmp_path_factory.mktemp("inprocess")
    out = regbench("run", "-m", *SWEEP, "hydra.sweep.dir=sweep", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not plan.path(tmp / "sweep").exists()  # in-process needs no plan: nothing else works in the folder
    return tmp / "sweep"


@pytest.mark.slow
def test_worker_processes_give_every_job_the_in_process_result(reference, tmp_path):
    out = regbench("run", "-m", *SWEEP, "hydra.launcher.executor=local", "hydra.launcher.workers=2",
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stacked: 8 stacks over 2 worker processes" in out.stdout
    assert f"sweep done: {N_JOBS} ok" in out.stdout
    same_as(tmp_path / "sweep", reference)
    written = plan.read(tmp_path / "sweep")
    assert written["executor"] == "local" and len(written["stacks"]) == 8
    assert sorted(n for s in written["stacks"] for n in s) == list(range(N_JOBS))
    assert all(len(s) <= 2 for s in written["stacks"])
    assert written["command"].startswith("regbench run -m hydra/launcher=stacked hydra.launcher.max_stack=2")


@pytest.mark.slow
def test_shards_in_separate_processes_give_the_one_machine_results_and_report(reference, tmp_path):
    """Three processes started at once into one folder, as an array of three tasks would be."""
    exe = shutil.which("regbench")
    procs = [subprocess.Popen([exe, "run", "-m", *SWEEP, "hydra.sweep.dir=sweep", f"hydra.launcher.shard={i}",
                               "hydra.launcher.num_shards=3"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    ran = "".join(o for o, _ in outs)
    for n in range(N_JOBS):  # each job trained by exactly one shard
        assert ran.count(f"[job {n}] ") == 1, ran
    assert "stacked: shard 0 of 3: 3 of the plan's stacks" in outs[0][0]
    assert "stacked: shard 2 of 3: 2 of the plan's stacks" in outs[2][0]
    same_as(tmp_path / "sweep", reference)
    report = regbench("report", "sweep", cwd=tmp_path)
    assert report.returncode == 0 and "planned jobs have no result yet" not in report.stderr
    again = regbench("report", str(reference), "--out", str(tmp_path / "ref_report"), cwd=tmp_path)
    assert again.returncode == 0
    numbers = [line.split(",")[1:] for line in (tmp_path / "sweep" / "report.csv").read_text().splitlines()]
    expected = [line.split(",")[1:] for line in (tmp_path / "ref_report" / "report.csv").read_text().splitlines()]
    header = (tmp_path / "sweep" / "report.csv").read_text().splitlines()[0].split(",")[1:]
    keep = [i for i, h in enumerate(header) if "seconds" not in h and "folder" not in h]
    assert [[r[i] for i in keep] for r in numbers] == [[r[i] for i in keep] for r in expected]


@pytest.mark.slow
def test_a_shard_that_ends_first_says_what_is_pending_and_the_report_counts_it(tmp_path):
    first = regbench("run", "-m", *SWEEP, "hydra.sweep.dir=sweep", "hydra.launcher.shard=0",
                     "hydra.launcher.num_shards=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]  # its own jobs all finished
    own = {n for s in plan.shard_of(plan.read(tmp_path / "sweep")["stacks"], 0, 2) for n in s}
    assert f"sweep done: {len(own)} ok" in first.stdout
    assert f"sweep: {N_JOBS - len(own)} jobs pending elsewhere" in first.stdout
    report = regbench("report", "sweep", cwd=tmp_path)
    assert report.returncode == 0
    assert (f"regbench: note: sweep: {N_JOBS - len(own)} of its {N_JOBS} planned jobs have no result yet"
            in report.stderr), report.stderr
    second = regbench("run", "-m", *SWEEP, "hydra.sweep.dir=sweep", "hydra.launcher.shard=1",
                      "hydra.launcher.num_shards=2", cwd=tmp_path)
    assert second.returncode == 0 and "pending elsewhere" not in second.stdout
    assert f"sweep done: {N_JOBS} ok" in second.stdout
    assert plan.pending(tmp_path / "sweep") == (0, N_JOBS)


@pytest.mark.slow
def test_a_relaunch_over_worker_processes_runs_only_the_unfinished_jobs(reference, tmp_path):
    shutil.copytree(reference, tmp_path / "sweep")
    for n in (4, 5):
        (tmp_path / "sweep" / str(n) / "result.json").unlink()
        (tmp_path / "sweep" / str(n) / "metrics.csv").unlink()
    out = regbench("run", "-m", *SWEEP, "hydra.launcher.executor=local", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = sorted(int(line.split()[1].rstrip("]")) for line in out.stdout.splitlines()
                     if line.startswith("[job ") and "already done" not in line)
    assert trained == [4, 5], out.stdout
    assert "(10 skipped as already done, 0 resumed, 2 ran)" in out.stdout
    same_as(tmp_path / "sweep", reference)


def test_the_plan_is_the_same_for_the_same_jobs_and_its_shards_cover_it_once():
    stacks = [[0, 3], [1, 4], [2, 5], [6], [7, 8], [9]]
    for n in (1, 2, 3, 4, 7):
        parts = [plan.shard_of(stacks, i, n) for i in range(n)]
        assert sorted(s[0] for p in parts for s in p) == [s[0] for s in stacks]  # each stack in one shard
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


@pytest.mark.parametrize("overrides, message", [
    (["hydra.launcher.shard=2", "hydra.launcher.num_shards=2"],
     "hydra.launcher.shard=2 is out of range for num_shards=2: shards are numbered 0 to 1"),
    (["hydra.launcher.shard=0"], "hydra.launcher.shard and hydra.launcher.num_shards go together"),
    (["hydra.launcher.executor=threads"], "hydra.launcher.executor must be inprocess, local or slurm (got threads)"),
    (["hydra.launcher.executor=local", "hydra.launcher.workers=0"], "hydra.launcher.workers must be at least 1"),
    (["hydra.launcher.executor=slurm", "hydra.launcher.slurm.max_array_size=0"],
     "hydra.launcher.slurm.max_array_size must be at least 1 (got 0)"),
])
def test_bad_launcher_values_are_one_line_before_any_job(tmp_path, overrides, message):
    if "executor=slurm" in overrides and shutil.which("sbatch") is None:
        pytest.skip("this refusal comes after the check for sbatch, which this machine has not")
    out = regbench("run", "-m", "hydra/launcher=stacked", "reg=none,l2", *overrides, "hydra.sweep.dir=sweep",
                   cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert lines[0].startswith(f"regbench: error: {message}") and lines[1:] == ["regbench: nothing was run"], lines
    assert not (tmp_path / "sweep").exists()


def test_slurm_without_sbatch_on_the_path_is_one_line(tmp_path):
    bin_dir = Path(sys.executable).parent  # the venv's: regbench and python, no SLURM commands
    env = {**os.environ, "PATH": str(bin_dir)}
    out = regbench("run", "-m", "hydra/launcher=stacked", "reg=none,l2", "hydra.launcher.executor=slurm",
                   "hydra.sweep.dir=sweep", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "regbench: error: hydra.launcher.executor=slurm submits to SLURM, and this machine has no `sbatch` on the "
        "PATH: run it from the cluster's login node, or here with hydra.launcher.executor=local",
        "regbench: nothing was run"]
    assert not (tmp_path / "sweep").exists()


def test_an_element_on_a_node_that_does_not_see_the_sweep_folder_says_so_in_one_line(tmp_path):
    from hydra.core.singleton import Singleton

    from submitit.core.utils import FailedJobError

    from hydra_plugins.regbench_stacked_launcher.cluster import _said
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import StackedLauncher

    launcher = StackedLauncher(executor="slurm")
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "not-here")}}})
    # an Exception, not a SystemExit: submitit hands only those back to the submitting process. (By
    # name: Hydra's plugin scan executes the module again in place, and its classes with it.)
    with pytest.raises(RuntimeError) as raised:
        launcher([(["reg=none"], 0)], Singleton.get_state())
    assert type(raised.value).__name__ == "FolderNotSeen"
    said = str(raised.value)
    assert said.startswith(f"regbench: error: the sweep folder {tmp_path / 'not-here'} has no .regbench/plan.json "
                           "on this node") and "\n" not in said
    # as the submitting process reads it: submitit's FailedJobError holding the element's traceback
    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
             f"hydra_plugins.regbench_stacked_launcher.stacked_launcher.FolderNotSeen: {said}")
    failed = FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n"
                            "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'")
    assert _said(failed) == said
    other = FailedJobError("Job (task=0) failed during processing with trace:\n----------------------\n"
                           "Traceback (most recent call last):\nValueError: bad\n----------------------\n"
                           "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'")
    assert _said(other) == "ValueError: bad"


def test_the_wait_for_elements_ends_on_their_successful_results_only(tmp_path):
    """The waiting command returns once every element has written its successful result
    (submitit's result pickle, written last), without waiting for squeue to forget them; a
    failed element's result (one SLURM may requeue) or none at all leaves it to squeue."""
    import pickle
    from types import SimpleNamespace

    from hydra_plugins.regbench_stacked_launcher.cluster import _succeeded

    def element(name: str) -> SimpleNamespace:
        return SimpleNamespace(paths=SimpleNamespace(result_pickle=tmp_path / f"{name}_result.pkl"))

    known: dict = {}
    done, failed, running = element("1_0"), element("1_1"), element("1_2")
    done.paths.result_pickle.write_bytes(pickle.dumps(("success", [])))
    failed.paths.result_pickle.write_bytes(pickle.dumps(("error", "Traceback ...")))
    assert [_succeeded(e, known) for e in (done, failed, running)] == [True, False, False]
    failed.paths.result_pickle.write_bytes(pickle.dumps(("success", [])))  # the requeued element succeeded
    os.utime(failed.paths.result_pickle, ns=(0, 1))  # another mtime, as a later write has
    assert _succeeded(failed, known)


def test_an_element_asks_for_memory_and_time_by_its_stack_and_long_arrays_are_cut_in_chunks():
    from hydra_plugins.regbench_stacked_launcher.cluster import chunks, element_mem_gb, element_minutes

    conf = {"mem_gb": None, "mem_gb_base": 1.0, "mem_gb_per_member": 0.05, "timeout_min": 60,
            "timeout_min_per_member": 0.5}
    assert [element_mem_gb(conf, k) for k in (1, 2, 20, 21, 64)] == [2, 2, 2, 3, 5]  # whole GB, rounded up
    assert element_mem_gb({**conf, "mem_gb": 7.5}, 64) == 8  # fixed by the user
    assert [element_minutes(conf, k) for k in (1, 64)] == [61, 92]
    assert element_minutes({"timeout_min": 30}, 64) == 30
    # 10,000 jobs in stacks of 64 are 157 elements; under a maximum array size of 50, four chunks
    elements = -(-10_000 // 64)
    assert elements == 157 and [len(c) for c in chunks(elements, 50)] == [50, 50, 50, 7]


def test_slurm_without_submitit_installed_is_one_line(monkeypatch):
    import importlib.util

    from regbench.cli.callbacks import launcher_problem

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else real(name, *a))
    launcher = OmegaConf.create({"_target_": "hydra_plugins.regbench_stacked_launcher.stacked_launcher.StackedLauncher",
                                 "executor": "slurm", "max_stack": 64, "slurm": {}})
    assert launcher_problem(launcher) == (
        'hydra.launcher.executor=slurm needs submitit: pip install -e ".[launchers]" (or pip install submitit)', 1)


GPU_APP = """
import os
import time

import hydra


@hydra.main(version_base="1.1", config_path=None)
def app(cfg):
    open("device.txt", "w").write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}")
    time.sleep(1)  # long enough that both workers take jobs


if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_local_workers_are_spread_over_the_gpus_given_one_each(tmp_path):
    """Checked with the CUDA_VISIBLE_DEVICES each worker's jobs see (no GPU needed): four jobs over
    the GPUs 3 and 5, one worker each; each worker's jobs see its GPU only."""
    (tmp_path / "app.py").write_text(GPU_APP)
    out = subprocess.run([sys.executable, "app.py", "-m", "+a=1,2,3,4", "hydra/launcher=stacked",
                          "hydra.launcher.executor=local", "hydra.launcher.gpus=[3,5]", "hydra.sweep.dir=sweep"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stacked: 4 stacks over 2 worker processes on GPUs 3, 5" in out.stdout
    seen = [(tmp_path / "sweep" / str(n) / "device.txt").read_text().split() for n in range(4)]
    by_worker = {pid: {gpu for p, gpu in seen if p == pid} for pid, _ in seen}
    assert sorted(g for gpus in by_worker.values() for g in gpus) == ["3", "5"], seen  # one GPU per worker, both used


def test_a_shard_from_an_unset_environment_variable_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    out = regbench("run", "-m", "hydra/launcher=stacked", "hydra.launcher.shard=${oc.env:SLURM_ARRAY_TASK_ID}",
                   "hydra.launcher.num_shards=2", "reg=none,l2", "hydra.sweep.dir=sweep", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "regbench: error: hydra.launcher.shard=${oc.env:SLURM_ARRAY_TASK_ID} does not resolve here: "
        "\"Environment variable 'SLURM_ARRAY_TASK_ID' not found\"", "regbench: nothing was run"]


def test_a_report_before_any_planned_job_finished_says_how_many_are_pending(tmp_path):
    plan.write(tmp_path / "sweep", [{"num": n, "dir": str(n), "overrides": [f"seed={n}"]} for n in range(3)],
               [[0, 1], [2]], "slurm")
    out = regbench("report", "sweep", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        "regbench: note: sweep: none of its 3 planned jobs has a result yet (still running, waiting, or stopped; "
        "the sweep's command again runs the ones not running)")


def test_an_element_too_short_for_its_signal_delay_is_warned_of_in_one_line():
    """SLURM sends the time-limit signal up to 30 s (its check period) before it is due: an element
    of one minute asked to hear it 45 s early may hear it as it starts (seen: 0.5 s in, killed
    before submitit answered)."""
    from hydra_plugins.regbench_stacked_launcher.cluster import early_signal_warning

    warning = early_signal_warning({"signal_delay_s": 45}, [1, 5])
    assert warning is not None and "\n" not in warning
    assert warning.startswith("regbench: warning: SLURM checks time limits every 30 s") and "1 min" in warning
    assert early_signal_warning({"signal_delay_s": 20}, [1]) is None  # 10-40 s in: the test's elements
    assert early_signal_warning({"signal_delay_s": 90}, [2, 60]) is None  # the default delay, 2 minutes or more
    assert early_signal_warning({}, [1]) is not None  # the default 90 s in a 1-minute element
