"""Snapshot ensembles (regbench/regularizers/snapshot.py): the cycles and rates against torch's
CosineAnnealingWarmRestarts; the reported metrics against an ensemble averaged by hand from the
snapshots' weights (taken from runs without the regularizer, which trains the same weights); how it
meets early stopping; a stack of members on different cycles against their lone runs; a run
interrupted after the ring of slots wrapped; its refusals and notices. The contract every
regularizer keeps (its preset stacks, resumes, one host read-back per epoch, evaluation from
model.pt): tests/test_contract.py, in the setting `restarts`."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch.nn import functional as F

from regbench.config.checks import check
from regbench.data.datasets import load
from regbench.engine import checkpoint
from regbench.engine.runner import run
from regbench.models import Ensemble, build_model
from regbench.regularizers import label, notices
from regbench.regularizers.snapshot import cycle_ends
from tests.helpers.compare import alone_and_stacked, bit_for_bit, ends_alike
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL
from tests.helpers.interrupt import ctrl_c_after_row

QUIET = Console(quiet=True)


def _torch_restarts(period: int, mult: int, epochs: int, lr: float = 0.1, eta_min: float = 0.0):
    """torch's rates per epoch and the epochs that end a cycle (T_cur back to 0 after the epoch's step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period, T_mult=mult, eta_min=eta_min)
    rates, ends = [], []
    for epoch in range(1, epochs + 1):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
        if scheduler.T_cur == 0:
            ends.append(epoch)
    return rates, ends


@pytest.mark.parametrize("period,mult", [(1, 1), (2, 1), (3, 2), (2, 3), (5, 1), (4, 2)])
def test_the_snapshot_epochs_are_those_where_torchs_warm_restarts_restart(period, mult):
    _, ends = _torch_restarts(period, mult, 40)
    assert cycle_ends(period, mult, 40) == ends


def _plain(tmp_path, name, *overrides):
    """A run without the regularizer: its model.pt holds its last epoch's trained weights."""
    return run(make_cfg(*overrides, "save_model=true"), tmp_path / name, QUIET)


def _hand_ensemble(folders, cfg, data, split):
    """The ensemble averaged by hand: each snapshot's weights loaded into a plain network, their
    softmax probabilities (or outputs) on the split averaged; (loss, acc) or (mse, r2) in float64."""
    outs = []
    for folder in folders:
        model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        model.eval()
        with torch.no_grad():
            out = model(data.prepare(getattr(data, f"x_{split}").clone())).double()
        outs.append(out if data.task == "regression" else torch.softmax(out, dim=1))
    mean = torch.stack(outs).mean(0)
    y = getattr(data, f"y_{split}")
    if data.task == "regression":
        mse = F.mse_loss(mean, y.double()).item()
        return mse, 1.0 - mse * len(y) / (y.double() - y.double().mean()).pow(2).sum().item()
    return F.nll_loss(mean.log(), y).item(), (mean.argmax(1) == y).double().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("setting", [["reg.batchnorm=true"], ["dataset=diabetes", "dataset.train_size=200"]],
                         ids=["digits+batchnorm", "diabetes"])
