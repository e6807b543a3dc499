"""The checks of a composed config, before any work starts: `refusals` (everything refused, in
one line each: what the command line calls, once, where Hydra composes), `check` (one message
per value out of range), `notices` (what a valid config asks for that will have no effect),
`preset_conflicts` (presets of `reg=[a,b]` that disagree) and `convex_obstacles` (what keeps a
config from the convex problem optim=fista solves).

Types and misspelt keys are enforced by the schema (regbench.config.schema) when Hydra composes;
these cover what a type cannot express. Each key's own range is its declaration's
(regbench.config.keys.range_problems); the functions here add what relates several keys.

A config that `refusals` found valid is remembered as checked (`is_checked`): the engine
(regbench.engine.runner.run) checks only a config that was not, such as one a program or a test
hands it directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from regbench.config.keys import ALL_SCHEDULE_KNOBS, KEYS, MODEL_KNOBS_SINCE, SCHEDULE_KNOBS, range_problems
from regbench.config.paths import config_dir, config_search_dirs
from regbench.config.schema import IMAGE_CORRUPTIONS, IMAGES, SYNTHETIC, Config, ModelConfig, OptimConfig


_CHECKED: set[str] = set()  # digests of the configs `refusals` found valid in this process


def refusals(cfg: Any, search: tuple[str, ...] | None = None, overrides: Any = None) -> list[str]:
    """Everything regbench refuses in a composed config, one line each; empty when it is valid,
    and then the config is remembered as checked (`is_checked`).

    Args:
        cfg: the job's config (without the `hydra` node).
        search: the folders a user added to Hydra's config search path (default: the current
            HydraConfig's).
        overrides: the job's overrides as typed, for the presets of `reg=[a,b]` that disagree.
    """
    search = config_search_dirs() if search is None else search
    problems = (preset_conflicts(overrides) if overrides is not None else []) or check(cfg, search)
    if not problems:
        _CHECKED.add(_digest(cfg, search))
    return problems


def is_checked(cfg: Any, search: tuple[str, ...] | None = None) -> bool:
    """Whether `refusals` found this very config (the same values, the same search path) valid."""
    if not _CHECKED:
        return False
    try:
        return _digest(cfg, config_search_dirs() if search is None else search) in _CHECKED
    except Exception:  # a value that does not resolve: not checked, and `check` says why
        return False


def _digest(cfg: Any, search: tuple[str, ...]) -> str:
    import hashlib
    import json

    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    text = json.dumps([resolved, list(search)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check(cfg: Any, search: tuple[str, ...] | None = None) -> list[str]:
    """Returns one message per out-of-range value in a composed config (empty when valid).

    Types and misspelt keys are already enforced by the schema when Hydra composes; this
    covers ranges and names, keys added with a `+` override (nothing would read them) and
    interpolations that do not resolve. Device availability is checked by the runner, which
    imports torch.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:  # e.g. reg.alpha='${oops}'
        from regbench.config.errors import describe

        return [describe(e)]
    extra = _unknown_keys(cfg, Config, "")
    if extra:
        return [f"{key} is not a regbench option: nothing would read it (the options: `regbench run --help`)" for key in extra]
    infinite = _non_finite(OmegaConf.to_container(cfg, resolve=True), "")
    if infinite:  # before the range checks: `inf >= 0` holds, and nan's messages would mislead
        return [f"{key} must be a finite number (got {value})" for key, value in infinite]
    reg, ds, tr, opt = cfg.reg, cfg.dataset, cfg.trainer, cfg.optim
    # Each key's own range, from its declaration (regbench.config.schema), then what relates keys.
    problems = range_problems(cfg) + [*_check_schedule(opt, tr), _check_solver(cfg)]
    from regbench.regularizers import check as check_regularizers

    search = config_search_dirs() if search is None else search
    problems += _check_seeds(cfg) + _check_synthetic(ds) + _check_own_data(ds) + check_regularizers(reg, search)
    problems += _check_logger(cfg.get("logger")) + _check_shift(cfg)
    if cfg.model.name == "mlp" and len(cfg.model.hidden_sizes) == 0:
        problems.append("model.hidden_sizes must name at least one layer for model=mlp (use model=linear)")
    if any(h < 1 for h in cfg.model.hidden_sizes) or any(c < 1 for c in cfg.model.channels):
        problems.append("model.hidden_sizes and model.channels must be positive")
    if cfg.model.name == "custom":
        problems += _check_custom(cfg, search)
    from regbench.regularizers import config_problems

    problems += config_problems(reg, cfg, search)
    return [p for p in problems if p]


