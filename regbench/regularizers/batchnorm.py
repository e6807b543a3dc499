"""Batch normalisation (Ioffe & Szegedy 2015) after each hidden layer, before its activation.

Training normalises with the batch's statistics and updates running ones; evaluation uses the
running statistics. A linear model has no hidden layer, so the switch does nothing there and
the run's label leaves it out. Preset: conf/reg/batchnorm.yaml.

Stacks: the switch changes the architecture, so it is shared by a stack's members; the engine
holds each member's normalisation parameters and running statistics, and normalises member k's
features as channels of one batch norm (exactly the per-member computation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.


def acts(model: Any) -> bool:
    """Whether batch norm has a hidden layer to act on in `model` (all but model=linear)."""
    return model.name != "linear"


class BatchNorm:
    """Inserts BatchNorm1d (fully connected) or BatchNorm2d (conv) layers when the model is built."""

    name = "batchnorm"
    strength = None  # a switch: no strength axis
    search: dict[str, str] = {}  # a switch: its study tunes nothing of its own
    not_convex = "not part of the objective"
    knobs = (Knob("batchnorm", False, "Batch normalisation after each hidden layer.", "true | false", member=False),)

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        return "batchnorm" if reg["batchnorm"] and acts(model) else None

    @staticmethod
    def notice(cfg: Any) -> str | None:
        if cfg.reg.batchnorm and not acts(cfg.model):
            return "reg.batchnorm has no effect on model=linear (it has no hidden layer); the run's label leaves it out"
        return None

    @staticmethod
    def layers(reg: Any, where: str, width: int, dims: int) -> list[Any]:
        from torch import nn

        if not (reg.batchnorm and where == "norm"):
            return []
        return [nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width)]

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.active = False  # no hook: its layers are the engine's own batch-norm layers
