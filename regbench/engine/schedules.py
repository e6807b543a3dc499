"""Learning-rate schedules (`optim.schedule`): the rate of each epoch, in plain Python floats.

The rate is set once per epoch, at its start, and stepped once at its end, as torch's
schedulers are in the usual loop

    for epoch in range(max_epochs):
        train(...)                    # every step of the epoch uses one rate
        val_loss = validate(...)
        scheduler.step()              # ReduceLROnPlateau: scheduler.step(val_loss)

Each schedule reproduces a `torch.optim.lr_scheduler` composition step for step, bit for
bit (tests/test_schedules.py uses torch as the oracle): torch's chainable schedulers compute
a rate from the previous one (a recurrence, not the closed form), so this module runs the
same recurrences on the same floats. It builds no torch optimizer or scheduler: doing so
imports torch._dynamo (~0.7 s), which regbench avoids.

| schedule          | torch equivalent (base lr = optim.lr, N = trainer.max_epochs)                        |
| ----------------- | ------------------------------------------------------------------------------------ |
| `constant`        | none: optim.lr in every epoch (the default; regbench before schedules)              |
| `cosine`          | CosineAnnealingLR(T_max=N, eta_min=min_lr)                                           |
| `warmup_cosine`   | SequentialLR([LinearLR(start_factor=1/(W+1), end_factor=1, total_iters=W),          |
|                   |               CosineAnnealingLR(T_max=N-W, eta_min=min_lr)], milestones=[W]),        |
|                   | W = warmup_epochs: epochs 1..W use lr*e/(W+1) (up to rounding), then cosine from lr  |
| `step`            | StepLR(step_size, gamma)                                                             |
| `cosine_restarts` | CosineAnnealingWarmRestarts(T_0=restart_period, T_mult=restart_mult, eta_min=min_lr) |
| `plateau`         | ReduceLROnPlateau(mode="min", factor=plateau_factor, patience=plateau_patience,     |
|                   |                   threshold=1e-4, threshold_mode="rel", cooldown=0,                  |
|                   |                   min_lr=min_lr, eps=1e-8), stepped with each epoch's val_loss       |

A schedule's whole state is a few numbers (`state()`): a checkpoint stores it (in FitState,
see regbench.engine.checkpoint) and `load` puts it back, so a resumed run continues the
schedule bit for bit; for all but `plateau` it is also a function of the epoch alone.

The schedules' names and the knobs each reads are config metadata, declared with each knob
(regbench.config.schema; regbench.config.keys: SCHEDULES, SCHEDULE_KNOBS), which also says
that a knob the run's schedule does not read is left out of its config_hash.
"""

from __future__ import annotations

import math
from typing import Any

from regbench.config.keys import SCHEDULES

# ReduceLROnPlateau's defaults, kept: an improvement is a val_loss below best * (1 - 1e-4);
# a reduction smaller than 1e-8 is not made; no cooldown.
PLATEAU_THRESHOLD = 1e-4
PLATEAU_EPS = 1e-8


