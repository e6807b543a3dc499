"""The registry of regularizers: the built-in classes, a user's classes loaded from the config
(`reg.extra.<name>._target_`) and checked against the contract (regbench.regularizers.contract)
in one line, and what the config layer and the engine ask of the regularizers a `reg` node
names: their knob values, the run's label, range checks, notices, refusals, the convex
objective's terms, the knobs that measure their strength and the default search space of a
tuning study (`search_space`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from regbench import UserInputError
from regbench.regularizers.contract import declared, defines
from regbench.regularizers.contract import problems as contract_phrases
from regbench.regularizers.knob import Knob


def builtin() -> tuple[type, ...]:
    """The built-in regularizers, in the order of their label parts."""
    from regbench.regularizers import (augment, batchnorm, cutout, drop_path, dropout, elasticnet, ema, fgsm,
                                       grad_clip, input_noise, label_smoothing, lookahead, mixing, sam, shake_shake,
                                       shakedrop, snapshot, swa, weight_decay)

    # the order of the label's parts, and of the batch hooks: augmentation (crop, flip), then
    # erasing, then mixing of the examples, then noise on what the model sees, then the attack on it
    # (FGSM). The after_step hooks run in this order too (an average's last): lookahead's sync after
    # the elastic net's proximal step
    return (elasticnet.ElasticNet, weight_decay.WeightDecay, dropout.Dropout, batchnorm.BatchNorm,
            drop_path.DropPath, shakedrop.ShakeDrop, shake_shake.ShakeShake, label_smoothing.LabelSmoothing,
            augment.Augment, cutout.Cutout, mixing.Mixing, input_noise.InputNoise, fgsm.FGSM, sam.SAM,
            grad_clip.GradClip, lookahead.Lookahead, ema.EMA, swa.SWA, snapshot.Snapshot)


# The cocktail search's mark, a knob of no regularizer: `reg=cocktail` (conf/reg/cocktail.yaml) sets
# it, and a run that has it is labelled `cocktail` whatever the other knobs switch on, so that the
# trials of a cocktail study are one configuration family in reports and studies (its ingredients
# are its other knobs: `ingredients`). Under `+search=each` its study samples the conditional space
# of regbench.config.cocktail. Member: it changes no number a run computes.
COCKTAIL = Knob("cocktail", False, "The run is a trial of the cocktail search (reg=cocktail): labelled `cocktail` "
                "whatever the other knobs switch on (its ingredients); +search=each tunes which regularizers it "
                "combines and their strengths.", "true | false", since="0.2")


def builtin_knobs() -> list[Knob]:
    """Every built-in knob, in order: the fields of the schema's `reg` node (the regularizers'
    knobs, then the cocktail's mark, `COCKTAIL`)."""
    return [knob for cls in builtin() for knob in cls.knobs] + [COCKTAIL]


def knob_table(markdown: bool = False) -> str:
    """Every built-in regularizer's knobs with default, range and doc: the text of
    `regbench run --help`, or (markdown=True) the table of docs/reference/regularizers.md, so that
    neither can drift (in markdown a `|` inside a cell, `true | false`, is escaped)."""
    rows = [(cls.name, f"reg.{k.name}", _value(k.default), k.range, k.doc) for cls in builtin() for k in cls.knobs]
    rows.append((COCKTAIL.name, f"reg.{COCKTAIL.name}", _value(COCKTAIL.default), COCKTAIL.range, COCKTAIL.doc))
    if markdown:
        lines = ["| regularizer | knob | default | range | what it does |", "|---|---|---|---|---|"]
        def cell(text: str) -> str:
            return text.replace("|", "\\|")  # a `|` inside a cell would end it

        return "\n".join(lines + [f"| {a} | `{b}` | {c} | {cell(d)} | {cell(e)} |" for a, b, c, d, e in rows])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out, last = [], None
    for name, key, default, rng, doc in rows:
        cells = [name if name != last else "", f"{key}={default}", rng]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, [widths[0], widths[1] + widths[2] + 1, widths[3]])) + "  " + doc)
        last = name
    return "\n".join(out)


def knob_owners() -> dict[str, type]:
    """Every built-in knob's dotted key (`reg.alpha`) -> the regularizer class that owns it."""
    return {f"reg.{k.name}": cls for cls in builtin() for k in cls.knobs}


