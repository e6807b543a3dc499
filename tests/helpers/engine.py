"""A lone run's stack around a model, built and trained as regbench.engine.runner does; small
stacks the regularizers' tests step by hand (`linear_stack`, `step`, `small_stack`) and copy
from (`copy_member`, `averaged_tensors`)."""

from __future__ import annotations

from pathlib import Path

import torch


def stack_of(cfg, model, seed: int = 0):
    """The engine's stack of one around `model` (a lone run's, as regbench.engine.runner builds
    it, with the data-order stream of `seed` and its network stream from `seed + 2`, as on CUDA)."""
    from regbench.engine.member import NETWORK_STREAM, Member
    from regbench.engine.stack import Stack
    from regbench.regularizers import regularizers

    device = next(model.parameters()).device
    order, network = (torch.Generator(device=device).manual_seed(s) for s in (seed, seed + 2))
    member = Member(0, cfg, Path("."), {}, model, order, {NETWORK_STREAM: network})
    return Stack([member], model, cfg.optim, regularizers(cfg.reg))


def train_epochs(stack, data, epochs: int = 1):
    """Trains a stack of one for `epochs` epochs and puts its weights into its network; returns
    the last epoch's sum of step losses."""
    from regbench.engine.steps import train_epoch

    for _ in range(epochs):
        total = train_epoch(stack, data, stack.members[0].cfg.trainer.batch_size)
    stack.conclude(0)
    return total[0]


# A small run on the default dataset: a two-layer MLP, no early stopping (the averaging tests' size).
TWO_LAYERS = ("dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.patience=null")


def small_stack(*overrides):
    """The config, data, model and stack of one of a TWO_LAYERS run with `overrides`, the model
    initialised from the config's seed."""
    from regbench.data.datasets import load
    from regbench.models import build_model
    from tests.helpers.configs import make_cfg

    cfg = make_cfg(*TWO_LAYERS, *overrides)
    data = load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    return cfg, data, model, stack_of(cfg, model)


def linear_stack(*overrides: str, n_in: int = 5, n_out: int = 6):
    """A linear model (n_in -> n_out) in a stack of one, and a torch copy of its weight."""
    from regbench.models import build_model
    from tests.helpers.configs import make_cfg

    cfg = make_cfg("model=linear", *overrides)
    torch.manual_seed(2)
    model = build_model(cfg.model, cfg.reg, (n_in,), n_out, "classification")
    return cfg, model, stack_of(cfg, model)


def step(stack, grads):
    """One engine step with the given gradients (weight, bias)."""
    for p, g in zip(stack.params, grads):
        p.grad = g.unsqueeze(0).clone()
    stack.update()
    return [p[0].detach().clone() for p in stack.params]


def copy_member(stack, module):
    """Member 0's live parameters and batch-norm statistics into `module` (its own layout)."""
    from regbench.engine.network import tensors

    params, _, buffers = tensors(module)
    with torch.no_grad():
        for dst, src in zip(params + buffers, stack.params + stack.buffers):
            dst.copy_(src[0])


def averaged_tensors(averaged):
    """The parameters and buffers of a torch.optim.swa_utils.AveragedModel's module, in the engine's order."""
    from regbench.engine.network import tensors

    params, _, buffers = tensors(averaged.module)
    return params + buffers
