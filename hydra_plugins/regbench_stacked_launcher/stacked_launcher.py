"""`hydra/launcher=stacked`: runs the jobs of a sweep that share a structure as one stacked model.

The jobs of each `launch` call (all of a basic sweep; each batch of an Optuna sweep) are
grouped by `regbench.engine.grouping.stack_key`, from their configs alone, each resolved with the
job's own Hydra config. Every group of two or more jobs trains as one stack
(`regbench.engine.sweep.train`), which writes each job's metrics.csv and result.json into the
job's own folder; then every job goes through Hydra's `run_job` as with the basic launcher
(its .hydra/ folder, log file and return value), where a stacked job only reports the result
it already has. Jobs that cannot be stacked (any other Hydra app's included), and the
unfinished jobs of a stack that failed, run one after another as the basic launcher runs
them; torch and regbench's training are imported only when something stacks.

Where the stacks run (`executor`): one after another in this process (`inprocess`, the
default); over worker processes of this machine (`local`); or one SLURM array element per
stack through submitit (`slurm`, hydra_plugins.regbench_stacked_launcher.cluster). With
`shard=I num_shards=N` this process runs only the I-th of N parts of the stacks, so that N
processes started anyhow (an array of any scheduler, Kubernetes' Indexed Jobs, several
machines over a shared disk) run one sweep between them. For all but in-process, the sweep's
plan (regbench.plan: every job, its stack) is written into the sweep folder first: it is the
same for the same command, so shards and re-launches agree on the stacks, and a report counts
the jobs still pending.

Module level imports stay light: Hydra imports every plugin on start-up, `--help` included.
No `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules,
where dataclasses cannot resolve string annotations.
"""

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

EXECUTORS = ("inprocess", "local", "slurm")


@dataclass
class SlurmConf:
    """`hydra.launcher.slurm.*`: how `executor=slurm` submits the stacks, one array element each."""

    # The fields of Hydra's submitit launcher that pass through to sbatch as they are.
    partition: Optional[str] = None  # sbatch --partition; null: the cluster's default
    account: Optional[str] = None  # sbatch --account
    qos: Optional[str] = None  # sbatch --qos
    constraint: Optional[str] = None  # sbatch --constraint
    setup: Optional[List[str]] = None  # shell lines each element runs first (module load, activate a venv)
    # The command that runs python in each element (submitit's `python`), e.g. `apptainer exec image.sif python`
    # or a wrapper script that ends with `exec python "$@"`; null: this process's interpreter.
    python: Optional[str] = None
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # any other sbatch option
    timeout_min: int = 60  # wall-time limit of each element (a whole stack), in minutes, plus:
    timeout_min_per_member: float = 0.0  # minutes more per member of the element's stack
    cpus_per_task: int = 2  # cores per element; torch uses them all
    gpus_per_node: Optional[int] = None  # GPUs per element; null asks for none (device=auto then trains on CPU)
    # Memory per element in GB: null sizes it by the stack: mem_gb_base + mem_gb_per_member x members.
    mem_gb: Optional[float] = None
    mem_gb_base: float = 1.0
    mem_gb_per_member: float = 0.05
    max_array_size: int = 1000  # most elements in one array (SLURM's MaxArraySize is 1001 by default)
    array_parallelism: int = 32  # most elements running at once (sbatch --array=...%N; chunks run one after another)
    max_num_timeout: int = 3  # how often an element is requeued after its time limit or a preemption
    signal_delay_s: int = 90  # the element hears of its time limit this many seconds before it (to checkpoint)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"  # submitit's pickles and each element's log
    wait: bool = True  # wait for the elements and report; false: submit, print how to report later, return


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.regbench_stacked_launcher.stacked_launcher.StackedLauncher"
    # Most jobs in one stack; a larger group is split into stacks of at most this many.
    max_stack: int = 64
    # Where the stacks run: inprocess (one after another, in this process), local (worker
    # processes on this machine), slurm (one array element per stack, through submitit).
    executor: str = "inprocess"
    # local: how many worker processes (null: one per core); torch's threads are the cores divided among them.
    workers: Optional[int] = None
    # local: the GPUs (CUDA indices) to spread the workers over, e.g. [0,1,2,3]: each worker sees one
    # of them as its only device (CUDA_VISIBLE_DEVICES), in turn; workers default to one per GPU.
    gpus: Optional[List[int]] = None
    # Run only this shard's stacks (0 ... num_shards-1) of the sweep's plan, e.g.
    # shard=${oc.env:SLURM_ARRAY_TASK_ID} or ${oc.env:JOB_COMPLETION_INDEX}; null: every stack.
    shard: Optional[int] = None
    num_shards: Optional[int] = None
    slurm: SlurmConf = field(default_factory=SlurmConf)


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="regbench")


