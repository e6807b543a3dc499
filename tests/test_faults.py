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
from pathlib import Path

import pytest
import torch

from regbench.checkpoint import CHECKPOINT_FILE
from regbench.runner import run
from tests.conftest import TINY, regbench

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


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


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


