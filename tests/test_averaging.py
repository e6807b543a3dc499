"""EMA, SWA and SAM (regbench/regularizers/ema.py, swa.py, sam.py): the averages against
torch.optim.swa_utils (AveragedModel, get_ema_multi_avg_fn, update_bn, SWALR) step for step on
the engine's own trajectory; SAM's two-pass step against its hand-derived form on a quadratic;
how the averages meet early stopping and what a run reports."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch.optim import swa_utils

from regbench import UserInputError
from regbench.config.checks import check
from regbench.data.datasets import load
from regbench.engine.loop import evaluate
from regbench.engine.runner import run
from regbench.engine.network import tensors
from regbench.engine.steps import train_epoch
from regbench.models import build_model
from regbench.regularizers import swa as swa_module
from tests.helpers.configs import make_cfg
from tests.helpers.engine import stack_of

QUIET = Console(quiet=True)
SMALL = ("dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.patience=null")


def _setup(*overrides):
    cfg = make_cfg(*SMALL, *overrides)
    data = load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    return cfg, data, model, stack_of(cfg, model)


def _copy_member(stack, module):
    """Member 0's live parameters and batch-norm statistics into `module` (its own layout)."""
    params, _, buffers = tensors(module)
    with torch.no_grad():
        for dst, src in zip(params + buffers, stack.params + stack.buffers):
            dst.copy_(src[0])


def _averaged_tensors(averaged):
    params, _, buffers = tensors(averaged.module)
    return params + buffers


@pytest.mark.parametrize("decay", [0.9, 0.999])
def test_ema_equals_torchs_averaged_model_step_for_step(decay):
    cfg, data, model, stack = _setup("reg=[ema,batchnorm]", f"reg.ema={decay}")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    update, steps = stack.update, [0]

    def update_and_mirror():
        update()
        _copy_member(stack, mirror)
        oracle.update_parameters(mirror)
        steps[0] += 1

    stack.update = update_and_mirror
    for _ in range(3):
        train_epoch(stack, data, cfg.trainer.batch_size)
        params, buffers = stack.reported()
        for ours, theirs in zip(params + buffers, _averaged_tensors(oracle)):
            assert torch.equal(ours[0], theirs)
    assert steps[0] == 3 * math.ceil(300 / 64)
    live = stack.params[0][0]
    assert not torch.equal(stack.reported()[0][0][0], live)  # the average is not the trained weights


def test_swa_and_its_batch_norm_statistics_equal_torchs_swa_utils():
    """After the first S = floor(0.5 * 6) = 3 epochs the end-of-epoch weights enter an equal average
    (AveragedModel's default), whose batch-norm statistics update_bn recomputes on the training split."""
    cfg, data, model, stack = _setup("reg=[swa,batchnorm]", "reg.swa=0.5", "trainer.max_epochs=6")
    mirror = copy.deepcopy(model)
    oracle = swa_utils.AveragedModel(mirror)
    batch = cfg.trainer.batch_size
    loader = [data.prepare(data.x_train[i : i + batch]) for i in range(0, data.x_train.shape[0], batch)]
    for epoch in range(1, 7):
        stack.follow_schedules()
        train_epoch(stack, data, batch)
        _copy_member(stack, mirror)
        stack.end_epoch(data)
        params, buffers = stack.reported()
        if epoch > 3:
            oracle.update_parameters(mirror)
            swa_utils.update_bn(loader, oracle)
            for ours, theirs in zip(params + buffers, _averaged_tensors(oracle)):
                torch.testing.assert_close(ours[0], theirs, rtol=1e-6, atol=1e-7)
            assert torch.equal(params[0][0], stack.params[0][0]) == (epoch == 4)  # the first average is a copy
        else:  # before averaging starts the evaluated weights are the trained ones
            assert all(torch.equal(a, b) for a, b in zip(params + buffers, stack.params + stack.buffers))
        stack.members[0].state.history.append({"epoch": epoch, "val_loss": 1.0, "lr": stack.lr[0]})


