"""Gradient clipping (regbench/regularizers/grad_clip.py): the clipped gradients against
torch.nn.utils.clip_grad_norm_ and clip_grad_value_ on the same gradients, each member of a stack
against torch on its own slice, a lone run's epoch against a torch loop that clips, where it sits
among SAM and weight decay, and a stack of members with different thresholds against their lone
runs. The contract's tests (tests/test_contract.py) get it from its presets, grad_clip and
grad_clip_value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from regbench.data.datasets import load
from regbench.engine import optimizer
from regbench.engine.steps import train_epoch
from regbench.models import build_model
from tests.helpers.compare import stacks_bit_for_bit
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS, linear_stack, small_stack, stack_of


def _clipper(stack):
    (clip,) = [r for r in stack.before_step_hooks if r.name == "grad_clip"]
    return clip


def _random_grads(shapes, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) * scale for s in shapes]


def _torch_clipped(grads, clip_norm=0.0, clip_value=0.0):
    """The gradients after torch's own calls on parameters holding them: clip_grad_value_, then
    clip_grad_norm_ (the order grad_clip.py states), each only where its threshold is on."""
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    if clip_value > 0:
        clip_grad_value_(params, clip_value)
    if clip_norm > 0:
        clip_grad_norm_(params, clip_norm)
    return [p.grad for p in params]


@pytest.mark.parametrize("clip_norm, clip_value", [(0.3, 0.0), (0.77, 0.0), (1e3, 0.0), (0.0, 0.02), (0.0, 0.13),
                                                   (0.2, 0.05), (1.3, 0.01)])
def test_a_lone_runs_clipped_gradients_are_torchs_bit_for_bit(clip_norm, clip_value):
    """On the CPU the member's norm rounds as clip_grad_norm_'s (a norm per tensor, then the norm of
    those; max_norm / (norm + 1e-6) as torch's reciprocal times max_norm): equal, not merely close.
    A threshold above the norm (1e3) leaves the gradients exactly as they were."""
    _, _, _, stack = small_stack(f"reg.clip_norm={clip_norm}", f"reg.clip_value={clip_value}", "reg.batchnorm=true")
    grads = _random_grads([p.shape[1:] for p in stack.params], seed=4, scale=0.1)
    for p, g in zip(stack.params, grads):
        p.grad = g.unsqueeze(0).clone()
    with torch.no_grad():
        _clipper(stack).before_step(stack)
    expected = _torch_clipped(grads, clip_norm, clip_value)
    for name, p, e in zip(stack.param_names, stack.params, expected):
        assert torch.equal(p.grad[0], e), name
    changed = any(not torch.equal(p.grad[0], g) for p, g in zip(stack.params, grads))
    assert changed == (clip_norm != 1e3)  # not a no-op: every other threshold here bites (the norm is about 5)


def test_each_member_of_a_stack_is_clipped_by_its_own_norm_and_value():
    """Three members with gradients of very different sizes and their own thresholds (one off): each
    member's slice is what torch makes of that slice alone; a norm over the whole stack would scale
    the small member too."""
    settings = [(0.5, 0.0), (0.5, 0.002), (0.0, 0.0)]
    stack = _stack([make_cfg(*TWO_LAYERS, f"reg.clip_norm={n}", f"reg.clip_value={v}") for n, v in settings])
    per_member = [_random_grads([p.shape[1:] for p in stack.params], seed=k, scale=s)
                  for k, s in enumerate((1.0, 0.001, 10.0))]
    for j, p in enumerate(stack.params):
        p.grad = torch.stack([grads[j] for grads in per_member])
    with torch.no_grad():
        _clipper(stack).before_step(stack)
    for k, ((clip_norm, clip_value), grads) in enumerate(zip(settings, per_member)):
        expected = _torch_clipped(grads, clip_norm, clip_value)
        for name, p, e in zip(stack.param_names, stack.params, expected):
            assert torch.equal(p.grad[k], e), (k, name)
    assert all(torch.equal(p.grad[2], g) for p, g in zip(stack.params, per_member[2]))  # off: untouched
    assert not torch.equal(stack.params[0].grad[0], per_member[0][0])  # scaled down to its norm 0.5
    # member 1: clamped where a coordinate was above 0.002, and not scaled (its norm is below 0.5)
    before, after = per_member[1][0], stack.params[0].grad[1]
    inside = before.abs() <= 0.002
    assert not inside.all() and torch.equal(after[inside], before[inside])
    assert torch.equal(after.abs().max(), torch.tensor(0.002))


def _stack(cfgs):
    """The engine's stack of one member per config, member k's model initialised from seed k."""
    from regbench.engine.member import NETWORK_STREAM, Member
    from regbench.engine.stack import Stack
    from regbench.regularizers import regularizers

    data = load(cfgs[0].dataset, torch.device("cpu"))
    members, models = [], []
    for k, cfg in enumerate(cfgs):
        torch.manual_seed(k)
        models.append(build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task))
        streams = {NETWORK_STREAM: torch.Generator().manual_seed(k + 2)}
        members.append(Member(k, cfg, Path("."), {}, models[-1], torch.Generator().manual_seed(k), streams))
    return Stack(members, models[0], cfgs[0].optim, regularizers(cfgs[0].reg))


@pytest.mark.parametrize("overrides", [["optim=adam", "optim.lr=0.01", "reg.clip_norm=0.2"],
                                       ["optim=sgd", "optim.lr=0.1", "optim.momentum=0.9", "reg.clip_value=0.01"],
                                       ["optim=adamw", "optim.lr=0.01", "reg.clip_norm=0.3", "reg.clip_value=0.02"]])
def test_a_lone_epoch_steps_as_a_torch_loop_that_clips_before_each_step(overrides):
    """The engine's epoch against model, torch.optim and torch's clip calls between backward() and
    step() on the same batches, bit for bit (the engine's optimizer rounds as torch.optim's
    single-tensor step); and against the same loop without clipping, which ends elsewhere (clipping
    is not a no-op there)."""
    cfg = make_cfg("dataset.train_size=96", "trainer.batch_size=32", "model.hidden_sizes=[16]", *overrides)
    data = load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    reference, unclipped = copy.deepcopy(model), copy.deepcopy(model)
    stack = stack_of(cfg, model)
    train_epoch(stack, data, cfg.trainer.batch_size)

    order = torch.randperm(data.x_train.shape[0], generator=torch.Generator().manual_seed(cfg.seed))
    for net, clip in ((reference, True), (unclipped, False)):
        if cfg.optim.name == "sgd":
            opt = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
        else:
            opt = torch.optim.Adam(net.parameters(), lr=cfg.optim.lr)  # adamw's decay is reg.weight_decay (0 here)
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            torch.nn.functional.cross_entropy(net(data.prepare(data.x_train[idx])), data.y_train[idx]).backward()
            if clip and cfg.reg.clip_value > 0:
                clip_grad_value_(net.parameters(), cfg.reg.clip_value)
            if clip and cfg.reg.clip_norm > 0:
                clip_grad_norm_(net.parameters(), cfg.reg.clip_norm)
            opt.step()
            opt.zero_grad()
    assert stack.step == 3
    for name, p, q, u in zip(stack.param_names, stack.params, reference.parameters(), unclipped.parameters()):
        assert torch.equal(p[0].detach(), q.detach()), name
    apart = max(float((q - u).detach().abs().max()) for q, u in zip(reference.parameters(), unclipped.parameters()))
    assert apart > 1e-3  # clipping moved the weights far more than the tolerance


def test_the_step_takes_sams_second_gradient_clipped(monkeypatch):
    """With SAM the gradient the optimizer sees has each member's norm at most reg.clip_norm: the
    clip comes after SAM's second pass (before it, the second pass would replace the clipped one)."""
    seen = []
    real = optimizer.update

    def recording(params, *args, **kwargs):
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))
        return real(params, *args, **kwargs)

    monkeypatch.setattr(optimizer, "update", recording)
    cfg, data, _, stack = small_stack("reg=sam", "reg.clip_norm=0.01")
    train_epoch(stack, data, cfg.trainer.batch_size)
    assert len(seen) == stack.step > 1
    assert all(n <= 0.01 * (1 + 1e-5) for n in seen), seen
    assert max(seen) > 0.0099  # each step's norm was above 0.01 and scaled to it


