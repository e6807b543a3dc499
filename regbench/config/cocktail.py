"""The cocktail search's space (Kadra et al. 2021, "Well-tuned Simple Nets Excel on Tabular
Datasets"): which regularizers to combine, and each one's strength, conditional as in
Regularization Cocktails. `reg=cocktail` (conf/reg/cocktail.yaml) marks a run as the cocktail's;
under `+search=each` its study samples this space (regbench's Optuna sweeper calls `space` on each
trial it asks: define-by-run, as Hydra's Optuna sweeper's `custom_search_space`).

The ingredients are regbench's own regularizers, one per regularizer module (`cocktail.<name>`,
a categorical parameter): off, or one of the presets of conf/reg/ that switch on that regularizer
alone (`cocktail.elasticnet`: off, elasticnet, l1 or l2; `cocktail.sam`: off, asam or sam). Only
when it is on are its preset's values set and its declared search space (the module's `search`,
regbench.regularizers.search_space) sampled, under names of its own (`l2.alpha`, `asam.sam`), so
an ingredient that is off samples nothing and one knob is never shared by two presets' ranges.

What the config checks would refuse is never asked:

- an ingredient that the model or the data refuses on its own (the residual-only ones on a model
  without residual blocks, augmentation on a table, label smoothing or mixing on a regression,
  anything but the elastic net under optim=fista), or that does nothing there (batch norm on
  model=linear), is left out of this configuration's space; these are found by the checks
  themselves (regbench.config.checks.check and each regularizer's `problem` hook on the data);
- two ingredients that the checks refuse together (EMA and SWA, Shake-Shake with ShakeDrop or
  stochastic depth) are never on together: the ingredients are asked in the label's order, and
  one that every option of which conflicts with an ingredient already on is not asked (it is off,
  without a parameter); the space is conditional, as Cocktails' is.

`space` checks the whole sampled cocktail once more and raises where a check refuses it (a
conflict of three that no pair shows): tests/test_cocktail.py samples many trials to show it does not.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUP = "cocktail."  # the prefix of an ingredient's on/off parameter
OFF = "off"
SKIP = ("none", "cocktail")  # the presets that are no ingredient


@dataclass(frozen=True)
class Option:
    """One way to switch an ingredient on: a preset of conf/reg/ that switches on its regularizer
    alone, with the knob values it sets and the search space its regularizer declares for it."""

    preset: str
    values: tuple[tuple[str, Any], ...]  # (knob, value) the preset sets
    space: tuple[tuple[str, str], ...]  # (config key, distribution) of regbench.regularizers.search_space


@dataclass(frozen=True)
class Ingredient:
    """One regularizer of the cocktail (`cocktail.<name>`) and its options allowed here."""

    name: str
    options: tuple[Option, ...]

    @property
    def param(self) -> str:
        return GROUP + self.name


@dataclass(frozen=True)
class Plan:
    """The cocktail's space for one configuration: its ingredients (in the label's order), the
    pairs of options the checks refuse together, and what was left out and why (one line each)."""

    ingredients: tuple[Ingredient, ...]
    conflicts: frozenset[frozenset[str]]
    left_out: tuple[str, ...]


def presets(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The presets of conf/reg/ (or `folder`): name -> the knob values it sets, for every preset
    that is a plain mapping of knobs (`none` and `cocktail` aside)."""
    import yaml

    from regbench.config.paths import config_dir

    folder = Path(folder) if folder is not None else Path(config_dir()) / "reg"
    out = {}
    for file in sorted(folder.glob("*.yaml")):
        if file.stem in SKIP:
            continue
        values = yaml.safe_load(file.read_text()) or {}
        if isinstance(values, dict) and "defaults" not in values:
            out[file.stem] = values
    return out


def plan(cfg: Any, search: tuple[str, ...] = ()) -> Plan:
    """The cocktail's space for the configuration `cfg` (a composed config, the `hydra` node aside;
    its `reg` node the cocktail's, every regularizer off): cached per configuration.

    Raises:
        UserInputError: the data does not load (one line).
    """
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return _plan(json.dumps(container, sort_keys=True, default=str), tuple(search))


