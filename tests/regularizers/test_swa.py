"""Stochastic weight averaging (regbench/regularizers/swa.py): the average and its batch-norm
statistics against torch.optim.swa_utils (AveragedModel, update_bn), its rate against SWALR, and
how it meets early stopping in a run. With EMA and SAM: tests/test_averaging.py."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch.optim import swa_utils

from regbench.data.datasets import load
from regbench.engine.loop import evaluate
from regbench.engine.runner import run
from regbench.engine.steps import train_epoch
from regbench.models import build_model
from regbench.regularizers import swa as swa_module
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL
from tests.helpers.engine import averaged_tensors as _averaged_tensors
from tests.helpers.engine import copy_member as _copy_member
from tests.helpers.engine import small_stack as _setup

QUIET = Console(quiet=True)


def test_swa_and_its_batch_norm_statistics_equal_torchs_swa_utils():
    """After the first S = floor(0.5 * 6) = 3 epochs the end-of-epoch weights enter an equal average
    (AveragedModel's default), whose batch-norm statistics update_bn recomputes on the training split."""
    cfg, data, model, stack = _setup("reg=[swa,batchnorm]", "reg.swa=0.5", "trainer.max_epochs=6")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror)
    batch = cfg.trainer.batch_size
    loader = [data.prepare(data.x_train[i : i + batch]) for i in range(0, data.x_train.shape[0], batch)]
    for epoch in range(1, 7):
        stack.follow_schedules()
        train_epoch(stack, data, batch)
        _copy_member(stack, mirror)
        stack.end_epoch(data)
        params, buffers = stack.reported()
        if epoch > 3:
            oracle.update_parameters(mirror)
            swa_utils.update_bn(loader, oracle)
            for ours, theirs in zip(params + buffers, _averaged_tensors(oracle)):
                torch.testing.assert_close(ours[0], theirs, rtol=1e-6, atol=1e-7)
            assert torch.equal(params[0][0], stack.params[0][0]) == (epoch == 4)  # the first average is a copy
        else:  # before averaging starts the evaluated weights are the trained ones
            assert all(torch.equal(a, b) for a, b in zip(params + buffers, stack.params + stack.buffers))
        stack.members[0].state.history.append({"epoch": epoch, "val_loss": 1.0, "lr": stack.lr[0]})


@pytest.mark.parametrize("anneal", [0, 1, 3, 10])
def test_swas_learning_rate_is_swalrs(anneal):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = swa_utils.SWALR(opt, swa_lr=0.01, anneal_epochs=anneal)
    for steps in range(1, 15):
        opt.step()
        scheduler.step()
        assert swa_module.swalr(0.1, 0.01, anneal, steps) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_a_swa_runs_rates_averages_and_early_stopping(tmp_path):
    """max_epochs 10, swa 0.5: epochs 1-6 at the schedule's rate (S = 5, the first average at the end
    of epoch 6), then SWALR towards swa_lr; early stopping (patience 1) waits for the average."""
    args = ("reg=swa", "reg.swa=0.5", "reg.swa_lr=1e-2", "reg.swa_anneal_epochs=3", "trainer.max_epochs=10",
            "trainer.patience=1", "save_model=true")
    result = run(make_cfg(*SMALL, *args), tmp_path, QUIET)
    assert result["status"] == "ok" and result["reg"] == "swa" and result["weights"] == "swa"
    assert result["best_epoch"] >= 6 and result["epochs_run"] >= 7
    rows = pd.read_csv(tmp_path / "metrics.csv")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    scheduler, expected = swa_utils.SWALR(opt, swa_lr=1e-2, anneal_epochs=3), [1e-3] * 6
    for _ in range(rows.shape[0] - 6):
        opt.step()
        scheduler.step()
        expected.append(opt.param_groups[0]["lr"])
    assert rows["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    cfg = make_cfg(*SMALL, *args)
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert evaluate(model, data, "val", 8192).tolist() == [result["metrics"]["val_loss"], result["metrics"]["val_acc"]]
    best = rows[rows["epoch"] == result["best_epoch"]].iloc[0]
    assert (best["val_loss"], best["val_acc"]) == (result["metrics"]["val_loss"], result["metrics"]["val_acc"])
