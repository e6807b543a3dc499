"""Learning-rate schedules (optim.schedule, regbench.engine.schedules): every schedule against
torch.optim.lr_scheduler step for step, the rate a run records, stacks against lone runs,
resuming mid-schedule, and the refusals of bad knobs.

torch's optimizers and schedulers are built here only, as the oracle: regbench's schedules
are plain floats (building a torch scheduler imports torch._dynamo).
"""

from __future__ import annotations

import json
import math
import random
import warnings
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch.optim import lr_scheduler

from regbench.config import checks, keys, schema
from regbench.engine import checkpoint, grouping, sweep as stacking
from regbench.engine.runner import new_result, run
from regbench.engine.schedules import Schedule
from regbench.results import config_hash
from tests.helpers.cli import regbench
from tests.helpers.compare import SAME, SMALL, ends_alike, stacks_bit_for_bit
from tests.helpers.configs import make_cfg
from tests.helpers.interrupt import ctrl_c_after_row, interrupt_stack_after
from tests.helpers.rundirs import metrics_rows
from tests.helpers.syncs import HostSyncs

EPOCHS = 80
DEFAULTS = {f.name: f.default for f in schema.dataclasses.fields(schema.OptimConfig)}


def optim(**knobs) -> SimpleNamespace:
    return SimpleNamespace(**{**DEFAULTS, "name": "adam", "lr": 1e-3, **knobs})


def val_losses(n: int, seed: int = 0) -> list[float]:
    """A val_loss curve that falls, flattens with noise and ties, and rises: every plateau rule
    (improvement by more than 1e-4 relative, bad epochs, cuts, the 1e-8 floor) comes up."""
    rng = random.Random(seed)
    out = []
    for e in range(n):
        base = 1.0 / (1 + e) ** 0.5 if e < 30 else 0.18 + 0.002 * (e - 30)
        out.append(base + 0.02 * rng.random())
        if e % 7 == 3:
            out[-1] = out[-2] if e else out[-1]  # a tie is not an improvement
        if e % 11 == 5:
            out[-1] = out[-2] * (1 - 5e-5) if e else out[-1]  # below 1e-4 relative: not an improvement either
    return out


