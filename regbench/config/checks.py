"""The checks of a composed config, before any work starts: `check` (one message per value out
of range), `notices` (what a valid config asks for that will have no effect), `preset_conflicts`
(presets of `reg=[a,b]` that disagree) and `convex_obstacles` (what keeps a config from the
convex problem optim=fista solves).

Types and misspelt keys are enforced by the schema (regbench.config.schema) when Hydra composes;
these cover what a type cannot express. The CLI and the runner both call `check`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from regbench.config.keys import ALL_SCHEDULE_KNOBS, MODEL_KNOBS_SINCE, SCHEDULE_KNOBS, SCHEDULES
from regbench.config.paths import config_dir, config_search_dirs
from regbench.config.schema import (
    ACTIVATIONS,
    DATASETS,
    LOGGERS,
    MODELS,
    OPTIMIZERS,
    TASKS,
    Config,
    ModelConfig,
    OptimConfig,
)


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> str | None:
    if value not in allowed:
        return f"{key} must be one of {', '.join(allowed)} (got {value!r})"
    return None


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
    problems = [
        _choice(ds.name, DATASETS, "dataset.name"),
        _choice(cfg.model.name, MODELS, "model.name"),
        _choice(cfg.model.activation, ACTIVATIONS, "model.activation"),
        _choice(opt.name, OPTIMIZERS, "optim.name"),
        None if opt.lr > 0 else f"optim.lr must be > 0 (got {opt.lr})",
        None if 0 <= opt.momentum < 1 else f"optim.momentum must be in [0, 1) (got {opt.momentum})",
        None if opt.tol > 0 else f"optim.tol must be > 0 (got {opt.tol})",
        None if opt.max_iter >= 1 else f"optim.max_iter must be >= 1 (got {opt.max_iter})",
        None if opt.log_every >= 1 else f"optim.log_every must be >= 1 (got {opt.log_every})",
        *_check_schedule(opt, tr),
        None if tr.max_epochs >= 1 else f"trainer.max_epochs must be >= 1 (got {tr.max_epochs})",
        None if tr.batch_size >= 1 else f"trainer.batch_size must be >= 1 (got {tr.batch_size})",
        None if tr.eval_batch_size >= 1 else f"trainer.eval_batch_size must be >= 1 (got {tr.eval_batch_size})",
        None
        if tr.patience is None or tr.patience >= 1
        else f"trainer.patience must be >= 1 or null (got {tr.patience})",
        None if tr.min_delta >= 0 else f"trainer.min_delta must be >= 0 (got {tr.min_delta})",
        None
        if tr.checkpoint_seconds >= 0
        else f"trainer.checkpoint_seconds must be >= 0 (got {tr.checkpoint_seconds})",
        None
        if tr.num_threads == "auto" or (isinstance(tr.num_threads, int) and not isinstance(tr.num_threads, bool) and tr.num_threads >= 1)
        else f"trainer.num_threads must be auto or a positive count (got {tr.num_threads!r})",
        None if 0 < ds.val_fraction < 1 else f"dataset.val_fraction must be in (0, 1) (got {ds.val_fraction})",
        None if 0 < ds.test_fraction < 1 else f"dataset.test_fraction must be in (0, 1) (got {ds.test_fraction})",
        None if 0 <= ds.label_noise <= 1 else f"dataset.label_noise must be in [0, 1] (got {ds.label_noise})",
        _check_train_size(ds.train_size),
        _check_device(cfg.device),
        _check_solver(cfg),
    ]
    from regbench.regularizers import check as check_regularizers

    search = config_search_dirs() if search is None else search
    problems += _check_seeds(cfg) + _check_synthetic(ds) + _check_own_data(ds) + check_regularizers(reg, search)
    problems += _check_logger(cfg.get("logger"))
    if cfg.model.name == "mlp" and len(cfg.model.hidden_sizes) == 0:
        problems.append("model.hidden_sizes must name at least one layer for model=mlp (use model=linear)")
    if any(h < 1 for h in cfg.model.hidden_sizes) or any(c < 1 for c in cfg.model.channels):
        problems.append("model.hidden_sizes and model.channels must be positive")
    problems += _check_residual(cfg.model)
    if cfg.search.seeds < 1:
        problems.append(f"search.seeds must be >= 1 (got {cfg.search.seeds})")
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


def _check_residual(model: Any) -> list[str]:
    """The residual models' knobs, whatever the model (a sweep may share them across models)."""
    out = [f"model.{key} must be >= 1 (got {model[key]})" for key in ("groups", "blocks", "width", "width_mult")
           if model[key] < 1]
    if model.depth < 8 or (model.depth - 2) % 6 != 0:
        out.append(f"model.depth must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110... (got {model.depth})")
    return out


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


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers


def _check_seeds(cfg: Any) -> list[str]:
    keys = [("seed", cfg.seed), ("dataset.split_seed", cfg.dataset.split_seed)]
    if cfg.dataset.name in ("synthetic", "synthetic_regression"):
        keys.append(("dataset.generator_seed", cfg.dataset.generator_seed))
    return [f"{key} must be in [0, {SEED_MAX}] (got {value})" for key, value in keys if not 0 <= value <= SEED_MAX]


