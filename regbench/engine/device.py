"""Turns the `device` option into a torch.device, refusing ones that are not there."""

from __future__ import annotations

import torch

from regbench import UserInputError


def resolve_device(name: str) -> torch.device:
    """Returns the device for `auto | cpu | cuda | cuda:N`.

    Raises:
        UserInputError: CUDA was asked for but is not available, or the index is out of range.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserInputError(
            f"device={name} but CUDA is not available here (torch {torch.__version__}); "
            "use device=cpu or device=auto"
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserInputError(
            f"device={name} but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return device
