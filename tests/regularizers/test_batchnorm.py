"""Batch normalisation (regbench/regularizers/batchnorm.py) in the engine's training step."""

from __future__ import annotations

import math

import torch

from regbench.models import build_model
from tests.helpers.configs import make_cfg
from tests.helpers.data import table_data as _table_data
from tests.helpers.engine import stack_of, train_epochs


def test_trailing_batch_of_one_is_dropped_with_batchnorm():
    data = _table_data(n=65)  # 65 = 64 + 1
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8]", "reg.batchnorm=true", "trainer.batch_size=64",
                   "optim=sgd", "optim.momentum=0", "optim.lr=0.1")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    total = train_epochs(stack_of(cfg, model), data)
    assert math.isfinite(total.item())
    assert int(model[2].num_batches_tracked) == 1  # one batch of 64, the lone sample skipped
