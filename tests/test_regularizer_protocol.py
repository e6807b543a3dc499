"""The regularizer contract as types and data (regbench.regularizers.contract) and the registry's
use of it: refusals in one line, declared defaults, the hooks' calls read off their Protocols,
the built-ins' conformance, the engine's stack and member against their views, and the convex
objective's terms asked of the regularizer that declares itself convex."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regbench.regularizers import builtin, contract_problems, convex_terms, regularizers
from regbench.regularizers import contract
from regbench.regularizers.contract import (DECLARED, HOOKS, MemberView, Regularizer, StackView, declared, defines,
                                            hook)
from regbench.regularizers.knob import Knob
from tests.helpers.configs import make_cfg

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "user_regularizer"


class Complete:
    """A regularizer with only the required attributes."""

    name = "complete"
    knobs = (Knob("s", 0.0, "A strength.", ">= 0"),)

    @staticmethod
    def label(values, model):
        return None

    def __init__(self, values, stack):
        pass


def _without(attr: str) -> type:
    namespace = {k: v for k, v in vars(Complete).items() if k != attr and not k.startswith("__")}
    if attr != "__init__":
        namespace["__init__"] = Complete.__init__
    return type("Mine", (), namespace)


@pytest.mark.parametrize("attr, phrase", [
    ("name", "lacks name (a str, its part of the reg label)"),
    ("knobs", "lacks knobs (a sequence of regbench.regularizers.Knob)"),
    ("label", "lacks label (a staticmethod label(values, model) -> str | None)"),
    ("__init__", "lacks __init__(self, values, stack)"),
])
def test_a_class_missing_a_required_attribute_is_refused_in_one_phrase(attr, phrase):
    assert contract_problems(Complete) == []
    assert contract_problems(_without(attr)) == [phrase]


@pytest.mark.parametrize("attr, value, phrase", [
    ("stackable", False, "has stackable False, not True or a one-line reason (a str)"),
    ("stack_on_off", "yes", "has stack_on_off 'yes', not a bool"),
    ("convex", 1, "has convex 1, not a bool"),
    ("not_convex", 3, "has not_convex 3, not a str"),
    ("active", "on", "has active 'on', not a bool"),
    ("strength", "rate", "has strength 'rate', not the name of one of its knobs, or None"),
    ("convex", True, "has convex True but lacks convex_terms(values) -> (l1, l2), its part of the convex objective"),
    ("convex_terms", lambda self, values: (0.0, 0.0),
     "has convex_terms(self, values), not a staticmethod convex_terms(values)"),
])
def test_a_declared_attribute_of_the_wrong_kind_is_refused(attr, value, phrase):
    cls = type("Mine", (Complete,), {attr: value})
    assert contract_problems(cls) == [phrase]


def test_a_declared_strength_naming_one_of_its_knobs_is_accepted():
    assert contract_problems(type("Mine", (Complete,), {"strength": "s"})) == []


def test_declared_attributes_have_their_defaults_where_a_class_does_not_set_them():
    assert {name: declared(Complete, name) for name in DECLARED} == {
        "active": None, "stackable": True, "stack_on_off": False, "convex": False,
        "not_convex": "not part of the convex objective", "strength": None, "search": None}
    assert declared(type("Mine", (Complete,), {"stackable": "a reason"}), "stackable") == "a reason"
    sam, elasticnet, dropout = (next(c for c in builtin() if c.name == n) for n in ("sam", "elasticnet", "dropout"))
    assert declared(sam, "stack_on_off") is True and declared(dropout, "stack_on_off") is False
    assert declared(elasticnet, "convex") is True and declared(dropout, "convex") is False
    with pytest.raises(KeyError):
        declared(Complete, "stakable")
    with pytest.raises(KeyError):
        defines(Complete, "penalties")


def test_active_defaults_to_whether_some_members_label_is_not_none():
    class Instance:
        pass

    on, off = Instance(), Instance()
    off.active = False
    assert contract.acts(on, lambda: [None, "x"]) and not contract.acts(on, lambda: [None, None])
    assert not contract.acts(off, lambda: ["x"])  # its own `active` wins; the labels are not asked


def test_the_hooks_calls_are_read_off_their_protocols_and_are_todays():
    """The arguments the engine passes each hook (which the refusals name), pinned as the
    protocol's prose listed them before it became types."""
    static = {"label": ("values", "model"), "layers": ("reg", "where", "width", "dims"), "config_problem": ("cfg",),
              "problem": ("cfg", "data"), "notice": ("cfg",), "lr": ("stack", "values", "lrs"),
              "convex_terms": ("values",), "metrics": ("values", "model", "data", "batch")}
    instance = {"forward": ("stack", "h", "train"), "batch": ("stack", "x", "y"), "loss": ("stack", "out", "target"),
                "penalty": ("stack",), "before_step": ("stack",), "after_step": ("stack",),
                "gradient": ("stack", "closure"), "after_epoch": ("stack", "data"), "weights": ("stack",),
                "weights_label": ("stack", "k", "epoch"), "monitor_from": ("stack", "k"),
                # added with snapshot ensembles (issue 26): an averaged ensemble, and the epochs early stopping watches
                "ensemble": ("stack", "epoch"), "monitored": ("stack", "k", "epoch")}
    assert {h: hook(h).args for h in HOOKS if hook(h).static} == static
    assert {h: hook(h).args for h in HOOKS if not hook(h).static} == instance