def _check_synthetic(ds: Any) -> list[str]:
    """The synthetic datasets' keys, in regbench's names (scikit-learn would refuse them later,
    in its own)."""
    if ds.name not in ("synthetic", "synthetic_regression"):
        return []
    # make_classification (2 classes, 2 clusters each) needs 2 * 2 <= 2 ** n_informative
    least = 2 if ds.name == "synthetic" else 1
    problems = [
        None if ds.n_samples >= 10 else f"dataset.n_samples must be >= 10 (got {ds.n_samples})",
        None if ds.n_features >= 1 else f"dataset.n_features must be >= 1 (got {ds.n_features})",
        None
        if least <= ds.n_informative <= max(ds.n_features, least)
        else f"dataset.n_informative must be in [{least}, dataset.n_features={ds.n_features}] (got {ds.n_informative})",
        None if ds.name != "synthetic_regression" or ds.noise >= 0 else f"dataset.noise must be >= 0 (got {ds.noise})",
    ]
    return [p for p in problems if p]


def _check_own_data(ds: Any) -> list[str]:
    """The keys of dataset=table, arrays and image_folder, and their files' presence (read later,
    by regbench.data, whose errors name the file too)."""
    from regbench.data.files import OWN_DATA, path_problems

    if ds.name not in OWN_DATA:
        return []
    problems = [
        _choice(ds.task, TASKS, "dataset.task"),
        None if ds.image_size is None or ds.image_size >= 1 else f"dataset.image_size must be >= 1 (got {ds.image_size})",
    ]
    if ds.name == "table":
        problems += [
            None if ds.target else "dataset=table needs dataset.target=COLUMN (the column to predict)",
            None if not (ds.target and ds.target in ds.drop) else f"dataset.drop lists the target {ds.target}",
            None if not (ds.test_path and ds.split_column) else
            "give dataset.test_path or dataset.split_column for the official test rows, not both",
            None if ds.index_col is None or ds.index_col >= 1 else
            f"dataset.index_col must be >= 1, the number of leading unnamed fields (got {ds.index_col})",
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
    """optim.schedule and its knobs. The knobs' own ranges hold whatever the schedule (a sweep
    may share them across schedules); how they relate to optim.lr and trainer.max_epochs only
    for the schedule that reads them."""
    reads = SCHEDULE_KNOBS.get(opt.schedule, ())
    return [
        _choice(opt.schedule, SCHEDULES, "optim.schedule"),
        None if opt.min_lr >= 0 else f"optim.min_lr must be >= 0 (got {opt.min_lr})",
        None
        if "min_lr" not in reads or opt.min_lr <= opt.lr
        else f"optim.min_lr must be <= optim.lr={opt.lr} with optim.schedule={opt.schedule} (got {opt.min_lr})",
        None if opt.warmup_epochs >= 1 else f"optim.warmup_epochs must be >= 1 (got {opt.warmup_epochs})",
        None
        if "warmup_epochs" not in reads or opt.warmup_epochs < tr.max_epochs
        else f"optim.warmup_epochs must be < trainer.max_epochs={tr.max_epochs}, which is the cosine's horizon "
             f"(got {opt.warmup_epochs})",
        None if opt.step_size >= 1 else f"optim.step_size must be >= 1 (got {opt.step_size})",
        None if 0 < opt.gamma <= 1 else f"optim.gamma must be in (0, 1] (got {opt.gamma})",
        None if opt.restart_period >= 1 else f"optim.restart_period must be >= 1 (got {opt.restart_period})",
        None if opt.restart_mult >= 1 else f"optim.restart_mult must be >= 1 (got {opt.restart_mult})",
        None if opt.plateau_patience >= 0 else f"optim.plateau_patience must be >= 0 (got {opt.plateau_patience})",
        None if 0 < opt.plateau_factor < 1 else f"optim.plateau_factor must be in (0, 1) (got {opt.plateau_factor})",
    ]


def _check_logger(logger: Any) -> list[str]:
    """The logger's keys, and its extra: a missing package is named before any work starts
    (looked up, not imported: TensorBoard is loaded only by the job that logs)."""
    if logger is None:
        return []
    import importlib.util

    problem = _choice(logger.name, LOGGERS, "logger.name")
    if problem:
        return [problem]
    if logger.histogram_every < 0:
        return [f"logger.histogram_every must be >= 0 (got {logger.histogram_every})"]
    if logger.name == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        return ['logger=tensorboard needs the tensorboard extra: pip install "regbench[tensorboard]"']
    return []


def _check_train_size(size: float | None) -> str | None:
    if size is None:
        return None
    if size <= 0:
        return f"dataset.train_size must be > 0 (got {size})"
    if size > 1 and size != int(size):
        return f"dataset.train_size above 1 is a count and must be whole (got {size})"
    return None


def _check_device(device: str) -> str | None:
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return None
    return f"device must be auto, cpu, cuda or cuda:N (got {device!r})"
