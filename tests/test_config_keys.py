"""The table of config keys (regbench.config.keys), derived from each key's one declaration:
it reproduces the rules as of 5be3e05 (tests/helpers/rules_5be3e05.py) for config_hash, the
stacking key, the report's "only for" and the back-fill of older runs; and each declared range,
checked directly, without composing a Hydra config.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from regbench.config import keys, schema
from regbench.config.declare import NEVER, WHERE_APPLIES, Key, When, key
from regbench.regularizers import builtin, builtin_knobs
from regbench.results import config_hash, flatten
from tests.helpers import rules_5be3e05 as oracle
from tests.helpers.configs import REPO, make_cfg

PRESETS = sorted(p.stem for p in (REPO / "conf" / "reg").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (REPO / "conf" / "dataset").glob("*.yaml"))
MODELS = ("linear", "mlp", "cnn", "resmlp", "resnet", "custom")
OPTIMS = ("sgd", "adam", "adamw", "fista")


def _params(*overrides: str) -> dict:
    return flatten(OmegaConf.to_container(make_cfg(*overrides), resolve=True))


def _part(params: dict, prefix: str) -> dict:
    return {k: v for k, v in params.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def parts():
    """Each group's options composed once; a config is then any mix of their parts."""
    base = _params()
    return {
        "base": base,
        "dataset": {d: _part(_params(f"dataset={d}"), "dataset.") for d in DATASETS},
        "model": {m: _part(_params(f"model={m}"), "model.") for m in MODELS},
        "reg": {r: _part(_params(f"reg={r}"), "reg.") for r in PRESETS},
        "optim": {o: _part(_params(f"optim={o}"), "optim.") for o in OPTIMS},
    }


def _mix(parts, dataset, model, reg, optim, **changes):
    params = {**parts["base"], **parts["dataset"][dataset], **parts["model"][model], **parts["reg"][reg],
              **parts["optim"][optim]}
    return {**params, **changes}


# Runs as older versions recorded them: without the keys added since (schedules, the residual and
# custom models' knobs, the newer regularizers' knobs, a user's data, search.seeds, fista's knobs).
ADDED = ("optim.schedule", *(f"optim.{k}" for k in oracle.ALL_SCHEDULE_KNOBS), *oracle.SOLVER_ONLY,
         *(f"model.{k}" for k in oracle.MODEL_KNOBS_SINCE), *oracle.OWN_DATA_DEFAULTS, "search.seeds",
         *(f"reg.{name}" for name, _, since, _ in oracle.KNOBS if since))


# Keys other than regularizer knobs added since 5be3e05, with their defaults (hashed only away from them).
NEWER_KEYS = {"trainer.ece_bins": 15,  # issue 27: the calibration error's bins
              **{f"shift.{c}": [] for c in ("gaussian_noise", "gaussian_blur", "contrast", "brightness")}}  # and shift
# issue 27: what a run keeps (predictions.npz), never hashed: any value keeps 5be3e05's hash
NEWER_NOT_HASHED = ("save_predictions",)


def _as_5be3e05(params: dict) -> dict | None:
    """`params` as 5be3e05 recorded them: without the knobs added since, at their defaults (their
    Knobs' `since` keeps them out of the hash there); None when one of them is away from its
    default (a regularizer 5be3e05 did not have, switched on)."""
    known = {f"reg.{name}" for name, *_ in oracle.KNOBS}
    newer = {f"reg.{k.name}": k.default for k in builtin_knobs() if f"reg.{k.name}" not in known}
    newer |= NEWER_KEYS
    if any(params.get(key, default) != default for key, default in newer.items()):
        return None
    return {k: v for k, v in params.items() if k not in newer and k not in NEWER_NOT_HASHED}


def _older(params: dict, dropped: tuple[str, ...] = ADDED) -> dict:
    return {k: v for k, v in params.items() if k not in dropped}


