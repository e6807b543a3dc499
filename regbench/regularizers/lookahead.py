"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") around any
of regbench's optimizers (optim=sgd, adam, adamw): each member keeps slow weights beside the
trained (fast) ones, and every k optimizer steps

    slow += alpha * (fast - slow);  fast = slow

over every parameter (batch-norm statistics are not parameters: they run on, as in timm's and the
authors' wrappers). The update rounds as timm's `timm.optim.Lookahead.update_slow` does
(`slow.add_(fast - slow, alpha=alpha)`, then a copy). `reg.lookahead_k` is k (0: off) and
`reg.lookahead_alpha` alpha; preset conf/reg/lookahead.yaml at the paper's k = 5, alpha = 0.5.

What regbench chooses, and why:

- The slow weights start at the weights before the first step (the paper's phi_0 = theta_0, as the
  authors' code and Auto-PyTorch's, Regularization Cocktails', cache them when the wrapper is
  built). timm creates its slow buffer at the first sync, from the fast weights of that moment, so
  that its first sync changes nothing; the tests compare with timm's wrapper whose buffer holds the
  initial weights from the start.
- The optimizer's state (momentum, Adam's moments and step count) is the inner optimizer's and is
  left as it is at a sync, as timm does (the authors' `pullback_momentum="none"`).
- The inner step is the whole of regbench's update: the regularizers' before_step (decoupled weight
  decay), the optimizer's step and their after_step (the L1 proximal step) come first, and the sync
  then pulls the proximal iterate towards the slow weights, as timm's wrapper around an optimizer
  whose step ends with the proximal step would. The weights a sync leaves are an interpolation, so
  they have exact zeros only where the slow weights have them too: with reg=l1, an epoch that ends on
  a sync step reports fewer exact zeros than one that ends between syncs (the next step's proximal
  step zeroes them again).
- An averaging regularizer's after_step (EMA) runs after the sync (the engine orders it last), and
  SWA averages the weights at the epoch's end: both average the fast weights, the weights the model
  trains and evaluates.
- The fast weights are evaluated, monitored and reported (result.json's `weights`: `trained`), as
  timm's evaluation of a Lookahead model is, with no extra sync at the epoch's end (timm's train.py
  calls sync_lookahead() there, which adds an outer step off the k-step cycle and so changes the
  training; the authors' code offers to evaluate the slow weights instead). Early in a cycle the
  fast weights are near the slow ones; late in it they are up to k - 1 steps ahead.
- Checkpoints hold the slow weights (the stack's `reg_state`) and the step counter (the stack's
  step, which every checkpoint holds), so a run interrupted mid-cycle resumes bit for bit.

Stacks: every knob may differ between members (a member with k = 0 never syncs); a stack of members
whose k and alpha are all equal syncs as one tensor operation, others member by member.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

if TYPE_CHECKING:
    from regbench.regularizers.contract import StackView


class Lookahead:
    """Each member's slow weights, synced with its trained weights every k optimizer steps."""

    name = "lookahead"
    not_convex = "it changes the optimizer's iterates (optim=fista solves the objective itself)"
    # Regularization Cocktails' space (Kadra et al. 2021; Auto-PyTorch's Lookahead: la_steps an integer
    # in [5, 10], la_alpha in [0.5, 0.8]), where Zhang et al. found Lookahead robust
    search = {"lookahead_k": "int(interval(5, 10))", "lookahead_alpha": "interval(0.5, 0.8)"}
    knobs = (
        Knob("lookahead_k", 0, "Lookahead: the optimizer steps between syncs of the slow weights (0: off); the fast "
             "weights are evaluated.", ">= 0", lambda v: v >= 0, since="0.2"),
        Knob("lookahead_alpha", 0.5, "Lookahead's slow step size: every k steps slow += alpha * (fast - slow), then "
             "fast = slow.", "in (0, 1]", lambda v: 0 < v <= 1, since="0.2", only_when_on=True),
    )

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "lookahead" if values["lookahead_k"] > 0 else None

    @staticmethod
    def notice(cfg: Any) -> str | None:
        if cfg.reg.lookahead_k <= 0 and cfg.reg.lookahead_alpha != 0.5:
            return ("reg.lookahead_alpha has no effect with reg.lookahead_k=0: set reg.lookahead_k, e.g. 5 "
                    "(reg=lookahead)")
        return None

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.ks = [int(v["lookahead_k"]) for v in values]
        self.alphas = [float(v["lookahead_alpha"]) for v in values]
        self.active = any(k > 0 for k in self.ks)
        # one tensor operation for the whole stack where every member syncs alike (a lone run's case)
        self.together = len(set(self.ks)) == 1 and len(set(self.alphas)) == 1
        if self.active and self.name not in stack.reg_state:
            # The slow weights start where training starts: built with the stack, before its first
            # step (and before any before_step hook moves the weights). A resumed run's checkpoint
            # then puts the saved ones in their place; members leaving keep theirs (the engine's).
            stack.reg_state[self.name] = {"slow": [p.detach().clone() for p in stack.params]}

    def after_step(self, stack: StackView) -> None:
        """The sync of every member whose k divides the step count (the stack's step, counted from 1
        and saved in checkpoints: timm's `lookahead_step`). Runs after the other regularizers'
        after_step (the registry's order: the proximal step first) and before an average's."""
        step = stack.step
        due = [m for m, k in enumerate(self.ks) if k > 0 and step % k == 0]
        if not due:
            return
        slow = stack.reg_state[self.name]["slow"]
        if self.together:
            for s, fast in zip(slow, stack.params):
                s.add_(fast - s, alpha=self.alphas[0])
                fast.copy_(s)
            return
        for m in due:  # each member's slice, as its lone run computes it
            for s, fast in zip(slow, stack.params):
                s[m].add_(fast[m] - s[m], alpha=self.alphas[m])
                fast[m].copy_(s[m])
