"""Tests of what the penalties share (regbench.regularizers): the weights they penalise, and the
sparsity reported. Each penalty's own tests: tests/regularizers/test_elasticnet.py and
test_weight_decay.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regbench.models import build_model
from regbench.regularizers import penalised_weights, sparsity
from tests.helpers.configs import make_cfg


# --------------------------------------------------------------------------- penalised_weights


def test_penalised_weights_mlp_with_batchnorm_excludes_biases_and_bn():
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8,6]", "reg=batchnorm")
    model = build_model(cfg.model, cfg.reg, (5,), 3, "classification")
    got = penalised_weights(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == 3 and len(bns) == 2
    assert [id(p) for p in got] == [id(m.weight) for m in linears]
    excluded = {id(m.bias) for m in linears} | {id(p) for m in bns for p in m.parameters()}
    assert not excluded & {id(p) for p in got}
    assert all(p.dim() >= 2 for p in got)


def test_penalised_weights_cnn_includes_conv_kernels():
    cfg = make_cfg("model=cnn", "model.channels=[4,6]", "model.hidden_sizes=[8]", "reg=batchnorm")
    model = build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")
    got = {id(p) for p in penalised_weights(model)}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 2 and len(linears) == 2
    assert got == {id(m.weight) for m in convs + linears}
    assert any(p.dim() == 4 for p in penalised_weights(model))


# --------------------------------------------------------------------------- sparsity


def test_sparsity_counts_exact_zeros():
    a = torch.tensor([[0.0, 1e-30], [-0.0, 2.0]])  # -0.0 is zero, 1e-30 is not
    b = torch.zeros(2, 3)
    b[0, 0] = 5.0
    assert sparsity([a, b]) == pytest.approx((2 + 5) / 10)
    assert sparsity([torch.ones(3, 3)]) == 0.0
    assert sparsity([torch.zeros(4, 1)]) == 1.0
    assert sparsity([]) == 0.0
