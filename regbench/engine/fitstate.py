"""Where a member's training stands: its metrics history, early-stopping bookkeeping and the
state of its learning-rate schedule (`FitState`), and the schedule that state continues
(`schedule_of`).

Kept apart from the loop that fills it (regbench.engine.loop), the stack that holds it
(regbench.engine.member.Member.state) and the checkpoint that saves it
(regbench.engine.checkpoint), which all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from regbench.engine.schedules import Schedule


@dataclass
class FitState:
    """Where one member's training stands: its metrics history and early-stopping bookkeeping.

    A checkpoint stores it (at the end of an epoch, see regbench.engine.checkpoint), so that a
    run continues exactly from there.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    best_state: list[torch.Tensor] | None = None  # the member's parameters and batch-norm statistics
    waited: int = 0
    stopped_early: bool = False
    diverged: bool = False
    schedule: dict[str, Any] | None = None  # the learning-rate schedule's state after the last epoch (Schedule.state)

    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        return len(self.history)


def schedule_of(cfg: Any, state: FitState, base_lr: float | None = None) -> Schedule:
    """A member's learning-rate schedule, where `state` left it: restored from its saved state,
    or stepped through the epochs of its history when it holds none (a fresh state: none)."""
    schedule = Schedule(cfg.optim, cfg.trainer.max_epochs, base_lr)
    if state.schedule is not None:
        schedule.load(state.schedule)
    else:
        schedule.replay([row["val_loss"] for row in state.history])
    return schedule
