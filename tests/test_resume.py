"""Resuming: a killed run continues from last.pt to the same numbers; a re-run sweep skips
finished jobs, resumes interrupted ones and refuses a different job list."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from regbench.engine import checkpoint
from regbench.engine.checkpoint import CHECKPOINT_FILE
from regbench.engine.interrupt import Interrupted
from regbench.engine.member import NETWORK_STREAM
from regbench.results import MetricsWriter
from regbench.engine.runner import run
from tests.helpers.cli import hold_in_another_process, regbench, start
from tests.helpers.compare import ends_alike, same_except_timing
from tests.helpers.interrupt import RESUMABLE, ctrl_c_after_row, kill_when, killed_and_clean
from tests.helpers.rundirs import epochs_in


@pytest.mark.slow
def test_a_killed_run_resumes_to_bitwise_the_same_result(tmp_path):
    a, b = killed_and_clean(RESUMABLE, tmp_path, 4)
    assert a["resumed_from_epoch"] >= 3 and b["resumed_from_epoch"] is None
    assert not (tmp_path / "killed" / CHECKPOINT_FILE).exists()  # deleted when the run finished


def test_checkpoint_holds_the_whole_state_and_loads_with_weights_only(tiny_cfg, tmp_path):
    cfg = tiny_cfg("keep_checkpoint=true", "reg=dropout", "trainer.checkpoint_seconds=0")
    result = run(cfg, tmp_path)
    payload = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert payload["format"] == "regbench-checkpoint-2" and payload["config_hash"] == result["config_hash"]
    assert {"member", "rng", "seconds"} <= payload.keys()
    assert {"params", "buffers", "moments", "step", "fit", "order", "streams"} <= payload["member"].keys()
    # the masks' stream (the network's: before streams were named ones, the key "dropout")
    assert NETWORK_STREAM in payload["member"]["streams"]
    assert {"torch", "cuda", "numpy", "python"} <= payload["rng"].keys()
    assert len(payload["member"]["fit"]["history"]) == result["epochs_run"] - 1  # written after every epoch but the last


def test_with_a_time_budget_a_short_run_writes_no_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    writes = []
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda folder, *a: writes.append(a[1].members[0].state.epoch) or save(folder, *a))
    result = run(tiny_cfg("keep_checkpoint=true", "trainer.max_epochs=6", "trainer.patience=null",
                          "trainer.checkpoint_seconds=3600"), tmp_path / "budget")
    assert result["status"] == "ok" and result["epochs_run"] == 6
    assert writes == [] and not (tmp_path / "budget" / CHECKPOINT_FILE).exists()
    run(tiny_cfg("keep_checkpoint=true", "trainer.max_epochs=6", "trainer.patience=null",
                 "trainer.checkpoint_seconds=0"), tmp_path / "every")
    assert writes == [1, 2, 3, 4, 5]  # after every epoch but the last


@pytest.mark.parametrize("regs", ["[dropout,l1]", "[mixup,cutout,input_noise]", "[cutmix,label_smoothing]",
                                  "[ema,batchnorm,dropout]", "[swa,batchnorm,dropout] reg.swa=0.25 reg.swa_lr=1e-2",
                                  "[sam,batchnorm,dropout]"])
def test_an_interrupted_run_retrains_the_epochs_after_its_last_checkpoint(tiny_cfg, tmp_path, monkeypatch, regs):
    """Each epoch takes one second on a fake clock and the budget is 2.5 s, so last.pt is
    written after epochs 3 and 6; interrupted after epoch 8, the run resumes from epoch 6,
    trains 7 and 8 again, and metrics.csv holds each epoch once, as a run never interrupted
    (the regularizers' own random streams, mixing and erasing, included)."""
    args = ("trainer.max_epochs=12", "trainer.patience=null", *f"reg={regs}".split(), "trainer.checkpoint_seconds=2.5")
    clean = run(tiny_cfg(*args), tmp_path / "clean")
    folder = tmp_path / "interrupted"
    let_run = ctrl_c_after_row(monkeypatch, 8)  # Ctrl-C after epoch 8's row, before its checkpoint
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(*args), folder)
    assert epochs_in(folder / "metrics.csv") == 8 and not (folder / "result.json").exists()
    assert len(torch.load(folder / CHECKPOINT_FILE, weights_only=True)["member"]["fit"]["history"]) == 6
    let_run()
    resumed = run(tiny_cfg(*args), folder)
    assert resumed["resumed_from_epoch"] == 6
    assert pd.read_csv(folder / "metrics.csv")["epoch"].tolist() == list(range(1, 13))
    ends_alike(resumed, folder, clean, tmp_path / "clean")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a checkpoint at all", "unreadable"),
        ("foreign", "not a regbench checkpoint"),
        ("other-config", "written by a different configuration"),
        ("pickled-object", "unreadable"),
    ],
)
def test_a_corrupt_or_foreign_checkpoint_is_reported_and_the_run_starts_fresh(tiny_cfg, tmp_path, capsys, content, reason):
    path = tmp_path / CHECKPOINT_FILE
    if content == "foreign":
        torch.save({"weights": torch.ones(3)}, path)
    elif content == "other-config":
        other = tmp_path / "other"
        run(tiny_cfg("keep_checkpoint=true", "seed=5", "trainer.checkpoint_seconds=0"), other)
        shutil.copy(other / CHECKPOINT_FILE, path)
    elif content == "pickled-object":
        torch.save({"format": "regbench-checkpoint-1", "x": Path("/")}, path)  # weights_only refuses Path
    else:
        path.write_bytes(content)
    capsys.readouterr()
    result = run(tiny_cfg(), tmp_path)
    out = capsys.readouterr().out
    warning = [line for line in out.splitlines() if "ignoring" in line]
    assert len(warning) == 1 and reason in warning[0] and "starting fresh" in warning[0]
    assert result["status"] == "ok" and result["resumed_from_epoch"] is None
    fresh = run(tiny_cfg(), tmp_path / "fresh")
    assert result["metrics"] == fresh["metrics"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_same_report(tmp_path):
    sweep_args = ["run", "-m", "reg=l1,l2", "seed=0,1", *RESUMABLE[1:]]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start([*sweep_args, f"hydra.sweep.dir={killed}"], tmp_path)
    kill_when(proc, lambda: (killed / "0" / "result.json").exists() and epochs_in(killed / "1" / "metrics.csv") >= 3)
    again = regbench(*sweep_args, f"hydra.sweep.dir={killed}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout and "resuming from the checkpoint" in again.stdout
    assert "1 skipped as already done, 1 resumed, 2 ran" in again.stdout
    assert regbench(*sweep_args, f"hydra.sweep.dir={clean}", cwd=tmp_path).returncode == 0
    timing = [c for c in pd.read_csv(clean / "report.csv").columns if c.startswith("seconds.")]
    a, b = (pd.read_csv(d / "report.csv").drop(columns=timing) for d in (killed, clean))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slow
def test_a_rerun_refuses_a_different_job_list_and_reruns_failed_jobs(tmp_path):
    # A network that crashes once training starts gives a failed job (bad input, such as
    # model=cnn on a table, is refused before any job runs: tests/test_refusals.py).
    (tmp_path / "nets.py").write_text(
        "import math\nfrom torch import nn\n\n\nclass Crashes(nn.Linear):\n"
        "    def forward(self, x):\n        if self.training:\n            raise RuntimeError('out of memory')\n"
        "        return super().forward(x.flatten(1))\n\n\n"
        "def fine(input_shape, n_outputs):\n    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))\n\n\n"
        "def other(input_shape, n_outputs):\n    return fine(input_shape, n_outputs)\n\n\n"
        "def crashes(input_shape, n_outputs):\n    return Crashes(math.prod(input_shape), n_outputs)\n")
    sweep = tmp_path / "sweep"
    args = ["model=custom", "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}"]
    first = regbench("run", "-m", "model._target_=nets.crashes,nets.fine", *args, cwd=tmp_path)
    assert first.returncode == 1 and "1 ok, 0 diverged, 1 failed" in first.stdout  # the crashing job fails
    again = regbench("run", "-m", "model._target_=nets.crashes,nets.fine", *args, cwd=tmp_path)
    assert again.returncode == 1 and "1 skipped as already done, 0 resumed, 1 ran" in again.stdout
    other = regbench("run", "-m", "model._target_=nets.crashes,nets.other", *args, cwd=tmp_path)
    assert other.returncode == 2 and "holds a different sweep" in other.stderr
    assert "job 1 was" in other.stderr


def test_ctrl_c_finishes_the_epoch_checkpoints_it_and_a_rerun_ends_bit_for_bit(tiny_cfg, tmp_path, monkeypatch, ctrl_c_raises):
    """With the default 30 s budget a short run has no checkpoint yet: a plain KeyboardInterrupt
    would lose every epoch. Ctrl-C during epoch 5 ends that epoch, writes its checkpoint and
    stops; the rerun trains epochs 6-12 only and ends where a run never interrupted ends."""
    args = ("trainer.max_epochs=12", "trainer.patience=null", "reg=[dropout,l1]")
    clean = run(tiny_cfg(*args), tmp_path / "clean")
    folder = tmp_path / "interrupted"
    write = MetricsWriter.write

    def write_then_ctrl_c(self, row):
        if row["epoch"] == 5:
            signal.raise_signal(signal.SIGINT)  # lands before epoch 5 is over
        write(self, row)

    monkeypatch.setattr(MetricsWriter, "write", write_then_ctrl_c)
    with pytest.raises(Interrupted, match=f"after epoch 5, checkpointed in {folder}"):
        run(tiny_cfg(*args), folder)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back
    assert epochs_in(folder / "metrics.csv") == 5 and not (folder / "result.json").exists()
    assert len(torch.load(folder / CHECKPOINT_FILE, weights_only=True)["member"]["fit"]["history"]) == 5
    monkeypatch.setattr(MetricsWriter, "write", write)
    resumed = run(tiny_cfg(*args), folder)
    assert resumed["resumed_from_epoch"] == 5
    same_except_timing(resumed, clean)


def test_a_second_ctrl_c_stops_at_once(tiny_cfg, tmp_path, monkeypatch, ctrl_c_raises):
    write = MetricsWriter.write

    def ctrl_c_twice(self, row):
        write(self, row)
        if row["epoch"] == 2:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(MetricsWriter, "write", ctrl_c_twice)
    with pytest.raises(KeyboardInterrupt) as info:
        run(tiny_cfg("trainer.max_epochs=12", "trainer.patience=null"), tmp_path)
    assert not isinstance(info.value, Interrupted) and not (tmp_path / CHECKPOINT_FILE).exists()


def test_sigterm_twice_at_once_in_a_slurm_element_still_stops_after_the_epoch(tiny_cfg, tmp_path, monkeypatch):
    """SLURM's preemption delivers SIGTERM to an element's process twice, about 20 ms apart
    (slurmstepd's, then the one srun forwards; seen on the one-node cluster). In an element
    (`one_sigterm_within`, as the stacked launcher's SLURM elements set it) the second only
    repeats the first: the epoch ends and is checkpointed. Elsewhere it stops at once."""
    from regbench.engine import interrupt

    write = MetricsWriter.write

    def sigterm_twice(self, row):
        write(self, row)
        if row["epoch"] == 2:
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(MetricsWriter, "write", sigterm_twice)
    args = ("trainer.max_epochs=12", "trainer.patience=null")
    with interrupt.one_sigterm_within(5.0), pytest.raises(Interrupted, match="after epoch 2, checkpointed"):
        run(tiny_cfg(*args), tmp_path / "element")
    assert len(torch.load(tmp_path / "element" / CHECKPOINT_FILE, weights_only=True)["member"]["fit"]["history"]) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and interrupt._same_sigterm_s == [0.0]  # handed back
    with pytest.raises(KeyboardInterrupt) as info:
        run(tiny_cfg(*args), tmp_path / "terminal")
    assert isinstance(info.value, interrupt.Terminated) and not (tmp_path / "terminal" / CHECKPOINT_FILE).exists()


def test_ctrl_c_on_the_command_line_says_how_to_resume(tmp_path):
    """A real SIGINT to `regbench run`: one line with what was kept and the command that
    resumes it, exit code 130 (as a shell reports Ctrl-C)."""
    args = ["run", "reg=l2", "trainer.max_epochs=100000", "trainer.patience=null", "dataset.train_size=300",
            "model.hidden_sizes=[32]", "hydra.run.dir=my run"]
    exe = shutil.which("regbench")
    proc = subprocess.Popen([exe, *args] if exe else [sys.executable, "-m", "regbench", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while epochs_in(tmp_path / "my run" / "metrics.csv") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    epoch = int(last.split("after epoch ")[1].split(",")[0])
    assert last.startswith(f"regbench: interrupted after epoch {epoch}, checkpointed in {tmp_path / 'my run'}; to resume: ")
    assert last.endswith("regbench run reg=l2 trainer.max_epochs=100000 trainer.patience=null dataset.train_size=300 "
                         "'model.hidden_sizes=[32]' 'hydra.run.dir=my run'")  # quoted for a shell
    assert "Traceback" not in err
    assert len(torch.load(tmp_path / "my run" / CHECKPOINT_FILE, weights_only=True)["member"]["fit"]["history"]) == epoch


def test_a_folder_in_use_is_refused_before_anything_is_written(tiny_cfg, tmp_path):
    from regbench.engine import sweep as stacking
    from regbench.engine.folderlock import LOCK_FILE, FolderBusy, hold

    held = tmp_path / "held"
    with hold(held):  # one process may take its own folder's lock again (callbacks, then the runner)
        assert f"pid {os.getpid()}" in (held / LOCK_FILE).read_text()
        assert run(tiny_cfg(), held)["status"] == "ok"
    holder = hold_in_another_process(tmp_path / "busy")
    try:
        busy = tmp_path / "busy"
        with pytest.raises(FolderBusy, match=f"{busy} is in use by another regbench process \\(pid {holder.pid}"):
            run(tiny_cfg(), busy)
        with pytest.raises(FolderBusy):  # a stack with one member's folder in use does not start
            stacking.train([(tiny_cfg("reg=l2"), tmp_path / "free"), (tiny_cfg("reg=l1"), busy)])
        assert [p.name for p in busy.iterdir()] == [LOCK_FILE] and not (tmp_path / "free" / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(tiny_cfg(), busy)["status"] == "ok"  # released with the process


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_second_process_on_a_running_folder_gets_one_line_and_a_sweep_skips_that_job(tmp_path):
    """Refused before anything is written: not even the job's record `.hydra/`, which is the
    record of the run that holds the folder."""
    holder = hold_in_another_process(tmp_path / "run", tmp_path / "sweep" / "0")
    try:
        single = regbench("run", "trainer.max_epochs=2", "hydra.run.dir=run", cwd=tmp_path)
        assert single.returncode == 2 and single.stderr.strip().count("\n") == 0
        assert single.stderr.startswith(f"regbench: error: {tmp_path / 'run'} is in use by another regbench process (pid {holder.pid}")
        assert [p.name for p in (tmp_path / "run").iterdir()] == [".regbench.lock"]
        sweep = regbench("run", "-m", "reg.alpha=1e-4,1e-3", "reg=l2", "trainer.max_epochs=2", "hydra.sweep.dir=sweep",
                         cwd=tmp_path)
        assert sweep.returncode == 1
        assert f"[job 0] skipped: {tmp_path / 'sweep' / '0'} is in use by another regbench process" in sweep.stdout
        assert "sweep done: 1 ok, 0 diverged, 0 failed, 1 without a result" in sweep.stdout
        assert not (tmp_path / "sweep" / "0" / "result.json").exists() and (tmp_path / "sweep" / "1" / "result.json").exists()
        assert not (tmp_path / "sweep" / "0" / ".hydra").exists() and (tmp_path / "sweep" / "1" / ".hydra" / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
