"""Each regularizer's default search space (issue 25, item 4): its `search` declaration and
regbench.regularizers.search_space, which a tuning study of a composed `reg` node samples.

Hydra's own override parser is the oracle for the syntax (a declared distribution must be what
`hydra.sweeper.params` accepts), the knobs' `valid` for the ranges, and the run's label for
whether a space suits its preset: every point at an end of the space is still the preset's run.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import OmegaConf

from regbench import UserInputError
from regbench.regularizers import Knob, builtin, contract_problems, label, search_space
from regbench.regularizers.contract import declared
from regbench.regularizers.registry import knob_owners
from tests.helpers.configs import REPO, make_cfg

PRESETS = sorted(p.stem for p in (REPO / "conf" / "reg").glob("*.yaml"))
EXAMPLE = REPO / "examples" / "user_regularizer"


def _sweep(key: str, distribution: str):
    """The distribution as Hydra's Optuna sweeper reads `hydra.sweeper.params`: a sweep."""
    value = OverridesParser.create().parse_override(f"{key}={distribution}").value()
    assert isinstance(value, (IntervalSweep, ChoiceSweep, RangeSweep)), (key, distribution, value)
    return value


def _ends(sweep) -> list:
    """The values at the ends of a sweep: an interval's or a range's first and last, every choice."""
    if isinstance(sweep, IntervalSweep):
        return [sweep.start, sweep.end]
    if isinstance(sweep, ChoiceSweep):
        return list(sweep.list)
    count = math.ceil((sweep.stop - sweep.start) / sweep.step)
    return [sweep.start, sweep.start + (count - 1) * sweep.step]


def _knob(key: str):
    return next(k for k in knob_owners()[key].knobs if f"reg.{k.name}" == key)


def _with(cfg, key: str, value):
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_each_presets_space_is_real_keys_with_ranges_inside_the_knobs_that_keep_the_preset_itself(preset):
    cfg = make_cfg(f"reg={preset}")
    space = search_space(cfg.reg, model=cfg.model)
    preset_label = label(cfg.reg, cfg.model)
    for key, distribution in space.items():
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key  # a key of the composed config
        knob, sweep = _knob(key), _sweep(key, distribution)
        if isinstance(sweep, IntervalSweep):
            assert sweep.start < sweep.end, (key, distribution)
            if "log" in sweep.tags:
                assert sweep.start > 0, (key, distribution)
        for value in _ends(sweep):
            assert knob.valid is not None and type(value) is not bool and knob.valid(value), (key, value)
            # a trial at the space's end is still the preset's run (l1_ratio=0 would make elasticnet l2)
            assert label(_with(cfg, key, value).reg, cfg.model) == preset_label, (key, value)


# none switches nothing on, and the cocktail (every regularizer off) has a space of its own: tests/test_cocktail.py
@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in ("none", "cocktail")])
def test_each_preset_tunes_the_strength_of_what_it_switches_on_around_its_own_value(preset):
    """The preset's own value (the literature's) lies inside its study's space, and the space
    holds the strength knob that each regularizer the preset switches on acts by (a switch has none)."""
    cfg = make_cfg(f"reg={preset}")
    space = search_space(cfg.reg, model=cfg.model)
    on = [cls for cls in builtin() if cls.label({k.name: cfg.reg[k.name] for k in cls.knobs}, cfg.model)]
    assert on, preset
    # mixing's strength is mixup's alpha: reg=cutmix leaves it at 0
    strengths = [f"reg.{declared(cls, 'strength')}" for cls in on if cfg.reg.get(declared(cls, "strength") or "")]
    assert [k for k in strengths if k in space] == strengths
    owners = knob_owners()
    assert all(owners[key] in on for key in space), space  # nothing of a regularizer the preset leaves off
    for key, distribution in space.items():
        sweep, value = _sweep(key, distribution), cfg.reg[key.split(".", 1)[1]]
        if isinstance(sweep, ChoiceSweep):
            assert value in sweep.list, (key, value)
        else:
            assert _ends(sweep)[0] <= value <= _ends(sweep)[1], (key, value, distribution)


