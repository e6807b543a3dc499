"""Stacked training: the jobs of a sweep that share one structure, trained as one batched model.

Jobs that differ only in `regbench.engine.stackable.MEMBER_KEYS` (penalty strengths, dropout rate,
learning rate, seed) and agree on everything else (dataset and its split, model architecture, batch
size, epoch budget, optimizer, early-stopping rule) become the members of one stack:
every weight matrix gets a leading member dimension, and one batched matrix product
(`torch.baddbmm`) serves every member at each step. Each member keeps what it would have
alone: the initial weights and data order of its seed (built by the very code
`runner` uses), its own dropout stream, penalty, learning rate and its schedule (each member
steps its own regbench.engine.schedules.Schedule; the per-member rate vectors are rebuilt when
a rate changes), and early stopping. A member
that stops leaves the stack with its best weights while the others go on, and its
metrics.csv and result.json are written at once, in the schema of a lone run. On a time
budget, each live member also writes its share of the stack (stack.pt) into its folder, from
which a rerun continues the stack, as a lone run continues from last.pt.

On the CPU with one torch thread a member's numbers equal those of the same job run alone,
bit for bit (the losses that would round differently batched, label smoothing and
regression, are computed per member); with more threads a batched product is split
differently and the last bits differ, within a tolerance tests/test_stacked.py checks. On
CUDA a lone run's dropout uses PyTorch's fused kernel, whose masks a stack cannot
reproduce: stacked dropout there is statistically, not bitwise, the same.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

from regbench import UserInputError

from regbench.engine import checkpoint, folderlock, interrupt
from regbench.console import progress_bar
from regbench.data.datasets import Data, load
from regbench.engine.device import resolve_device
from regbench.engine.interrupt import Interrupted
from regbench.models import Regressor
from regbench.regularizers.penalties import penalised_weights, sgd_threshold, sparsity
from regbench.results import MetricsWriter, early_best, metric_name, write_result
from regbench.engine.runner import data_problem, final_metrics, init, new_result
from regbench.engine.loop import FitState, schedule_of
from regbench.engine.schedules import Schedule

# A live member's share of an interrupted stack, in its run folder (removed when it finishes).
STACK_CHECKPOINT = "stack.pt"
STACK_PREVIOUS = "stack.prev.pt"  # the one before, until the next is written (see _save)
STACK_FORMAT = "regbench-stack-member-1"


@dataclass
class Member:
    """One job of the stack, with the lone-run objects it is compared against."""

    index: int  # position in the jobs given to `train`
    cfg: Any
    out_dir: Path
    result: dict[str, Any]
    model: nn.Module  # the job's own network: its initial weights, and at the end its reported ones
    dropout_rng: torch.Generator
    order: torch.Generator
    writer: MetricsWriter | None = None  # opened once the stack knows where it starts
    state: FitState = field(default_factory=FitState)
    best_steps: int = 0  # optimizer steps up to the best epoch (batch norm's num_batches_tracked)
    # Its own learning-rate schedule (optim.schedule and its knobs may differ between members);
    # a fresh one from its config unless given.
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.schedule is None:
            self.schedule = Schedule(self.cfg.optim, self.cfg.trainer.max_epochs)


def _layers(model: nn.Module) -> list[nn.Module]:
    """The Linear and BatchNorm1d layers, in forward order: the modules that hold tensors."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))]


def _tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[bool], list[torch.Tensor]]:
    """Parameters (weight, bias per layer), which of them are penalised, and the batch-norm
    running statistics, in a fixed order shared by every member."""
    params, penalised, buffers = [], [], []
    for layer in _layers(model):
        params += [layer.weight, layer.bias]
        penalised += [layer.weight.dim() >= 2, False]
        if isinstance(layer, nn.BatchNorm1d):
            buffers += [layer.running_mean, layer.running_var]
    return params, penalised, buffers


