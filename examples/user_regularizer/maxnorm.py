"""A user's own regularizer for regbench: the max-norm constraint (Srebro & Shraibman 2005;
Srivastava et al. 2014 pair it with dropout).

After every optimizer step, each unit's incoming weight vector (a row of a weight matrix, or a
conv filter) whose L2 norm exceeds `max_norm` is scaled back onto the ball of that radius.
0 switches it off.

It is written against regbench's regularizer contract (`regbench.regularizers.contract`): a name,
its knobs, its label, and one hook, `after_step`, which receives the engine's stack of members
(every weight tensor has a leading member dimension), so the same code serves a lone run (a
stack of one) and a stacked sweep, each member with its own `max_norm`.
"""

from __future__ import annotations

from typing import Any

import torch

from regbench.regularizers import Knob
from regbench.regularizers.contract import StackView  # what a hook may use of the engine's stack


class MaxNorm:
    """Projects each unit's incoming weights onto the L2 ball of radius max_norm after each step."""

    name = "maxnorm"
    knobs = (Knob("max_norm", 0.0, "Largest L2 norm of a unit's incoming weights; 0 switches it off.", ">= 0",
                  lambda v: v >= 0),)
    # What a tuning study of it samples (`+search=each`): the radius on a log scale, around the 3 to 4
    # Srivastava et al. found best with dropout (knob names -> the syntax of hydra.sweeper.params)
    search = {"max_norm": "tag(log, interval(0.25, 8.0))"}

    @staticmethod
    def label(values: dict[str, Any], model: Any) -> str | None:
        return "maxnorm" if values["max_norm"] > 0 else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        radii = [v["max_norm"] for v in values]
        self.active = any(r > 0 for r in radii)
        # a member whose max_norm is 0 gets an infinite radius: its weights are never scaled
        self.radius = stack.vector([r if r > 0 else float("inf") for r in radii], skip_if_zero=False)

    def after_step(self, stack: StackView) -> None:
        for w, penalised in zip(stack.params, stack.penalised):
            if not penalised:
                continue
            # w: (members, units, inputs...) -> one norm per member and unit
            norms = w.flatten(2).norm(dim=2)
            radius = self.radius.view(-1, 1)
            scale = torch.where(norms > radius, radius / norms, torch.ones_like(norms))
            w.mul_(scale.view(*scale.shape, *([1] * (w.dim() - 2))))
