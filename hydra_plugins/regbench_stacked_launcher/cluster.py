"""`hydra.launcher.executor=slurm`: each stack of the sweep's plan is one element of a SLURM job
array, submitted through submitit.

- Resources follow the stack: its memory is `mem_gb_base + mem_gb_per_member x members` (unless
  `mem_gb` fixes it) and its time `timeout_min + timeout_min_per_member x members`, so the
  stacks of one size share an array and a smaller last stack asks for less; each element asks
  for `gpus_per_node` GPUs (a stack trains on one device) and `cpus_per_task` cores.
- An array holds at most `max_array_size` elements; a longer one is submitted in chunks, each
  chunk starting after the one before it has ended (`--dependency=afterany`), so that at most
  `array_parallelism` elements run at any time, and none of it needs this process to stay.
- Re-launching the same command submits only the stacks that have a job without a result;
  the stacks whose jobs are all finished are reported here, in this process, as already done.
- An element that reaches its time limit or is preempted is requeued (submitit's checkpoint
  hook, at most `max_num_timeout` times); its stack continues from its members' checkpoints.
- With `wait` (the default) this process waits for every element and returns their jobs'
  results, as Hydra's submitit launcher does; an element that ended without finishing (cancelled,
  its node failed) is one line, its finished jobs stay finished and re-launching runs the rest.

Module-level imports stay light; submitit is imported when a sweep is submitted.
"""

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Tuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

Unit = List[Tuple[List[str], int]]


def element_mem_gb(conf: dict, members: int) -> int:
    """The memory an element of `members` jobs asks for, in whole GB."""
    if conf.get("mem_gb") is not None:
        return max(1, math.ceil(float(conf["mem_gb"])))
    return max(1, math.ceil(float(conf.get("mem_gb_base", 1.0)) + float(conf.get("mem_gb_per_member", 0.05)) * members))


# slurmctld checks job time limits every PERIODIC_TIMEOUT (30 s) and sends the --signal as soon as
# it is due within that period (sbatch's manual: "may be sent up to 60 seconds earlier").
SLURM_SIGNAL_RESOLUTION_S = 30


def early_signal_warning(conf: dict, minutes: list[int]) -> str | None:
    """A warning when an element of one of these time limits may hear its time-limit signal as it
    starts: requeued with nothing trained, or, in its first second, killed before submitit answers."""
    delay = int(conf.get("signal_delay_s", 90))
    short = sorted(m for m in set(minutes) if m * 60 < delay + SLURM_SIGNAL_RESOLUTION_S)
    if not short:
        return None
    return (f"regbench: warning: SLURM checks time limits every {SLURM_SIGNAL_RESOLUTION_S} s and may send the "
            f"time-limit signal that much before it is due: an element of {short[0]} min with "
            f"signal_delay_s={delay} may hear it as it starts; give it more time (hydra.launcher.slurm.timeout_min) "
            "or a smaller signal_delay_s")


def element_minutes(conf: dict, members: int) -> int:
    """The wall-time limit an element of `members` jobs asks for, in whole minutes."""
    return max(1, math.ceil(int(conf.get("timeout_min", 60)) + float(conf.get("timeout_min_per_member", 0.0)) * members))


def chunks(n: int, size: int) -> list[range]:
    """Index ranges of at most `size` covering 0..n-1."""
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def _unfinished(launcher: Any, unit: Unit) -> bool:
    from regbench.jobs import as_job, finished_result, task_config

    for overrides, num in unit:
        sweep_config = launcher._compose(overrides, num)
        as_job(sweep_config, num)
        out = Path(str(sweep_config.hydra.runtime.output_dir))
        if finished_result(task_config(sweep_config), out) is None:
            return True
    return False


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


ELEMENTS_FILE = "elements.json"  # beside the plan: stack (its first job number) -> the SLURM element that runs it


def _elements(sweep_dir: Path) -> dict[str, str]:
    from regbench import plan

    try:
        return dict(json.loads((sweep_dir / plan.PLAN_DIR / ELEMENTS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _record_elements(sweep_dir: Path, new: dict[str, str]) -> None:
    from regbench import plan

    path = sweep_dir / plan.PLAN_DIR / ELEMENTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**_elements(sweep_dir), **new}, indent=1) + "\n")
    os.replace(tmp, path)


