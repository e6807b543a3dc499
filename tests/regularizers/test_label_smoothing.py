"""Label smoothing (regbench/regularizers/label_smoothing.py): the training loss is torch's
smoothed cross-entropy, evaluation's is the plain one."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from regbench.engine.loop import evaluate
from regbench.models import build_model
from tests.helpers.configs import make_cfg
from tests.helpers.data import table_data as _table_data
from tests.helpers.engine import stack_of, train_epochs


def test_label_smoothing_affects_training_but_not_evaluate():
    data = _table_data(n=64)
    states, step_sums = {}, {}
    for ls in (0.0, 0.2):
        cfg = make_cfg("model=linear", "optim=sgd", "optim.lr=0.5", "optim.momentum=0",
                       "trainer.batch_size=64", f"reg.label_smoothing={ls}")
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
        with torch.no_grad():
            logits0 = model(data.x_train)
        # one full batch: the returned step loss is the smoothed loss at the initial weights
        step_sums[ls] = train_epochs(stack_of(cfg, model), data).item()
        expected = F.cross_entropy(logits0, data.y_train, label_smoothing=ls).item()
        assert step_sums[ls] == pytest.approx(expected, rel=1e-5)
        states[ls] = model[-1].weight.detach().clone()
        # evaluate: plain cross-entropy whatever reg.label_smoothing
        with torch.no_grad():
            logits = model(data.x_train)
        loss = evaluate(model, data, "train", 8192)[0].item()
        assert loss == pytest.approx(F.cross_entropy(logits, data.y_train).item(), rel=1e-6)
        if ls > 0:
            assert abs(loss - F.cross_entropy(logits, data.y_train, label_smoothing=ls).item()) > 1e-3
    assert step_sums[0.0] != pytest.approx(step_sums[0.2], rel=1e-3)
    assert not torch.allclose(states[0.0], states[0.2], atol=1e-5)