@pytest.mark.parametrize("overrides, keys", [
    (["reg=l2"], ["reg.alpha"]),
    (["reg=l1"], ["reg.alpha"]),
    (["reg=elasticnet"], ["reg.alpha", "reg.l1_ratio"]),
    (["reg=none"], []),
    (["reg=mixup"], ["reg.mixup"]),
    (["reg=cutmix"], ["reg.cutmix"]),
    (["reg=batchnorm"], []),
    (["reg=[l2,dropout,mixup,sam]"], ["reg.alpha", "reg.dropout", "reg.mixup", "reg.sam"]),
    (["reg=l2", "reg.alpha=0"], []),  # switched off by its strength: nothing to tune
])
def test_a_composed_reg_gives_the_space_of_what_it_switches_on_in_the_labels_order(overrides, keys):
    cfg = make_cfg(*overrides)
    assert list(search_space(cfg.reg)) == keys


def test_sam_and_asam_share_a_module_but_not_a_range():
    sam, asam = (_sweep("reg.sam", search_space(make_cfg(f"reg={p}").reg)["reg.sam"]) for p in ("sam", "asam"))
    assert sam.end < asam.end and sam.start < asam.start


def test_every_builtin_declares_a_space_the_contract_accepts_and_the_switches_an_empty_one():
    for cls in builtin():
        assert declared(cls, "search") is not None, cls
    assert {cls.name for cls in builtin() if declared(cls, "search") == {}} == {"augment", "batchnorm", "shake_shake"}


class Complete:
    """A regularizer with only the required attributes (and one knob, `s`)."""

    name = "complete"
    knobs = (Knob("s", 0.0, "A strength.", ">= 0", lambda v: v >= 0),)

    @staticmethod
    def label(values, model):
        return None

    def __init__(self, values, stack):
        pass



@pytest.mark.parametrize("value, phrase", [
    ("interval(0, 1)", "has search 'interval(0, 1)', not a mapping of its knob names"),
    ({"t": "interval(0, 1)"}, "has search {'t': 'interval(0, 1)'}, not a mapping of its knob names"),
    ({"s": 0.5}, "has search {'s': 0.5}, not a mapping of its knob names"),
])
def test_a_search_of_the_wrong_kind_is_refused_by_the_contract(value, phrase):
    problems = contract_problems(type("Mine", (Complete,), {"search": value}))
    assert len(problems) == 1 and problems[0].startswith(phrase), problems
    assert contract_problems(type("Mine", (Complete,), {"search": {"s": "interval(0.1, 1)"}})) == []
    assert contract_problems(type("Mine", (Complete,), {"search": staticmethod(lambda values: {})})) == []


# ----------------------------------------------------------------------- a user's regularizer
def _user(tmp_path: Path, module: str, search: str | None) -> tuple[str, ...]:
    """Writes a user's regularizer `<module>.Mine` (knob `s`, on above 0) with the class body line
    `search` (none where None) into tmp_path; returns the folders to load it from."""
    lines = ["from regbench.regularizers import Knob", "", "", "class Mine:", "    name = 'mine'",
             "    knobs = (Knob('s', 0.0, 'A strength.', '>= 0', lambda v: v >= 0),)",
             *([f"    {search}"] if search else []), "",
             "    @staticmethod", "    def label(values, model):",
             "        return 'mine' if values['s'] > 0 else None", "",
             "    def __init__(self, values, stack):", "        pass", ""]
    (tmp_path / f"{module}.py").write_text("\n".join(lines))
    return (str(tmp_path),)


def _user_reg(module: str, s: float, *more: str):
    return make_cfg(*more, f"+reg.extra.mine._target_={module}.Mine", f"+reg.extra.mine.s={s}").reg


