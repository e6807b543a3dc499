"""The training loop: epochs of every member of a stack, honest evaluation, early stopping.

Batches are index slices of tensors already on the device, and the loop makes one host sync
per epoch (reading that epoch's metrics of every member); nothing in the inner loop waits for
the device. A lone run is a stack of one (regbench.engine.runner); the stacked launcher's
stacks go through the very same loop (regbench.engine.sweep); the steps of an epoch are
regbench.engine.steps', the state it leaves regbench.engine.fitstate's.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.engine import steps


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str, batch: int,
             inputs: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Eval-mode, penalty-free metrics of one network on one split: tensor([loss, acc]) or tensor([mse, r2]).

    The final metrics of every run come from here, on the weights it reports: random layers off,
    batch norm with its running statistics, plain cross-entropy (no regularizer's loss) or mean
    squared error, on clean inputs (regbench.engine.steps.evaluate computes the same for every member
    of a stack at the end of each epoch).

    `inputs(stored_batch, first_row)`: the network's input made of a stored batch and the index of
    its first row in the split, in place of `data.prepare` (a corrupted copy: regbench.engine.shift).
    """
    model.eval()
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    hits = torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch):
        stored = x[start : start + batch]
        out = model(data.prepare(stored) if inputs is None else inputs(stored, start))
        target = y[start : start + batch]
        if data.task == "classification":
            loss_sum += F.cross_entropy(out, target, reduction="sum")
            hits += (out.argmax(dim=1) == target).sum()
        else:
            loss_sum += F.mse_loss(out, target, reduction="sum")
    n = x.shape[0]
    if data.task == "classification":
        return torch.stack([loss_sum / n, hits / n])
    total_ss = (y.double() - y.double().mean()).pow(2).sum()
    return torch.stack([loss_sum / n, 1.0 - loss_sum / total_ss])


def fit(
    stack: Any,
    data: Data,
    first_epoch: int = 0,
    on_row: Callable[[Any, dict[str, float]], None] = lambda member, row: None,
    on_done: Callable[[Any], None] = lambda member: None,
    on_epoch_end: Callable[[int], None] = lambda epoch: None,
) -> None:
    """Trains every member of `stack` (regbench.engine.stack.Stack) until it is done.

    Each member's learning rate follows its own optim.schedule (regbench.engine.schedules): set at
    the start of each epoch (decoupled decay and the L1 proximal step read it too), stepped at its
    end with the epoch's val_loss, and recorded in the row's `lr`.

    A member is done after max_epochs, when early stopping stops it (trainer.patience epochs
    without an improvement of val_loss by more than min_delta), or when a loss turns
    non-finite (diverged). Then its reported weights go into its own network (the best epoch's
    with early stopping on or after divergence, else the last ones; `Stack.conclude`), it
    leaves the stack and `on_done(member)` is called, while the others go on.

    Args:
        first_epoch: epochs already trained (a resumed stack).
        on_row: called with each member's row of each epoch (metrics.csv's columns).
        on_epoch_end: called after every epoch that training goes on from; it decides whether
            to write a checkpoint, and may raise to stop (an interrupt).
    """
    tr = stack.members[0].cfg.trainer  # max_epochs and the batch sizes are shared by a stack
    metric = "acc" if data.task == "classification" else "r2"
    for epoch in range(first_epoch + 1, tr.max_epochs + 1):
        start = time.perf_counter()
        stack.follow_schedules()
        step_sums = steps.train_epoch(stack, data, tr.batch_size)
        stack.end_epoch(data)  # e.g. an average of this epoch's weights, before they are evaluated
        scores = [step_sums.double()[:, None]] + [steps.evaluate(stack, data, s, tr.eval_batch_size) for s in ("train", "val")]
        rows = torch.cat(scores, dim=1).tolist()  # the epoch's one host sync
        seconds = time.perf_counter() - start
        finished = []
        for k, (member, (step_sum, train_loss, train_m, val_loss, val_m)) in enumerate(zip(stack.members, rows)):
            row = {"epoch": epoch, "train_loss": train_loss, f"train_{metric}": train_m, "val_loss": val_loss,
                   f"val_{metric}": val_m, "lr": stack.lr[k], "seconds": seconds}
            member.state.history.append(row)
            on_row(member, row)
            if _early_stopping(member, row, step_sum, stack, k, epoch == tr.max_epochs):
                finished.append(k)
            else:  # stepped at the end of every epoch that training goes on from
                member.schedule.step(val_loss)
                member.state.schedule = member.schedule.state()
        for k in finished:
            stack.conclude(k)
            on_done(stack.members[k])
        live = [k for k in range(len(stack.members)) if k not in finished]
        if not live:
            return
        if finished:
            stack.keep(live)
        on_epoch_end(epoch)


def _early_stopping(member: Any, row: dict[str, float], step_sum: float, stack: Any, k: int, last: bool) -> bool:
    """Applies the rules of early stopping and divergence to one member's new row; True when it is done."""
    state, tr = member.state, member.cfg.trainer
    if not all(math.isfinite(v) for v in (step_sum, row["train_loss"], row["val_loss"])):
        state.diverged = True
        return True
    if not stack.monitored(k, row["epoch"]):  # an averaging regularizer's: early stopping waits for the average
        return last
    if row["val_loss"] < state.best_loss - tr.min_delta:
        state.best_loss, state.best_epoch, state.waited = row["val_loss"], row["epoch"], 0
        state.best_state, member.best_steps = stack.member_state(k, row["epoch"]), stack.step
    else:
        state.waited += 1
        if tr.patience is not None and state.waited >= tr.patience:
            state.stopped_early = True
            return True
    return last
