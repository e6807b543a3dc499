"""The contract every regularizer keeps, checked on every registered one (issue 22, item 2).

A regularizer gets these tests by being registered, as Composer's algorithms get theirs from
tests/algorithms/algorithm_settings.py, but here nothing is listed by hand: the cases are derived
from the presets. A case is a preset (a YAML file of `conf/reg/`, or of a user's config folder
such as examples/user_regularizer/reg/) and a regularizer class whose knobs it switches on
(elasticnet's l1, l2 and elasticnet presets are three cases of one class, mixing's mixup and
cutmix two). Its setting is the first tiny model and dataset of SETTINGS that it can act on, as
its own `config_problem` and `problem` hooks (and the model builder) decide. On every case:

- `reg=<preset>` composes to the config the checks use, and the regularizer acts in it;
- a stack of members (the preset; another seed and learning rate; its knobs at other values; the
  regularizer off; those of them that share the preset's stack) ends where each member's lone run
  ends: bit for bit, or within the tolerance docs/how-to/launchers.md states where tests/test_stacked.py says why not
  (grouped convolutions, SAM); and it reads back from the device once per epoch;
- an interrupted run, lone or stacked, resumes to the very numbers of an uninterrupted one;
- a lone run's training reads back from the device once per epoch (tests/helpers/syncs.py);
- evaluation is untouched: the reported metrics are those of the reported weights on clean inputs
  in eval mode, recomputed here in plain PyTorch, and the last epoch's row agrees with them;
- what it cannot act on (another tiny setting, or beside another built-in preset) is refused in
  one line before any work;
- a knob that switches it off changes nothing: the run equals reg=none's.

Every run is tiny (300 digits, 6 epochs of a small network, one thread for bit-exactness) and
in-process: a case's stack test, its heaviest, takes about a second, the whole file about a
minute on one core (none is marked slow).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from rich.console import Console
from torch.nn import functional as F

from regbench import UserInputError
from regbench.config.checks import check
from regbench.data.datasets import load
from regbench.engine import grouping, runner, steps, sweep as stacking
from regbench.engine.checkpoint import CHECKPOINT_FILE
from regbench.engine.runner import refusal, run
from regbench.models import Ensemble, build_model
from regbench.regularizers import builtin, label, load_user, regularizers  # the registry: change here if it moves
from tests.helpers.compare import SAME, bit_for_bit, ends_alike, within_tolerance
from tests.helpers.configs import REPO, make_cfg
from tests.helpers.interrupt import ctrl_c_after_row, interrupt_stack_after
from tests.helpers.rundirs import metrics_floats, metrics_rows
from tests.helpers.syncs import HostSyncs, finish_reads, fit_under_host_syncs

QUIET = Console(quiet=True)
EPOCHS = 6
# trainer.checkpoint_seconds=0: last.pt after every epoch (where an interrupted run resumes from);
# dataset.split_seed=0: members of another seed share the split, so they share a stack.
COMMON = ("dataset.train_size=300", "model.hidden_sizes=[32]", f"trainer.max_epochs={EPOCHS}", "trainer.patience=null",
          "trainer.num_threads=1", "trainer.checkpoint_seconds=0", "dataset.split_seed=0", "save_model=true")
# Tiny settings a regularizer may act on, tried in this order: a case runs on the first one its
# hooks accept (the residual models for the branch regularizers).
SETTINGS = {
    "mlp": (),
    "resmlp": ("model=resmlp", "model.width=16", "model.groups=1", "model.blocks=2"),
    "cnn": ("model=cnn", "model.channels=[4]", "model.hidden_sizes=[8]"),
    # snapshot ensembles: cycles of 2 epochs, a snapshot after epochs 2, 4 and 6
    "restarts": ("optim.schedule=cosine_restarts", "optim.restart_period=2", "optim.restart_mult=1"),
}
# Settings some regularizers cannot act on: where the refusal check looks besides SETTINGS.
ELSEWHERE = {
    "linear": ("model=linear",),
    "table": ("dataset=breast_cancer",),
    "regression": ("dataset=diabetes", "dataset.train_size=200"),
}
# Stacks that agree with their lone runs within the tolerance docs/how-to/launchers.md states, not bit for bit, and why
# (tests/test_stacked.py's test_conv_nets_stack... and tests/regularizers/test_sam.py's
# test_sam_stacks_within_tolerance).
TOLERANT_MODELS = dict.fromkeys(("cnn", "resnet"), "a grouped convolution sums in another order than a lone one")
TOLERANT_REGULARIZERS = {"sam": "its ascent step carries the last bits of a batched gradient into the weights"}

EXAMPLE = REPO / "examples" / "user_regularizer"
# Where presets are registered: the built-in ones, and a user's config folder (given with
# `--config-dir`; its modules are found there too).
PRESET_FOLDERS = ((REPO / "conf", ()), (EXAMPLE, (str(EXAMPLE),)))


@dataclass(frozen=True)
class Case:
    """One preset and the regularizer class whose knobs it switches on."""

    preset: str
    cls: type
    prefix: str  # where its knobs live in the config: `reg.` or `reg.extra.<entry>.`
    values: dict[str, Any]  # the knob values the preset sets away from their defaults, knob -> value
    reg: dict[str, Any]  # the whole preset: what `reg=<preset>` merges into the reg node
    folder: Path = REPO / "conf"  # the config folder that holds reg/<preset>.yaml
    search: tuple[str, ...] = ()  # where its module lies (a user's: the folder of `--config-dir`)

    @property
    def id(self) -> str:
        return f"{self.cls.name}:{self.preset}"

    def cfg(self, setting: str, *more: tuple[str, Any], preset: bool = True):
        """The config of this case on `setting` (without its preset: reg=none's), with `more`
        (key, value) pairs set as overrides would set them. The setting is composed once; the
        preset is merged into its reg node as Hydra merges `reg=<preset>` (check_preset checks
        that the two agree): composing each case's configs anew would cost seconds per case."""
        cfg = make_cfg(*COMMON, *SETTINGS.get(setting, ELSEWHERE.get(setting, ())))
        return with_values(with_reg(cfg, self.reg) if preset else cfg, dict(more))

    def knob(self, name: str, value: Any) -> tuple[str, Any]:
        """The override that sets one of its knobs."""
        return f"{self.prefix}{name}", value

    def part(self, cfg) -> str | None:
        """The class's part of the run's label in `cfg`: None where it does not act."""
        for cls, values in regularizers(cfg.reg, self.search):
            if cls is self.cls:
                return cls.label(values(cfg.reg), cfg.model)
        return None

    def on(self, cfg) -> bool:
        return self.part(cfg) is not None


def with_reg(cfg, preset: dict[str, Any]):
    """`cfg` with a preset merged into its reg node (a user's `extra` entries added, as `+` does)."""
    with open_dict(cfg):
        cfg.reg = OmegaConf.merge(cfg.reg, preset)
    return cfg


def with_values(cfg, values: dict[str, Any]):
    """`cfg` with each dotted key set to its value (type-checked by the schema, as an override)."""
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def cases_in(folder: Path, search: tuple[str, ...] = ()) -> list[Case]:
    """The cases of the presets in `folder`/reg: for each preset, each built-in class with a knob
    it sets away from its default, and each user class its `extra` entries name."""
    out = []
    for path in sorted((folder / "reg").glob("*.yaml")):
        preset = OmegaConf.to_container(OmegaConf.load(path)) or {}
        for cls in builtin():
            values = {k.name: preset[k.name] for k in cls.knobs if k.name in preset and preset[k.name] != k.default}
            if values:
                out.append(Case(path.stem, cls, "reg.", values, preset, folder, search))
        for name, entry in (preset.get("extra") or {}).items():
            cls = load_user(name, entry["_target_"], search)
            values = {k: v for k, v in entry.items() if k != "_target_"}
            out.append(Case(path.stem, cls, f"reg.extra.{name}.", values, preset, folder, search))
    return out


CASES = [case for folder, search in PRESET_FOLDERS for case in cases_in(folder, search)]
BY_ID = {case.id: case for case in CASES}
each_case = pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])


