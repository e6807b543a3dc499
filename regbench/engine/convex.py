"""Convex problems solved exactly: `model=linear` with an l1, l2 or elastic-net penalty.

For one affine layer (weight matrix W, bias b) regbench's objective on the training split, as
regbench prepares it (standardised features; standardised targets for a regression), is

    F(W, b) = mean data loss + l1 * ||W||_1 + 0.5 * l2 * ||W||_2^2,

with (l1, l2) the terms the `convex` regularizers declare (`convex_terms`, regbench.regularizers.contract;
the elastic net's l1 = reg.alpha * reg.l1_ratio, l2 = reg.alpha * (1 - reg.l1_ratio)), the data
loss being the cross-entropy (classification) or the squared error (regression), and the bias
never penalised (regbench.regularizers.elasticnet). F is convex, and with alpha > 0 its
minimum is a single number a user can check against scikit-learn's solvers of the same
objective (`sklearn_params` converts the strengths, exactly). The weights that reach it are
unique too when the L2 part is on; with L1 alone they can tie (a softmax does not change when
one vector is added to every class's weights, and L1 may not prefer one such shift), which
changes neither the minimum nor the optimality conditions.

`solve` finds that minimum with FISTA (accelerated proximal gradient, Beck and Teboulle 2009):
a line search on the smooth part (data loss + L2 term) that lets the step grow again where the
curvature is low (with the momentum of Scheinberg, Goldfarb and Bai 2014 for changing steps),
the L1 part applied by its proximal step (a soft threshold: exact zeros), and a restart of the
momentum whenever F would increase (O'Donoghue and Candès 2015). `optimality_violation` measures how far any weights,
from any optimizer, are from meeting the first-order optimality conditions of F.

Everything here is computed in float64 on the whole training split; it depends on torch and
on regbench's `Data` only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
GROWTH = 1.05  # the line search tries a step this much longer than the last one accepted


@dataclass
class Solution:
    """What `solve` found. The model given to `solve` holds these weights too (in its dtype).

    Attributes:
        weight: the weight matrix, float64, shape (outputs, features).
        bias: the bias, float64, shape (outputs,).
        objective: F at (weight, bias), float64 arithmetic.
        violation: `optimality_violation` of (weight, bias), before any rounding to the model's dtype.
        iterations: proximal-gradient iterations done.
        converged: whether `violation` reached the tolerance (else the iteration cap stopped it).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    objective: float
    violation: float
    iterations: int
    converged: bool


def linear_layer(model: nn.Module) -> nn.Linear:
    """The one `nn.Linear` of a `model=linear` network (regbench.models).

    Raises:
        ValueError: the model has more than one layer, or dropout or batch norm.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    others = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm))]
    if len(layers) != 1 or others or layers[0].bias is None:
        raise ValueError("the convex solver needs a model=linear network without dropout or batch norm")
    return layers[0]


def strengths(reg: Any, search: tuple[str, ...] = ()) -> tuple[float, float]:
    """(l1, l2) of the objective from the `reg` config node, as the regularizers that declare
    themselves `convex` give them (regbench.regularizers.contract.ConvexTerms): the elastic net's
    alpha * l1_ratio, alpha * (1 - l1_ratio). `search`: where a user regularizer's module may lie."""
    from regbench.regularizers import convex_terms

    return convex_terms(reg, search)


def sklearn_params(alpha: float, l1_ratio: float, n_samples: int, n_classes: int) -> dict[str, float]:
    """scikit-learn's `LogisticRegression(C=..., l1_ratio=...)` whose optimum is regbench's.

    regbench's classifier has one weight row per class, all penalised, and minimises
    mean cross-entropy + alpha * l1_ratio * ||W||_1 + 0.5 * alpha * (1 - l1_ratio) * ||W||_2^2
    (bias not penalised); scikit-learn minimises C * summed log-loss + l1_ratio' * ||w||_1
    + 0.5 * (1 - l1_ratio') * ||w||_2^2 (intercept not penalised by its lbfgs, newton and saga
    solvers), which divided by C * n_samples has the same form. With more than two classes its
    multinomial model is regbench's, row for row:

        multiclass: C = 1 / (alpha * n_samples),  l1_ratio' = l1_ratio

    With two classes scikit-learn fits one row w, regbench two whose logits differ by
    w = W[1] - W[0]; the loss sees only w, and the penalty of the best split of w into two rows
    is alpha * l1_ratio * ||w||_1 + 0.5 * (alpha * (1 - l1_ratio) / 2) * ||w||_2^2 (the L2 part
    is smallest at W[0] = -w/2, W[1] = w/2, where L1 is smallest too): the L2 part is halved, so

        binary: C = 2 / (alpha * n_samples * (1 + l1_ratio)),  l1_ratio' = 2 * l1_ratio / (1 + l1_ratio)

    and scikit-learn's `coef_[0]` is regbench's W[1] - W[0], its `intercept_[0]` b[1] - b[0].
    (With L1 only both conversions are C = 1 / (alpha * n_samples), l1_ratio' = 1.)

    Args:
        alpha, l1_ratio: regbench's `reg.alpha` (> 0) and `reg.l1_ratio`.
        n_samples: training samples (the size of the training split).
        n_classes: classes (regbench's outputs); 2 is the binary case.

    Returns:
        {"C": ..., "l1_ratio": ...}, keyword arguments of `LogisticRegression` (before
        scikit-learn 1.8 add penalty="elasticnet"; solver saga for an L1 part).

    Raises:
        ValueError: alpha <= 0 (no penalty: C would be infinite), l1_ratio outside [0, 1],
            n_samples < 1 or n_classes < 2.
    """
    if not (alpha > 0 and 0 <= l1_ratio <= 1 and n_samples >= 1 and n_classes >= 2):
        raise ValueError(f"sklearn_params needs alpha > 0, l1_ratio in [0, 1], n_samples >= 1 and n_classes >= 2 "
                         f"(got {alpha}, {l1_ratio}, {n_samples}, {n_classes})")
    # the L2 strength scikit-learn's rows see: halved for two classes (the best split of w), whole otherwise
    l1, l2 = alpha * l1_ratio, alpha * (1.0 - l1_ratio) * (0.5 if n_classes == 2 else 1.0)
    return {"C": 1.0 / ((l1 + l2) * n_samples), "l1_ratio": l1 / (l1 + l2)}