class _StackedLinear(torch.autograd.Function):
    """F.linear once per member: y[k] = x[k] @ w[k].T + b[k], as one batched product.

    The backward computes each gradient in the orientation torch's own linear backward uses
    (grad_w = grad_y.T @ x), so that every member's gradients equal its lone run's bit for
    bit; autograd's generic baddbmm backward (x.T @ grad_y, transposed) rounds differently.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        grad = grad.contiguous()  # after batch norm it arrives transposed; the reductions must see torch's layout
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


class Stack:
    """The live members' parameters, optimizer state and batch-norm statistics, stacked on dim 0."""

    def __init__(self, members: list[Member], template: nn.Module, optim: Any, betas: tuple[float, float], eps: float):
        self.members = members
        self.optim, self.betas, self.eps = optim, betas, eps
        self.step = 0
        self.squeeze = isinstance(template, Regressor)
        self.ops: list[tuple[Any, ...]] = []  # the template's layers, in order
        n_params = n_buffers = 0
        for module in template.net if self.squeeze else template:
            if isinstance(module, nn.Flatten):
                self.ops.append(("flatten",))
            elif isinstance(module, nn.Linear):
                self.ops.append(("linear", n_params))
                n_params += 2
            elif isinstance(module, nn.BatchNorm1d):
                self.ops.append(("batchnorm", n_params, n_buffers, module.momentum, module.eps))
                n_params, n_buffers = n_params + 2, n_buffers + 2
            elif isinstance(module, nn.Dropout):
                self.ops.append(("dropout",))
            else:
                self.ops.append(("activation", module))  # elementwise: applies to any shape
        per_member = [_tensors(m.model) for m in members]
        self.penalised = per_member[0][1]
        self.params = [torch.stack([t[0][j].detach() for t in per_member]).requires_grad_() for j in range(n_params)]
        self.buffers = [torch.stack([t[2][j] for t in per_member]) for j in range(n_buffers)]
        self.moments: list[list[torch.Tensor]] = [[] for _ in self.params]  # Adam: m, v; SGD: momentum
        self._settings()

    def _settings(self) -> None:
        """Per-member settings as (K,) tensors, rebuilt whenever members leave or a member's
        learning rate changes (`follow_schedules`): everything that reads the lr, the step, the
        decay and the proximal threshold, reads the member's current rate, as a lone run's
        optimizer, decay_ and l1_prox_ read its param group's."""
        cfgs = [m.cfg for m in self.members]
        device = self.params[0].device
        self.lr = [m.schedule.lr for m in self.members]
        self.dropout = [c.reg.dropout for c in cfgs]
        prox = [c.reg.l1_proximal and c.reg.alpha * c.reg.l1_ratio > 0 for c in cfgs]

        def vec(values: list[float], skip_if_zero: bool = True) -> torch.Tensor | None:
            if skip_if_zero and not any(v != 0 for v in values):
                return None
            return torch.tensor(values, dtype=torch.float32, device=device)

        # The elastic net of penalties.elastic_net (the L1 part only where no proximal step takes it).
        self.l1_loss = vec([0.0 if p else c.reg.alpha * c.reg.l1_ratio for c, p in zip(cfgs, prox)])
        self.l2_loss = vec([0.5 * c.reg.alpha * (1.0 - c.reg.l1_ratio) for c in cfgs])
        # penalties.decay_ and AdamW: w <- w * (1 - lr * weight_decay)
        decays = [c.reg.weight_decay for c in cfgs]
        self.decay = vec([1 - lr * c.reg.weight_decay for c, lr in zip(cfgs, self.lr)], False) if any(decays) else None
        # penalties.l1_prox_: under SGD sgd_threshold(lr, strength, momentum); under Adam lr * strength,
        # divided per coordinate by sqrt(v_hat) + eps in `update`
        if self.optim.name == "sgd":
            scales = [sgd_threshold(lr, c.reg.alpha * c.reg.l1_ratio, c.optim.momentum) if p else 0.0
                      for c, p, lr in zip(cfgs, prox, self.lr)]
        else:
            scales = [lr * (c.reg.alpha * c.reg.l1_ratio) if p else 0.0 for c, p, lr in zip(cfgs, prox, self.lr)]
        self.prox_scale = vec(scales)
        self.neg_lr = vec([-lr for lr in self.lr], False)
        self.neg_lr64 = torch.tensor([-lr for lr in self.lr], dtype=torch.float64, device=device)

    def follow_schedules(self) -> None:
        """At the start of an epoch: the members' rates for it (settings rebuilt only when one
        changed, so a constant-rate stack does no extra work)."""
        if [m.schedule.lr for m in self.members] != self.lr:
            self._settings()

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x: (K, B, ...), one batch per member; returns (K, B, outputs), or (K, B) for regression."""
        h = x
        for op in self.ops:
            kind = op[0]
            if kind == "flatten":
                h = h.reshape(h.shape[0], h.shape[1], -1)
            elif kind == "linear":
                w, b = self.params[op[1]], self.params[op[1] + 1]
                if w.shape[1] == 1:  # a single output: torch takes a matrix-vector path a batched product cannot copy
                    h = torch.stack([F.linear(hk, wk, bk) for hk, wk, bk in zip(h, w, b)])
                else:
                    h = _StackedLinear.apply(h, w, b)
            elif kind == "batchnorm":
                # Feature j of member k is channel k * width + j of one (B, K * width) batch norm.
                _, p, b, momentum, eps = op
                k, n, width = h.shape
                flat = F.batch_norm(
                    h.transpose(0, 1).reshape(n, k * width),
                    self.buffers[b].view(-1),
                    self.buffers[b + 1].view(-1),
                    self.params[p].reshape(-1),
                    self.params[p + 1].reshape(-1),
                    train,
                    momentum,
                    eps,
                )
                h = flat.view(n, k, width).transpose(0, 1)
            elif kind == "dropout":
                if train and any(p > 0 for p in self.dropout):
                    h = h * self._dropout_noise(h)
            else:
                h = op[1](h)
        return h.squeeze(-1) if self.squeeze else h

    def _dropout_noise(self, h: torch.Tensor) -> torch.Tensor:
        # What torch's CPU dropout multiplies by, bernoulli(1 - p) / (1 - p), from each member's stream.
        noise = torch.ones_like(h)
        for k, (p, member) in enumerate(zip(self.dropout, self.members)):
            if p > 0:
                noise[k].bernoulli_(1 - p, generator=member.dropout_rng).div_(1 - p)
        return noise

    def penalty(self) -> torch.Tensor | None:
        """Every member's smooth elastic-net term, summed (each member's gradient sees only its own)."""
        total = None
        for w, penalised in zip(self.params, self.penalised):
            if not penalised:
                continue
            for scale, value in ((self.l1_loss, torch.abs), (self.l2_loss, torch.square)):
                if scale is not None:
                    term = (scale * value(w).flatten(1).sum(1)).sum()
                    total = term if total is None else total + term
        return total

    @torch.no_grad()
    def update(self) -> None:
        """Decay, optimizer step and proximal L1 step, as a lone run's `torch.optim` and
        `regbench.regularizers.penalties` calls do them, with each member's own lr and strengths."""
        self.step += 1
        one_lr = len(set(self.lr)) == 1
        adam = self.optim.name != "sgd"
        if adam:
            beta1, beta2 = self.betas
            bias_correction1 = 1 - beta1**self.step
            bias_correction2_sqrt = (1 - beta2**self.step) ** 0.5
            # lr / bias_correction1 in float64, rounded to float32 once, as torch rounds its `value`
            # (computed on the device: a host-to-device copy every step would sync a GPU)
            neg_step = (self.neg_lr64 / bias_correction1).float()
        for j, (p, penalised) in enumerate(zip(self.params, self.penalised)):
            grad = p.grad
            if penalised and self.decay is not None:
                p.mul_(self._per_member(self.decay, p))
            moments = self.moments[j]
            if not adam:
                if self.optim.momentum != 0:
                    if not moments:
                        moments.append(grad.clone())
                    else:
                        moments[0].mul_(self.optim.momentum).add_(grad)
                    grad = moments[0]
                if one_lr:
                    p.add_(grad, alpha=-self.lr[0])
                else:
                    p.addcmul_(grad, self._per_member(self.neg_lr, p))
                continue
            if not moments:
                moments += [torch.zeros_like(p), torch.zeros_like(p)]
            exp_avg, exp_avg_sq = moments
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            if one_lr:
                p.addcdiv_(exp_avg, denom, value=-(self.lr[0] / bias_correction1))
            else:
                p.add_((self._per_member(neg_step, p) * exp_avg).div_(denom))  # addcdiv's order: (value * m) / denom
        if self.prox_scale is None:
            return
        for j, (w, penalised) in enumerate(zip(self.params, self.penalised)):
            if not penalised:
                continue
            threshold = self._per_member(self.prox_scale, w)
            if adam:  # per coordinate: lr * strength / (sqrt(v_hat) + eps)
                denom = (self.moments[j][1] / (1.0 - self.betas[1] ** float(self.step))).sqrt_().add_(self.eps)
                threshold = denom.reciprocal() * threshold
            w.copy_(w.sign() * (w.abs() - threshold).clamp_min_(0.0))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def member_state(self, k: int) -> list[torch.Tensor]:
        """Copies of member k's parameters and batch-norm statistics."""
        return [t[k].detach().clone() for t in self.params + self.buffers]

    def keep(self, live: list[int]) -> None:
        """Takes every member not in `live` (indices into the current members) out of the stack."""
        idx = torch.tensor(live, device=self.params[0].device)
        self.members = [self.members[k] for k in live]
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]
        self.buffers = [b.index_select(0, idx) for b in self.buffers]
        self.moments = [[m.index_select(0, idx) for m in ms] for ms in self.moments]
        self._settings()


