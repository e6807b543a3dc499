"""regbench's Optuna sweeper: fair, stacked, pruned and resumable studies on Optuna's ask-and-tell API.

`hydra/sweeper=regbench_optuna` (the presets in conf/search/ select it). What it does, in order:

1. The search space: `hydra.sweeper.params` in the syntax of Hydra's Optuna sweeper
   (`interval(a, b)`, `tag(log, interval(a, b))`, `int(interval(a, b))`, `choice(...)`,
   `range(...)`), plus, as there, the command line's sweeps (`optim.lr=choice(0.1,0.01)`,
   `reg=l1,l2`) as categorical parameters. With `each: true` (`+search=each`) the command line's
   sweeps instead make one study per combination (`reg=l2,dropout dataset=wine,iris`: four
   studies), each over the space its regularizer declares (regbench.regularizers.search_space)
   plus `params`, each with the same budget, seeds and sampler seed. A study of `reg=cocktail`
   samples the cocktail's conditional space (regbench.config.cocktail.space): define-by-run, each
   trial's `trial.suggest_*` calls made when it is asked, as `custom_search_space` (Hydra's Optuna
   sweeper's option: a dotted path to a function (cfg, trial) -> None or overrides) does for every
   study. Such a function returns the trial's overrides (config key -> value), or None, and then
   the parameters it suggested are the overrides.
2. Trials are asked `batch` at a time; each trial's paired seeds (`search.seeds`: seed, seed+1,
   ...) are ordinary jobs handed to the launcher together, so `hydra/launcher=stacked` trains a
   batch's trials of one seed (of every seed, where the split is fixed) as one stack. A trial's
   value is the mean validation loss over its seeds.
3. With a pruner (`pruner: {_target_: optuna.pruners.WilcoxonPruner}`), the seeds run in rounds,
   one seed of every trial of the batch at a time; each seed's value is reported at its index and
   a trial the pruner finds worse than the best one on the paired seeds runs no further seed. Its
   value is the mean of the seeds it ran, told as COMPLETE (Optuna's documented use of
   WilcoxonPruner: the pruned trial's estimate keeps informing the sampler) with the user
   attribute `pruned` set; its finished runs stay ordinary runs.
   With `across` (`dataset=wine,iris hydra.sweeper.across=[dataset]`) the listed keys' values are
   every trial's instances: a trial runs on each instance at each seed (`<trial>/<instance>/seed_<n>`),
   its value is the mean over those runs, and the pruner's steps are the runs, seed by seed,
   instance by instance, so a trial is stopped before its remaining datasets run.
4. Studies live in `optuna.db` (SQLite) in the sweep folder unless `storage` says otherwise, and
   the sampler (its random state included) is pickled into `.regbench/` after every batch was
   asked, so the same command with the same `hydra.sweep.dir` continues each study to its budget
   and asks what an uninterrupted study would have asked: a trial left running is run again in
   its own folder (its finished seeds are skipped as done) and told.

Folders: `<sweep>/<trial>/` (one seed) or `<sweep>/<trial>/seed_<n>/` with the trial's
`trial.json`; under `each`, `<sweep>/<study>/...` with the study named by its overrides
(`reg=l2`). `search.json` in the sweep folder records every study's space, budget, seeds,
sampler, pruned and failed trials and best trial; regbench's report and study read it.
"""


import copy
import functools
import itertools
import json
import logging
import math
import os
import pickle
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STATE = ".regbench"  # regbench's own files in a sweep folder (regbench.plan's plan.json lives there too)
SEARCH_FILE = "search.json"  # regbench.budget.FILE: regbench report and study read it
JOBS_FILE = "search-jobs.json"  # in STATE: the next job number, for a re-launch's labels
DEFAULT_BATCH_CAP = 8  # under the stacked launcher: the sampler still learns from a study's earlier batches


