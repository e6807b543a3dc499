"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): training on mixtures of two examples.

Each batch pairs every example with its neighbour in the (already shuffled) batch, as
torchvision's `v2.MixUp` and `v2.CutMix` do (`batch.roll(1, 0)`), with a mixing weight
lam ~ Beta(alpha, alpha) drawn once per batch and member:

- mixup (`reg.mixup`: alpha; preset 0.2): x = lam * x + (1 - lam) * x_rolled, and the same
  mixture of the one-hot targets;
- cutmix (`reg.cutmix`: alpha; preset 1.0): a box of area about (1 - lam) of the image is
  pasted from the paired image (torchvision's box: centre uniform, sides sqrt(1 - lam) of the
  image's, clipped to it), and the targets mix by the box's actual area. For tables the
  column-wise variant Regularization Cocktails uses: a random round((1 - lam) * features) of
  the features are taken from the paired row, the targets mixed by their share.

`reg.mix_prob` is the probability that a batch is mixed at all; with both on, each mixed batch
takes cutmix or mixup with probability 1/2 (timm's switch). Training uses the cross-entropy
with the soft targets (label smoothing, when on, smooths them too); classification only.
Evaluation is never mixed. The draws come from each member's own host-side stream, so there is
no device sync and a stack's members each draw what their lone runs draw.
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


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision v2.MixUp's arithmetic: pairs each example with the one before it (roll)."""
    return x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam)), y.roll(1, 0).mul_(1.0 - lam).add_(y.mul(lam))


def cutmix_box(lam: float, h: int, w: int, r_x: int, r_y: int) -> tuple[tuple[int, int, int, int], float]:
    """torchvision v2.CutMix's box (x1, y1, x2, y2) for a centre (r_x, r_y), and the weight of
    the original image after pasting it (1 - the box's share of the area)."""
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * w), int(r * h)
    x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
    x2, y2 = min(r_x + r_w_half, w), min(r_y + r_h_half, h)
    return (x1, y1, x2, y2), float(1.0 - (x2 - x1) * (y2 - y1) / (w * h))


def cutmix(x: torch.Tensor, y: torch.Tensor, box: tuple[int, int, int, int], lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pastes the box from the paired image (torchvision v2.CutMix) and mixes the targets by `lam`."""
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
    return out, y.roll(1, 0).mul_(1.0 - lam).add_(y.mul(lam))


def cutmix_columns(x: torch.Tensor, y: torch.Tensor, columns: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The tabular cutmix: the given feature columns from the paired row; targets by their share."""
    out = x.clone()
    out[:, columns] = x.roll(1, 0)[:, columns]
    lam = 1.0 - len(columns) / x.shape[1]
    return out, y.roll(1, 0).mul_(1.0 - lam).add_(y.mul(lam))


class Mixing:
    """Mixup and CutMix, each member with its own alphas and draws."""

    name = "mixing"
    strength = "mixup"  # mixup's alpha: a cutmix-only sweep has no strength axis (two alphas, one axis)
    not_convex = "it trains on mixtures of examples, not the data"
    # Mixing turns every member's targets into class probabilities, whose cross-entropy rounds
    # differently from the class indices' of a member that does not mix: members of one stack
    # all mix or all do not (alphas and mix_prob may differ), so each ends where its lone run does.
    stack_on_off = True
    knobs = (
        Knob("mixup", 0.0, "Mixup: the Beta(alpha, alpha) concentration of the mixing weight (classification).",
             ">= 0", lambda v: v >= 0, since="0.2"),
        Knob("cutmix", 0.0, "CutMix: the Beta(alpha, alpha) concentration; a box (columns, for tables) from the "
             "paired example.", ">= 0", lambda v: v >= 0, since="0.2"),
        Knob("mix_prob", 1.0, "Probability that a batch is mixed when mixup or cutmix is on.", "in [0, 1]",
             lambda v: 0 <= v <= 1, since="0.2"),
    )

    @staticmethod
    def search(values: Any) -> dict[str, str]:
        """The alpha of each of mixup and cutmix that the preset switches on (reg=mixup does not tune
        cutmix's), on a log scale: the Beta's concentration acts by its order of magnitude."""
        space = {}
        if values["mixup"] > 0:
            space["mixup"] = "tag(log, interval(0.05, 1.0))"  # timm's and DeiT's 0.2 to Zhang et al.'s CIFAR 1.0
        if values["cutmix"] > 0:
            space["cutmix"] = "tag(log, interval(0.1, 2.0))"  # around the paper's and timm's 1.0 (uniform areas)
        return space

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        on = [name for name in ("mixup", "cutmix") if values[name] > 0]
        return "+".join(on) if on and values["mix_prob"] > 0 else None

    @staticmethod
    def problem(cfg: Any, data: Any) -> str | None:
        if (cfg.reg.mixup > 0 or cfg.reg.cutmix > 0) and data.task == "regression":
            return f"reg.mixup and reg.cutmix mix class labels; {cfg.dataset.name} is a regression"
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.values = values
        self.active = any(self.label(v, None) for v in values)

    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        from torch.nn import functional as F

        classes = stack.n_outputs
        xs, ys = [], []
        for xk, yk, member, v in zip(x, y, stack.members, self.values):
            soft = F.one_hot(yk, classes).float() if yk.dim() == 1 else yk
            rng = member.host_rng(self.name)
            kinds = [name for name in ("mixup", "cutmix") if v[name] > 0]
            if not kinds or rng.random() >= v["mix_prob"]:
                xs.append(xk), ys.append(soft)
                continue
            kind = kinds[0] if len(kinds) == 1 else ("cutmix" if rng.random() < 0.5 else "mixup")
            lam = float(rng.beta(v[kind], v[kind]))
            if kind == "mixup":
                xk, soft = mixup(xk, soft, lam)
            elif xk.dim() == 4:  # images (B, C, H, W)
                h, w = xk.shape[-2:]
                box, lam = cutmix_box(lam, h, w, int(rng.integers(w)), int(rng.integers(h)))
                xk, soft = cutmix(xk, soft, box, lam)
            else:  # tables (B, features)
                n = xk.shape[1]
                columns = sorted(rng.choice(n, size=int(round((1.0 - lam) * n)), replace=False).tolist())
                xk, soft = cutmix_columns(xk, soft, columns)
            xs.append(xk), ys.append(soft)
        return torch.stack(xs), torch.stack(ys)