def _train_epoch(stack: Stack, data: Data, batch: int, smoothing: float) -> torch.Tensor:
    """One pass of every member over its own batch order; returns each member's sum of step
    losses (for divergence detection), on the device. Mirrors training.train_epoch."""
    n = data.x_train.shape[0]
    n_used = n - 1 if n % batch == 1 and n > 1 else n
    perms = torch.stack([torch.randperm(n, generator=m.order, device=m.order.device) for m in stack.members])
    total = torch.zeros(len(stack.members), device=data.x_train.device)
    for start in range(0, n_used, batch):
        idx = perms[:, start : min(start + batch, n_used)]
        out = stack.forward(data.prepare(data.x_train[idx]), train=True)
        target = data.y_train[idx]
        if data.task == "classification" and not smoothing:
            # One call for all members; its gradients round exactly like the lone run's mean loss.
            losses = F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(idx.shape).mean(1)
        elif data.task == "classification":  # label smoothing's mean rounds differently batched: one call per member
            losses = torch.stack([F.cross_entropy(o, t, label_smoothing=smoothing) for o, t in zip(out, target)])
        else:
            losses = torch.stack([F.mse_loss(o, t) for o, t in zip(out, target)])
        total = total + losses.detach()
        loss = losses.sum()
        penalty = stack.penalty()
        if penalty is not None:
            loss = loss + penalty
        stack.zero_grad()
        loss.backward()
        stack.update()
    return total


