"""The regularizers: one module each, holding its knobs and every point where it acts on training.

A regularizer is a class with (required)

- `name`: its part of a run's `reg` label (`l1`, `dropout`, ...), and of report rows; a user's
  must not be a built-in's;
- `knobs`: a sequence of `Knob`s, the keys of the `reg` config node it owns (built-in ones) or of its
  `reg.extra.<name>` entry (a user's), each with a default, a range and a one-line doc, from
  which the schema, the range checks, `regbench run --help` and the README's table are made;
- `label(values, model) -> str | None` (a staticmethod): its label part from its knob values (a
  mapping) and the `model` node, or None when they switch it off (0, false), so
  `reg=l2 reg.alpha=0` is honestly labelled `none`;
- `__init__(self, values, stack)`: the engine trains a stack of K members (a lone run is a stack
  of one) and builds one instance per stack, `Regularizer(values, stack)`, where `values` holds
  each member's knob values (a list of K dicts); the instance may set `active` (a bool): whether
  its hooks run in this stack, by default whether its label is not None for some member (all of
  the members' knobs off: none of its hooks runs);

and, optionally, the hooks through which it meets training (regbench.engine.stack), called
whichever of these the class defines:

- `layers(reg, where, width, dims) -> list[nn.Module]` (staticmethod; when the model is
  built, given the whole `reg` node): layers to insert at `where` ("input", "norm": after a hidden linear or conv layer,
  before its activation, "hidden": after the activation, "branch": at the end of a residual
  block's branch, before the skip connection's sum), for `width` features or channels of
  `dims` spatial dimensions; the model builder gives a "branch" layer the `regbench_depth`
  l / L of its block (the l-th of the model's L, counted from the input);
- `config_problem(cfg) -> str | None` (staticmethod): why it cannot act with this config (a
  model it has nothing to act on), one line, known before any data is loaded;
- `problem(cfg, data) -> str | None` (staticmethod): why it cannot act on this dataset, one line;
- `forward(stack, h, train) -> h`: the stacked form of the layers it inserted; for "branch"
  layers `forward(stack, h, train, depth)`, with the block's l / L;
- `batch(stack, x, y) -> (x, y)`: on each training batch, inputs (K, B, ...) and targets (K, B),
  before the forward pass; a classification target may come back as class probabilities
  (K, B, classes), soft targets (mixup, cutmix), which the loss then uses; random draws, here
  and in every hook, come from the member's own named streams (`member.host_rng(name)`,
  `member.device_rng(name, device, seed=None)`: opened on first use, from `seed` where given,
  else from the member's seed and the name), which checkpoints save; the stream
  `member.device_rng("network", device)` is the one torch's own random layers draw from
  (regbench.engine.member.NETWORK_STREAM);
- `loss(stack, out, target) -> (K,) losses`: the training loss of each member (default:
  cross-entropy, with class indices or probabilities, or mean squared error); at most one
  regularizer per run may define it;
- `penalty(stack) -> scalar tensor | None`: added to the loss (each member's gradient sees its
  own part only);
- `before_step(stack)` and `after_step(stack)`: around the optimizer's update of the stacked
  parameters (`stack.params`, with `stack.penalised` marking the weight matrices and kernels
  and `stack.param_names` naming each, `0.weight`, `fc.bias`, as `stack.buffer_names` names the
  batch-norm statistics `stack.buffers`, and `stack.param_roles`, `stack.buffer_roles` giving
  each one's role, `weight`, `bias`, `norm_weight`, `norm_bias`, `other`, `running_mean`,
  `running_var`: a model=custom layer may have no bias, so a regularizer picks tensors by
  these, never by position);
  an averaging regularizer's after_step (one with `weights`) runs after every other's;
- `gradient(stack, closure)`: after the batch's gradients are computed, before the update; may
  replace them (`closure()` zeroes them and runs the batch's forward and backward pass again at
  the current parameters, returning the losses): SAM's second pass; a pass that must not move
  batch norm's running statistics runs inside `with stack.norm_statistics(momentum=0.0):` (the
  momentum every batch norm uses within the block);
- `after_epoch(stack, data)`: after each epoch's training, before its evaluation (SWA's average);
- `lr(stack, values, lrs) -> lrs` (staticmethod): the members' learning rates for the epoch being
  trained (`stack.epoch`), given their schedules' (SWA's own rate);
- `weights(stack) -> (params, buffers) | None`, with `weights_label(stack, k, epoch) -> str` and
  optionally `monitor_from(stack, k) -> epoch`: the weights that are evaluated each epoch,
  monitored by early stopping and reported in place of the trained ones (an average of them; at
  most one regularizer per run), what result.json's `weights` calls them, and the first epoch
  early stopping watches. Its own tensors live in `stack.reg_state[name]` (lists of stacked
  tensors, member dimension first), which the engine keeps through members leaving and checkpoints;
- `stackable`: True, or a one-line reason why members cannot share a stack (the stacked
  launcher then runs such jobs alone, saying why); `stack_on_off`: True when whether it is on
  must be the same for every member of a stack (its knobs may still differ);
- `convex`: True for a penalty that is part of regbench's convex objective (the elastic net),
  else `not_convex`, a few words on why a run where it acts is not that problem (optim=fista
  refuses it; result.json's `optimality` is then null);
- `notice(cfg) -> str | None` (staticmethod): a warning when a valid config asks it for
  something that will have no effect.

Evaluation never calls a hook: train, validation and test metrics are always those of clean
inputs and true labels in eval mode. Early stopping is the engine's, not a regularizer's.

A user's regularizer is the same kind of class, named by `reg.extra.<name>._target_` (a dotted
path importable from the Python path, or a module file beside the config: see `load_user`). It is
checked against this protocol when it is loaded, before any data is read: the required attributes,
and the kind and the arguments of every attribute above that it defines.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from regbench import UserInputError
from regbench.regularizers.knob import Knob  # the public name users' regularizers import


def builtin() -> tuple[type, ...]:
    """The built-in regularizers, in the order of their label parts."""
    from regbench.regularizers import (augment, batchnorm, cutout, drop_path, dropout, elasticnet, ema, input_noise,
                                       label_smoothing, mixing, sam, shakedrop, swa, weight_decay)

    # the order of the label's parts, and of the batch hooks: augmentation (crop, flip), then
    # erasing, then mixing of the examples, then noise on what the model sees
    return (elasticnet.ElasticNet, weight_decay.WeightDecay, dropout.Dropout, batchnorm.BatchNorm,
            drop_path.DropPath, shakedrop.ShakeDrop, label_smoothing.LabelSmoothing, augment.Augment, cutout.Cutout,
            mixing.Mixing, input_noise.InputNoise, sam.SAM, ema.EMA, swa.SWA)


def builtin_knobs() -> list[Knob]:
    """Every built-in knob, in order: the fields of the schema's `reg` node."""
    return [knob for cls in builtin() for knob in cls.knobs]