@functools.lru_cache(maxsize=32)
def _plan(text: str, search: tuple[str, ...]) -> Plan:
    from omegaconf import OmegaConf

    from regbench.regularizers import builtin, builtin_knobs, search_space
    from regbench.regularizers.registry import COCKTAIL

    base = OmegaConf.create(json.loads(text))
    defaults = {k.name: k.default for k in builtin_knobs() if k.name != COCKTAIL.name}
    data = _data(base)
    options: dict[str, list[Option]] = {cls.name: [] for cls in builtin()}
    left_out = []
    for name, values in presets().items():
        reg = {**defaults, **values}
        switched = [c.name for c in builtin() if c.label({k.name: reg[k.name] for k in c.knobs}, _AnyModel()) is not None]
        if len(switched) != 1:  # a preset of two regularizers (or of none) is no ingredient
            continue
        owner = next(c for c in builtin() if c.name == switched[0])
        if owner.label({k.name: reg[k.name] for k in owner.knobs}, base.model) is None:
            left_out.append(f"{name}: it does nothing with model={base.model.name}")
            continue
        problem = refusal(base, values, data, search)
        if problem:
            left_out.append(f"{name}: {problem}")
            continue
        space = search_space(reg, search, base.model)
        options[owner.name].append(Option(name, tuple(values.items()), tuple(space.items())))
    ingredients = [Ingredient(cls.name, tuple(options[cls.name])) for cls in builtin() if options[cls.name]]
    conflicts = set()
    flat = [(i.name, o) for i in ingredients for o in i.options]
    cfg = _with(base, {})  # one copy, its reg knobs set and put back for each pair
    for a, (owner_a, first) in enumerate(flat):
        for owner_b, second in flat[a + 1:]:
            if owner_a != owner_b and _config_problems(cfg, {**dict(first.values), **dict(second.values)}, search):
                conflicts.add(frozenset((first.preset, second.preset)))
    return Plan(tuple(ingredients), frozenset(conflicts), tuple(left_out))


class _AnyModel:
    """A model node whose every attribute is None: what a label reads where no model is given."""

    def __getattr__(self, name: str) -> None:
        return None

    def __getitem__(self, name: str) -> None:
        return None


def _with(base: Any, values: dict[str, Any]) -> Any:
    """A copy of the configuration `base` with these `reg` knob values."""
    from omegaconf import open_dict

    cfg = copy.deepcopy(base)
    with open_dict(cfg):
        for knob, value in values.items():
            cfg.reg[knob] = value
    return cfg


def _config_problems(cfg: Any, values: dict[str, Any], search: tuple[str, ...]) -> list[str]:
    """The regularizers' `config_problem` hooks on `cfg` with these `reg` knob values (`cfg` is
    left as it was)."""
    from omegaconf import open_dict

    from regbench.regularizers import config_problems

    before = {knob: cfg.reg[knob] for knob in values}
    with open_dict(cfg):
        try:
            for knob, value in values.items():
                cfg.reg[knob] = value
            return config_problems(cfg.reg, cfg, search)
        finally:
            for knob, value in before.items():
                cfg.reg[knob] = value


def _data(cfg: Any) -> Any:
    """The configuration's data, loaded on the CPU (once per dataset in a process): what the
    regularizers' `problem` hooks read (its task, its input shape)."""
    return _load(json.dumps(_container(cfg.dataset), sort_keys=True, default=str))