def hook_table() -> str:
    """The table of the hooks (markdown, docs/reference/api.md): each hook's call and the first sentence of its
    docstring, from its Protocol (regbench.regularizers.contract.HOOKS), and the built-in
    regularizers that define it, so that a new hook or a regularizer using one cannot leave it stale."""
    import inspect

    from regbench.regularizers.contract import HOOKS, defines, hook

    rows = ["| hook | when, and what it does | defined by |", "| --- | --- | --- |"]
    for name, protocol in HOOKS.items():
        if name == "label":  # required, not a hook: the paragraph above the table (docs/reference/api.md) says it
            continue
        call = hook(name)
        doc = inspect.getdoc(getattr(protocol, name)) or ""
        first = " ".join(doc.split()).split(". ")[0].rstrip(".")
        users = ", ".join(cls.name for cls in builtin() if defines(cls, name)) or "(none built in)"
        static = " (staticmethod)" if call.static else ""
        rows.append(f"| `{name}({', '.join(call.args)})`{static} | {first.replace('|', chr(92) + '|')} | {users} |")
    return "\n".join(rows)


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def user_entries(reg: Any) -> dict[str, Any]:
    """The `reg.extra` entries, name -> node (empty when none)."""
    extra = getattr(reg, "extra", None)
    return dict(extra.items()) if extra else {}


def user_values(entry: Any) -> dict[str, Any]:
    """A user regularizer's knob values: its entry without `_target_`."""
    return {k: v for k, v in entry.items() if k != "_target_"}


def load_user(name: str, target: Any, search: tuple[str, ...] = ()) -> type:
    """The class a `reg.extra.<name>._target_` names.

    `target` is `package.module.Class`: imported from the Python path, or else, when the
    module's first part is a file `<part>.py` (or a package folder) in the current folder or
    in one of `search` (the folders of `--config-dir`), loaded from there.

    Raises:
        UserInputError: one line, naming the entry and the error, when it does not load.
    """
    from regbench.usercode import load_object

    where = f"reg.extra.{name}._target_"
    cls = load_object(where, target, search)
    problems = contract_problems(cls)
    if problems:
        raise UserInputError(f"reg.extra.{name}: {target} {'; '.join(problems)}; see regbench.regularizers")
    return cls


def contract_problems(cls: Any) -> list[str]:
    """What keeps `cls` from being a regularizer of the contract (regbench.regularizers.contract),
    each as a phrase that follows the class's name (`lacks label (...)`), or [] when nothing does;
    a user's class may not take a built-in regularizer's name."""
    taken = () if cls in builtin() else {c.name for c in builtin()}
    return contract_phrases(cls, taken)


def regularizers(reg: Any, search: tuple[str, ...] = ()) -> list[tuple[type, Callable[[Any], dict[str, Any]]]]:
    """The regularizer classes of a `reg` node, each with the function that reads its knob
    values from a member's `reg` node: the built-in ones, then the user's `reg.extra` entries."""
    out: list[tuple[type, Callable[[Any], dict[str, Any]]]] = [
        (cls, lambda r, cls=cls: {k.name: r[k.name] for k in cls.knobs}) for cls in builtin()]
    for name, entry in user_entries(reg).items():
        cls = load_user(name, entry.get("_target_") if hasattr(entry, "get") else None, search)
        out.append((cls, lambda r, name=name, cls=cls: {k.name: r.extra[name].get(k.name, k.default) for k in cls.knobs}))
    return out


def label(reg: Any, model: Any, search: tuple[str, ...] = ()) -> str:
    """Names the regularizers that act, from their values, e.g. `elasticnet+dropout` or `none`.

    Derived from the numbers rather than from the presets chosen, so `reg=l2 reg.alpha=0` is
    honestly labelled `none`, and from what acts on `model` (batch norm on model=linear, which
    has no hidden layer, is not in the label). Early stopping is the engine's, not in the label.
    A trial of the cocktail search (`reg.cocktail`) is labelled `cocktail`, whatever it switches on:
    its ingredients are `ingredients`.
    """
    if is_cocktail(reg):
        return COCKTAIL.name
    return "+".join(part for part, _ in ingredients(reg, model, search)) or "none"


def is_cocktail(reg: Any) -> bool:
    """Whether the `reg` node (or mapping) is a trial of the cocktail search (`reg.cocktail`)."""
    getter = getattr(reg, "get", None)
    return bool(getter(COCKTAIL.name, False)) if getter is not None else False