def _variants(parts):
    for dataset, model, reg, optim in itertools.product(("digits", "synthetic_regression"), MODELS, PRESETS, OPTIMS):
        yield _mix(parts, dataset, model, reg, optim)
    for dataset, reg in itertools.product(DATASETS, PRESETS):
        yield _mix(parts, dataset, "mlp", reg, "adam")
    for schedule, model, optim in itertools.product(oracle.SCHEDULES, MODELS, OPTIMS):
        yield _mix(parts, "digits", model, "l2", optim, **{"optim.schedule": schedule})
        yield _mix(parts, "digits", model, "l2", optim, **{"optim.schedule": schedule, "optim.min_lr": 1e-5,
                                                           "optim.gamma": 0.5, "optim.plateau_patience": 2})
    # keys away from their defaults, one at a time, on several models and optimizers
    changes = {"optim.tol": 1e-3, "optim.max_iter": 7, "optim.log_every": 3, "model.groups": 3, "model.depth": 32,
               "model.width_mult": 2, "model._target_": "mynet.make", "model.kwargs.hidden": 64,
               "dataset.path": "data.csv", "dataset.target": "y", "dataset.task": "regression",
               "dataset.drop": ["id"], "dataset.index_col": 1, "dataset.image_size": 32, "save_model": True,
               "overwrite": True, "trainer.checkpoint_seconds": 0.0, "search.seeds": 3, "save_predictions": False, "trainer.num_threads": 2,
               "reg.extra.maxnorm._target_": "maxnorm.MaxNorm", "reg.extra.maxnorm.c": 2.0,
               **{f"reg.{name}": (not default if isinstance(default, bool) else default + 0.25)
                  for name, default, _, _ in oracle.KNOBS}}
    for (name, value), model, optim in itertools.product(changes.items(), MODELS, OPTIMS):
        yield _mix(parts, "table" if name.startswith("dataset.") else "digits", model, "none", optim, **{name: value})
    for params in list(_mix(parts, "digits", m, r, "sgd") for m in MODELS for r in PRESETS):
        yield _older(params)  # the first release's keys only
        yield _older(params, ADDED[:10])  # before schedules, with the rest
        yield {k: v for k, v in params.items() if not k.startswith("dataset.") or k == "dataset.name"}


def test_config_hash_is_the_one_of_5be3e05_for_every_config(parts):
    """Every run folder written by 5be3e05 keeps its identity: the hash of the keys the table
    declares hashed is the hash of 5be3e05's seven exclusion rules, for every mix of presets,
    models, datasets, optimizers and schedules, keys away from their defaults, and params
    dicts as older versions recorded them."""
    checked = 0
    for params in _variants(parts):
        if _as_5be3e05(params) is None:  # a regularizer added since, switched on: no folder of 5be3e05 ran it
            continue
        assert config_hash(params) == oracle.config_hash(_as_5be3e05(params)), params
        assert config_hash(params, "ab12") == oracle.config_hash(_as_5be3e05(params), "ab12")
        checked += 1
    assert checked > 2000


# config_hash as 5be3e05 computed it for these configs (with REGBENCH_DATA=/data: dataset.root is hashed).
WRITTEN_BY_5BE3E05 = [
    ((), "775a8a565f665bca"),
    (("reg=l1", "reg.alpha=1e-3"), "0bd733409833000c"),
    (("model=linear", "reg=l1", "optim=fista"), "a0f1ecee49866382"),
    (("model=resmlp", "reg=swa", "optim.schedule=cosine"), "d03e3ba1453f809a"),
    (("dataset=table", "dataset.path=x.csv", "dataset.target=y"), "44f444b003951a1f"),
    (("reg=[sam,cutout]", "optim=sgd", "optim.momentum=0.9", "save_model=true"), "bd39328924b4ef4c"),
]


@pytest.mark.parametrize("overrides, digest", WRITTEN_BY_5BE3E05)
def test_a_folder_written_by_5be3e05_is_recognised_as_this_configuration(tmp_path, monkeypatch, overrides, digest):
    """A finished result.json as 5be3e05 wrote it (its config_hash recorded then) is this very
    configuration's: a resumed sweep skips it."""
    from regbench.jobs import finished_result

    monkeypatch.setenv("REGBENCH_DATA", "/data")
    cfg = make_cfg(*overrides)
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    record = {"status": "ok", "task": "classification", "dataset": params["dataset.name"], "model": params["model.name"],
              "reg": "none", "seed": params["seed"], "params": params, "config_hash": digest, "metrics": {}, "gap": {}}
    (tmp_path / "result.json").write_text(json.dumps(record))  # the keys every result.json has (regbench.record.REQUIRED)
    if params["dataset.name"] != "table":  # a user's table is hashed with its file's fingerprint: none here
        assert finished_result(cfg, tmp_path) is not None
    assert config_hash(params) == digest


