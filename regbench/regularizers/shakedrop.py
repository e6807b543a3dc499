"""ShakeDrop (Yamada et al. 2019): in training each sample's residual branch is multiplied by
b + alpha - b * alpha in the forward pass and by b + beta - b * beta in the backward pass, with
b ~ Bernoulli(1 - p_l), alpha ~ U[-1, 1], beta ~ U[0, 1]; evaluation multiplies the branch by
its expectation, 1 - p_l. The drop probability grows linearly over depth (the paper's linear
decay rule): block l of L has p_l = l / L * `reg.shakedrop`, the final block's p_L. Preset:
conf/reg/shakedrop.yaml (p_L = 0.5, the paper's).

Where regbench differs: b, alpha and beta are drawn per sample (the paper's "image-level"
alpha and beta); the authors' code and Auto-PyTorch's (which Regularization Cocktails uses)
draw one b per batch.

Acts on the residual models only (model=resmlp, model=resnet); asked of another model it is
refused in one line.

Stacks: p_L may differ between members; each member draws from its own stream on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob
from regbench.regularizers.drop_path import refusal

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


class ShakeDrop:
    """Shakes each member's residual branches, at its p_L times the block's depth l / L."""

    name = "shakedrop"
    strength = "shakedrop"
    search = {"shakedrop": "interval(0.1, 0.9)"}  # p_L around the paper's 0.5
    not_convex = "stochastic"
    knobs = (Knob("shakedrop", 0.0, "ShakeDrop: the deepest residual block's drop probability p_L, block l of L "
                  "at l/L of it; a dropped branch is scaled by alpha in U[-1,1] (resmlp, resnet).",
                  "in [0, 1)", lambda v: 0 <= v < 1, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "shakedrop" if values["shakedrop"] > 0 else None

    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        return refusal("shakedrop", cfg.reg.shakedrop, cfg.model, "shakes residual branches")

    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[Any]:
        from regbench.regularizers.branch import ShakeDrop as Layer

        # on every residual branch, even at p_L = 0 (the identity), as drop_path's
        return [Layer(reg.shakedrop)] if where == "branch" else []

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.rates = [v["shakedrop"] for v in values]
        self.active = any(p > 0 for p in self.rates)

    def forward(self, stack: StackView, h: torch.Tensor, train: bool, depth: float) -> torch.Tensor:
        """h: (K, B, ...), the branch of a block at depth l / L; each member's draws from its own stream."""
        import torch

        from regbench.regularizers.branch import shakedrop

        return torch.stack([shakedrop(hk, rate * depth, train, member.device_rng(self.name, hk.device) if train else None)
                            for hk, rate, member in zip(h, self.rates, stack.members)])