class StackedLauncher(Launcher):
    def __init__(self, max_stack: int = 64, executor: str = "inprocess", workers: Optional[int] = None,
                 gpus: Any = None, shard: Optional[int] = None, num_shards: Optional[int] = None,
                 slurm: Any = None) -> None:
        self.max_stack = max_stack
        self.executor = executor
        self.workers = workers
        self.gpus = [int(g) for g in gpus] if gpus else None
        self.shard, self.num_shards = shard, num_shards
        self.slurm = OmegaConf.to_container(slurm, resolve=True) if OmegaConf.is_config(slurm) else dict(slurm or {})
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if self.max_stack < 1:
            raise ValueError(f"hydra.launcher.max_stack must be at least 1, got {self.max_stack}")
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sharded = self.shard is not None
        where = {"inprocess": "", "local": " in worker processes", "slurm": " as SLURM array elements"}[self.executor]
        log.info(f"Launching {len(job_overrides)} jobs, stacked where they share a structure{where}"
                 + (f", shard {self.shard} of {self.num_shards}" if sharded else ""))
        jobs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            jobs.append(self._compose(list(overrides), idx))
        if self.executor == "inprocess" and not sharded:
            return self._run(jobs)
        units = _plan(jobs, self.max_stack)
        _write_plan(sweep_dir, jobs, units, "shards" if sharded else self.executor, self.config)
        if sharded:
            from regbench import plan

            units = plan.shard_of(units, self.shard, self.num_shards)
            print(f"stacked: shard {self.shard} of {self.num_shards}: {len(units)} of the plan's stacks "
                  f"(jobs {_ranges(sorted(n for u in units for n in u))})", flush=True)
        by_num = {int(j.hydra.job.num): (list(o), int(j.hydra.job.num)) for j, o in zip(jobs, job_overrides)}
        items = [[by_num[n] for n in unit] for unit in units]
        if self.executor == "slurm":
            from hydra_plugins.regbench_stacked_launcher import cluster

            return cluster.submit(self, items, sweep_dir)
        if self.executor == "local" and len(items) > 1:
            return self._local(items)
        runs: list[JobReturn] = []
        for unit in items:
            runs += self._run([self._compose(o, n) for o, n in unit])
        return runs

    def _compose(self, overrides: list[str], num: int) -> DictConfig:
        """Job `num`'s config (with its hydra node), as Hydra's launchers compose it."""
        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = num
            sweep_config.hydra.job.num = num
        return sweep_config

    def _run(self, jobs: list[DictConfig]) -> list[JobReturn]:
        """Trains `jobs`' stacks, then runs each job through Hydra's run_job (a stacked one only
        reports its result): the whole of an in-process sweep, or one element's share of it."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        try:
            stacked = _train_stacks(jobs, self.max_stack)
        except KeyboardInterrupt as e:  # Ctrl-C: the command's last line says how to resume
            from regbench.engine.interrupt import resumable

            raise resumable(e, f"hydra.sweep.dir={self.config.hydra.sweep.dir}") from None
        runs = []
        for sweep_config in jobs:
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=_reporting(self.task_function, stacked.get(sweep_config.hydra.job.num)),
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            runs.append(ret)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

    def __call__(self, unit: list[tuple[list[str], int]], singleton_state: Dict[Any, Any]) -> list[JobReturn]:
        """One element's work in its own process (a worker, a SLURM array element): the unit's
        jobs composed again from their overrides, then `_run`."""
        assert self.config is not None
        if "omegaconf_resolvers" in singleton_state:
            Singleton.set_state(singleton_state)
        else:  # a local worker: the resolvers are registered again by the imports (Hydra's, regbench's)
            Singleton._instances = singleton_state["instances"]
        setup_globals()
        from regbench import plan

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if plan.read(sweep_dir) is None:  # written before submission: this node does not see that folder
            said = (f"regbench: error: the sweep folder {sweep_dir} has no {plan.PLAN_DIR}/{plan.PLAN_FILE} on this "
                    f"node ({os.uname().nodename}): put the sweep on a disk every node mounts at the same path "
                    "(hydra.sweep.dir=...)")
            print(said, file=sys.stderr, flush=True)
            raise FolderNotSeen(said)
        with _element_signals() as timed_out:
            try:
                return self._run([self._compose(o, n) for o, n in unit])
            except KeyboardInterrupt:
                if timed_out:  # the stack's checkpoint is written: now submitit requeues the element (and exits)
                    timed_out[0](*timed_out[1:])
                raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook before a time limit or a preemption: the element is requeued with the
        same work; its stack continues from the checkpoint its members write (stack.pt)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def _local(self, items: list[list[tuple[list[str], int]]]) -> list[JobReturn]:
        """The units over `workers` processes of this machine (spawned: no state shared with this one)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(self.workers or (len(self.gpus) if self.gpus else cores), len(items))
        context = multiprocessing.get_context("spawn")
        devices = context.Queue()
        for i in range(workers):  # each worker takes one as it starts (before torch is imported there)
            devices.put(self.gpus[i % len(self.gpus)] if self.gpus else None)
        print(f"stacked: {len(items)} stacks over {workers} worker processes"
              + (f" on GPUs {', '.join(map(str, self.gpus))}" if self.gpus else ""), flush=True)
        try:  # cloudpickle (joblib's and submitit's) carries what pickle cannot: another app's local task function
            import cloudpickle

            state, dumps = Singleton.get_state(), cloudpickle.dumps
        except ImportError:  # regbench's own app pickles as it is, the resolvers aside (local functions):
            # setup_globals and the import of regbench's app register them again in the worker
            state, dumps = {"instances": Singleton.get_state()["instances"]}, pickle.dumps
        try:
            calls = [dumps((self, unit, state)) for unit in items]
        except (AttributeError, TypeError, pickle.PicklingError) as e:
            raise SystemExit(f"regbench: error: hydra.launcher.executor=local cannot hand this app's jobs to worker "
                             f"processes ({type(e).__name__}: {e}): pip install cloudpickle") from None
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_take_device,
                                 initargs=(devices,)) as pool:
            futures = [pool.submit(_call, call) for call in calls]
            try:
                return [ret for f in futures for ret in pickle.loads(f.result())]
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                raise


