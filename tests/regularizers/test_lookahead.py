"""Lookahead (regbench/regularizers/lookahead.py) against timm's own wrapper, `timm.optim.Lookahead`
around torch's SGD and Adam, step for step on identical inputs; with the L1 proximal step (timm's
wrapper around a proximal SGD), EMA and SWA (torch.optim.swa_utils over the trained weights); a
stack of members with different k and alpha against their lone runs; a run interrupted mid-cycle.

Tolerance against timm: none. The engine's step rounds as torch.optim's single-tensor step and the
sync is timm's own operation (`slow.add_(fast - slow, alpha=alpha)`, then a copy) on the same
elements, so the weights agree bit for bit on the CPU; `torch.equal` is asserted.

timm creates its slow buffer at the first sync, from the fast weights of that moment (its first
sync changes nothing); regbench's slow weights start at the initial weights, as the paper's and the
authors' code's do. The reference is timm's wrapper whose buffer holds the initial weights from the
first step on: `base.state[p]["lookahead_slow_buff"]`, which timm's `update_slow` then uses as it is.
"""

from __future__ import annotations

import copy

import pytest
import torch
from rich.console import Console
from torch.nn import functional as F
from torch.optim import swa_utils

from regbench.engine import checkpoint
from regbench.engine.runner import run
from regbench.engine.steps import train_epoch
from regbench.regularizers import label, notices
from regbench.regularizers.elasticnet import sgd_threshold
from tests.helpers.compare import alone_and_stacked, bit_for_bit, ends_alike
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL
from tests.helpers.engine import averaged_tensors, copy_member, linear_stack, small_stack, step
from tests.helpers.interrupt import ctrl_c_after_row

QUIET = Console(quiet=True)
STEPS = 20


@pytest.fixture
def timm_lookahead():
    """timm's wrapper, timm.optim.Lookahead (timm is a test extra; without it the test skips)."""
    return pytest.importorskip("timm.optim", reason="timm (a test extra) is not installed").Lookahead