@torch.no_grad()
def _evaluate(stack: Stack, data: Data, split: str, batch: int) -> torch.Tensor:
    """Every member's eval-mode metrics of one split, (K, 2), as training.evaluate computes them."""
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    k = len(stack.members)
    loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
    hits = torch.zeros(k, device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch):
        inputs = data.prepare(x[start : start + batch])
        out = stack.forward(inputs.unsqueeze(0).expand(k, *inputs.shape), train=False)
        target = y[start : start + batch]
        if data.task == "classification":
            loss_sum += torch.stack([F.cross_entropy(o, target, reduction="sum") for o in out])
            hits += (out.argmax(dim=2) == target).sum(1)
        else:
            loss_sum += torch.stack([F.mse_loss(o, target, reduction="sum") for o in out])
    n = x.shape[0]
    if data.task == "classification":
        return torch.stack([loss_sum / n, hits / n], dim=1)
    total_ss = (y.double() - y.double().mean()).pow(2).sum()
    return torch.stack([loss_sum / n, 1.0 - loss_sum / total_ss], dim=1)


def train(jobs: list[tuple[Any, Path]], console: Console | None = None, done: dict[int, dict[str, Any]] | None = None,
          on_done: Callable[[int, dict[str, Any]], None] = lambda index, result: None) -> list[dict[str, Any]]:
    """Trains the jobs of one stack, each a (composed config, run folder) pair, all sharing one
    `regbench.engine.stackable.stack_key`.

    Every member's metrics.csv and result.json are written to its folder as it finishes, and
    its result is put in `done` (index -> result) at once, so that a caller whose stack later
    fails knows which jobs are already finished, and handed to `on_done(index, result)`, so
    that the user reads each job's line when it finishes, not when the last one does.

    Returns:
        The results, in the order of `jobs`.

    Raises:
        UserInputError: the jobs cannot run on this dataset, or one's folder is in use by another
            process (FolderBusy); the lone runs report it per job.
        Interrupted: Ctrl-C or SIGTERM, once the epoch it came in was checkpointed.
    """
    with contextlib.ExitStack() as locks:
        for _, out_dir in jobs:
            locks.enter_context(folderlock.hold(Path(out_dir)))
        return _train(jobs, console, {} if done is None else done, on_done)


