"""Gaussian input noise: x + N(0, sigma^2) on every training input, sigma = `reg.input_noise` in
standardized units (the features and pixels are standardized with training statistics, so 0.1
is a tenth of a feature's spread). Training batches only; evaluation sees clean inputs.

Stacks: sigma may differ between members; each member draws its noise from its own stream on
the device (no host sync).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


class InputNoise:
    """Adds each member's Gaussian noise to its training inputs."""

    name = "input_noise"
    strength = "input_noise"
    # sigma in standardized units, log scale: a hundredth to one spread of a feature (the preset's 0.1 in the middle)
    search = {"input_noise": "tag(log, interval(0.01, 1.0))"}
    not_convex = "stochastic"
    knobs = (Knob("input_noise", 0.0, "Standard deviation of Gaussian noise added to training inputs "
                  "(standardized units).", ">= 0", lambda v: v >= 0, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "input_noise" if values["input_noise"] > 0 else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.sigma = [v["input_noise"] for v in values]
        self.active = any(s > 0 for s in self.sigma)

    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        out = []
        for xk, member, sigma in zip(x, stack.members, self.sigma):
            if sigma > 0:
                noise = torch.randn(xk.shape, generator=member.device_rng(self.name, xk.device), device=xk.device)
                xk = xk + sigma * noise
            out.append(xk)
        return torch.stack(out), y