class Schedule:
    """The learning rate of one run, epoch by epoch.

    `lr` is the rate of the coming epoch; `step(val_loss)` is called once at the end of each
    epoch (val_loss is read by `plateau` only). Floats in, floats out.

    Args:
        optim: the optim config node (schedule, lr and the schedule's knobs).
        max_epochs: trainer.max_epochs, the cosine horizon.
        base_lr: the rate the schedule starts from; optim.lr when None.
    """

    def __init__(self, optim: Any, max_epochs: int, base_lr: float | None = None) -> None:
        self.kind = str(optim.schedule)
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}")
        self.base = float(optim.lr if base_lr is None else base_lr)
        self.min_lr = float(optim.min_lr)
        self.max_epochs = int(max_epochs)
        self.warmup = int(optim.warmup_epochs)
        self.step_size, self.gamma = int(optim.step_size), float(optim.gamma)
        self.period, self.mult = int(optim.restart_period), int(optim.restart_mult)
        self.patience, self.factor = int(optim.plateau_patience), float(optim.plateau_factor)
        # The state: torch's last_epoch (steps taken), the current rate, and per schedule
        # CosineAnnealingWarmRestarts' T_cur and T_i, ReduceLROnPlateau's best and bad epochs.
        self.steps = 0
        self.t_cur, self.t_i = 0, self.period
        self.best, self.bad_epochs = math.inf, 0
        self.lr = self._first()

    @property
    def constant(self) -> bool:
        return self.kind == "constant"

    def _first(self) -> float:
        """The rate of the first epoch: what each torch scheduler's construction leaves in the optimizer."""
        base = self.base
        if self.kind == "warmup_cosine":  # LinearLR's initial step (last_epoch 0): lr * start_factor
            return base * self._start_factor()
        if self.kind == "cosine_restarts":  # step(0): the closed form at T_cur = 0
            return self._restart_rate()
        return base  # constant, cosine, step (its initial step keeps the rate), plateau

    def _start_factor(self) -> float:
        return 1.0 / (self.warmup + 1)

    def _restart_rate(self) -> float:
        return self.min_lr + (self.base - self.min_lr) * (1 + math.cos(math.pi * self.t_cur / self.t_i)) / 2

    def step(self, val_loss: float = math.nan) -> None:
        """Ends an epoch: the rate moves to that of the next one."""
        self.steps += 1
        t, lr = self.steps, self.lr
        kind = self.kind
        if kind == "constant":
            return
        if kind == "cosine":
            self.lr = _cosine(t, lr, self.base, self.min_lr, self.max_epochs)
        elif kind == "warmup_cosine":
            w = self.warmup
            if t < w:  # LinearLR.step(): its recurrence
                s = self._start_factor()
                self.lr = lr * (1.0 + (1.0 - s) / (w * s + (t - 1) * (1.0 - s)))
            elif t == w:  # SequentialLR at the milestone: CosineAnnealingLR._update_lr(0), the closed form at 0
                self.lr = self.min_lr + (self.base - self.min_lr) * (1 + math.cos(math.pi * 0 / (self.max_epochs - w))) / 2
            else:  # CosineAnnealingLR.step(), its last_epoch counted from the milestone
                self.lr = _cosine(t - w, lr, self.base, self.min_lr, self.max_epochs - w)
        elif kind == "step":
            if t % self.step_size == 0:
                self.lr = lr * self.gamma
        elif kind == "cosine_restarts":
            self.t_cur += 1
            if self.t_cur >= self.t_i:
                self.t_cur = self.t_cur % self.t_i
                self.t_i = self.t_i * self.mult
            self.lr = self._restart_rate()
        else:  # plateau
            current = float(val_loss)
            if current < self.best * (1.0 - PLATEAU_THRESHOLD):
                self.best, self.bad_epochs = current, 0
            else:
                self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                new = max(lr * self.factor, self.min_lr)
                if lr - new > PLATEAU_EPS:
                    self.lr = new
                self.bad_epochs = 0

    def rates(self, epochs: int) -> list[float]:
        """The rates of the next `epochs` epochs, for a schedule that reads no val_loss (a copy steps)."""
        if self.kind == "plateau":
            raise ValueError("plateau's rates depend on the val_loss of each epoch")
        twin = Schedule.__new__(Schedule)
        twin.__dict__.update(self.__dict__)
        out = []
        for _ in range(epochs):
            out.append(twin.lr)
            twin.step()
        return out

    def state(self) -> dict[str, Any]:
        """The state after the epochs stepped so far: plain numbers (what weights_only loading accepts)."""
        return {"kind": self.kind, "steps": self.steps, "lr": self.lr, "t_cur": self.t_cur, "t_i": self.t_i,
                "best": self.best, "bad_epochs": self.bad_epochs}

    def load(self, state: dict[str, Any]) -> None:
        """Puts back what `state` returned.

        Raises:
            KeyError, TypeError, ValueError: not a state of this schedule (see `check_state`).
        """
        check_state(state)
        if state["kind"] != self.kind:
            raise ValueError(f"the checkpoint's schedule is {state.get('kind')!r}, not {self.kind!r}")
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        self.t_cur, self.t_i = int(state["t_cur"]), int(state["t_i"])
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])

    def replay(self, val_losses: list[float]) -> None:
        """Steps once per finished epoch, from the start: the state a checkpoint without one
        (written before schedules existed, so by a constant-rate run) implies."""
        for loss in val_losses:
            self.step(loss)


STATE_TYPES = {"kind": (str,), "steps": (int,), "lr": (float, int), "t_cur": (int,), "t_i": (int,),
               "best": (float, int), "bad_epochs": (int,)}


def check_state(state: Any) -> None:
    """Raises KeyError, TypeError or ValueError unless `state` is what `Schedule.state` returns
    (a damaged checkpoint is then reported as incomplete, and the run starts afresh)."""
    if not isinstance(state, dict):
        raise TypeError(f"a schedule state is a dict, not {type(state).__name__}")
    for key, types in STATE_TYPES.items():
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            raise TypeError(f"schedule state {key!r} is {type(state[key]).__name__}")
    if state["kind"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {state['kind']!r}")


def _cosine(t: int, lr: float, base: float, eta_min: float, t_max: int) -> float:
    """CosineAnnealingLR.get_lr at last_epoch t >= 1 from the previous rate `lr`: its recurrence
    (the branch for a scheduler built with last_epoch > 0 never applies here)."""
    if (t - 1 - t_max) % (2 * t_max) == 0:
        return lr + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
    return (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * (lr - eta_min) + eta_min