# ------------------------------------------------------------------ deriving a case's setting

@lru_cache(maxsize=None)
def _data(dataset_yaml: str):
    return load(OmegaConf.create(dataset_yaml), torch.device("cpu"))


def refused(cfg, search: tuple[str, ...]) -> str | None:
    """Why `cfg` cannot run, as a run finds it before any training (the config's checks, the
    regularizers' hooks, the model's construction), or None."""
    problems = check(cfg, search)
    if problems:
        return "; ".join(problems)
    return refusal(cfg, _data(OmegaConf.to_yaml(cfg.dataset, resolve=True)), search)


_settings: dict[str, str] = {}


def setting_of(case: Case) -> str:
    """The first of SETTINGS the case's regularizer acts on (it is on there, and nothing refuses)."""
    if case.id not in _settings:
        tried = {}
        for name in SETTINGS:
            cfg = case.cfg(name)
            tried[name] = refused(cfg, case.search) or ("" if case.on(cfg) else "the preset leaves it off")
            if not tried[name]:
                _settings[case.id] = name
                break
        else:
            pytest.fail(f"{case.id}: no tiny setting it acts on (add one to SETTINGS): {tried}")
    return _settings[case.id]


def members(case: Case) -> list[tuple[tuple[str, Any], ...]]:
    """The overrides ((key, value) pairs) of a stack's members: the preset; another seed and learning rate; each of its
    float knobs halved (where still in range and on); all its knobs off. Those sharing the
    preset's stack (a regularizer may declare that its on/off must be shared: `stack_on_off`)."""
    setting = setting_of(case)
    halved = {k: v / 2 for k, v in case.values.items() if type(v) is float}
    knobs = {k.name: k for k in case.cls.knobs}
    halved = tuple(case.knob(k, v) for k, v in halved.items() if knobs[k].valid is None or knobs[k].valid(v))
    off = tuple(case.knob(k, knobs[k].default) for k in case.values)
    out = [(), (("seed", 1), ("optim.lr", 3e-3))]
    if halved and case.on(case.cfg(setting, *halved)):
        out.append(halved)
    out.append(off)
    key = grouping.stack_key(case.cfg(setting), case.search)
    return [m for m in out if grouping.stack_key(case.cfg(setting, *m), case.search) == key]