class FolderNotSeen(RuntimeError):
    """An element's node does not see the sweep folder. Not a SystemExit: submitit hands an
    element's Exception back to the submitting process (its result file), which says it in one
    line; a SystemExit it would not catch, and the element would end without a word there."""


# A SIGTERM this soon after the USR2 or the SIGTERM that stopped the stack is the same preemption
# (SLURM sends both signals to a preempted element with a grace time, and so does submitit's own
# test of a preemption; without one, SIGTERM twice), not a request to stop at once; a SIGTERM
# later than that after USR2 is the time limit itself (the epoch outlasted signal_delay_s).
SAME_PREEMPTION_S = 5.0


@contextlib.contextmanager
def _element_signals() -> Iterator[list]:
    """In a SLURM element run by submitit, its signals as regbench's training needs them.

    submitit answers the time-limit signal (USR2, `signal_delay_s` before the limit, or a
    preemption) by requeuing the element and exiting at once, and ignores SIGTERM: the stack
    would lose every epoch since its last checkpoint. Here, during training, USR2 asks the stack
    to stop after its epoch and write its checkpoint (as SIGTERM does in a terminal: regbench.
    engine.interrupt.deferred), and the yielded list is filled with submitit's handler and its
    arguments, which the caller runs once the stack has stopped: then the element is requeued
    and continues from the checkpoint. SIGTERM (scancel, `scontrol requeue`, a preemption in
    SLURM's REQUEUE mode, a node going down) stops training the same way, without requeuing the
    element itself: SLURM requeues it where it means to (requeue, preemption), and otherwise
    its members are resumable by re-launching. A preemption delivers its SIGTERM twice, about
    20 ms apart (slurmstepd's and the one srun forwards): a SIGTERM within SAME_PREEMPTION_S of
    the one that asked the stack to stop repeats it (interrupt.one_sigterm_within) rather than
    stopping at once, which would lose the epoch's checkpoint; SLURM's SIGKILL ends the element
    KillWait seconds later in any case. The two signals together (a preemption), in
    either order, stop after the epoch and requeue: neither counts as the second signal that
    stops at once, unless the SIGTERM comes SAME_PREEMPTION_S or more after the USR2 (the time
    limit reached before the epoch ended). Outside training (nothing to save), USR2 goes
    straight to submitit. Elsewhere (in-process, worker processes) nothing changes.
    """
    usr = getattr(signal, "SIGUSR2", None)
    submitit_handler = signal.getsignal(usr) if usr is not None else None
    owner = getattr(submitit_handler, "__self__", None)
    if owner is None or type(owner).__name__ != "SignalHandler" or threading.current_thread() is not threading.main_thread():
        yield []
        return
    from regbench.engine import interrupt

    print("stacked: on SLURM's time-limit signal this element stops its stack after the epoch, writes its "
          "checkpoint, and is requeued", flush=True)
    timed_out: list = []
    previous_term = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # so that deferred() takes SIGTERM over while training

    def on_usr(signum: int, frame: Any) -> None:
        term = signal.getsignal(signal.SIGTERM)
        if term in (signal.SIG_DFL, signal.SIG_IGN, None) or timed_out:  # not training: nothing to save
            submitit_handler(signum, frame)
            return
        timed_out.extend([submitit_handler, signum, None])
        if interrupt.stopping() is not None:  # SIGTERM came first: the stop is under way; now it is requeued too
            print("stacked: USR2 after SIGTERM (a preemption): the element is requeued once the stack's checkpoint "
                  "is written", file=sys.stderr, flush=True)
            return
        term(signum, frame)  # deferred()'s handler: stop after this epoch, its checkpoint written
        asked = time.monotonic()

        def on_term(signum: int, frame: Any) -> None:
            if time.monotonic() - asked < SAME_PREEMPTION_S:
                print("stacked: SIGTERM with USR2 (a preemption): still stopping after this epoch", file=sys.stderr,
                      flush=True)
                return
            term(signum, frame)  # the time limit itself: stop at once (deferred()'s second signal), then requeued

        signal.signal(signal.SIGTERM, on_term)  # until deferred() restores SIGTERM as training ends

    signal.signal(usr, on_usr)
    try:
        with interrupt.one_sigterm_within(SAME_PREEMPTION_S):  # a preemption's SIGTERM comes twice
            yield timed_out
    finally:
        signal.signal(usr, submitit_handler)
        signal.signal(signal.SIGTERM, previous_term)


