"""submitit on clusters as users have them: no accounting database, and sbatch refusing requests.

- `quiet_watcher()`: submitit learns its jobs' states from `sacct`, which on a cluster without
  accounting (slurmdbd) prints "Slurm accounting storage is disabled" on the terminal at every
  poll, and submitit adds a "Bypassing sacct error" warning each time. The watcher returned
  here asks `sacct` with its output captured and, where it fails, `scontrol show job`, which
  every cluster answers (for some minutes after a job ends: MinJobAge).
- `refused(error)`: sbatch's refusal (memory a node lacks, a partition that does not exist, a
  limit) as regbench's one line.
- `SlurmLauncher`: Hydra's submitit SLURM launcher (`hydra/launcher=slurm`, regbench's preset
  builds on it) with both: a sweep without sacct noise, and a refused submission in one line.

Module-level imports stay light (Hydra imports every plugin module on start-up); submitit is
imported when a sweep is submitted.
"""

import contextlib
import io
import subprocess
import sys
import time
from typing import Any, Dict, List

_WATCHER: Any = None

def refused(error: BaseException) -> str:
    """The line that says why, from submitit's FailedJobError (sbatch's stderr): its 'error:' line."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return "sbatch: " + "; ".join(dict.fromkeys(said)) if said else (lines or [type(error).__name__])[-1]


def scontrol_info(array_ids: List[str]) -> Dict[str, Dict[str, str]]:
    """submitit's job info ({"<job>_<task>" or "<job>": {"JobID", "State", "NodeList"}}) from
    `scontrol show job -o`, for the jobs it still knows."""
    info: Dict[str, Dict[str, str]] = {}
    for job_id in array_ids:
        try:
            out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                                 timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.stdout.splitlines():
            fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
            if "JobState" not in fields:
                continue
            task = fields.get("ArrayTaskId")
            key = f"{fields['ArrayJobId']}_{task}" if task and "ArrayJobId" in fields and task.isdigit() else fields["JobId"]
            info[key] = {"JobID": key, "State": fields["JobState"], "NodeList": fields.get("NodeList", "")}
    return info


def quiet_watcher() -> Any:
    """A submitit SlurmInfoWatcher that prints nothing (see the module's doc), made once."""
    global _WATCHER
    if _WATCHER is not None:
        return _WATCHER
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QuietWatcher(SlurmInfoWatcher):
        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                out = subprocess.run(command, capture_output=True, timeout=120)
                ok = out.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                self._info_dict.update(self.read_info(out.stdout))
            else:  # no accounting: the controller's own memory of the jobs
                self._info_dict.update(scontrol_info(sorted({x.split("_")[0] for x in self._registered - self._finished})))
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

    _WATCHER = QuietWatcher(delay_s=60)
    return _WATCHER


def install_quiet_watcher() -> None:
    """Every SlurmJob made from now on asks the quiet watcher."""
    from submitit.slurm import slurm

    if not isinstance(slurm.SlurmJob.watcher, type(quiet_watcher())):
        slurm.SlurmJob.watcher = quiet_watcher()


@contextlib.contextmanager
def submission() -> Any:
    """Around one sbatch call through submitit: what submitit prints of sbatch's stderr is held
    back, and a refusal ends the command with regbench's one line (exit 2: a request the cluster
    cannot meet is a value to change)."""
    from submitit.core.utils import FailedJobError

    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except FailedJobError as e:
        print(f"regbench: error: sbatch refused the submission: {refused(e)}; nothing was submitted by this "
              "request (change the value it names: hydra.launcher...)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _HydraSlurmLauncher
except ImportError:  # the launchers extra is not installed: the preset says so before any job
    _HydraSlurmLauncher = None

if _HydraSlurmLauncher is not None:

    class SlurmLauncher(_HydraSlurmLauncher):  # type: ignore[misc, valid-type]
        """Hydra's submitit SLURM launcher, quiet without accounting and one line on a refusal."""

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
            import submitit

            install_quiet_watcher()
            submit = submitit.AutoExecutor.map_array

            def map_array(executor: Any, fn: Any, *iterables: Any) -> Any:
                with submission():
                    return submit(executor, fn, *iterables)

            submitit.AutoExecutor.map_array = map_array  # only for this launch: put back below
            try:
                return super().launch(job_overrides, initial_job_idx)
            finally:
                submitit.AutoExecutor.map_array = submit