def _batches(n: int = STEPS):
    """Fixed batches of a 5-feature, 6-class problem: the identical inputs of both sides."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 5, generator=g), torch.randint(0, 6, (16,), generator=g)) for _ in range(n)]


def _ours_step(stack, x, y):
    """One engine step of a linear stack of one on the batch (x, y), its gradients by autograd."""
    w, b = (p[0].detach().clone().requires_grad_() for p in stack.params)
    step(stack, torch.autograd.grad(F.cross_entropy(x @ w.T + b, y), (w, b)))


def _timm(wrapper, stack, base_optimizer, alpha: float, k: int):
    """timm's Lookahead (`wrapper`) around `base_optimizer(params)`, on copies of the stack's initial weights."""
    params = [p.detach()[0].clone().requires_grad_() for p in stack.params]
    return params, wrapper(base_optimizer(params), alpha=alpha, k=k)


def _timm_step(params, lookahead, x, y, step_number: int, initial):
    lookahead.zero_grad()
    F.cross_entropy(x @ params[0].T + params[1], y).backward()
    lookahead.step()
    if step_number == 1:  # the paper's slow weights: the initial ones (see the module's docstring); k > 1 here
        for p, w in zip(params, initial):
            lookahead._base_optimizer.state[p]["lookahead_slow_buff"] = w.clone()


@pytest.mark.parametrize("optim", ["sgd", "adam"])
@pytest.mark.parametrize("k,alpha", [(3, 0.5), (4, 0.8), (2, 0.3)])
def test_a_lone_run_equals_timms_lookahead_step_for_step(optim, k, alpha, timm_lookahead):
    cfg, _, stack = linear_stack("reg=lookahead", f"reg.lookahead_k={k}", f"reg.lookahead_alpha={alpha}",
                                 f"optim={optim}", "optim.lr=0.05")
    _, _, plain = linear_stack(f"optim={optim}", "optim.lr=0.05")  # the same optimizer without Lookahead
    if optim == "sgd":
        base = lambda ps: torch.optim.SGD(ps, lr=cfg.optim.lr, momentum=cfg.optim.momentum)  # noqa: E731
    else:
        base = lambda ps: torch.optim.Adam(ps, lr=cfg.optim.lr)  # noqa: E731
    params, lookahead = _timm(timm_lookahead, stack, base, alpha, k)
    initial = [p.detach().clone() for p in params]
    for t, (x, y) in enumerate(_batches(), start=1):
        _ours_step(stack, x, y)
        _ours_step(plain, x, y)
        _timm_step(params, lookahead, x, y, t, initial)
        for ours, theirs in zip(stack.params, params):
            assert torch.equal(ours[0], theirs), (t, optim)
        slow = stack.reg_state["lookahead"]["slow"]
        assert all(torch.equal(s, p) for s, p in zip(slow, stack.params)) == (t % k == 0), t  # synced: fast = slow
    # not a no-op: the weights are not those of the optimizer alone
    assert not torch.equal(stack.params[0], plain.params[0])
    # and the optimizer's own state went on as timm's base optimizer kept it (momentum, Adam's moments)
    state = lookahead._base_optimizer.state[params[0]]
    theirs = [state["momentum_buffer"]] if optim == "sgd" else [state["exp_avg"], state["exp_avg_sq"]]
    assert all(torch.equal(m[0], t) for m, t in zip(stack.moments[0], theirs))


class ProximalSGD(torch.optim.SGD):
    """torch's SGD followed by the L1 proximal step regbench takes (soft-threshold of the weight
    matrix by sgd_threshold(lr, strength, momentum), torch's softshrink): the inner optimizer of the
    reference."""

    def __init__(self, params, lr: float, momentum: float, strength: float):
        super().__init__(params, lr=lr, momentum=momentum)
        self.threshold = sgd_threshold(lr, strength, momentum)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() >= 2:
                    p.copy_(F.softshrink(p, self.threshold))
        return loss


def test_the_sync_pulls_the_proximal_iterate_towards_the_slow_weights(timm_lookahead):
    """reg=[l1,lookahead]: the proximal step is part of the inner step, the sync comes after it:
    timm's Lookahead around a proximal SGD, bit for bit. The other order (the proximal step after
    the sync) is another trajectory, and between syncs the weights have the proximal step's zeros."""
    strength, k = 0.02, 3
    cfg, _, stack = linear_stack("reg=[l1,lookahead]", f"reg.alpha={strength}", f"reg.lookahead_k={k}", "optim=sgd",
                                 "optim.lr=0.05")
    base = lambda ps: ProximalSGD(ps, lr=cfg.optim.lr, momentum=cfg.optim.momentum, strength=strength)  # noqa: E731
    params, lookahead = _timm(timm_lookahead, stack, base, 0.5, k)
    # the other order: timm's Lookahead around plain SGD, the proximal step after its sync
    sgd = lambda ps: torch.optim.SGD(ps, lr=cfg.optim.lr, momentum=cfg.optim.momentum)  # noqa: E731
    other, other_lookahead = _timm(timm_lookahead, stack, sgd, 0.5, k)
    initial = [p.detach().clone() for p in params]
    zeros_between_syncs, differs = [], False
    for t, (x, y) in enumerate(_batches(), start=1):
        _ours_step(stack, x, y)
        _timm_step(params, lookahead, x, y, t, initial)
        _timm_step(other, other_lookahead, x, y, t, initial)
        with torch.no_grad():
            other[0].copy_(F.softshrink(other[0], sgd_threshold(cfg.optim.lr, strength, cfg.optim.momentum)))
        for ours, theirs in zip(stack.params, params):
            assert torch.equal(ours[0], theirs), t
        differs |= not torch.equal(stack.params[0][0], other[0])
        if t % k:
            zeros_between_syncs.append(int((stack.params[0] == 0).sum()))
    assert differs
    assert zeros_between_syncs[-1] > 0  # the proximal step's exact zeros, between syncs


def test_ema_averages_the_weights_after_the_sync():
    """reg=[lookahead,ema]: EMA's after_step runs after the sync, so the average is torch's
    AveragedModel over the weights each whole step leaves (synced every k steps)."""
    cfg, data, model, stack = small_stack("reg=[lookahead,ema]", "reg.ema=0.9", "reg.lookahead_k=2")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9), use_buffers=True)
    update, synced = stack.update, []

    def update_and_mirror():
        update()
        copy_member(stack, mirror)
        oracle.update_parameters(mirror)
        slow = stack.reg_state["lookahead"]["slow"]
        synced.append(all(torch.equal(s, p) for s, p in zip(slow, stack.params)))

    stack.update = update_and_mirror
    for _ in range(2):
        train_epoch(stack, data, cfg.trainer.batch_size)
        params, buffers = stack.reported()
        for ours, theirs in zip(params + buffers, averaged_tensors(oracle)):
            assert torch.equal(ours[0], theirs)
    assert synced == [t % 2 == 0 for t in range(1, len(synced) + 1)]  # the sync acted every second step