def _take_device(devices: Any) -> None:
    """A local worker's start: the GPU it trains on, as its only visible CUDA device (or none given)."""
    gpu = devices.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def _call(call: bytes) -> bytes:
    """A worker's unit: the launcher, the unit and Hydra's singletons, pickled by `_local`."""
    launcher, unit, state = pickle.loads(call)
    runs = launcher(unit, state)
    try:  # the configs in the results may hold classes of a plugin module Hydra executed apart (see the module doc)
        import cloudpickle

        return cloudpickle.dumps(runs)
    except ImportError:
        return pickle.dumps(runs)


def _plan(jobs: list[DictConfig], max_stack: int) -> list[list[int]]:
    """The sweep's stacks, as job numbers, from the jobs' configs alone (finished or not: the same
    command always gives the same plan): each group of jobs sharing a stack_key in stacks of at most
    `max_stack`, every other job a stack of one; in the order of their first job."""
    if "regbench.config.schema" not in sys.modules:
        return [[int(j.hydra.job.num)] for j in jobs]
    from regbench.config.paths import config_search_dirs
    from regbench.engine.grouping import stack_key

    search = config_search_dirs(jobs[0].hydra) if jobs else ()
    groups: dict[Any, list[int]] = {}
    for sweep_config in jobs:
        num = int(sweep_config.hydra.job.num)
        task = _task_config(sweep_config)
        key = stack_key(task[0], search) if task is not None else None
        groups.setdefault(key if key is not None else ("alone", num), []).append(num)
    units = [g[i : i + max_stack] for g in groups.values() for i in range(0, len(g), max_stack)]
    return sorted(units, key=lambda u: u[0])