def _live(element_ids: list[str]) -> set[str]:
    """Those of `element_ids` (`<array>_<index>`) that SLURM still has queued, running or requeued."""
    if not element_ids:
        return set()
    arrays = sorted({e.split("_")[0] for e in element_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split()) & set(element_ids) if out.returncode == 0 else set()


def submit(launcher: Any, items: list[Unit], sweep_dir: Path) -> list[JobReturn]:
    """Submits the units with an unfinished job as array elements; returns the jobs' results."""
    try:
        import submitit

        from hydra_plugins.regbench_stacked_launcher import quiet_slurm
    except ImportError:
        raise SystemExit("regbench: error: hydra.launcher.executor=slurm needs submitit: "
                         "pip install -e \".[launchers]\" (or pip install submitit)") from None
    if shutil.which("sbatch") is None:
        raise SystemExit("regbench: error: hydra.launcher.executor=slurm submits to SLURM, and this machine has "
                         "no `sbatch` on the PATH: run it from the cluster's login node, or here with "
                         "hydra.launcher.executor=local")
    conf = launcher.slurm
    todo = [u for u in items if _unfinished(launcher, u)]
    done = [u for u in items if u not in todo]
    # A re-launch while an earlier launch's elements still wait or run: those stacks are theirs.
    recorded = _elements(sweep_dir)
    live = _live([recorded[str(u[0][1])] for u in todo if str(u[0][1]) in recorded])
    running = [u for u in todo if recorded.get(str(u[0][1])) in live]
    todo = [u for u in todo if u not in running]
    runs: list[JobReturn] = []
    if done:  # each reports "already done" in this process, as in-process stacks do
        print(f"stacked: {len(done)} of {_n(len(items), 'stack')} already finished: not submitted", flush=True)
        for unit in done:
            runs += launcher._run([launcher._compose(o, n) for o, n in unit])
    if running:
        print(f"stacked: {_n(len(running), 'stack')} still queued or running as SLURM elements of an earlier launch "
              f"({', '.join(sorted(recorded[str(u[0][1])] for u in running))}): not submitted again", flush=True)
    state = Singleton.get_state()
    submitted: list[tuple[Any, Unit]] = []
    arrays = 0
    executor = submitit.AutoExecutor(folder=str(conf.get("submitit_folder") or sweep_dir / ".submitit/%j"),
                                     cluster="slurm", slurm_max_num_timeout=int(conf.get("max_num_timeout", 3)),
                                     slurm_python=conf.get("python") or None)
    by_size: dict[tuple[int, int], list[Unit]] = {}  # (GB, minutes) -> the units that ask for them: one array each
    for unit in todo:
        by_size.setdefault((element_mem_gb(conf, len(unit)), element_minutes(conf, len(unit))), []).append(unit)
    warning = early_signal_warning(conf, [minutes for _, minutes in by_size])
    if warning:
        print(warning, file=sys.stderr, flush=True)
    previous: str | None = None
    size = max(1, int(conf.get("max_array_size", 1000)))
    for (mem, minutes), units in by_size.items():
        for part in chunks(len(units), size):
            extra = dict(conf.get("additional_parameters") or {})
            if previous is not None:  # one chunk after the other: the cap on running elements holds
                extra["dependency"] = f"afterany:{previous}"
            params = {
                "timeout_min": minutes,
                "cpus_per_task": int(conf.get("cpus_per_task", 2)),
                "mem_gb": mem,
                "slurm_array_parallelism": int(conf.get("array_parallelism", 32)),
                "slurm_signal_delay_s": int(conf.get("signal_delay_s", 90)),
                "slurm_additional_parameters": extra,
                "name": f"regbench-{sweep_dir.name}",
            }
            if conf.get("gpus_per_node") is not None:
                params["gpus_per_node"] = int(conf["gpus_per_node"])
            for key in ("partition", "account", "qos", "constraint", "setup"):
                if conf.get(key) is not None:
                    params[f"slurm_{key}"] = conf[key]
            executor.update_parameters(**params)
            chosen = [units[i] for i in part]
            try:
                with quiet_slurm.submission():  # sbatch's refusal (resources, partition, limits): one line
                    jobs = executor.map_array(launcher, chosen, [state] * len(chosen))
            except SystemExit:
                if submitted:  # said after the refusal's line: those elements run on
                    print(f"stacked: the {_n(len(submitted), 'stack')} submitted before it run on "
                          f"({', '.join(sorted({str(j.job_id).split('_')[0] for j, _ in submitted}))})",
                          file=sys.stderr, flush=True)
                raise
            arrays += 1
            previous = str(jobs[0].job_id).split("_")[0]
            submitted += list(zip(jobs, chosen))
            _record_elements(sweep_dir, {str(u[0][1]): str(j.job_id) for j, u in zip(jobs, chosen)})
    ids = sorted({str(j.job_id).split("_")[0] for j, _ in submitted})
    if submitted:
        print(f"stacked: {_n(len(submitted), 'stack')} submitted as {arrays} SLURM array{'s' if arrays > 1 else ''} "
              f"({', '.join(ids)}; logs in {Path(str(executor.folder)).parent})", flush=True)
    if not submitted and not running:
        return runs
    if not conf.get("wait", True):
        print(f"stacked: not waiting (hydra.launcher.slurm.wait=false): `regbench report {sweep_dir}` reports "
              "what has finished and how many jobs are pending; the same command again submits what is left "
              "once these elements have ended", flush=True)
        return runs
    _wait(ids + sorted({recorded[str(u[0][1])].split("_")[0] for u in running}),
          [job for job, _ in submitted] if not running else [])
    lost = 0
    failed: dict[str, list[str]] = {}
    for job, unit in submitted:
        nums = [n for _, n in unit]
        if not job.paths.result_pickle.exists():  # cancelled, its node failed, out of memory: its finished members stay
            lost += 1
            print(f"stacked: SLURM element {job.job_id} (jobs {_ranges(nums)}) ended without finishing "
                  f"({_state(str(job.job_id))}; its log: {job.paths.stderr})", file=sys.stderr, flush=True)
            continue
        try:
            runs += job.results()[0]
        except Exception as e:  # the element's own failure, raised again here
            lost += 1
            failed.setdefault(_said(e), []).append(str(job.job_id))
    for said, elements in failed.items():  # the same cause (a folder the nodes do not see) once, not per element
        print(f"stacked: SLURM element{'s' if len(elements) > 1 else ''} {', '.join(elements)} failed: {said}",
              file=sys.stderr, flush=True)
    for unit in running:  # an earlier launch's elements: their jobs report here once finished
        if _unfinished(launcher, unit):
            lost += 1
            print(f"stacked: SLURM element {recorded[str(unit[0][1])]} (jobs {_ranges([n for _, n in unit])}) ended "
                  "without finishing", file=sys.stderr, flush=True)
        else:
            runs += launcher._run([launcher._compose(o, n) for o, n in unit])
    if lost:
        print(f"stacked: {_n(lost, 'element')} ended without finishing; their finished jobs are kept: the same command "
              "again submits only the stacks with jobs left", file=sys.stderr, flush=True)
    return runs


# How often the elements' result files are looked for while waiting (a stat each; squeue is asked
# every 0.5-5 s): the last element's end is seen about this soon, not at the next squeue.
RESULTS_POLL_S = 0.2


def _succeeded(job: Any, known: dict[str, Any]) -> bool:
    """Whether the element has written its successful result: submitit writes it last, in one
    rename, just before the element's process exits (a failed element's result, which a
    requeued one may replace, is not). `known` caches what was read, by the file's mtime."""
    path = job.paths.result_pickle
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return False
    if known.get(str(path), (None, False))[0] != mtime:
        try:
            with path.open("rb") as f:
                outcome = pickle.load(f)[0]
        except Exception:  # being replaced, or unreadable here: squeue decides
            return False
        known[str(path)] = (mtime, outcome == "success")
    return known[str(path)][1]


def _wait(array_ids: list[str], jobs: list[Any] = ()) -> None:
    """Until no element of the arrays is queued, running or requeued, or every one of `jobs`
    (this launch's elements, when it waits for no other launch's) has written its successful
    result: an element is listed as COMPLETING for a while after its process has ended, and
    squeue is asked every 0.5-5 s, where a result file is seen within RESULTS_POLL_S. Asks
    `squeue`, which answers on any cluster, where submitit's own polling asks `sacct`, which
    prints warnings under every poll on clusters without accounting."""
    failures, started = 0, time.monotonic()
    known: dict[str, Any] = {}
    while True:
        if jobs and all(_succeeded(job, known) for job in jobs):
            return
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(array_ids)], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0:
            failures = 0
            if not out.stdout.strip():
                return
        elif out is not None and "Invalid job id" in out.stderr:  # every element gone and forgotten
            return
        else:
            failures += 1
            if failures >= 30:
                print("stacked: squeue has not answered 30 times: not waiting any longer; the elements go on, "
                      "`regbench report` reports them as they finish", file=sys.stderr, flush=True)
                return
        pause = min(5.0, 0.5 + (time.monotonic() - started) / 30)  # short sweeps end soon after their last element
        until = time.monotonic() + pause
        while jobs and time.monotonic() < until - RESULTS_POLL_S:  # the results meanwhile, more often
            time.sleep(RESULTS_POLL_S)
            if all(_succeeded(job, known) for job in jobs):
                return
        time.sleep(max(0.0, until - time.monotonic()))


def _state(job_id: str) -> str:
    """The element's state as `scontrol` still knows it (for a few minutes after it ends), or 'state unknown'."""

    try:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "state unknown"
    for word in out.split():
        if word.startswith("JobState="):
            reason = next((w for w in out.split() if w.startswith("Reason=")), "")
            return f"{word.split('=', 1)[1]}" + (f", {reason.split('=', 1)[1]}" if reason and "None" not in reason else "")
    return "state unknown"


def _ranges(nums: list[int]) -> str:
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _ranges as ranges

    return ranges(nums)


def _said(error: BaseException) -> str:
    """An element's failure in one line: regbench's own `regbench: error: ...` line where the
    element's traceback (submitit's FailedJobError) holds one, else its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    ours = [line[line.index("regbench: error: "):] for line in lines if "regbench: error: " in line]
    if ours:
        return ours[-1]
    trace = [line for line in lines if not set(line) <= set("-") and not line.startswith("You can check full logs")]
    return (trace or [type(error).__name__])[-1]