def _train(jobs: list[tuple[Any, Path]], console: Console | None, done: dict[int, dict[str, Any]],
           on_done: Callable[[int, dict[str, Any]], None]) -> list[dict[str, Any]]:
    start = time.perf_counter()
    console = console or Console()
    cfg = jobs[0][0]
    tr = cfg.trainer
    device = resolve_device(cfg.device)
    data = load(cfg.dataset, device)
    problem = data_problem(cfg, data)
    if problem:
        raise UserInputError(problem)
    members, template = [], None
    for i, (job_cfg, out_dir) in enumerate(jobs):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        result = new_result(job_cfg)
        model, _, (order, _) = init(job_cfg, data, device)
        # The lone run's dropout draws from torch's global stream, right where model building left it.
        dropout_rng = torch.Generator(device=device)
        if device.type == "cpu":
            dropout_rng.set_state(torch.get_rng_state())
        else:
            dropout_rng.manual_seed(job_cfg.seed)
        if template is None or job_cfg.reg.dropout > 0:
            template = model  # a member with dropout layers, where any member has them
        result.update(device=str(device), n_params=sum(p.numel() for p in model.parameters()), stack_size=len(jobs))
        members.append(Member(i, job_cfg, Path(out_dir), result, model, dropout_rng, order))
    stack = Stack(members, template, cfg.optim, *_adam_defaults(cfg.optim.name))
    resumed, prior_seconds = _restore(stack, console)
    start -= prior_seconds  # a member's `seconds` counts the interrupted process's time too
    for member in members:
        member.writer = MetricsWriter(member.out_dir, data.task, member.state.history)
        member.result["resumed_from_epoch"] = resumed or None
    budget = checkpoint.Budget(min(c.trainer.checkpoint_seconds for c, _ in jobs))
    failed_write = ""  # why the last checkpoint could not be written ("" when it was)
    metric = metric_name(data.task)
    bar, bar_task = progress_bar(console, tr.max_epochs, f"stack of {len(jobs)}")
    try:
        with bar, interrupt.deferred() as stop:  # Ctrl-C: the epoch ends and is checkpointed first
            bar.update(bar_task, completed=resumed)
            for epoch in range(resumed + 1, tr.max_epochs + 1):
                t0 = time.perf_counter()
                stack.follow_schedules()
                step_sums = _train_epoch(stack, data, tr.batch_size, cfg.reg.label_smoothing)
                scores = [step_sums.double()[:, None]] + [_evaluate(stack, data, s, tr.eval_batch_size) for s in ("train", "val")]
                rows = torch.cat(scores, dim=1).tolist()  # the epoch's one host sync
                seconds = time.perf_counter() - t0
                finished = []
                for k, (member, (step_sum, train_loss, train_m, val_loss, val_m)) in enumerate(zip(stack.members, rows)):
                    row = {"epoch": epoch, "train_loss": train_loss, f"train_{metric}": train_m, "val_loss": val_loss,
                           f"val_{metric}": val_m, "lr": member.schedule.lr, "seconds": seconds}
                    if _early_stopping(member, row, step_sum, stack, k, epoch == tr.max_epochs):
                        finished.append(k)
                    else:  # as loop.fit: stepped at the end of every epoch that training goes on from
                        member.schedule.step(val_loss)
                        member.state.schedule = member.schedule.state()
                for k in finished:
                    _finish(stack.members[k], stack, k, data, start)
                    done[stack.members[k].index] = stack.members[k].result
                    on_done(stack.members[k].index, stack.members[k].result)
                live = [k for k in range(len(stack.members)) if k not in finished]
                bar.update(bar_task, advance=1, losses=f"{len(live)} of {len(jobs)} still training")
                if not live:
                    break
                if finished:
                    stack.keep(live)
                if budget.due() or stop.requested:
                    try:
                        _save(stack, epoch, time.perf_counter() - start)
                        failed_write = ""
                    except OSError as e:  # a full disk: the stack goes on, without a newer resume point
                        if (e.strerror or str(e)) != failed_write:
                            console.print(f"regbench: warning: could not write a member's {STACK_CHECKPOINT} after epoch "
                                          f"{epoch} ({e.strerror or e}: {e.filename}); the stack goes on without a "
                                          "newer resume point", highlight=False, markup=False, soft_wrap=True)
                        failed_write = e.strerror or str(e)
                    budget.written()
                if stop.requested:
                    kept = ("checkpointed in their folders" if not failed_write else
                            f"not checkpointed ({failed_write}): a rerun starts from their last checkpoints, if any")
                    raise Interrupted(f"after epoch {epoch} of a stack, its {len(stack.members)} unfinished jobs {kept}",
                                      signum=stop.signum)
        if stop.requested:  # Ctrl-C in the last epoch: the stack finished; stop what comes after it
            raise Interrupted("as the stack finished (its jobs' results are in their folders)", signum=stop.signum)
    finally:
        for member in members:
            if member.writer is not None:
                member.writer.close()
    return [m.result for m in members]