def knob_table(markdown: bool = False) -> str:
    """Every built-in regularizer's knobs with default, range and doc: the text of
    `regbench run --help`, or (markdown=True) the README's table, so that neither can drift."""
    rows = [(cls.name, f"reg.{k.name}", _value(k.default), k.range, k.doc) for cls in builtin() for k in cls.knobs]
    if markdown:
        lines = ["| regularizer | knob | default | range | what it does |", "|---|---|---|---|---|"]
        return "\n".join(lines + [f"| {a} | `{b}` | {c} | {d} | {e} |" for a, b, c, d, e in rows])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out, last = [], None
    for name, key, default, rng, doc in rows:
        cells = [name if name != last else "", f"{key}={default}", rng]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, [widths[0], widths[1] + widths[2] + 1, widths[3]])) + "  " + doc)
        last = name
    return "\n".join(out)


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


# The protocol of the module docstring as data, so that a user's class is checked against all of
# it: what each attribute must be, as a user reads it, and for a hook the arguments the engine
# passes (a staticmethod is called on the class, the others on the instance, after `self`).
_REQUIRED = {
    "name": "a str, its part of the reg label",
    "knobs": "a sequence of regbench.regularizers.Knob",
    "label": "a staticmethod label(values, model) -> str | None",
}
_STATIC_HOOKS = {
    "label": ("values", "model"),
    "layers": ("reg", "where", "width", "dims"),
    "config_problem": ("cfg",),
    "problem": ("cfg", "data"),
    "notice": ("cfg",),
    "lr": ("stack", "values", "lrs"),
}
_HOOKS = {
    "forward": ("stack", "h", "train"),  # a "branch" layer's also gets depth=, by keyword
    "batch": ("stack", "x", "y"),
    "loss": ("stack", "out", "target"),
    "penalty": ("stack",),
    "before_step": ("stack",),
    "after_step": ("stack",),
    "gradient": ("stack", "closure"),
    "after_epoch": ("stack", "data"),
    "weights": ("stack",),
    "weights_label": ("stack", "k", "epoch"),
    "monitor_from": ("stack", "k"),
}
# the optional plain attributes, with the defaults the engine reads them with
_FLAGS = {
    "stackable": (lambda v: v is True or (isinstance(v, str) and v != ""), "True or a one-line reason (a str)"),
    "stack_on_off": (lambda v: isinstance(v, bool), "a bool"),
    "convex": (lambda v: isinstance(v, bool), "a bool"),
    "not_convex": (lambda v: isinstance(v, str), "a str"),
}


