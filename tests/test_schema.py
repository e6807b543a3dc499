"""regbench.config.checks on composed configs: finite numbers, ranges, presets that disagree,
settings without effect; and what the labels and flags of a result say."""

from __future__ import annotations

import dataclasses

import pytest

from regbench.config import checks, schema
from regbench.regularizers import label as reg_label
from regbench.results import early_best
from tests.helpers.configs import make_cfg


def _float_keys(node: type, prefix: str = "") -> list[str]:
    """Every float field of the schema, as a dotted key."""
    out = []
    for f in dataclasses.fields(node):
        if dataclasses.is_dataclass(f.default_factory):
            out += _float_keys(f.default_factory, f"{prefix}{f.name}.")
        elif f.type in ("float", "Optional[float]", float):  # a string under `from __future__ import annotations`
            out.append(f"{prefix}{f.name}")
    return out


FLOAT_KEYS = _float_keys(schema.Config)


def test_every_float_knob_is_found():
    assert {"reg.alpha", "reg.dropout", "optim.lr", "optim.momentum", "dataset.train_size",
            "trainer.checkpoint_seconds", "dataset.noise"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_non_finite_values_of_every_float_knob_are_refused(key, value):
    problems = checks.check(make_cfg(f"{key}={value}"))
    assert problems == [f"{key} must be a finite number (got {float(value)})"]


@pytest.mark.parametrize("momentum, ok", [(0.0, True), (0.99, True), (1.0, False), (1.5, False), (-0.1, False)])
def test_momentum_must_lie_in_zero_one(momentum, ok):
    problems = checks.check(make_cfg("optim=sgd", f"optim.momentum={momentum}"))
    assert problems == ([] if ok else [f"optim.momentum must be in [0, 1) (got {momentum})"])


def test_settings_without_effect_are_noticed():
    assert checks.notices(make_cfg("optim=sgd", "optim.momentum=0.9")) == []
    (notice,) = checks.notices(make_cfg("optim=adam", "optim.momentum=0.9"))
    assert notice.startswith("optim.momentum=0.9 has no effect with optim=adam")
    (notice,) = checks.notices(make_cfg("model=linear", "reg=batchnorm"))
    assert notice.startswith("reg.batchnorm has no effect on model=linear")
    assert checks.notices(make_cfg("model=mlp", "reg=batchnorm")) == []


@pytest.mark.parametrize(
    "overrides, keys",
    [
        (["reg=[l1,l2]"], ["l1_ratio"]),
        (["reg=[elasticnet,l1]"], ["l1_ratio"]),
        (["reg=[l1,l2]", "reg.l1_ratio=0.3"], []),  # the user settled it
        (["reg=[l2,dropout,batchnorm]"], []),
        (["reg=[elasticnet,weight_decay]"], []),
        (["reg=l1"], []),
        (["seed=1"], []),
    ],
)
def test_presets_that_set_one_key_differently_are_refused(overrides, keys):
    problems = checks.preset_conflicts(overrides)
    assert [p.split("disagree on reg.")[1].split(" ")[0] for p in problems] == keys
    assert all("use reg=elasticnet" in p for p in problems)


def test_the_label_names_only_what_acts():
    assert reg_label(make_cfg("model=linear", "reg=batchnorm").reg, make_cfg("model=linear").model) == "none"
    cfg = make_cfg("model=linear", "reg=[batchnorm,dropout]")
    assert reg_label(cfg.reg, cfg.model) == "dropout"  # input dropout acts on a linear model
    cfg = make_cfg("model=mlp", "reg=[l2,batchnorm]")
    assert reg_label(cfg.reg, cfg.model) == "l2+batchnorm"
    cfg = make_cfg("model=cnn", "reg=batchnorm", "model.hidden_sizes=[]")
    assert reg_label(cfg.reg, cfg.model) == "batchnorm"  # after each conv block


def test_early_best_flags_an_early_stop_on_an_early_epoch_only():
    assert early_best(1, 10, stopped_early=True)
    assert early_best(10, 10, stopped_early=True)
    assert not early_best(11, 10, stopped_early=True)
    assert not early_best(1, 10, stopped_early=False)  # max_epochs cut it short: the user's choice
    assert not early_best(1, None, stopped_early=False)
    assert not early_best(None, 10, stopped_early=True)