def training_batches(data: Data, chunk: int = 8192) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training split as float64 (features flattened) in chunks of `chunk` rows, with its targets."""
    n = data.x_train.shape[0]
    for start in range(0, n, chunk):
        x = data.prepare(data.x_train[start : start + chunk])
        yield x.reshape(x.shape[0], -1).double(), data.y_train[start : start + chunk]


def loss_and_gradient(
    weight: torch.Tensor, bias: torch.Tensor, batches: Batches, task: str, n: int
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The mean data loss over `n` samples and its gradient with respect to (weight, bias).

    Args:
        weight, bias: float64, shapes (outputs, features) and (outputs,).
        batches: (features, targets) chunks covering the `n` samples, features float64.
        task: "classification" (cross-entropy) or "regression" (squared error, one output).
        n: the number of samples (the mean's denominator).

    Returns:
        (loss, gradient of the weight, gradient of the bias), the penalty not included.
    """
    total = weight.new_zeros(())
    grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(bias)
    for x, y in batches:
        z = torch.addmm(bias, x, weight.T)
        if task == "classification":
            total += F.cross_entropy(z, y, reduction="sum")
            g = torch.softmax(z, dim=1)
            g[torch.arange(len(y), device=g.device), y] -= 1.0
        else:
            residual = z[:, 0] - y.double()
            total += residual.pow(2).sum()
            g = 2.0 * residual[:, None]
        grad_w.addmm_(g.T, x)
        grad_b += g.sum(0)
    return total.item() / n, grad_w / n, grad_b / n


def violation(weight: torch.Tensor, grad_w: torch.Tensor, grad_b: torch.Tensor, l1: float) -> float:
    """The largest violation of the first-order optimality conditions, given the gradients of the
    smooth part (data loss + L2 term) at (weight, bias): |grad + l1 * sign(w)| where w != 0,
    max(|grad| - l1, 0) where w == 0, and |grad| of the bias. Zero exactly at the optimum."""
    off = (grad_w + l1 * weight.sign()).abs()
    at_zero = (grad_w.abs() - l1).clamp_min(0.0)
    worst = torch.where(weight != 0, off, at_zero).max()
    return max(float(worst), float(grad_b.abs().max()))


@torch.no_grad()
def optimality_violation(model: nn.Module, data: Data, reg: Any, chunk: int = 8192) -> float:
    """How far the weights of a `model=linear` network are from the optimum of regbench's objective.

    The largest violation, over every coordinate, of the first-order optimality conditions of F
    (see the module docstring) on the training split: with g the gradient of the data loss plus
    the L2 term, |g + l1 * sign(w)| for a non-zero weight, max(|g| - l1, 0) for a zero weight,
    |g| for a bias. It is an absolute number, in units of the objective per unit of weight (the
    features are standardised, so these units are the same for every feature), computed in
    float64 on the weights exactly as the model holds them. It is 0 at the optimum only; a
    minibatch optimizer typically leaves it at the scale of its last steps' noise, and
    weights the optimum has at exactly zero that are tiny but non-zero count in full (their
    |g + l1 * sign(w)| is about 2 * l1 when |g| < l1).

    Args:
        model: a `model=linear` network (regbench.models), on the device of `data`.
        data: the dataset; only its training split is read.
        reg: the `reg` config node (its convex terms, `strengths`); the other regularizers must be off.
        chunk: rows per float64 chunk (memory only).
    """
    layer = linear_layer(model)
    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    l1, l2 = strengths(reg)
    n = data.x_train.shape[0]
    _, grad_w, grad_b = loss_and_gradient(weight, bias, training_batches(data, chunk), data.task, n)
    return violation(weight, grad_w + l2 * weight, grad_b, l1)