def _save(stack: Stack, epoch: int, seconds: float) -> None:
    """Writes each live member's share of the stack into its own folder, atomically: its
    slice of the weights, batch-norm statistics and optimizer moments, its early-stopping
    state and its random streams, with the stack's epoch and step. The member's previous
    checkpoint is kept as STACK_PREVIOUS until its next one is written, so that a kill
    between two members' writes still leaves one epoch that every member holds."""
    for k, member in enumerate(stack.members):
        path = member.out_dir / STACK_CHECKPOINT
        if path.is_file():
            os.replace(path, member.out_dir / STACK_PREVIOUS)
        checkpoint.write_atomic(path, {
            "format": STACK_FORMAT,
            "config_hash": member.result["config_hash"],
            "epoch": epoch,
            "step": stack.step,
            # clones: saving a view would write the whole stacked tensor
            "params": [t[k].detach().clone() for t in stack.params],
            "buffers": [t[k].clone() for t in stack.buffers],
            "moments": [[t[k].clone() for t in moments] for moments in stack.moments],
            "fit": checkpoint.fit_payload(member.state),
            "best_steps": member.best_steps,
            "order": member.order.get_state(),
            "dropout": member.dropout_rng.get_state(),
            "seconds": seconds,
        })


def _checkpoints(member: Member) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The member's usable checkpoints by epoch, and what was wrong with the other files."""
    found, problems = {}, []
    for name in (STACK_CHECKPOINT, STACK_PREVIOUS):
        path = member.out_dir / name
        if not path.is_file():
            continue
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, not a torch file, or holding objects weights_only refuses
            problems.append(f"{path} is unreadable ({type(e).__name__})")
            continue
        if not isinstance(payload, dict) or payload.get("format") != STACK_FORMAT:
            problems.append(f"{path} is not a regbench stack checkpoint")
        elif payload.get("config_hash") != member.result["config_hash"]:
            problems.append(f"{path} was written by a different configuration")
        else:
            found[payload["epoch"]] = payload
    return found, problems