def torch_rates(o: SimpleNamespace, epochs: int, losses: list[float]) -> list[float]:
    """The rate of each epoch in torch's loop: `for epoch: train (optimizer.step()); scheduler.step()`."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=o.lr)
    if o.schedule == "constant":
        scheduler = None
    elif o.schedule == "cosine":
        scheduler = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=o.min_lr)
    elif o.schedule == "warmup_cosine":
        w = o.warmup_epochs
        scheduler = lr_scheduler.SequentialLR(opt, [
            lr_scheduler.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w),
            lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - w, eta_min=o.min_lr)], milestones=[w])
    elif o.schedule == "step":
        scheduler = lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
    elif o.schedule == "cosine_restarts":
        scheduler = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=o.restart_period, T_mult=o.restart_mult,
                                                             eta_min=o.min_lr)
    else:
        scheduler = lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=o.plateau_factor,
                                                   patience=o.plateau_patience, min_lr=o.min_lr)
    rates = []
    for epoch in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(losses[epoch])
        elif scheduler is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SequentialLR's milestone passes an epoch (deprecated)
                scheduler.step()
    return rates


def our_rates(o: SimpleNamespace, epochs: int, losses: list[float]) -> list[float]:
    schedule, rates = Schedule(o, epochs), []
    for epoch in range(epochs):
        rates.append(schedule.lr)
        schedule.step(losses[epoch])
    return rates


CASES = {
    "constant": dict(schedule="constant"),
    "cosine": dict(schedule="cosine"),
    "cosine to min_lr": dict(schedule="cosine", lr=3e-3, min_lr=1.7e-5),
    "warmup_cosine": dict(schedule="warmup_cosine"),
    "warmup_cosine 1 epoch, min_lr": dict(schedule="warmup_cosine", warmup_epochs=1, min_lr=1e-5, lr=0.05),
    "warmup_cosine 13 epochs": dict(schedule="warmup_cosine", warmup_epochs=13, lr=0.1),
    "step": dict(schedule="step"),
    "step 7, gamma 0.5": dict(schedule="step", step_size=7, gamma=0.5),
    "step every epoch": dict(schedule="step", step_size=1, gamma=0.9),
    "cosine_restarts (Cocktails: 15, x2)": dict(schedule="cosine_restarts"),
    "cosine_restarts 4, x1, min_lr": dict(schedule="cosine_restarts", restart_period=4, restart_mult=1, min_lr=1e-6),
    "cosine_restarts 3, x3": dict(schedule="cosine_restarts", restart_period=3, restart_mult=3, lr=0.01),
    "plateau": dict(schedule="plateau"),
    "plateau patience 0, factor 0.3": dict(schedule="plateau", plateau_patience=0, plateau_factor=0.3),
    "plateau to min_lr": dict(schedule="plateau", plateau_patience=1, plateau_factor=0.5, min_lr=2e-4),
    "plateau below eps": dict(schedule="plateau", plateau_patience=0, lr=1e-6),  # cuts stop at the 1e-8 floor
}


@pytest.mark.parametrize("case", CASES)
def test_every_schedule_equals_torchs_scheduler_step_for_step(case):
    o = optim(**CASES[case])
    losses = val_losses(EPOCHS)
    expected = torch_rates(o, EPOCHS, losses)
    assert our_rates(o, EPOCHS, losses) == expected  # bit for bit, every epoch
    if o.schedule != "constant":
        assert len(set(expected)) >= 3  # the case really moves the rate, twice at least


def test_the_rates_have_their_usual_shapes():
    o = optim(schedule="warmup_cosine", warmup_epochs=4, lr=1.0, min_lr=0.0)
    rates = our_rates(o, 20, [0.0] * 20)
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # lr * e / (W + 1), then cosine from lr
    assert rates[4:] == sorted(rates[4:], reverse=True) and rates[-1] < 0.01
    restarts = our_rates(optim(schedule="cosine_restarts", restart_period=2, restart_mult=2, lr=1.0), 14, [0.0] * 14)
    assert [e for e in range(14) if restarts[e] == 1.0] == [0, 2, 6]  # cycles of 2, 4, 8 epochs
    assert our_rates(optim(schedule="step", step_size=3, gamma=0.5, lr=1.0), 7, [0.0] * 7) == [1, 1, 1, .5, .5, .5, .25]
    schedule = Schedule(o, 20)
    assert schedule.rates(20) == rates and schedule.steps == 0  # a look ahead leaves the schedule where it was
    with pytest.raises(ValueError, match="val_loss"):
        Schedule(optim(schedule="plateau"), 20).rates(3)


@pytest.mark.parametrize("case", ["cosine", "warmup_cosine 13 epochs", "cosine_restarts 3, x3", "plateau", "step"])
def test_a_schedule_restored_from_its_state_goes_on_bit_for_bit(case):
    o, losses = optim(**CASES[case]), val_losses(EPOCHS, seed=1)
    whole = our_rates(o, EPOCHS, losses)
    first = Schedule(o, EPOCHS)
    for loss in losses[:37]:
        first.step(loss)
    state = json.loads(json.dumps(first.state()).replace("Infinity", "1e999"))  # plain numbers survive any store
    second = Schedule(o, EPOCHS)
    second.load(state)
    rates = []
    for loss in losses[37:]:
        rates.append(second.lr)
        second.step(loss)
    assert rates == whole[37:]
    replayed = Schedule(o, EPOCHS)
    replayed.replay(losses[:37])
    assert replayed.state() == first.state()


# ---------------------------------------------------------------- the knobs and their refusals

@pytest.mark.parametrize("overrides, message", [
    (["optim.schedule=linear"], "optim.schedule must be one of constant, cosine, warmup_cosine, step, cosine_restarts, "
                                "plateau (got 'linear')"),
    (["optim.min_lr=-1e-5"], "optim.min_lr must be >= 0 (got -1e-05)"),
    (["optim.schedule=cosine", "optim.min_lr=0.01"], "optim.min_lr must be <= optim.lr=0.001 with "
                                                      "optim.schedule=cosine (got 0.01)"),
    (["optim.warmup_epochs=0"], "optim.warmup_epochs must be >= 1 (got 0)"),
    (["optim.schedule=warmup_cosine", "optim.warmup_epochs=3", "trainer.max_epochs=3"],
     "optim.warmup_epochs must be < trainer.max_epochs=3, which is the cosine's horizon (got 3)"),
    (["optim.step_size=0"], "optim.step_size must be >= 1 (got 0)"),
    (["optim.gamma=0"], "optim.gamma must be in (0, 1] (got 0.0)"),
    (["optim.gamma=1.5"], "optim.gamma must be in (0, 1] (got 1.5)"),
    (["optim.restart_period=0"], "optim.restart_period must be >= 1 (got 0)"),
    (["optim.restart_mult=0"], "optim.restart_mult must be >= 1 (got 0)"),
    (["optim.plateau_patience=-1"], "optim.plateau_patience must be >= 0 (got -1)"),
    (["optim.plateau_factor=1"], "optim.plateau_factor must be in (0, 1) (got 1.0)"),
])
def test_bad_schedule_knobs_are_refused_in_one_line_each(overrides, message):
    assert checks.check(make_cfg(*overrides)) == [message]


def test_valid_schedules_pass_and_knobs_a_schedule_ignores_are_noticed():
    for name in keys.SCHEDULES:
        assert checks.check(make_cfg(f"optim.schedule={name}")) == []
    assert checks.check(make_cfg("optim.min_lr=0.5")) == []  # constant reads no min_lr: only a notice
    (notice,) = checks.notices(make_cfg("optim.min_lr=0.5"))
    assert notice == ("optim.min_lr=0.5 has no effect with optim.schedule=constant (it is read by: cosine, "
                      "warmup_cosine, cosine_restarts, plateau)")
    (notice,) = checks.notices(make_cfg("optim.schedule=plateau", "optim.plateau_patience=9"))
    assert notice.startswith("optim.plateau_patience=9 cuts the rate after 10 epochs without improvement, but early "
                             "stopping (trainer.patience=10)")
    assert checks.notices(make_cfg("optim.schedule=plateau")) == []  # the defaults fit the default early stopping
    assert checks.notices(make_cfg("optim.schedule=step", "optim.step_size=10")) == []


@pytest.mark.slow
def test_a_bad_knob_on_the_command_line_is_one_line_and_exit_code_2(tmp_path):
    out = regbench("run", "optim.schedule=cosine", "optim.min_lr=0.1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "regbench: error: optim.min_lr must be <= optim.lr=0.001 with optim.schedule=cosine (got 0.1)"]
    assert not (tmp_path / "outputs").exists()


def test_the_default_constant_schedule_keeps_the_config_hash_of_before_schedules():
    """A constant-rate run hashes as it did before the schedule knobs existed: its finished
    results and checkpoints stay valid for a rerun. Knobs a schedule does not read are left out
    of the hash; the ones it reads are in it."""
    knobs = ("optim.schedule", *(f"optim.{k}" for k in keys.ALL_SCHEDULE_KNOBS))
    for overrides in ([], ["reg=elasticnet", "optim=sgd"], ["optim.gamma=0.5"]):
        result = new_result(make_cfg(*overrides))
        before = {k: v for k, v in result["params"].items() if k not in knobs}
        assert result["config_hash"] == config_hash(before)
    cosine = new_result(make_cfg("optim.schedule=cosine"))["config_hash"]
    assert cosine != new_result(make_cfg())["config_hash"]
    assert cosine == new_result(make_cfg("optim.schedule=cosine", "optim.step_size=3"))["config_hash"]
    assert cosine != new_result(make_cfg("optim.schedule=cosine", "optim.min_lr=1e-5"))["config_hash"]


def test_schedule_knobs_may_differ_between_members_of_a_stack():
    key = lambda *o: grouping.stack_key(make_cfg(*o))  # noqa: E731
    base = key("reg=l2")
    for o in (["optim.schedule=cosine"], ["optim.schedule=plateau", "optim.plateau_patience=2"],
              ["optim.schedule=step", "optim.step_size=3", "optim.gamma=0.5"], ["optim.min_lr=1e-5"],
              ["optim.schedule=cosine_restarts", "optim.restart_period=2", "optim.restart_mult=1"],
              ["optim.schedule=warmup_cosine", "optim.warmup_epochs=2"]):
        assert key("reg=l2", *o) == base, o


# ---------------------------------------------------------------- real runs

RUN = ["trainer.patience=null", "trainer.max_epochs=12"]


def _lr_column(folder) -> list[float]:
    return pd.read_csv(folder / "metrics.csv")["lr"].tolist()


@pytest.mark.parametrize("knobs", [
    ["optim.schedule=cosine", "optim.min_lr=1e-5"],
    ["optim.schedule=warmup_cosine", "optim.warmup_epochs=3"],
    ["optim.schedule=step", "optim.step_size=4", "optim.gamma=0.5"],
    ["optim.schedule=cosine_restarts", "optim.restart_period=3", "optim.restart_mult=2"],
    ["optim.schedule=plateau", "optim.plateau_patience=0", "optim.plateau_factor=0.5", "optim.lr=0.03"],
], ids=lambda k: k[0].split("=")[1])
def test_the_lr_column_holds_the_rate_each_epoch_used_alone_and_stacked(tmp_path, knobs):
    cfg = make_cfg(*SMALL, *RUN, "reg=l1", "dataset.split_seed=0", *knobs)
    alone = run(cfg, tmp_path / "alone", Console(quiet=True))
    assert alone["status"] == "ok" and alone["epochs_run"] == 12
    rows = pd.read_csv(tmp_path / "alone" / "metrics.csv")
    expected = torch_rates(cfg.optim, 12, rows["val_loss"].tolist())  # plateau: fed the run's own val_loss
    assert rows["lr"].tolist() == expected
    assert len(set(expected)) > 1, "the schedule should move the rate within 12 epochs"
    # the same job in a stack, beside a constant-rate member: the same rates
    other = make_cfg(*SMALL, *RUN, "reg=l2", "dataset.split_seed=0", "seed=1")
    stacking.train([(cfg, tmp_path / "stacked"), (other, tmp_path / "other")], Console(quiet=True))
    assert _lr_column(tmp_path / "stacked") == expected
    assert _lr_column(tmp_path / "other") == [other.optim.lr] * 12


def test_a_default_run_records_the_constant_rate(tiny_cfg, tmp_path):
    result = run(tiny_cfg(), tmp_path)
    assert result["params"]["optim.schedule"] == "constant"
    assert _lr_column(tmp_path) == [1e-3] * result["epochs_run"]


# Each family: its shared overrides and its members, whose schedules differ; every member must
# end bit for bit where its lone run ends (the lr reaches the step, decoupled decay, the L1 prox).
FAMILIES = {
    "adam: schedules, proximal L1, decay": (
        ["dataset.split_seed=0", "trainer.patience=4", "trainer.max_epochs=14"],
        [["reg=l1", "reg.alpha=1e-3", "optim.schedule=cosine"],
         ["reg=l1", "reg.alpha=1e-3", "optim.schedule=plateau", "optim.plateau_patience=0", "optim.lr=0.03"],
         ["reg=weight_decay", "optim.schedule=warmup_cosine", "optim.warmup_epochs=3"],
         ["reg=elasticnet", "optim.schedule=step", "optim.step_size=3", "optim.gamma=0.3"],
         ["reg=dropout", "optim.schedule=cosine_restarts", "optim.restart_period=3", "optim.restart_mult=1"],
         ["reg=l2", "seed=1"]],
    ),
    "sgd with momentum: L1 threshold and decay follow the rate": (
        ["optim=sgd", "trainer.patience=null", "trainer.max_epochs=10"],
        [["reg=l1", "optim.schedule=cosine", "optim.min_lr=1e-4"],
         ["reg=weight_decay", "optim.schedule=plateau", "optim.plateau_patience=0", "optim.plateau_factor=0.5"],
         ["reg=elasticnet", "optim.schedule=cosine_restarts", "optim.restart_period=2", "optim.lr=0.05"]],
    ),
    "adamw, one schedule for all": (
        ["optim=adamw", "reg=weight_decay", "trainer.patience=null", "trainer.max_epochs=10",
         "optim.schedule=warmup_cosine", "optim.warmup_epochs=2"],
        [["reg.weight_decay=0.1"], ["reg.weight_decay=0.01"], ["reg.dropout=0.2"]],  # one lr: the stack's one-rate path
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_stack_of_members_with_their_own_schedules_equals_the_lone_runs(tmp_path, family):
    common, variants = FAMILIES[family]
    alone, stacked = stacks_bit_for_bit(tmp_path, common, variants)
    moving = [len(set(_lr_column(tmp_path / f"alone{i}"))) > 1 for i in range(len(variants))]
    assert sum(moving) >= len(variants) - 1  # the schedules really changed the rates


def test_a_stack_with_schedules_reads_back_from_the_device_once_per_epoch(tmp_path):
    variants = [["optim.schedule=cosine"], ["optim.schedule=plateau", "optim.plateau_patience=0", "reg=l1"],
                ["optim.schedule=step", "optim.step_size=2", "reg=weight_decay"]]
    cfgs = [make_cfg(*SMALL, "trainer.patience=null", "trainer.max_epochs=6", *v) for v in variants]
    with HostSyncs() as probe:
        stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], Console(quiet=True))
    loop = ("train", "_train", "fit")
    assert [call for call in probe.calls if call[1] == loop] == [("tolist", loop)] * 6


# ---------------------------------------------------------------- resuming mid-schedule

RESUMED = ["trainer.max_epochs=14", "trainer.patience=null", "reg=[dropout,l1]", "trainer.checkpoint_seconds=2.5"]


@pytest.mark.parametrize("knobs", [
    ["optim.schedule=plateau", "optim.plateau_patience=0", "optim.plateau_factor=0.5", "optim.lr=0.03"],
    ["optim.schedule=cosine_restarts", "optim.restart_period=3", "optim.restart_mult=2", "optim.min_lr=1e-5"],
    ["optim.schedule=warmup_cosine", "optim.warmup_epochs=4"],
], ids=lambda k: k[0].split("=")[1])
def test_an_interrupted_run_resumes_its_schedule_bit_for_bit(tiny_cfg, tmp_path, monkeypatch, knobs):
    """As tests/test_resume.py interrupts a run: each epoch takes one second on a fake clock,
    last.pt is written after epochs 3, 6 and 9, and Ctrl-C comes after epoch 10's row; the
    rerun starts from epoch 9 and must end where the run never interrupted ends."""
    args = (*RESUMED, *knobs)
    clean = run(tiny_cfg(*args), tmp_path / "clean")
    rates = _lr_column(tmp_path / "clean")
    assert len(set(rates[:9])) > 1 and len(set(rates[9:])) > 1  # the rate moves before and after the resume point
    folder = tmp_path / "interrupted"
    let_run = ctrl_c_after_row(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(*args), folder)
    saved = torch.load(folder / checkpoint.CHECKPOINT_FILE, weights_only=True)["member"]["fit"]
    assert len(saved["history"]) == 9 and saved["schedule"]["steps"] == 9
    let_run()
    resumed = run(tiny_cfg(*args), folder)
    assert resumed["resumed_from_epoch"] == 9
    ends_alike(resumed, folder, clean, tmp_path / "clean")


def test_an_interrupted_stack_resumes_every_members_schedule_bit_for_bit(tmp_path, monkeypatch):
    variants = [["reg=l1", "optim.schedule=plateau", "optim.plateau_patience=0", "optim.plateau_factor=0.5",
                 "optim.lr=0.03"],
                ["reg=l2", "optim.schedule=cosine_restarts", "optim.restart_period=3"],
                ["reg=weight_decay", "optim.schedule=cosine", "optim.lr=3e-3"],
                ["reg=dropout", "optim.schedule=step", "optim.step_size=2", "optim.gamma=0.5"]]
    common = [*SMALL, "trainer.max_epochs=14", "trainer.patience=null", "trainer.checkpoint_seconds=0",
              "dataset.split_seed=0"]
    cfgs = [make_cfg(*common, *v) for v in variants]
    assert len({grouping.stack_key(c) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    stop = 7
    interrupt_stack_after(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    for _, out in jobs:
        saved = torch.load(out / stacking.STACK_CHECKPOINT, weights_only=True)
        assert saved["epoch"] == stop and saved["member"]["fit"]["schedule"]["steps"] == stop
    resumed = stacking.train(jobs, quiet)
    assert [r["resumed_from_epoch"] for r in resumed] == [stop] * len(cfgs)
    for i, w in enumerate(whole):
        cut = json.loads((tmp_path / f"cut{i}" / "result.json").read_text())
        assert {k: cut[k] for k in SAME} == {k: w[k] for k in SAME}, variants[i]
        assert metrics_rows(tmp_path / f"cut{i}") == metrics_rows(tmp_path / f"whole{i}"), variants[i]
        rates = _lr_column(tmp_path / f"whole{i}")
        assert len(set(rates[:stop])) > 1 and len(set(rates[stop:])) > 1, variants[i]


def test_a_checkpoint_without_a_schedule_state_replays_the_history(tiny_cfg, tmp_path):
    """last.pt written before schedules existed (no `schedule` in its FitState): the schedule is
    stepped through the checkpoint's history, which for a constant rate changes nothing."""
    state = checkpoint.fit_state({"history": [{"val_loss": v} for v in (3.0, 2.0, 2.0, 2.0)], "best_epoch": 2,
                                  "best_loss": 2.0, "best_state": None, "waited": 2}, torch.device("cpu"))
    assert state.schedule is None
    from regbench.engine.fitstate import schedule_of

    cfg = tiny_cfg("optim.schedule=plateau", "optim.plateau_patience=1", "optim.plateau_factor=0.5")
    schedule = schedule_of(cfg, state)
    assert schedule.steps == 4 and schedule.lr == 5e-4 and schedule.best == 2.0
    assert schedule_of(tiny_cfg(), state).lr == 1e-3
    assert math.isinf(Schedule(cfg.optim, 3).best)