@dataclass
class RegbenchOptunaSweeperConf:
    """`hydra.sweeper.*` of `hydra/sweeper=regbench_optuna`."""

    _target_: str = "hydra_plugins.regbench_optuna_sweeper.sweeper.RegbenchOptunaSweeper"
    direction: str = "minimize"  # the task returns the validation loss
    n_trials: int = 20  # trials per study (each regularizer's, under `each`)
    # Trials asked at a time and trained together; null: sized to the launcher (the stacked
    # launcher: min(8, max_stack); joblib: its n_jobs; others: 1).
    batch: Optional[int] = None
    # Optuna storage URL; null: sqlite:///<sweep folder>/optuna.db; "memory": not kept.
    storage: Optional[str] = None
    study_name: str = "regbench"
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    pruner: Any = None  # e.g. {_target_: optuna.pruners.WilcoxonPruner, p_threshold: 0.1}
    params: Dict[str, str] = field(default_factory=dict)
    each: bool = False  # one study per combination of the command line's sweeps, over its regularizer's space
    enqueue: List[Any] = field(default_factory=list)  # trials to run first: [{reg.alpha: 0.001}, ...]
    max_failure_rate: float = 1.0  # stop when a batch has a larger share of failed trials
    # Hydra's Optuna sweeper's option: a dotted path to a function (cfg, trial) -> None or {key: value}, a
    # define-by-run space sampled on every trial of every study (a study of reg=cocktail samples the cocktail's
    # anyway); its suggestions (None) or the overrides it returns join the trial's
    custom_search_space: Optional[str] = None
    # Config keys whose command-line values are every trial's instances, not parameters or studies:
    # `dataset=wine,iris,digits hydra.sweeper.across=[dataset]` runs each trial on the three datasets
    # (times its paired seeds); its value is the mean over them, and a pruner stops it between them
    across: List[str] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="regbench_optuna", node=RegbenchOptunaSweeperConf,
                             provider="regbench")


def _refuse(message: str, code: int = 2) -> None:
    from regbench.cli.callbacks import refuse  # imported here: Hydra's plugin scan imports this module everywhere

    refuse(message, code)


def _optuna() -> Any:
    """Optuna, quiet below warnings. Whether it is installed (and new enough) was asked before Hydra
    instantiated this sweeper (regbench.cli.callbacks.sweeper_problem)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distribution(override: Override) -> Any:
    """The Optuna distribution of one parsed `key=value` (as Hydra's Optuna sweeper reads it), or the
    value as text when it is not a sweep (a fixed parameter)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    key = override.get_key_element()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.encode))  # Hydra's range: stop excluded
        if not values:
            raise ValueError(f"{key}: {override.get_value_element_as_str()} holds no value")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if log_scale and not value.start > 0:
            raise ValueError(f"{key}: a log interval must start above 0 (got {value.start})")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{key}: {override.get_value_element_as_str()} is not a search space Optuna can sample")


