"""Decoupled weight decay (regbench/regularizers/weight_decay.py): one step by hand, Adam with
it against torch.optim.AdamW, SGD's decoupled step against its formula."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.models import build_model
from tests.helpers.configs import make_cfg
from tests.helpers.engine import linear_stack as _linear_stack
from tests.helpers.engine import stack_of, train_epochs
from tests.helpers.engine import step as _step


def test_weight_decay_multiplies_the_weights_by_one_minus_lr_times_rate():
    cfg, model, stack = _linear_stack("optim=sgd", "optim.lr=0.25", "optim.momentum=0", "reg.weight_decay=0.5")
    w0, b0 = model[-1].weight.detach().clone(), model[-1].bias.detach().clone()
    ours = _step(stack, [torch.zeros(6, 5), torch.zeros(6)])
    torch.testing.assert_close(ours[0], w0 * 0.875, rtol=0, atol=0)
    torch.testing.assert_close(ours[1], b0, rtol=0, atol=0)  # biases are never decayed


def _digits_data(n_train: int = 128) -> tuple[Data, object]:
    from regbench.data.datasets import load

    cfg = make_cfg("dataset=digits", f"dataset.train_size={n_train}")
    return load(cfg.dataset, torch.device("cpu")), cfg


def _one_epoch(data: Data, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = make_cfg("dataset=digits", "model=mlp", "model.hidden_sizes=[16]", "trainer.batch_size=32", *overrides)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    train_epochs(stack_of(cfg, model, cfg.seed), data)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_adam_with_weight_decay_equals_torch_adamw():
    data, _ = _digits_data()
    common = ("optim.lr=0.01", "reg.weight_decay=0.5")
    adam = _one_epoch(data, "optim=adam", *common)
    adamw = _one_epoch(data, "optim=adamw", *common)
    plain = _one_epoch(data, "optim=adam", "optim.lr=0.01")
    assert adam.keys() == adamw.keys()
    for k in adam:
        torch.testing.assert_close(adam[k], adamw[k], rtol=1e-6, atol=1e-7, msg=k)
    # the decay changed the weights (so the equality above is not vacuous); biases are never decayed
    assert not torch.allclose(adam["1.weight"], plain["1.weight"], atol=1e-4)
    assert not torch.allclose(adam["3.weight"], plain["3.weight"], atol=1e-4)


def test_sgd_weight_decay_is_decoupled():
    """For SGD without momentum one step is w <- w*(1 - lr*wd) - lr*grad; check the weights
    of a one-batch epoch against that, with the gradient taken at the initial weights."""
    data, _ = _digits_data(64)
    cfg = make_cfg("model=linear", "optim=sgd", "optim.momentum=0", "optim.lr=0.1", "reg.weight_decay=0.3",
                   "trainer.batch_size=64")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    w0 = model[1].weight.detach().clone()
    b0 = model[1].bias.detach().clone()
    loss = F.cross_entropy(model(data.x_train), data.y_train)
    gw, gb = torch.autograd.grad(loss, [model[1].weight, model[1].bias])
    train_epochs(stack_of(cfg, model), data)
    torch.testing.assert_close(model[1].weight.detach(), w0 * (1 - 0.1 * 0.3) - 0.1 * gw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].bias.detach(), b0 - 0.1 * gb, rtol=1e-5, atol=1e-6)  # biases not decayed