def _write_plan(sweep_dir: Path, jobs: list[DictConfig], units: list[list[int]], executor: str,
                config: DictConfig) -> None:
    from regbench import plan

    entries = []
    for sweep_config in jobs:
        out = os.path.join(str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir))
        entries.append({"num": int(sweep_config.hydra.job.num), "dir": os.path.relpath(out, sweep_dir),
                        "overrides": list(sweep_config.hydra.overrides.task)})
    given = [*OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False),
             *OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    command = " ".join(["regbench run -m", *[str(o) for o in given if not str(o).startswith("hydra.mode=")]])
    plan.write(sweep_dir, entries, units, executor, command)


def _task_config(sweep_config: DictConfig) -> tuple[DictConfig, Path] | None:
    """A regbench job's config as its task function receives it, with every value resolved for
    this very job, and its output folder; None for a job of another app, or one whose values
    do not resolve (it runs alone and reports that itself).

    `${hydra:...}` values read the current HydraConfig: resolved later, they would read the
    last job's (all jobs are composed before any trains). So they are resolved here, with
    HydraConfig and `hydra.runtime.output_dir` set as Hydra's run_job sets them for the job.
    """
    from omegaconf.errors import OmegaConfBaseException

    from regbench.engine.grouping import is_regbench
    from regbench.jobs import as_job, task_config  # loaded already: regbench's app is running

    task_cfg = task_config(sweep_config)
    if not is_regbench(task_cfg):
        return None
    as_job(sweep_config, sweep_config.hydra.job.num)
    try:
        with read_write(task_cfg):
            OmegaConf.resolve(task_cfg)
    except OmegaConfBaseException:
        return None
    return task_cfg, Path(str(sweep_config.hydra.runtime.output_dir))


