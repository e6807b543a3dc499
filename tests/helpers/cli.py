"""The installed `regbench` console script in a subprocess: run to its end, or started to be
killed; and a process that holds run folders' locks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def regbench(*args: str, cwd: Path, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Runs the installed `regbench` console script in a subprocess."""
    exe = shutil.which("regbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "regbench", *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    # Hydra turns an exception in a callback into a warning and goes on: the sweep's checks or
    # its report would be skipped without a failing exit code. Every CLI test watches for it.
    assert "Callback SweepSummary" not in out.stderr, out.stderr
    return out


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    exe = shutil.which("regbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "regbench", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def hold_in_another_process(*folders: Path) -> subprocess.Popen:
    """A process that holds the locks of `folders` until it is killed (once it has printed `held`)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from contextlib import ExitStack; from regbench.engine.folderlock import hold\n"
                               "with ExitStack() as s:\n"
                               "    [s.enter_context(hold(Path(f))) for f in sys.argv[1:]]\n"
                               "    print('held', flush=True); time.sleep(120)",
                               *map(str, folders)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