def test_the_reported_metrics_are_those_of_the_last_m_snapshots_averaged_by_hand(tmp_path, setting):
    """Cycles of 2 epochs (snapshots after epochs 2, 4, 6), M = 2: the ensemble is the snapshots of
    epochs 4 and 6. The snapshots' weights come from runs of 4 and 6 epochs without the regularizer
    (it changes no training: the trained weights are the same), averaged here by hand; the rates are
    torch's CosineAnnealingWarmRestarts'."""
    schedule = ("optim.schedule=cosine_restarts", "optim.restart_period=2", "optim.restart_mult=1", "optim.lr=0.01")
    common = (*SMALL, *setting, *schedule)
    result = run(make_cfg(*common, "reg.snapshots=2", "trainer.max_epochs=6", "save_model=true"), tmp_path / "ens", QUIET)
    assert result["status"] == "ok" and result["weights"] == "snapshot ensemble of 2" and result["best_epoch"] % 2 == 0
    assert "snapshot" in result["reg"].split("+")
    for epochs in (4, 6):
        assert _plain(tmp_path, f"plain{epochs}", *common, f"trainer.max_epochs={epochs}")["status"] == "ok"
    cfg = make_cfg(*common, "trainer.max_epochs=6")
    data = load(cfg.dataset, torch.device("cpu"))
    m = "acc" if data.task == "classification" else "r2"
    for split in ("train", "val", "test"):
        loss, score = _hand_ensemble([tmp_path / "plain4", tmp_path / "plain6"], cfg, data, split)
        assert result["metrics"][f"{split}_loss"] == pytest.approx(loss, rel=1e-5, abs=1e-6), split
        # the same predicted classes (accuracy exact); R^2 as the loss (float32 outputs, float64 here)
        assert result["metrics"][f"{split}_{m}"] == pytest.approx(score, rel=0 if m == "acc" else 1e-5,
                                                                  abs=1e-12 if m == "acc" else 1e-6), split
    assert result["gap"][m] == result["metrics"][f"train_{m}"] - result["metrics"][f"val_{m}"]
    # not the last trained weights alone: the ensemble is another model
    assert result["metrics"]["test_loss"] != pytest.approx(_hand_ensemble([tmp_path / "plain6"], cfg, data, "test")[0])
    # model.pt holds the ensemble, which rebuilds from it
    network = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model = Ensemble.like(network, torch.load(tmp_path / "ens" / "model.pt", weights_only=True))
    assert isinstance(model, Ensemble) and model.mix.tolist() == [0.5, 0.5]
    rows = pd.read_csv(tmp_path / "ens" / "metrics.csv")
    rates, _ = _torch_restarts(2, 1, 6, lr=0.01)
    assert rows["lr"].tolist() == pytest.approx(rates, rel=1e-12)
    # before the first snapshot, the trained weights: the plain run's rows; within a cycle the ensemble's stay
    plain = pd.read_csv(tmp_path / "plain6" / "metrics.csv")
    assert rows.iloc[0]["val_loss"] == plain.iloc[0]["val_loss"]
    assert rows.iloc[2]["val_loss"] == rows.iloc[1]["val_loss"] and rows.iloc[4]["val_loss"] == rows.iloc[3]["val_loss"]
    assert rows.iloc[5]["val_loss"] == result["metrics"]["val_loss"]