def _check_custom(cfg: Any, search: tuple[str, ...]) -> list[str]:
    """model=custom: its factory loads, and the regularizers that insert layers reach it."""
    from regbench import UserInputError
    from regbench.models import custom_factory, custom_reg_problem

    if cfg.model._target_ is None:
        return ["model=custom needs model._target_, your factory (module.name), e.g. model._target_=mynet.make_net"]
    try:
        factory = custom_factory(cfg.model, search)
    except UserInputError as e:
        return [str(e)]
    problem = custom_reg_problem(factory, cfg)
    return [problem] if problem else []


def convex_obstacles(cfg: Any, search: tuple[str, ...] | None = None) -> list[str]:
    """What keeps a config from regbench's convex problem, one `key=value (why)` each; empty when
    it is one: model=linear trained on the mean data loss plus the reg.alpha / reg.l1_ratio
    penalty and nothing else (any alpha, 0 included). optim=fista solves only such configs, and
    result.json reports the `optimality` of the weights of such runs, whatever the optimizer.
    Each regularizer says whether it belongs to that objective (regbench.regularizers)."""
    from regbench.regularizers import convex_obstacles as acting

    search = config_search_dirs() if search is None else search
    out = [] if cfg.model.name == "linear" else [f"model={cfg.model.name} (not convex)"]
    return out + acting(cfg.reg, cfg.model, search)


def _check_solver(cfg: Any) -> str | None:
    """optim=fista only on the convex problem, and with a penalty (its minimum then exists)."""
    if cfg.optim.name != "fista":
        return None
    obstacles = convex_obstacles(cfg)
    if obstacles:
        return ("optim=fista solves model=linear with the reg.alpha / reg.l1_ratio penalty and nothing else; "
                f"here {', '.join(obstacles)}: drop them or choose another optimizer")
    from regbench.regularizers import convex_terms

    if sum(convex_terms(cfg.reg, config_search_dirs())) <= 0:  # the convex regularizers' l1 + l2 (reg.alpha)
        return ("optim=fista needs a penalty, reg.alpha > 0 (reg=l1, l2 or elasticnet): without one the "
                "optimum need not exist (separable classes) or be unique")
    return None


def notices(cfg: Any) -> list[str]:
    """What a valid config asks for that will have no effect, one line each (warnings, not errors)."""
    out = []
    if cfg.optim.momentum != 0 and cfg.optim.name != "sgd":
        out.append(f"optim.momentum={cfg.optim.momentum} has no effect with optim={cfg.optim.name} "
                   "(heavy-ball momentum is optim=sgd's; Adam's moments use its default betas)")
    if cfg.optim.name == "fista" and not cfg.reg.l1_proximal:
        out.append("reg.l1_proximal=false has no effect with optim=fista (its L1 part is always a proximal step)")
    defaults = ModelConfig()
    for knob, models in MODEL_KNOBS_SINCE.items():
        if cfg.model.name not in models and cfg.model[knob] != getattr(defaults, knob):
            out.append(f"model.{knob}={cfg.model[knob]} has no effect with model={cfg.model.name} "
                       f"(it is read by: {', '.join(models)})")
    from regbench.regularizers import notices as regularizer_notices

    return out + _schedule_notices(cfg) + regularizer_notices(cfg.reg, cfg, config_search_dirs())


