"""Mixup, CutMix, cutout and input noise together (regbench/regularizers/mixing.py, cutout.py,
input_noise.py): their knobs' ranges, a switched-off knob, and each acting on training only.
Each one's own tests: tests/regularizers/test_mixing.py, test_cutout.py, test_input_noise.py."""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console

from regbench.config.checks import check
from regbench.engine.runner import run
from tests.helpers.configs import make_cfg

QUIET = Console(quiet=True)


def test_knobs_out_of_range_are_refused_in_one_line():
    for key, value, message in [("reg.mixup", -1, "reg.mixup must be >= 0"), ("reg.mix_prob", 2, "reg.mix_prob must be in [0, 1]"),
                                ("reg.cutout", 1.5, "reg.cutout must be in [0, 1]"),
                                ("reg.cutout_size", 0.01, "reg.cutout_size must be in (0.02, 1]"),
                                ("reg.input_noise", -0.1, "reg.input_noise must be >= 0")]:
        problems = check(make_cfg(f"{key}={value}"))
        assert len(problems) == 1 and problems[0].startswith(message), problems


SMALL = ("dataset.train_size=300", "model.hidden_sizes=[32]", "trainer.max_epochs=4", "trainer.patience=null")


@pytest.mark.parametrize("off", [["reg.mixup=0.2", "reg.mix_prob=0"], ["reg.cutout=0"], ["reg.input_noise=0"],
                                 ["reg.cutmix=0", "reg.mixup=0"]])
def test_a_switched_off_knob_changes_nothing(tmp_path, off):
    base = run(make_cfg(*SMALL), tmp_path / "base", QUIET)
    other = run(make_cfg(*SMALL, *off), tmp_path / "off", QUIET)
    assert other["reg"] == "none" and other["metrics"] == base["metrics"]


@pytest.mark.parametrize("on, label", [(["reg=mixup"], "mixup"), (["reg=cutmix"], "cutmix"),
                                       (["reg=[mixup,cutmix]"], "mixup+cutmix"), (["reg=cutout"], "cutout"),
                                       (["reg=input_noise"], "input_noise")])
def test_each_acts_on_training_only_and_is_labelled(tmp_path, monkeypatch, on, label):
    """It changes training (the numbers differ from the baseline's) but never evaluation: the
    reported train metrics are the clean, eval-mode ones of the reported weights, and the batch
    hooks run once per training step only."""
    from regbench.engine import steps

    calls = []
    real = steps.train_epoch

    def counting(stack, data, batch):
        for reg in stack.batch_hooks:
            if not getattr(reg, "counted", False):
                hook, reg.counted = reg.batch, True
                reg.batch = lambda s, x, y, hook=hook: calls.append(1) or hook(s, x, y)
        return real(stack, data, batch)

    monkeypatch.setattr(steps, "train_epoch", counting)
    base = run(make_cfg(*SMALL), tmp_path / "base", QUIET)
    calls.clear()
    result = run(make_cfg(*SMALL, *on, "save_model=true"), tmp_path / "on", QUIET)
    assert result["status"] == "ok" and result["reg"] == label
    assert result["metrics"] != base["metrics"]
    from regbench.data.datasets import load
    from regbench.engine.loop import evaluate
    from regbench.models import build_model

    cfg = make_cfg(*SMALL, *on)
    data = load(cfg.dataset, torch.device("cpu"))
    assert len(calls) == 4 * math.ceil(data.x_train.shape[0] / 64)  # once per training step, never in evaluation
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(tmp_path / "on" / "model.pt", weights_only=True))
    loss, acc = evaluate(model, data, "train", 8192).tolist()
    assert (loss, acc) == (result["metrics"]["train_loss"], result["metrics"]["train_acc"])