def contract_problems(cls: Any) -> list[str]:
    """What keeps `cls` from being a regularizer of the module docstring's protocol, each as a
    phrase that follows the class's name (`lacks label (...)`), or [] when nothing does."""
    if not inspect.isclass(cls):
        return [f"is a {type(cls).__name__}, not a class"]
    problems = [f"lacks {attr} ({what})" for attr, what in _REQUIRED.items() if not hasattr(cls, attr)]
    if cls.__init__ is object.__init__:
        problems.append("lacks __init__(self, values, stack)")
    else:
        problems += _arity(cls, "__init__", ("values", "stack"), static=False)
    name = getattr(cls, "name", None)
    if hasattr(cls, "name") and (not isinstance(name, str) or not name.strip() or "+" in name):
        problems.append(f"has name {name!r}, not {_REQUIRED['name']} (without '+')")
    elif name in {c.name for c in builtin()} and cls not in builtin():
        problems.append(f"has name {name!r}, a built-in regularizer's: choose another")
    if hasattr(cls, "knobs"):
        problems += _knob_problems(getattr(cls, "knobs"))
    for attr, args in _STATIC_HOOKS.items():
        if hasattr(cls, attr):
            problems += _arity(cls, attr, args, static=True)
    for attr, args in _HOOKS.items():
        if hasattr(cls, attr):
            problems += _arity(cls, attr, args, static=False, depth=attr == "forward")
    if hasattr(cls, "weights") and not hasattr(cls, "weights_label"):
        problems.append("defines weights but lacks weights_label(self, stack, k, epoch) -> str")
    problems += [f"has {attr} {getattr(cls, attr)!r}, not {what}"
                 for attr, (ok, what) in _FLAGS.items() if hasattr(cls, attr) and not ok(getattr(cls, attr))]
    return problems


def _knob_problems(knobs: Any) -> list[str]:
    if isinstance(knobs, (str, bytes)) or not hasattr(knobs, "__iter__"):
        return [f"has knobs {knobs!r}, not {_REQUIRED['knobs']}"]
    wrong = [k for k in knobs if not isinstance(k, Knob)]
    if wrong:
        return [f"has knobs holding {wrong[0]!r}, not {_REQUIRED['knobs']}"]
    names = [k.name for k in knobs]
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()] + \
          [n for n in set(names) if names.count(n) > 1]
    if bad:
        return [f"has knob name {bad[0]!r}: knob names must be distinct identifiers"]
    return [f"has knob {k.name} with valid={k.valid!r}, not a function of the value" for k in knobs
            if k.valid is not None and not callable(k.valid)]


def _arity(cls: type, attr: str, args: tuple[str, ...], static: bool, depth: bool = False) -> list[str]:
    """[] when the engine's call of `attr` with `args` binds to its signature, else the phrase
    saying how it must be declared."""
    raw = inspect.getattr_static(cls, attr)
    value = getattr(cls, attr)
    wanted = f"{attr}({', '.join(args if static else ('self', *args))})"
    if static:
        wanted = f"a staticmethod {wanted}"
    if not callable(value):
        return [f"has {attr} {value!r}, not {wanted}"]
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin without a signature: the call will tell
        return []
    if attr == "__init__" or (not static and not isinstance(raw, (staticmethod, classmethod))):
        parameters = list(signature.parameters.values())[1:]  # `self` (the instance the engine calls it on)
        signature = signature.replace(parameters=parameters)
    calls = [((None,) * len(args), {})] + ([((None,) * len(args), {"depth": 1.0})] if depth else [])
    for positional, keywords in calls:
        try:
            signature.bind(*positional, **keywords)
            return []
        except TypeError:
            continue
    return [f"has {attr}{_params(inspect.signature(value))}, not {wanted}"
            f"{' (a branch layer also gets depth=)' if depth else ''}"]


def _params(signature: Any) -> str:
    """`(self, values, *args)`: the parameters' names, without annotations or defaults."""
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return f"({', '.join(prefix.get(p.kind, '') + p.name for p in signature.parameters.values())})"


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
    """
    parts = [cls.label(values(reg), model) for cls, values in regularizers(reg, search)]
    return "+".join(p for p in parts if p) or "none"


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
        if getattr(cls, "convex", False) or cls.label(knobs, model) is None:
            continue
        prefix = "reg." if cls in builtin() else f"reg.extra.{cls.name}."
        set_ = [f"{prefix}{k.name}={_value(knobs[k.name])}" for k in cls.knobs if knobs[k.name] != k.default]
        out.append(f"{', '.join(set_) or cls.name} ({getattr(cls, 'not_convex', 'not part of the convex objective')})")
    return out


def notices(reg: Any, cfg: Any, search: tuple[str, ...] = ()) -> list[str]:
    """The regularizers' warnings about knobs that will have no effect (their `notice` hooks)."""
    out = [cls.notice(cfg) for cls, _ in regularizers(reg, search) if hasattr(cls, "notice")]
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
    out = [cls.config_problem(cfg) for cls in classes if hasattr(cls, "config_problem")]
    return [p for p in out if p]


def penalised_weights(model: Any) -> list[Any]:
    """Weight matrices and kernels: the parameters with two or more dimensions (biases and
    normalisation parameters are never penalised or decayed)."""
    return [p for p in model.parameters() if p.dim() >= 2]


def sparsity(weights: list[Any]) -> float:
    """Fraction of penalised weights that are exactly zero."""
    import torch

    with torch.no_grad():
        total = sum(w.numel() for w in weights)
        if total == 0:
            return 0.0
        return float(sum((w == 0).sum() for w in weights)) / total
