"""Dropout (Srivastava et al. 2014): zeroes each hidden unit with probability `reg.dropout` in training.

Placed after each hidden layer's activation (in a cnn, in its fully connected head; in resmlp
and resnet inside each residual block, before its last linear layer or convolution); a linear
model has no hidden layer and gets input dropout instead. Preset: conf/reg/dropout.yaml.

Stacks: the rate may differ between members. Each member draws its masks from its network
stream (`member.device_rng(NETWORK_STREAM, device)`, regbench.regularizers.contract), the one torch's own
random layers draw from, which starts where the lone run's model building left torch's global
stream (on the CPU: the very masks of torch's own dropout, bernoulli(1 - p) / (1 - p); on CUDA
torch's fused kernel draws differently, so there the masks are statistically, not bitwise, torch's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.contract import NETWORK_STREAM
from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


class Dropout:
    """Inverted dropout with each member's rate and random stream."""

    name = "dropout"
    strength = "dropout"
    # from light to Srivastava et al.'s 0.5 and past it; 0 would be reg=none's run, 0.8 about the most a
    # hidden layer of a small network keeps learning with
    search = {"dropout": "interval(0.05, 0.8)"}
    not_convex = "stochastic"
    knobs = (Knob("dropout", 0.0, "Dropout rate after each hidden layer (for model=linear: on the inputs).",
                  "in [0, 1)", lambda v: 0 <= v < 1),)

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        return "dropout" if reg["dropout"] > 0 else None

    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[Any]:
        from torch import nn

        if reg.dropout > 0 and (where == "hidden" or where == "input"):
            return [nn.Dropout(reg.dropout)]
        return []

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.rates = [v["dropout"] for v in values]
        self.active = any(p > 0 for p in self.rates)

    def forward(self, stack: StackView, h: torch.Tensor, train: bool) -> torch.Tensor:
        """h: (K, B, features); each member's mask from its own stream."""
        import torch

        if not (train and self.active):
            return h
        noise = torch.ones_like(h)
        for k, (p, member) in enumerate(zip(self.rates, stack.members)):
            if p > 0:
                noise[k].bernoulli_(1 - p, generator=member.device_rng(NETWORK_STREAM, h.device)).div_(1 - p)
        return h * noise
