"""Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"): the
learning rate follows cosine annealing with warm restarts (`optim.schedule=cosine_restarts`, torch's
`CosineAnnealingWarmRestarts(T_0=optim.restart_period, T_mult=optim.restart_mult,
eta_min=optim.min_lr)`), a snapshot of the weights (and batch-norm statistics) is taken at the end of
each cycle, the epoch before each restart, and the model evaluated is the ensemble of the last
M = `reg.snapshots` snapshots: the average of their softmax probabilities (of their outputs for a
regression; regbench.models.mix_outputs). Preset conf/reg/snapshot.yaml: M = 3; the cycles are the
run's schedule knobs (Huang et al. train about 6 cycles and average the last few).

The ensemble is the model: from the first snapshot on, each epoch's train and validation metrics,
early stopping's val_loss and the reported metrics (train, val, test, the gap) are the ensemble's,
and result.json's `weights` says `snapshot ensemble of n` (n <= M, the snapshots it holds). Before
the first snapshot the plain trained weights are evaluated (`weights`: `trained` if the run ends
there). Between snapshots the ensemble does not change, so neither do its rows.

How it meets early stopping: it watches the snapshot epochs only. An epoch that ends no cycle
(before the first snapshot, or within a cycle) neither counts towards trainer.patience nor can be
the best epoch, so patience counts snapshots that did not improve the ensemble's val_loss, and the
best epoch is always a snapshot epoch, whose ensemble is the one restored and reported. A run whose
trainer.max_epochs ends before the first cycle takes no snapshot and reports its trained weights
(a notice says so); an epoch after the last snapshot adds nothing to the ensemble (end
trainer.max_epochs on a cycle's end).

A snapshot is taken at the end of every cycle whatever the ensemble's size; the i-th (from 1) goes
into slot (i - 1) mod M, so the ensemble is always the last min(i, M) snapshots, averaged with equal
weights in slot order.

Memory: M copies of the weights and batch-norm statistics per member (held on the device, saved in
checkpoints, so that an interrupted run resumes bit for bit), and evaluation costs M forward passes.
model.pt (save_model=true) holds the ensemble: a regbench.models.Ensemble of M copies of the network
(`Ensemble.like(network, state)` rebuilds it).

It needs optim.schedule=cosine_restarts (refused in one line otherwise: the snapshots are defined by
its cycles), and chooses the evaluated model, so it is refused beside reg.ema or reg.swa.

Stacks: on or off for every member of a stack, and M shared (the slots are one tensor per stack);
each member keeps its own snapshots, on its own cycles (optim.restart_period and restart_mult may
differ between members).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView


def cycle_ends(period: int, mult: int, max_epochs: int) -> list[int]:
    """The epochs (from 1) that end a cycle of CosineAnnealingWarmRestarts(T_0=period, T_mult=mult)
    stepped once per epoch, up to max_epochs: the epochs after which the rate restarts."""
    out, end, length = [], period, period
    while end <= max_epochs:
        out.append(end)
        length *= mult
        end += length
    return out


def snapshots_by(period: int, mult: int, epoch: int) -> int:
    """How many snapshots have been taken by the end of `epoch`."""
    return len(cycle_ends(period, mult, epoch))


class Snapshot:
    """Each member's last M end-of-cycle snapshots, whose averaged predictions are evaluated."""

    name = "snapshot"
    not_convex = "its reported model is an ensemble of snapshots"
    stack_on_off = True
    # M from 2 (the smallest ensemble) to 6 (Huang et al.'s largest, for CIFAR's 6 cycles); the cycles
    # themselves are the schedule's (optim.restart_period, restart_mult), tuned as the optimizer is
    search = {"snapshots": "int(interval(2, 6))"}
    knobs = (Knob("snapshots", 0, "Snapshot ensemble: the number M of last end-of-cycle snapshots (optim.schedule="
                  "cosine_restarts) whose averaged predictions are evaluated, monitored and reported (0: off).",
                  ">= 0", lambda v: v >= 0, member=False, since="0.2"),)

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "snapshot" if values["snapshots"] > 0 else None

    @staticmethod
    def config_problem(cfg: Any) -> str | None:
        if cfg.reg.snapshots <= 0:
            return None
        if cfg.optim.schedule != "cosine_restarts":
            return (f"reg.snapshots takes a snapshot at the end of each cycle of optim.schedule=cosine_restarts "
                    f"(got optim.schedule={cfg.optim.schedule}): set it, with optim.restart_period")
        for other in ("ema", "swa"):
            if cfg.reg[other] > 0:
                return f"reg.snapshots and reg.{other} both choose the model that is evaluated: choose one"
        return None

    @staticmethod
    def notice(cfg: Any) -> str | None:
        m, o = cfg.reg.snapshots, cfg.optim
        if m <= 0 or o.schedule != "cosine_restarts":
            return None
        n = len(cycle_ends(o.restart_period, o.restart_mult, cfg.trainer.max_epochs))
        if n == 0:
            return (f"reg.snapshots: no cycle of optim.restart_period={o.restart_period} ends within "
                    f"trainer.max_epochs={cfg.trainer.max_epochs}: no snapshot is taken, the trained weights are reported")
        if n < m:
            return (f"reg.snapshots={m}: only {n} cycle(s) end within trainer.max_epochs={cfg.trainer.max_epochs}: "
                    f"the ensemble has at most {n} snapshot(s)")
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.size = max(int(v["snapshots"]) for v in values)  # the same for every member (member=False)
        self.active = self.size > 0
        self.cycles = [(int(m.cfg.optim.restart_period), int(m.cfg.optim.restart_mult)) for m in stack.members]

    def taken(self, k: int, epoch: int) -> int:
        """The snapshots member k has taken by the end of `epoch`."""
        return snapshots_by(*self.cycles[k], epoch)

    def after_epoch(self, stack: StackView, data: Any) -> None:
        """The snapshot of each member whose cycle ends with this epoch, into its next slot."""
        epoch = stack.epoch
        due = [k for k in range(len(stack.members)) if self.taken(k, epoch) > self.taken(k, epoch - 1)]
        if not due:
            return
        live = [t.detach() for t in stack.params + stack.buffers]
        state = stack.reg_state.get(self.name)
        if state is None:  # the slots, made at the first snapshot of any member (a copy: finite, unused until filled)
            state = stack.reg_state[self.name] = {"weights": [t.clone() for _ in range(self.size) for t in live]}
        slots = state["weights"]
        for k in due:
            first = ((self.taken(k, epoch) - 1) % self.size) * len(live)
            for dst, src in zip(slots[first : first + len(live)], live):
                dst[k].copy_(src[k])

    def ensemble(self, stack: StackView, epoch: int) -> Any:
        state = stack.reg_state.get(self.name)
        if state is None:
            return None
        n_params, n = len(stack.params), len(stack.params) + len(stack.buffers)
        slots = state["weights"]
        sets = [(slots[s * n : s * n + n_params], slots[s * n + n_params : (s + 1) * n]) for s in range(self.size)]
        mix = []
        for k in range(len(stack.members)):
            used = min(self.taken(k, epoch), self.size)
            mix.append([1.0 / used if s < used else 0.0 for s in range(self.size)])
        return sets, mix

    def monitored(self, stack: StackView, k: int, epoch: int) -> bool:
        """Only the snapshot epochs: the ensemble changes there and nowhere else."""
        return self.taken(k, epoch) > self.taken(k, epoch - 1)

    def weights_label(self, stack: StackView, k: int, epoch: int) -> str:
        used = min(self.taken(k, epoch), self.size)
        return f"snapshot ensemble of {used}" if used else "trained"
