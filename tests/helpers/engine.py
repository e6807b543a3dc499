"""A lone run's stack around a model, built and trained as regbench.engine.runner does."""

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