@torch.no_grad()
def solve(
    model: nn.Module,
    data: Data,
    reg: Any,
    tol: float = 1e-9,
    max_iter: int = 50_000,
    step: float = 1.0,
    every: int = 100,
    on_block: Callable[[int, float, float, bool], None] | None = None,
) -> Solution:
    """Minimises regbench's objective for a `model=linear` network and leaves the optimum in it.

    FISTA with backtracking: each iteration takes a gradient step of the smooth part (mean data
    loss + 0.5 * l2 * ||W||^2) from the extrapolated point, then the proximal step of
    l1 * ||W||_1 (soft-thresholding, exact zeros; biases untouched). The first step size is
    `step`, each later one starts 5% longer than the last one accepted, and it is halved until
    the step is a sufficient decrease: the quadratic upper bound of the smooth part holds, or
    (a stronger test, robust to rounding near the optimum) the gradient's change along the step
    d is at most |d|^2 / (2 * step size). The momentum restarts whenever the objective would
    increase, and that step is not taken. It starts from all-zero weights and bias (so the seed
    does not matter), all in float64 on the whole training split.

    Args:
        model: a `model=linear` network (regbench.models); its initial weights are not used.
        data: the dataset; only its training split is read.
        reg: the `reg` config node (its convex terms, `strengths`); a penalty, else the minimum need not exist.
        tol: stop once `optimality_violation` of the iterate is at most this (absolute).
        max_iter: stop after this many iterations whatever the violation.
        step: the first step size of the line search.
        every: call `on_block` after every `every` iterations (and after the last one).
        on_block: called as on_block(iterations done, current step size, seconds since the last
            call, whether this is the last call), with the model holding the current iterate (in
            its own dtype).

    Returns:
        The Solution; the model holds its weights.
    """
    layer = linear_layer(model)
    l1, l2 = strengths(reg)
    n = data.x_train.shape[0]
    batches = list(training_batches(data, chunk=max(n, 1)))
    task = data.task

    def smooth(w: torch.Tensor, b: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        loss, gw, gb = loss_and_gradient(w, b, batches, task, n)
        return loss + 0.5 * l2 * float(w.pow(2).sum()), gw + l2 * w, gb

    def objective(w: torch.Tensor, f_smooth: float) -> float:
        return f_smooth + l1 * float(w.abs().sum())

    x_w = torch.zeros_like(layer.weight, dtype=torch.float64)
    x_b = torch.zeros_like(layer.bias, dtype=torch.float64)
    f_x, gw_x, gb_x = smooth(x_w, x_b)
    obj_x = objective(x_w, f_x)
    viol_x = violation(x_w, gw_x, gb_x, l1)
    y_w, y_b, f_y, gw_y, gb_y = x_w, x_b, f_x, gw_x, gb_x
    theta, t, k = 1.0, float(step), 0
    clock = time.perf_counter()

    def running() -> bool:
        return viol_x > tol and k < max_iter and math.isfinite(obj_x)

    def report() -> None:
        nonlocal clock
        layer.weight.copy_(x_w)
        layer.bias.copy_(x_b)
        if on_block is not None:
            now = time.perf_counter()
            on_block(k, t, now - clock, not running())
            clock = now

    while running():
        k += 1
        t_last, t = t, t * (GROWTH if k > 1 else 1.0)
        while True:  # backtracking on the smooth part
            z_w = F.softshrink(y_w - t * gw_y, t * l1) if l1 > 0 else y_w - t * gw_y
            z_b = y_b - t * gb_y
            f_z, gw_z, gb_z = smooth(z_w, z_b)
            d_w, d_b = z_w - y_w, z_b - y_b
            sq = float(d_w.pow(2).sum() + d_b.pow(2).sum())
            linear = float((gw_y * d_w).sum() + (gb_y * d_b).sum())
            curvature = float(((gw_z - gw_y) * d_w).sum() + ((gb_z - gb_y) * d_b).sum())
            if sq == 0 or f_z <= f_y + linear + sq / (2 * t) or curvature <= sq / (2 * t):
                break
            t *= 0.5
        obj_z = objective(z_w, f_z)
        if obj_z > obj_x and theta > 1.0:  # momentum overshot: restart from x without it
            theta = 1.0
            y_w, y_b, f_y, gw_y, gb_y = x_w, x_b, f_x, gw_x, gb_x
        else:
            theta_next = (1.0 + math.sqrt(1.0 + 4.0 * theta * theta * t_last / t)) / 2.0
            beta = (theta - 1.0) / theta_next
            prev_w, prev_b = x_w, x_b
            x_w, x_b, f_x, gw_x, gb_x, obj_x = z_w, z_b, f_z, gw_z, gb_z, obj_z
            viol_x = violation(x_w, gw_x, gb_x, l1)
            theta = theta_next
            if beta == 0.0:
                y_w, y_b, f_y, gw_y, gb_y = x_w, x_b, f_x, gw_x, gb_x
            else:
                y_w, y_b = x_w + beta * (x_w - prev_w), x_b + beta * (x_b - prev_b)
                f_y, gw_y, gb_y = smooth(y_w, y_b)
        if k % every == 0 or not running():
            report()
    if k == 0:
        report()
    return Solution(x_w, x_b, obj_x, viol_x, k, viol_x <= tol)
