"""Stochastic depth (Huang et al. 2016): in training, each sample's residual branch is dropped
with a probability growing linearly over depth, block l of L at l / L * `reg.drop_path` (the
rate at the deepest block; Huang et al.'s linear decay rule), the kept ones scaled by 1 / (1 - p)
so that evaluation, which keeps every branch, needs no rescaling. Per sample, as timm's DropPath
and `torchvision.ops.stochastic_depth(mode="row")`. Preset: conf/reg/drop_path.yaml (0.1).

Acts on the residual models only (model=resmlp, model=resnet); asked of another model it is
refused in one line, as a knob that would silently do nothing.

Stacks: the rate may differ between members; each member draws from its own stream on the
device, so a member of a stack draws what its lone run draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView

RESIDUAL_MODELS = ("resmlp", "resnet")


def refusal(knob: str, value: float, model: Any, what: str) -> str | None:
    """One line when a residual-branch knob is on for a model without residual blocks."""
    if value > 0 and model.name not in RESIDUAL_MODELS:
        return f"reg.{knob}={value} {what}; model={model.name} has none (use model=resmlp or model=resnet)"
    return None


class DropPath:
    """Drops each member's residual branches per sample, at its rate times the block's depth l / L."""

    name = "drop_path"
    strength = "drop_path"
    # the deepest block's rate: timm's drop_path_rate runs from 0.05 (small nets) to 0.5 (Huang et al.'s p_L)
    search = {"drop_path": "interval(0.05, 0.5)"}
    not_convex = "stochastic"
    knobs = (Knob("drop_path", 0.0, "Stochastic depth: the deepest residual block's per-sample drop rate, "
                  "block l of L at l/L of it (resmlp, resnet).", "in [0, 1)", lambda v: 0 <= v < 1, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "drop_path" if values["drop_path"] > 0 else None

    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        return refusal("drop_path", cfg.reg.drop_path, cfg.model, "drops residual branches")

    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[Any]:
        from regbench.regularizers.branch import DropPath as Layer

        # on every residual branch, even at rate 0 (the identity): members of one stack then
        # share one network whatever their rates
        return [Layer(reg.drop_path)] if where == "branch" else []

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.rates = [v["drop_path"] for v in values]
        self.active = any(p > 0 for p in self.rates)

    def forward(self, stack: StackView, h: torch.Tensor, train: bool, depth: float) -> torch.Tensor:
        """h: (K, B, ...), the branch of a block at depth l / L; each member's draws from its own stream."""
        import torch

        from regbench.regularizers.branch import drop_path

        if not train:
            return h
        return torch.stack([drop_path(hk, rate * depth, True, member.device_rng(self.name, hk.device))
                            for hk, rate, member in zip(h, self.rates, stack.members)])
