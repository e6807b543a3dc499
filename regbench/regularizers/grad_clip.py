"""Gradient clipping (as timm's `--clip-grad` and Composer's GradientClipping offer it), by value
and by global norm, on each step's gradient after the backward pass, before the optimizer's step:

    g <- clamp(g, -clip_value, clip_value)                       (reg.clip_value > 0)
    g <- g * min(clip_norm / (||g|| + 1e-6), 1)                  (reg.clip_norm > 0)

||g|| the L2 norm over all of a member's parameters (biases and normalisation parameters too),
exactly as `torch.nn.utils.clip_grad_value_(params, clip_value)` and then
`torch.nn.utils.clip_grad_norm_(params, clip_norm)` compute them on a lone run (tests compare the
two bit for bit on the CPU). With both on, the value clip comes first and the norm is that of the
clamped gradient, so the step obeys both bounds and the global norm is the last one applied (the
order of torch's two calls; timm and Composer offer one mode at a time). Presets:
conf/reg/grad_clip.yaml (by norm, 1.0), conf/reg/grad_clip_value.yaml (by value, 0.05).

Where it sits among the other regularizers: it acts in `before_step`, after every `gradient` hook
and just before the optimizer's update, on the gradient the step takes:

- the L2 part of the elastic net (and an L1 part without the proximal step) is a term of the loss,
  so its gradient is clipped with the data's, as a torch loop clips `(loss + penalty).backward()`;
- decoupled weight decay (`reg.weight_decay`) and the L1 proximal step act on the weights, not the
  gradient (before and after the step), so they are not clipped, as AdamW's decay is not;
- SAM clips the second pass's gradient, the one its step takes; its ascent point comes from the
  unclipped first gradient (by norm that makes no difference: e = rho * g / ||g|| ignores g's scale);
- EMA and SWA average the weights the clipped steps reach;
- Adam's moments see the clipped gradient, as after `clip_grad_norm_(...); optimizer.step()`.

Stacks: each member's norm is its own (over its slice of every parameter) and each knob may differ
between members, 0 included (a member that does not clip is multiplied by exactly 1 and clamped to
+-inf: untouched). Everything is computed on the device: no read-back per step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView

EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s: max_norm / (total_norm + 1e-6)


class GradClip:
    """Clamps each member's gradient by value, then scales it to at most its own global norm."""

    name = "grad_clip"
    # the threshold itself, on the gap_vs_strength plot's x axis: a smaller one clips harder
    strength = "clip_norm"
    not_convex = "a step rule that bounds each step's gradient, not an objective"
    knobs = (
        Knob("clip_norm", 0.0, "Gradient clipping by global norm: each step's gradient scaled to an L2 norm of at most "
             "this over all of a member's parameters (torch's clip_grad_norm_).", ">= 0", lambda v: v >= 0,
             since="0.2"),
        Knob("clip_value", 0.0, "Gradient clipping by value: each gradient coordinate clamped to [-clip_value, "
             "clip_value] (torch's clip_grad_value_), before reg.clip_norm.", ">= 0", lambda v: v >= 0, since="0.2"),
    )

    @staticmethod
    def search(values: Any) -> dict[str, str]:
        """Each threshold the preset switches on, on a log scale. The default MLP's gradients on the
        digits have a global norm of 0.2 to 1 (the cnn's up to 4) and a largest coordinate of 0.02 to
        0.3 in their first epochs: from clipping nearly every step to clipping only the spikes."""
        space = {}
        if values["clip_value"] > 0:
            space["clip_value"] = "tag(log, interval(1e-3, 1.0))"
        if values["clip_norm"] > 0:
            space["clip_norm"] = "tag(log, interval(0.05, 5.0))"
        return space

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        by_norm, by_value = values["clip_norm"] > 0, values["clip_value"] > 0
        if by_norm and by_value:
            return "grad_clip_norm_value"
        if by_value:
            return "grad_clip_value"
        return "grad_clip" if by_norm else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        norms = [float(v["clip_norm"]) for v in values]
        limits = [float(v["clip_value"]) for v in values]
        self.active = any(n > 0 for n in norms) or any(c > 0 for c in limits)
        # +inf where a member does not clip by value: clamping to [-inf, inf] leaves every value as it is
        self.limit = stack.vector([c if c > 0 else math.inf for c in limits], skip_if_zero=False) \
            if any(c > 0 for c in limits) else None
        self.max_norm = stack.vector(norms)  # None where no member clips by norm
        self.norm_off = None if self.max_norm is None else self.max_norm == 0

    def before_step(self, stack: StackView) -> None:
        """Clips every member's gradient in place (inside the engine's no_grad update)."""
        import torch

        grads = [p.grad for p in stack.params]
        if self.limit is not None:
            for g in grads:
                bound = stack.per_member(self.limit, g)
                torch.clamp(g, min=-bound, max=bound, out=g)
        if self.max_norm is None:
            return
        # each member's norm of its per-tensor norms, as clip_grad_norm_'s vector_norm(stack(norms))
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        # reciprocal then product: torch's `max_norm / tensor` is `tensor.reciprocal() * max_norm`
        coef = ((total + EPS).reciprocal() * self.max_norm).clamp_(max=1.0).masked_fill_(self.norm_off, 1.0)
        for g in grads:
            g.mul_(stack.per_member(coef, g))
