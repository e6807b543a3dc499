"""L1, L2 and elastic net: weight penalties in scikit-learn's ElasticNet convention.

    loss = mean data loss + alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2

over the weight matrices and conv kernels only (parameters with two or more dimensions);
biases and batch-norm parameters are never penalised. The L2 part is a term of the loss. The
L1 part is applied, by default, as a proximal soft-threshold after each optimizer step, so
that weights reach exact zeros; with `l1_proximal: false` it is a (sub)gradient term of the
loss instead. Presets: conf/reg/l1.yaml, l2.yaml, elasticnet.yaml.

Stacks: every knob may differ between members (the penalty is a sum of per-member terms, and
each member's gradient sees only its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView


def elastic_net(weights: list[torch.Tensor], alpha: float, l1_ratio: float, include_l1: bool = True) -> torch.Tensor:
    """Returns alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2 of one model.

    With include_l1=False only the L2 part is returned (the L1 part then comes from the
    proximal step).
    """
    total = weights[0].new_zeros(())
    l1, l2 = alpha * l1_ratio, 0.5 * alpha * (1.0 - l1_ratio)
    for w in weights:
        if include_l1 and l1 > 0:
            total = total + l1 * w.abs().sum()
        if l2 > 0:
            total = total + l2 * w.pow(2).sum()
    return total


def soft_threshold_(weights: list[torch.Tensor], threshold: float | list[torch.Tensor]) -> None:
    """Proximal step of threshold * ||w||_1: w <- sign(w) * max(|w| - threshold, 0), in place.

    `threshold` is one number, or one tensor per weight (per member, or per coordinate).
    Weights whose magnitude falls below their threshold become exactly 0.0.
    """
    import torch
    from torch.nn import functional as F

    with torch.no_grad():
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


class ElasticNet:
    """The elastic net of every member, with its own strengths (see the module's docstring)."""

    name = "elasticnet"
    strength = "alpha"
    convex = True  # the penalty of regbench's convex objective (model=linear: optim=fista solves it)
    knobs = (
        Knob("alpha", 0.0, "Strength of the weight penalty (scikit-learn's ElasticNet `alpha`).", ">= 0",
             lambda v: v >= 0),
        # Both shape a penalty of strength alpha: at alpha 0 they change nothing (only_when_on),
        # so a report of unpenalised runs does not list them.
        Knob("l1_ratio", 0.5, "Share of L1 in the penalty: 1 is L1 (lasso), 0 is L2 (ridge).", "in [0, 1]",
             lambda v: 0 <= v <= 1, only_when_on=True),
        Knob("l1_proximal", True, "Apply the L1 part as a proximal soft-threshold after each step (exact zeros).",
             "true | false", only_when_on=True),
    )

    @staticmethod
    def search(values: Any) -> dict[str, str]:
        """alpha on a log scale (the range of conf/search/elasticnet.yaml: from barely acting to
        zeroing most weights); l1_ratio only where the preset mixes the two (reg=elasticnet): l1 and
        l2 keep their 1 and 0, so each of the three presets is tuned as itself."""
        space = {"alpha": "tag(log, interval(1e-6, 1e-1))"}
        if 0 < values["l1_ratio"] < 1:
            space["l1_ratio"] = "interval(0.05, 0.95)"  # the mixes; the ends are the l1 and l2 presets' studies
        return space

    @staticmethod
    def label(reg: Any, model: Any) -> str | None:
        if reg["alpha"] <= 0:
            return None
        return {1.0: "l1", 0.0: "l2"}.get(float(reg["l1_ratio"]), "elasticnet")

    @staticmethod
    def convex_terms(values: Any) -> tuple[float, float]:
        """(l1, l2) of the convex objective l1 * ||W||_1 + 0.5 * l2 * ||W||_2^2: alpha * l1_ratio
        and alpha * (1 - l1_ratio) (regbench.engine.convex)."""
        alpha, l1_ratio = float(values["alpha"]), float(values["l1_ratio"])
        return alpha * l1_ratio, alpha * (1.0 - l1_ratio)

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        strengths = [v["alpha"] * v["l1_ratio"] for v in values]
        prox = [v["l1_proximal"] and s > 0 for v, s in zip(values, strengths)]
        self.active = any(v["alpha"] > 0 for v in values)
        # The smooth part of the loss: L2, and L1 where no proximal step takes it.
        self.l1_loss = stack.vector([0.0 if p else s for s, p in zip(strengths, prox)])
        self.l2_loss = stack.vector([0.5 * v["alpha"] * (1.0 - v["l1_ratio"]) for v in values])
        # The proximal threshold: under SGD sgd_threshold(lr, strength, momentum); under Adam
        # lr * strength, divided per coordinate by sqrt(v_hat) + eps (proximal Adam: every
        # coordinate is thresholded in the metric of its own gradient step).
        if stack.optim.name == "sgd":
            scales = [sgd_threshold(lr, s, stack.optim.momentum) if p else 0.0
                      for lr, s, p in zip(stack.lr, strengths, prox)]
        else:
            scales = [lr * s if p else 0.0 for lr, s, p in zip(stack.lr, strengths, prox)]
        self.prox_scale = stack.vector(scales)

    def penalty(self, stack: StackView) -> torch.Tensor | None:
        """Every member's smooth elastic-net term, summed."""
        import torch

        total = None
        for w, penalised in zip(stack.params, stack.penalised):
            if not penalised:
                continue
            for scale, value in ((self.l1_loss, torch.abs), (self.l2_loss, torch.square)):
                if scale is not None:
                    term = (scale * value(w).flatten(1).sum(1)).sum()
                    total = term if total is None else total + term
        return total

    def after_step(self, stack: StackView) -> None:
        """The proximal step of the L1 part, with each member's threshold (inside the engine's no_grad update)."""
        if self.prox_scale is None:
            return
        for j, (w, penalised) in enumerate(zip(stack.params, stack.penalised)):
            if not penalised:
                continue
            threshold = stack.per_member(self.prox_scale, w)
            if stack.adam:  # per coordinate: lr * strength / (sqrt(v_hat) + eps)
                threshold = stack.adam_denominator(j).reciprocal() * threshold
            w.copy_(w.sign() * (w.abs() - threshold).clamp_min_(0.0))