def _example() -> type:
    import importlib.util

    spec = importlib.util.spec_from_file_location("maxnorm_contract", EXAMPLE / "maxnorm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MaxNorm


def test_the_builtins_and_the_example_conform_to_the_protocols_and_take_the_stack_as_a_stack_view():
    for cls in (*builtin(), _example()):
        assert contract_problems(cls) == [], cls
        assert isinstance(cls, Regularizer), cls
        for name in HOOKS:
            if not defines(cls, name):
                continue
            assert isinstance(cls, HOOKS[name]), (cls, name)
            if "stack" in hook(name).args:
                assert getattr(cls, name).__annotations__["stack"] in ("StackView", StackView), (cls, name)
        assert cls.__init__.__annotations__["stack"] in ("StackView", StackView), cls


# The strength knobs chosen for the regularizers of 2026-12-07 (a new one declares its own; the
# contract checks that it names one of its knobs).
STRENGTHS = {"elasticnet": "alpha", "weight_decay": "weight_decay", "dropout": "dropout", "batchnorm": None,
             "drop_path": "drop_path", "shakedrop": "shakedrop", "label_smoothing": "label_smoothing", "augment": None,
             "cutout": "cutout", "mixing": "mixup", "input_noise": "input_noise", "sam": "sam", "ema": "ema", "swa": "swa"}


def test_each_builtin_declares_its_strength_knob():
    strengths = {cls.name: declared(cls, "strength") for cls in builtin()}
    assert {name: strengths[name] for name in STRENGTHS} == STRENGTHS
    for cls in builtin():
        assert strengths[cls.name] is None or strengths[cls.name] in {k.name for k in cls.knobs}, cls


def _members_of(view: type) -> set[str]:
    return {n for n in (*view.__annotations__, *vars(view)) if not n.startswith("_")}


def test_the_views_name_every_attribute_the_regularizers_use_of_the_stack_and_a_member():
    """Scanned from the built-in regularizers and the example: a regularizer that starts using
    another attribute of the stack or a member must declare it in the view first."""
    sources = [p.read_text() for p in (REPO / "regbench" / "regularizers").glob("*.py")
               if p.stem not in ("contract", "registry", "__init__")] + [(EXAMPLE / "maxnorm.py").read_text()]
    used_of_stack = {n for s in sources for n in re.findall(r"\bstack\.(\w+)", s)}
    # a member is `member` (a loop over stack.members) or `m` on a line that iterates them
    used_of_member = {n for s in sources for n in re.findall(r"\bmember\.(\w+)", s)}
    used_of_member |= {n for s in sources for line in s.splitlines() if "stack.members" in line
                       for n in re.findall(r"\bm\.(\w+)", line)}
    assert {"params", "members", "reg_state"} <= used_of_stack and {"cfg", "host_rng"} <= used_of_member
    assert used_of_stack <= _members_of(StackView), used_of_stack - _members_of(StackView)
    assert used_of_member <= _members_of(MemberView), used_of_member - _members_of(MemberView)


def test_the_engines_stack_and_member_are_the_views_regularizers_are_given():
    from regbench.models import build_model

    cfg = make_cfg("model.hidden_sizes=[4]")
    model = build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")
    from tests.helpers.engine import stack_of

    stack = stack_of(cfg, model)
    assert isinstance(stack, StackView) and isinstance(stack.members[0], MemberView)


# --------------------------------------------------------------------------- the convex objective
@pytest.mark.parametrize("overrides", [["reg=l1", "reg.alpha=0.003"], ["reg=l2", "reg.alpha=0.01"],
                                       ["reg=elasticnet", "reg.alpha=0.02", "reg.l1_ratio=0.3"], ["reg=none"]])
def test_the_convex_terms_are_the_elastic_nets_exactly(overrides):
    from regbench.engine import convex

    reg = make_cfg("model=linear", *overrides).reg
    expected = (float(reg.alpha) * float(reg.l1_ratio), float(reg.alpha) * (1.0 - float(reg.l1_ratio)))
    assert convex_terms(reg) == expected and convex.strengths(reg) == expected  # bit for bit
    assert [c.name for c, _ in regularizers(reg) if declared(c, "convex")] == ["elasticnet"]


def test_a_users_convex_regularizer_adds_its_declared_terms(tmp_path):
    (tmp_path / "ridge2.py").write_text(
        "from regbench.regularizers import Knob\n\n"
        "class Ridge2:\n"
        "    name = 'ridge2'\n"
        "    convex = True\n"
        "    strength = 's'\n"
        "    knobs = (Knob('s', 0.0, 'L2 strength.', '>= 0'),)\n\n"
        "    @staticmethod\n"
        "    def label(values, model):\n"
        "        return 'ridge2' if values['s'] > 0 else None\n\n"
        "    @staticmethod\n"
        "    def convex_terms(values):\n"
        "        return 0.0, float(values['s'])\n\n"
        "    def __init__(self, values, stack):\n"
        "        pass\n")
    from regbench.regularizers import convex_obstacles

    cfg = make_cfg("model=linear", "reg=l1", "reg.alpha=0.5", "+reg.extra.ridge2._target_=ridge2.Ridge2",
                   "+reg.extra.ridge2.s=0.25")
    search = (str(tmp_path),)
    assert convex_obstacles(cfg.reg, cfg.model, search) == []
    assert convex_terms(cfg.reg, search) == (0.5, 0.25)