def test_a_users_declared_space_is_honoured_after_the_builtins(tmp_path):
    search = _user(tmp_path, "space_declared", 'search = {"s": "tag(log, interval(0.001, 1.0))"}')
    reg = _user_reg("space_declared", 0.1, "reg=l2")
    assert search_space(reg, search) == {"reg.alpha": "tag(log, interval(1e-6, 1e-1))",
                                         "reg.extra.mine.s": "tag(log, interval(0.001, 1.0))"}


def test_a_users_space_may_be_a_function_of_its_values(tmp_path):
    search = _user(tmp_path, "space_function",
                   'search = staticmethod(lambda values: {"s": f"interval({values[\'s\'] / 2}, {values[\'s\'] * 2})"})')
    assert search_space(_user_reg("space_function", 0.5), search) == {"reg.extra.mine.s": "interval(0.25, 1.0)"}


def test_a_users_space_function_returning_no_mapping_is_refused_in_one_line(tmp_path):
    search = _user(tmp_path, "space_not_mapping", "search = staticmethod(lambda values: ['s'])")
    with pytest.raises(UserInputError, match=r"^reg.extra.mine \(space_not_mapping.Mine\)'s search\(values\) "
                                             r"returned \['s'\], not a mapping"):
        search_space(_user_reg("space_not_mapping", 0.5), search)


def test_the_examples_regularizer_declares_its_space():
    reg = make_cfg("+reg.extra.maxnorm._target_=maxnorm.MaxNorm", "+reg.extra.maxnorm.max_norm=0.5").reg
    space = search_space(reg, (str(EXAMPLE),))
    assert list(space) == ["reg.extra.maxnorm.max_norm"]
    assert all(0 < v for v in _ends(_sweep("reg.extra.maxnorm.max_norm", space["reg.extra.maxnorm.max_norm"])))


def test_a_user_regularizer_that_is_on_without_a_space_is_refused_in_one_line(tmp_path):
    search = _user(tmp_path, "space_missing", None)
    off = _user_reg("space_missing", 0.0, "reg=l2")
    assert search_space(off, search) == {"reg.alpha": "tag(log, interval(1e-6, 1e-1))"}  # off: not asked
    with pytest.raises(UserInputError) as e:
        search_space(_user_reg("space_missing", 0.5, "reg=l2"), search)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("reg.extra.mine (space_missing.Mine) declares no search space")
    assert 'search = {"s": "interval(a, b)"}' in message


@pytest.mark.parametrize("distribution, phrase", [
    ("interval(-1.0, 1.0)", "-1.0 is not a value of s (>= 0)"),
    ("tag(log, interval(0.0, 1.0))", "a log scale needs a start above 0"),
    ("interval(1.0, 0.5)", "its interval is empty"),
    ("choice(0.5, true)", "True is not a value of s"),
    ("0.5", "not a distribution"),
    ("interval(0.1, ", "Hydra cannot parse it"),
    ("uniform(0.1, 1.0)",
     "Hydra cannot parse it (HydraException while evaluating 'uniform(0.1, 1.0)': Unknown function"),
])
def test_a_users_space_out_of_its_knobs_range_or_not_hydras_syntax_is_refused_in_one_line(tmp_path, distribution,
                                                                                          phrase):
    module = f"space_bad_{hashlib.sha1(distribution.encode()).hexdigest()[:8]}"
    search = _user(tmp_path, module, f"search = {{'s': {distribution!r}}}")
    with pytest.raises(UserInputError) as e:
        search_space(_user_reg(module, 0.5), search)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"reg.extra.mine ({module}.Mine)'s search space: s={distribution}: {phrase}")


def test_the_space_is_found_without_importing_torch():
    code = ("import sys\n"
            "from tests.helpers.configs import make_cfg\n"
            "from regbench.regularizers import search_space\n"
            "for preset in %r:\n"
            "    search_space(make_cfg('reg=' + preset).reg)\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))\n") % (PRESETS,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
