"""The exponential moving average of the weights (regbench/regularizers/ema.py) against
torch.optim.swa_utils.AveragedModel step for step on the engine's own trajectory, and what an EMA
run reports. With SWA and SAM: tests/test_averaging.py."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch.optim import swa_utils

from regbench.engine.runner import run
from regbench.engine.steps import train_epoch
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL
from tests.helpers.engine import averaged_tensors as _averaged_tensors
from tests.helpers.engine import copy_member as _copy_member
from tests.helpers.engine import small_stack as _setup

QUIET = Console(quiet=True)


@pytest.mark.parametrize("decay", [0.9, 0.999])
def test_ema_equals_torchs_averaged_model_step_for_step(decay):
    cfg, data, model, stack = _setup("reg=[ema,batchnorm]", f"reg.ema={decay}")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    update, steps = stack.update, [0]

    def update_and_mirror():
        update()
        _copy_member(stack, mirror)
        oracle.update_parameters(mirror)
        steps[0] += 1

    stack.update = update_and_mirror
    for _ in range(3):
        train_epoch(stack, data, cfg.trainer.batch_size)
        params, buffers = stack.reported()
        for ours, theirs in zip(params + buffers, _averaged_tensors(oracle)):
            assert torch.equal(ours[0], theirs)
    assert steps[0] == 3 * math.ceil(300 / 64)
    live = stack.params[0][0]
    assert not torch.equal(stack.reported()[0][0][0], live)  # the average is not the trained weights


def test_an_ema_run_reports_the_average_and_its_rows_are_the_averages(tmp_path):
    args = ("reg=ema", "reg.ema=0.9", "trainer.max_epochs=5", "save_model=true")
    result = run(make_cfg(*SMALL, *args), tmp_path / "ema", QUIET)
    plain = run(make_cfg(*SMALL, "trainer.max_epochs=5"), tmp_path / "plain", QUIET)
    assert result["weights"] == "ema" and plain["weights"] == "trained" and result["reg"] == "ema"
    from regbench.console import result_summary

    assert "the metrics are those of the EMA average of the weights (result.json's weights: ema)" in result_summary(result)
    assert "average" not in result_summary(plain)
    assert result["params"]["reg.ema"] == 0.9
    ema_rows, plain_rows = pd.read_csv(tmp_path / "ema" / "metrics.csv"), pd.read_csv(tmp_path / "plain" / "metrics.csv")
    # the same training (EMA does not touch it), evaluated on other weights
    assert ema_rows["lr"].tolist() == plain_rows["lr"].tolist()
    assert (ema_rows["val_loss"] != plain_rows["val_loss"]).all()
    last = ema_rows.iloc[-1]
    assert (last["val_loss"], last["train_loss"]) == (result["metrics"]["val_loss"], result["metrics"]["train_loss"])