def parse_space(entries: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`key=value` texts -> (the distributions of the sweeps, the fixed values). Raises ValueError
    with one line on a text Hydra cannot parse or a range Optuna cannot sample."""
    from hydra.errors import OverrideParseException

    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    parser = OverridesParser.create()
    for entry in entries:
        try:
            override = parser.parse_override(entry)
        except OverrideParseException as e:
            raise ValueError(f"{entry}: {str(e).splitlines()[0]}") from None
        value = distribution(override)
        name = override.get_key_element()
        if isinstance(value, str):
            fixed[name] = value
            space.pop(name, None)
        else:
            space[name] = value
            fixed.pop(name, None)
    return space, fixed


def value_text(value: Any) -> str:
    """A sampled value as a Hydra override's value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _Study:
    """One study of a sweep: its Optuna study, space, budget and folders."""

    def __init__(self, key: str, overrides: list[str], space: dict[str, Any], fixed: dict[str, str],
                 n_trials: int, seeds: list[int], study: Any, sampler_file: Path | None,
                 define: Sequence[Any] = (), cfg: Any = None, described: dict[str, str] | None = None,
                 instances: Sequence[list[str]] = ([],)) -> None:
        self.key, self.overrides, self.space, self.fixed = key, overrides, space, fixed
        self.n_trials, self.seeds, self.study, self.sampler_file = n_trials, seeds, study, sampler_file
        # what each trial runs on: every instance (`across`; [[]] without) at every paired seed, seed by
        # seed; a pruner's step is the index into `units`, the same for every trial (paired evaluations)
        self.instances = [list(i) for i in instances]
        self.units = [(inst, seed) for seed in seeds for inst in self.instances]
        self.resume: list[Any] = []  # trials left running by an interrupted launch, run again first
        # define-by-run spaces (the cocktail's, custom_search_space), called on each asked trial with the
        # study's job config; the overrides they gave each trial, by its number
        self.define, self.cfg, self.described = list(define), cfg, dict(described or {})
        self.defined: dict[int, dict[str, str]] = {}

    def sample(self, trial: Any) -> None:
        """Calls the study's define-by-run spaces on `trial` (asked, or asked again on a resume: its
        parameters then come back as they were) and keeps the overrides they give it."""
        out: dict[str, str] = {}
        for function in self.define:
            before = set(trial.params)
            given = function(self.cfg, trial)
            if given is None:  # Hydra's convention: what it suggested is what the trial overrides
                given = {k: v for k, v in trial.params.items() if k not in before}
            out.update({str(k): value_text(v) if not isinstance(v, str) else v for k, v in given.items()})
        if self.define:
            self.defined[trial.number] = out
            trial.set_user_attr("regbench_overrides", out)

    def ask(self) -> Any:
        trial = self.study.ask(fixed_distributions=self.space)
        self.sample(trial)
        return trial

    @property
    def label(self) -> str:
        return self.key or self.study.study_name

    def folder(self, number: int) -> str:
        return f"{self.key}/{number}" if self.key else str(number)

    def counted(self) -> int:
        """Trials that used the budget: finished in any state (a trial failed only because its ask
        was interrupted, `regbench_reasked`, does not count: it is asked again)."""
        from optuna.trial import TrialState

        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
                   and not t.user_attrs.get("regbench_reasked"))

    def to_ask(self) -> int:
        return max(0, self.n_trials - self.counted() - len(self.resume))

    def save_sampler(self, asked: list[int]) -> None:
        """The sampler after this batch's asks, with their numbers: a re-launch that finds them
        running runs them again and asks on from the very same random state."""
        if self.sampler_file is None:
            return
        self.sampler_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.sampler_file.with_name(self.sampler_file.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"sampler": self.study.sampler, "asked": asked}, f)
        os.replace(tmp, self.sampler_file)

    def instance_label(self, index: int) -> str:
        """The instance of the trial's `index`-th run as a folder name ("" without `across`)."""
        return ",".join(self.units[index][0]).replace("/", "_")

    def job(self, trial: Any, index: int, base: list[str]) -> list[str]:
        """The overrides of the trial's `index`-th run (of `units`: an instance at a seed)."""
        params = [f"{k}={value_text(v)}" for k, v in trial.params.items() if k in self.space]
        params += [f"{k}={v}" for k, v in self.defined.get(trial.number, {}).items()]
        fixed = [f"{k}={v}" for k, v in self.fixed.items()]
        instance, seed = self.units[index]
        folder = self.folder(trial.number)
        if len(self.instances) > 1:
            folder += f"/{self.instance_label(index)}"
        if len(self.seeds) > 1:
            folder += f"/seed_{seed}"
        return [*base, *self.overrides, *instance, *fixed, *params, f"seed={seed}", "search.seeds=1",
                f"hydra.sweep.subdir='{folder}'"]  # quoted: a study's name holds = and ,


