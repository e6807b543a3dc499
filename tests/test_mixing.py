"""Mixup, CutMix, cutout and input noise (regbench/regularizers/mixing.py, cutout.py,
input_noise.py) against torchvision.transforms.v2 with the same draws, and their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rich.console import Console
from torch.nn import functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from regbench import UserInputError
from regbench.config.checks import check
from regbench.engine.runner import run
from regbench.regularizers import cutout as cutout_module
from regbench.regularizers import mixing
from tests.helpers.configs import make_cfg

QUIET = Console(quiet=True)


def _batch(b=6, c=3, h=8, w=10, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randint(0, classes, (b,), generator=g), classes


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.77, 1.0])
def test_mixup_equals_torchvisions_mixup_for_the_same_weight(lam):
    x, y, classes = _batch()
    ours_x, ours_y = mixing.mixup(x.clone(), F.one_hot(y, classes).float(), lam)
    tv = v2.MixUp(num_classes=classes)
    params = {"lam": lam, "labels": y, "batch_size": x.shape[0]}
    assert torch.equal(ours_x, tv.transform(x.clone(), params))
    assert torch.equal(ours_y, tv._mixup_label(y, lam=lam))


@pytest.mark.parametrize("lam, r_x, r_y", [(0.3, 4, 2), (0.9, 0, 7), (0.05, 9, 0), (0.5, 5, 4)])
def test_cutmix_box_and_batch_equal_torchvisions_for_the_same_draws(monkeypatch, lam, r_x, r_y):
    x, y, classes = _batch()
    h, w = x.shape[-2:]
    tv = v2.CutMix(num_classes=classes)
    monkeypatch.setattr(tv, "_dist", type("Fixed", (), {"sample": staticmethod(lambda shape: torch.tensor(lam))})())
    draws = iter([torch.tensor([r_x]), torch.tensor([r_y])])
    monkeypatch.setattr(torch, "randint", lambda *a, **k: next(draws))
    params = tv.make_params([x])
    monkeypatch.undo()
    box, lam_adjusted = mixing.cutmix_box(lam, h, w, r_x, r_y)
    assert box == params["box"] and lam_adjusted == params["lam_adjusted"]
    ours_x, ours_y = mixing.cutmix(x.clone(), F.one_hot(y, classes).float(), box, lam_adjusted)
    full = {**params, "labels": y, "batch_size": x.shape[0]}
    assert torch.equal(ours_x, tv.transform(x.clone(), full))
    assert torch.equal(ours_y, tv._mixup_label(y, lam=lam_adjusted))


def test_the_column_cutmix_takes_the_paired_rows_columns_and_mixes_the_targets_by_their_share():
    x = torch.arange(24.0).view(4, 6)
    y = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    out, soft = mixing.cutmix_columns(x, y.clone(), [1, 4])
    assert torch.equal(out[:, [1, 4]], x.roll(1, 0)[:, [1, 4]])
    assert torch.equal(out[:, [0, 2, 3, 5]], x[:, [0, 2, 3, 5]])
    torch.testing.assert_close(soft, y * (4 / 6) + y.roll(1, 0) * (2 / 6))
    torch.testing.assert_close(soft.sum(1), torch.ones(4))


def test_erasing_equals_torchvisions_erase_and_the_boxes_follow_random_erasings_law():
    x, _, _ = _batch(b=1, c=2, h=32, w=32)
    rng = np.random.default_rng(0)
    shares, ratios = [], []
    for _ in range(400):
        box = cutout_module.erase_box(rng, 32, 32, 0.33)
        if box is None:
            continue
        top, left, eh, ew = box
        assert 0 <= top <= 32 - eh and 0 <= left <= 32 - ew
        shares.append(eh * ew / 1024)
        ratios.append(eh / ew)
        keep = torch.ones(32, 32, dtype=torch.bool)
        keep[top : top + eh, left : left + ew] = False
        assert torch.equal(x[0] * keep, TF.erase(x[0], top, left, eh, ew, torch.tensor(0.0)))
    assert len(shares) > 350  # most draws fit
    assert min(shares) >= 0.01 and max(shares) <= 0.37  # uniform(0.02, 1/3) of the area, up to rounding
    assert 0.2 <= min(ratios) and max(ratios) <= 4.5  # log-uniform(0.3, 3.3), up to rounding


def test_knobs_out_of_range_are_refused_in_one_line():
    for key, value, message in [("reg.mixup", -1, "reg.mixup must be >= 0"), ("reg.mix_prob", 2, "reg.mix_prob must be in [0, 1]"),
                                ("reg.cutout", 1.5, "reg.cutout must be in [0, 1]"),
                                ("reg.cutout_size", 0.01, "reg.cutout_size must be in (0.02, 1]"),
                                ("reg.input_noise", -0.1, "reg.input_noise must be >= 0")]:
        problems = check(make_cfg(f"{key}={value}"))
        assert len(problems) == 1 and problems[0].startswith(message), problems


def test_mixing_a_regression_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserInputError) as refused:  # bad input: raised before anything is written
        run(make_cfg("dataset=diabetes", "reg=mixup", "trainer.max_epochs=2"), tmp_path / "run", QUIET)
    assert str(refused.value) == "reg.mixup and reg.cutmix mix class labels; diabetes is a regression"
    assert not (tmp_path / "run").exists()


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
