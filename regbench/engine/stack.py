"""The engine's model: K members trained as one batched network (a lone run is a stack of one).

Every weight tensor gets a leading member dimension; one batched product (`torch.baddbmm`, or a
grouped convolution) serves every member at each step. Each member keeps what it would have
alone: the initial weights and data order of its seed (built by the very code a lone run uses),
its own dropout and augmentation streams, learning rate, regularizer knobs and early stopping.
The regularizers meet training only through their hooks (regbench.regularizers): the engine has
no if-ladder of regularizers. The optimizer update (SGD with heavy-ball momentum, Adam, AdamW)
is the engine's own, written to round exactly as `torch.optim`'s single-tensor implementation;
building a torch optimizer would import torch._dynamo, about 0.7 s of every run.

A stack of one computes exactly what the plain `nn.Module` computes (the same kernels, called on
the member's slice). With K > 1 on the CPU with one torch thread a member's numbers equal those of
its lone run bit for bit for fully connected models (the losses that would round differently
batched are computed per member); with more threads, or with a conv net's grouped convolution,
a batched kernel splits its sums differently and the last bits differ, within a tolerance
tests/test_stacked.py checks.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.engine.loop import FitState, schedule_of
from regbench.engine.schedules import Schedule
from regbench.models import Regressor, Residual

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class Member:
    """One job of a stack, with the lone-run objects it is compared against."""

    index: int  # position in the jobs given to the engine
    cfg: Any
    out_dir: Path
    result: dict[str, Any]
    model: nn.Module  # the job's own network: its initial weights, and at the end its reported ones
    dropout_rng: torch.Generator
    order: torch.Generator
    aug: torch.Generator
    writer: Any = None  # its metrics.csv writer, once the engine knows where it starts
    logger: Any = None  # its live logger (regbench.reporting.tensorboard), opened with the writer in a stacked sweep
    state: FitState = field(default_factory=FitState)
    best_steps: int = 0  # optimizer steps up to the best epoch (batch norm's num_batches_tracked)
    # Its own learning-rate schedule (optim.schedule and its knobs may differ between members);
    # a fresh one from its config unless given.
    schedule: Schedule | None = None

    # The random streams regularizers draw from, by name: a host-side numpy Generator (draws that
    # pick boxes and mixing weights, with no device sync) or a torch Generator on the device.
    # Created on first use from the seed and the name, so one regularizer's draws do not depend
    # on which others are on; saved in checkpoints (see `Stack.payload`).
    streams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule is None:
            self.schedule = Schedule(self.cfg.optim, self.cfg.trainer.max_epochs)

    def host_rng(self, name: str) -> Any:
        """The member's host-side stream `name` (numpy.random.Generator)."""
        if name not in self.streams:
            import zlib

            import numpy as np

            self.streams[name] = np.random.default_rng([self.cfg.seed, zlib.crc32(name.encode())])
        return self.streams[name]

    def device_rng(self, name: str, device: torch.device) -> torch.Generator:
        """The member's stream `name` on the device (torch.Generator)."""
        if name not in self.streams:
            import zlib

            seed = (self.cfg.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63
            self.streams[name] = torch.Generator(device=device).manual_seed(seed)
        return self.streams[name]

    def stream_states(self) -> dict[str, Any]:
        """Every stream's state, as weights_only loading accepts it."""
        return {name: rng.get_state() if isinstance(rng, torch.Generator) else rng.bit_generator.state
                for name, rng in self.streams.items()}

    def load_streams(self, states: dict[str, Any], device: torch.device) -> None:
        for name, state in states.items():
            if isinstance(state, torch.Tensor):
                self.device_rng(name, device).set_state(state)
            else:
                self.host_rng(name).bit_generator.state = state


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers that hold tensors (linear, conv, batch norm), in forward order."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, *_NORMS))]


def tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[bool], list[torch.Tensor]]:
    """Parameters (weight, bias per layer), which of them are penalised (weight matrices and
    kernels), and the batch-norm running statistics, in a fixed order shared by every member.
    For model=custom: every parameter, in `parameters()`' order, and every batch norm's statistics."""
    if getattr(model, "regbench_custom", False):
        params = list(model.parameters())
        norms = [m for _, m in custom_norms(model)]
        return params, [p.dim() >= 2 for p in params], [t for m in norms for t in (m.running_mean, m.running_var)]
    params, penalised, buffers = [], [], []
    for layer in layers(model):
        params += [layer.weight, layer.bias]
        penalised += [layer.weight.dim() >= 2, False]
        if isinstance(layer, _NORMS):
            buffers += [layer.running_mean, layer.running_var]
    return params, penalised, buffers