def ingredients(reg: Any, model: Any, search: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The regularizers that act in `reg`, each as (its label part, its knob values), in the label's
    order: what a cocktail combines (`l2` with {alpha: 0.001, l1_ratio: 0.0}, ...); [] for none."""
    out = []
    for cls, values in regularizers(reg, search):
        knobs = values(reg)
        part = cls.label(knobs, model)
        if part:
            out.append((part, knobs))
    return out


def check(reg: Any, search: tuple[str, ...] = ()) -> list[str]:
    """One message per knob out of its range (built-in and user regularizers), or per user
    regularizer that does not load or names a knob it does not have."""
    problems = [k.problem(reg[k.name]) for k in builtin_knobs()]
    entries: dict[str, str] = {}  # the regularizers' names -> the entry that loaded it
    for name, entry in user_entries(reg).items():
        if not hasattr(entry, "get"):
            problems.append(f"reg.extra.{name} must be a mapping with a _target_ (got {entry!r})")
            continue
        try:
            cls = load_user(name, entry.get("_target_"), search)
        except UserInputError as e:
            problems.append(str(e))
            continue
        if cls.name in entries:  # the engine keeps each regularizer's layers and state by its name
            problems.append(f"reg.extra.{entries[cls.name]} and reg.extra.{name} are both named {cls.name!r}: "
                            "one entry per regularizer class")
        entries[cls.name] = name
        known = {k.name: k for k in cls.knobs}
        for key, value in user_values(entry).items():
            if key not in known:
                problems.append(f"reg.extra.{name}.{key} is not a knob of {entry.get('_target_')} "
                                f"(its knobs: {', '.join(known) or 'none'})")
            else:
                problems.append(known[key].problem(value, f"reg.extra.{name}."))
    return [p for p in problems if p]


def convex_obstacles(reg: Any, model: Any, search: tuple[str, ...] = ()) -> list[str]:
    """The regularizers acting in `reg` that are not part of regbench's convex objective, one
    `key=value (why)` each (see `convex` and `not_convex` in the protocol above)."""
    out = []
    for cls, values in regularizers(reg, search):
        knobs = values(reg)
        if declared(cls, "convex") or cls.label(knobs, model) is None:
            continue
        prefix = "reg." if cls in builtin() else f"reg.extra.{cls.name}."
        set_ = [f"{prefix}{k.name}={_value(knobs[k.name])}" for k in cls.knobs if knobs[k.name] != k.default]
        out.append(f"{', '.join(set_) or cls.name} ({declared(cls, 'not_convex')})")
    return out


def notices(reg: Any, cfg: Any, search: tuple[str, ...] = ()) -> list[str]:
    """The regularizers' warnings about knobs that will have no effect (their `notice` hooks)."""
    out = [cls.notice(cfg) for cls, _ in regularizers(reg, search) if defines(cls, "notice")]
    return [n for n in out if n]


def config_problems(reg: Any, cfg: Any, search: tuple[str, ...] = ()) -> list[str]:
    """Why the regularizers acting in `cfg` cannot act with it, one line each (their
    `config_problem` hooks): e.g. stochastic depth asked of a model without residual blocks."""
    classes = list(builtin())
    for name, entry in user_entries(reg).items():
        try:
            classes.append(load_user(name, entry.get("_target_") if hasattr(entry, "get") else None, search))
        except UserInputError:  # `check` names it
            pass
    out = [cls.config_problem(cfg) for cls in classes if defines(cls, "config_problem")]
    return [p for p in out if p]


def convex_terms(reg: Any, search: tuple[str, ...] = ()) -> tuple[float, float]:
    """(l1, l2) of regbench's convex objective, l1 * ||W||_1 + 0.5 * l2 * ||W||_2^2, from the
    regularizers of `reg` that declare themselves `convex` (their `convex_terms` hooks): the
    elastic net's alpha * l1_ratio and alpha * (1 - l1_ratio). (0.0, 0.0) when none is."""
    terms = [cls.convex_terms(values(reg)) for cls, values in regularizers(reg, search) if declared(cls, "convex")]
    if len(terms) == 1:  # the one penalty's own numbers, untouched by a sum
        return terms[0]
    return float(sum(t[0] for t in terms)), float(sum(t[1] for t in terms))


def strength_knobs() -> list[tuple[str, str]]:
    """(regularizer name, knob name) of every built-in regularizer that declares a `strength`,
    in the order of the label's parts: the x axes of the report's gap_vs_strength plot."""
    return [(cls.name, declared(cls, "strength")) for cls in builtin() if declared(cls, "strength") is not None]


def search_space(reg: Any, search: tuple[str, ...] = (), model: Any = None) -> dict[str, str]:
    """The default search space of a tuning study of `reg` (a composed `reg` node): the union of
    the `search` declarations (regbench.regularizers.contract.DECLARED) of the regularizers it
    switches on (their label is not None), each given the knob values it has in `reg`, so that a
    preset gets its own space (`reg=l2`: `reg.alpha` alone; `reg=elasticnet`: `reg.l1_ratio` too).

    Keys are full config keys (`reg.alpha`, `reg.extra.<entry>.<knob>` for a user's regularizer)
    and values distributions in the syntax of `hydra.sweeper.params` (`tag(log, interval(1e-6,
    0.1))`), in a stable order: the built-in regularizers' (the label's order), then the
    `reg.extra` entries', each in its declaration's order. `reg=none`: {}. Imports no torch
    (a user's module may).

    Args:
        reg: the composed `reg` config node.
        search: the folders of `--config-dir`, where a user's module may lie (as `regularizers`).
        model: the composed `model` node, which a label may read (batch norm is off on
            model=linear); None: every attribute a label reads of it is None (a model with
            hidden layers, for the built-in ones).

    Raises:
        UserInputError: one line, when a regularizer that is on declares no `search`, or declares
            a distribution Hydra cannot parse or with a value out of its knob's range.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    model = _AnyModel() if model is None else model
    out: dict[str, str] = {}
    for cls, values, prefix, where in _with_prefixes(reg, search):
        if cls.label(values, model) is None:
            continue
        space = declared(cls, "search")
        if space is None:
            first = cls.knobs[0].name if cls.knobs else "knob"
            raise UserInputError(f"{where} declares no search space to tune it: add a class attribute "
                                 f"search = {{\"{first}\": \"interval(a, b)\"}} (its knobs -> distributions, "
                                 "as in hydra.sweeper.params; {} for nothing to tune)")
        if callable(space):
            space = space(values)
            if not isinstance(space, Mapping):
                raise UserInputError(f"{where}'s search(values) returned {space!r}, not a mapping of its knob names "
                                     "to distributions")
        knobs = {k.name: k for k in cls.knobs}
        for name, distribution in space.items():
            problem = (f"{name} is not one of its knobs ({', '.join(knobs)})" if name not in knobs
                       else _distribution_problem(parser, knobs[name], distribution))
            if problem:
                raise UserInputError(f"{where}'s search space: {name}={distribution}: {problem}")
            out[prefix + name] = distribution
    return out


class _AnyModel:
    """The `model` a label reads where search_space is given none: every attribute is None."""

    def __getattr__(self, name: str) -> None:
        return None

    def __getitem__(self, name: str) -> None:
        return None


def _with_prefixes(reg: Any, search: tuple[str, ...]) -> list[tuple[type, dict[str, Any], str, str]]:
    """(class, its knob values in `reg`, the prefix of its config keys, its name in an error) of
    every regularizer of `reg`: the built-in ones, then the `reg.extra` entries."""
    out = [(cls, {k.name: reg[k.name] for k in cls.knobs}, "reg.", f"regularizer {cls.name}") for cls in builtin()]
    for name, entry in user_entries(reg).items():
        target = entry.get("_target_") if hasattr(entry, "get") else None
        cls = load_user(name, target, search)
        values = {k.name: entry.get(k.name, k.default) for k in cls.knobs}
        out.append((cls, values, f"reg.extra.{name}.", f"reg.extra.{name} ({target})"))
    return out


def _distribution_problem(parser: Any, knob: Knob, text: Any) -> str | None:
    """Why `text` is not a distribution of `knob` that a study can sample (one phrase), or None:
    it must parse as a sweep of `hydra.sweeper.params`, and each end of an interval or range, and
    each choice, must be a value of the knob's kind within its range (`Knob.valid`)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    if not isinstance(text, str):
        return f"a distribution is a str (got {type(text).__name__})"
    try:
        value = parser.parse_override(f"{knob.name}={text}").value()
    except HydraException as e:  # the grammar's error, or a function's (an unknown one, a missing argument)
        return f"Hydra cannot parse it ({str(e).splitlines()[0]})"
    if isinstance(value, IntervalSweep):
        if not value.start < value.end:
            return "its interval is empty"
        if "log" in value.tags and value.start <= 0:
            return "a log scale needs a start above 0"
        points = [value.start, value.end]
    elif isinstance(value, ChoiceSweep):
        points = list(value.list)
    elif isinstance(value, RangeSweep):
        count = math.ceil((value.stop - value.start) / value.step) if value.step else 0
        if count <= 0:
            return "its range is empty"
        points = [value.start, value.start + (count - 1) * value.step]
    else:
        return ("not a distribution: interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), choice(...) "
                "or range(...)")
    for point in points:
        if not _same_kind(point, knob.default) or knob.problem(point) is not None:
            return f"{point!r} is not a value of {knob.name} ({knob.range or type(knob.default).__name__})"
    return None


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a sampled `value` fits a knob whose default is `default`: a bool for a switch, an int
    for a count, a number for a float."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return True
