"""Cutout / random erasing (DeVries & Taylor 2017; Zhong et al. 2020): each training image, with
probability `reg.cutout`, gets a random rectangle set to 0 (the mean, in standardized units).

The rectangle is torchvision's `RandomErasing`'s: an area of uniform(0.02, `reg.cutout_size`) (0.33 by default, as torchvision)
of the image and an aspect ratio log-uniform in (0.3, 3.3), placed uniformly where it fits (up
to 10 tries, else that image is left alone). For tables, the column cutout: each row, with
probability `reg.cutout`, gets a random share uniform(0.02, `reg.cutout_size`) of its features
(at least one) set to 0. Training batches only; evaluation sees clean inputs.

Stacks: both knobs may differ between members; each member draws from its own host-side
stream (no device sync) and the masks go to the device in one copy per batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView

SCALE_MIN = 0.02  # torchvision RandomErasing's scale=(0.02, 0.33): the smallest erased share
RATIO = (0.3, 3.3)  # its aspect ratios


def erase_box(rng: Any, h: int, w: int, size: float) -> tuple[int, int, int, int] | None:
    """torchvision RandomErasing.make_params's rectangle (top, left, height, width), drawn from
    `rng` (numpy), or None when 10 tries found none that fits."""
    area = h * w
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        erase_area = area * rng.uniform(SCALE_MIN, size)
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(erase_area * aspect))), int(round(math.sqrt(erase_area / aspect)))
        if not (eh < h and ew < w):
            continue
        return int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1)), eh, ew
    return None


class Cutout:
    """Erases a random rectangle of each member's training images (columns of its rows, for tables)."""

    name = "cutout"
    strength = "cutout"
    search = {
        "cutout": "interval(0.1, 1.0)",  # the erasing probability; torchvision's and the preset's 0.5 in the middle
        # the largest erased share: torchvision's 0.33 in the middle; beyond a half little of the object is left
        "cutout_size": "interval(0.1, 0.6)",
    }
    not_convex = "stochastic"
    knobs = (
        Knob("cutout", 0.0, "Probability that a training image (a table's row) gets a random rectangle (columns) "
             "set to 0.", "in [0, 1]", lambda v: 0 <= v <= 1, since="0.2"),
        Knob("cutout_size", 0.33, "Largest share of the image (of the row's features) erased; the smallest is 0.02.",
             "in (0.02, 1]", lambda v: SCALE_MIN < v <= 1, since="0.2", only_when_on=True),
    )

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "cutout" if values["cutout"] > 0 else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.values = values
        self.active = any(v["cutout"] > 0 for v in values)

    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np
        import torch

        out = []
        for xk, member, v in zip(x, stack.members, self.values):
            if v["cutout"] <= 0:
                out.append(xk)
                continue
            rng = member.host_rng(self.name)
            keep = np.ones((xk.shape[0], *xk.shape[-2:]) if xk.dim() == 4 else xk.shape, dtype=bool)
            for i in range(xk.shape[0]):
                if rng.random() >= v["cutout"]:
                    continue
                if xk.dim() == 4:
                    box = erase_box(rng, xk.shape[-2], xk.shape[-1], v["cutout_size"])
                    if box is not None:
                        top, left, eh, ew = box
                        keep[i, top : top + eh, left : left + ew] = False
                else:
                    n = xk.shape[1]
                    count = max(1, int(round(n * rng.uniform(SCALE_MIN, v["cutout_size"]))))
                    keep[i, rng.choice(n, size=count, replace=False)] = False
            mask = torch.from_numpy(keep).to(xk.device, non_blocking=True)
            out.append(xk * (mask.unsqueeze(1) if xk.dim() == 4 else mask))
        return torch.stack(out), y
