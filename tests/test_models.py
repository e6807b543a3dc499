"""Tests of regbench.models.build_model: architecture switches, shapes, seeding (dropout's own
behaviour: tests/regularizers/test_dropout.py)."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from regbench import UserInputError
from regbench.models import build_model
from tests.helpers.configs import make_cfg
from tests.helpers.models import build as _build
from tests.helpers.models import count as _count


# --------------------------------------------------------------------------- dropout / batchnorm switches

# name -> (dropout modules, BatchNorm1d modules, BatchNorm2d modules) when both switches are on
EXPECTED_ON = {"mlp": (2, 2, 0), "cnn": (1, 1, 2), "linear": (1, 0, 0)}


@pytest.mark.parametrize("name", ["mlp", "cnn", "linear"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_dropout_and_batchnorm_follow_config(name, dropout, batchnorm):
    model, cfg = _build(name, f"reg.dropout={dropout}", f"reg.batchnorm={batchnorm}")
    n_drop, n_bn1, n_bn2 = EXPECTED_ON[name]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == (n_drop if dropout > 0 else 0)
    assert all(d.p == cfg.reg.dropout == dropout for d in drops)
    assert _count(model, nn.BatchNorm1d) == (n_bn1 if batchnorm else 0)
    assert _count(model, nn.BatchNorm2d) == (n_bn2 if batchnorm else 0)
    assert _count(model, (nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)) == 0


def test_mlp_block_order_linear_bn_activation_dropout():
    model, _ = _build("mlp", "reg.dropout=0.2", "reg.batchnorm=true", "model.activation=tanh")
    kinds = [type(m) for m in model]
    block = [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert kinds == [nn.Flatten, *block, *block, nn.Linear]
    assert model[1].out_features == 12 and model[2].num_features == 12
    assert model[5].out_features == 10 and model[-1].out_features == 3


def test_linear_dropout_is_on_the_inputs_and_batchnorm_is_ignored_with_warning():
    """Batch norm has no hidden layer to follow on model=linear: no layer, a warning before the
    run (regbench.config.checks.notices, tests/test_schema.py) and a label without it."""
    model, _ = _build("linear", "reg.dropout=0.25", "reg.batchnorm=true")
    assert [type(m) for m in model] == [nn.Flatten, nn.Dropout, nn.Linear]


def test_cnn_dropout_only_in_the_fully_connected_head():
    model, _ = _build("cnn", "reg.dropout=0.4")
    layers = list(model)
    flat = next(i for i, m in enumerate(layers) if isinstance(m, nn.Flatten))
    assert all(not isinstance(m, nn.Dropout) for m in layers[:flat])
    assert any(isinstance(m, nn.Dropout) for m in layers[flat:])
    assert _count(model, nn.Conv2d) == 2 and _count(model, nn.MaxPool2d) == 2


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2, 7, 10)])
@pytest.mark.parametrize("regs", [[], ["reg.dropout=0.5", "reg.batchnorm=true"]])
def test_cnn_fits_image_sizes(shape, regs):
    cfg = make_cfg("model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]", *regs)
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    model.eval()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()


def test_cnn_default_config_fits_cifar_sized_input():
    cfg = make_cfg("model=cnn")
    model = build_model(cfg.model, cfg.reg, (3, 32, 32), 10, "classification")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, shape", [("mlp", (7,)), ("linear", (7,)), ("cnn", (1, 8, 8)), ("mlp", (1, 8, 8))])
def test_regression_output_is_one_dimensional(name, shape):
    model, _ = _build(name, "reg.batchnorm=true", input_shape=shape, n_outputs=1, task="regression")
    model.eval()
    out = model(torch.randn(6, *shape))
    assert out.shape == (6,)
    # a batch of one still gives shape (1,), not a scalar
    assert model(torch.randn(1, *shape)).shape == (1,)


def test_classification_output_shape():
    model, _ = _build("mlp", input_shape=(1, 8, 8), n_outputs=10)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_cnn_on_tabular_input_raises_user_input_error():
    cfg = make_cfg("model=cnn")
    with pytest.raises(UserInputError, match="image"):
        build_model(cfg.model, cfg.reg, (30,), 2, "classification")


def test_cnn_with_too_many_blocks_for_the_image_raises():
    cfg = make_cfg("model=cnn", "model.channels=[2,2,2,2]")
    with pytest.raises(UserInputError, match="blocks"):
        build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")
    # three halvings of 8x8 still fit
    cfg = make_cfg("model=cnn", "model.channels=[2,2,2]", "model.hidden_sizes=[4]")
    assert build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")(torch.randn(2, 1, 8, 8)).shape == (2, 10)


# --------------------------------------------------------------------------- seeding


def _param_layers(model: nn.Module) -> list[torch.Tensor]:
    return [t for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) for t in (m.weight, m.bias)]


@pytest.mark.parametrize("name", ["mlp", "cnn", "linear"])
def test_same_seed_same_initial_weights_whatever_the_regularizers(name):
    variants = [[], ["reg.dropout=0.5"], ["reg.batchnorm=true"], ["reg.dropout=0.3", "reg.batchnorm=true"]]
    built = []
    for overrides in variants:
        torch.manual_seed(123)
        model, _ = _build(name, *overrides)
        built.append(_param_layers(model))
    for other in built[1:]:
        assert len(other) == len(built[0])
        for a, b in zip(built[0], other):
            assert torch.equal(a, b)
    # and a different seed gives different weights (the comparison above is not vacuous)
    torch.manual_seed(124)
    model, _ = _build(name)
    assert not torch.equal(_param_layers(model)[0], built[0][0])
