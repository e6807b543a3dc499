"""The residual models (model=resmlp, model=resnet) and the regularizers of their branches
together: the rates over depth, parameter counts by hand, stacks equal to lone runs, and the
one-line refusals. Each branch regularizer's own tests: tests/regularizers/test_drop_path.py and
test_shakedrop.py."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from regbench import UserInputError
from regbench.config.checks import check
from regbench.engine import grouping
from regbench.models import Residual, build_model
from regbench.regularizers import branch
from regbench.results import config_hash, flatten
from tests.helpers.compare import alone_and_stacked, bit_for_bit, within_tolerance
from tests.helpers.configs import RESMLP, RESNET, make_cfg
from tests.helpers.engine import stack_of


# --------------------------------------------------------------------------- the rates over depth


def test_the_rate_grows_linearly_over_depth_in_the_engine(monkeypatch):
    """Block l of L gets l / L of reg.drop_path (and of reg.shakedrop): the rates the stacked
    forward pass hands to the tensor operations, block by block."""
    cfg = make_cfg(*RESMLP, "model.groups=2", "model.blocks=3", "reg.drop_path=0.3", "reg.shakedrop=0.6")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, (10,), 3, "classification")
    layers = [m for m in model.modules() if isinstance(m, branch.DropPath)]
    assert [m.regbench_depth for m in layers] == [l / 6 for l in range(1, 7)]
    seen: dict[str, list[float]] = {"drop": [], "shake": []}
    drop, shake = branch.drop_path, branch.shakedrop
    monkeypatch.setattr(branch, "drop_path", lambda x, p, *a: seen["drop"].append(p) or drop(x, p, *a))
    monkeypatch.setattr(branch, "shakedrop", lambda x, p, *a: seen["shake"].append(p) or shake(x, p, *a))
    stack_of(cfg, model).forward(torch.randn(1, 4, 10), train=True)
    assert seen["drop"] == pytest.approx([0.3 * l / 6 for l in range(1, 7)], abs=1e-15)
    assert seen["shake"] == pytest.approx([0.6 * l / 6 for l in range(1, 7)], abs=1e-15)


# --------------------------------------------------------------------------- the models

def test_resnet20_has_the_papers_027m_parameters():
    """He et al.'s ResNet-20 for CIFAR-10: 0.27M parameters. With option A (parameter-free
    shortcuts) and no conv biases it is 269,722 exactly; regbench's option-B shortcuts add two
    1x1 convs with their batch norms, and its convs keep their biases."""
    cfg = make_cfg("model=resnet", "reg=batchnorm")
    model = build_model(cfg.model, cfg.reg, (3, 32, 32), 10, "classification")
    n = sum(p.numel() for p in model.parameters())
    conv = 3 * 16 * 9 + 6 * 16 * 16 * 9 + (16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64 * 64) * 9
    norms = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    option_a = conv + norms + 64 * 10 + 10
    assert option_a == 269_722
    shortcuts = (16 * 32 + 32) + (32 * 64 + 64) + 2 * (32 + 64)
    biases = 16 + 6 * 16 + 6 * 32 + 6 * 64
    assert n == option_a + shortcuts + biases
    assert round(n / 1e6, 2) == 0.27
    assert sum(isinstance(m, Residual) for m in model.modules()) == 9
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 19 + 2


def test_resnet_blocks_are_he_et_als_basic_blocks_with_option_b_shortcuts():
    cfg = make_cfg("model=resnet", "reg=[batchnorm,dropout]")
    model = build_model(cfg.model, cfg.reg, (3, 32, 32), 10, "classification")
    blocks = [m for m in model if isinstance(m, Residual)]
    assert len(blocks) == 9 and all(isinstance(model[i + 1], nn.ReLU) for i, m in enumerate(model) if m in blocks)
    kinds = [type(m) for m in blocks[0].body]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Conv2d, nn.BatchNorm2d, branch.DropPath,
                     branch.ShakeDrop]
    projected = [i for i, b in enumerate(blocks) if len(b.shortcut)]
    assert projected == [3, 6]  # the first block of stages 2 and 3; the others add the identity
    for i in projected:
        conv = blocks[i].shortcut[0]
        assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and blocks[i].body[0].stride == (2, 2)
        assert isinstance(blocks[i].shortcut[1], nn.BatchNorm2d)
    assert [b.body[0].out_channels for b in blocks] == [16] * 3 + [32] * 3 + [64] * 3
    assert isinstance(model[-3], nn.AdaptiveAvgPool2d) and model[-1].in_features == 64
    wide = make_cfg("model=resnet", "model.width_mult=2", "model.depth=14")
    blocks = [m for m in build_model(wide.model, wide.reg, (1, 8, 8), 10, "classification") if isinstance(m, Residual)]
    assert [b.body[0].out_channels for b in blocks] == [32] * 2 + [64] * 2 + [128] * 2


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_resnet_fits_the_image_sizes(shape):
    cfg = make_cfg(*RESNET, "reg=[batchnorm,dropout,drop_path]")
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    assert model(torch.randn(4, *shape)).shape == (4, 10)
    assert model.eval()(torch.randn(4, *shape)).shape == (4, 10)


def test_resnet_on_a_table_is_refused_in_one_line():
    cfg = make_cfg("model=resnet")
    with pytest.raises(UserInputError, match="model=resnet needs image data") as e:
        build_model(cfg.model, cfg.reg, (30,), 2, "classification")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resmlp_shape_and_parameter_count_by_hand(batchnorm):
    f, w, groups, blocks, classes = 30, 12, 2, 3, 4
    cfg = make_cfg("model=resmlp", f"model.width={w}", f"model.groups={groups}", f"model.blocks={blocks}",
                   f"reg.batchnorm={batchnorm}", "reg.dropout=0.1")
    model = build_model(cfg.model, cfg.reg, (f,), classes, "classification")
    n_blocks = groups * blocks
    expected = (f * w + w) + n_blocks * 2 * (w * w + w) + (w * classes + classes)
    if batchnorm:
        expected += (2 * n_blocks + 1) * 2 * w  # two per block and one before the head
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model(torch.randn(5, f)).shape == (5, classes)
    kinds = [type(m) for m in model[2].body]  # a block: [BN] act linear [BN] act dropout linear drop_path shakedrop
    bn = [nn.BatchNorm1d] if batchnorm else []
    assert kinds == [*bn, nn.ReLU, nn.Linear, *bn, nn.ReLU, nn.Dropout, nn.Linear, branch.DropPath, branch.ShakeDrop]
    # flattened images too
    assert build_model(cfg.model, cfg.reg, (1, 8, 8), 10, "classification")(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("overrides, shape", [(RESMLP + ["reg=[batchnorm,dropout,drop_path,shakedrop]"], (64,)),
                                               (RESNET + ["reg=[batchnorm,dropout,drop_path,shakedrop]"], (1, 8, 8))])
def test_a_stack_of_one_computes_what_the_plain_network_computes(overrides, shape):
    """In evaluation (where drop_path keeps every branch and ShakeDrop scales it by 1 - p_l) the
    engine's stack of one equals the nn.Module exactly; in training their draws are their own."""
    cfg = make_cfg(*overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    stack = stack_of(cfg, model)
    x = torch.randn(16, *shape)
    stack.forward(x.unsqueeze(0), train=True)  # moves the batch-norm statistics away from their start
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == len(stack.buffers) // 2 > 0
    for layer, mean, var in zip(norms, stack.buffers[::2], stack.buffers[1::2]):
        layer.running_mean.copy_(mean[0]), layer.running_var.copy_(var[0])
    with torch.no_grad():
        assert torch.equal(stack.forward(x.unsqueeze(0), train=False)[0], model.eval()(x))


# --------------------------------------------------------------------------- the engine and the command line

def test_drop_path_and_shakedrop_are_refused_on_models_without_residual_blocks():
    for overrides, key in ((["reg=drop_path"], "reg.drop_path=0.1"), (["model=cnn", "reg=shakedrop"], "reg.shakedrop=0.5")):
        problems = check(make_cfg(*overrides))
        assert len(problems) == 1 and problems[0].startswith(key) and "model=resmlp or model=resnet" in problems[0]
    assert check(make_cfg("model=resmlp", "reg=[drop_path,shakedrop]")) == []
    assert check(make_cfg("model=resnet", "reg.drop_path=0")) == []  # off: nothing to refuse


def test_residual_knobs_out_of_range_are_refused():
    assert check(make_cfg("model=resnet", "model.depth=21")) == [
        "model.depth must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110... (got 21)"]
    assert check(make_cfg("model=resmlp", "model.width=0")) == ["model.width must be >= 1 (got 0)"]
    assert "reg.drop_path must be in [0, 1) (got 1.0)" in check(make_cfg("model=resmlp", "reg.drop_path=1.0"))


def test_the_new_model_knobs_leave_the_hash_of_other_models_as_it_was():
    def hashed(*overrides):
        return config_hash(flatten(OmegaConf.to_container(make_cfg(*overrides), resolve=True)))

    params = flatten(OmegaConf.to_container(make_cfg("reg=l2"), resolve=True))
    new = ("model.groups", "model.blocks", "model.width", "model.depth", "model.width_mult")
    assert hashed("reg=l2") == config_hash({k: v for k, v in params.items() if k not in new})
    assert hashed("reg=l2", "model.width=64") == hashed("reg=l2")  # mlp does not read it
    assert hashed("model=resmlp", "model.width=64") != hashed("model=resmlp")
    assert hashed("model=resnet", "model.depth=32") != hashed("model=resnet")


def test_the_residual_knobs_are_structure_and_the_rates_are_not():
    key = lambda *o: grouping.stack_key(make_cfg(*RESMLP, *o))  # noqa: E731
    base = key()
    assert base is not None and grouping.stack_key(make_cfg(*RESNET)) is not None
    assert key("reg=drop_path") == key("reg=shakedrop") == key("reg.drop_path=0.3", "reg.shakedrop=0.2") == base
    for o in ("model.width=32", "model.groups=2", "model.blocks=1", "model.activation=gelu"):
        assert key(o) != base, o
    assert grouping.stack_key(make_cfg(*RESNET, "model.width_mult=2")) != grouping.stack_key(make_cfg(*RESNET))


def test_resmlp_stacks_bit_for_bit_with_and_without_drop_path_and_shakedrop(tmp_path):
    common = [*RESMLP, "reg.batchnorm=true", "trainer.patience=2", "trainer.max_epochs=6"]
    variants = [["reg=none"], ["reg=drop_path"], ["reg=shakedrop", "optim.lr=3e-3"],
                ["reg=[drop_path,dropout]", "reg.drop_path=0.3", "reg.shakedrop=0.2"],
                ["reg=l2", "seed=1", "dataset.split_seed=0"]]
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    assert len({json.dumps(a["metrics"]) for a in alone}) == len(variants)  # the regularizers changed something
    assert all(a["status"] == "ok" for a in alone), [a.get("error") for a in alone]
    bit_for_bit(tmp_path, alone, stacked, variants)


def test_resnet_stacks_and_agrees_with_its_lone_runs_within_the_conv_tolerance(tmp_path):
    common = [*RESNET, "reg.batchnorm=true", "trainer.max_epochs=3", "trainer.patience=null"]
    variants = [["reg=none"], ["reg=drop_path", "reg.drop_path=0.2"], ["reg=shakedrop"], ["reg=dropout", "reg.dropout=0.2"]]
    within_tolerance(*alone_and_stacked(tmp_path, common, variants), variants)


def test_a_residual_model_knob_set_for_another_model_gets_a_notice():
    from regbench.config.checks import notices

    assert "model.width=64 has no effect with model=mlp (it is read by: resmlp)" in notices(make_cfg("model.width=64"))
    assert "model.depth=32 has no effect with model=resmlp (it is read by: resnet)" in notices(
        make_cfg("model=resmlp", "model.depth=32"))
    assert not [n for n in notices(make_cfg("model=resnet", "model.depth=32")) if n.startswith("model.")]


@pytest.mark.parametrize("overrides", [RESMLP, RESNET], ids=["resmlp", "resnet"])
def test_training_with_drop_path_and_shakedrop_reads_back_from_the_device_once_per_epoch(tmp_path, overrides):
    """Their draws and gates stay on the device: the epoch's numbers are the loop's only read-back
    (the CPU stand-in for tests/test_cuda.py's GPU check; see tests/helpers/syncs.py's HostSyncs)."""
    from tests.helpers.syncs import fit_under_host_syncs

    cfg = make_cfg(*overrides, "reg=[drop_path,shakedrop,dropout,batchnorm]", "dataset.train_size=300",
                   "trainer.max_epochs=3", "trainer.patience=null")
    stack, probe = fit_under_host_syncs(cfg, tmp_path)
    assert len(stack.members[0].state.history) == 3
    assert probe.calls == [("tolist", ("fit",))] * 3