# ------------------------------------------------------------------ the checks, one function each

def check_stack(case: Case, tmp_path: Path, monkeypatch) -> None:
    """Members of a stack end where their lone runs end; the stack reads back once per epoch."""
    setting = setting_of(case)
    base = case.cfg(setting)
    if getattr(case.cls, "stackable", True) is not True:
        assert grouping.stack_key(base, case.search) is None
        pytest.skip(f"{case.id} declares it does not stack: {case.cls.stackable}")
    variants = members(case)
    assert len(variants) >= 2, variants
    cfgs = [case.cfg(setting, *v) for v in variants]
    alone = [run(c, tmp_path / f"alone{i}", QUIET, case.search) for i, c in enumerate(cfgs)]
    assert all(a["status"] == "ok" for a in alone), [a.get("error") for a in alone]
    with HostSyncs() as probe:
        stacked = stacking.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], QUIET, search=case.search)
    if base.model.name in TOLERANT_MODELS or case.cls.name in TOLERANT_REGULARIZERS:
        within_tolerance(alone, stacked, variants)
    else:
        bit_for_bit(tmp_path, alone, stacked, variants)
    loop = ("train", "_train", "fit")  # train holds the folders' locks, _train runs the engine's loop
    assert [call for call in probe.calls if call[1] == loop] == [("tolist", loop)] * EPOCHS
    at_finish = [where for _, where in probe.calls if where != loop]
    assert all(where[:5] == (*loop, "finished", "_finish") for where in at_finish), at_finish
    finish_reads(at_finish, probe.calls, len(cfgs))  # each member's sparsity, final metrics, predictions


