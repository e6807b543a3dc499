"""The steps of training a stack (regbench.engine.stack.Stack): one epoch of every member
over its own batch order, each member's training loss of a batch, and every member's eval-mode
metrics of a split. The epoch loop around them is regbench.engine.loop.

A training batch's target, as the data gives it or as a regularizer's `batch` hook hands it
back, is (K, B) for a regression (the values); a classification target may be class indices
(K, B) or class probabilities (K, B, C), soft targets, whose cross-entropy the loss takes
(`training_losses`). Evaluation always uses the data's own targets.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.engine.stack import Stack


def training_losses(stack: Stack, out: torch.Tensor, target: torch.Tensor, classification: bool,
                    shape: tuple[int, ...]) -> torch.Tensor:
    """Each member's training loss of one batch (K,): a regularizer's `loss` hook, or else the
    cross-entropy of a classification target, class indices (K, B) or class probabilities
    (K, B, C), or the mean squared error of a regression's.

    Args:
        out: the network's outputs, (K, B, C), or (K, B) for a regression.
        target: the batch's target (the module's docstring says which shapes).
        classification: whether the task is a classification.
        shape: (K, B), the batch's shape.
    """
    if stack.loss_hook is not None:
        return stack.loss_hook.loss(stack, out, target)
    if target.dim() == 3:  # class probabilities (K, B, C): one call per member, exactly its lone run's
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
            # the batch's shape as the hooks left it (FGSM's join doubles it)
            losses = training_losses(stack, stack.forward(x, train=True), target, classification, tuple(x.shape[:2]))
            loss = losses.sum()
            penalty = stack.penalty()
            if penalty is not None:
                loss = loss + penalty
            stack.zero_grad()
            loss.backward()
            return losses.detach()

        total = total + closure()
        for reg in stack.gradient_hooks:  # e.g. the gradient at a perturbed point, from the same batch
            reg.gradient(stack, closure)
        stack.update()
    return total


@torch.no_grad()
def evaluate(stack: Stack, data: Data, split: str, batch: int) -> torch.Tensor:
    """Every member's eval-mode, penalty-free metrics of one split, (K, 2): [loss, acc] or
    [mse, r2], as regbench.engine.loop.evaluate computes them for one network: of the reported
    weights, or of each member's ensemble where a regularizer evaluates one (Stack.predict)."""
    ensemble = stack.ensemble(stack.epoch)
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    k = len(stack.members)
    loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
    hits = torch.zeros(k, device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch):
        inputs = data.prepare(x[start : start + batch])
        out = stack.predict(inputs.unsqueeze(0).expand(k, *inputs.shape), ensemble)
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
