"""A job of a run or a sweep, as regbench's job function (regbench.cli.app), its Hydra callbacks
(regbench.cli.callbacks) and the stacked launcher (hydra_plugins.regbench_stacked_launcher) all
see it: its config as Hydra hands it to the task, what its folder holds already, torch's thread
count for it, the value a sweeper optimises, and the jobs refused as they started.

It sits below the command line and the launcher, which both import it, and imports neither.
Module level imports stay light: the app imports it for `regbench --help` too.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regbench.engine import folderlock
from regbench.record import Record


def task_config(config: DictConfig) -> DictConfig:
    """The job's config as Hydra's run_job hands it to the task: without the `hydra` node."""
    from omegaconf import open_dict, read_write

    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def as_job(sweep_config: DictConfig, num: int) -> None:
    """Makes `sweep_config` (a job's config with its hydra node) the current HydraConfig, as
    Hydra's launchers and run_job set it for job number `num`: its number, id and output folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    with read_write(sweep_config.hydra), open_dict(sweep_config.hydra):
        sweep_config.hydra.job.id = num
        sweep_config.hydra.job.num = num
    HydraConfig.instance().set_config(sweep_config)
    out = os.path.join(str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir))
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = os.path.abspath(out)
    HydraConfig.instance().set_config(sweep_config)


