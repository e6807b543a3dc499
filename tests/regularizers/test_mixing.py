"""Mixup and CutMix (regbench/regularizers/mixing.py) against torchvision.transforms.v2 with the
same draws, the column CutMix of tables, and the refusal of a regression. With cutout and input
noise: tests/test_mixing.py."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from torch.nn import functional as F
from torchvision.transforms import v2

from regbench import UserInputError
from regbench.engine.runner import run
from regbench.regularizers import mixing
from tests.helpers.configs import make_cfg
from tests.helpers.data import image_batch as _batch

QUIET = Console(quiet=True)


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


def test_mixing_a_regression_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserInputError) as refused:  # bad input: raised before anything is written
        run(make_cfg("dataset=diabetes", "reg=mixup", "trainer.max_epochs=2"), tmp_path / "run", QUIET)
    assert str(refused.value) == "reg.mixup and reg.cutmix mix class labels; diabetes is a regression"
    assert not (tmp_path / "run").exists()
