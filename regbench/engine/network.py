"""The network of a stack: a model compiled into the engine's ops over stacked tensors, and
the stacked forward.

Every weight tensor gets a leading member dimension; one batched product (`torch.baddbmm`, or a
grouped convolution) serves every member at each step. `tensors` fixes the order of a model's
parameters and batch-norm statistics that every member shares, `tensor_names` and
`tensor_roles` say what each of them is; `Network` compiles a template model (regbench.models)
into ops that index into that order, and runs them on a stack's tensors
(regbench.engine.stack.Stack holds them). model=custom runs as written, through
torch.func.functional_call, on its one member's tensors.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from regbench.engine.member import NETWORK_STREAM
from regbench.models import Regressor, Residual

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

# The roles of a model's tensors (`tensor_roles`), what a regularizer picks them by.
WEIGHT = "weight"  # a weight matrix or kernel: a parameter of two or more dimensions; the penalised ones
BIAS = "bias"  # a layer's bias
NORM_WEIGHT, NORM_BIAS = "norm_weight", "norm_bias"  # a normalisation layer's scale and shift
OTHER = "other"  # any other parameter of a model=custom layer (a PReLU's slopes, a learned scalar)
RUNNING_MEAN, RUNNING_VAR = "running_mean", "running_var"  # a batch norm's running statistics (buffers)


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers that hold tensors (linear, conv, batch norm), in forward order."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, *NORMS))]


def tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[bool], list[torch.Tensor]]:
    """Parameters (weight, bias per layer), which of them are penalised (those of role `WEIGHT`:
    weight matrices and kernels), and the batch-norm running statistics, in a fixed order shared
    by every member. For model=custom: every parameter, in `parameters()`' order, and every
    batch norm's statistics."""
    penalised = [role == WEIGHT for role in tensor_roles(model)[0]]
    if getattr(model, "regbench_custom", False):
        norms = [m for _, m in custom_norms(model)]
        return list(model.parameters()), penalised, [t for m in norms for t in (m.running_mean, m.running_var)]
    params, buffers = [], []
    for layer in layers(model):
        params += [layer.weight, layer.bias]
        if isinstance(layer, NORMS):
            buffers += [layer.running_mean, layer.running_var]
    return params, penalised, buffers


def tensor_roles(model: nn.Module) -> tuple[list[str], list[str]]:
    """The role of each of `tensors`' parameters (`WEIGHT`, `BIAS`, `NORM_WEIGHT`, `NORM_BIAS`,
    `OTHER`) and batch-norm statistics (`RUNNING_MEAN`, `RUNNING_VAR`), in its order: told by
    the layer that owns the tensor, so that a model=custom layer without a bias shifts nothing.
    A parameter of two or more dimensions is a `WEIGHT` whatever its layer (penalised, as
    nanoGPT's `p.dim() >= 2` splits them)."""
    if getattr(model, "regbench_custom", False):
        norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        roles = []
        for qualified, p in model.named_parameters():  # `parameters()`' order (a shared tensor once)
            owner, _, name = qualified.rpartition(".")
            if p.dim() >= 2:
                roles.append(WEIGHT)
            elif isinstance(model.get_submodule(owner), norm_types) and name in ("weight", "bias"):
                roles.append(NORM_WEIGHT if name == "weight" else NORM_BIAS)
            else:
                roles.append(BIAS if name == "bias" else OTHER)
        return roles, [role for _ in custom_norms(model) for role in (RUNNING_MEAN, RUNNING_VAR)]
    params, buffers = [], []
    for layer in layers(model):
        norm = isinstance(layer, NORMS)
        params += [NORM_WEIGHT, NORM_BIAS] if norm else [WEIGHT, BIAS]
        buffers += [RUNNING_MEAN, RUNNING_VAR] if norm else []
    return params, buffers


def tensor_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """The names of `tensors`' parameters and batch-norm statistics, in its order (`0.weight`,
    `3.bias`, `3.running_var`; for model=custom, `named_parameters()`' own): with their roles
    (`tensor_roles`), what a regularizer picks tensors by (a custom layer may have no bias: a
    position says nothing)."""
    if getattr(model, "regbench_custom", False):
        return ([name for name, _ in model.named_parameters()],
                [f"{name}.{b}" for name, _ in custom_norms(model) for b in ("running_mean", "running_var")])
    names = {id(m): f"{name}." if name else "" for name, m in model.named_modules()}  # "": the model is the layer
    owned = [(names[id(layer)], layer) for layer in layers(model)]
    return ([f"{name}{p}" for name, _ in owned for p in ("weight", "bias")],
            [f"{name}{b}" for name, layer in owned if isinstance(layer, NORMS)
             for b in ("running_mean", "running_var")])