def threads_per_job(requested: Any, launcher: Any) -> int:
    """torch's thread count for one job: `requested`, or with auto the machine's cores divided
    by the jobs the launcher runs at once, so that jobs times threads never exceeds the cores."""
    if requested != "auto":
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    executor = launcher.get("executor")  # hydra/launcher=stacked
    if executor == "local":  # worker processes share the cores
        gpus = launcher.get("gpus")
        return max(1, cores // max(1, int(launcher.get("workers") or (len(gpus) if gpus else cores))))
    if executor == "slurm" and launcher.get("slurm") is not None:
        return max(1, min(cores, int(launcher.slurm.cpus_per_task)))
    if launcher.get("n_jobs") is not None:  # joblib: -1 means all cores, -2 all but one, ...
        n = int(launcher.n_jobs)
        return max(1, cores // (n if n > 0 else max(1, cores + 1 + n)))
    if launcher.get("cpus_per_task"):  # submitit (local or SLURM): the cores asked for each job
        return max(1, min(cores, int(launcher.cpus_per_task)))
    if "LocalLauncher" in str(launcher.get("_target_", "")):  # submitit_local starts every job at once
        return 1
    return cores


def _finished(out_dir: Path, statuses: tuple[str, ...] = ("ok", "diverged")) -> Record | None:
    """The folder's record (regbench.record.load) when it is a finished result (one of `statuses`), else None."""
    from regbench.record import Unreadable, load

    try:
        result = load(out_dir)
    except Unreadable:
        return None
    return result if result["status"] in statuses else None


def finished_result(cfg: DictConfig, out_dir: Path) -> Record | None:
    """The folder's record (regbench.record.load) if it holds status ok for this very config (on this very
    version of a user's data: regbench.results.identity), else None."""
    from regbench.results import flatten, identity

    result = _finished(out_dir, ("ok",))
    if result is None or result.get("config_hash") != identity(flatten(OmegaConf.to_container(cfg, resolve=True)))[0]:
        return None
    return result


def rerun_notice(cfg: DictConfig, out_dir: Path, label: str) -> str | None:
    """The line saying that `out_dir` holds a finished result (ok or diverged) of this very
    configuration on another version of a user's data, which this run replaces; None otherwise.

    The run goes on in the same folder: rerunning a configuration into its folder asks for its
    result on the data as it is now, and its result.json is overwritten (regbench.results.other_data).
    """
    from regbench.results import flatten, identity, other_data

    old = _finished(out_dir)
    if old is None:
        return None
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    what = other_data(old, params, identity(params)[1])
    if what is None:
        return None
    return f"[{label}] {out_dir} holds a result on {what}: running again (this run's result.json replaces it)"


def finished_elsewhere(cfg: DictConfig, out_dir: Path) -> str | None:
    """Describes the finished result (status ok or diverged) of another configuration that
    `out_dir` holds, or None. The same configuration on another version of a user's data is
    not another configuration: the run replaces its result, saying so (rerun_notice);
    when the configuration changed too, the description names the data that changed as well."""
    from regbench.config.keys import NOT_HASHED
    from regbench.results import flatten, identity, other_data

    old = _finished(out_dir)
    if old is None:
        return None
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    digest, data = identity(params)
    if old.get("config_hash") == digest or other_data(old, params, data):
        return None
    before = old.get("params") if isinstance(old.get("params"), dict) else {}
    changed = [f"{k} was {before.get(k)!r}, now {params.get(k)!r}" for k in sorted(set(before) | set(params))
               if k not in NOT_HASHED and before.get(k) != params.get(k)]
    changed = _data_changes(old, data) + changed
    what = "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "") if changed else "another regbench version"
    return f"{out_dir} holds the finished result ({old.get('status')}) of another configuration ({what})"


def _data_changes(old: dict[str, Any], data: dict[str, Any] | None) -> list[str]:
    """`data.csv changed (sha256 1a2b3c4d -> 3c4d5e6f)` for each file of a user's data whose
    content differs from the one `old` (a result.json) recorded."""
    before = old.get("data_fingerprint") if isinstance(old.get("data_fingerprint"), dict) else {}
    old_files = before.get("files") if isinstance(before.get("files"), dict) else {}
    out = []
    for key, entry in (data or {}).get("files", {}).items():
        was = old_files.get(key) if isinstance(old_files.get(key), dict) else None
        if was is not None and was.get("path") == entry["path"] and was.get("sha256") != entry["sha256"]:
            out.append(f"{Path(entry['path']).name} changed (sha256 {str(was.get('sha256'))[:8]} -> {entry['sha256'][:8]})")
    return out


def monitored(result: dict[str, Any]) -> float | None:
    """The value a sweeper optimises: the validation loss of an ok run. None (never NaN, which
    crashes Optuna's sweeper) tells it the trial failed; diverged runs count as failed too."""
    value = result["metrics"]["val_loss"]
    return value if result["status"] == "ok" and value is not None and math.isfinite(value) else None


# Job folder -> the outermost folder this process made for it (itself, or a parent such as
# outputs/): a job refused before it wrote anything leaves none of them (`discard`). A folder
# that was there before, holding anything, is never in it. Per process: a job and its folder's
# callbacks run in one process, whatever the launcher.
_made: dict[Path, Path] = {}
# The numbers of this process's sweep jobs refused as they started (regbench.cli.app.refused):
# the sweep's summary (regbench.cli.callbacks.SweepSummary) counts them, where the jobs run in
# its process (basic, stacked launchers).
REFUSED: list[int] = []


def made(out_dir: Path, top: Path) -> None:
    """Records that this process made `top` (`out_dir` itself, or a parent such as outputs/) for
    the job in `out_dir`: `discard` removes it should the job be refused before it writes anything."""
    _made[Path(os.path.abspath(out_dir))] = top


def discard(out_dir: Path) -> None:
    """Leaves nothing of a job refused before it wrote anything: its folder (and the empty parents
    made with it), when this process made it for the job and it holds only what the job's start
    put there (the lock, the `.hydra/` record, Hydra's job log). A folder that held anything
    before keeps all of it; nothing is written into it."""
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(os.path.abspath(out_dir))
    top = _made.pop(out_dir, None)
    if top is None:
        return
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    ours = {folderlock.LOCK_FILE, ".hydra", f"{hc.job.name}.log" if hc is not None else ""}
    try:
        if not {p.name for p in out_dir.iterdir()} <= ours:
            return
    except OSError:
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    folder = out_dir.parent
    while folder == top or top in folder.parents:  # the parents made for it, unless something else came into them
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent
