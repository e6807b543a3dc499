"""FGSM adversarial training (Goodfellow et al. 2015), as Regularization Cocktails uses it (Kadra
et al. 2021, Auto-PyTorch's `AdversarialTrainer`): each training batch is attacked by the fast
gradient sign method,

    x_adv = clamp(x + eps * sign(grad_x L(x, y)))

with eps = `reg.fgsm` in standardized input units (features and pixels are standardized with
training statistics: 0.1 is a tenth of a feature's spread), and the member trains on

- `reg.fgsm_mix=join` (the default, Cocktails'): the clean and the adversarial batch at equal
  weight, 0.5 * L(x) + 0.5 * L(x_adv), as one batch of 2B examples (clean first). Batch norm, where
  on, normalises that joined batch; Auto-PyTorch runs the two halves as two forward passes, each
  with its own batch statistics;
- `reg.fgsm_mix=replace`: the adversarial batch alone (Goodfellow et al.'s alpha = 0).

The gradient is that of each member's own loss with respect to its own inputs: one extra forward
and backward pass (through the inputs only; the weights' gradients are untouched), in training
mode (dropout draws its masks from the member's network stream, batch norm uses the batch's
statistics, as Auto-PyTorch's attack does), leaving batch norm's running statistics as they are
(momentum 0, as SAM's second pass). The attack's loss is the plain one of the targets the batch
hook receives: the cross-entropy with the class labels, or with the soft targets where mixup or
cutmix mixed the batch before (it attacks the mixture the member trains on), or the mean squared
error of a regression; label smoothing, which only changes the training loss, is not part of it
(torchattacks' FGSM, the test's oracle, attacks the plain cross-entropy too).

The clamp: images (stored as pixels in [0, 1], standardized per channel: regbench.data.datasets)
are clamped to that range standardized, per channel, as torchattacks clamps to [0, 1]; a table's
standardized features (and the digits, stored standardized) have no bound and are not clamped
(Auto-PyTorch clamps every input to [0, 1], standardized tables too). FGSM runs after every other
batch regularizer (augmentation, erasing, mixing, input noise): it attacks what the model would
have seen; with input noise, the clamp also clips noise beyond the pixel range.

Evaluation is untouched: every metric is of clean inputs. Stacks: on or off for every member of a
stack (the attack pass draws dropout masks, and the join doubles the batch); eps may differ; the
mix is shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regbench.regularizers.knob import Knob

# torch is imported where it is used: the schema reads this module's knobs, and `regbench run --help`
# or a refused config must not wait for torch.
if TYPE_CHECKING:
    import torch

    from regbench.regularizers.contract import StackView

MIXES = ("join", "replace")


def attack_losses(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each member's plain loss of a batch (K,), the one the attack ascends: the cross-entropy with
    class indices (K, B) or class probabilities (K, B, C), or the mean squared error of a
    regression's outputs (K, B); one call per member, exactly as its lone run's."""
    import torch
    from torch.nn import functional as F

    if out.dim() == 2:  # a regression's (K, B)
        return torch.stack([F.mse_loss(o, t) for o, t in zip(out, target)])
    return torch.stack([F.cross_entropy(o, t) for o, t in zip(out, target)])


