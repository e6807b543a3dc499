"""Faults end in one line, and nothing already computed is lost: a read-only or full file
system, signals, a second process, bad values that only a library would have noticed."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from regbench.engine.checkpoint import CHECKPOINT_FILE
from regbench.engine.folderlock import LOCK_FILE
from regbench.engine.runner import run
from tests.helpers.cli import regbench
from tests.helpers.configs import TINY

LONG = ["reg=l2", "trainer.max_epochs=100000", "trainer.patience=null", "dataset.train_size=300", "model.hidden_sizes=[32]"]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    exe = shutil.which("regbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "regbench", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_epochs(folder: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if len((folder / "metrics.csv").read_text().splitlines()) - 1 >= n:
                return
        except OSError:
            pass
        time.sleep(0.02)
    pytest.fail(f"the run did not reach epoch {n}: {proc.poll()}")


@contextmanager
def small_fs(path: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted on `path` (read-only with `read_only`); the test is skipped,
    saying why, where this machine refuses the mount (it needs root, CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount refused'})")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave: int) -> None:
    """Fills the file system `fs` until about `leave` bytes are free."""
    stat = os.statvfs(fs)
    free = stat.f_bavail * stat.f_frsize
    with open(fs / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_sigterm_finishes_the_epoch_checkpoints_it_and_the_printed_command_resumes(tmp_path):
    """SIGTERM (kill, SLURM, docker stop) as the first Ctrl-C: the epoch ends and is
    checkpointed, one line says how to resume (exit 143); that line, pasted into a shell,
    resumes, even for a folder whose name Hydra reads only in quotes."""
    folder = "run é ü 'q' [1]"
    proc = start(["run", *LONG, "hydra.run.dir='run é ü \\'q\\' [1]'"], tmp_path)  # quoted for Hydra, as it must be
    wait_for_epochs(tmp_path / folder, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("regbench: terminated (SIGTERM) after epoch ") and "Traceback" not in err
    epoch = int(last.split("after epoch ")[1].split(",")[0])
    assert f"checkpointed in {tmp_path / folder}; to resume: regbench run " in last
    assert len(torch.load(tmp_path / folder / CHECKPOINT_FILE, weights_only=True)["member"]["fit"]["history"]) == epoch
    command = last.split("; to resume: ")[1]
    resumed = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    wait_for_epochs(tmp_path / folder, epoch + 2, resumed)
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 143, err
    assert f"resuming from the checkpoint of epoch {epoch} in {tmp_path / folder}" in out
    assert "ignoring" not in out and err.strip().splitlines()[-1].endswith(command.split(" ", 2)[2])


@pytest.mark.parametrize("path", ["outputs/runs/x", "my run", "outputs/résumé", "a'b", "x${y}", "a,b=c", "[x]",
                                  "c:\\dir\\", "日本 語", "q\"r", "$HOME/x", "null", "1e3"])
def test_the_resume_override_reads_back_as_the_same_folder(path):
    """What Hydra's parser (then OmegaConf's resolution) makes of the override the resume line
    holds, for any folder name: the same folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from regbench.engine.interrupt import Interrupted, hydra_value, report

    override = OverridesParser.create().parse_override(f"hydra.run.dir={hydra_value(path)}")
    assert OmegaConf.create({"dir": override.value()}).dir == path
    line = report(Interrupted("after epoch 1", resume=f"hydra.run.dir={hydra_value(path)}"), ["reg=l1"])
    assert shlex.split(line.split("; to resume: ")[1])[-1] == f"hydra.run.dir={hydra_value(path)}"


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_busy_run_folder_keeps_the_record_of_the_run_that_trains_there(tmp_path):
    """A second process on a folder where a run is training is refused before it writes
    anything: the first run's `.hydra/` still describes the first run."""
    proc = start(["run", *LONG, "hydra.run.dir=busy"], tmp_path)
    try:
        wait_for_epochs(tmp_path / "busy", 2, proc)
        record = {p.name: p.read_bytes() for p in (tmp_path / "busy" / ".hydra").iterdir()}
        assert set(record) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        second = regbench("run", "reg=l1", "seed=3", "trainer.max_epochs=2", "hydra.run.dir=busy", cwd=tmp_path)
        assert second.returncode == 2
        assert one_line(second.stderr).startswith(f"regbench: error: {tmp_path / 'busy'} is in use by another regbench "
                                                  f"process (pid {proc.pid}")
        assert {p.name: p.read_bytes() for p in (tmp_path / "busy" / ".hydra").iterdir()} == record
        assert b"seed: 0" in record["config.yaml"] and b"reg=l2" in record["overrides.yaml"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_the_record_is_what_hydra_itself_writes(tmp_path):
    """regbench writes `.hydra/` once the folder's lock is held; the files are those Hydra
    writes when it writes them itself (hydra.output_subdir=.hydra), the overrides aside."""
    ours = regbench("run", *TINY, "hydra.run.dir=ours", cwd=tmp_path)
    hydras = regbench("run", *TINY, "hydra.run.dir=theirs", "hydra.output_subdir=.hydra", cwd=tmp_path)
    assert ours.returncode == hydras.returncode == 0, ours.stderr + hydras.stderr
    from omegaconf import OmegaConf

    a, b = (tmp_path / "ours" / ".hydra", tmp_path / "theirs" / ".hydra")
    assert (a / "config.yaml").read_text() == (b / "config.yaml").read_text()
    assert (a / "overrides.yaml").read_text() == (b / "overrides.yaml").read_text()
    ha, hb = (OmegaConf.load(d / "hydra.yaml").hydra for d in (a, b))
    assert ha.output_subdir == hb.output_subdir == ".hydra"
    assert ha.runtime.output_dir == str(tmp_path / "ours") and hb.runtime.output_dir == str(tmp_path / "theirs")
    for h in (ha, hb):
        h.overrides.hydra = [o for o in h.overrides.hydra if not o.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
        h.runtime.output_dir = h.run.dir = ""
        h.job.override_dirname = ""
    assert OmegaConf.to_yaml(ha) == OmegaConf.to_yaml(hb)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["seed=-1"], 2, "seed must be in [0, 4294967295] (got -1)"),
        (["dataset=synthetic_regression", "dataset.noise=-1"], 2, "dataset.noise must be >= 0 (got -1.0)"),
        (["dataset=synthetic", "dataset.n_informative=200"], 2,
         "dataset.n_informative must be in [2, dataset.n_features=100] (got 200)"),
        (["dataset=synthetic", "dataset.n_informative=1"], 2, "dataset.n_informative must be in [2, "),
    ],
    ids=["seed", "noise", "n_informative", "n_informative-low"],
)
def test_bad_values_that_a_library_would_refuse_get_one_line_and_no_folder(tmp_path, args, code, message):
    out = regbench("run", *args, cwd=tmp_path)
    assert out.returncode == code
    assert one_line(out.stderr).startswith(f"regbench: error: {message}")
    assert "n_samples" not in out.stderr or "dataset.n_samples" in out.stderr  # regbench's names, not scikit-learn's
    assert not (tmp_path / "outputs").exists()  # a refused single run leaves no folder, as a refused sweep


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], 2, "hydra.launcher.n_jobs must not be 0"),
        (["hydra/launcher=slurm"], 1, "hydra/launcher=slurm submits the jobs to a SLURM cluster, and this machine has no SLURM"),
    ],
    ids=["joblib-n_jobs-0", "slurm-off-a-cluster"],
)
def test_a_launcher_that_cannot_start_is_refused_before_any_job(tmp_path, args, code, message):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if "joblib" in args[0] else "hydra_plugins.hydra_submitit_launcher",
                        reason="the launchers extra is not installed")
    env = None
    if "slurm" in args[0] and shutil.which("srun"):  # a cluster's commands here (CI starts one): a PATH without them
        env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    out = regbench("run", "-m", *args, *TINY, "seed=0,1", cwd=tmp_path, env=env)
    assert out.returncode == code
    assert out.stderr.strip().splitlines() == [f"regbench: error: {out.stderr.split('regbench: error: ')[1].splitlines()[0]}",
                                                "regbench: nothing was run"]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_read_only_output_folder_gets_one_line(tmp_path):
    with small_fs(tmp_path / "ro", "1m", read_only=True) as ro:
        single = regbench("run", *TINY, f"hydra.run.dir={ro / 'run'}", cwd=tmp_path)
        assert single.returncode == 1
        assert one_line(single.stderr) == f"regbench: error: cannot write: {ro / 'run'} (Read-only file system)"
        assert not (ro / "run").exists()
        sweep = regbench("run", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={ro / 'sweep'}", cwd=tmp_path)
        assert sweep.returncode == 1 and "Read-only file system" in one_line(sweep.stderr)


def test_a_full_disk_at_start_gets_one_line_and_leaves_no_folder(tmp_path):
    with small_fs(tmp_path / "full", "1m") as fs:
        fill(fs, 0)
        out = regbench("run", *TINY, f"hydra.run.dir={fs / 'run'}", cwd=tmp_path)
        assert out.returncode == 1
        line = one_line(out.stderr)
        assert line.startswith("regbench: error: cannot write: ") and "(No space left on device)" in line
        assert not (fs / "run").exists()


def test_a_full_disk_during_training_loses_nothing_computed(tmp_path):
    """The checkpoint (~230 kB) does not fit: a warning naming the real cause, and training
    goes on; the model (~80 kB) does not fit either: the run says which file is missing;
    metrics.csv and result.json, small, are written."""
    with small_fs(tmp_path / "full", "1m") as fs:
        fill(fs, 48 * 1024)
        out = regbench("run", "reg=l2", "trainer.max_epochs=4", "trainer.patience=null", "dataset.train_size=300",
                       "model.hidden_sizes=[256]", "trainer.checkpoint_seconds=0", "save_model=true",
                       f"hydra.run.dir={fs / 'run'}", cwd=tmp_path)
        assert out.returncode == 1
        assert "unexpected pos" not in out.stdout + out.stderr and "Traceback" not in out.stderr
        warnings = [x for x in out.stdout.splitlines() if x.startswith("regbench: warning: could not write")]
        assert len(warnings) == 1 and f"{fs / 'run' / CHECKPOINT_FILE} after epoch 1 (No space left on device)" in warnings[0]
        assert "training goes on" in warnings[0]
        assert one_line(out.stderr) == f"regbench: error: not written in {fs / 'run'}: model.pt (No space left on device)"
        result = json.loads((fs / "run" / "result.json").read_text())
        assert result["status"] == "ok" and result["epochs_run"] == 4
        assert result["files_not_written"] == {"model.pt": "No space left on device"}
        assert len((fs / "run" / "metrics.csv").read_text().splitlines()) == 5
        assert not list((fs / "run").glob(".*.tmp")) and not (fs / "run" / "model.pt").exists()
        assert "val" in out.stdout and "test" in out.stdout  # the metrics were printed


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_full_disk_during_a_stacked_sweep_is_a_warning_and_every_result_is_written(tmp_path):
    """A member's share of the stack's checkpoint (~300 kB) does not fit: one warning naming the
    cause, the stack goes on (it does not fail over to lone runs), and every job's files are written."""
    with small_fs(tmp_path / "full", "2m") as fs:
        fill(fs, 160 * 1024)
        out = regbench("run", "-m", "hydra/launcher=stacked", "reg=l2", "reg.alpha=1e-4,1e-3", "dataset.split_seed=0",
                       "trainer.max_epochs=3", "trainer.patience=null", "dataset.train_size=300",
                       "model.hidden_sizes=[256]", "trainer.checkpoint_seconds=0", f"hydra.sweep.dir={fs / 'sweep'}",
                       cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        warnings = [x for x in out.stdout.splitlines() if x.startswith("regbench: warning: could not write")]
        assert len(warnings) == 1, out.stdout
        assert "a member's stack.pt after epoch 1 (No space left on device: " in warnings[0]
        assert "the stack goes on" in warnings[0] and "one by one" not in out.stdout + out.stderr
        assert "Traceback" not in out.stderr and "unexpected pos" not in out.stdout + out.stderr
        for job in ("0", "1"):
            result = json.loads((fs / "sweep" / job / "result.json").read_text())
            assert result["status"] == "ok" and result["epochs_run"] == 3 and result["stack_size"] == 2
            assert len((fs / "sweep" / job / "metrics.csv").read_text().splitlines()) == 4
            assert not list((fs / "sweep" / job).glob(".*.tmp"))


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_reusing_a_run_folder_with_another_configuration_is_refused_unless_asked(tmp_path):
    first = regbench("run", *TINY, "hydra.run.dir=r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "r" / "result.json").read_bytes()
    other = regbench("run", *TINY, "reg=l1", "hydra.run.dir=r", cwd=tmp_path)
    assert other.returncode == 2
    assert one_line(other.stderr) == (f"regbench: error: {tmp_path / 'r'} holds the finished result (ok) of another "
                                      "configuration (reg.alpha was 0.0, now 0.0001; reg.l1_ratio was 0.5, now 1.0): "
                                      "choose another hydra.run.dir, or add overwrite=true to replace it")
    assert (tmp_path / "r" / "result.json").read_bytes() == before
    again = regbench("run", *TINY, "hydra.run.dir=r", cwd=tmp_path)  # the same configuration: already done
    assert again.returncode == 0 and "already done" in again.stdout
    asked = regbench("run", *TINY, "reg=l1", "overwrite=true", "hydra.run.dir=r", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert json.loads((tmp_path / "r" / "result.json").read_text())["reg"] == "l1"


def test_temporary_files_of_a_killed_write_are_removed_when_the_job_finishes(tiny_cfg, tmp_path):
    left = [tmp_path / ".last.pt.k2j3h4.tmp", tmp_path / ".result.json.abc.tmp", tmp_path / ".stack.pt.x.tmp"]
    for tmp in left:
        tmp.write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert run(tiny_cfg(), tmp_path)["status"] == "ok"
    assert not any(t.exists() for t in left) and (tmp_path / "notes.tmp").exists()


def _sweep_while_another_process_finishes(tmp_path: Path, job: int, once_started: int) -> tuple[Path, subprocess.CompletedProcess]:
    """The 2-job sweep `seed=0,1` run from the shell while another process holds job `job`'s
    folder lock and, once this sweep has started job `once_started`, writes `job`'s result (a
    reference run's) and lets go. Returns (the sweep folder, the sweep's completed process)."""
    sweep = tmp_path / "sweep"
    args = ["run", "-m", "seed=0,1", *TINY, "trainer.max_epochs=30", "trainer.patience=null", f"hydra.sweep.dir={sweep}"]
    reference = tmp_path / "reference"
    assert regbench(*args[:-1], f"hydra.sweep.dir={reference}", cwd=tmp_path).returncode == 0
    other = subprocess.Popen([sys.executable, "-c", "import shutil, sys, time; from pathlib import Path\n"
                              "from regbench.engine.folderlock import hold\n"
                              "sweep, reference, job, started = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]\n"
                              "with hold(sweep / job):\n"
                              "    print('held', flush=True)\n"
                              "    while not (sweep / started / '.hydra').exists(): time.sleep(0.01)\n"
                              "    shutil.copy(reference / job / 'result.json', sweep / job / 'result.json')\n",
                              str(sweep), str(reference), str(job), str(once_started)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        out = regbench(*args, cwd=tmp_path)
        other.wait(timeout=60)
    finally:
        other.kill()
    return sweep, out


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_sweep_summary_counts_only_the_jobs_this_process_ran(tmp_path):
    """Another process holds job 0 while this sweep starts, and finishes it while this one
    trains job 1: the summary says so, instead of counting job 0 as its own."""
    sweep, out = _sweep_while_another_process_finishes(tmp_path, job=0, once_started=1)
    assert out.returncode == 0, out.stderr
    assert "[job 0] skipped: " in out.stdout
    assert "sweep done: 2 ok, 0 diverged, 0 failed (0 skipped as already done, 0 resumed, 1 ran, " \
           "1 run by another process meanwhile)" in out.stdout
    assert "sweep" not in (sweep / "0" / LOCK_FILE).read_text()  # the other process's lock, without this sweep's token


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_job_another_process_finished_meanwhile_is_not_counted_as_run_when_this_sweep_reports_it(tmp_path):
    """Another process finishes job 1 while this sweep trains job 0 and lets it go before this
    sweep reaches it: this sweep finds it done and only reports it (taking its lock to do so,
    which writes its own token into the lock file). The summary counts it as run by another
    process, not as run here, as it did (the overlap of two launches' SLURM elements did the
    same: a re-launch that waited for an earlier launch's elements counted their jobs as its own)."""
    sweep, out = _sweep_while_another_process_finishes(tmp_path, job=1, once_started=0)
    assert out.returncode == 0, out.stderr
    assert "[job 1] already done in " in out.stdout, out.stdout  # released before this sweep reached it
    assert "sweep done: 2 ok, 0 diverged, 0 failed (0 skipped as already done, 0 resumed, 1 ran, " \
           "1 run by another process meanwhile)" in out.stdout, out.stdout[-1500:]
