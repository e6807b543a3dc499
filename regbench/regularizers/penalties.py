"""Weight penalties in scikit-learn's ElasticNet convention, the L1 proximal step, and decay.

    loss = mean data loss + alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2

where w are the weight matrices and conv kernels only (parameters with two or more
dimensions); biases and batch-norm parameters are never penalised or decayed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def penalised_weights(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices and kernels: the parameters with two or more dimensions."""
    return [p for p in model.parameters() if p.dim() >= 2]


def elastic_net(weights: list[torch.Tensor], alpha: float, l1_ratio: float, include_l1: bool = True) -> torch.Tensor:
    """Returns alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2.

    With include_l1=False only the L2 part is returned (the L1 part is then applied by
    `soft_threshold_` after the optimizer step).
    """
    total = weights[0].new_zeros(())
    l1, l2 = alpha * l1_ratio, 0.5 * alpha * (1.0 - l1_ratio)
    for w in weights:
        if include_l1 and l1 > 0:
            total = total + l1 * w.abs().sum()
        if l2 > 0:
            total = total + l2 * w.pow(2).sum()
    return total


@torch.no_grad()
def soft_threshold_(weights: list[torch.Tensor], threshold: float | list[torch.Tensor]) -> None:
    """Proximal step of threshold * ||w||_1: w <- sign(w) * max(|w| - threshold, 0), in place.

    `threshold` is one number, or one tensor per weight (a per-coordinate step size).
    Weights whose magnitude falls below their threshold become exactly 0.0.
    """
    if isinstance(threshold, (int, float)):
        for w in weights:
            w.copy_(F.softshrink(w, float(threshold)))
        return
    for w, t in zip(weights, threshold):
        w.copy_(w.sign() * (w.abs() - t).clamp_min_(0.0))


def sgd_threshold(lr: float, strength: float, momentum: float, dampening: float = 0.0) -> float:
    """The proximal threshold after an SGD step: strength times the step that SGD settles into.

    Heavy-ball momentum (buf <- momentum * buf + (1 - dampening) * g, w <- w - lr * buf)
    settles into steps of lr * (1 - dampening) / (1 - momentum) times the gradient. With the
    threshold lr * strength alone, the iterates would settle where the data gradient balances
    strength * (1 - momentum): the optimum of an L1 term ten times too weak at momentum 0.9.
    With this threshold a fixed point satisfies the optimality conditions of the configured
    objective: grad = -strength * sign(w) where w != 0, |grad| <= strength where w == 0.
    """
    return lr * strength * (1.0 - dampening) / (1.0 - momentum)


@torch.no_grad()
def l1_prox_(optimizer: torch.optim.Optimizer, weights: list[torch.Tensor], strength: float) -> None:
    """Applies the L1 part (strength = alpha * l1_ratio) as a proximal step after `optimizer.step()`.

    The threshold is strength times the step size the optimizer takes: for SGD `lr`, scaled by
    1 / (1 - momentum) under heavy-ball momentum (see `sgd_threshold`); for Adam and AdamW the
    per-coordinate step lr / (sqrt(v_hat) + eps), so every coordinate is thresholded in the
    same metric as its gradient step (proximal Adam; Adam's first moment is an average, not a
    sum, so it needs no such scaling).
    """
    group = optimizer.param_groups[0]
    lr = group["lr"]
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        soft_threshold_(weights, sgd_threshold(lr, strength, group.get("momentum", 0.0), group.get("dampening", 0.0)))
        return
    beta2, eps = group["betas"][1], group["eps"]
    thresholds = []
    for w in weights:
        state = optimizer.state[w]
        bias_correction2 = 1.0 - beta2 ** float(state["step"])  # step lives on the CPU: no device sync
        denom = (state["exp_avg_sq"] / bias_correction2).sqrt_().add_(eps)
        thresholds.append((lr * strength) / denom)
    soft_threshold_(weights, thresholds)


@torch.no_grad()
def decay_(weights: list[torch.Tensor], factor: float) -> None:
    """Decoupled weight decay: w <- w * (1 - factor), with factor = lr * weight_decay."""
    torch._foreach_mul_(weights, 1.0 - factor)


@torch.no_grad()
def sparsity(weights: list[torch.Tensor]) -> float:
    """Fraction of penalised weights that are exactly zero."""
    total = sum(w.numel() for w in weights)
    if total == 0:
        return 0.0
    zeros = sum((w == 0).sum() for w in weights)
    return float(zeros) / total
