"""ShakeDrop (regbench/regularizers/shakedrop.py, its tensor operation in branch.py): forward and
backward by hand and against its formula with its own draws, and in evaluation."""

from __future__ import annotations

import torch

from regbench.regularizers import branch


def test_shakedrop_forward_and_backward_by_hand():
    """Fixed gates: a kept sample (b = 1) passes unchanged both ways; a dropped one (b = 0) is
    scaled by alpha forward and by beta backward."""
    x = torch.tensor([[2.0, -1.0], [3.0, 4.0]], requires_grad=True)
    b, alpha, beta = torch.tensor([[1.0], [0.0]]), torch.tensor([[-0.7], [-0.5]]), torch.tensor([[0.9], [0.25]])
    forward_gate, backward_gate = b + alpha - b * alpha, b + beta - b * beta
    y = branch._ShakeDropFunction.apply(x, forward_gate, backward_gate)
    assert torch.equal(y.detach(), torch.tensor([[2.0, -1.0], [-1.5, -2.0]]))
    y.backward(torch.tensor([[1.0, 2.0], [4.0, 8.0]]))
    assert torch.equal(x.grad, torch.tensor([[1.0, 2.0], [1.0, 2.0]]))


def test_shakedrop_with_its_own_draws_matches_the_formula():
    """b ~ Bernoulli(1 - p), alpha ~ U[-1, 1], beta ~ U[0, 1], one each per sample, drawn in that
    order from the generator: forward x * (b + alpha - b * alpha), backward grad * (b + beta - b * beta)."""
    p, shape = 0.4, (256, 3, 2, 2)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)).requires_grad_()
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    y = branch.shakedrop(x, p, True, torch.Generator().manual_seed(5))
    y.backward(upstream)
    g = torch.Generator().manual_seed(5)
    b = torch.empty(256, 1, 1, 1).bernoulli_(1 - p, generator=g)
    alpha = torch.empty(256, 1, 1, 1).uniform_(-1, 1, generator=g)
    beta = torch.empty(256, 1, 1, 1).uniform_(0, 1, generator=g)
    assert 0 < b.sum() < 256 and alpha.min() < 0 < alpha.max()
    torch.testing.assert_close(y.detach(), x.detach() * (b + alpha - b * alpha), rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, upstream * (b + beta - b * beta), rtol=0, atol=1e-6)
    assert torch.equal(y.detach()[b.view(-1) == 1], x.detach()[b.view(-1) == 1])  # kept samples exactly


def test_shakedrop_evaluation_scales_by_the_expected_gate_and_p_zero_is_the_identity():
    p = 0.3
    x = torch.randn(8, 5)
    assert torch.equal(branch.shakedrop(x, p, False), x * (1 - p))
    assert torch.equal(branch.ShakeDrop(p).eval()(x), x * (1 - p))
    assert branch.shakedrop(x, 0.0, True) is x and branch.shakedrop(x, 0.0, False) is x
    # the training gate's mean is the evaluation's scale, 1 - p
    gates, _ = branch.shakedrop_gates(torch.empty(50_000, 1), p, torch.Generator().manual_seed(0))
    assert abs(gates.mean().item() - (1 - p)) < 0.01  # its standard error is 0.002