def test_the_frozen_knobs_of_the_oracle_are_the_modules_knobs():
    """The oracle's knob data is what the regularizer modules declare (so the comparison above
    covers every knob of 5be3e05), and a knob added since is declared `since` a version: at its
    default it stays out of config_hash, so every folder written before it keeps its identity."""
    known = {name for name, *_ in oracle.KNOBS}
    assert [(k.name, k.default, k.since, k.member) for k in builtin_knobs() if k.name in known] == oracle.KNOBS
    assert all(k.since for k in builtin_knobs() if k.name not in known)


def test_the_views_of_the_table_are_those_of_5be3e05():
    assert keys.SCHEDULES == oracle.SCHEDULES
    assert keys.SCHEDULE_KNOBS == oracle.SCHEDULE_KNOBS
    assert keys.ALL_SCHEDULE_KNOBS == oracle.ALL_SCHEDULE_KNOBS
    assert keys.MODEL_KNOBS_SINCE == oracle.MODEL_KNOBS_SINCE
    assert keys.NOT_PARAMS == oracle.NOT_PARAMS
    assert set(keys.NOT_HASHED) == set(oracle.NOT_HASHED) | set(NEWER_NOT_HASHED)
    assert keys.SOLVER_ONLY == oracle.SOLVER_ONLY
    assert keys.OWN_DATA_DEFAULTS == oracle.OWN_DATA_DEFAULTS


def test_the_stacking_key_and_the_reports_only_for_are_those_of_5be3e05():
    """MEMBER_KEYS now holds the built-in member knobs too (5be3e05 added them in grouping)."""
    # issue 27: the corruptions of `shift` are evaluated per member at the end, never change how a stack trains
    shift = {k for k in NEWER_KEYS if k.startswith("shift.")}
    assert set(keys.MEMBER_KEYS) == set(oracle.MEMBER_KEYS) | {f"reg.{k.name}" for k in builtin_knobs() if k.member} | shift
    assert set(keys.NOT_COMPUTED) == set(oracle.NOT_COMPUTED) | set(NEWER_NOT_HASHED)
    # Since 5be3e05 the elastic net's shape knobs declare that they apply only at alpha > 0
    # (issue 23): ONLY_FOR is read by the report's constants line alone, never by config_hash.
    since = {"reg.l1_ratio": ("reg.alpha", None), "reg.l1_proximal": ("reg.alpha", None),
             "reg.lookahead_alpha": ("reg.lookahead_k", None)}  # issue 26: Lookahead's alpha, while k is on
    since["reg.fgsm_mix"] = ("reg.fgsm", None)  # issue 26: FGSM's mix, while its epsilon is on
    assert keys.ONLY_FOR == oracle.ONLY_FOR | since


def test_the_member_keys_of_a_config_are_those_of_5be3e05():
    from regbench.engine.grouping import member_keys

    cfg = make_cfg("reg=[elasticnet,dropout]")
    shift = {k for k in NEWER_KEYS if k.startswith("shift.")}  # issue 27, as above
    assert member_keys(cfg) == set(oracle.MEMBER_KEYS) | {f"reg.{k.name}" for k in builtin_knobs() if k.member} | shift


def _result(params: dict, n: int) -> dict:
    return {"status": "ok", "task": "classification", "dataset": params.get("dataset.name"), "model": "mlp",
            "reg": "none", "seed": n, "params": params, "metrics": {"val_loss": 0.5 + n / 100},
            "gap": {"loss": 0.1}, "finished_at": f"2026-12-0{1 + n % 9}T00:00:00+00:00"}


def _folders(tmp_path: Path, runs: list[dict]) -> list[dict]:
    for n, params in enumerate(runs):
        folder = tmp_path / f"{n:03d}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(_result(params, n)))
    return [_result(params, n) | {"folder": str(tmp_path / f"{n:03d}")} for n, params in enumerate(runs)]


def _oracle_frame(results: list[dict]) -> pd.DataFrame:
    from regbench.reporting.collect import flatten_result

    rows = []
    for result in results:
        folder = result.pop("folder")
        rows.append(flatten_result(result) | {"folder": folder})
    return oracle.backfilled(pd.DataFrame(rows))