@pytest.mark.parametrize("anneal", [0, 1, 3, 10])
def test_swas_learning_rate_is_swalrs(anneal):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = swa_utils.SWALR(opt, swa_lr=0.01, anneal_epochs=anneal)
    for steps in range(1, 15):
        opt.step()
        scheduler.step()
        assert swa_module.swalr(0.1, 0.01, anneal, steps) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_a_swa_runs_rates_averages_and_early_stopping(tmp_path):
    """max_epochs 10, swa 0.5: epochs 1-6 at the schedule's rate (S = 5, the first average at the end
    of epoch 6), then SWALR towards swa_lr; early stopping (patience 1) waits for the average."""
    args = ("reg=swa", "reg.swa=0.5", "reg.swa_lr=1e-2", "reg.swa_anneal_epochs=3", "trainer.max_epochs=10",
            "trainer.patience=1", "save_model=true")
    result = run(make_cfg(*SMALL, *args), tmp_path, QUIET)
    assert result["status"] == "ok" and result["reg"] == "swa" and result["weights"] == "swa"
    assert result["best_epoch"] >= 6 and result["epochs_run"] >= 7
    rows = pd.read_csv(tmp_path / "metrics.csv")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    scheduler, expected = swa_utils.SWALR(opt, swa_lr=1e-2, anneal_epochs=3), [1e-3] * 6
    for _ in range(rows.shape[0] - 6):
        opt.step()
        scheduler.step()
        expected.append(opt.param_groups[0]["lr"])
    assert rows["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    cfg = make_cfg(*SMALL, *args)
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert evaluate(model, data, "val", 8192).tolist() == [result["metrics"]["val_loss"], result["metrics"]["val_acc"]]
    best = rows[rows["epoch"] == result["best_epoch"]].iloc[0]
    assert (best["val_loss"], best["val_acc"]) == (result["metrics"]["val_loss"], result["metrics"]["val_acc"])


def test_an_ema_run_reports_the_average_and_its_rows_are_the_averages(tmp_path):
    args = ("reg=ema", "reg.ema=0.9", "trainer.max_epochs=5", "save_model=true")
    result = run(make_cfg(*SMALL, *args), tmp_path / "ema", QUIET)
    plain = run(make_cfg(*SMALL, "trainer.max_epochs=5"), tmp_path / "plain", QUIET)
    assert result["weights"] == "ema" and plain["weights"] == "trained" and result["reg"] == "ema"
    from regbench.console import result_summary

    assert "the metrics are those of the EMA average of the weights (result.json's weights: ema)" in result_summary(result)
    assert "average" not in result_summary(plain)
    assert result["params"]["reg.ema"] == 0.9
    ema_rows, plain_rows = pd.read_csv(tmp_path / "ema" / "metrics.csv"), pd.read_csv(tmp_path / "plain" / "metrics.csv")
    # the same training (EMA does not touch it), evaluated on other weights
    assert ema_rows["lr"].tolist() == plain_rows["lr"].tolist()
    assert (ema_rows["val_loss"] != plain_rows["val_loss"]).all()
    last = ema_rows.iloc[-1]
    assert (last["val_loss"], last["train_loss"]) == (result["metrics"]["val_loss"], result["metrics"]["train_loss"])


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


def test_one_averaging_per_run_and_knob_ranges_in_one_line(tmp_path):
    both = "reg.ema and reg.swa both average the weights that are evaluated: choose one"
    assert check(make_cfg("reg=[ema,swa]")) == [both]  # before any work: the config check
    with pytest.raises(UserInputError) as refused:  # the runner checks it again, and writes nothing
        run(make_cfg(*SMALL, "reg=[ema,swa]", "trainer.max_epochs=2"), tmp_path / "run", QUIET)
    assert str(refused.value) == both and not (tmp_path / "run").exists()
    for key, value, message in [("reg.ema", 1.0, "reg.ema must be in [0, 1)"), ("reg.swa", -0.1, "reg.swa must be in [0, 1)"),
                                ("reg.sam", -1, "reg.sam must be >= 0"), ("reg.swa_lr", -1, "reg.swa_lr must be >= 0")]:
        problems = check(make_cfg(f"{key}={value}"))
        assert len(problems) == 1 and problems[0].startswith(message), problems


@pytest.mark.parametrize("off", [["reg.ema=0"], ["reg.swa=0", "reg.swa_lr=0.1"], ["reg.sam=0", "reg.sam_adaptive=true"]])
def test_a_switched_off_knob_changes_nothing(tmp_path, off):
    base = run(make_cfg(*SMALL, "trainer.max_epochs=3"), tmp_path / "base", QUIET)
    other = run(make_cfg(*SMALL, "trainer.max_epochs=3", *off), tmp_path / "off", QUIET)
    assert other["reg"] == "none" and other["metrics"] == base["metrics"] and other["weights"] == "trained"


@pytest.mark.parametrize("variants", [
    [["reg=ema", "reg.ema=0.9"], ["reg=ema", "reg.ema=0.5", "reg.dropout=0.2"]],
    [["reg=swa", "reg.swa=0.25"], ["reg=swa", "reg.swa=0.5", "reg.swa_lr=1e-2", "reg.dropout=0.2"]],
    [["reg=sam"], ["reg=asam", "reg.dropout=0.2"]],
])
def test_a_stack_of_them_reads_back_from_the_device_once_per_epoch(tmp_path, variants):
    """Averaging (and SWA's batch-norm pass, its rate from host memory) and SAM's second pass add
    no host sync: each epoch's numbers of every member come back in one call (see
    tests/test_stacked.py's test of the same for the other regularizers)."""
    from regbench.engine import sweep as stacking
    from tests.helpers.syncs import HostSyncs

    cfgs = [make_cfg(*SMALL, "reg.batchnorm=true", "trainer.max_epochs=6", *v) for v in variants]
    with HostSyncs() as probe:
        results = stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], QUIET)
    assert all(r["status"] == "ok" for r in results)
    loop = ("train", "_train", "fit")
    assert [call for call in probe.calls if call[1] == loop] == [("tolist", loop)] * 6
    others = [call for call in probe.calls if call[1] != loop]
    assert all(where[:5] == (*loop, "finished", "_finish") for _, where in others), others
