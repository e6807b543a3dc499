"""Shake-Shake (regbench/regularizers/shake_shake.py, its tensor operation in branch.py, its second
branches in regbench/models.py): forward and backward against the paper's definition written by
hand with the same draws, and against torch.autograd on the stop-gradient formulation; evaluation;
the model's second branches; the engine's stacked form, stacks and refusals. The contract's
generic checks (stacks and resumes bit for bit, one read-back per epoch, evaluation untouched):
tests/test_contract.py."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from regbench.config.checks import check
from regbench.engine import grouping
from regbench.models import Residual, build_model
from regbench.regularizers import branch
from regbench.regularizers.shake_shake import ShakeShake
from tests.helpers.compare import alone_and_stacked, bit_for_bit, within_tolerance
from tests.helpers.configs import RESMLP, RESNET, make_cfg
from tests.helpers.engine import stack_of

SHAPE = (64, 3, 2, 2)


def _branches(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def _coefficients(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's Shake-Shake-Image coefficients, drawn by hand: alpha, then beta, ~ U[0, 1], one per sample."""
    g = torch.Generator().manual_seed(seed)
    alpha = torch.empty(SHAPE[0], 1, 1, 1).uniform_(0, 1, generator=g)
    beta = torch.empty(SHAPE[0], 1, 1, 1).uniform_(0, 1, generator=g)
    return alpha, beta


def test_the_forward_pass_is_the_papers_mix_with_per_sample_alpha():
    b1, b2, _ = _branches()
    y = branch.shake_shake(b1, b2, True, torch.Generator().manual_seed(5))
    alpha, beta = _coefficients(5)
    assert torch.equal(y, alpha * b1 + (1 - alpha) * b2)  # the paper's definition, the same draws
    # per sample: each sample's alpha is its own, in [0, 1], and the backward one is another draw
    assert len(alpha.unique()) == SHAPE[0] and 0 <= alpha.min() and alpha.max() <= 1
    assert not torch.equal(alpha, beta)
    # neither branch alone, nor their even mix (the evaluation's)
    for other in (b1, b2, 0.5 * (b1 + b2)):
        assert not torch.allclose(y, other)


def test_the_backward_pass_sends_beta_and_one_minus_beta_of_the_gradient():
    b1, b2, upstream = _branches()
    b1.requires_grad_(), b2.requires_grad_()
    y = branch.shake_shake(b1, b2, True, torch.Generator().manual_seed(5))
    g1, g2 = torch.autograd.grad(y, (b1, b2), upstream)
    alpha, beta = _coefficients(5)
    assert torch.equal(g1, upstream * beta) and torch.equal(g2, upstream * (1 - beta))
    # not alpha's: the backward coefficient is drawn independently
    assert not torch.allclose(g1, upstream * alpha)
    # the stop-gradient formulation some implementations use: beta's mix plus the forward's
    # difference from it, detached; torch.autograd on identical inputs
    r1, r2 = b1.detach().clone().requires_grad_(), b2.detach().clone().requires_grad_()
    ref = beta * r1 + (1 - beta) * r2 + ((alpha - beta) * r1 + (beta - alpha) * r2).detach()
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    h1, h2 = torch.autograd.grad(ref, (r1, r2), upstream)
    assert torch.equal(h1, g1) and torch.equal(h2, g2)


def test_the_coefficients_are_uniform_on_zero_one():
    alpha, beta = branch.shake_shake_coefficients(torch.empty(50_000, 1), torch.Generator().manual_seed(0))
    for c in (alpha, beta):
        assert 0 <= c.min() and c.max() <= 1 and abs(c.mean().item() - 0.5) < 0.01  # standard error 0.0013
    assert abs(torch.corrcoef(torch.stack([alpha.view(-1), beta.view(-1)]))[0, 1].item()) < 0.02  # independent


def test_evaluation_takes_the_expectation_and_is_deterministic():
    b1, b2, _ = _branches()
    assert torch.equal(branch.shake_shake(b1, b2, False), 0.5 * b1 + 0.5 * b2)
    layer = branch.ShakeShake().eval()
    assert torch.equal(layer(b1, b2), layer(b1, b2))
    assert torch.equal(layer(b1, b2), 0.5 * b1 + 0.5 * b2)
    train = branch.ShakeShake().train()
    assert not torch.equal(train(b1, b2), train(b1, b2))  # training draws anew


