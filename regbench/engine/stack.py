"""The engine's model: K members trained as one batched network (a lone run is a stack of one).

`Stack` holds the live members' stacked parameters, optimizer state, batch-norm statistics and
regularizers, and dispatches the regularizers' hooks: the engine has no if-ladder of
regularizers, they meet training only through their hooks (regbench.regularizers.contract). It composes
the rest of the engine: its members and their random streams (regbench.engine.member), the
network compiled into stacked tensors and its forward (regbench.engine.network), the optimizer
step (regbench.engine.optimizer); a member's share of it for a checkpoint is
regbench.engine.checkpoint's, and the training and evaluation steps over it are
regbench.engine.steps'. Each member keeps what it would have alone: the initial weights and
data order of its seed (built by the very code a lone run uses), its own random streams,
learning rate, regularizer knobs and early stopping.

A stack of one computes exactly what the plain `nn.Module` computes (the same kernels, called on
the member's slice). With K > 1 on the CPU with one torch thread a member's numbers equal those of
its lone run bit for bit for fully connected models (the losses that would round differently
batched are computed per member); with more threads, or with a conv net's grouped convolution,
a batched kernel splits its sums differently and the last bits differ, within a tolerance
tests/test_stacked.py checks.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import torch
from torch import nn

from regbench.data.datasets import Data
from regbench.engine import optimizer
from regbench.engine.member import Member
from regbench.engine.network import NORMS, WEIGHT, Network, layers, tensor_names, tensor_roles, tensors
from regbench.models import Ensemble, mix_outputs
from regbench.regularizers.contract import acts, defines


class Stack:
    """The live members' parameters, optimizer state, batch-norm statistics and regularizers.

    Args:
        members: the jobs, sharing one structure (regbench.engine.grouping.stack_key).
        template: a member's network with every layer any member has (a regularizer's layers
            that only some members have).
        optim: the shared `optim` config node (its name and momentum; each member's lr is its own).
        regularizers: (class, values) pairs from `regbench.regularizers.regularizers`.
        input_range: the data's bounds on a prepared input (regbench.data.datasets.Data.input_range).

    Attributes a regularizer reads (besides those its hooks are documented with):
        params, buffers: the stacked parameters and batch-norm statistics, member dimension first.
        param_names, buffer_names: their names (`0.weight`, `fc.bias`, `3.running_var`).
        param_roles, buffer_roles: their roles (regbench.engine.network.tensor_roles: `weight`,
            `bias`, `norm_weight`, `norm_bias`, `other`; `running_mean`, `running_var`).
        penalised: which parameters are weight matrices and kernels (role `weight`).
        norm_momentum: the batch-norm momentum in force (`norm_statistics`), None: each layer's.
    """

    def __init__(self, members: list[Member], template: nn.Module, optim: Any, regularizers: list[tuple[type, Any]],
                 input_range: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.members = members
        self.input_range = input_range
        self.optim = optim
        self.adam = optim.name != "sgd"
        self.betas, self.eps = optimizer.adam_defaults(optim.name)
        self.step = 0
        self.regularizer_classes = regularizers
        self.network = Network(template, len(members))
        self.n_outputs = self.network.n_outputs
        per_member = [tensors(m.model) for m in members]
        self.param_names, self.buffer_names = tensor_names(members[0].model)
        self.param_roles, self.buffer_roles = tensor_roles(members[0].model)
        self.penalised = [role == WEIGHT for role in self.param_roles]
        self.params = [torch.stack([t[0][j].detach() for t in per_member]).requires_grad_()
                       for j in range(self.network.n_params)]
        self.buffers = [torch.stack([t[2][j] for t in per_member]) for j in range(self.network.n_buffers)]
        self.moments: list[list[torch.Tensor]] = [[] for _ in self.params]  # Adam: m, v; SGD: momentum
        # Regularizers' own per-member tensors (an average of the weights...), by regularizer name
        # and key, each a list of tensors with the member dimension first: taken out with members
        # that leave (`keep`) and saved in each member's checkpoint (regbench.engine.checkpoint.share).
        # The regularizer objects themselves are rebuilt by `settings` and hold no state.
        self.reg_state: dict[str, dict[str, list[torch.Tensor]]] = {}
        self.norm_momentum: float | None = None  # set only by `norm_statistics`
        self.settings()

    # ------------------------------------------------------------------ per-member settings
    def settings(self) -> None:
        """Per-member learning rates and regularizers, rebuilt whenever members leave or a
        member's learning rate changes (`follow_schedules`): the step, the decay and the proximal
        threshold read each member's current rate."""
        cfgs = [m.cfg for m in self.members]
        self.device = self.params[0].device
        self.lr = self.scheduled_lrs()
        self.neg_lr = self.vector([-lr for lr in self.lr], skip_if_zero=False)
        self.neg_lr64 = torch.tensor([-lr for lr in self.lr], dtype=torch.float64, device=self.device)
        live = []
        for cls, values in self.regularizer_classes:
            reg = cls([values(c.reg) for c in cfgs], self)
            # `active` is declared by the contract: by default on where a member's label says it acts
            if acts(reg, lambda: (cls.label(values(c.reg), c.model) for c in cfgs)):
                live.append(reg)
        self.by_name = {reg.name: reg for reg in live}  # the live owners of inserted layers
        self.batch_hooks = [r for r in live if defines(r, "batch")]
        self.penalty_hooks = [r for r in live if defines(r, "penalty")]
        self.before_step_hooks = [r for r in live if defines(r, "before_step")]
        # an average takes the weights as every other after_step (a proximal step, a projection) left them
        self.after_step_hooks = sorted((r for r in live if defines(r, "after_step")),
                                       key=lambda r: defines(r, "weights") or defines(r, "ensemble"))
        self.gradient_hooks = [r for r in live if defines(r, "gradient")]
        self.after_epoch_hooks = [r for r in live if defines(r, "after_epoch")]
        averaging = [r for r in live if defines(r, "weights") or defines(r, "ensemble")]
        if len(averaging) > 1:
            raise ValueError(f"two regularizers choose the evaluated weights: {', '.join(r.name for r in averaging)}")
        self.weights_hook = averaging[0] if averaging else None
        losses = [r for r in live if defines(r, "loss")]
        if len(losses) > 1:
            raise ValueError(f"two regularizers replace the training loss: {', '.join(r.name for r in losses)}")
        self.loss_hook = losses[0] if losses else None

    @property
    def epoch(self) -> int:
        """The epoch being trained (members of a stack are always at the same epoch)."""
        return self.members[0].state.epoch + 1

    def scheduled_lrs(self) -> list[float]:
        """The members' rates for this epoch: their schedules', unless a regularizer's `lr` hook
        takes over (a rate schedule of its own)."""
        lrs = [m.schedule.lr for m in self.members]
        for cls, values in self.regularizer_classes:
            if defines(cls, "lr"):  # a staticmethod: the rates come before the regularizers are built
                lrs = cls.lr(self, [values(m.cfg.reg) for m in self.members], lrs)
        return lrs

    def follow_schedules(self) -> None:
        """At the start of an epoch: the members' rates for it (settings rebuilt only when one
        changed, so a constant-rate stack does no extra work)."""
        if self.scheduled_lrs() != self.lr:
            self.settings()

    def end_epoch(self, data: Data) -> None:
        """After an epoch's training, before its evaluation: the regularizers' `after_epoch` hooks."""
        for reg in self.after_epoch_hooks:
            reg.after_epoch(self, data)

    def vector(self, values: list[float], skip_if_zero: bool = True) -> torch.Tensor | None:
        """A per-member setting as a (K,) float32 tensor on the device; None when every value is 0
        (and `skip_if_zero`), so that the step skips the work."""
        if skip_if_zero and not any(v != 0 for v in values):
            return None
        return torch.tensor(values, dtype=torch.float32, device=self.device)

    per_member = staticmethod(optimizer.per_member)  # a (K,) setting shaped to broadcast over a stacked tensor

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x: (K, B, ...), one batch per member; returns (K, B, outputs), or (K, B) for regression
        (regbench.engine.network.Network.forward, on this stack's tensors)."""
        return self.network.forward(self, x, train)

    @contextlib.contextmanager
    def norm_statistics(self, momentum: float) -> Iterator[None]:
        """Within it, every batch norm of the network that runs in training mode updates its
        running statistics with `momentum` instead of its own (torch's convention: new =
        (1 - momentum) * old + momentum * batch): 0.0 leaves them as they are (a second pass
        over a batch), 1 / (i + 1) on the i-th batch (from 0) makes them the cumulative average
        of the batches' (torch's momentum=None). Evaluation never updates them.

        Args:
            momentum: in [0, 1].
        """
        saved, self.norm_momentum = self.norm_momentum, momentum
        try:
            yield
        finally:
            self.norm_momentum = saved

    # ------------------------------------------------------------------ update
    def penalty(self) -> torch.Tensor | None:
        total = None
        for reg in self.penalty_hooks:
            term = reg.penalty(self)
            if term is not None:
                total = term if total is None else total + term
        return total

    def adam_denominator(self, j: int) -> torch.Tensor:
        """sqrt(v_hat) + eps of parameter j after this step: Adam's per-coordinate step is lr / it."""
        return optimizer.adam_denominator(self.moments[j][1], self.betas[1], self.eps, self.step)

    @torch.no_grad()
    def update(self) -> None:
        """One optimizer step of every member, as `torch.optim` takes it, with each member's lr,
        between the regularizers' before_step and after_step hooks."""
        self.step += 1
        for reg in self.before_step_hooks:
            reg.before_step(self)
        optimizer.update(self.params, self.moments, self.step, self.lr, self.neg_lr, self.neg_lr64, self.adam,
                         0.0 if self.adam else self.optim.momentum, self.betas, self.eps)
        for reg in self.after_step_hooks:
            reg.after_step(self)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    # ------------------------------------------------------------------ members
    def reported(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters and batch-norm statistics that are evaluated, monitored and reported:
        the trained ones, or those a regularizer's `weights` hook chooses (an average of them).
        (An `ensemble` hook's sets are evaluated by `predict` and reported by `member_state`.)"""
        hook = self.weights_hook
        chosen = hook.weights(self) if hook is not None and defines(hook, "weights") else None
        return chosen if chosen is not None else (self.params, self.buffers)

    def ensemble(self, epoch: int) -> tuple[Any, list[list[float]], torch.Tensor, torch.Tensor | None] | None:
        """The `ensemble` hook's (sets, mix) at the end of `epoch`, with mix as a (K, S) tensor on the
        device and the (K,) mask of the members that have no set yet (None when every member has
        one), made once for an evaluation; None (no such hook, or no set yet)."""
        hook = self.weights_hook
        chosen = hook.ensemble(self, epoch) if hook is not None and defines(hook, "ensemble") else None
        if chosen is None:
            return None
        sets, mix = chosen
        without = [not any(row) for row in mix]
        pick = torch.tensor(without, device=self.device) if any(without) else None
        return sets, mix, torch.tensor(mix, dtype=torch.float32, device=self.device), pick

    def predict(self, x: torch.Tensor, ensemble: Any = None) -> torch.Tensor:
        """The evaluated outputs on x (K, B, ...), in eval mode: the reported weights' (`evaluating`),
        or where `ensemble` (from `ensemble`) is given, each member's ensemble's (the mix of its
        sets' outputs, regbench.models.mix_outputs), its trained weights' for a member with none."""
        if ensemble is None:
            with self.evaluating():
                return self.forward(x, train=False)
        sets, _, weights, pick = ensemble
        params, buffers = self.params, self.buffers
        outs = []
        try:
            for self.params, self.buffers in sets:
                outs.append(self.forward(x, train=False))
        finally:
            self.params, self.buffers = params, buffers
        mixed = mix_outputs(outs, weights, self.network.squeeze)
        if pick is None:
            return mixed
        trained = self.forward(x, train=False)
        return torch.where(pick.view(-1, *[1] * (trained.dim() - 1)), trained, mixed)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Within it, `forward` computes with the reported weights (`reported`)."""
        params, buffers = self.params, self.buffers
        self.params, self.buffers = self.reported()
        try:
            yield
        finally:
            self.params, self.buffers = params, buffers

    def member_state(self, k: int, epoch: int | None = None) -> list[torch.Tensor]:
        """Copies of member k's reported parameters and batch-norm statistics (`reported`) at the
        end of `epoch` (by default the one being trained); for a member with an ensemble (`ensemble`),
        those of each of its sets of a weight above 0, in order, then their weights (S,)."""
        ensemble = self.ensemble(self.epoch if epoch is None else epoch)
        if ensemble is not None and any(ensemble[1][k]):
            sets, mix = ensemble[:2]
            used = [s for s, w in enumerate(mix[k]) if w > 0]
            return [t[k].detach().clone() for s in used for t in sets[s][0] + sets[s][1]] + \
                [torch.tensor([mix[k][s] for s in used], dtype=torch.float32, device=self.device)]
        params, buffers = self.reported()
        return [t[k].detach().clone() for t in params + buffers]

    def monitored(self, k: int, epoch: int) -> bool:
        """Whether early stopping watches member k's val_loss of `epoch`: from `monitor_from` on,
        where the regularizer that chooses the evaluated model says so (its `monitored` hook)."""
        if epoch < self.monitor_from(k):
            return False
        hook = self.weights_hook
        return hook is None or not defines(hook, "monitored") or hook.monitored(self, k, epoch)

    def monitor_from(self, k: int) -> int:
        """The first epoch whose val_loss early stopping watches for member k (1, unless the
        averaging regularizer says when its average starts)."""
        if self.weights_hook is None or not defines(self.weights_hook, "monitor_from"):
            return 1
        return self.weights_hook.monitor_from(self, k)

    def weights_label(self, k: int, epoch: int) -> str:
        """Which weights member k's metrics of `epoch` belong to: `trained`, or the name of the
        averaging a regularizer did (result.json's `weights`)."""
        if self.weights_hook is None:
            return "trained"
        return self.weights_hook.weights_label(self, k, epoch)

    def keep(self, live: list[int]) -> None:
        """Takes every member not in `live` (indices into the current members) out of the stack."""
        idx = torch.tensor(live, device=self.params[0].device)
        self.members = [self.members[k] for k in live]
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]
        self.buffers = [b.index_select(0, idx) for b in self.buffers]
        self.moments = [[m.index_select(0, idx) for m in ms] for ms in self.moments]
        self.reg_state = {name: {key: [t.index_select(0, idx) for t in ts]
                                 for key, ts in state.items()} for name, state in self.reg_state.items()}
        self.settings()

    @torch.no_grad()
    def conclude(self, k: int) -> bool:
        """Puts member k's reported weights into its own network: the best epoch's when early
        stopping is on or the run diverged, else the last ones. Returns whether it restored."""
        member = self.members[k]
        state, tr = member.state, member.cfg.trainer
        restore = state.best_state is not None and (tr.patience is not None or state.diverged)
        member.reported_weights = self.weights_label(k, state.best_epoch if restore else state.epoch)
        chosen = state.best_state if restore else self.member_state(k, state.epoch)
        params, _, buffers = tensors(member.model)
        size = len(params) + len(buffers)
        copies = [member.model]
        if len(chosen) > size:  # an ensemble's sets, then their weights (`member_state`)
            copies = [copy.deepcopy(member.model) for _ in range((len(chosen) - 1) // size)]
            member.model = Ensemble(copies, chosen[-1], self.network.squeeze)
        for i, network in enumerate(copies):
            params, _, buffers = tensors(network)
            for dst, src in zip(params + buffers, chosen[i * size : (i + 1) * size]):
                dst.copy_(src)
            for layer in layers(network):
                if isinstance(layer, NORMS):
                    layer.num_batches_tracked.fill_(member.best_steps if restore else self.step)
        return restore

