"""An exponential moving average of the weights (EMA; Polyak & Juditsky 1992, as timm's ModelEma
and torch.optim.swa_utils ship it): after every optimizer step

    ema = decay * ema + (1 - decay) * weights        (the first step copies the weights)

over every parameter and the batch-norm statistics, as `torch.optim.swa_utils.AveragedModel(model,
multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)` computes it (`torch.lerp`, the
same rounding). `reg.ema` is the decay; preset conf/reg/ema.yaml at 0.999.

The average is the model: each epoch's train and validation metrics, early stopping's val_loss
and the reported weights are the average's; result.json's `weights` says `ema`. The trained
weights go on underneath, untouched by the average.

Decay and the size of the dataset: the average forgets with a time constant of 1 / (1 - decay)
steps. ImageNet's 0.9998 is about one epoch there (5000 steps of 256 images); on the digits
(1149 training images, 18 steps an epoch) 0.999 is about 55 epochs, longer than a default run
lasts, so the average still carries the first epochs' weights when early stopping ends it; 0.99
(about 5 epochs) suits it better. The benchmark page's comparison (docs/explanation/benchmark.md) shows both.

Stacks: on or off for every member of a stack (the average replaces the evaluated weights);
the decay may differ between members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView


class EMA:
    """The exponential moving average of each member's weights, evaluated in their place."""

    name = "ema"
    strength = "ema"
    not_convex = "its reported weights are an average of the iterates"
    stack_on_off = True
    # the time constant 1 / (1 - decay) from 10 to 10000 steps, about evenly on a log scale (a uniform
    # draw of the decay would put nine in ten trials below 0.99): a few epochs of the digits (0.99)
    # to ImageNet's (0.9998)
    search = {"ema": "choice(0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)"}
    knobs = (Knob("ema", 0.0, "EMA of the weights: the decay per optimizer step; the average is evaluated, monitored "
                  "and reported.", "in [0, 1)", lambda v: 0 <= v < 1, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "ema" if values["ema"] > 0 else None

    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        if cfg.reg.ema > 0 and cfg.reg.swa > 0:
            return "reg.ema and reg.swa both average the weights that are evaluated: choose one"
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.decays = [v["ema"] for v in values]
        self.active = any(d > 0 for d in self.decays)
        self.weight = None  # the lerp weight 1 - decay: one number, or one per member
        if self.active and len(set(self.decays)) == 1:
            self.weight = 1.0 - self.decays[0]
        elif self.active:
            import torch

            self.weight = torch.tensor([1.0 - d for d in self.decays], dtype=torch.float32, device=stack.device)

    def after_step(self, stack: StackView) -> None:
        """Runs after every other regularizer's after_step (the engine orders it last), so the
        average takes the weights as the step left them (after a proximal step, a projection)."""
        live = [t.detach() for t in stack.params + stack.buffers]
        state = stack.reg_state.get(self.name)
        if state is None:  # AveragedModel's first update: a copy
            stack.reg_state[self.name] = {"weights": [t.clone() for t in live]}
            return
        for avg, t in zip(state["weights"], live):
            avg.lerp_(t, self.weight if isinstance(self.weight, float) else stack.per_member(self.weight, t))

    def weights(self, stack: StackView) -> Any:
        state = stack.reg_state.get(self.name)
        if state is None:
            return None
        n = len(stack.params)
        return state["weights"][:n], state["weights"][n:]

    def weights_label(self, stack: StackView, k: int, epoch: int) -> str:
        return "ema"
