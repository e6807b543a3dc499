"""The engine's optimizer update: SGD with heavy-ball momentum, Adam and AdamW, on a stack's
parameters, each member with its own learning rate.

Written to round exactly as `torch.optim`'s single-tensor implementation; building a torch
optimizer would import torch._dynamo, about 0.7 s of every run. The regularizers' hooks around
the step (before_step, after_step) are the stack's (regbench.engine.stack.Stack.update).
"""

from __future__ import annotations

import inspect

import torch


def adam_defaults(name: str) -> tuple[tuple[float, float], float]:
    """betas and eps of torch.optim.Adam/AdamW's defaults, read from the signature (building a
    torch optimizer imports torch._dynamo, about 0.7 s, which the engine does not need)."""
    if name == "sgd":
        return (0.9, 0.999), 1e-8  # unused
    params = inspect.signature(torch.optim.AdamW if name == "adamw" else torch.optim.Adam).parameters
    return tuple(params["betas"].default), float(params["eps"].default)


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) setting shaped to broadcast over a stacked tensor like `like`."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def adam_denominator(exp_avg_sq: torch.Tensor, beta2: float, eps: float, step: int) -> torch.Tensor:
    """sqrt(v_hat) + eps after `step` steps, from Adam's second moment `exp_avg_sq`: Adam's
    per-coordinate step is lr / it."""
    return (exp_avg_sq / (1.0 - beta2 ** float(step))).sqrt_().add_(eps)


def update(params: list[torch.Tensor], moments: list[list[torch.Tensor]], step: int, lr: list[float],
           neg_lr: torch.Tensor, neg_lr64: torch.Tensor, adam: bool, momentum: float,
           betas: tuple[float, float], eps: float) -> None:
    """Step `step` (counted from 1) of every member, in place, as `torch.optim` takes it; call
    it under torch.no_grad().

    Args:
        params: the stacked parameters, member dimension first, with their gradients.
        moments: per parameter, its optimizer state (Adam: m, v; SGD: momentum), created here
            at the first step.
        lr: each member's learning rate; `neg_lr` (float32) and `neg_lr64` (float64): their
            negatives as (K,) tensors on the device.
        adam: Adam or AdamW (decoupled decay is a regularizer's hook), else SGD.
        momentum: SGD's heavy-ball momentum.
        betas, eps: Adam's (`adam_defaults`).
    """
    one_lr = len(set(lr)) == 1
    if adam:
        beta1, beta2 = betas
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        # lr / bias_correction1 in float64, rounded to float32 once, as torch rounds its `value`
        # (computed on the device: a host-to-device copy every step would sync a GPU)
        neg_step = (neg_lr64 / bias_correction1).float()
    for p, moment in zip(params, moments):
        grad = p.grad
        if not adam:
            if momentum != 0:
                if not moment:
                    moment.append(grad.clone())
                else:
                    moment[0].mul_(momentum).add_(grad)
                grad = moment[0]
            if one_lr:
                p.add_(grad, alpha=-lr[0])
            else:
                p.addcmul_(grad, per_member(neg_lr, p))
            continue
        if not moment:
            moment += [torch.zeros_like(p), torch.zeros_like(p)]
        exp_avg, exp_avg_sq = moment
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        if one_lr:
            p.addcdiv_(exp_avg, denom, value=-(lr[0] / bias_correction1))
        else:
            p.add_((per_member(neg_step, p) * exp_avg).div_(denom))  # addcdiv's order: (value * m) / denom
