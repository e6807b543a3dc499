"""Dropout (regbench/regularizers/dropout.py): its layers' behaviour in training and in evaluation
(where the models place them: tests/test_models.py)."""

from __future__ import annotations

import torch
from torch import nn

from tests.helpers.models import build as _build
from tests.helpers.models import count as _count


def test_zero_dropout_builds_no_dropout_module_and_is_identity():
    torch.manual_seed(0)
    plain, _ = _build("mlp", "reg.dropout=0.0")
    assert _count(plain, nn.Dropout) == 0
    x = torch.randn(16, 7)
    plain.train()
    a = plain(x)
    b = plain(x)
    assert torch.equal(a, b)  # no randomness in train mode
    plain.eval()
    assert torch.equal(a, plain(x))  # train and eval agree


def test_dropout_random_in_train_mode_deterministic_in_eval_mode():
    torch.manual_seed(0)
    model, _ = _build("mlp", "reg.dropout=0.5")
    x = torch.randn(32, 7)
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a, b)
    model.eval()
    c, d = model(x), model(x)
    assert torch.equal(c, d)
    # eval with dropout equals the same weights without dropout (nn.Dropout is the identity in eval)
    torch.manual_seed(0)
    plain, _ = _build("mlp")
    plain.eval()
    torch.testing.assert_close(c, plain(x), rtol=0, atol=0)
    # and train-mode dropout zeroes about p of the hidden units
    model.train()
    hidden = model[:4](x)  # Flatten, Linear, ReLU, Dropout
    pre = model[:3](x)
    active = pre != 0
    dropped = (hidden == 0) & active
    frac = dropped.sum().item() / active.sum().item()
    assert 0.35 < frac < 0.65
    torch.testing.assert_close(hidden[active & ~dropped], pre[active & ~dropped] * 2.0)  # scaled by 1/(1-p)
