"""Decoupled weight decay (Loshchilov & Hutter): w <- w * (1 - lr * weight_decay) before each step.

The same decay under every optimizer: AdamW's own definition, applied to SGD and Adam too, so
`reg.weight_decay` means one thing whatever `optim` is (an L2 term in the loss is
`reg=l2`, whose effect Adam rescales). Weight matrices and kernels only. Preset:
conf/reg/weight_decay.yaml. Stacks: the rate may differ between members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView


class WeightDecay:
    """Multiplies every member's weights by its 1 - lr * weight_decay before the optimizer step."""

    name = "weight_decay"
    strength = "weight_decay"
    # log scale; decoupled, so each step decays by lr * weight_decay: AdamW's usual 0.01-0.3 and, with
    # SGD's momentum, the equivalent of its coupled 1e-4-5e-4 (a few times 1e-3) lie inside
    search = {"weight_decay": "tag(log, interval(1e-4, 1.0))"}
    not_convex = "a step rule, not an objective: for an L2 penalty use reg.alpha with reg.l1_ratio=0"
    knobs = (Knob("weight_decay", 0.0, "Decoupled (AdamW-style) weight decay: w <- w - lr * weight_decay * w each step.",
                  ">= 0", lambda v: v >= 0),)

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        return "weight_decay" if reg["weight_decay"] > 0 else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.active = any(v["weight_decay"] > 0 for v in values)
        self.factor = stack.vector([1 - lr * v["weight_decay"] for lr, v in zip(stack.lr, values)], skip_if_zero=False)

    def before_step(self, stack: StackView) -> None:
        for p, penalised in zip(stack.params, stack.penalised):
            if penalised:
                p.mul_(stack.per_member(self.factor, p))