def test_weight_decay_is_not_clipped():
    """One SGD step by hand: w <- w * (1 - lr * wd) - lr * clipped g; the decoupled decay acts on
    the weights, beside the clipped gradient, not inside it (the bias is not decayed)."""
    cfg, model, stack = linear_stack("optim=sgd", "optim.lr=0.5", "optim.momentum=0", "reg.weight_decay=0.2",
                                     "reg.clip_norm=0.1")
    w0, b0 = (t.detach().clone() for t in (model[-1].weight, model[-1].bias))
    grads = _random_grads([w0.shape, b0.shape], seed=9)
    clipped = _torch_clipped(grads, clip_norm=0.1)
    for p, g in zip(stack.params, grads):
        p.grad = g.unsqueeze(0).clone()
    stack.update()
    torch.testing.assert_close(stack.params[0][0].detach(), w0 * (1 - 0.5 * 0.2) - 0.5 * clipped[0])
    torch.testing.assert_close(stack.params[1][0].detach(), b0 - 0.5 * clipped[1])


def test_a_stack_of_members_with_their_own_thresholds_ends_where_each_lone_run_ends(tmp_path):
    """Bit for bit on one thread: clipping by norm at three thresholds (one barely acting), by value,
    both, and off, with batch norm and dropout; one member another rate."""
    variants = [["reg.clip_norm=0.05"], ["reg.clip_norm=0.5", "optim.lr=3e-3"], ["reg.clip_norm=100.0"],
                ["reg.clip_value=0.01"], ["reg.clip_norm=0.2", "reg.clip_value=0.02"], ["reg.clip_norm=0"]]
    common = ["trainer.num_threads=1", "reg.batchnorm=true", "reg.dropout=0.1", "trainer.patience=null",
              "trainer.max_epochs=4"]
    alone, _ = stacks_bit_for_bit(tmp_path, common, variants)
    assert [a["reg"] for a in alone] == ["dropout+batchnorm+grad_clip"] * 3 + [
        "dropout+batchnorm+grad_clip_value", "dropout+batchnorm+grad_clip_norm_value", "dropout+batchnorm"]
    # the thresholds act: the members clipped hardest end elsewhere than the one clipped at 100
    assert alone[0]["metrics"]["train_loss"] != alone[2]["metrics"]["train_loss"]
    assert alone[3]["metrics"]["train_loss"] != alone[5]["metrics"]["train_loss"]


@pytest.mark.parametrize("key", ["reg.clip_norm", "reg.clip_value"])
def test_a_negative_threshold_is_refused_in_one_line(key):
    from regbench.config.checks import check

    assert check(make_cfg(f"{key}=-0.1")) == [f"{key} must be >= 0 (got -0.1)"]