def _train_stacks(jobs: list[DictConfig], max_stack: int) -> dict[int, dict[str, Any]]:
    """Trains every group of two or more stackable, unfinished jobs; returns job number -> result.

    Stackability is decided from the configs alone (regbench.engine.grouping, no torch): a sweep
    where nothing stacks, such as any other app's, imports nothing of regbench's training.
    """
    if "regbench.config.schema" not in sys.modules:  # not regbench's app: none of its jobs can stack
        return {}
    from regbench.config.paths import config_search_dirs
    from regbench.engine.grouping import stack_key, why_alone

    groups: dict[str, list[tuple[int, DictConfig, Path]]] = {}
    alone: dict[str, list[int]] = {}
    search = config_search_dirs(jobs[0].hydra) if jobs else ()
    for sweep_config in jobs:
        task = _task_config(sweep_config)
        key = stack_key(task[0], search) if task is not None else None
        if key is not None:
            groups.setdefault(key, []).append((sweep_config.hydra.job.num, *task))
        elif task is not None:
            reason = why_alone(task[0], search)
            if reason:
                alone.setdefault(reason, []).append(sweep_config.hydra.job.num)
    for reason, nums in alone.items():  # a regularizer that cannot stack says why in its module
        print(f"stacked: jobs {_ranges(nums)} run alone: {reason}", flush=True)
    if all(len(g) < 2 for g in groups.values()):
        return {}
    from regbench.engine import gcpause

    with gcpause.imports():
        import torch
        from rich.console import Console

        from regbench import UserInputError
        from regbench.console import one_line
        from regbench.engine.sweep import STACK_CHECKPOINT, STACK_PREVIOUS, train
        from regbench.jobs import finished_result, rerun_notice, threads_per_job

    # A finished job only reports its result (its task function says so); the others stack.
    groups = {k: [m for m in g if finished_result(m[1], m[2]) is None] for k, g in groups.items()}
    stacks = [g[i : i + max_stack] for g in groups.values() for i in range(0, len(g), max_stack)]
    results: dict[int, dict[str, Any]] = {}
    console = Console()

    def left_alone(stack: list[tuple[int, DictConfig, Path]]) -> bool:
        """The one unfinished member of an interrupted stack (the others finished before the stop):
        it continues the stack's checkpoint as a stack of one, where a lone run would start afresh."""
        return len(stack) == 1 and any((stack[0][2] / name).is_file() for name in (STACK_CHECKPOINT, STACK_PREVIOUS))

    for members in (s for s in stacks if len(s) > 1 or left_alone(s)):
        cfg = members[0][1]
        torch.set_num_threads(threads_per_job(cfg.trainer.num_threads, jobs[0].hydra.launcher))
        nums = [num for num, _, _ in members]
        said = (f"stacked: jobs {_ranges(nums)} train as one model ({len(members)} members)" if len(members) > 1 else
                f"stacked: job {nums[0]} continues its stack's checkpoint alone (its other members finished)")
        console.print(said, highlight=False, markup=False, soft_wrap=True)
        for num, member_cfg, out in members:  # a job that runs alone says it in its task function
            notice = rerun_notice(member_cfg, out, f"job {num}")
            if notice:
                console.print(notice, highlight=False, markup=False, soft_wrap=True)
        done: dict[int, dict[str, Any]] = {}

        def finished(index: int, result: dict[str, Any], nums: list[int] = nums) -> None:
            console.print(one_line(result, f"job {nums[index]}") + " [stacked]", highlight=False, markup=False,
                          soft_wrap=True)

        try:
            train([(c, out) for _, c, out in members], console, done, finished, search)
        except UserInputError as e:  # each job reports it again when it runs alone
            console.print(f"stacked: jobs {_ranges(nums)} did not start ({e}); they run one by one instead",
                          highlight=False, markup=False, soft_wrap=True)
        except Exception as e:  # a stack that fails must not lose its jobs: they run alone instead
            log.warning(f"the stack of jobs {_ranges(nums)} failed ({type(e).__name__}: {e}); "
                        f"its {len(members) - len(done)} unfinished jobs run one by one")
        results.update({nums[i]: result for i, result in done.items()})
    return results


def _reporting(task_function: TaskFunction, result: dict[str, Any] | None) -> TaskFunction:
    """The job's task function: the real one, or for a stacked job one that returns its result."""
    if result is None:
        return task_function

    def report(cfg: DictConfig) -> Any:
        from regbench.jobs import monitored

        return monitored(result)  # its line was printed when its stack member finished

    return report


def _ranges(nums: list[int]) -> str:
    """'0-3,5' for [0, 1, 2, 3, 5]."""
    parts, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)