def _schedule_notices(cfg: Any) -> list[str]:
    """Schedule knobs set away from their defaults for a schedule that does not read them, and a
    plateau patience that early stopping would pre-empt."""
    opt, out = cfg.optim, []
    reads = SCHEDULE_KNOBS.get(opt.schedule, ALL_SCHEDULE_KNOBS)
    defaults = OptimConfig()
    for knob in ALL_SCHEDULE_KNOBS:
        if knob not in reads and opt[knob] != getattr(defaults, knob):
            out.append(f"optim.{knob}={opt[knob]} has no effect with optim.schedule={opt.schedule} "
                       f"(it is read by: {', '.join(s for s, k in SCHEDULE_KNOBS.items() if knob in k)})")
    patience = cfg.trainer.patience
    if opt.schedule == "plateau" and patience is not None and opt.plateau_patience + 1 >= patience:
        out.append(f"optim.plateau_patience={opt.plateau_patience} cuts the rate after {opt.plateau_patience + 1} epochs "
                   f"without improvement, but early stopping (trainer.patience={patience}) ends the run after {patience}: "
                   "the rate may never be cut")
    return out


def preset_conflicts(overrides: list[str]) -> list[str]:
    """One message per key that two presets of a `reg=[a,b]` override set to different values,
    unless the overrides also set that key: the later preset would silently win
    (`reg=[l1,l2]` would be pure L2).

    Args:
        overrides: the job's overrides as typed (`hydra.overrides.task`).
    """
    from pathlib import Path

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    if OmegaConf.is_config(overrides):  # hydra.overrides.task: as typed, `${...}` unresolved
        overrides = OmegaConf.to_container(overrides, resolve=False)
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    explicit = {o.key_or_group.removeprefix("reg.") for o in parsed if o.key_or_group.startswith("reg.")}
    out = []
    for o in parsed:
        names = o.value() if o.key_or_group == "reg" else None
        if not isinstance(names, list) or len(names) < 2:
            continue
        values: dict[str, dict[str, Any]] = {}
        for name in names:
            path = Path(config_dir()) / "reg" / f"{name}.yaml"
            if path.is_file():  # a preset from another search path: Hydra composes it unchecked
                for key, value in OmegaConf.to_container(OmegaConf.load(path)).items():
                    values.setdefault(key, {})[name] = value
        for key, by_preset in values.items():
            if key not in explicit and len({str(v) for v in by_preset.values()}) > 1:
                said = ", ".join(f"{n} sets {v}" for n, v in by_preset.items())
                out.append(f"reg=[{','.join(names)}]: the presets disagree on reg.{key} ({said}) and the last would "
                           f"silently win; to mix L1 and L2 use reg=elasticnet (reg.l1_ratio sets the share), "
                           f"or set reg.{key} yourself")
    return out


def _non_finite(node: Any, prefix: str) -> list[tuple[str, float]]:
    """(key, value) of every float in a resolved config that is inf or nan."""
    import math

    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out += _non_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            out.append((f"{prefix}{key}", value))
    return out


def _unknown_keys(node: Any, schema: type, prefix: str) -> list[str]:
    """Keys of `node` that the dataclass `schema` lacks (a `+key=value` override adds them)."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    out = []
    for key in node:
        f = fields.get(key)
        if f is None:
            out.append(prefix + str(key))
        elif dataclasses.is_dataclass(f.default_factory):
            out += _unknown_keys(node[key], f.default_factory, f"{prefix}{key}.")
    return out


def _check_shift(cfg: Any) -> list[str]:
    """The image corruptions of `shift` on a dataset known to be a table (dataset=arrays is known
    once its file is read: regbench.engine.shift.problem)."""
    shift, name = cfg.get("shift"), cfg.dataset.name
    if shift is None or name in IMAGES or name == "arrays":
        return []
    asked = [c for c in IMAGE_CORRUPTIONS if shift.get(c)]
    if not asked:
        return []
    what = "a table of standardised features" if name != "digits" else "a table of 64 standardised pixels"
    return [f"shift.{asked[0]} applies to images (dataset={', '.join(IMAGES)}, or arrays of uint8 images); "
            f"dataset={name} is {what}: use shift.gaussian_noise"]


def _check_seeds(cfg: Any) -> list[str]:
    """The synthetic datasets' generator seed (seed and dataset.split_seed are checked by their ranges)."""
    if cfg.dataset.name not in SYNTHETIC:
        return []
    problem = KEYS["dataset.generator_seed"].problem(cfg.dataset.generator_seed)
    return [problem] if problem else []