def custom_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """model=custom's batch norms that keep running statistics, with their names, in order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def compile_ops(modules: nn.Sequential, n_params: int = 0, n_buffers: int = 0) -> tuple[list[tuple[Any, ...]], int, int]:
    """The layers of `modules` as the engine's ops, in order, with the indices of their tensors
    (in `tensors`' order) from `n_params` and `n_buffers` on; returns the ops and the next
    indices. A residual block is one op holding its body's and its shortcut's ops, and where it
    has a second branch (Shake-Shake), that branch's ops and the regularizer that mixes the two."""
    ops: list[tuple[Any, ...]] = []
    for module in modules:
        owner = getattr(module, "regbench_regularizer", None)
        if owner is not None:
            ops.append(("regularizer", owner, getattr(module, "regbench_depth", None)))
        elif isinstance(module, Residual):
            body, n_params, n_buffers = compile_ops(module.body, n_params, n_buffers)
            shortcut, n_params, n_buffers = compile_ops(module.shortcut, n_params, n_buffers)
            if module.twin is None:
                ops.append(("residual", body, shortcut))
            else:  # after the shortcut: the order of `modules()`, so of `tensors`
                twin, n_params, n_buffers = compile_ops(module.twin, n_params, n_buffers)
                ops.append(("residual", body, shortcut, twin, module.mix.regbench_regularizer))
        elif isinstance(module, nn.Flatten):
            ops.append(("flatten",))
        elif isinstance(module, nn.Linear):
            ops.append(("linear", n_params))
            n_params += 2
        elif isinstance(module, nn.Conv2d):
            ops.append(("conv", n_params, module.stride, module.padding, module.dilation))
            n_params += 2
        elif isinstance(module, NORMS):
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


class Network:
    """A template network (every layer any member has) compiled for a stack of `n_members`.

    Attributes:
        ops: the layers as the engine's ops (`compile_ops`); empty for model=custom.
        n_params, n_buffers: how many stacked parameters and batch-norm statistics they use.
        n_outputs: the classes, or 1 for regression.
        squeeze: a regressor: the last dimension (one output) is dropped.
        custom: model=custom's module, run as written (one member), else None.
    """

    def __init__(self, template: nn.Module, n_members: int):
        self.squeeze = isinstance(template, Regressor)
        # model=custom: the user's module, run as written through torch.func.functional_call (one member)
        self.custom = template if getattr(template, "regbench_custom", False) else None
        if self.custom is not None:
            if n_members != 1:
                raise ValueError("model=custom runs one job at a time")
            params, _, buffers = tensors(template)
            self.ops, self.n_params, self.n_buffers = [], len(params), len(buffers)
            norms = custom_norms(template)
            self.custom_names = ([name for name, _ in template.named_parameters()]
                                 + [f"{name}.{b}" for name, _ in norms for b in ("running_mean", "running_var")])
            self.custom_norms = [m for _, m in norms]
            self.n_outputs = template.regbench_outputs
        else:
            self.ops, self.n_params, self.n_buffers = compile_ops(template.net if self.squeeze else template)
            self.n_outputs = [m for m in template.modules() if isinstance(m, nn.Linear)][-1].out_features

    def forward(self, stack: Any, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x: (K, B, ...), one batch per member; returns (K, B, outputs), or (K, B) for regression.

        Between convolutions the activations are kept as (B, K * C, H, W), member k's channels
        side by side, so that one grouped convolution, batch norm and pooling serve every member.
        `stack` (regbench.engine.stack.Stack) holds the tensors, the batch-norm momentum in force
        (`Stack.norm_statistics`), the live regularizers whose layers the network holds, and the
        members' streams.
        """
        if self.custom is not None:
            return self._run_custom(stack, x, train)
        h, _ = self._run(stack, self.ops, x, False, x.shape[0], train)
        return h.squeeze(-1) if self.squeeze else h

    def _run_custom(self, stack: Any, x: torch.Tensor, train: bool) -> torch.Tensor:
        """model=custom: the user's module on the member's tensors (torch.func.functional_call),
        in training or eval mode, its random layers drawing from the member's network stream
        (regbench.engine.member.NETWORK_STREAM, swapped in for torch's default generator), so
        that a resumed run draws what an uninterrupted one draws."""
        from torch.func import functional_call

        module, member = self.custom, stack.members[0]
        module.train(train)
        tensors_ = dict(zip(self.custom_names, [t[0] for t in stack.params + stack.buffers]))
        momenta = [m.momentum for m in self.custom_norms]
        if stack.norm_momentum is not None:
            for m in self.custom_norms:
                m.momentum = stack.norm_momentum
        try:
            with _default_stream(member.device_rng(NETWORK_STREAM, stack.device)) if train else contextlib.nullcontext():
                out = functional_call(module, tensors_, (x[0],))
        finally:
            for m, momentum in zip(self.custom_norms, momenta):
                m.momentum = momentum
        return out.unsqueeze(0)

    def _run(self, stack: Any, ops: list[tuple[Any, ...]], h: torch.Tensor, grouped: bool, k: int, train: bool
             ) -> tuple[torch.Tensor, bool]:
        """Runs `ops` on h; returns h and whether it is in the grouped (B, K * C, H, W) layout."""
        for op in ops:
            kind = op[0]
            if kind == "conv":
                if not grouped:
                    h, grouped = h.transpose(0, 1).reshape(h.shape[1], -1, *h.shape[3:]), True
                w, b = stack.params[op[1]], stack.params[op[1] + 1]
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), op[2], op[3], op[4], k)
            elif kind == "flatten":
                if grouped:
                    h, grouped = h.reshape(h.shape[0], k, -1).transpose(0, 1), False
                else:
                    h = h.reshape(h.shape[0], h.shape[1], -1)
            elif kind == "linear":
                w, b = stack.params[op[1]], stack.params[op[1] + 1]
                if k == 1 or w.shape[1] == 1:  # torch's own kernels: one member, or a single output (matrix-vector)
                    h = torch.stack([F.linear(hk, wk, bk) for hk, wk, bk in zip(h, w, b)])
                else:
                    h = _StackedLinear.apply(h, w, b)
            elif kind == "batchnorm":
                _, p, s, momentum, eps = op
                if stack.norm_momentum is not None:
                    momentum = stack.norm_momentum
                args = (stack.buffers[s].view(-1), stack.buffers[s + 1].view(-1), stack.params[p].reshape(-1),
                        stack.params[p + 1].reshape(-1), train, momentum, eps)
                if grouped:  # channel k * C + c is member k's channel c
                    h = F.batch_norm(h, *args)
                else:  # feature j of member k is channel k * width + j of one (B, K * width) batch norm
                    _, n, width = h.shape
                    h = F.batch_norm(h.transpose(0, 1).reshape(n, k * width), *args).view(n, k, width).transpose(0, 1)
            elif kind == "regularizer":
                reg = stack.by_name.get(op[1])
                if reg is not None:
                    # a residual branch's layer also gets its block's depth l / L
                    forward = reg.forward if op[2] is None else partial(reg.forward, depth=op[2])
                    if grouped:
                        b_, _, *spatial = h.shape
                        h = forward(stack, h.view(b_, k, -1, *spatial).transpose(0, 1), train)
                        h = h.transpose(0, 1).reshape(b_, -1, *spatial)
                    else:
                        h = forward(stack, h, train)
            elif kind == "residual":  # body, then shortcut, summed in that order as Residual.forward
                branch, grouped_branch = self._run(stack, op[1], h, grouped, k, train)
                if len(op) > 3:  # a second branch, mixed with the body by its owner (Shake-Shake)
                    twin, grouped_twin = self._run(stack, op[3], h, grouped, k, train)
                    assert grouped_twin == grouped_branch, "a residual block's branches end in different layouts"
                    mix = partial(stack.by_name[op[4]].forward, stack, train=train)
                    if grouped_branch:  # member k's channels side by side: (K, B, C, H, W) for the mix
                        b_, _, *spatial = branch.shape
                        branch = mix(branch.view(b_, k, -1, *spatial).transpose(0, 1),
                                     twin=twin.view(b_, k, -1, *spatial).transpose(0, 1))
                        branch = branch.transpose(0, 1).reshape(b_, -1, *spatial)
                    else:
                        branch = mix(branch, twin=twin)
                shortcut, grouped = self._run(stack, op[2], h, grouped, k, train)
                assert grouped == grouped_branch, "a residual block's body and shortcut end in different layouts"
                h = branch + shortcut
            else:
                h = op[1](h)
        return h, grouped