# ---------------------------------------------------------------- the report

def test_the_report_reads_runs_from_before_schedules_as_constant_and_names_only_knobs_that_apply(tmp_path):
    from regbench.reporting.report import build
    from regbench.reporting.report_format import constants_line
    from tests.helpers.rundirs import write_run

    new_knobs = {"optim.name": "adam", "optim.schedule": "constant",
                 **{f"optim.{k}": DEFAULTS[k] for k in keys.ALL_SCHEDULE_KNOBS}}
    for seed in (0, 1):  # the same two runs, recorded before schedules existed and after
        write_run(tmp_path / "old" / str(seed), seed=seed, val=0.9, extra={"optim.name": "adam"}, finished_at="2026-01-01")
        write_run(tmp_path / "new" / str(seed), seed=seed, val=0.9, extra=new_knobs, finished_at="2026-02-01")
    report = build([tmp_path])
    assert len(report.table) == 1 and len(report.duplicates) == 2  # one configuration; the old copies set aside
    line = constants_line(report)
    assert "optim.schedule=constant" in line and "step_size" not in line and "min_lr" not in line
    for seed in (0, 1):
        write_run(tmp_path / "cos" / str(seed), seed=seed, val=0.95, extra={**new_knobs, "optim.schedule": "cosine"})
    report = build([tmp_path])
    assert sorted(report.table["optim.schedule"]) == ["constant", "cosine"]
    line = constants_line(report)
    assert "optim.min_lr=0" in line and "step_size" not in line and "plateau" not in line