@pytest.mark.parametrize("overrides, shape", [(RESMLP, (64,)), (RESNET, (1, 8, 8))], ids=["resmlp", "resnet"])
def test_each_block_gets_a_second_branch_with_its_own_weights_and_the_rest_keeps_its_own(overrides, shape):
    cfg = make_cfg(*overrides, "reg=[shake_shake,batchnorm]")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    blocks = [m for m in model.modules() if isinstance(m, Residual)]
    assert blocks and all(isinstance(b.mix, branch.ShakeShake) for b in blocks)
    for b in blocks:
        assert [type(m) for m in b.twin] == [type(m) for m in b.body]  # the same architecture
        w1, w2 = [m.weight for m in b.body if isinstance(m, (nn.Linear, nn.Conv2d))], \
                 [m.weight for m in b.twin if isinstance(m, (nn.Linear, nn.Conv2d))]
        assert [w.shape for w in w1] == [w.shape for w in w2] and not any(torch.equal(u, v) for u, v in zip(w1, w2))
    # the branches' parameters double; every other weight is the one the model has without it
    count = lambda ms: sum(p.numel() for m in ms for p in m.parameters())  # noqa: E731
    cfg_bn = make_cfg(*overrides, "reg=batchnorm")
    torch.manual_seed(0)
    with_bn = build_model(cfg_bn.model, cfg_bn.reg, shape, 10, "classification")
    assert count([model]) == count([with_bn]) + count([b.body for b in blocks])
    own = {k: v for k, v in model.state_dict().items() if ".twin." not in k}
    assert own.keys() == with_bn.state_dict().keys()
    assert all(torch.equal(v, with_bn.state_dict()[k]) for k, v in own.items())
    assert model.eval()(torch.randn(4, *shape)).shape == (4, 10)


def test_the_layers_draw_their_weights_in_the_order_they_did_and_the_second_branches_last(monkeypatch):
    """The order the layers are created in is the order they draw their initial weights in: a
    resnet's block body before its shortcut (as before Shake-Shake), so that every number a run
    without it gives stays; with it, the second branches after everything else."""
    created = []
    real = nn.Conv2d.reset_parameters
    monkeypatch.setattr(nn.Conv2d, "reset_parameters",
                        lambda self: created.append((self.kernel_size[0], self.stride[0])) or real(self))
    for reg in ("none", "shake_shake"):
        cfg = make_cfg(*RESNET, f"reg={reg}")
        build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")
    body = lambda stride: [(3, stride), (3, 1)]  # noqa: E731
    plain = [(3, 1), *body(1), *body(2), (1, 2), *body(2), (1, 2)]  # depth 8: one block per stage
    assert created == plain + plain + body(1) + body(2) + body(2)


@pytest.mark.parametrize("overrides, shape", [(RESMLP, (64,)), (RESNET, (1, 8, 8))], ids=["resmlp", "resnet"])
def test_a_stack_of_one_computes_what_the_plain_network_computes(overrides, shape):
    """In evaluation the engine's stack of one equals the nn.Module exactly (the grouped conv
    layout of resnet included); in training it mixes by its member's own draws."""
    cfg = make_cfg(*overrides, "reg=shake_shake")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    stack = stack_of(cfg, model)
    x = torch.randn(16, *shape)
    with torch.no_grad():
        assert torch.equal(stack.forward(x.unsqueeze(0), train=False)[0], model.eval()(x))
        one, two = stack.forward(x.unsqueeze(0), train=True), stack.forward(x.unsqueeze(0), train=True)
    assert not torch.equal(one, two) and not torch.allclose(one[0], model.eval()(x))


class _Member:
    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def device_rng(self, name: str, device: torch.device) -> torch.Generator:
        assert name == "shake_shake"
        return self.generator


class _Stack:
    def __init__(self, seeds: list[int]) -> None:
        self.members = [_Member(s) for s in seeds]


