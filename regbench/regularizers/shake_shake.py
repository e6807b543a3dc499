"""Shake-Shake (Gastaldi 2017): each residual block has two parallel branches, b1 and b2, of the
same architecture and their own weights; in training the block adds alpha * b1 + (1 - alpha) * b2
to its shortcut in the forward pass, and in the backward pass sends the upstream gradient times
beta to b1 and times 1 - beta to b2, alpha and beta ~ U[0, 1] drawn independently per sample
(the paper's "Shake-Shake-Image", its best on CIFAR-10); evaluation adds their expectation,
0.5 * b1 + 0.5 * b2. Preset: conf/reg/shake_shake.yaml.

The second branch is built by the model builder (regbench.models) where this regularizer's
`layers` hook inserts a "mix" layer: a copy of the block's branch, built after every other layer,
so that the network's other weights are those it has without Shake-Shake (the branches' weights,
and so the parameter count of the blocks, double).

Acts on the residual models only (model=resmlp, model=resnet); asked of another model, or beside
ShakeDrop or stochastic depth (which rescale the same branches; ShakeDrop generalises
Shake-Shake to one branch), it is refused in one line.

Stacks: the switch changes the architecture, so it is shared by a stack's members
(`member=False`, as batch norm's); each member draws its alpha and beta from its own stream on
the device, so a member of a stack draws what its lone run draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.drop_path import RESIDUAL_MODELS
from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


class ShakeShake:
    """Mixes each member's two residual branches by per-sample alpha forward and beta backward."""

    name = "shake_shake"
    strength = None  # a switch: no strength axis
    search: dict[str, str] = {}  # a switch (the paper's coefficients have no parameter): nothing to tune
    not_convex = "stochastic"
    knobs = (Knob("shake_shake", False, "Shake-Shake: each residual block gets a second branch, mixed with the "
                  "first by per-sample alpha forward and beta backward, 0.5/0.5 in evaluation (resmlp, resnet).",
                  "true | false", member=False, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "shake_shake" if values["shake_shake"] else None

    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        reg = cfg.reg
        if not reg.shake_shake:
            return None
        if cfg.model.name not in RESIDUAL_MODELS:
            return (f"reg.shake_shake=true shakes residual branches; model={cfg.model.name} has none "
                    "(use model=resmlp or model=resnet)")
        for knob in ("shakedrop", "drop_path"):
            if reg[knob] > 0:
                return (f"reg.shake_shake=true and reg.{knob}={reg[knob]} both rescale the residual branches: "
                        "choose one")
        return None

    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[Any]:
        from regbench.regularizers.branch import ShakeShake as Layer

        # the layer that mixes a block's two branches; the model builder adds the second branch for it
        return [Layer()] if where == "mix" and reg.shake_shake else []

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.active = any(v["shake_shake"] for v in values)

    def forward(self, stack: StackView, h: torch.Tensor, train: bool, twin: torch.Tensor) -> torch.Tensor:
        """h, twin: (K, B, ...), a block's two branches; each member's draws from its own stream."""
        import torch

        from regbench.regularizers.branch import shake_shake

        if not train:
            return shake_shake(h, twin, False)
        return torch.stack([shake_shake(hk, tk, True, member.device_rng(self.name, hk.device))
                            for hk, tk, member in zip(h, twin, stack.members)])