@pytest.mark.parametrize("damage", [{"steps": "seven"}, {"lr": None}, {"kind": "linear"}, "drop lr"])
def test_a_checkpoint_with_a_damaged_schedule_state_is_reported_and_the_run_starts_fresh(tiny_cfg, tmp_path, capsys,
                                                                                        damage):
    args = ("optim.schedule=cosine", "keep_checkpoint=true", "trainer.checkpoint_seconds=0")
    run(tiny_cfg(*args), tmp_path / "kept")
    payload = torch.load(tmp_path / "kept" / checkpoint.CHECKPOINT_FILE, weights_only=True)
    if damage == "drop lr":
        del payload["member"]["fit"]["schedule"]["lr"]
    else:
        payload["member"]["fit"]["schedule"].update(damage)
    folder = tmp_path / "damaged"
    folder.mkdir()
    torch.save(payload, folder / checkpoint.CHECKPOINT_FILE)
    capsys.readouterr()
    result = run(tiny_cfg(*args), folder)
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if "ignoring" in line]
    assert "incomplete" in warning and "starting fresh" in warning
    assert result["status"] == "ok" and result["resumed_from_epoch"] is None


@pytest.mark.slow
def test_a_killed_plateau_run_resumes_to_bitwise_the_same_result(tmp_path):
    """tests/test_resume.py's SIGKILL test, with a plateau schedule that cuts the rate."""
    from tests.helpers.interrupt import RESUMABLE, killed_and_clean

    args = [*RESUMABLE, "optim.schedule=plateau", "optim.plateau_patience=1", "optim.plateau_factor=0.5",
            "optim.lr=0.01", "trainer.num_threads=1"]
    a, b = killed_and_clean(args, tmp_path, 6)
    assert a["resumed_from_epoch"] >= 5 and b["resumed_from_epoch"] is None
    rates = _lr_column(tmp_path / "clean")  # cut after epochs 16, 18, 20: the resumed run's plateau state decides them
    assert len(set(rates[a["resumed_from_epoch"]:])) > 1
