"""Cutout (regbench/regularizers/cutout.py): its erasing against torchvision's erase, its boxes
against RandomErasing's law."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from regbench.regularizers import cutout as cutout_module
from tests.helpers.data import image_batch as _batch


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