@pytest.mark.slow
def test_early_stopping_watches_the_snapshot_epochs_only(tmp_path):
    """Cycles of 3 epochs, patience 1: the best epoch is a snapshot epoch, the run stops at the first
    snapshot that does not improve the ensemble's val_loss (never within a cycle, whose rows repeat),
    and the reported metrics are the best snapshot epoch's ensemble's."""
    args = (*SMALL, "reg=snapshot", "optim.schedule=cosine_restarts", "optim.restart_period=3", "optim.restart_mult=1",
            "optim.lr=0.01", "trainer.max_epochs=30", "trainer.patience=1")
    result = run(make_cfg(*args), tmp_path, QUIET)
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert result["status"] == "ok" and result["best_epoch"] % 3 == 0
    assert result["stopped_early"] and result["epochs_run"] % 3 == 0 and result["epochs_run"] < 30
    snapshots = rows[rows["epoch"] % 3 == 0]["val_loss"].tolist()
    assert snapshots[-1] >= min(snapshots[:-1])  # the last snapshot did not improve
    best = rows[rows["epoch"] == result["best_epoch"]].iloc[0]
    assert (best["val_loss"], best["val_acc"]) == (result["metrics"]["val_loss"], result["metrics"]["val_acc"])
    used = min(result["best_epoch"] // 3, 3)
    assert result["weights"] == f"snapshot ensemble of {used}"


@pytest.mark.slow
def test_a_stack_of_members_on_their_own_cycles_ends_where_their_lone_runs_end(tmp_path):
    """Member 2's cycles are 3 epochs long: at epoch 2 member 1 has its first snapshot and member 2
    none (its trained weights are evaluated), at epoch 6 both have theirs; each bit for bit."""
    common = ["reg=snapshot", "reg.snapshots=2", "optim.schedule=cosine_restarts", "optim.restart_period=2",
              "optim.restart_mult=1", "trainer.max_epochs=7", "trainer.num_threads=1", "dataset.split_seed=0"]
    variants = [[], ["optim.restart_period=3"], ["seed=1", "optim.lr=3e-3", "optim.restart_mult=2"]]
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    assert [s["stack_size"] for s in stacked] == [3] * 3
    assert [a["weights"] for a in alone] == ["snapshot ensemble of 2", "snapshot ensemble of 2", "snapshot ensemble of 2"]
    bit_for_bit(tmp_path, alone, stacked, variants)


@pytest.mark.slow
def test_a_run_interrupted_after_its_slots_wrapped_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Cycles of one epoch, M = 2: the checkpoint after epoch 3 holds the slots with the snapshots of
    epochs 3 (slot 0, wrapped) and 2 (slot 1); the resumed run ends as the run never interrupted."""
    cfg = make_cfg(*SMALL, "reg=snapshot", "reg.snapshots=2", "optim.schedule=cosine_restarts",
                   "optim.restart_period=1", "optim.restart_mult=1", "trainer.max_epochs=5", "trainer.checkpoint_seconds=0")
    clean = run(cfg, tmp_path / "clean", QUIET)
    assert clean["weights"] == "snapshot ensemble of 2"
    let_run = ctrl_c_after_row(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", QUIET)
    saved = torch.load(tmp_path / "cut" / checkpoint.CHECKPOINT_FILE, weights_only=True)["member"]
    slots, trained = saved["reg_state"]["snapshot"]["weights"], saved["params"] + saved["buffers"]
    assert len(slots) == 2 * len(trained)
    assert all(torch.equal(s, t) for s, t in zip(slots, trained))  # slot 0: epoch 3's weights, the trained ones
    assert not torch.equal(slots[len(trained)], trained[0])  # slot 1: epoch 2's
    let_run()
    resumed = run(cfg, tmp_path / "cut", QUIET)
    assert resumed["resumed_from_epoch"] == 3
    ends_alike(resumed, tmp_path / "cut", clean, tmp_path / "clean")


def test_its_refusals_notices_and_label():
    on = make_cfg("reg=snapshot", "optim.schedule=cosine_restarts", "trainer.max_epochs=50")
    assert on.reg.snapshots == 3 and label(on.reg, on.model) == "snapshot" and check(on) == []
    assert check(make_cfg("reg=snapshot")) == [
        "reg.snapshots takes a snapshot at the end of each cycle of optim.schedule=cosine_restarts (got "
        "optim.schedule=constant): set it, with optim.restart_period"]
    for other in ("ema", "swa"):
        assert check(make_cfg(f"reg=[snapshot,{other}]", "optim.schedule=cosine_restarts")) == [
            f"reg.snapshots and reg.{other} both choose the model that is evaluated: choose one"]
    assert check(make_cfg("reg.snapshots=-1"))[0].startswith("reg.snapshots must be >= 0")
    # the default cycles (15, then 30 epochs) and 50 epochs: 2 cycles end, fewer than M = 3
    assert notices(on.reg, on) == ["reg.snapshots=3: only 2 cycle(s) end within trainer.max_epochs=50: the "
                                   "ensemble has at most 2 snapshot(s)"]
    short = make_cfg("reg=snapshot", "optim.schedule=cosine_restarts", "trainer.max_epochs=10")
    assert notices(short.reg, short) == ["reg.snapshots: no cycle of optim.restart_period=15 ends within "
                                         "trainer.max_epochs=10: no snapshot is taken, the trained weights are reported"]
    off = make_cfg("optim.schedule=cosine_restarts")
    assert label(off.reg, off.model) == "none" and notices(off.reg, off) == []
