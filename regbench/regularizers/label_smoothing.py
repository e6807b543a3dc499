"""Label smoothing (Szegedy et al. 2016): the training cross-entropy against (1 - ε) one-hot + ε / classes.

Classification only (a one-line refusal on regression). Evaluation always uses the plain
cross-entropy against the true labels. Preset: conf/reg/label_smoothing.yaml.

Stacks: ε may differ between members. The smoothed loss's mean rounds differently when
computed for many members at once, so it is computed per member, exactly as a lone run does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


class LabelSmoothing:
    """Each member's training cross-entropy with its own smoothing."""

    name = "label_smoothing"
    strength = "label_smoothing"
    search = {"label_smoothing": "interval(0.01, 0.3)"}  # around Szegedy et al.'s and timm's 0.1
    not_convex = "not regbench's loss"
    knobs = (Knob("label_smoothing", 0.0, "Label smoothing of the training cross-entropy (classification only).",
                  "in [0, 1)", lambda v: 0 <= v < 1),)

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        return "label_smoothing" if reg["label_smoothing"] > 0 else None

    @staticmethod
    def problem(cfg: Any, data: Any) -> str | None:
        if cfg.reg.label_smoothing > 0 and data.task == "regression":
            return f"reg.label_smoothing applies to classification; {cfg.dataset.name} is a regression"
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.eps = [v["label_smoothing"] for v in values]
        self.active = any(e > 0 for e in self.eps)

    def loss(self, stack: StackView, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch
        from torch.nn import functional as F

        return torch.stack([F.cross_entropy(o, t, label_smoothing=e) for o, t, e in zip(out, target, self.eps)])
