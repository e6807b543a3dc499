"""Stopping a run at an epoch: a Ctrl-C in-process after an epoch's metrics.csv row (a lone run)
or at the start of an epoch (a stack), and a SIGKILL of a `regbench` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from regbench.engine import checkpoint, steps
from regbench.results import MetricsWriter
from tests.helpers.cli import regbench, start
from tests.helpers.compare import ends_alike
from tests.helpers.rundirs import epochs_in

# Long enough to be killed mid-way, short enough for the suite: ~40 small epochs, each
# checkpointed (trainer.checkpoint_seconds=0; the default writes last.pt every 30 s at most).
RESUMABLE = ["reg=[dropout,l1]", "trainer.patience=8", "trainer.max_epochs=40", "dataset.train_size=300",
             "model.hidden_sizes=[64]", "trainer.checkpoint_seconds=0"]


def ctrl_c_after_row(monkeypatch, epoch: int) -> Callable[[], None]:
    """Each epoch takes one second on a fake clock (checkpoint.Budget's: with
    trainer.checkpoint_seconds=2.5 last.pt is written after epochs 3, 6, 9...), and the next run
    stops like a Ctrl-C right after epoch `epoch`'s metrics.csv row, before its checkpoint.
    Returns `let_run`: after it runs write their rows as usual (the fake clock stays, still)."""
    now = [0.0]
    budget, write = checkpoint.Budget, MetricsWriter.write
    monkeypatch.setattr(checkpoint, "Budget", lambda seconds: budget(seconds, clock=lambda: now[0]))

    def write_then_tick(self, row):
        write(self, row)
        now[0] += 1.0
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(MetricsWriter, "write", write_then_tick)
    return lambda: monkeypatch.setattr(MetricsWriter, "write", write)


def interrupt_stack_after(monkeypatch, epochs: int) -> None:
    """Makes the next stack stop like a Ctrl-C at the start of epoch `epochs + 1`."""
    real, calls = steps.train_epoch, []

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) > epochs:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "train_epoch", counting)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILLs the process group as soon as `ready()` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    pytest.fail("the run finished or hung before it could be killed mid-way")


def killed_and_clean(args: list[str], tmp_path: Path, epochs: int) -> tuple[dict, dict]:
    """`regbench run *args` SIGKILLed in tmp_path/killed once metrics.csv has `epochs` rows and
    last.pt exists, then rerun there (it must resume) and run once more, never killed, in
    tmp_path/clean. Checks that the two end alike (result.json but for its timing, metrics.csv
    but for its seconds, bit for bit) and returns their result.json (killed, clean)."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start(["run", *args, f"hydra.run.dir={killed}"], tmp_path)
    kill_when(proc, lambda: epochs_in(killed / "metrics.csv") >= epochs and (killed / checkpoint.CHECKPOINT_FILE).exists())
    assert not (killed / "result.json").exists()
    resumed = regbench("run", *args, f"hydra.run.dir={killed}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint of epoch" in resumed.stdout
    assert regbench("run", *args, f"hydra.run.dir={clean}", cwd=tmp_path).returncode == 0
    a, b = (json.loads((d / "result.json").read_text()) for d in (killed, clean))
    ends_alike(a, killed, b, clean)
    return a, b
