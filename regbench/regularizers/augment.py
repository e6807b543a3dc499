"""Data augmentation: random crop (zero padding of H//8 pixels, at least 1) and, where
`dataset.hflip`, horizontal flip, of every image batch on its device.

The crop acts on the normalised batch, so its padding of 0 is each channel's training mean (for
digits, stored standardised per pixel, each pixel's), not black: torchvision's
`RandomCrop(padding=p)` placed before `Normalize`, as its recipes place it, pads the raw image
with fill=0. This one is `RandomCrop(padding=p, fill=mean)` before `Normalize`, or `RandomCrop`
after it (tests/regularizers/test_augment.py pins both, pixel for pixel).

Images only (a one-line refusal on tables). One random offset (and flip) per image, from the
member's stream `augment` (`member.device_rng`), apart from the data order's and the network's,
so that every regularizer sees the same batches for one seed; it starts from the seed + 1 it
has always had (`SEED_OFFSET`), so that runs keep their numbers. Preset: conf/reg/augment.yaml.

Stacks: the switch is shared by a stack's members (it changes what a batch is); each member
augments its own batch from its own stream, exactly as its lone run does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView

SEED_OFFSET = 1  # the stream's seed: the run's seed + 1 (the data order's is the seed itself)


def augment(x: torch.Tensor, generator: torch.Generator, hflip: bool) -> torch.Tensor:
    """Random crop and optional horizontal flip of a whole (N, C, H, W) batch, one random
    offset per image."""
    import torch
    from torch.nn import functional as F

    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N, H+2p, W+2p, C
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


class Augment:
    """Crops (and flips) each member's training batch with the member's own stream."""

    name = "augment"
    strength = None  # a switch: no strength axis
    search: dict[str, str] = {}  # a switch: its study tunes nothing of its own
    not_convex = "stochastic"
    knobs = (Knob("augment", False, "Random crop (and flip where dataset.hflip) of image batches, on the device; "
                  "the padding is the training mean (0 after normalisation), not black as torchvision's RandomCrop.",
                  "true | false", member=False),)

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        return "augment" if reg["augment"] else None

    @staticmethod
    def problem(cfg: Any, data: Any) -> str | None:
        if cfg.reg.augment and len(data.input_shape) != 3:
            return f"reg.augment needs image data; {cfg.dataset.name} is a table"
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.active = any(v["augment"] for v in values)
        self.hflip = [m.cfg.dataset.hflip for m in stack.members]

    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        return torch.stack([augment(xk, m.device_rng(self.name, xk.device, seed=m.cfg.seed + SEED_OFFSET), flip)
                            for xk, m, flip in zip(x, stack.members, self.hflip)]), y
