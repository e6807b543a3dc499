"""The regularizer contract: what a regularizer class is, the points where it meets training, what
it may use of the engine's stack and of a member, and every optional attribute with its default.

It owns the protocol as types and data, so that three readers share one declaration: a person
writing a regularizer (the docstrings below), the registry, which checks a user's class against it
when it loads (`problems`, the arities derived from the hook Protocols' signatures), and the
engine, which reads an optional attribute only through `declared` (its default is here, once) and
asks whether a class defines a hook only through `defines`.

A regularizer is a class with

- the required attributes of `Regularizer`: `name`, `knobs`, the staticmethod `label` and
  `__init__(self, values, stack)`;
- optionally, any of the hooks below (`HOOKS`: each a Protocol of its own), called whichever of
  them the class defines;
- optionally, the declared attributes of `DECLARED`, each with its default: `active`, `stackable`,
  `stack_on_off`, `convex`, `not_convex`, `strength`, `search`.

The engine trains a stack of K members (a lone run is a stack of one) and builds one instance per
stack, `Regularizer(values, stack)`, `values` holding each member's knob values (a list of K
dicts). Its hooks receive the stack as a `StackView` and its members as `MemberView`s: the
attributes documented there are all a regularizer may use of them.

Evaluation never calls a hook: train, validation and test metrics are always those of clean
inputs and true labels in eval mode (a `metrics` hook only adds metrics of its own beside them,
after training). Early stopping is the engine's, not a regularizer's.

A user's regularizer is the same kind of class, named by `reg.extra.<name>._target_` (a dotted
path importable from the Python path, or a module file beside the config: see
regbench.regularizers.registry.load_user). It is checked against this contract when it is
loaded, before any data is read: the required attributes, and the kind and the arguments of
every hook and declared attribute it defines.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from regbench.regularizers.knob import Knob

# torch is named in annotations only: the schema reads the regularizers' knobs, and
# `regbench run --help` or a refused config must not wait for torch.
if TYPE_CHECKING:
    import contextlib

    import torch
    from torch import nn


# The member's stream torch's own random layers (dropout, model=custom's) draw from while its
# network trains; every other stream name is a regularizer's own (`MemberView.device_rng`).
NETWORK_STREAM = "network"


# ---------------------------------------------------------------------------------- the views
@runtime_checkable
class MemberView(Protocol):
    """What a regularizer may use of one member of the stack (`stack.members[k]`): one job.

    Attributes:
        cfg: the member's whole composed config (read-only): `cfg.seed`, `cfg.trainer.max_epochs`,
            `cfg.dataset.hflip`...; its own knob values come to `__init__` already.
        state: where its training stands (read-only): `state.history`, one dict per finished
            epoch (its metrics.csv row: `lr`, `val_loss`...), `state.epoch`.

    Every random draw a regularizer makes comes from one of the member's named streams
    (`host_rng`, `device_rng`), opened on first use and saved in checkpoints: the stream
    `device_rng(NETWORK_STREAM, device)` is the one torch's own random layers (dropout) draw
    from; every other name is a regularizer's own.
    """

    cfg: Any
    state: Any

    def host_rng(self, name: str) -> Any:
        """Its host-side stream `name` (a numpy.random.Generator), created on first use from its
        seed and the name, so that one regularizer's draws do not depend on which others are on;
        checkpoints save it. Draws that pick boxes or mixing weights: no device sync."""

    def device_rng(self, name: str, device: torch.device, seed: int | None = None) -> torch.Generator:
        """Its stream `name` on `device` (a torch.Generator), likewise seeded and saved; `seed`,
        where given, is where the stream starts when it is opened (ignored once it is open: a
        resumed run's stream continues from its saved state)."""

    def stream_states(self) -> dict[str, Any]:
        """Every named stream's state (to put the streams back after draws that must not count)."""

    def load_streams(self, states: dict[str, Any], device: torch.device) -> None:
        """Sets the named streams to `states` (from `stream_states`)."""


@runtime_checkable
class StackView(Protocol):
    """What a regularizer may use of the engine's stack (regbench.engine.stack.Stack), the K live
    members trained as one network. Every stacked tensor has the member dimension first; a
    regularizer picks tensors by their roles (`param_roles`, `buffer_roles`) or names, never by
    position (a model=custom layer may have no bias).

    Attributes:
        members: the live members (`MemberView`), in the order of the member dimension; members
            leave a stack when their early stopping ends them (the regularizers are then rebuilt).
        params: the stacked parameters, (K, ...) each, `requires_grad`; in-place updates inside
            `before_step`, `after_step` and `gradient` (the engine's no_grad update).
        penalised: one bool per parameter: a weight matrix or kernel (penalised, decayed), not a
            bias or a normalisation parameter.
        param_names: one name per parameter, `0.weight`, `fc.bias` (model=custom: its
            `named_parameters()`').
        param_roles: one role per parameter, from the module that owns it: `weight` (a matrix or
            kernel: the penalised ones), `bias`, `norm_weight`, `norm_bias` or `other`.
        buffers: the stacked batch-norm statistics, (K, ...) each.
        buffer_names: one name per buffer, `1.running_mean`, `1.running_var`.
        buffer_roles: one role per buffer, `running_mean` or `running_var`.
        reg_state: a regularizer's own per-member tensors, `reg_state[name][key]`, lists of tensors
            with the member dimension first: the engine keeps them through members leaving and
            saves each member's share in its checkpoint (regularizer objects are rebuilt and hold
            no state).
        lr: the members' learning rates for the epoch being trained (a list of K floats).
        optim: the shared `optim` config node (`optim.name`, `optim.momentum`).
        adam: whether the optimizer is Adam or AdamW (not SGD).
        step: the optimizer steps taken, counted from 1, the one being taken included (within
            `before_step` and `after_step`); the same for every member, saved in checkpoints.
        device: the device of the stacked tensors.
        input_range: (low, high) of a prepared input where the data bounds it, each broadcasting
            over one input: an image's pixels [0, 1] standardised per channel, (C, 1, 1); None for
            tables (standardised features have no bound). What an attack clamps to (FGSM).
        epoch: the epoch being trained (every member of a stack is at the same epoch).
        n_outputs: the network's outputs (classes; 1 for a regression).
    """

    members: Sequence[MemberView]
    params: list[torch.Tensor]
    penalised: list[bool]
    param_names: list[str]
    param_roles: list[str]
    buffers: list[torch.Tensor]
    buffer_names: list[str]
    buffer_roles: list[str]
    reg_state: dict[str, dict[str, list[torch.Tensor]]]
    lr: list[float]
    optim: Any
    adam: bool
    step: int
    device: torch.device
    input_range: tuple[torch.Tensor, torch.Tensor] | None
    n_outputs: int

    @property
    def epoch(self) -> int:
        """The epoch being trained."""

    def vector(self, values: list[float], skip_if_zero: bool = True) -> torch.Tensor | None:
        """A per-member setting as a (K,) float32 tensor on the device; None when every value is 0
        (and `skip_if_zero`), so that a hook can skip its work."""

    def per_member(self, vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A (K,) setting shaped to broadcast over a stacked tensor `like` (K, ...)."""

    def adam_denominator(self, j: int) -> torch.Tensor:
        """sqrt(v_hat) + eps of parameter j after this step: Adam's per-coordinate step is lr / it."""

    def norm_statistics(self, momentum: float) -> contextlib.AbstractContextManager[None]:
        """A context within which every batch norm that runs in training mode updates its running
        statistics with `momentum` (torch's convention) instead of its own: 0.0 leaves them as
        they are (SAM's second pass), 1 / (i + 1) on the i-th batch makes them a cumulative
        average (SWA's update_bn)."""

    def evaluating(self) -> contextlib.AbstractContextManager[None]:
        """A context within which `forward` computes with the reported weights (`Weights`)."""

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """The stacked network on x (K, B, ...): (K, B, outputs), or (K, B) for a regression."""


# ---------------------------------------------------------------------------------- required
@runtime_checkable
class Regularizer(Protocol):
    """The required attributes of every regularizer class.

    Attributes:
        name: its part of a run's `reg` label (`l1`, `dropout`, ...), and of report rows; a user's
            must not be a built-in's; no `+`.
        knobs: a sequence of `Knob`s, the keys of the `reg` config node it owns (built-in ones) or
            of its `reg.extra.<name>` entry (a user's), each with a default, a range and a
            one-line doc, from which the schema, the range checks, `regbench run --help` and the
            docs' reference tables are made.
    """

    name: str
    knobs: Sequence[Knob]

    @staticmethod
    def label(values: Mapping[str, Any], model: Any) -> str | None:
        """Its label part from its knob values (a mapping) and the `model` node, or None when they
        switch it off (0, false), so `reg=l2 reg.alpha=0` is honestly labelled `none`."""

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        """Built once per stack with each member's knob values (a list of K dicts); may set
        `active` (see `DECLARED`). Rebuilt whenever members leave or a member's rate changes."""


# The required attributes as a refusal names what each must be.
REQUIRED = {
    "name": "a str, its part of the reg label",
    "knobs": "a sequence of regbench.regularizers.Knob",
    "label": "a staticmethod label(values, model) -> str | None",
}


# ---------------------------------------------------------------------------------- hooks
# Each hook a Protocol of its own: a class "defines" a hook by having the attribute. A
# staticmethod hook is called on the class (before or without an instance), the others on the
# instance the engine built for the stack.
@runtime_checkable
class Layers(Protocol):
    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[nn.Module]:
        """When the model is built, given the whole `reg` node: layers to insert at `where`
        ("input"; "norm": after a hidden linear or conv layer, before its activation; "hidden":
        after the activation; "branch": at the end of a residual block's branch, before the skip
        connection's sum; "mix": one layer that combines a residual block's branch with a second
        one, which the model builder then adds to the block, a copy of its branch with its own
        weights: Shake-Shake's), for `width` features or channels of `dims` spatial dimensions.
        The model builder gives a "branch" layer the `regbench_depth` l / L of its block (the
        l-th of the model's L, counted from the input)."""


@runtime_checkable
class ConfigProblem(Protocol):
    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        """Why it cannot act with this config (a model it has nothing to act on), one line, known
        before any data is loaded."""


@runtime_checkable
class Problem(Protocol):
    @staticmethod
    def problem(cfg: Any, data: Any) -> str | None:
        """Why it cannot act on this dataset, one line."""


@runtime_checkable
class Notice(Protocol):
    @staticmethod
    def notice(cfg: Any) -> str | None:
        """A warning when a valid config asks it for something that will have no effect."""


@runtime_checkable
class LearningRates(Protocol):
    @staticmethod
    def lr(stack: StackView, values: list[dict[str, Any]], lrs: list[float]) -> list[float]:
        """The members' learning rates for the epoch being trained (`stack.epoch`), given their
        schedules' `lrs` and the members' knob values (SWA's own rate). Called before the
        regularizers are built, hence a staticmethod."""


@runtime_checkable
class ConvexTerms(Protocol):
    @staticmethod
    def convex_terms(values: Mapping[str, Any]) -> tuple[float, float]:
        """A `convex` regularizer's part of regbench's convex objective, (l1, l2) of
        l1 * ||W||_1 + 0.5 * l2 * ||W||_2^2 over the weight matrices, from its knob values
        (regbench.engine.convex solves and measures that objective; (0, 0) when it is off)."""


@runtime_checkable
class Forward(Protocol):
    def forward(self, stack: StackView, h: torch.Tensor, train: bool) -> torch.Tensor:
        """The stacked form of the layers it inserted (`layers`): h (K, B, ...) -> h. For "branch"
        layers it also gets `depth=`, the block's l / L, by keyword; for a "mix" layer, `twin=`,
        the block's second branch (K, B, ...), h being its first, and returns their mix."""


@runtime_checkable
class Batch(Protocol):
    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """On each training batch, inputs (K, B, ...) and targets (K, B), before the forward pass;
        a classification target may come back as class probabilities (K, B, classes), soft
        targets (mixup, cutmix), which the loss then uses. Random draws come from the member's own
        named streams (`MemberView.host_rng`, `MemberView.device_rng`), which checkpoints save."""


@runtime_checkable
class Loss(Protocol):
    def loss(self, stack: StackView, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of each member, (K,) (default: cross-entropy, with class indices or
        probabilities, or mean squared error); at most one regularizer per run may define it."""


@runtime_checkable
class Penalty(Protocol):
    def penalty(self, stack: StackView) -> torch.Tensor | None:
        """A scalar added to the loss (each member's gradient sees its own part only), or None."""


@runtime_checkable
class BeforeStep(Protocol):
    def before_step(self, stack: StackView) -> None:
        """Before the optimizer's update of the stacked parameters (`stack.params`), inside the
        engine's no_grad update (a decay)."""


@runtime_checkable
class AfterStep(Protocol):
    def after_step(self, stack: StackView) -> None:
        """After the optimizer's update (a proximal step, a projection). An averaging
        regularizer's after_step (one with `weights`) runs after every other's."""


@runtime_checkable
class Gradient(Protocol):
    def gradient(self, stack: StackView, closure: Callable[[], torch.Tensor]) -> None:
        """After the batch's gradients are computed, before the update; may replace them:
        `closure()` zeroes them and runs the batch's forward and backward pass again at the
        current parameters, returning the losses (SAM's second pass); a pass that must not move
        batch norm's running statistics runs inside `with stack.norm_statistics(momentum=0.0):`."""


@runtime_checkable
class AfterEpoch(Protocol):
    def after_epoch(self, stack: StackView, data: Any) -> None:
        """After each epoch's training, before its evaluation (SWA's average)."""


@runtime_checkable
class Weights(Protocol):
    """The weights that are evaluated each epoch, monitored by early stopping and reported in
    place of the trained ones (an average of them); at most one regularizer per run defines
    `weights` or `ensemble`. Its own tensors live in `stack.reg_state[name]`."""

    def weights(self, stack: StackView) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """(params, buffers) to evaluate, or None while it has none (the trained ones are used)."""

    def weights_label(self, stack: StackView, k: int, epoch: int) -> str:
        """What result.json's `weights` calls member k's weights of `epoch` (`swa`, `trained`)."""


@runtime_checkable
class Ensemble(Protocol):
    """Several sets of weights whose predictions are averaged (a snapshot ensemble), evaluated each
    epoch, monitored by early stopping and reported in place of the trained weights: the average of
    the sets' class probabilities (softmax), or of their outputs for a regression
    (regbench.models.mix_outputs); at most one regularizer per run defines `weights` or `ensemble`.
    Its own tensors live in `stack.reg_state[name]`; the reported model is a
    regbench.models.Ensemble of copies of the member's network."""

    def ensemble(self, stack: StackView, epoch: int) -> tuple[list[tuple[list[torch.Tensor], list[torch.Tensor]]],
                                                              list[list[float]]] | None:
        """(sets, mix) as they stand at the end of `epoch`: the sets, each (params, buffers) stacked
        like `stack.params`, and each member's weight of each set in its average (K rows of S floats
        summing to 1, or all 0: that member's trained weights are evaluated); None while no member
        has a set (the trained weights are evaluated). With `weights_label`."""


@runtime_checkable
class WeightsLabel(Protocol):
    def weights_label(self, stack: StackView, k: int, epoch: int) -> str:
        """With `weights` or `ensemble`: what result.json's `weights` calls member k's evaluated model
        of `epoch` (`swa`, `snapshot ensemble of 3`; `trained` while it has none)."""


@runtime_checkable
class Monitored(Protocol):
    def monitored(self, stack: StackView, k: int, epoch: int) -> bool:
        """With `weights` or `ensemble`: whether early stopping watches member k's val_loss of `epoch`
        (default: every epoch from `monitor_from` on); an epoch it does not watch neither counts
        towards trainer.patience nor can be the best (a snapshot ensemble's, unchanged since its last
        snapshot)."""


@runtime_checkable
class Metrics(Protocol):
    @staticmethod
    def metrics(values: Mapping[str, Any], model: nn.Module, data: Any, batch: int) -> dict[str, torch.Tensor]:
        """After training, metrics of its own of the reported weights beside the clean ones, which
        it never changes: name -> a 0-d tensor on the device (read back with the clean ones, in the
        same host sync), added to result.json's `metrics`; {} where its knob values ask for none.
        Called for every finished run, on the member's own network (`model`) with its knob values
        (`values`), whether or not it trains in that run (FGSM's `test_acc_fgsm`: a baseline's
        robustness too); `batch` is trainer.eval_batch_size."""


@runtime_checkable
class MonitorFrom(Protocol):
    def monitor_from(self, stack: StackView, k: int) -> int:
        """With `weights`: the first epoch whose val_loss early stopping watches for member k
        (default 1)."""


# hook name -> the Protocol that declares it
HOOKS: dict[str, type] = {
    "label": Regularizer, "layers": Layers, "config_problem": ConfigProblem, "problem": Problem, "notice": Notice,
    "lr": LearningRates, "convex_terms": ConvexTerms, "forward": Forward, "batch": Batch, "loss": Loss,
    "penalty": Penalty, "before_step": BeforeStep, "after_step": AfterStep, "gradient": Gradient,
    "after_epoch": AfterEpoch, "weights": Weights, "weights_label": WeightsLabel, "monitor_from": MonitorFrom,
    "ensemble": Ensemble, "monitored": Monitored, "metrics": Metrics,
}


@dataclass(frozen=True)
class Hook:
    """How the engine calls a hook: on the class (`static`) or the instance, with `args`."""

    name: str
    static: bool
    args: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def hook(name: str) -> Hook:
    """The call of hook `name`, read off its Protocol's signature (the one declaration of it)."""
    protocol = HOOKS[name]
    static = isinstance(inspect.getattr_static(protocol, name), staticmethod)
    parameters = list(inspect.signature(getattr(protocol, name)).parameters)
    return Hook(name, static, tuple(parameters if static else parameters[1:]))


def defines(obj: Any, name: str) -> bool:
    """Whether the regularizer class or instance `obj` defines the hook `name` (one of `HOOKS`):
    the engine calls a hook only where this is true.

    Raises:
        KeyError: `name` is not a hook of the contract (a misspelt name in the engine).
    """
    if name not in HOOKS:
        raise KeyError(f"{name!r} is not a hook of the regularizer contract")
    return hasattr(obj, name)


# ---------------------------------------------------------------------------------- declared
@dataclass(frozen=True)
class Declared:
    """An optional plain attribute of a regularizer, with the default the engine reads it with.

    Attributes:
        default: its value where a class does not set it.
        what: what it must be, as a refusal says it.
        ok: whether a value (of the class `cls`) is one: ok(value, cls).
        doc: what it means.
    """

    default: Any
    what: str
    ok: Callable[[Any, Any], bool]
    doc: str


DECLARED: dict[str, Declared] = {
    "active": Declared(
        None, "a bool", lambda v, cls: isinstance(v, bool),
        "Whether its hooks run in this stack; usually set by `__init__` from the members' values. "
        "Default (None): whether its label is not None for some member (all of the members' knobs "
        "off: none of its hooks runs)."),
    "stackable": Declared(
        True, "True or a one-line reason (a str)", lambda v, cls: v is True or (isinstance(v, str) and v != ""),
        "True, or a one-line reason why members cannot share a stack (the stacked launcher then "
        "runs such jobs alone, saying why)."),
    "stack_on_off": Declared(
        False, "a bool", lambda v, cls: isinstance(v, bool),
        "True when whether it is on must be the same for every member of a stack (its knobs may "
        "still differ): its on/off enters the stacking key."),
    "convex": Declared(
        False, "a bool", lambda v, cls: isinstance(v, bool),
        "True for a penalty that is part of regbench's convex objective (the elastic net); such a "
        "class must define `convex_terms`. optim=fista solves only configs whose acting "
        "regularizers are all convex."),
    "not_convex": Declared(
        "not part of the convex objective", "a str", lambda v, cls: isinstance(v, str),
        "A few words on why a run where it acts is not regbench's convex problem (optim=fista "
        "refuses it, naming this; result.json's `optimality` is then null)."),
    "strength": Declared(
        None, "the name of one of its knobs, or None",
        lambda v, cls: v is None or v in _knob_names(cls),
        "The knob that says how strongly it acts (0: off), the x axis of the report's "
        "gap_vs_strength plot (`alpha` for the elastic net, `dropout`...); None for a switch."),
    "search": Declared(
        None, "a mapping of its knob names to distributions (str), or a staticmethod search(values) returning one",
        lambda v, cls: v is None or _is_space(v, cls) or _takes_values(v),
        "Its default search space, what a tuning study of it (`+search=each`) samples: a mapping from "
        "its knob names to distributions in the syntax of Hydra's Optuna sweeper (`hydra.sweeper.params`: "
        "`interval(a, b)`, `tag(log, interval(a, b))`, `int(interval(a, b))`, `choice(x, y)`, "
        "`range(a, b)`), each inside its knob's range, or a staticmethod `search(values)` returning that "
        "mapping from its knob values, so that each preset gets its own (`reg=l2` tunes `alpha` only, "
        "`reg=elasticnet` `l1_ratio` too). `{}` for a switch with nothing to tune; None (not declared) "
        "refuses to tune it (regbench.regularizers.registry.search_space)."),
}


def _is_space(value: Any, cls: Any) -> bool:
    """Whether `value` is a search space of `cls`: its knob names -> distributions (str)."""
    return isinstance(value, Mapping) and all(
        k in _knob_names(cls) and isinstance(v, str) for k, v in value.items())


def _takes_values(value: Any) -> bool:
    """Whether `value` can be called as the staticmethod `search(values)`."""
    if not callable(value):
        return False
    try:
        inspect.signature(value).bind(None)
    except (TypeError, ValueError):
        return False
    return True


def _knob_names(cls: Any) -> set[str]:
    """The names of `cls`'s knobs, as far as they are knobs (`_knob_problems` names the rest)."""
    knobs = getattr(cls, "knobs", ())
    if isinstance(knobs, (str, bytes)) or not hasattr(knobs, "__iter__"):
        return set()
    return {k.name for k in knobs if isinstance(k, Knob)}


def declared(obj: Any, name: str) -> Any:
    """The declared attribute `name` (one of `DECLARED`) of a regularizer class or instance, or
    its default where it does not set it.

    Raises:
        KeyError: `name` is not declared by the contract.
    """
    return getattr(obj, name, DECLARED[name].default)


def acts(reg: Any, labels: Callable[[], Iterable[str | None]]) -> bool:
    """Whether the regularizer instance `reg` acts in its stack: its `active` where it sets one,
    else whether some member's label part is not None. `labels` is a function returning the
    members' label parts (called only when needed)."""
    active = declared(reg, "active")
    if active is None:
        return any(label is not None for label in labels())
    return bool(active)


# ---------------------------------------------------------------------------------- checking
def problems(cls: Any, taken: Collection[str] = ()) -> list[str]:
    """What keeps `cls` from meeting the contract, each as a phrase that follows the class's name
    (`lacks label (...)`), or [] when nothing does; `taken`: names it may not have (the built-in
    regularizers', which the registry knows: regbench.regularizers.registry.contract_problems)."""
    if not inspect.isclass(cls):
        return [f"is a {type(cls).__name__}, not a class"]
    out = [f"lacks {attr} ({what})" for attr, what in REQUIRED.items() if not hasattr(cls, attr)]
    if cls.__init__ is object.__init__:
        out.append("lacks __init__(self, values, stack)")
    else:
        out += _arity(cls, "__init__", ("values", "stack"), static=False)
    name = getattr(cls, "name", None)
    if hasattr(cls, "name") and (not isinstance(name, str) or not name.strip() or "+" in name):
        out.append(f"has name {name!r}, not {REQUIRED['name']} (without '+')")
    elif name in taken:
        out.append(f"has name {name!r}, a built-in regularizer's: choose another")
    if hasattr(cls, "knobs"):
        out += _knob_problems(getattr(cls, "knobs"))
    # the staticmethods first, then the instance's hooks (the order refusals list them in)
    for static in (True, False):
        for attr in HOOKS:
            call = hook(attr)
            if call.static == static and hasattr(cls, attr):
                out += _arity(cls, attr, call.args, static=static, depth=attr == "forward")
    for chooser in ("weights", "ensemble"):
        if hasattr(cls, chooser) and not hasattr(cls, "weights_label"):
            out.append(f"defines {chooser} but lacks weights_label(self, stack, k, epoch) -> str")
    if hasattr(cls, "weights") and hasattr(cls, "ensemble"):
        out.append("defines both weights and ensemble: one choice of the evaluated model")
    out += [f"has {attr} {getattr(cls, attr)!r}, not {d.what}"
            for attr, d in DECLARED.items() if hasattr(cls, attr) and not d.ok(getattr(cls, attr), cls)]
    if declared(cls, "convex") is True and not hasattr(cls, "convex_terms"):
        out.append("has convex True but lacks convex_terms(values) -> (l1, l2), its part of the convex objective")
    return out


def _knob_problems(knobs: Any) -> list[str]:
    if isinstance(knobs, (str, bytes)) or not hasattr(knobs, "__iter__"):
        return [f"has knobs {knobs!r}, not {REQUIRED['knobs']}"]
    wrong = [k for k in knobs if not isinstance(k, Knob)]
    if wrong:
        return [f"has knobs holding {wrong[0]!r}, not {REQUIRED['knobs']}"]
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
    calls = [((None,) * len(args), {})] + ([((None,) * len(args), {"depth": 1.0}),
                                            ((None,) * len(args), {"twin": None})] if depth else [])
    for positional, keywords in calls:
        try:
            signature.bind(*positional, **keywords)
            return []
        except TypeError:
            continue
    return [f"has {attr}{_params(inspect.signature(value))}, not {wanted}"
            f"{' (a branch layer also gets depth=, a mix layer twin=)' if depth else ''}"]


def _params(signature: Any) -> str:
    """`(self, values, *args)`: the parameters' names, without annotations or defaults."""
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return f"({', '.join(prefix.get(p.kind, '') + p.name for p in signature.parameters.values())})"
