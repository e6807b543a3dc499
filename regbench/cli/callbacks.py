"""Hydra callbacks: check a single run, or every job of a multirun, before anything is written;
guard each job's folder; summarise a sweep at the end.

Enabled in conf/config.yaml (hydra.callbacks.job_folder and hydra.callbacks.sweep_summary), so
they run whatever the launcher.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench.engine import folderlock
from regbench.config.checks import notices, refusals
from regbench.config.errors import describe
from regbench.config.paths import config_search_dirs
from regbench.jobs import REFUSED, as_job, finished_elsewhere, made, task_config

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"

def _outermost_new(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet, or None."""
    if folder.exists():
        return None
    while not folder.parent.exists():
        folder = folder.parent
    return folder


def _holds_nothing(folder: Path, log: str) -> bool:
    """Whether `folder` holds at most a lock file and an empty job log (what Hydra's run_job and
    a stacked launcher's refused stack leave in a job folder before the job starts)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return all(p.name == folderlock.LOCK_FILE or (p.name == log and p.is_file() and p.stat().st_size == 0)
               for p in entries)


def foreign_job(sweep_dir: Path, jobs: list[list[str]]) -> str | None:
    """Describes the first job folder of `sweep_dir` that another job list wrote, or None.

    Resuming a sweep in its old folder is only safe when job N still means the same
    overrides; otherwise two studies would mix in one folder.
    """
    from omegaconf import OmegaConf

    if not sweep_dir.is_dir():
        return None
    for folder in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        saved = folder / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            continue
        old = [str(o) for o in OmegaConf.load(saved)]
        n = int(folder.name)
        if n >= len(jobs):
            return f"job {n} ({' '.join(old)}) is not part of this sweep of {len(jobs)} jobs"
        if sorted(old) != sorted(jobs[n]):
            return f"job {n} was `{' '.join(old)}`, now it would be `{' '.join(jobs[n])}`"
    return None


def _job_overrides(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job of a basic-sweeper multirun (its `hydra.sweeper.params`
    included), or None for other sweepers."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    # As BasicSweeper.sweep builds them: hydra.sweeper.params first, then the command line's
    # overrides, as typed (`${...}` unresolved).
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())  # for glob(...) choices
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + [str(o) for o in task])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _run_elsewhere(config: DictConfig, sweep_dir: Path) -> tuple[int, int] | None:
    """For a sweep this process ran only part of (a shard; SLURM elements it did not wait for):
    (its own jobs without a result, the others' jobs without a result), from the sweep's plan
    (regbench.plan); None for a sweep this process ran all of."""
    launcher = config.hydra.launcher
    shard = launcher.get("shard")
    no_wait = launcher.get("executor") == "slurm" and not launcher.slurm.get("wait", True)
    if shard is None and not no_wait:
        return None
    from regbench import plan

    record = plan.read(sweep_dir)
    if record is None:
        return None
    dirs = {j["num"]: j["dir"] for j in record["jobs"]}
    own = set() if no_wait else {n for s in plan.shard_of(record["stacks"], int(shard), int(launcher.num_shards)) for n in s}
    missing = {n for n, d in dirs.items() if plan.status(sweep_dir, d) not in plan.FINISHED}
    return len(missing & own), len(missing - own)


def refuse(message: str, code: int = 2) -> NoReturn:
    """Ends the command with one line: code 2 for bad input, 1 for a fault of the environment."""
    print(f"regbench: error: {message}", file=sys.stderr)
    sys.exit(code)


def os_error(e: OSError) -> str:
    """An operating-system error in one line: what failed, on which file."""
    where = f": {e.filename}" if e.filename else ""
    return f"cannot write{where} ({e.strerror or type(e).__name__})"


class JobFolder(Callback):
    """Guards the run folder of every job, whatever the launcher.

    A single run is checked before Hydra creates its folder (`on_run_start`): bad values, a
    folder in use by another process, and a folder holding the finished result of another
    configuration are refused with one line, leaving no folder behind. Every job then takes its
    folder's lock (`on_job_start`) before its record `.hydra/` (config.yaml, hydra.yaml,
    overrides.yaml) is written: conf/config.yaml sets `hydra.output_subdir: null` so that Hydra,
    which would write it before any callback or task could check the lock, leaves it to this
    callback. A job whose folder is busy writes nothing; its task reports it.
    """

    def __init__(self, record_subdir: str = ".hydra") -> None:
        self.record_subdir = record_subdir
        self.run_dir: Path | None = None
        self.created = False
        self.jobs: list[Path] = []

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        out_dir = Path(os.path.abspath(str(config.hydra.run.dir)))
        cfg = task_config(config)
        problems = refusals(cfg, config_search_dirs(config.hydra), config.hydra.overrides.task)
        if problems:
            refuse("; ".join(problems))
        for notice in notices(cfg):
            print(f"regbench: warning: {notice}", file=sys.stderr)
        if str(cfg.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                refuse("device=cuda but CUDA is not available here; use device=cpu or device=auto")
        if not cfg.get("overwrite", False):
            other = finished_elsewhere(cfg, out_dir)
            if other:
                refuse(f"{other}: choose another hydra.run.dir, or add overwrite=true to replace it")
        existed = out_dir.exists()
        top = _outermost_new(out_dir)
        try:
            folderlock.acquire(out_dir)
        except folderlock.FolderBusy as e:  # nothing written: the other process owns the folder
            refuse(str(e))
        except OSError as e:
            self._remove_if_made(out_dir, existed)
            refuse(os_error(e), 1)
        self.run_dir, self.created = out_dir, not existed
        if top is not None:
            made(out_dir, top)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_dir is not None:
            folderlock.release(self.run_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        out_dir = Path(str(config.hydra.runtime.output_dir))
        single = config.hydra.mode == RunMode.RUN
        if not single and _holds_nothing(out_dir, f"{config.hydra.job.name}.log"):  # Hydra's run_job just made it
            made(out_dir, Path(os.path.abspath(out_dir)))
        try:
            folderlock.acquire(out_dir)
        except folderlock.FolderBusy:  # writes nothing; the task says so
            return
        except OSError as e:
            if single:
                self._remove_if_made(out_dir, not self.created)
                refuse(os_error(e), 1)
            print(f"regbench: warning: {os_error(e)}", file=sys.stderr)
            return
        self.jobs.append(out_dir)
        if config.hydra.output_subdir is not None:  # Hydra wrote the record itself
            return
        try:
            self.write_record(config, out_dir / self.record_subdir)
        except OSError as e:
            if single:
                folderlock.release(out_dir)
                self.jobs.remove(out_dir)
                if self.run_dir is not None:
                    folderlock.release(self.run_dir)
                    self.run_dir = None
                self._remove_if_made(out_dir, not self.created)
                refuse(os_error(e), 1)
            print(f"regbench: warning: {os_error(e)}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        out_dir = Path(str(config.hydra.runtime.output_dir))
        if out_dir in self.jobs:
            self.jobs.remove(out_dir)
            folderlock.release(out_dir)

    def write_record(self, config: DictConfig, folder: Path) -> None:
        """Writes config.yaml, hydra.yaml and overrides.yaml as Hydra's run_job would, with
        `hydra.output_subdir` naming the folder they are in."""
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, open_dict, read_write

        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
        with read_write(hydra_cfg.hydra), open_dict(hydra_cfg.hydra):
            hydra_cfg.hydra.output_subdir = self.record_subdir
        folder.mkdir(parents=True, exist_ok=True)
        for name, node in (("config.yaml", task_config(config)), ("hydra.yaml", hydra_cfg),
                           ("overrides.yaml", config.hydra.overrides.task)):
            try:
                (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
            except OSError as e:  # a failed write names no file
                raise OSError(e.errno, e.strerror, e.filename or str(folder / name)) from e

    @staticmethod
    def _remove_if_made(out_dir: Path, existed: bool) -> None:
        """A refused run leaves no folder that it created itself."""
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)


class ComposeOnce:
    """Hydra composes every job of a sweep several times: regbench's check before anything runs
    (below), the sweeper's own check, and the launcher to run it, each about 45-300 ms. Put on
    Hydra's config loader for the duration of a multirun, this composes each *structure* once
    and hands out copies (a copy takes about 2 ms).

    A structure is what only Hydra's composition can make: the job's config-group choices
    (`reg=l2`, `+search=each`), additions and deletions (`+key=`, `~key`) and hydra overrides.
    The jobs of a sweep that share one and differ in plain values (`reg.alpha=0.1`, `seed=3`:
    every trial of a search, every seed) are made from its composed config as Hydra itself
    finishes a composition: its `_apply_overrides_to_config` sets the values, then the job's
    `hydra.overrides.task` and `hydra.job.override_dirname` are written as Hydra writes them.
    tests/test_cli.py checks the copies against Hydra's own composition of each job.

    It shadows `load_sweep_config` on that one loader object. joblib and submitit pickle the
    loader into their workers: it travels without its cache, and composes there as before.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.cache: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = {}
        self.splits: dict[tuple[str, ...], tuple[list[str], list[Any], list[Any]] | None] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if tuple(sweep_overrides) not in self.splits:
            self.splits[tuple(sweep_overrides)] = self._split(list(sweep_overrides))
        split = self.splits[tuple(sweep_overrides)]
        key = (id(master_config), tuple(split[0] if split else sweep_overrides))
        if key not in self.cache:  # the master is kept with its job so that its id stays unique
            job = type(self.loader).load_sweep_config(self.loader, master_config, list(key[1]))
            self.cache[key] = (master_config, job)
        job = copy.deepcopy(self.cache[key][1])
        if split and split[1]:
            self._finish(job, master_config, *split[1:])
        return job

    def _split(self, overrides: list[str]) -> tuple[list[str], list[Any], list[Any]] | None:
        """(the job's config-group overrides, its plain value overrides, all of them parsed), or
        None when the job is composed whole: it adds or deletes keys, or holds anything else than
        group choices and plain values. Plain values of hydra's node (`hydra.sweep.subdir=...`, which
        every job of a search has) are values like the others."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType

        try:
            parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
        except Exception:  # Hydra's composition says what is wrong with it, in its words
            return None
        groups, values = [], []
        for line, override in zip(overrides, parsed):
            if override.is_sweep_override() or override.package is not None:
                return None
            if self.loader.repository.group_exists(override.key_or_group):
                groups.append(line)  # `reg=l2`, `+search=each`: the defaults list's, Hydra composes it
            elif override.type == OverrideType.CHANGE:
                values.append(override)
            else:  # `+key=value`, `++key=value`, `~key`: their order among the values matters to Hydra
                return None
        return groups, values, parsed

    @staticmethod
    def _finish(job: DictConfig, master: DictConfig, values: list[Any], parsed: list[Any]) -> None:
        """What Hydra's `_load_configuration_impl` does with a job's value overrides, on `job`
        composed without them: the values set (hydra's node writable, as there), the hydra and task
        overrides and override_dirname written (hydra's: the master's, which `load_sweep_config`
        puts first, then the job's own in their order)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.errors import ConfigCompositionException
        from omegaconf import flag_override
        from omegaconf.errors import OmegaConfBaseException

        app = [o for o in parsed if not o.is_hydra_override()]
        with flag_override(job.hydra, "readonly", False):
            try:
                ConfigLoaderImpl._apply_overrides_to_config(values, job)
            except OmegaConfBaseException as e:  # as load_configuration wraps it
                raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e
            job.hydra.overrides.hydra = [*master.hydra.overrides.hydra,
                                         *(o.input_line for o in parsed if o.is_hydra_override())]
            job.hydra.overrides.task = [o.input_line for o in app]
            dirname = job.hydra.job.config.override_dirname
            job.hydra.job.override_dirname = get_overrides_dirname(
                overrides=app, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)

    def __getstate__(self) -> dict[str, Any]:
        return {"loader": self.loader, "cache": {}, "splits": {}}

    @classmethod
    def install(cls, loader: Any) -> ComposeOnce:
        if not isinstance(loader.__dict__.get("load_sweep_config"), cls):
            loader.load_sweep_config = cls(loader)
        return loader.load_sweep_config

    @staticmethod
    def remove(loader: Any) -> None:
        loader.__dict__.pop("load_sweep_config", None)


def launcher_problem(launcher: DictConfig) -> tuple[str, int] | None:
    """Why the sweep's launcher cannot start its jobs, with the exit code (2: a bad value, 1: this
    machine cannot), or None. Answered before any job runs, in regbench's words."""
    target = str(launcher.get("_target_", ""))
    max_stack = launcher.get("max_stack")
    if max_stack is not None and max_stack < 1:  # hydra/launcher=stacked
        return f"hydra.launcher.max_stack must be at least 1 (got {max_stack})", 2
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for key in ("executor", "workers", "shard", "num_shards"):  # ${oc.env:SLURM_ARRAY_TASK_ID} outside an array
        try:
            launcher.get(key)
        except OmegaConfBaseException as e:
            raw = OmegaConf.to_container(launcher, resolve=False).get(key)
            said = str(e).splitlines()[0].replace("KeyError raised while resolving interpolation: ", "")
            return f"hydra.launcher.{key}={raw} does not resolve here: {said}", 2
    executor = launcher.get("executor")
    if executor is not None:  # hydra/launcher=stacked
        problem = _stacked_problem(launcher)
        if problem:
            return problem
    n_jobs = launcher.get("n_jobs")
    if "JoblibLauncher" in target and n_jobs is not None and int(n_jobs) == 0:
        return ("hydra.launcher.n_jobs must not be 0: a number of worker processes (1, 2, ...) "
                "or all cores but |n|-1 (-1: all cores, -2: all but one)"), 2
    if "SlurmLauncher" in target and shutil.which("srun") is None:
        return ("hydra/launcher=slurm submits the jobs to a SLURM cluster, and this machine has no SLURM "
                "(no `srun` on the PATH): run the sweep from a cluster's login node, or here with "
                "hydra/launcher=joblib or submitit_local"), 1
    return None


def sweeper_problem(sweeper: DictConfig) -> tuple[str, int] | None:
    """Why regbench's Optuna sweeper (the conf/search/ presets) cannot start here, or None: asked
    before Hydra instantiates it, whose own error would only say it cannot locate Optuna's sampler."""
    if not str(sweeper.get("_target_", "")).endswith("RegbenchOptunaSweeper"):
        return None
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        return 'the Optuna sweeper (+search=..., hydra/sweeper=regbench_optuna) needs Optuna: pip install "regbench[search]"', 1
    from importlib.metadata import version

    if int(version("optuna").split(".")[0]) < 4:
        return (f"the Optuna sweeper needs optuna>=4 (this environment has {version('optuna')}): "
                'pip install -U "regbench[search]"'), 1
    return None


def _stacked_problem(launcher: DictConfig) -> tuple[str, int] | None:
    """The stacked launcher's executor and shard values, and what its executor needs of this machine."""
    executor, shard, shards = launcher.executor, launcher.get("shard"), launcher.get("num_shards")
    if executor not in ("inprocess", "local", "slurm"):
        return f"hydra.launcher.executor must be inprocess, local or slurm (got {executor})", 2
    if executor == "local" and launcher.get("workers") is not None and int(launcher.workers) < 1:
        return f"hydra.launcher.workers must be at least 1 (got {launcher.workers})", 2
    if (shard is None) != (shards is None):
        return ("hydra.launcher.shard and hydra.launcher.num_shards go together: shard=I num_shards=N runs "
                "the I-th of N parts (0 <= I < N)"), 2
    if shards is not None and (int(shards) < 1 or not 0 <= int(shard) < int(shards)):
        return (f"hydra.launcher.shard={shard} is out of range for num_shards={shards}: shards are numbered "
                f"0 to {int(shards) - 1}"), 2
    if shards is not None and executor == "slurm":
        return ("hydra.launcher.shard runs one part of the sweep in this process: it cannot also submit to SLURM "
                "(executor=slurm submits every stack itself; use one or the other)"), 2
    if executor == "slurm":
        import importlib.util

        if importlib.util.find_spec("submitit") is None:
            return "hydra.launcher.executor=slurm needs submitit: pip install -e \".[launchers]\" (or pip install submitit)", 1
        if shutil.which("sbatch") is None:
            return ("hydra.launcher.executor=slurm submits to SLURM, and this machine has no `sbatch` on the PATH: "
                    "run it from the cluster's login node, or here with hydra.launcher.executor=local"), 1
        slurm = launcher.slurm
        for key in ("max_array_size", "array_parallelism", "timeout_min", "cpus_per_task"):
            if int(slurm[key]) < 1:
                return f"hydra.launcher.slurm.{key} must be at least 1 (got {slurm[key]})", 2
    return None


def data_refusals(jobs: list[tuple[str, DictConfig]], search: tuple[str, ...]) -> dict[str, list[str]]:
    """Bad input that only the data tells, for the (job, resolved config) pairs of a sweep: data
    that does not load (a train_size above the split, missing files, a table regbench refuses),
    a regularizer or model that does not fit it (regbench.engine.runner.refusal), as message ->
    jobs. Each dataset is loaded once, on the CPU (the split seed aside: no refusal depends on
    it), and each model and regularizer mix is tried once on it, so that a sweep is refused
    before any job runs, as a bad value is. What slips through is refused by its job."""
    import json

    from omegaconf import OmegaConf

    from regbench.engine import gcpause

    with gcpause.imports():
        import torch

        from regbench import UserInputError
        from regbench.data.datasets import load
        from regbench.engine.runner import refusal

    def key(node: Any, drop: str = "") -> str:
        values = OmegaConf.to_container(node, resolve=True)
        values.pop(drop, None)
        return json.dumps(values, sort_keys=True, default=str)

    datasets: dict[str, list[tuple[str, DictConfig]]] = {}
    for job, cfg in jobs:
        datasets.setdefault(key(cfg.dataset, "split_seed"), []).append((job, cfg))
    problems: dict[str, list[str]] = {}
    for members in datasets.values():
        try:
            data = load(members[0][1].dataset, torch.device("cpu"))
        except UserInputError as e:
            for job, _ in members:
                problems.setdefault(str(e), []).append(job)
            continue
        except Exception:  # not bad input: the job records it as a failed run
            continue
        answers: dict[str, str | None] = {}
        for job, cfg in members:
            mix = key(OmegaConf.create({"model": cfg.model, "reg": cfg.reg}))
            if mix not in answers:
                answers[mix] = refusal(cfg, data, search)
            if answers[mix]:
                problems.setdefault(answers[mix], []).append(job)
    return problems


def _not_baseline(job: str, cfg: DictConfig, search: tuple[str, ...]) -> list[tuple[str, str]]:
    """[(job, label)] when a job that chose reg=none is labelled otherwise (a reg.* override of
    the sweep switched a regularizer on), else []: the label is what the report pairs by."""
    from regbench.regularizers import label

    try:
        named = label(cfg.reg, cfg.model, search)
    except Exception:  # a regularizer that does not load: its job reports it
        return []
    return [] if named == "none" else [(job, named)]


class SweepSummary(Callback):
    """Refuses a sweep with a bad job before any job runs; reports the sweep when it ends."""

    started = 0.0
    token = ""

    def _actions(self, runs: Any) -> str:
        """What this invocation did with each job: skipped (result already there), resumed, ran;
        and the jobs whose result another process wrote meanwhile (two processes on one sweep
        folder share its jobs). A job is this invocation's when its folder's lock file names
        this sweep's token (folderlock writes it) and its result was written after that holder
        took the lock: this sweep also takes the lock of a job it only reports (one another
        process, or an earlier launch's SLURM element, finished meanwhile), after its result."""
        skipped = resumed = ran = elsewhere = 0
        mine = f"sweep {self.token}"
        for folder, resumed_from in zip(runs["folder"], runs.get("resumed_from_epoch", [None] * len(runs))):
            written = (Path(folder) / "result.json").stat().st_mtime
            if (folderlock.holder(Path(folder)).endswith(mine) and written >= self.started
                    and written >= (folderlock.taken(Path(folder)) or 0.0)):
                if resumed_from == resumed_from and resumed_from is not None:  # not NaN, not None
                    resumed += 1
                else:
                    ran += 1
            elif (Path(folder) / "result.json").stat().st_mtime < self.started:
                skipped += 1
            else:
                elsewhere += 1
        return (f"{skipped} skipped as already done, {resumed} resumed, {ran} ran"
                + (f", {elsewhere} run by another process meanwhile" if elsewhere else ""))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, read_write

        self.started = time.time()
        # Inherited by the jobs' processes (joblib, submitit, SLURM's exported environment):
        # each job's lock file names it, so the summary counts only this sweep's jobs.
        self.token = os.environ[folderlock.TOKEN_ENV] = secrets.token_hex(6)
        launcher = launcher_problem(config.hydra.launcher) or sweeper_problem(config.hydra.sweeper)
        if launcher:
            message, code = launcher
            print(f"regbench: error: {message}", file=sys.stderr)
            print("regbench: nothing was run", file=sys.stderr)
            sys.exit(code)
        compose = ComposeOnce.install(GlobalHydra.instance().config_loader())
        jobs = _job_overrides(config)
        if jobs is None:  # other sweepers choose their values as they go; each job checks itself
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        foreign = foreign_job(sweep_dir, jobs)
        if foreign:
            print(f"regbench: error: {sweep_dir} holds a different sweep: {foreign}; "
                  "resume with the same overrides or choose another hydra.sweep.dir", file=sys.stderr)
            sys.exit(2)
        problems: dict[str, list[str]] = {}
        warnings: dict[str, list[str]] = {}
        cuda_jobs = []
        not_baseline: list[tuple[str, str]] = []  # (job, label): reg=none made into a regularizer
        resolved: list[tuple[str, DictConfig]] = []  # for the data's checks, once every config passed its own
        hydra_config = HydraConfig.instance().cfg
        try:
            for num, overrides in enumerate(jobs):
                job = " ".join(overrides)
                try:
                    cfg = compose(config, overrides)  # as the launcher will compose it
                except Exception as e:  # Hydra's own message for an unknown option or key
                    problems.setdefault(describe(e), []).append(job)
                    continue
                as_job(cfg, num)  # `${hydra:...}` values read the job's own Hydra config
                # reg=none typed (not the default): the user means it as the sweep's baseline
                chose_none = cfg.hydra.runtime.choices.get("reg") == "none" and any(
                    o.startswith(("reg=", "+reg=", "++reg=")) for o in overrides)
                cfg = task_config(cfg)  # a copy: HydraConfig keeps the job's config, hydra node included
                for message in refusals(cfg, overrides=overrides):
                    problems.setdefault(message, []).append(job)
                for message in [] if problems else notices(cfg):
                    warnings.setdefault(message, []).append(job)
                if cfg.device.startswith("cuda"):
                    cuda_jobs.append(job)
                if not problems:
                    try:  # `${hydra:...}` values read this job's Hydra config: resolved now
                        with read_write(cfg):
                            OmegaConf.resolve(cfg)
                        resolved.append((job, cfg))
                    except Exception:  # the job reports it itself
                        continue
                    if chose_none:
                        not_baseline += _not_baseline(job, cfg, config_search_dirs(config.hydra))
        finally:
            HydraConfig.instance().cfg = hydra_config
        if cuda_jobs and not problems:
            import torch

            if not torch.cuda.is_available():
                problems["device=cuda but CUDA is not available here; use device=cpu or device=auto"] = cuda_jobs
        if not problems:
            problems = data_refusals(resolved, config_search_dirs(config.hydra))
        if problems:
            for message, where in problems.items():
                print(f"regbench: error: {message} (in {len(where)} of {len(jobs)} jobs, e.g. {where[0]})", file=sys.stderr)
            print("regbench: nothing was run", file=sys.stderr)
            sys.exit(2)
        for message, where in warnings.items():
            print(f"regbench: warning: {message} (in {len(where)} of {len(jobs)} jobs, e.g. {where[0]})", file=sys.stderr)
        if not_baseline:
            job, label = not_baseline[0]
            print(f"regbench: warning: reg=none is not the baseline in {len(not_baseline)} of {len(jobs)} jobs "
                  f"(e.g. `{job}` runs as {label}): a reg.* override applies to every preset of a sweep, reg=none "
                  "included, so the report has no baseline for Δ, d_z and p-values; run reg=none as its own sweep and "
                  "merge the two (`regbench report SWEEP BASELINE`)", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Writes runs.csv, report.csv and report.html into the sweep folder, prints the comparison table,
        one line per diverged or failed job, and exits 1 when any job failed or did not finish."""
        from hydra.core.global_hydra import GlobalHydra

        from regbench.engine import gcpause

        ComposeOnce.remove(GlobalHydra.instance().config_loader())
        with gcpause.imports():
            from regbench.reporting.report import build
            from regbench.reporting.report_format import render, wide_console, write

        sweep_dir = Path(config.hydra.sweep.dir)
        refused = len(REFUSED)  # their lines were printed as they were refused
        try:
            report = build([sweep_dir])
        except ValueError as e:
            waiting = _run_elsewhere(config, sweep_dir)
            if waiting is not None and waiting[1] and not waiting[0] and not refused:  # submitted, nothing finished yet
                print(f"sweep: {waiting[1]} jobs pending elsewhere (other shards, or SLURM elements), none finished "
                      f"yet; `regbench report {sweep_dir}` reports them as they finish")
                return
            print(f"regbench: {e}" + (f" ({refused} refused)" if refused else ""), file=sys.stderr)
            sys.exit(2 if refused else 1)
        try:
            import shlex

            from omegaconf import OmegaConf

            given = [*OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False),  # as typed: ${...} unresolved
                     *OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
            task = " ".join(shlex.quote(o) for o in given if not o.startswith("hydra.mode="))  # Hydra's own
            write(report, sweep_dir, command=f"regbench run -m {task}\n"
                  f"# the page again, or over more folders: regbench report {shlex.quote(str(sweep_dir))}")
        except OSError as e:  # the jobs' results are safe in their folders
            print(f"regbench: error: the sweep report was not written: {os_error(e)}; "
                  f"`regbench report {sweep_dir}` writes it later", file=sys.stderr)
            render(report, wide_console())
            sys.exit(1)
        render(report, wide_console())
        for note in report.notes:
            print(f"regbench: warning: {note}", file=sys.stderr)
        status = report.runs["status"]
        counts = {s: int((status == s).sum()) for s in ("ok", "diverged", "failed")}
        jobs = _job_overrides(config)  # None for other sweepers, whose job count is theirs
        unfinished = max(0, len(jobs) - len(report.runs) - refused) if jobs is not None else 0
        elsewhere = _run_elsewhere(config, sweep_dir)  # other shards', or SLURM elements not waited for
        if elsewhere is not None:
            unfinished, pending = elsewhere
        print(
            f"sweep done: {counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed"
            + (f", {refused} refused (bad input, no folder: see the `refused` lines)" if refused else "")
            + (f", {unfinished} without a result" if unfinished else "")
            + f" ({self._actions(report.runs)}); runs.csv, report.csv and report.html in {sweep_dir}"
        )
        if elsewhere is not None and pending:
            print(f"sweep: {pending} jobs pending elsewhere (other shards, or SLURM elements); "
                  f"`regbench report {sweep_dir}` reports them as they finish")
        if refused:  # bad input, as for a single run
            sys.exit(2)
        if counts["failed"] or unfinished:
            sys.exit(1)