def tensor_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """The names of `tensors`' parameters and batch-norm statistics, in its order (`0.weight`,
    `3.bias`, `3.running_var`; for model=custom, `named_parameters()`' own): what a regularizer
    picks tensors by (a custom layer may have no bias: a position says nothing)."""
    if getattr(model, "regbench_custom", False):
        return ([name for name, _ in model.named_parameters()],
                [f"{name}.{b}" for name, _ in custom_norms(model) for b in ("running_mean", "running_var")])
    names = {id(m): f"{name}." if name else "" for name, m in model.named_modules()}  # "": the model is the layer
    owned = [(names[id(layer)], layer) for layer in layers(model)]
    return ([f"{name}{p}" for name, _ in owned for p in ("weight", "bias")],
            [f"{name}{b}" for name, layer in owned if isinstance(layer, _NORMS)
             for b in ("running_mean", "running_var")])


def custom_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """model=custom's batch norms that keep running statistics, with their names, in order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def compile_ops(modules: nn.Sequential, n_params: int = 0, n_buffers: int = 0) -> tuple[list[tuple[Any, ...]], int, int]:
    """The layers of `modules` as the engine's ops, in order, with the indices of their tensors
    (in `tensors`' order) from `n_params` and `n_buffers` on; returns the ops and the next
    indices. A residual block is one op holding its body's and its shortcut's ops."""
    ops: list[tuple[Any, ...]] = []
    for module in modules:
        owner = getattr(module, "regbench_regularizer", None)
        if owner is not None:
            ops.append(("regularizer", owner, getattr(module, "regbench_depth", None)))
        elif isinstance(module, Residual):
            body, n_params, n_buffers = compile_ops(module.body, n_params, n_buffers)
            shortcut, n_params, n_buffers = compile_ops(module.shortcut, n_params, n_buffers)
            ops.append(("residual", body, shortcut))
        elif isinstance(module, nn.Flatten):
            ops.append(("flatten",))
        elif isinstance(module, nn.Linear):
            ops.append(("linear", n_params))
            n_params += 2
        elif isinstance(module, nn.Conv2d):
            ops.append(("conv", n_params, module.stride, module.padding, module.dilation))
            n_params += 2
        elif isinstance(module, _NORMS):
            ops.append(("batchnorm", n_params, n_buffers, module.momentum, module.eps))
            n_params, n_buffers = n_params + 2, n_buffers + 2
        else:
            ops.append(("module", module))  # activations and pooling: no tensors, any layout
    return ops, n_params, n_buffers


@contextlib.contextmanager
def _default_stream(generator: torch.Generator) -> Iterator[None]:
    """Within it, torch's default generator of the generator's device continues `generator`'s
    stream, and `generator` continues from where the block left it."""
    cuda = generator.device.type == "cuda"
    get = (lambda: torch.cuda.get_rng_state(generator.device)) if cuda else torch.get_rng_state
    put = (lambda state: torch.cuda.set_rng_state(state, generator.device)) if cuda else torch.set_rng_state
    saved = get()
    put(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(get())
        put(saved)


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


def adam_defaults(name: str) -> tuple[tuple[float, float], float]:
    """betas and eps of torch.optim.Adam/AdamW's defaults, read from the signature (building a
    torch optimizer imports torch._dynamo, about 0.7 s, which the engine does not need)."""
    if name == "sgd":
        return (0.9, 0.999), 1e-8  # unused
    params = inspect.signature(torch.optim.AdamW if name == "adamw" else torch.optim.Adam).parameters
    return tuple(params["betas"].default), float(params["eps"].default)


class Stack:
    """The live members' parameters, optimizer state, batch-norm statistics and regularizers.

    Args:
        members: the jobs, sharing one structure (regbench.engine.stackable.stack_key).
        template: a member's network with every layer any member has (e.g. dropout layers).
        optim: the shared `optim` config node (its name and momentum; each member's lr is its own).
        regularizers: (class, values) pairs from `regbench.regularizers.regularizers`.
    """

    def __init__(self, members: list[Member], template: nn.Module, optim: Any, regularizers: list[tuple[type, Any]]):
        self.members = members
        self.optim = optim
        self.adam = optim.name != "sgd"
        self.betas, self.eps = adam_defaults(optim.name)
        self.step = 0
        self.regularizer_classes = regularizers
        self.squeeze = isinstance(template, Regressor)
        # model=custom: the user's module, run as written through torch.func.functional_call (one member)
        self.custom = template if getattr(template, "regbench_custom", False) else None
        if self.custom is not None:
            if len(members) != 1:
                raise ValueError("model=custom runs one job at a time")
            self.ops, n_params, n_buffers = [], *map(len, tensors(template)[::2])
            norms = custom_norms(template)
            self.custom_names = ([name for name, _ in template.named_parameters()]
                                 + [f"{name}.{b}" for name, _ in norms for b in ("running_mean", "running_var")])
            self.custom_norms = [m for _, m in norms]
            self.n_outputs = template.regbench_outputs
        else:
            self.ops, n_params, n_buffers = compile_ops(template.net if self.squeeze else template)
            self.n_outputs = [m for m in template.modules() if isinstance(m, nn.Linear)][-1].out_features
        per_member = [tensors(m.model) for m in members]
        self.penalised = per_member[0][1]
        self.param_names, self.buffer_names = tensor_names(members[0].model)
        self.params = [torch.stack([t[0][j].detach() for t in per_member]).requires_grad_() for j in range(n_params)]
        self.buffers = [torch.stack([t[2][j] for t in per_member]) for j in range(n_buffers)]
        self.moments: list[list[torch.Tensor]] = [[] for _ in self.params]  # Adam: m, v; SGD: momentum
        # Regularizers' own per-member tensors (an average of the weights...), by regularizer name
        # and key, each a list of tensors with the member dimension first: taken out with members
        # that leave (`keep`) and saved in each member's checkpoint (`payload`). The regularizer
        # objects themselves are rebuilt by `settings` and hold no state.
        self.reg_state: dict[str, dict[str, list[torch.Tensor]]] = {}
        self.bn_momentum: float | None = None  # set by a hook: batch norm's running-average factor, else each layer's
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
            # `active` is optional (regbench.regularizers): by default on where a member's label says it acts
            if reg.active if hasattr(reg, "active") else any(cls.label(values(c.reg), c.model) is not None for c in cfgs):
                live.append(reg)
        self.by_name = {reg.name: reg for reg in live}  # the live owners of inserted layers
        self.batch_hooks = [r for r in live if hasattr(r, "batch")]
        self.penalty_hooks = [r for r in live if hasattr(r, "penalty")]
        self.before_step_hooks = [r for r in live if hasattr(r, "before_step")]
        # an average takes the weights as every other after_step (a proximal step, a projection) left them
        self.after_step_hooks = sorted((r for r in live if hasattr(r, "after_step")), key=lambda r: hasattr(r, "weights"))
        self.gradient_hooks = [r for r in live if hasattr(r, "gradient")]
        self.after_epoch_hooks = [r for r in live if hasattr(r, "after_epoch")]
        averaging = [r for r in live if hasattr(r, "weights")]
        if len(averaging) > 1:
            raise ValueError(f"two regularizers choose the evaluated weights: {', '.join(r.name for r in averaging)}")
        self.weights_hook = averaging[0] if averaging else None
        losses = [r for r in live if hasattr(r, "loss")]
        if len(losses) > 1:
            raise ValueError(f"two regularizers replace the training loss: {', '.join(r.name for r in losses)}")
        self.loss_hook = losses[0] if losses else None

    @property
    def epoch(self) -> int:
        """The epoch being trained (members of a stack are always at the same epoch)."""
        return self.members[0].state.epoch + 1

    def scheduled_lrs(self) -> list[float]:
        """The members' rates for this epoch: their schedules', unless a regularizer's `lr` hook
        takes over (SWA's own rate)."""
        lrs = [m.schedule.lr for m in self.members]
        for cls, values in self.regularizer_classes:
            if hasattr(cls, "lr"):  # a staticmethod: the rates come before the regularizers are built
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

    @staticmethod
    def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A (K,) setting shaped to broadcast over a stacked tensor like `like`."""
        return values.view(-1, *([1] * (like.dim() - 1)))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x: (K, B, ...), one batch per member; returns (K, B, outputs), or (K, B) for regression.

        Between convolutions the activations are kept as (B, K * C, H, W), member k's channels
        side by side, so that one grouped convolution, batch norm and pooling serve every member.
        """
        if self.custom is not None:
            return self._run_custom(x, train)
        h, _ = self._run(self.ops, x, False, x.shape[0], train)
        return h.squeeze(-1) if self.squeeze else h

    def _run_custom(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """model=custom: the user's module on the member's tensors (torch.func.functional_call),
        in training or eval mode, its random layers drawing from the member's dropout stream
        (swapped in for torch's default generator), so that a resumed run draws what an
        uninterrupted one draws."""
        from torch.func import functional_call

        module, member = self.custom, self.members[0]
        module.train(train)
        tensors_ = dict(zip(self.custom_names, [t[0] for t in self.params + self.buffers]))
        momenta = [m.momentum for m in self.custom_norms]
        if self.bn_momentum is not None:
            for m in self.custom_norms:
                m.momentum = self.bn_momentum
        try:
            with _default_stream(member.dropout_rng) if train else contextlib.nullcontext():
                out = functional_call(module, tensors_, (x[0],))
        finally:
            for m, momentum in zip(self.custom_norms, momenta):
                m.momentum = momentum
        return out.unsqueeze(0)

    def _run(self, ops: list[tuple[Any, ...]], h: torch.Tensor, grouped: bool, k: int, train: bool
             ) -> tuple[torch.Tensor, bool]:
        """Runs `ops` on h; returns h and whether it is in the grouped (B, K * C, H, W) layout."""
        for op in ops:
            kind = op[0]
            if kind == "conv":
                if not grouped:
                    h, grouped = h.transpose(0, 1).reshape(h.shape[1], -1, *h.shape[3:]), True
                w, b = self.params[op[1]], self.params[op[1] + 1]
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), op[2], op[3], op[4], k)
            elif kind == "flatten":
                if grouped:
                    h, grouped = h.reshape(h.shape[0], k, -1).transpose(0, 1), False
                else:
                    h = h.reshape(h.shape[0], h.shape[1], -1)
            elif kind == "linear":
                w, b = self.params[op[1]], self.params[op[1] + 1]
                if k == 1 or w.shape[1] == 1:  # torch's own kernels: one member, or a single output (matrix-vector)
                    h = torch.stack([F.linear(hk, wk, bk) for hk, wk, bk in zip(h, w, b)])
                else:
                    h = _StackedLinear.apply(h, w, b)
            elif kind == "batchnorm":
                _, p, s, momentum, eps = op
                if self.bn_momentum is not None:
                    momentum = self.bn_momentum
                args = (self.buffers[s].view(-1), self.buffers[s + 1].view(-1), self.params[p].reshape(-1),
                        self.params[p + 1].reshape(-1), train, momentum, eps)
                if grouped:  # channel k * C + c is member k's channel c
                    h = F.batch_norm(h, *args)
                else:  # feature j of member k is channel k * width + j of one (B, K * width) batch norm
                    _, n, width = h.shape
                    h = F.batch_norm(h.transpose(0, 1).reshape(n, k * width), *args).view(n, k, width).transpose(0, 1)
            elif kind == "regularizer":
                reg = self.by_name.get(op[1])
                if reg is not None:
                    # a residual branch's layer also gets its block's depth l / L
                    forward = reg.forward if op[2] is None else partial(reg.forward, depth=op[2])
                    if grouped:
                        b_, _, *spatial = h.shape
                        h = forward(self, h.view(b_, k, -1, *spatial).transpose(0, 1), train)
                        h = h.transpose(0, 1).reshape(b_, -1, *spatial)
                    else:
                        h = forward(self, h, train)
            elif kind == "residual":  # body, then shortcut, summed in that order as Residual.forward
                branch, grouped_branch = self._run(op[1], h, grouped, k, train)
                shortcut, grouped = self._run(op[2], h, grouped, k, train)
                assert grouped == grouped_branch, "a residual block's body and shortcut end in different layouts"
                h = branch + shortcut
            else:
                h = op[1](h)
        return h, grouped

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
        return (self.moments[j][1] / (1.0 - self.betas[1] ** float(self.step))).sqrt_().add_(self.eps)

    @torch.no_grad()
    def update(self) -> None:
        """One optimizer step of every member, as `torch.optim` takes it, with each member's lr,
        between the regularizers' before_step and after_step hooks."""
        self.step += 1
        for reg in self.before_step_hooks:
            reg.before_step(self)
        one_lr = len(set(self.lr)) == 1
        if self.adam:
            beta1, beta2 = self.betas
            bias_correction1 = 1 - beta1**self.step
            bias_correction2_sqrt = (1 - beta2**self.step) ** 0.5
            # lr / bias_correction1 in float64, rounded to float32 once, as torch rounds its `value`
            # (computed on the device: a host-to-device copy every step would sync a GPU)
            neg_step = (self.neg_lr64 / bias_correction1).float()
        for p, moments in zip(self.params, self.moments):
            grad = p.grad
            if not self.adam:
                if self.optim.momentum != 0:
                    if not moments:
                        moments.append(grad.clone())
                    else:
                        moments[0].mul_(self.optim.momentum).add_(grad)
                    grad = moments[0]
                if one_lr:
                    p.add_(grad, alpha=-self.lr[0])
                else:
                    p.addcmul_(grad, self.per_member(self.neg_lr, p))
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
                p.add_((self.per_member(neg_step, p) * exp_avg).div_(denom))  # addcdiv's order: (value * m) / denom
        for reg in self.after_step_hooks:
            reg.after_step(self)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    # ------------------------------------------------------------------ members
    def reported(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters and batch-norm statistics that are evaluated, monitored and reported:
        the trained ones, or those a regularizer's `weights` hook chooses (an average of them)."""
        chosen = self.weights_hook.weights(self) if self.weights_hook is not None else None
        return chosen if chosen is not None else (self.params, self.buffers)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Within it, `forward` computes with the reported weights (`reported`)."""
        params, buffers = self.params, self.buffers
        self.params, self.buffers = self.reported()
        try:
            yield
        finally:
            self.params, self.buffers = params, buffers

    def member_state(self, k: int) -> list[torch.Tensor]:
        """Copies of member k's reported parameters and batch-norm statistics (`reported`)."""
        params, buffers = self.reported()
        return [t[k].detach().clone() for t in params + buffers]

    def monitor_from(self, k: int) -> int:
        """The first epoch whose val_loss early stopping watches for member k (1, unless the
        averaging regularizer says when its average starts)."""
        hook = getattr(self.weights_hook, "monitor_from", None)
        return hook(self, k) if hook is not None else 1

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

    def payload(self, k: int) -> dict[str, Any]:
        """Member k's share of the stack, for its checkpoint: its weights, batch-norm statistics,
        optimizer moments, early-stopping state and random streams, with the stack's step."""
        from regbench.engine.checkpoint import fit_payload

        member = self.members[k]
        return {
            "step": self.step,
            # clones: saving a view would write the whole stacked tensor
            "params": [t[k].detach().clone() for t in self.params],
            "buffers": [t[k].clone() for t in self.buffers],
            "moments": [[t[k].clone() for t in moments] for moments in self.moments],
            "fit": fit_payload(member.state),
            "best_steps": member.best_steps,
            "order": member.order.get_state(),
            "augment": member.aug.get_state(),
            "dropout": member.dropout_rng.get_state(),
            "streams": member.stream_states(),
            "reg_state": {name: {key: [t[k].clone() for t in ts] for key, ts in state.items()}
                          for name, state in self.reg_state.items()},
        }

    @torch.no_grad()
    def load(self, payloads: list[dict[str, Any]]) -> None:
        """Puts every member's checkpointed share (see `payload`) back into the stack.

        Raises:
            KeyError, TypeError, ValueError, IndexError, RuntimeError: the payloads do not fit.
        """
        from regbench.engine.checkpoint import fit_state

        device = self.params[0].device
        params = [torch.stack([p["params"][j] for p in payloads]).to(device) for j in range(len(self.params))]
        buffers = [torch.stack([p["buffers"][j] for p in payloads]).to(device) for j in range(len(self.buffers))]
        if any(a.shape != b.shape for a, b in zip(params + buffers, self.params + self.buffers)) or \
                len(payloads[0]["params"]) != len(self.params) or len(payloads[0]["buffers"]) != len(self.buffers):
            raise ValueError("the weights' shapes differ from this model's")
        moments = [[torch.stack([p["moments"][j][i] for p in payloads]).to(device)
                    for i in range(len(payloads[0]["moments"][j]))] for j in range(len(self.params))]
        if len({int(p["step"]) for p in payloads}) != 1:
            raise ValueError("the members' checkpoints disagree on the step")
        states = [fit_state(p["fit"], device) for p in payloads]
        schedules = [schedule_of(m.cfg, state) for m, state in zip(self.members, states)]
        for member, payload, state, schedule in zip(self.members, payloads, states, schedules):
            member.schedule = schedule
            member.order.set_state(payload["order"])
            member.aug.set_state(payload["augment"])
            member.dropout_rng.set_state(payload["dropout"])
            member.load_streams(payload.get("streams", {}), device)
            member.state, member.best_steps = state, int(payload["best_steps"])
        self.params = [t.requires_grad_() for t in params]
        self.buffers, self.moments, self.step = buffers, moments, int(payloads[0]["step"])
        saved = payloads[0].get("reg_state", {})
        self.reg_state = {name: {key: [torch.stack([p["reg_state"][name][key][i] for p in payloads])
                                       .to(device) for i in range(len(ts))]
                                 for key, ts in state.items()}
                          for name, state in saved.items()}
        self.follow_schedules()

    @torch.no_grad()
    def conclude(self, k: int) -> bool:
        """Puts member k's reported weights into its own network: the best epoch's when early
        stopping is on or the run diverged, else the last ones. Returns whether it restored."""
        member = self.members[k]
        state, tr = member.state, member.cfg.trainer
        restore = state.best_state is not None and (tr.patience is not None or state.diverged)
        member.result["weights"] = self.weights_label(k, state.best_epoch if restore else state.epoch)
        params, _, buffers = tensors(member.model)
        for dst, src in zip(params + buffers, state.best_state if restore else self.member_state(k)):
            dst.copy_(src)
        for layer in layers(member.model):
            if isinstance(layer, _NORMS):
                layer.num_batches_tracked.fill_(member.best_steps if restore else self.step)
        return restore


def training_losses(stack: Stack, out: torch.Tensor, target: torch.Tensor, classification: bool,
                    shape: tuple[int, ...]) -> torch.Tensor:
    """Each member's training loss of one batch (K,): a regularizer's `loss` hook, or the
    cross-entropy (class indices or probabilities) or mean squared error."""
    if stack.loss_hook is not None:
        return stack.loss_hook.loss(stack, out, target)
    if target.dim() == 3:  # class probabilities (K, B, classes), from mixing: one call per member
        return torch.stack([F.cross_entropy(o, t) for o, t in zip(out, target)])
    if len(out) == 1:  # torch's own reduction, exactly a lone run's
        return (F.cross_entropy(out[0], target[0]) if classification else F.mse_loss(out[0], target[0])).unsqueeze(0)
    if classification:
        # One call for all members; its gradients round exactly like the lone run's mean loss.
        return F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(shape).mean(1)
    # the mean squared error rounds differently batched: one call per member
    return torch.stack([F.mse_loss(o, t) for o, t in zip(out, target)])


def train_epoch(stack: Stack, data: Data, batch: int) -> torch.Tensor:
    """One pass of every member over its own batch order; returns each member's sum of step
    losses (K,), on the device; only used to detect divergence (a non-finite step loss makes
    it non-finite). A trailing batch of one sample is dropped: batch norm cannot train on it."""
    n = data.x_train.shape[0]
    n_used = n - 1 if n % batch == 1 and n > 1 else n
    perms = torch.stack([torch.randperm(n, generator=m.order, device=m.order.device) for m in stack.members])
    total = torch.zeros(len(stack.members), device=data.x_train.device)
    classification = data.task == "classification"
    for start in range(0, n_used, batch):
        idx = perms[:, start : min(start + batch, n_used)]
        x, target = data.prepare(data.x_train[idx]), data.y_train[idx]
        for reg in stack.batch_hooks:
            x, target = reg.batch(stack, x, target)

        def closure(x: torch.Tensor = x, target: torch.Tensor = target) -> torch.Tensor:
            """The batch's forward and backward pass at the current parameters: fresh gradients,
            and each member's training loss (K,), without the penalty."""
            losses = training_losses(stack, stack.forward(x, train=True), target, classification, idx.shape)
            loss = losses.sum()
            penalty = stack.penalty()
            if penalty is not None:
                loss = loss + penalty
            stack.zero_grad()
            loss.backward()
            return losses.detach()

        total = total + closure()
        for reg in stack.gradient_hooks:  # SAM: the gradient at a perturbed point, from the same batch
            reg.gradient(stack, closure)
        stack.update()
    return total


@torch.no_grad()
def evaluate(stack: Stack, data: Data, split: str, batch: int) -> torch.Tensor:
    """Every member's eval-mode, penalty-free metrics of one split, (K, 2): [loss, acc] or
    [mse, r2], as regbench.engine.loop.evaluate computes them for one network."""
    with stack.evaluating():
        return _evaluate(stack, data, split, batch)


def _evaluate(stack: Stack, data: Data, split: str, batch: int) -> torch.Tensor:
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