def perturb(x: torch.Tensor, grad: torch.Tensor, eps: torch.Tensor | float,
            bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """x + eps * sign(grad), clamped to `bounds` (low, high) where given: the FGSM step. `eps` (a
    number, or a tensor of per-member values) broadcasts over x."""
    adv = x + eps * grad.sign()
    if bounds is not None:
        adv = adv.clamp(bounds[0], bounds[1])
    return adv


def robust_score(model: torch.nn.Module, data: Any, eps: float, batch: int) -> torch.Tensor:
    """The test split's accuracy (R^2 for a regression) of `model` in eval mode on its FGSM inputs
    of `eps`: each input moved by eps along the sign of its own loss's gradient (the plain
    cross-entropy with its true label, or squared error), clamped to the data's range
    (`Data.input_range`); in chunks of `batch` (the loss summed, so that no input's gradient
    depends on the chunk). A 0-d float64 tensor on the device: nothing is read back here."""
    import torch
    from torch.nn import functional as F

    model.eval()
    x, y = data.x_test, data.y_test
    classification, bounds = data.task == "classification", data.input_range
    total = torch.zeros((), device=y.device, dtype=torch.float64)  # hits, or the squared error
    for start in range(0, x.shape[0], batch):
        inputs = data.prepare(x[start : start + batch]).requires_grad_()
        target = y[start : start + batch]
        with torch.enable_grad():
            out = model(inputs)
            loss = F.cross_entropy(out, target, reduction="sum") if classification else \
                F.mse_loss(out, target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, inputs)
        with torch.no_grad():
            out = model(perturb(inputs.detach(), grad, eps, bounds))
            total += (out.argmax(dim=1) == target).sum() if classification else (out - target).double().pow(2).sum()
    if classification:
        return total / x.shape[0]
    return 1.0 - total / (y.double() - y.double().mean()).pow(2).sum()


class FGSM:
    """Each member trains on its FGSM-attacked batch, joined with the clean one or in its place."""

    name = "fgsm"
    strength = "fgsm"
    # Auto-PyTorch's declared range for Cocktails (log, 0.001 to 0.15, its default 0.007 the preset's)
    search = {"fgsm": "tag(log, interval(0.001, 0.15))"}
    not_convex = "it trains on adversarial inputs, not the data"
    # The attack pass draws dropout masks from the member's network stream, and the join doubles
    # the batch: members of one stack all attack or none does.
    stack_on_off = True
    knobs = (
        Knob("fgsm", 0.0, "FGSM adversarial training: epsilon, the step along the sign of each input's loss "
             "gradient (standardized units; images clamped to their pixel range).", ">= 0", lambda v: v >= 0,
             since="0.2"),
        Knob("fgsm_mix", "join", "FGSM: join trains on the clean and the adversarial batch at equal weight "
             "(Cocktails'), replace on the adversarial batch alone.", "join | replace", lambda v: v in MIXES,
             member=False, since="0.2", only_when_on=True),
        Knob("fgsm_eval", 0.0, "Robust metric: test_acc_fgsm (test_r2_fgsm), the reported weights' test accuracy "
             "under FGSM of this epsilon in eval mode (0: not measured; training unchanged).", ">= 0",
             lambda v: v >= 0, since="0.2"),
    )

    @staticmethod
    def label(values: Any, model: Any) -> str | None:
        return "fgsm" if values["fgsm"] > 0 else None

    @staticmethod
    def metrics(values: Any, model: Any, data: Any, batch: int) -> dict[str, Any]:
        """`test_acc_fgsm` (`test_r2_fgsm`) where reg.fgsm_eval is on, whether or not the run trains with FGSM."""
        if values["fgsm_eval"] <= 0:
            return {}
        m = "acc" if data.task == "classification" else "r2"
        return {f"test_{m}_fgsm": robust_score(model, data, values["fgsm_eval"], batch)}

    def __init__(self, values: list[dict[str, Any]], stack: StackView) -> None:
        self.eps = [v["fgsm"] for v in values]
        self.active = any(e > 0 for e in self.eps)
        if self.active:
            self.join = values[0]["fgsm_mix"] == "join"  # shared by a stack's members (not a member knob)
            self.eps_vector = stack.vector(self.eps, skip_if_zero=False)

    def batch(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        adv = self.attack(stack, x, y)
        if not self.join:
            return adv, y
        return torch.cat([x, adv], dim=1), torch.cat([y, y], dim=1)

    def attack(self, stack: StackView, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's FGSM inputs (K, B, ...) for the batch (x, y): one forward and backward
        pass of the stack at its current weights, through the inputs only."""
        import torch

        with torch.enable_grad():
            inputs = x.detach().requires_grad_()
            with stack.norm_statistics(momentum=0.0):  # the attack leaves the running statistics as they are
                out = stack.forward(inputs, train=True)
            # members are independent: the sum's gradient wrt member k's inputs is its own loss's
            (grad,) = torch.autograd.grad(attack_losses(out, y).sum(), inputs)
        return perturb(x, grad, stack.per_member(self.eps_vector, x), stack.input_range)
