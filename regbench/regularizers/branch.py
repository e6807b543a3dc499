"""The tensor operations of the regularizers that act on a residual block's branch (stochastic
depth, ShakeDrop) or mix its two branches (Shake-Shake), shared by the plain network's layers
and the engine's stacked hooks.

A residual block computes shortcut(h) + branch(h); these act on branch(h) before the sum. The
model builder (regbench.models) gives each such layer the `regbench_depth` l / L of its block
(the l-th of L, counted from the input), so the rate grows linearly over depth.
"""

from __future__ import annotations

import torch
from torch import nn


def row_noise_shape(x: torch.Tensor) -> list[int]:
    """One draw per sample: (B, 1, ..., 1) for a batch x of shape (B, ...)."""
    return [x.shape[0]] + [1] * (x.dim() - 1)


def drop_path(x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """`torchvision.ops.stochastic_depth(x, p, mode="row", training)` with the draws from
    `generator` (torch's global stream when None): each sample's branch is dropped with
    probability p, the kept ones scaled by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    noise = torch.empty(row_noise_shape(x), dtype=x.dtype, device=x.device).bernoulli_(survival, generator=generator)
    return x * noise.div_(survival)


class _ShakeDropFunction(torch.autograd.Function):
    """x * forward_gate in the forward pass, grad * backward_gate in the backward pass (the
    gates are not differentiated: they are random draws)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, forward_gate: torch.Tensor, backward_gate: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(backward_gate)
        return x * forward_gate

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (backward_gate,) = ctx.saved_tensors
        return grad * backward_gate, None, None


def shakedrop_gates(x: torch.Tensor, p: float, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward and backward gates of ShakeDrop for a batch like x, one per sample:
    b ~ Bernoulli(1 - p), alpha ~ U[-1, 1], beta ~ U[0, 1], drawn in that order;
    b + alpha - b * alpha is 1 where b = 1 and alpha where b = 0 (written as such, so that a
    kept sample's gate is exactly 1), and likewise with beta."""
    shape = row_noise_shape(x)
    keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=generator).bool()
    alpha = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(-1.0, 1.0, generator=generator)
    beta = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(0.0, 1.0, generator=generator)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(keep, one, alpha), torch.where(keep, one, beta)


def shakedrop(x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """ShakeDrop (Yamada et al. 2019) of a branch x with drop probability p: in training
    x * (b + alpha - b * alpha) forward and grad * (b + beta - b * beta) backward; in evaluation
    x * E[b + alpha - b * alpha] = x * (1 - p). p = 0 is the identity."""
    if p == 0.0:
        return x
    if not training:
        return x * (1.0 - p)
    forward_gate, backward_gate = shakedrop_gates(x, p, generator)
    return _ShakeDropFunction.apply(x, forward_gate, backward_gate)


class _ShakeShakeFunction(torch.autograd.Function):
    """alpha * b1 + (1 - alpha) * b2 in the forward pass; in the backward pass the upstream
    gradient times beta to b1 and times 1 - beta to b2 (Gastaldi 2017: the backward pass draws
    its own coefficient; the coefficients are not differentiated)."""

    @staticmethod
    def forward(ctx, b1: torch.Tensor, b2: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(beta)
        return alpha * b1 + (1 - alpha) * b2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        (beta,) = ctx.saved_tensors
        return grad * beta, grad * (1 - beta), None, None


def shake_shake_coefficients(x: torch.Tensor, generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shake-Shake-Image's coefficients for a batch like x, one per sample: alpha ~ U[0, 1] (the
    forward pass's), then beta ~ U[0, 1] (the backward pass's), drawn in that order."""
    shape = row_noise_shape(x)
    alpha = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(0.0, 1.0, generator=generator)
    beta = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(0.0, 1.0, generator=generator)
    return alpha, beta


def shake_shake(b1: torch.Tensor, b2: torch.Tensor, training: bool, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Shake-Shake (Gastaldi 2017, "Shake-Shake-Image") of a residual block's two branches: in
    training alpha * b1 + (1 - alpha) * b2 forward, the gradient times beta (b1) and 1 - beta
    (b2) backward, alpha and beta drawn per sample (`shake_shake_coefficients`); in evaluation
    their expectation, 0.5 * (b1 + b2)."""
    if not training:
        return 0.5 * (b1 + b2)
    alpha, beta = shake_shake_coefficients(b1, generator)
    return _ShakeShakeFunction.apply(b1, b2, alpha, beta)


class DropPath(nn.Module):
    """Stochastic depth of one residual branch, at `rate` * its block's `regbench_depth`."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.regbench_depth = 1.0  # set by the model builder: l / L of this block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate * self.regbench_depth, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, depth={self.regbench_depth:.3g}"


class ShakeDrop(nn.Module):
    """ShakeDrop of one residual branch, with drop probability `rate` * its block's `regbench_depth`."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.regbench_depth = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shakedrop(x, self.rate * self.regbench_depth, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, depth={self.regbench_depth:.3g}"


class ShakeShake(nn.Module):
    """Shake-Shake's mix of a residual block's two branches (regbench.models.Residual calls it
    with both)."""

    def forward(self, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
        return shake_shake(b1, b2, self.training)