def _container(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


# the studies' datasets, kept while their trials are asked: +search=each asks the studies in turn, so
# with 2 kept, 3 or more datasets reloaded on every ask; 8 cover a usual study (a tabular set is kilobytes,
# MNIST's 200 MB)
@functools.lru_cache(maxsize=8)
def _load(dataset: str) -> Any:
    import torch
    from omegaconf import OmegaConf

    from regbench.data.datasets import load

    return load(OmegaConf.create(json.loads(dataset)), torch.device("cpu"))


def refusal(base: Any, values: dict[str, Any], data: Any = None, search: tuple[str, ...] = ()) -> str | None:
    """Why the configuration `base` with these `reg` knob values is refused: the config checks
    (regbench.config.checks.check), then, given the loaded `data`, each acting regularizer's
    `problem` hook on it (as a run finds them before it trains); None when nothing refuses it."""
    from regbench.config.checks import check
    from regbench.regularizers import regularizers
    from regbench.regularizers.contract import defines

    cfg = _with(base, values)
    problems = check(cfg, search)
    if problems:
        return problems[0]
    if data is not None:
        for cls, _ in regularizers(cfg.reg, search):
            message = cls.problem(cfg, data) if defines(cls, "problem") else None
            if message:
                return message
    return None


def space(cfg: Any, trial: Any) -> dict[str, str]:
    """Samples one cocktail on the Optuna `trial` (define-by-run: `trial.suggest_*`) and returns
    its overrides (config key -> value, as a Hydra override's value): the knob values of each
    ingredient it switched on. The function regbench's Optuna sweeper calls for a study of
    `reg=cocktail` (`custom_search_space`'s signature: (cfg, trial) -> overrides).

    Raises:
        RuntimeError: the checks refuse the sampled cocktail (a conflict `plan` did not see).
    """
    from regbench.config.paths import config_search_dirs

    search = config_search_dirs(cfg.hydra) if "hydra" in cfg else config_search_dirs()
    p = plan(cfg, search)
    on: list[Option] = []
    values: dict[str, Any] = {}
    for ingredient in p.ingredients:
        allowed = [o for o in ingredient.options
                   if not any(frozenset((o.preset, other.preset)) in p.conflicts for other in on)]
        if not allowed:
            continue
        name = ingredient.param
        if len(allowed) < len(ingredient.options):  # a choice of its own: a parameter's choices never change
            name += "[" + ",".join(o.preset for o in allowed) + "]"
        choice = trial.suggest_categorical(name, [OFF, *(o.preset for o in allowed)])
        if choice == OFF:
            continue
        option = next(o for o in allowed if o.preset == choice)
        on.append(option)
        values.update(dict(option.values))
        for key, distribution in option.space:
            values[key.removeprefix("reg.")] = suggest(trial, f"{option.preset}.{key.removeprefix('reg.')}",
                                                       distribution)
    if on:
        from omegaconf import OmegaConf

        base = OmegaConf.create(_container_without_hydra(cfg))
        problem = refusal(base, values, _data(base), search)
        if problem:
            raise RuntimeError(f"the cocktail {'+'.join(o.preset for o in on)} is refused: {problem}")
    return {f"reg.{k}": _text(v) for k, v in values.items()}


def _container_without_hydra(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return container


def describe(cfg: Any, search: tuple[str, ...] = ()) -> dict[str, str]:
    """The cocktail's space for `cfg` as text, parameter -> distribution (search.json's `space`):
    each ingredient's choice, then each option's parameters with the choice they are asked under."""
    p = plan(cfg, search)
    out = {}
    for ingredient in p.ingredients:
        out[ingredient.param] = f"choice({', '.join([OFF, *(o.preset for o in ingredient.options)])})"
        for option in ingredient.options:
            for key, distribution in option.space:
                out[f"{option.preset}.{key.removeprefix('reg.')}"] = f"{distribution} if {ingredient.param}={option.preset}"
    if p.conflicts:
        out["never together"] = ", ".join(sorted("+".join(sorted(pair)) for pair in p.conflicts))
    return out


def suggest(trial: Any, name: str, text: str) -> Any:
    """Samples `name` on `trial` from a distribution in the syntax of `hydra.sweeper.params`
    (`interval(a, b)`, `tag(log, interval(a, b))`, `int(interval(a, b))`, `choice(...)`,
    `range(...)`): Optuna's distribution of it, as regbench's Optuna sweeper reads it, suggested."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Transformer

    override = OverridesParser.create().parse_override(f"{name}={text}")
    if not override.is_sweep_override():
        return override.value()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return trial.suggest_categorical(name, list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if all(isinstance(v, int) for v in values):
            return trial.suggest_int(name, values[0], values[-1], step=int(value.step))
        return trial.suggest_float(name, float(values[0]), float(values[-1]), step=float(value.step))
    log = "log" in value.tags
    if isinstance(value.start, int) and isinstance(value.end, int):
        return trial.suggest_int(name, value.start, value.end, log=log)
    return trial.suggest_float(name, float(value.start), float(value.end), log=log)


def _text(value: Any) -> str:
    """A value as a Hydra override's value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