def _restore(stack: Stack, console: Console) -> tuple[int, float]:
    """Continues the stack from the latest epoch of which every member holds a checkpoint of
    its configuration; returns (that epoch, the seconds trained before), or (0, 0.0) to
    start afresh (saying why, when checkpoints were there)."""
    names = (STACK_CHECKPOINT, STACK_PREVIOUS)
    if not any((m.out_dir / n).is_file() for m in stack.members for n in names):
        return 0, 0.0
    found = [_checkpoints(m) for m in stack.members]
    common = set.intersection(*(set(f) for f, _ in found))
    problems = [problem for _, member_problems in found for problem in member_problems]
    payloads = [f[max(common)] for f, _ in found] if common else []
    problem = None
    if not common:
        problem = problems[0] if problems else "the members' checkpoints share no epoch"
    elif len({p["step"] for p in payloads}) != 1:
        problem = "the members' checkpoints disagree on the step"
    streams = [(m.order.get_state(), m.dropout_rng.get_state()) for m in stack.members]
    if problem is None:
        try:
            _load(stack, payloads)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            problem = f"incomplete checkpoint ({type(e).__name__}: {e})"
    if problem:
        console.print(f"regbench: warning: {problem}; the stack starts afresh", highlight=False, markup=False, soft_wrap=True)
        for member, (order, dropout) in zip(stack.members, streams):  # undo what a partial load may have set
            member.order.set_state(order)
            member.dropout_rng.set_state(dropout)
            member.state, member.best_steps = FitState(), 0
            member.schedule = schedule_of(member.cfg, member.state)
        return 0, 0.0
    epoch = max(common)
    for problem in problems:  # files passed over for an older checkpoint that every member holds
        console.print(f"regbench: warning: {problem}; not used", highlight=False, markup=False, soft_wrap=True)
    console.print(f"resuming the stack from the checkpoint of epoch {epoch}", highlight=False, markup=False, soft_wrap=True)
    return epoch, max(float(p["seconds"]) for p in payloads)