def test_swa_averages_the_trained_weights_at_each_epochs_end():
    """reg=[lookahead,swa]: SWA's average is AveragedModel's over the end-of-epoch trained (fast)
    weights, synced ones where an epoch ends on a sync (k = 3, 5 steps an epoch: epochs 3 and 6)."""
    cfg, data, model, stack = small_stack("reg=[lookahead,swa]", "reg.swa=0.5", "trainer.max_epochs=6",
                                          "reg.lookahead_k=3")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror)
    for epoch in range(1, 7):
        stack.follow_schedules()
        train_epoch(stack, data, cfg.trainer.batch_size)
        slow = stack.reg_state["lookahead"]["slow"]
        assert all(torch.equal(s, p) for s, p in zip(slow, stack.params)) == (epoch % 3 == 0), epoch
        copy_member(stack, mirror)
        stack.end_epoch(data)
        if epoch > 3:
            oracle.update_parameters(mirror)
            for ours, theirs in zip(stack.reported()[0], averaged_tensors(oracle)):
                torch.testing.assert_close(ours[0], theirs, rtol=1e-6, atol=1e-7)
        stack.members[0].state.history.append({"epoch": epoch, "val_loss": 1.0, "lr": stack.lr[0]})


@pytest.mark.parametrize("variants", [
    # k and alpha differ: each member syncs on its own steps, with its own alpha (one member never)
    [[], ["reg.lookahead_k=3"], ["reg.lookahead_k=2", "reg.lookahead_alpha=0.8"], ["seed=1", "reg.lookahead_alpha=0.3"],
     ["reg.lookahead_k=0"]],
    # k and alpha shared: the stack syncs as one tensor operation
    [[], ["seed=1"], ["optim.lr=3e-3"]],
], ids=["different", "shared"])
def test_a_stack_ends_where_each_members_lone_run_ends(tmp_path, variants):
    common = ["reg=lookahead", "trainer.max_epochs=4", "trainer.num_threads=1", "dataset.split_seed=0"]
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    assert [s["stack_size"] for s in stacked] == [len(variants)] * len(variants)
    assert [a["reg"] for a in alone] == ["lookahead"] * (len(variants) - 1) + [alone[-1]["reg"]]
    bit_for_bit(tmp_path, alone, stacked, variants)


def test_a_run_interrupted_mid_cycle_resumes_bit_for_bit(tmp_path, monkeypatch):
    """k = 4, 5 steps an epoch: the checkpoint after epoch 3 (step 15) is 3 steps into a cycle; it
    holds the slow weights, and the resumed run ends as the run never interrupted."""
    cfg = make_cfg(*SMALL, "reg=lookahead", "reg.lookahead_k=4", "trainer.max_epochs=5", "trainer.checkpoint_seconds=0")
    clean = run(cfg, tmp_path / "clean", QUIET)
    plain = run(make_cfg(*SMALL, "trainer.max_epochs=5"), tmp_path / "plain", QUIET)
    assert clean["reg"] == "lookahead" and clean["weights"] == plain["weights"] == "trained"
    assert clean["metrics"] != plain["metrics"]  # not a no-op
    let_run = ctrl_c_after_row(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", QUIET)
    saved = torch.load(tmp_path / "cut" / checkpoint.CHECKPOINT_FILE, weights_only=True)["member"]
    assert saved["step"] == 15 and saved["step"] % 4 == 3
    slow, fast = saved["reg_state"]["lookahead"]["slow"], saved["params"]
    assert len(slow) == len(fast) and not any(torch.equal(s, f) for s, f in zip(slow, fast))  # mid-cycle
    let_run()
    resumed = run(cfg, tmp_path / "cut", QUIET)
    assert resumed["resumed_from_epoch"] == 3
    ends_alike(resumed, tmp_path / "cut", clean, tmp_path / "clean")


def test_its_knobs_label_and_notice():
    on = make_cfg("reg=lookahead")
    assert (on.reg.lookahead_k, on.reg.lookahead_alpha) == (5, 0.5) and label(on.reg, on.model) == "lookahead"
    off = make_cfg("reg.lookahead_alpha=0.8")
    assert label(off.reg, off.model) == "none"
    assert notices(off.reg, off) == ["reg.lookahead_alpha has no effect with reg.lookahead_k=0: set reg.lookahead_k, "
                                     "e.g. 5 (reg=lookahead)"]
    assert notices(on.reg, on) == []
