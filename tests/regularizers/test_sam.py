"""SAM and ASAM (regbench/regularizers/sam.py): the two-pass step against its hand-derived form on a
quadratic, ASAM against SamsungLabs/ASAM's code, the tensors it scales, its two passes and batch
norm, and a stack of SAM members against their lone runs. With EMA and SWA: tests/test_averaging.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from rich.console import Console

from regbench.data.datasets import load
from regbench.engine.network import tensors
from regbench.engine.runner import run
from regbench.engine.steps import train_epoch
from regbench.models import build_model
from tests.helpers.compare import alone_and_stacked, within_tolerance
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL
from tests.helpers.engine import small_stack as _setup
from tests.helpers.engine import stack_of

QUIET = Console(quiet=True)


def _quadratic_stack(*overrides):
    cfg, data, model, stack = _setup("model=linear", *overrides)
    g = torch.Generator().manual_seed(3)
    a = [torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5 for p in stack.params]
    with torch.no_grad():
        for p in stack.params:
            p.copy_(torch.randn(p.shape, generator=g))

    def closure():  # f(w) = sum_j 0.5 * a_j * w_j^2: its gradient a * w, known in closed form
        loss = sum((0.5 * aj.float() * p * p).sum() for aj, p in zip(a, stack.params))
        stack.zero_grad()
        loss.backward()
        return loss.detach().unsqueeze(0)

    return stack, a, closure


@pytest.mark.parametrize("adaptive", [False, True])
def test_sams_step_is_the_gradient_at_the_ascent_point_on_a_quadratic(adaptive):
    rho = 0.3
    stack, a, closure = _quadratic_stack("reg=sam", f"reg.sam={rho}", f"reg.sam_adaptive={str(adaptive).lower()}",
                                         "optim=sgd", "optim.lr=0.1", "optim.momentum=0")
    w = [p.detach().double().clone() for p in stack.params]
    # by hand: g = a w; T = |w| + 0.01 on the weight matrix (ASAM), 1 on the bias; e = rho T^2 g / ||T g||
    t = [(wj.abs() + 0.01 if adaptive and j % 2 == 0 else torch.ones_like(wj)) for j, wj in enumerate(w)]
    g = [aj * wj for aj, wj in zip(a, w)]
    norm = math.sqrt(sum(float(((tj * gj) ** 2).sum()) for tj, gj in zip(t, g)))
    e = [rho * tj * tj * gj / norm for tj, gj in zip(t, g)]
    expected = [wj - 0.1 * aj * (wj + ej) for wj, aj, ej in zip(w, a, e)]
    closure()
    (sam,) = stack.gradient_hooks
    sam.gradient(stack, closure)
    assert all(torch.equal(p.detach(), wj.float()) for p, wj in zip(stack.params, w))  # restored exactly
    for p, aj, wj, ej in zip(stack.params, a, w, e):
        torch.testing.assert_close(p.grad.double(), aj * (wj + ej), rtol=1e-5, atol=1e-6)
    stack.update()
    for p, ex in zip(stack.params, expected):
        torch.testing.assert_close(p.detach().double(), ex, rtol=1e-5, atol=1e-6)


class ReferenceASAM:
    """SamsungLabs/ASAM's asam.py (Kwon et al. 2021, Apache-2.0), its ASAM class transcribed:
    T_w = |w| + eta on the parameters whose name holds 'weight', T = 1 on the others (biases),
    e = rho T^2 g / ||T g||, the base optimizer's step at w with the gradient at w + e."""

    def __init__(self, optimizer, model, rho=0.5, eta=0.01):
        self.optimizer, self.model, self.rho, self.eta = optimizer, model, rho, eta
        self.state = {}

    @torch.no_grad()
    def ascent_step(self):
        wgrads = []
        for n, p in self.model.named_parameters():
            if p.grad is None:
                continue
            t_w = self.state.setdefault(p, {}).get("eps")
            if t_w is None:
                t_w = torch.clone(p).detach()
                self.state[p]["eps"] = t_w
            if "weight" in n:
                t_w[...] = p[...]
                t_w.abs_().add_(self.eta)
                p.grad.mul_(t_w)
            wgrads.append(torch.norm(p.grad, p=2))
        wgrad_norm = torch.norm(torch.stack(wgrads), p=2) + 1.0e-16
        for n, p in self.model.named_parameters():
            if p.grad is None:
                continue
            t_w = self.state[p].get("eps")
            if "weight" in n:
                p.grad.mul_(t_w)
            eps = t_w
            eps[...] = p.grad[...]
            eps.mul_(self.rho / wgrad_norm)
            p.add_(eps)
        self.optimizer.zero_grad()

    @torch.no_grad()
    def descent_step(self):
        for n, p in self.model.named_parameters():
            if p.grad is None:
                continue
            p.sub_(self.state[p]["eps"])
        self.optimizer.step()
        self.optimizer.zero_grad()


class ReferenceASAMCopyBack(ReferenceASAM):
    """The same, but back at w by a copy, not w + e - e (regbench's sam.py, documented there):
    the subtraction's rounding (1 ulp) is what Adam's per-coordinate step amplifies to ~1e-4
    over three steps; with the copy regbench's steps equal these bit for bit (measured)."""

    @torch.no_grad()
    def ascent_step(self):
        self.saved = [p.clone() for p in self.model.parameters()]
        super().ascent_step()

    @torch.no_grad()
    def descent_step(self):
        for p, w in zip(self.model.parameters(), self.saved):
            p.copy_(w)
        self.optimizer.step()
        self.optimizer.zero_grad()