def _check_synthetic(ds: Any) -> list[str]:
    """The synthetic datasets' keys, in regbench's names (scikit-learn would refuse them later,
    in its own)."""
    if ds.name not in SYNTHETIC:
        return []
    # make_classification (2 classes, 2 clusters each) needs 2 * 2 <= 2 ** n_informative
    least = 2 if ds.name == "synthetic" else 1
    problems = [
        KEYS["dataset.n_samples"].problem(ds.n_samples),
        KEYS["dataset.n_features"].problem(ds.n_features),
        None
        if least <= ds.n_informative <= max(ds.n_features, least)
        else f"dataset.n_informative must be in [{least}, dataset.n_features={ds.n_features}] (got {ds.n_informative})",
        None if ds.name != "synthetic_regression" else KEYS["dataset.noise"].problem(ds.noise),
    ]
    return [p for p in problems if p]


def _check_own_data(ds: Any) -> list[str]:
    """The keys of dataset=table, arrays and image_folder, and their files' presence (read later,
    by regbench.data, whose errors name the file too)."""
    from regbench.data.files import OWN_DATA, path_problems

    if ds.name not in OWN_DATA:
        return []
    problems = [
        KEYS["dataset.task"].problem(ds.task),
        KEYS["dataset.image_size"].problem(ds.image_size),
    ]
    if ds.name == "table":
        problems += [
            None if ds.target else "dataset=table needs dataset.target=COLUMN (the column to predict)",
            None if not (ds.target and ds.target in ds.drop) else f"dataset.drop lists the target {ds.target}",
            None if not (ds.test_path and ds.split_column) else
            "give dataset.test_path or dataset.split_column for the official test rows, not both",
            KEYS["dataset.index_col"].problem(ds.index_col),
        ]
    else:  # keys only a table reads: refused rather than silently ignored
        problems += [f"dataset.{key} applies to dataset=table only" for key in ("target", "test_path", "split_column", "index_col")
                     if ds.get(key)] + (["dataset.drop applies to dataset=table only"] if ds.drop else [])
    if ds.name == "image_folder" and ds.task == "regression":
        problems.append("dataset=image_folder is a classification (one subfolder per class); drop dataset.task")
    if ds.name != "image_folder" and ds.image_size is not None:
        problems.append("dataset.image_size applies to dataset=image_folder only")
    problems = [p for p in problems if p]
    return problems or path_problems(ds)


def _check_schedule(opt: Any, tr: Any) -> list[str | None]:
    """How the schedule knobs relate to optim.lr and trainer.max_epochs, for the schedule that
    reads them (their own ranges hold whatever the schedule: regbench.config.schema)."""
    reads = SCHEDULE_KNOBS.get(opt.schedule, ())
    return [
        None
        if "min_lr" not in reads or opt.min_lr <= opt.lr
        else f"optim.min_lr must be <= optim.lr={opt.lr} with optim.schedule={opt.schedule} (got {opt.min_lr})",
        None
        if "warmup_epochs" not in reads or opt.warmup_epochs < tr.max_epochs
        else f"optim.warmup_epochs must be < trainer.max_epochs={tr.max_epochs}, which is the cosine's horizon "
             f"(got {opt.warmup_epochs})",
    ]


def _check_logger(logger: Any) -> list[str]:
    """The logger's keys, and its extra: a missing package is named before any work starts
    (looked up, not imported: TensorBoard is loaded only by the job that logs)."""
    if logger is None:
        return []
    import importlib.util

    if KEYS["logger.name"].problem(logger.name) or KEYS["logger.histogram_every"].problem(logger.histogram_every):
        return []  # refused by its range
    if logger.name == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        return ['logger=tensorboard needs the tensorboard extra: pip install "regbench[tensorboard]"']
    return []