@torch.no_grad()
def _load(stack: Stack, payloads: list[dict[str, Any]]) -> None:
    """Puts every member's checkpointed share back into the stack (see `_save`)."""
    device = stack.params[0].device
    params = [torch.stack([p["params"][j] for p in payloads]).to(device) for j in range(len(stack.params))]
    buffers = [torch.stack([p["buffers"][j] for p in payloads]).to(device) for j in range(len(stack.buffers))]
    if any(a.shape != b.shape for a, b in zip(params + buffers, stack.params + stack.buffers)):
        raise ValueError("the weights' shapes differ from this model's")
    moments = [[torch.stack([p["moments"][j][i] for p in payloads]).to(device) for i in range(len(payloads[0]["moments"][j]))]
               for j in range(len(stack.params))]
    states = [checkpoint.fit_state(p["fit"], device) for p in payloads]
    schedules = [schedule_of(m.cfg, state) for m, state in zip(stack.members, states)]
    for member, payload, state, schedule in zip(stack.members, payloads, states, schedules):
        member.schedule = schedule
        member.order.set_state(payload["order"])
        member.dropout_rng.set_state(payload["dropout"])
        member.state, member.best_steps = state, int(payload["best_steps"])
    stack.params = [t.requires_grad_() for t in params]
    stack.buffers, stack.moments, stack.step = buffers, moments, int(payloads[0]["step"])
    stack.follow_schedules()


def _adam_defaults(name: str) -> tuple[tuple[float, float], float]:
    """betas and eps of the lone run's torch.optim.Adam/AdamW (built with their defaults), read
    from the signature: instantiating a torch optimizer imports torch._dynamo, about 1 s, which a
    stack, doing its own update, does not need."""
    if name == "sgd":
        return (0.9, 0.999), 1e-8  # unused
    params = inspect.signature(torch.optim.AdamW if name == "adamw" else torch.optim.Adam).parameters
    return tuple(params["betas"].default), float(params["eps"].default)


def _early_stopping(member: Member, row: dict[str, float], step_sum: float, stack: Stack, k: int, last: bool) -> bool:
    """Records the epoch's row for one member and applies training.fit's rules; True when the member is done."""
    state, tr = member.state, member.cfg.trainer
    state.history.append(row)
    member.writer.write(row)
    if not all(math.isfinite(v) for v in (step_sum, row["train_loss"], row["val_loss"])):
        state.diverged = True
        return True
    if row["val_loss"] < state.best_loss - tr.min_delta:
        state.best_loss, state.best_epoch, state.waited = row["val_loss"], row["epoch"], 0
        state.best_state, member.best_steps = stack.member_state(k), stack.step
    else:
        state.waited += 1
        if tr.patience is not None and state.waited >= tr.patience:
            state.stopped_early = True
            return True
    return last


def _finish(member: Member, stack: Stack, k: int, data: Data, start: float) -> None:
    """Puts the member's reported weights into its own network, evaluates it exactly as a lone
    run does (runner.final_metrics), and writes its files."""
    state, cfg, result = member.state, member.cfg, member.result
    restore = state.best_state is not None and (cfg.trainer.patience is not None or state.diverged)
    tensors = state.best_state if restore else stack.member_state(k)
    params, _, buffers = _tensors(member.model)
    with torch.no_grad():
        for dst, src in zip(params + buffers, tensors):
            dst.copy_(src)
        for layer in _layers(member.model):
            if isinstance(layer, nn.BatchNorm1d):
                layer.num_batches_tracked.fill_(member.best_steps if restore else stack.step)
    result.update(
        status="diverged" if state.diverged else "ok",
        best_epoch=state.best_epoch or None,
        epochs_run=len(state.history),
        stopped_early=state.stopped_early,
        early_best=early_best(state.best_epoch or None, cfg.trainer.patience, state.stopped_early),
        sparsity=sparsity(penalised_weights(member.model)),
    )
    if state.best_epoch or not state.diverged:
        final_metrics(result, member.model, data, cfg)
    if cfg.save_model and result["status"] == "ok":
        torch.save(member.model.state_dict(), member.out_dir / "model.pt")
    result["seconds"] = time.perf_counter() - start
    member.writer.close()
    write_result(member.out_dir, result)
    if not cfg.keep_checkpoint:
        (member.out_dir / STACK_CHECKPOINT).unlink(missing_ok=True)
    (member.out_dir / STACK_PREVIOUS).unlink(missing_ok=True)
    checkpoint.remove_temporaries(member.out_dir)  # left by a process killed mid-write; the stack holds the lock
