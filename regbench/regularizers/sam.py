"""Sharpness-aware minimization (SAM; Foret et al. 2021) and its adaptive form (ASAM; Kwon et al.
2021): each step takes the gradient at the worst nearby point of the batch's loss,

    e = rho * T^2 g / ||T g||,    w <- step(w, grad L(w + e))

with g the batch's gradient at w, ||.|| over all of a member's parameters, T = 1 for SAM and, for
ASAM, T = |w| + eta on weight tensors (eta = 0.01; biases unscaled), as the ASAM authors'
reference code (SamsungLabs/ASAM) computes it. The reference scales the parameters whose name
holds `weight` (weight matrices, kernels, batch norm's scales); so does `is_weight`, by the
stack's parameter names, never by position (a model=custom layer without a bias would shift every
(weight, bias) pair after it). The step itself is the base optimizer's (optim=sgd, adam, adamw),
with its rate, momentum and the other regularizers. `reg.sam` is rho (preset conf/reg/sam.yaml:
0.05, the paper's; conf/reg/asam.yaml: 0.5 with reg.sam_adaptive).

Every step costs two forward and backward passes on the same batch; the second draws its own
dropout masks and does not update batch norm's running statistics (momentum 0 in that pass, as
the reference implementations do). The weights are restored exactly (a copy, not w + e - e)
before the step. The training loss recorded is the first pass's.

Stacks: on or off for every member of a stack (a member's step takes the second pass's gradient);
rho and the adaptive switch may differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView

ETA = 0.01  # ASAM's eta: keeps T of a zero weight above zero (the paper's and its code's default)


def is_weight(name: str) -> bool:
    """Whether ASAM scales the parameter `name` (`fc.weight`, `0.bias`): the reference's
    `'weight' in name`, read on the parameter's own name, so that a module called `weights`
    does not make its bias one."""
    return "weight" in name.rsplit(".", 1)[-1]


class SAM:
    """The gradient at each member's ascent point, for the base optimizer's step."""

    name = "sam"
    strength = "sam"
    not_convex = "its step minimises the worst loss near the weights, not the objective"
    stack_on_off = True
    knobs = (
        Knob("sam", 0.0, "SAM: rho, the radius of the neighbourhood whose worst loss each step minimises "
             "(two passes per step).", ">= 0", lambda v: v >= 0, since="0.2"),
        Knob("sam_adaptive", False, "ASAM: the neighbourhood scaled by each weight's size (|w| + 0.01).",
             "true | false", since="0.2", only_when_on=True),
    )

    @staticmethod
    def search(values: Any) -> dict[str, str]:
        """rho on a log scale, for the preset's own neighbourhood: SAM's around Foret et al.'s grid
        (0.01 to 0.5, 0.05 the usual best), ASAM's about ten times larger (Kwon et al.'s 0.5 to 2:
        its neighbourhood is scaled by |w| + 0.01)."""
        if values["sam_adaptive"]:
            return {"sam": "tag(log, interval(0.05, 2.0))"}
        return {"sam": "tag(log, interval(0.01, 0.5))"}

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        if values["sam"] <= 0:
            return None
        return "asam" if values["sam_adaptive"] else "sam"

    @staticmethod
    def notice(cfg: Any) -> str | None:
        if cfg.reg.sam_adaptive and cfg.reg.sam <= 0:
            return "reg.sam_adaptive=true has no effect with reg.sam=0 (rho): set reg.sam, e.g. 0.5 (reg=asam)"
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.rho = [v["sam"] for v in values]
        self.adaptive = [bool(v["sam_adaptive"]) and v["sam"] > 0 for v in values]
        self.active = any(r > 0 for r in self.rho)
        if self.active:
            self.rho_vector = stack.vector(self.rho, skip_if_zero=False)
            # 1 where a member scales by |w| + eta (ASAM), 0 where it does not (SAM)
            self.adaptive_vector = stack.vector([float(a) for a in self.adaptive]) if any(self.adaptive) else None
            self.scaled = [is_weight(name) for name in stack.param_names]

    def gradient(self, stack: StackView, closure: Callable[[], Any]) -> None:
        """Replaces the gradients at w (computed) by those at w + e (the batch again)."""
        import torch

        with torch.no_grad():
            grads = [p.grad for p in stack.params]
            scales = [self.scale(stack, j, p) for j, p in enumerate(stack.params)]  # T, or None for 1
            scaled = [g if t is None else g * t for g, t in zip(grads, scales)]
            # the norm of the per-tensor norms, per member (the reference's torch.norm(torch.stack(...)))
            norm = torch.stack([s.flatten(1).norm(dim=1) for s in scaled]).norm(dim=0)
            factor = self.rho_vector / (norm + 1e-16)
            saved = [p.detach().clone() for p in stack.params]
            for p, s, t in zip(stack.params, scaled, scales):
                e = s if t is None else s * t
                p.add_(e * stack.per_member(factor, e))
        with stack.norm_statistics(momentum=0.0):  # the second pass leaves the running statistics as they are
            closure()
        with torch.no_grad():
            for p, w in zip(stack.params, saved):
                p.copy_(w)

    def scale(self, stack: StackView, j: int, p: Any) -> Any:
        """ASAM's T for parameter j: |w| + eta on weights (`is_weight`), per member where it is
        adaptive; None where it is 1 for every member."""
        if self.adaptive_vector is None or not self.scaled[j]:
            return None
        import torch

        t = p.detach().abs().add_(ETA)
        return torch.where(stack.per_member(self.adaptive_vector, p) > 0, t, torch.ones_like(t))
