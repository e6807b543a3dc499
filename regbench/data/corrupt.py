"""Corruptions of a batch of inputs, for robustness under shift (the `shift` config node; evaluated
by regbench.engine.shift on the test split at the end of a run).

Two spaces, as the data keeps them (regbench.data.datasets.Data):

- `gaussian_noise` works in the model's input space, standardised units: a table's features are
  stored standardised, an image's pixels are standardised per channel by `Data.prepare`, so a
  severity s adds N(0, s^2) to every standardised value (the noise's standard deviation is s
  times the feature's, or the channel's, standard deviation in the training split). Images are
  then clipped to what pixels 0 and 255 become (`Data.input_range`): a noisy image is still an
  image, as in Hendrycks & Dietterich (2019).
- the image corruptions (`gaussian_blur`, `contrast`, `brightness`) are torchvision's own
  (torchvision.transforms.v2.functional), applied where torchvision expects float images: pixels
  in [0, 1] (the stored uint8 / 255), before the per-channel standardisation, which follows
  unchanged. Applied to standardised values they would mean something else (contrast blends with
  the image's mean gray and clips at 0 and 1; blur's reflection is the same either way).

Severity 0 is the identity for each of them, exactly: the same floats as the clean input.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only for the annotations: the report reads CORRUPTIONS without importing it
    import torch

NOISE = "gaussian_noise"
# name -> what its severity means, as the docs and the result say it
IMAGE_ONLY = ("gaussian_blur", "contrast", "brightness")
CORRUPTIONS = (NOISE, *IMAGE_ONLY)
# torchvision's adjust_contrast and adjust_brightness take 1 (gray) or 3 (RGB) channels
COLOUR_CHANNELS = (1, 3)


def blur_kernel_size(sigma: float, height: int, width: int) -> int:
    """The Gaussian kernel's odd size for `sigma` pixels: 2 * ceil(3 sigma) + 1 (the weights beyond
    3 sigma are under 1.2% of the centre's), capped at 2 * min(height, width) - 1, the largest
    whose reflection padding fits in the image (torch's reflect pad needs pad < size)."""
    return min(2 * math.ceil(3 * sigma) + 1, 2 * min(height, width) - 1)


def pixels(x: torch.Tensor, name: str, severity: float) -> torch.Tensor:
    """An image corruption of float pixels `x` in [0, 1], (N, C, H, W), by torchvision's functional.

    Args:
        name: gaussian_blur (severity: sigma in pixels), contrast (contrast factor 1 - severity)
            or brightness (brightness factor 1 - severity: darker).
        severity: >= 0; contrast and brightness in [0, 1].
    """
    from torchvision.transforms.v2 import functional as TF

    if name == "gaussian_blur":
        if severity == 0:  # torchvision needs sigma > 0; no blur is the identity
            return x
        k = blur_kernel_size(severity, x.shape[-2], x.shape[-1])
        return TF.gaussian_blur(x, [k, k], [severity, severity])
    if name == "contrast":
        return TF.adjust_contrast(x, 1.0 - severity)
    if name == "brightness":
        return TF.adjust_brightness(x, 1.0 - severity)
    raise ValueError(f"unknown image corruption {name!r}")


def noisy(x: torch.Tensor, severity: float, noise: torch.Tensor,
          bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Standardised inputs `x` plus `severity` times standard normal `noise` (of x's shape), clipped
    to `bounds` (low, high), broadcast against x (an image's per-channel range), where given.
    A new tensor: `x` (a table's stored split itself) is not changed."""
    out = x + severity * noise
    return out.clamp_(*bounds) if bounds is not None else out