class RegbenchOptunaSweeper(Sweeper):
    """See the module's docstring."""

    def __init__(self, direction: str = "minimize", n_trials: int = 20, batch: Optional[int] = None,
                 storage: Optional[str] = None, study_name: str = "regbench", sampler: Any = None, pruner: Any = None,
                 params: Any = None, each: bool = False, enqueue: Any = None, max_failure_rate: float = 1.0,
                 custom_search_space: Optional[str] = None, across: Any = None) -> None:
        self.direction = direction
        self.n_trials, self.batch, self.storage, self.study_name = n_trials, batch, storage, study_name
        # Hydra instantiates the nodes with a _target_ before this runs: each study gets a copy of these
        # untouched objects (the same seed, the same random state); their configs come in setup.
        self.sampler_proto, self.pruner_proto = sampler, pruner
        self.sampler_conf: Any = None
        self.pruner_conf: Any = None
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.each = each
        self.enqueue = [OmegaConf.to_container(e, resolve=True) if OmegaConf.is_config(e) else dict(e)
                        for e in (enqueue or [])]
        self.max_failure_rate = max_failure_rate
        self.custom_search_space = custom_search_space
        self.across = [str(k) for k in (across or [])]
        self.job_idx = 0
        self.base: list[str] = []
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        node = config.hydra.sweeper
        self.sampler_conf = OmegaConf.to_container(node.sampler, resolve=True) if node.get("sampler") else None
        self.pruner_conf = OmegaConf.to_container(node.pruner, resolve=True) if node.get("pruner") else None
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                               task_function=task_function)

    # ---- what the command asks --------------------------------------------------------------------

    def _batch_size(self) -> int:
        if self.batch is not None:
            if self.batch < 1:
                _refuse(f"hydra.sweeper.batch must be at least 1 (got {self.batch})")
            return int(self.batch)
        launcher = self.config.hydra.launcher
        target = str(launcher.get("_target_", ""))
        if target.endswith("StackedLauncher"):
            return max(1, min(DEFAULT_BATCH_CAP, int(launcher.get("max_stack", DEFAULT_BATCH_CAP))))
        if "joblib" in target:
            n = launcher.get("n_jobs", 1)
            return int(n) if n and n > 0 else (os.cpu_count() or 1)
        return 1

    def _compose(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _studies(self, arguments: list[str], optuna: Any) -> list[_Study]:
        """Every study of the command, checked (one line and exit 2 on bad input) before any runs."""
        from hydra.core.hydra_config import HydraConfig

        saved = HydraConfig.instance().cfg
        try:
            return self._checked_studies(arguments, optuna)
        finally:
            HydraConfig.instance().cfg = saved

    def _checked_studies(self, arguments: list[str], optuna: Any) -> list[_Study]:
        from regbench.cli.callbacks import data_refusals
        from regbench.config.checks import refusals
        from regbench.config.paths import config_search_dirs
        from regbench.jobs import as_job, task_config

        custom = None
        if self.custom_search_space:
            from hydra.utils import get_method

            try:
                custom = get_method(self.custom_search_space)
            except Exception as e:
                _refuse(f"hydra.sweeper.custom_search_space={self.custom_search_space}: {str(e).splitlines()[0]}")

        parser = OverridesParser.create()
        try:
            parsed = parser.parse_overrides(arguments)
        except Exception as e:
            _refuse(str(e).splitlines()[0])
        for o in parsed:
            if o.get_key_element() in ("seed", "search.seeds") and o.is_sweep_override():
                _refuse(f"{o.input_line}: a search's trials share their seeds; set search.seeds=N (paired seeds "
                        "seed, seed+1, ...) and the base seed with seed=S instead of sweeping them")
        instances = self._instances(parsed)
        sweeps = [o for o in parsed if o.is_sweep_override() and o.key_or_group not in self.across]
        base = [o.input_line for o in parsed if not o.is_sweep_override() and o.key_or_group not in self.across]
        self.base = base  # every job's overrides start with the command line's fixed ones
        if self.each:
            grid = [[f"{o.get_key_element()}={value_text(v)}" for v in o.sweep_iterator(transformer=Transformer.encode)]
                    for o in sweeps]
            combos = [list(c) for c in itertools.product(*grid)] if grid else [[]]
            cli_space: list[str] = []
        else:
            combos, cli_space = [[]], [o.input_line for o in sweeps]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        specs: list[tuple[Any, ...]] = []
        resolved: list[tuple[str, DictConfig]] = []  # the probes, for the checks only the data can make
        for combo in combos:
            key = ",".join(combo)
            try:
                cfg = self._compose(base + combo + instances[0])
            except Exception as e:  # Hydra's own message for an unknown option or key
                _refuse(f"{' '.join(base + combo)}: {str(e).splitlines()[0]}")
            search = config_search_dirs(cfg.hydra)
            entries = []
            if self.each:
                from regbench import UserInputError
                from regbench.regularizers import search_space

                try:
                    entries += [f"{k}={v}" for k, v in search_space(cfg.reg, search, cfg.model).items()]
                except UserInputError as e:
                    _refuse(f"{key or 'the search'}: {e}")
            entries += [f"{k}={v}" for k, v in self.params.items()] + cli_space
            try:
                space, fixed = parse_space(entries)
            except ValueError as e:
                _refuse(f"search space: {e}")
            # the space's corners: every range at both ends, every choice once, checked as a basic sweep's jobs
            # are, on every instance
            for probe in (inst + probe for inst in instances for probe in _probes(space, fixed)):
                try:
                    probe_cfg = self._compose(base + combo + probe)
                except Exception as e:  # Hydra's own message, e.g. an unknown option of a choice
                    _refuse(f"{' '.join(combo + probe)}: {str(e).splitlines()[0]}")
                as_job(probe_cfg, 0)  # `${hydra:...}` values read the job's own Hydra config
                problems = refusals(task_config(probe_cfg), search, overrides=base + combo + probe)
                if problems:
                    _refuse(f"{key + ': ' if key else ''}{problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
                resolved.append((" ".join(combo + probe), task_config(probe_cfg)))
            define, described, job_cfg = self._define_by_run(cfg, key, custom, base + combo + instances[0])
            n_trials = int(self.n_trials)
            if n_trials < 1:
                _refuse(f"hydra.sweeper.n_trials must be at least 1 (got {n_trials})")
            if not space and not define:  # nothing to tune (batch norm, the baseline): one trial is the whole budget can buy
                n_trials = 1
            seeds = [int(cfg.seed) + i for i in range(int(cfg.search.seeds))]
            specs.append((key, combo, space, fixed, n_trials, seeds, define, job_cfg, described))
        # data that does not load or a model that does not fit it: one line before anything runs, as for a basic sweep
        problems = data_refusals(resolved, config_search_dirs(self.config.hydra))
        if problems:
            message, where = next(iter(problems.items()))
            _refuse(f"{message} (in {where[0]})" if where[0] else message)
        storage = self._storage(sweep_dir, optuna)
        studies = []
        for key, combo, space, fixed, n_trials, seeds, define, job_cfg, described in specs:
            name = self.study_name + (f"[{key}]" if key else "")
            study = optuna.create_study(study_name=name, storage=storage, sampler=self._sampler(),
                                        pruner=self._pruner(), direction=self.direction, load_if_exists=True)
            safe = key.replace("/", "_")
            sampler_file = sweep_dir / STATE / f"sampler-{safe or 'study'}.pkl" if storage is not None else None
            studies.append(_Study(safe, combo, space, fixed, n_trials, seeds, study, sampler_file, define, job_cfg,
                                  described, instances))
        return studies

    def _instances(self, parsed: list[Override]) -> list[list[str]]:
        """The instances every trial runs on: the product of the `across` keys' command-line values,
        each as its overrides ([[]] without `across`). One line and exit 2 for an `across` key the
        command line does not give, or one that is the trials' seeds."""
        if not self.across:
            return [[]]
        given = {o.key_or_group: o for o in parsed}
        grid = []
        for name in self.across:
            if name in ("seed", "search.seeds"):
                _refuse(f"hydra.sweeper.across=[{name}]: seeds are every trial's already (search.seeds=N runs seed, "
                        "seed+1, ... as paired instances)")
            o = given.get(name)
            if o is None:
                _refuse(f"hydra.sweeper.across names {name}, which the command line does not give: list its "
                        f"instances, e.g. {name}=a,b,c")
            if not o.is_sweep_override():
                grid.append([o.input_line])
                continue
            if o.is_interval_sweep():
                _refuse(f"{o.input_line}: an across key's instances must be listed (a,b,c or choice/range), "
                        "not an interval")
            grid.append([f"{o.get_key_element()}={value_text(v)}" for v in o.sweep_iterator(transformer=Transformer.encode)])
        return [list(c) for c in itertools.product(*grid)]

    def _define_by_run(self, cfg: DictConfig, key: str, custom: Any,
                       overrides: list[str]) -> tuple[list[Any], dict[str, str], Any]:
        """A study's define-by-run spaces (the cocktail's where its `reg` is the cocktail's, then
        `custom_search_space`), their description for search.json, and the job config they are
        called with. The cocktail's space is laid out here, so that what it cannot be (no
        ingredient, data that does not load) is said before any run."""
        from regbench import UserInputError
        from regbench.jobs import as_job, task_config
        from regbench.regularizers import is_cocktail

        define: list[Any] = []
        described: dict[str, str] = {}
        if not is_cocktail(cfg.reg) and custom is None:
            return define, described, None
        job_cfg = self._compose(overrides)
        as_job(job_cfg, 0)
        job_cfg = task_config(job_cfg)
        if is_cocktail(cfg.reg):
            from regbench.config import cocktail
            from regbench.config.paths import config_search_dirs

            try:
                described = cocktail.describe(job_cfg, config_search_dirs(cfg.hydra))
            except UserInputError as e:
                _refuse(f"{key or 'the search'}: {e}")
            if not described:
                _refuse(f"{key or 'the search'}: reg=cocktail has no ingredient the model and the data allow")
            define.append(cocktail.space)
        if custom is not None:
            define.append(custom)
            described[self.custom_search_space] = "define-by-run (custom_search_space)"
        return define, described, job_cfg

    def _storage(self, sweep_dir: Path, optuna: Any) -> Any:
        if self.storage == "memory":
            return None
        url = self.storage or f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as e:
            _refuse(f"hydra.sweeper.storage={url}: {type(e).__name__}: {str(e).splitlines()[0]}", 1)

    def _sampler(self) -> Any:
        return copy.deepcopy(self.sampler_proto) if self.sampler_proto is not None else None

    def _pruner(self) -> Any:
        import optuna

        if self.pruner_proto is None:
            return optuna.pruners.NopPruner()
        if isinstance(self.pruner_proto, functools.partial):  # `_partial_: true`, as the presets give it
            with warnings.catch_warnings():  # WilcoxonPruner's "experimental" at every instantiation
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return self.pruner_proto()
        return copy.deepcopy(self.pruner_proto)

    # ---- resuming ---------------------------------------------------------------------------------

    def _resume(self, st: _Study, optuna: Any) -> None:
        """Continues a study found in the storage: the sampler from its pickle, trials left running
        by an interrupted launch run again (those asked after the pickle was written are failed and
        asked again from the pickled state, which gives them the same parameters)."""
        from optuna.trial import TrialState

        trials = st.study.get_trials(deepcopy=False)
        if not trials:
            for params in self.enqueue:
                st.study.enqueue_trial(params)
            return
        saved = None
        if st.sampler_file is not None and st.sampler_file.exists():
            try:
                with open(st.sampler_file, "rb") as f:
                    saved = pickle.load(f)
                st.study.sampler = saved["sampler"]
            except Exception as e:  # a damaged pickle: the study goes on with a fresh sampler, said so
                print(f"regbench: warning: {st.sampler_file}: {type(e).__name__}: {e}; the sampler starts afresh "
                      "(the study's trials so far still inform it)", file=sys.stderr)
                saved = None
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            if saved is None or t.number in saved["asked"]:
                st.resume.append(optuna.trial.Trial(st.study, t._trial_id))
            else:
                st.study._storage.set_trial_user_attr(t._trial_id, "regbench_reasked", True)
                st.study.tell(t.number, state=TrialState.FAIL)
        if st.resume:
            print(f"search {st.label}: trials {', '.join(str(t.number) for t in st.resume)} were interrupted; "
                  "they run again (their finished seeds are kept)", flush=True)

    def _next_job(self, studies: list[_Study]) -> int:
        """The first job number of this launch: where the launch before it (in the study's storage)
        stopped after its last whole launch, so that a re-launch's `[job N]` labels go on from the
        interrupted one's instead of starting again at 0."""
        if not studies or studies[0].sampler_file is None:
            return 0
        try:
            return int(json.loads((studies[0].sampler_file.parent / JOBS_FILE).read_text())["next_job"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _save_next_job(self, studies: list[_Study]) -> None:
        if not studies or studies[0].sampler_file is None:
            return
        try:
            studies[0].sampler_file.parent.mkdir(parents=True, exist_ok=True)
            _write_json(studies[0].sampler_file.parent / JOBS_FILE, {"next_job": self.job_idx})
        except OSError:
            pass  # only the labels of a later re-launch depend on it

    # ---- the sweep --------------------------------------------------------------------------------

    def sweep(self, arguments: List[str]) -> None:
        assert self.config is not None and self.hydra_context is not None
        optuna = _optuna()
        batch = self._batch_size()
        studies = self._studies(list(arguments), optuna)
        for st in studies:
            self._resume(st, optuna)
        self.job_idx = self._next_job(studies)
        self._write_search(studies, batch)
        print(self._budget_line(studies, batch), flush=True)
        while True:
            work: list[tuple[_Study, Any]] = []
            for st in studies:
                take = st.resume[:batch]
                st.resume = st.resume[len(take):]
                for t in take:  # a trial run again: its define-by-run overrides from its parameters
                    st.sample(t)
                asked = [st.ask() for _ in range(min(batch - len(take), st.to_ask()))]
                if asked:
                    st.save_sampler([t.number for t in asked])
                work += [(st, t) for t in take + asked]
            if not work:
                break
            failed = self._run_batch(work, optuna)
            self._write_search(studies, batch)
            if failed / len(work) > self.max_failure_rate:
                self._finish(studies, batch)
                _refuse(f"{failed} of the batch's {len(work)} trials failed, more than hydra.sweeper.max_failure_rate="
                        f"{self.max_failure_rate}; the study stops (re-launch with the same hydra.sweep.dir to go on)", 1)
        self._finish(studies, batch)

    def _run_batch(self, work: list[tuple[_Study, Any]], optuna: Any) -> int:
        """Runs a batch's trials (their runs, an instance at a seed each, as jobs of one launch, or run
        by run with a pruner), tells Optuna each trial's value; returns how many failed."""
        from optuna.trial import TrialState

        base = self.base
        n_units = max(len(st.units) for st, _ in work)
        rounds = [list(range(n_units))] if isinstance(work[0][0].study.pruner, optuna.pruners.NopPruner) \
            else [[i] for i in range(n_units)]
        values: dict[int, dict[int, float | None]] = {id(t): {} for _, t in work}
        pruned: set[int] = set()
        stopped: set[int] = set()  # failed or pruned: no further run
        for indices in rounds:
            jobs = [(st, t, i) for st, t in work for i in indices if i < len(st.units) and id(t) not in stopped]
            if not jobs:
                break
            returns = self.launcher.launch([st.job(t, i, base) for st, t, i in jobs], initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            self._save_next_job([st for st, _ in work])
            for (st, t, i), ret in zip(jobs, returns):
                value = _value(ret)
                values[id(t)][i] = value
                if value is None:
                    stopped.add(id(t))
                    continue
                if i not in t.study._storage.get_trial(t._trial_id).intermediate_values:
                    t.report(value, i)
            for st, t in work:
                if id(t) in stopped or len(values[id(t)]) >= len(st.units):
                    continue
                if t.should_prune():
                    pruned.add(id(t))
                    stopped.add(id(t))
        failed = 0
        for st, t in work:
            ran = [i for i in range(len(st.units)) if i in values[id(t)]]
            got = [values[id(t)][i] for i in ran]
            if not got or any(v is None for v in got):
                st.study.tell(t, state=TrialState.FAIL)
                state, mean = "failed", None
                failed += 1
            else:
                mean = math.fsum(got) / len(got)
                if id(t) in pruned:
                    t.set_user_attr("pruned", True)
                t.set_user_attr("seeds", [st.units[i][1] for i in ran])
                if len(st.instances) > 1:  # aligned with "seeds": the instance of each run
                    t.set_user_attr("instances", [st.instance_label(i) for i in ran])
                st.study.tell(t, values=[mean])
                state = "pruned" if id(t) in pruned else "complete"
            self._trial_record(st, t, ran, got, mean, state)
        return failed

    def _trial_record(self, st: _Study, t: Any, ran: list[int], values: list[Any], mean: float | None,
                      state: str) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        label = f"trial {st.folder(t.number)}"
        seeds = [st.units[i][1] for i in ran]
        across = len(st.instances) > 1
        if across:
            what = f"runs ({len(ran)} of {len(st.units)}: {len(st.instances)} instances x seeds {_seed_text(st.seeds)})"
        else:
            what = f"seeds {_seed_text(seeds)}"
        if state == "failed":
            print(f"[{label}] failed (a run failed or diverged: see its line above); the study goes on", flush=True)
        elif state == "pruned":
            done = f"{len(ran)} of {len(st.units)} runs" if across else f"seeds {_seed_text(seeds)} of {_seed_text(st.seeds)}"
            print(f"[{label}] pruned after {done}: worse than the best trial on the paired "
                  f"{'runs' if across else 'seeds'} (mean val_loss {mean:.6g}); its finished runs are kept", flush=True)
        elif len(st.units) > 1:
            print(f"[{label}] mean val_loss over {what}: {mean:.6g}", flush=True)
        if len(st.units) > 1:
            record = {"trial": t.number, "study": st.study.study_name, "params": dict(t.params), "seeds": seeds,
                      "values": values, "mean": mean, "state": state}
            if across:
                record["instances"] = [st.instance_label(i) for i in ran]
            if st.define:
                record["overrides"] = st.defined.get(t.number, {})
            folder = sweep_dir / st.folder(t.number)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                _write_json(folder / "trial.json", record)
            except OSError as e:
                print(f"regbench: warning: {folder / 'trial.json'} not written: {e}", file=sys.stderr)

    def _budget_line(self, studies: list[_Study], batch: int) -> str:
        st = studies[0]
        sampler = type(st.study.sampler).__name__
        seed = (self.sampler_conf or {}).get("seed") if self.sampler_conf else None
        pruner = "none" if not self.pruner_conf else str(self.pruner_conf.get("_target_", "")).rsplit(".", 1)[-1]
        budgets = sorted({s.n_trials for s in studies})
        what = (f"{len(studies)} studies ({', '.join(s.label for s in studies)}), each" if len(studies) > 1 else "1 study,")
        line = (f"search: {what} {'/'.join(map(str, budgets))} trials x "
                + (f"{len(st.instances)} instances ({', '.join(st.instance_label(i) for i in range(len(st.instances)))}) x "
                   if len(st.instances) > 1 else "")
                + f"{len(st.seeds)} paired seeds ({_seed_text(st.seeds)}), sampler {sampler}(seed={seed}), pruner {pruner}, "
                f"{batch} trials at a time")
        single = [s.label for s in studies if not s.space and not s.define]
        if single:
            line += f"; {', '.join(single)}: nothing to tune, 1 trial"
        return line

    def _write_search(self, studies: list[_Study], batch: int) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        out = {"sweeper": "regbench_optuna", "batch": batch, "direction": self.direction,
               "sampler": self.sampler_conf, "pruner": self.pruner_conf,
               "storage": self.storage or "sqlite:///optuna.db (in this folder)",
               "studies": [_summary(st) for st in studies]}
        try:
            _write_json(sweep_dir / SEARCH_FILE, out)
        except OSError as e:
            print(f"regbench: warning: {sweep_dir / SEARCH_FILE} not written: {e}", file=sys.stderr)

    def _finish(self, studies: list[_Study], batch: int) -> None:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self._write_search(studies, batch)
        for st in studies:
            s = _summary(st)
            if s["best"] is None:
                print(f"search {st.label}: no trial finished", flush=True)
                continue
            print(f"search {st.label}: best trial {s['best']['trial']} (mean val_loss {s['best']['value']:.6g}) of "
                  f"{s['counted']} ({s['pruned']} pruned, {s['failed']} failed)", flush=True)
            log.info(f"Best parameters: {s['best']['params']}")
            print(f"Best parameters: {s['best']['params']}", flush=True)
        if len(studies) == 1 and _summary(studies[0])["best"] is not None:
            best = _summary(studies[0])["best"]
            OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": best["params"], "best_value": best["value"]}),
                           sweep_dir / "optimization_results.yaml")


def _probes(space: dict[str, Any], fixed: dict[str, str]) -> list[list[str]]:
    """Overrides that reach every corner of the space a config check can tell: all ranges at their
    low ends, all at their high ends, and each choice of each categorical parameter once."""
    from optuna.distributions import CategoricalDistribution

    fixed_part = [f"{k}={v}" for k, v in fixed.items()]
    cats = {k: d.choices for k, d in space.items() if isinstance(d, CategoricalDistribution)}
    ranged = {k: d for k, d in space.items() if k not in cats}
    width = max([2] + [len(c) for c in cats.values()])
    probes = []
    for i in range(width):
        probe = [f"{k}={value_text(d.low if i % 2 == 0 else d.high)}" for k, d in ranged.items()]
        probe += [f"{k}={value_text(c[min(i, len(c) - 1)])}" for k, c in cats.items()]
        probes.append(probe + fixed_part)
    return probes


def _value(ret: Any) -> float | None:
    """A job's validation loss; None for a failed job (an exception, or a run that failed or diverged)."""
    if ret.status != JobStatus.COMPLETED:
        return None
    value = ret.return_value
    try:
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) else None


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _summary(st: _Study) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = [t for t in st.study.get_trials(deepcopy=False) if not t.user_attrs.get("regbench_reasked")]
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    complete = [t for t in done if t.state == TrialState.COMPLETE and not t.user_attrs.get("pruned")]
    best = None
    if complete:
        b = min(complete, key=lambda t: t.value) if st.study.direction.name == "MINIMIZE" else max(complete, key=lambda t: t.value)
        best = {"trial": b.number, "folder": st.folder(b.number), "value": b.value, "params": dict(b.params)}
        if st.define:  # what the define-by-run spaces made of its parameters: the config values it ran with
            best["overrides"] = b.user_attrs.get("regbench_overrides", {})
    return {"name": st.study.study_name, "key": st.key, "overrides": st.overrides,
            "space": {**{k: repr(v) for k, v in st.space.items()}, **st.described}, "fixed": st.fixed,
            "trials": st.n_trials, "seeds": st.seeds,
            **({"instances": [st.instance_label(i) for i in range(len(st.instances))]} if len(st.instances) > 1 else {}),
            "counted": len(done),
            "pruned": sum(1 for t in done if t.user_attrs.get("pruned")),
            "failed": sum(1 for t in done if t.state == TrialState.FAIL),
            "running": sum(1 for t in trials if t.state == TrialState.RUNNING), "best": best}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)