def check_resume(case: Case, tmp_path: Path, monkeypatch) -> None:
    """Interrupted after an epoch's row (before its checkpoint), a lone run resumes from the epoch
    before and ends as the run never interrupted; a stack interrupted at an epoch's start too."""
    setting = setting_of(case)
    cfg = case.cfg(setting)
    clean = run(cfg, tmp_path / "clean", QUIET, case.search)
    assert clean["status"] == "ok", clean.get("error")
    stop = EPOCHS - 1
    let_run = ctrl_c_after_row(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", QUIET, case.search)
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file() and not (tmp_path / "cut" / "result.json").exists()
    let_run()
    resumed = run(cfg, tmp_path / "cut", QUIET, case.search)
    assert resumed["resumed_from_epoch"] == stop - 1
    ends_alike(resumed, tmp_path / "cut", clean, tmp_path / "clean")

    if getattr(case.cls, "stackable", True) is not True:
        return
    variants = members(case)
    cfgs = [case.cfg(setting, *v) for v in variants]
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], QUIET, search=case.search)
    jobs = [(c, tmp_path / f"stack_cut{i}") for i, c in enumerate(cfgs)]
    real = steps.train_epoch
    interrupt_stack_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, QUIET, search=case.search)
    monkeypatch.setattr(steps, "train_epoch", real)
    again = stacking.train(jobs, QUIET, search=case.search)
    assert [a["resumed_from_epoch"] for a in again] == [3] * len(jobs)
    for i, (w, a) in enumerate(zip(whole, again)):
        assert {k: a[k] for k in SAME} == {k: w[k] for k in SAME}, variants[i]
        assert metrics_rows(tmp_path / f"stack_cut{i}") == metrics_rows(tmp_path / f"whole{i}"), variants[i]


def check_host_syncs(case: Case, tmp_path: Path, monkeypatch) -> None:
    """A lone run's training reads its epoch's numbers back in one call, and nothing else."""
    stack, probe = fit_under_host_syncs(case.cfg(setting_of(case)), tmp_path, case.search)
    assert len(stack.members[0].state.history) == EPOCHS
    assert probe.calls == [("tolist", ("fit",))] * EPOCHS


def plain_metrics(model: torch.nn.Module, data: Any, split: str) -> tuple[float, float]:
    """The loss and accuracy (or R^2) of `model` on a split, by plain PyTorch: eval mode, clean
    inputs, true labels, no hook of regbench's."""
    model.eval()
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    with torch.no_grad():
        out = model(data.prepare(x.clone())).double()
    if data.task == "classification":
        return F.cross_entropy(out, y).item(), (out.argmax(1) == y).double().mean().item()
    mse = F.mse_loss(out, y.double()).item()
    return mse, 1.0 - mse * len(y) / (y.double() - y.double().mean()).pow(2).sum().item()