@pytest.mark.parametrize("mix", ["old and new", "old only", "new only", "before schedules", "not regbench"])
def test_collect_back_fills_older_runs_as_5be3e05_did(tmp_path, parts, mix):
    """The back-fill derived from the table (regbench.config.keys.backfill, through collect) gives
    the runs table 5be3e05's three back-fills gave: the same columns, values and dtypes."""
    new = [_mix(parts, "digits", "resmlp", "swa", "adam"), _mix(parts, "digits", "mlp", "l2", "sgd"),
           _mix(parts, "table", "mlp", "none", "adam", **{"dataset.drop": ["id"]}),
           _mix(parts, "digits", "mlp", "l2", "adam", **{"optim.schedule": "cosine", "search.seeds": 2})]
    old = [_older(p) for p in new]
    runs = {"old and new": old + new + old, "old only": old, "new only": new,
            "before schedules": [_older(p, ADDED[:10]) for p in new] + new,
            "not regbench": [{"lr": 0.1}, _older(new[0])]}[mix]
    from regbench.reporting.collect import collect

    expected = _oracle_frame(_folders(tmp_path, runs)).sort_values("folder", ignore_index=True)
    got = collect([tmp_path]).runs.sort_values("folder", ignore_index=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert list(got.columns) == list(expected.columns)


def test_backfill_gives_an_older_run_the_defaults_it_ran_with(parts):
    new = _mix(parts, "digits", "resmlp", "none", "adam")
    old = _older(new)
    filled = keys.backfill(old)
    assert filled["optim.schedule"] == "constant" and filled["optim.min_lr"] == 0.0
    assert filled["model.groups"] == 2 and filled["search.seeds"] == 1 and filled["reg.swa"] == 0.0
    assert filled["dataset.task"] == "auto" and filled["dataset.drop"] == []
    assert "dataset.path" not in filled and "model._target_" not in filled  # null defaults: missing reads as null
    assert "optim.tol" not in filled  # not back-filled as of 5be3e05 (the key has no `since`)
    assert {k: v for k, v in filled.items() if k in old} == old
    mlp = _older(_mix(parts, "digits", "mlp", "l2", "sgd"))  # resmlp came with its knobs: no run lacks them
    assert config_hash(keys.backfill(mlp)) == config_hash(mlp)  # a back-filled run keeps its identity
    assert keys.backfill({"lr": 0.1}) == {"lr": 0.1}  # not a regbench run
    assert keys.backfill(new) == new


# --- the declared ranges, checked directly: no Hydra composition ---

SEED_MAX = 2**32 - 1
# key -> (values in range, values out of range); every key with a declared range is here.
RANGES = {
    "dataset.name": (["digits", "table"], ["lasso", ""]),
    "dataset.train_size": ([None, 0.5, 1, 1.0, 300, 300.0], [0, -1, 300.5]),
    "dataset.val_fraction": ([0.01, 0.5, 0.99], [0.0, 1.0, -0.1]),
    "dataset.test_fraction": ([0.01, 0.99], [0.0, 1.0]),
    "dataset.label_noise": ([0.0, 0.5, 1.0], [-0.1, 1.01]),
    "dataset.split_seed": ([0, SEED_MAX], [-1, SEED_MAX + 1]),
    "dataset.n_samples": ([10, 1000], [9, 0]),
    "dataset.n_features": ([1, 100], [0]),
    "dataset.noise": ([0.0, 10.0], [-0.1]),
    "dataset.generator_seed": ([0, SEED_MAX], [-1, SEED_MAX + 1]),
    "dataset.task": (["auto", "classification", "regression"], ["ranking"]),
    "dataset.index_col": ([None, 1, 3], [0, -1]),
    "dataset.image_size": ([None, 1, 32], [0, -3]),
    "model.name": (list(schema.MODELS), ["transformer"]),
    "model.activation": (list(schema.ACTIVATIONS), ["swish"]),
    "model.groups": ([1, 4], [0]),
    "model.blocks": ([1], [0]),
    "model.width": ([1], [0]),
    "model.depth": ([8, 14, 20, 110], [6, 21, 2, 0]),
    "model.width_mult": ([1, 2], [0]),
    "optim.name": (list(schema.OPTIMIZERS), ["lbfgs"]),
    "optim.lr": ([1e-9, 1.0], [0.0, -1.0]),
    "optim.momentum": ([0.0, 0.99], [1.0, -0.1]),
    "optim.tol": ([1e-12], [0.0]),
    "optim.max_iter": ([1], [0]),
    "optim.log_every": ([1], [0]),
    "optim.schedule": (list(schema.SCHEDULES), ["linear"]),
    "optim.min_lr": ([0.0, 1e-3], [-1e-3]),
    "optim.warmup_epochs": ([1], [0]),
    "optim.step_size": ([1], [0]),
    "optim.gamma": ([1.0, 0.1], [0.0, 1.5]),
    "optim.restart_period": ([1], [0]),
    "optim.restart_mult": ([1], [0]),
    "optim.plateau_patience": ([0], [-1]),
    "optim.plateau_factor": ([0.5], [0.0, 1.0]),
    "trainer.max_epochs": ([1], [0]),
    "trainer.batch_size": ([1], [0]),
    "trainer.eval_batch_size": ([1], [0]),
    "trainer.ece_bins": ([1, 15], [0, -1]),
    "trainer.patience": ([None, 1], [0]),
    "trainer.min_delta": ([0.0], [-1e-3]),
    "trainer.num_threads": (["auto", 1, 8], [0, "many", True]),
    "trainer.checkpoint_seconds": ([0.0, 30.0], [-1.0]),
    "shift.gaussian_noise": ([[], [0.0, 0.5, 3.0]], [[-0.1], [0.5, 0.5]]),
    "shift.gaussian_blur": ([[], [0.0, 1.0, 10.0]], [[-1.0], [1.0, 1.0]]),
    "shift.contrast": ([[], [0.0, 0.5, 1.0]], [[1.5], [-0.5], [0.2, 0.2]]),
    "shift.brightness": ([[], [0.0, 1.0]], [[1.01], [0.3, 0.3]]),
    "logger.name": (["none", "tensorboard"], ["wandb"]),
    "logger.histogram_every": ([0, 10], [-1]),
    "seed": ([0, SEED_MAX], [-1, SEED_MAX + 1]),
    "device": (["auto", "cpu", "cuda", "cuda:1"], ["gpu", "cuda:", "cuda:x"]),
    "search.seeds": ([1, 5], [0]),
    "save_predictions": (["auto", True, False], ["yes", 1, 0, None]),
}


def _ranged() -> list[str]:
    return [n for n, k in keys.KEYS.items() if (k.valid or k.problem_of) and not n.startswith("reg.")]


def test_every_declared_range_is_tested_here():
    assert sorted(_ranged()) == sorted(RANGES)


@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_declared_range_accepts_and_refuses_in_one_line(name):
    good, bad = RANGES[name]
    declared = keys.KEYS[name]
    for value in good:
        assert declared.problem(value) is None, (name, value)
    for value in bad:
        problem = declared.problem(value)
        assert problem and problem.startswith(f"{name} ") and "\n" not in problem, (name, value)
        assert repr(value) in problem or str(value) in problem


@pytest.mark.parametrize("name, value, message", [
    ("optim.momentum", 1.5, "optim.momentum must be in [0, 1) (got 1.5)"),
    ("model.width", 0, "model.width must be >= 1 (got 0)"),
    ("model.depth", 21, "model.depth must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110... (got 21)"),
    ("search.seeds", 0, "search.seeds must be >= 1 (got 0)"),
    ("trainer.patience", 0, "trainer.patience must be >= 1 or null (got 0)"),
    ("trainer.num_threads", "many", "trainer.num_threads must be auto or a positive count (got 'many')"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N (got 'gpu')"),
    ("dataset.name", "lasso", f"dataset.name must be one of {', '.join(schema.DATASETS)} (got 'lasso')"),
    ("dataset.train_size", 300.5, "dataset.train_size above 1 is a count and must be whole (got 300.5)"),
    ("dataset.index_col", 0, "dataset.index_col must be >= 1, the number of leading unnamed fields (got 0)"),
    ("seed", -1, f"seed must be in [0, {SEED_MAX}] (got -1)"),
])
def test_the_messages_are_those_of_before(name, value, message):
    assert keys.KEYS[name].problem(value) == message


def test_a_regularizers_knob_is_checked_by_its_own_declaration():
    for knob in builtin_knobs():
        declared = keys.KEYS[f"reg.{knob.name}"]
        assert (declared.doc, declared.range, declared.default, declared.member) == (knob.doc, knob.range,
                                                                                     knob.default, knob.member)
        assert declared.problem(knob.default) is None


def test_range_problems_reads_a_config_without_hydra():
    """On the schema's own defaults (OmegaConf.structured: no composition) with the required names given."""
    cfg = OmegaConf.structured(schema.Config)
    for node, name in (("dataset", "digits"), ("model", "mlp"), ("optim", "adam"), ("logger", "none")):
        cfg[node].name = name
    assert keys.range_problems(cfg) == []
    cfg.optim.lr = 0.0
    cfg.model.width = 0
    cfg.dataset.n_samples = 3  # declared checked=False: its dataset's check tests it, where it applies
    assert keys.range_problems(cfg) == ["model.width must be >= 1 (got 0)", "optim.lr must be > 0 (got 0.0)"]
    plain = OmegaConf.create(OmegaConf.to_container(cfg))
    del plain["logger"]  # a programmatic config without a logger: its keys are not there to check
    assert keys.range_problems(plain) == ["model.width must be >= 1 (got 0)", "optim.lr must be > 0 (got 0.0)"]


def test_every_schema_field_is_declared_once_with_a_doc():
    assert all(k.doc for k in keys.KEYS.values()), [n for n, k in keys.KEYS.items() if not k.doc]
    assert len(keys.KEYS) == len(set(keys.KEYS))
    # a key added after the first release keeps older runs' hashes: it is never hashed as it is
    assert all(k.hashed != "always" for k in keys.KEYS.values() if k.since)


def test_a_declaration_that_cannot_be_hashed_is_refused():
    with pytest.raises(ValueError, match="applies"):
        Key(doc="x", hashed=WHERE_APPLIES)
    with pytest.raises(ValueError, match="hashed must be one of"):
        Key(doc="x", hashed="sometimes")
    assert key(1, "doc", hashed=NEVER).metadata["regbench"].hashed == NEVER


def test_when_a_knob_applies_only_while_its_regularizer_is_on():
    """The reg entries of ONLY_FOR come from each Knob's only_when_on, owned by its regularizer's first knob."""
    derived = {f"reg.{k.name}": (f"reg.{cls.knobs[0].name}", None) for cls in builtin() for k in cls.knobs
               if k.only_when_on}
    assert derived == {n: v for n, v in keys.ONLY_FOR.items() if n.startswith("reg.")}
    on = When("reg.swa", None)
    assert on.holds(0.75) and on.holds(True) and not on.holds(0) and not on.holds(0.0) and not on.holds(False)
    assert not on.holds(None)


# --- checked once: `refusals` remembers a valid config, the runner checks only what it did not ---


def test_refusals_remembers_a_valid_config_and_nothing_else():
    from regbench.config import checks

    cfg = make_cfg("reg=l2", "seed=11")
    assert not checks.is_checked(cfg, ())
    assert checks.refusals(cfg, (), ["reg=l2", "seed=11"]) == []
    assert checks.is_checked(cfg, ()) and checks.is_checked(make_cfg("reg=l2", "seed=11"), ())  # by its values
    assert not checks.is_checked(cfg, ("/elsewhere",))  # another search path may load other regularizers
    cfg.seed = 12
    assert not checks.is_checked(cfg, ())  # changed since: checked again
    bad = make_cfg("optim.lr=0")
    assert checks.refusals(bad, ()) == ["optim.lr must be > 0 (got 0.0)"] and not checks.is_checked(bad, ())
    conflict = make_cfg("reg=[l1,l2]")
    assert "disagree on reg.l1_ratio" in checks.refusals(conflict, (), ["reg=[l1,l2]"])[0]
    assert not checks.is_checked(conflict, ())


def test_the_runner_checks_a_config_it_is_handed_directly(tmp_path):
    from regbench import UserInputError
    from regbench.engine.runner import run

    with pytest.raises(UserInputError, match=r"optim.lr must be > 0 \(got 0.0\)"):
        run(make_cfg("optim.lr=0"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_declared_key_is_explained_in_the_docs_written_by_hand():
    """A key added to the schema (one declaration) gets its row in the generated table of
    docs/reference/config-keys.md by itself; this asks for its explanation in the pages written by
    hand too: `group.key` written out on some page, or a `| `key` |` row of its group's table on
    docs/reference/configuration.md (a group's `name` is its choice, `group=option`)."""
    generated = REPO / "docs" / "reference" / "config-keys.md"
    pages = "\n".join(p.read_text() for p in sorted((REPO / "docs").rglob("*.md")) if p != generated)
    readme = (REPO / "docs" / "reference" / "configuration.md").read_text()

    def documented(name: str) -> bool:
        group, _, short = name.rpartition(".")
        if f"`{name}`" in pages or f"{name}=" in pages:
            return True
        if short == "name" and f"{group}=" in pages:  # the group's option: dataset=digits, logger=tensorboard
            return True
        section = readme.find(f"## `{group.split('.')[0]}`") if group else readme.find("## Top level")
        end = readme.find("\n## ", section + 1)
        return section >= 0 and f"| `{short}` |" in readme[section:end]

    assert [name for name in keys.KEYS if not documented(name)] == []