BIAS_FREE = """
import math
from torch import nn


def make(input_shape, n_outputs):
    # no bias in the first layer (batch norm's shift follows it): counted by position, every
    # (weight, bias) pair after it is shifted
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16, bias=False), nn.BatchNorm1d(16),
                         nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, n_outputs))
"""


SGD = ["optim=sgd", "optim.lr=0.1", "optim.momentum=0.9"]


@pytest.mark.parametrize("optim, reference_asam", [(SGD, ReferenceASAM), (SGD, ReferenceASAMCopyBack),
                                                   (["optim=adam", "optim.lr=0.01"], ReferenceASAMCopyBack)])
def test_asam_on_a_custom_model_with_a_bias_free_layer_steps_as_the_reference_asam(tmp_path, optim, reference_asam):
    """reg=asam on model=custom scales the weights (and batch norm's scale) by |w| + eta and no
    bias, wherever the layer without a bias puts them: three steps of the engine's own epoch
    against SamsungLabs/ASAM's code around torch.optim on the same batches (by position, the
    old rule, with SGD they ended 0.019 away, against a largest move of 0.032)."""
    (tmp_path / "bias_free.py").write_text(BIAS_FREE)
    cfg = make_cfg("dataset.train_size=96", "trainer.batch_size=32", "model=custom", "model._target_=bias_free.make",
                   "reg=asam", *optim)
    data = load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task, search=(str(tmp_path),))
    reference = copy.deepcopy(model)
    stack = stack_of(cfg, model)
    (sam,) = stack.gradient_hooks
    names = [n for n, _ in reference.named_parameters()]
    assert stack.param_names == names
    assert sam.scaled == ["weight" in n for n in names] == [True, True, False, True, False, True, False]
    # by position (the even ones) batch norm's shift and the biases would be scaled instead
    assert sam.scaled != [j % 2 == 0 for j in range(len(names))]

    train_epoch(stack, data, cfg.trainer.batch_size)

    base = (torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9) if cfg.optim.name == "sgd"
            else torch.optim.Adam(reference.parameters(), lr=0.01))
    asam = reference_asam(base, reference, rho=cfg.reg.sam, eta=0.01)
    order = torch.randperm(data.x_train.shape[0], generator=torch.Generator().manual_seed(cfg.seed))
    steps = 0
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        x, y = data.prepare(data.x_train[idx]), data.y_train[idx]
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        asam.ascent_step()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        asam.descent_step()
        steps += 1
    assert steps == 3 and stack.step == 3
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(reference.parameters(), model.parameters()))
    assert moved > 1e-2  # the steps moved the weights far more than the tolerance
    for name, p, q in zip(names, stack.params, reference.parameters()):
        torch.testing.assert_close(p[0].detach(), q.detach(), rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("model", [["model=mlp", "reg.batchnorm=true"], ["model=cnn", "reg.batchnorm=true"],
                                   ["model=resmlp"], ["model=resnet", "reg.batchnorm=true"]])
def test_asam_scales_the_same_tensors_as_before_on_the_builtin_models(model):
    """Every layer of a built-in model has a weight and a bias, so choosing by name scales what
    the even positions did: the built-in models' ASAM numbers are unchanged."""
    cfg, data, net, stack = _setup("reg=asam", *model)
    (sam,) = stack.gradient_hooks
    assert sam.scaled == [j % 2 == 0 for j in range(len(stack.params))]
    assert [n.rsplit(".", 1)[-1] for n in stack.param_names] == ["weight", "bias"] * (len(stack.params) // 2)
    # each name is the very tensor's, in the engine's order
    named, buffers = dict(net.named_parameters()), dict(net.named_buffers())
    params, _, statistics = tensors(net)
    assert all(named[n] is t for n, t in zip(stack.param_names, params, strict=True))
    assert all(buffers[n] is t for n, t in zip(stack.buffer_names, statistics, strict=True))


def test_sam_takes_two_passes_per_step_and_leaves_batch_norms_statistics_to_the_first(tmp_path, monkeypatch):
    from regbench.engine import stack as engine

    forwards, real = [], engine.Stack.forward

    def counting(self, x, train):
        forwards.append((train, self.norm_momentum))
        return real(self, x, train)

    monkeypatch.setattr(engine.Stack, "forward", counting)
    result = run(make_cfg(*SMALL, "reg=[sam,batchnorm]", "trainer.max_epochs=1"), tmp_path, QUIET)
    steps = math.ceil(300 / 64)
    assert result["status"] == "ok" and result["reg"] == "batchnorm+sam" and result["weights"] == "trained"
    assert [f for f in forwards if f[0]] == [(True, None), (True, 0.0)] * steps


def test_sam_stacks_within_tolerance(tmp_path):
    """SAM normalises each step's gradient and steps to the ascent point, which carries the last-bit
    differences of a batched product's gradient (which Adam's and SGD's own steps round away, as
    the families above show) into the weights: a SAM member agrees with its lone run within the
    conv nets' tolerance, not bit for bit. Each member its own rho, ASAM beside SAM, batch norm
    and dropout."""
    variants = [["reg.sam=0.2", "reg.dropout=0.2"], ["reg.sam=0.05", "optim.lr=3e-3"], ["reg=asam", "reg.dropout=0.1"]]
    common = ["reg=sam", "reg.batchnorm=true", "trainer.patience=null", "trainer.max_epochs=4"]
    within_tolerance(*alone_and_stacked(tmp_path, common, variants), variants)