def check_evaluation(case: Case, tmp_path: Path, monkeypatch) -> None:
    """The reported metrics are the reported weights' (model.pt) evaluated on clean inputs in eval
    mode, recomputed here; the epochs' rows are evaluated alike: the last one, whose weights are
    the reported ones (trainer.patience=null), has the same train and validation numbers."""
    cfg = case.cfg(setting_of(case))
    result = run(cfg, tmp_path / "run", QUIET, case.search)
    assert result["status"] == "ok" and result["epochs_run"] == EPOCHS, result.get("error")
    data = load(cfg.dataset, torch.device("cpu"))
    classes = [cls for cls, _ in regularizers(cfg.reg, case.search)]
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task, classes, case.search)
    # the network, or an ensemble of copies of it where a regularizer reports one (snapshot ensembles)
    model = Ensemble.like(model, torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    m = "acc" if data.task == "classification" else "r2"
    for split in ("train", "val", "test"):
        loss, score = plain_metrics(model, data, split)
        assert result["metrics"][f"{split}_loss"] == pytest.approx(loss, rel=1e-6, abs=1e-7), split
        assert result["metrics"][f"{split}_{m}"] == pytest.approx(score, rel=1e-6, abs=1e-7), split
    last = metrics_floats(tmp_path / "run")[-1]
    for key in ("train_loss", f"train_{m}", "val_loss", f"val_{m}"):
        assert last[key] == result["metrics"][key], key


def refusals(case: Case) -> list[tuple[str, Any, str]]:
    """Where the case's regularizer is refused and the same config without it is not: each tiny
    setting, and the case's setting beside each built-in preset. (where, config, the line)."""
    found = []
    for name in (*SETTINGS, *ELSEWHERE):
        cfg = case.cfg(name)
        line = refused(cfg, case.search)
        if line and refused(case.cfg(name, preset=False), ()) is None:
            found.append((name, cfg, line))
    setting = setting_of(case)
    for other, values in builtin_presets().items():  # known from the config alone: its checks
        if other == case.preset or not fine_alone(setting, other):
            continue
        beside = with_reg(case.cfg(setting), values)
        line = "; ".join(check(beside, case.search))
        if line:
            found.append((f"beside reg={other}", beside, line))
    return found


@lru_cache(maxsize=None)
def fine_alone(setting: str, preset: str) -> bool:
    """Whether a built-in preset alone passes the config's checks on a setting."""
    return not check(with_reg(make_cfg(*COMMON, *SETTINGS[setting]), builtin_presets()[preset]), ())


@lru_cache(maxsize=None)
def builtin_presets() -> dict[str, dict[str, Any]]:
    paths = sorted((REPO / "conf" / "reg").glob("*.yaml"))
    return {p.stem: OmegaConf.to_container(OmegaConf.load(p)) or {} for p in paths}


def check_refusals(case: Case, tmp_path: Path, monkeypatch) -> None:
    """Each refusal is one line, raised by the run before any training (and, when the config
    alone tells, before any data is read), leaving no folder behind."""
    found = refusals(case)
    if hasattr(case.cls, "config_problem") or hasattr(case.cls, "problem"):
        assert found, f"{case.id} has refusal hooks, but nothing here makes it refuse: add a setting to ELSEWHERE"
    work: list[str] = []
    real_load, real_epoch = runner.load, steps.train_epoch
    monkeypatch.setattr(runner, "load", lambda *a, **k: work.append("load") or real_load(*a, **k))
    monkeypatch.setattr(steps, "train_epoch", lambda *a, **k: work.append("train") or real_epoch(*a, **k))
    for i, (where, cfg, line) in enumerate(found):
        assert line and "\n" not in line, (where, line)
        work.clear()
        with pytest.raises(UserInputError) as e:
            run(cfg, tmp_path / str(i), QUIET, case.search)
        assert str(e.value) == line, where
        assert "train" not in work and not (tmp_path / str(i)).exists(), where
        if check(cfg, case.search):  # known from the config alone
            assert work == [], where


def check_off(case: Case, tmp_path: Path, monkeypatch) -> None:
    """Each knob of the preset that alone switches the regularizer off (its default) leaves the run
    as reg=none's, whatever the preset's other knobs say."""
    setting = setting_of(case)
    knobs = {k.name: k for k in case.cls.knobs}
    offs = [case.knob(k, knobs[k].default) for k in case.values]
    offs = [off for off in offs if not case.on(case.cfg(setting, off))]
    assert offs, f"{case.id}: no knob of its preset switches it off alone"
    base = run(case.cfg(setting, preset=False), tmp_path / "none", QUIET)
    for i, off in enumerate(offs):
        other = run(case.cfg(setting, off), tmp_path / f"off{i}", QUIET, case.search)
        assert other["reg"] == "none" and other["weights"] == base["weights"] == "trained", off
        same = ("metrics", "best_epoch", "sparsity")
        assert {k: other[k] for k in same} == {k: base[k] for k in same}, off
        assert metrics_rows(tmp_path / f"off{i}") == metrics_rows(tmp_path / "none"), off


def check_preset(case: Case, tmp_path: Path, monkeypatch) -> None:
    """`reg=<preset>` composes (from its config folder) the config the other checks use, and the
    regularizer acts there: its part is in the run's label."""
    setting = setting_of(case)
    cfg = case.cfg(setting)
    folder = () if case.folder == REPO / "conf" else (f"hydra.searchpath=[file://{case.folder}]",)
    composed = make_cfg(*COMMON, *SETTINGS[setting], *folder, f"reg={case.preset}")
    assert OmegaConf.to_container(composed, resolve=True) == OmegaConf.to_container(cfg, resolve=True)
    assert case.part(cfg) in label(cfg.reg, cfg.model, case.search).split("+")


# Each check takes (case, tmp_path, monkeypatch).
CHECKS = (check_preset, check_stack, check_resume, check_host_syncs, check_evaluation, check_refusals, check_off)


# ------------------------------------------------------------------ the tests

def test_every_registered_regularizer_has_a_case():
    """A built-in class without a preset (or whose presets switch nothing on) fails here."""
    covered = {case.cls for case in CASES}
    assert [cls.__name__ for cls in builtin() if cls not in covered] == []
    assert "maxnorm:maxnorm" in BY_ID and BY_ID["maxnorm:maxnorm"].cls not in builtin()  # the example's
    assert {"elasticnet:l1", "elasticnet:l2", "elasticnet:elasticnet", "mixing:mixup", "mixing:cutmix",
            "sam:sam", "sam:asam"} <= set(BY_ID)  # one case per preset


@each_case
def test_its_preset_composes_and_switches_it_on_in_a_tiny_setting(case, tmp_path, monkeypatch):
    check_preset(case, tmp_path, monkeypatch)


@each_case
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_stack_ends_where_each_members_lone_run_ends(case, tmp_path, monkeypatch):
    check_stack(case, tmp_path, monkeypatch)


@each_case
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_an_interrupted_run_resumes_bit_for_bit(case, tmp_path, monkeypatch):
    check_resume(case, tmp_path, monkeypatch)


@each_case
def test_training_reads_back_from_the_device_once_per_epoch(case, tmp_path, monkeypatch):
    check_host_syncs(case, tmp_path, monkeypatch)


@each_case
def test_evaluation_is_untouched(case, tmp_path, monkeypatch):
    check_evaluation(case, tmp_path, monkeypatch)


@each_case
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_what_it_cannot_act_on_is_refused_in_one_line_before_any_work(case, tmp_path, monkeypatch):
    check_refusals(case, tmp_path, monkeypatch)


@each_case
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_knob_that_switches_it_off_changes_nothing(case, tmp_path, monkeypatch):
    check_off(case, tmp_path, monkeypatch)


BIAS_L2 = '''
"""A user's regularizer, for the contract test: an L2 penalty on the biases (which regbench's
own penalties leave alone)."""

from regbench.regularizers import Knob


class BiasL2:
    name = "bias_l2"
    knobs = (Knob("strength", 0.0, "0.5 * strength * ||b||^2 over the biases; 0 switches it off.", ">= 0",
                  lambda v: v >= 0),)

    @staticmethod
    def label(values, model):
        return "bias_l2" if values["strength"] > 0 else None

    def __init__(self, values, stack):
        self.strength = stack.vector([0.5 * v["strength"] for v in values])

    def penalty(self, stack):
        if self.strength is None:
            return None
        terms = [(self.strength * w.square().flatten(1).sum(1)).sum()
                 for w, penalised in zip(stack.params, stack.penalised) if not penalised]
        return sum(terms) if terms else None
'''


def test_a_new_user_regularizer_gets_the_whole_contract_by_registration_alone(tmp_path, monkeypatch):
    """A config folder holding a module and a preset that names it (all a user writes): it becomes
    a case, and every check above runs on it and passes."""
    folder = tmp_path / "mine"
    (folder / "reg").mkdir(parents=True)
    (folder / "biasl2.py").write_text(BIAS_L2)
    (folder / "reg" / "bias_l2.yaml").write_text("extra:\n  bias_l2:\n    _target_: biasl2.BiasL2\n    strength: 0.5\n")
    try:
        (case,) = cases_in(folder, (str(folder),))
        assert case.id == "bias_l2:bias_l2" and case.cls.__module__ == "biasl2" and case.values == {"strength": 0.5}
        assert setting_of(case) == "mlp"
        for check_ in CHECKS:
            (tmp_path / check_.__name__).mkdir()
            check_(case, tmp_path / check_.__name__, monkeypatch)
    finally:
        sys.modules.pop("biasl2", None)  # the next test's user module of that name is its own