def test_the_stacked_hook_mixes_each_member_by_its_own_stream():
    b1, b2, _ = _branches()
    h, twin = torch.stack([b1, b2]), torch.stack([b2, b1])  # (K=2, B, ...)
    reg = ShakeShake([{"shake_shake": True}] * 2, _Stack([7, 8]))
    out = reg.forward(_Stack([7, 8]), h, True, twin=twin)
    for k, seed in enumerate((7, 8)):
        alpha, _ = _coefficients(seed)
        assert torch.equal(out[k], alpha * h[k] + (1 - alpha) * twin[k])
    assert torch.equal(reg.forward(_Stack([7, 8]), h, False, twin=twin), 0.5 * (h + twin))


def test_it_changes_training_and_members_that_share_its_switch_stack_bit_for_bit(tmp_path):
    """Not a no-op: each seed's run differs from reg=none's and from Shake-Even's (the 0.5 mix in
    training too); members (seeds, learning rates, other regularizers) stack bit for bit. The
    switch is the architecture (a second branch), so it is shared by a stack: on and off members
    cannot stack, like batch norm's."""
    common = [*RESMLP, "reg.batchnorm=true", "trainer.patience=2", "trainer.max_epochs=4", "dataset.split_seed=0"]
    variants = [["reg=shake_shake"], ["reg=[shake_shake,dropout]", "optim.lr=3e-3"],
                ["reg=[shake_shake,l2]", "seed=1"]]
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    assert all(a["status"] == "ok" for a in alone), [a.get("error") for a in alone]
    assert len({json.dumps(a["metrics"]) for a in alone}) == len(variants)
    bit_for_bit(tmp_path, alone, stacked, variants)
    key = lambda *o: grouping.stack_key(make_cfg(*RESMLP, "dataset.split_seed=0", *o))  # noqa: E731
    assert key("reg=shake_shake") != key() and key("reg=shake_shake", "seed=1") == key("reg=shake_shake")


def test_it_is_not_a_no_op(tmp_path, monkeypatch):
    from rich.console import Console

    from regbench.engine.runner import run

    quiet, common = Console(quiet=True), [*RESMLP, "dataset.train_size=200", "trainer.max_epochs=2",
                                          "trainer.patience=null"]
    shaken = run(make_cfg(*common, "reg=shake_shake"), tmp_path / "shaken", quiet)
    none = run(make_cfg(*common), tmp_path / "none", quiet)
    monkeypatch.setattr(branch, "shake_shake", lambda b1, b2, training, generator=None: 0.5 * (b1 + b2))
    even = run(make_cfg(*common, "reg=shake_shake"), tmp_path / "even", quiet)
    assert shaken["reg"] == even["reg"] == "shake_shake" and none["reg"] == "none"
    assert len({json.dumps(r["metrics"]) for r in (shaken, none, even)}) == 3


@pytest.mark.slow
def test_resnet_stacks_within_the_conv_tolerance(tmp_path):
    common = [*RESNET, "reg=[shake_shake,batchnorm]", "trainer.max_epochs=2", "trainer.patience=null",
              "dataset.split_seed=0"]
    within_tolerance(*alone_and_stacked(tmp_path, common, [[], ["seed=1"], ["reg.dropout=0.2"]]),
                     [[], ["seed=1"], ["reg.dropout=0.2"]])


def test_it_is_refused_in_one_line_without_residual_blocks_and_beside_shakedrop_or_drop_path():
    for model in ("mlp", "cnn", "linear"):
        assert check(make_cfg(f"model={model}", "reg=shake_shake")) == [
            f"reg.shake_shake=true shakes residual branches; model={model} has none (use model=resmlp or model=resnet)"]
    for preset, knob in (("shakedrop", "reg.shakedrop=0.5"), ("drop_path", "reg.drop_path=0.1")):
        assert check(make_cfg("model=resmlp", f"reg=[shake_shake,{preset}]")) == [
            f"reg.shake_shake=true and {knob} both rescale the residual branches: choose one"]
    assert check(make_cfg("model=resnet", "reg=shake_shake")) == []
    assert check(make_cfg("model=mlp", "reg.shake_shake=false")) == []  # off: nothing to refuse
