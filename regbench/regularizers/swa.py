"""Stochastic weight averaging (SWA; Izmailov et al. 2018), as torch.optim.swa_utils does it:
after the first S = floor(reg.swa * trainer.max_epochs) epochs, the weights at the end of every
epoch enter an equal-weight average (`AveragedModel`'s update, `torch.lerp` with 1 / n), and the
batch-norm statistics of the average are recomputed on the training split (`update_bn`: running
statistics reset, then a cumulative average over one pass in training mode). From epoch S + 2 the
learning rate anneals from the one averaging started with to `reg.swa_lr` over
`reg.swa_anneal_epochs` epochs by a half cosine (`SWALR`); `reg.swa_lr=0` keeps the rate
averaging started with. Preset conf/reg/swa.yaml: averaging over the last quarter (0.75), as the
paper's budgets do, at the rate reached.

The average is the model: from epoch S + 1 each epoch's metrics, early stopping's val_loss and
the reported weights are the average's; result.json's `weights` says `swa`. How it meets early
stopping: early stopping waits for the average. Epochs before averaging starts neither count
towards trainer.patience nor can be the best epoch, so a run with SWA trains at least S + 1
epochs and always reports an average. Set trainer.max_epochs to the budget you mean: S is a
fraction of it.

Where regbench differs from torch's recipe: update_bn passes over the training split in order,
in batches of trainer.batch_size, without the training batch hooks (no augmentation or mixing;
dropout and other layers in training mode, as update_bn has them, their draws not taken from the
training streams).

Stacks: on or off for every member of a stack; the start, rate and annealing may differ.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView


def start_epoch(fraction: float, max_epochs: int) -> int:
    """S: the epochs trained before the first one whose weights are averaged."""
    return math.floor(fraction * max_epochs)


def swalr(lr0: float, swa_lr: float, anneal_epochs: int, steps: int) -> float:
    """torch.optim.swa_utils.SWALR's rate (cos) after `steps` of its steps, from `lr0`."""
    t = max(0.0, min(1.0, steps / max(1, anneal_epochs)))
    alpha = (1 - math.cos(math.pi * t)) / 2
    return swa_lr * alpha + lr0 * (1 - alpha)


class SWA:
    """Each member's equal-weight average of its end-of-epoch weights, evaluated in their place."""

    name = "swa"
    strength = "swa"
    not_convex = "its reported weights are an average of the iterates"
    stack_on_off = True
    # where averaging starts, as a share of trainer.max_epochs: Izmailov et al.'s 0.75 in the middle. swa_lr
    # and the annealing are left out: a rate is the optimizer's scale, not the regularizer's
    search = {"swa": "interval(0.5, 0.9)"}
    knobs = (
        Knob("swa", 0.0, "SWA: the fraction of trainer.max_epochs after which the end-of-epoch weights are averaged; "
             "the average is evaluated, monitored and reported.", "in [0, 1)", lambda v: 0 <= v < 1, since="0.2"),
        Knob("swa_lr", 0.0, "SWA's learning rate, reached by cosine annealing (0: the rate averaging starts with).",
             ">= 0", lambda v: v >= 0, since="0.2", only_when_on=True),
        Knob("swa_anneal_epochs", 10, "Epochs over which the rate anneals to reg.swa_lr (SWALR's anneal_epochs).",
             ">= 0", lambda v: v >= 0, since="0.2", only_when_on=True),
    )

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "swa" if values["swa"] > 0 else None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.values = values
        self.active = any(v["swa"] > 0 for v in values)
        self.starts = [start_epoch(v["swa"], m.cfg.trainer.max_epochs) for v, m in zip(values, stack.members)]

    @staticmethod
    def lr(stack: StackView, values: list[dict[str, Any]], lrs: list[float]) -> list[float]:
        """The members' rates for the epoch being trained (stack.epoch): after epoch S + 1, SWALR's
        from the rate epoch S + 1 trained with (its metrics.csv row's: host memory, kept by a
        checkpoint with the history)."""
        out = list(lrs)
        for k, (v, member) in enumerate(zip(values, stack.members)):
            start = start_epoch(v["swa"], member.cfg.trainer.max_epochs)
            if v["swa"] > 0 and stack.epoch > start + 1:
                lr0 = member.state.history[start]["lr"]
                out[k] = swalr(lr0, v["swa_lr"] if v["swa_lr"] > 0 else lr0, v["swa_anneal_epochs"], stack.epoch - start - 1)
        return out

    def after_epoch(self, stack: StackView, data: Any) -> None:
        import torch

        epoch, live = stack.epoch, [t.detach() for t in stack.params + stack.buffers]
        state = stack.reg_state.setdefault(self.name, {})
        if "weights" not in state:
            state["weights"] = [t.clone() for t in live]
        averaged = state["weights"]
        started = []
        with torch.no_grad():
            for k, start in enumerate(self.starts):
                n = epoch - start  # the epochs averaged, this one included
                for avg, t in zip(averaged, live):
                    if n <= 1:  # not started (the average is the weights themselves), or its first copy
                        avg[k].copy_(t[k])
                    else:
                        avg[k].lerp_(t[k], 1.0 / n)
                if n >= 1:
                    started.append(k)
            if started and stack.buffers:
                self.update_bn(stack, data, started)

    def update_bn(self, stack: StackView, data: Any, started: list[int]) -> None:
        """torch.optim.swa_utils.update_bn on the averages of the members in `started`."""
        n_params = len(stack.params)
        averaged = stack.reg_state[self.name]["weights"]
        buffers = averaged[n_params:]
        kept = {k: [b[k].clone() for b in buffers] for k in range(len(stack.members)) if k not in started}
        for role, b in zip(stack.buffer_roles, buffers):  # reset_running_stats
            b.fill_(0.0 if role == "running_mean" else 1.0)
        # the passes draw dropout masks (training mode, as update_bn's): the training streams go on as if they had not
        streams = [m.stream_states() for m in stack.members]
        n, batch = data.x_train.shape[0], stack.members[0].cfg.trainer.batch_size
        n_used = n - 1 if n % batch == 1 and n > 1 else n  # a batch of one cannot train batch norm
        with stack.evaluating():
            for i, start in enumerate(range(0, n_used, batch)):
                x = data.prepare(data.x_train[start : min(start + batch, n_used)])
                with stack.norm_statistics(momentum=1.0 / (i + 1)):  # momentum=None: the cumulative average
                    stack.forward(x.unsqueeze(0).expand(len(stack.members), *x.shape), train=True)
        for member, saved in zip(stack.members, streams):
            member.load_streams(saved, stack.device)
        for k, saved in kept.items():
            for b, s in zip(buffers, saved):
                b[k].copy_(s)

    def weights(self, stack: StackView) -> Any:
        state = stack.reg_state.get(self.name, {})
        if "weights" not in state:
            return None
        n = len(stack.params)
        return state["weights"][:n], state["weights"][n:]

    def monitor_from(self, stack: StackView, k: int) -> int:
        """The first epoch early stopping watches: the first averaged one."""
        return self.starts[k] + 1

    def weights_label(self, stack: StackView, k: int, epoch: int) -> str:
        return "swa" if epoch > self.starts[k] else "trained"
