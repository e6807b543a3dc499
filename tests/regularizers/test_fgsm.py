"""FGSM adversarial training (regbench/regularizers/fgsm.py): the batch the hook hands on against two
outside answers on identical inputs, a direct `torch.autograd.grad` step on a copy of the model and
torchattacks' FGSM; the clamp of images and none for tables; a stack of members with different
epsilons against their lone runs on images, bit for bit, with clean evaluation. The generic checks
on the preset (stacks, resume, one read-back per epoch, evaluation untouched, off = reg=none):
tests/test_contract.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from regbench.data.datasets import Data, load
from regbench.models import build_model
from tests.helpers.compare import SMALL, alone_and_stacked, bit_for_bit
from tests.helpers.configs import make_cfg
from tests.helpers.engine import stack_of

N, CLASSES = 64, 3


def _images(seed: int = 0) -> Data:
    """uint8 images (N, 1, 6, 6) as regbench keeps them, standardised per batch by `prepare`,
    with pixels at 0 and 255 so that the clamp has work to do."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (N, 1, 6, 6), generator=g, dtype=torch.uint8)
    x[:, :, 0] = 0
    x[:, :, -1] = 255
    y = torch.randint(0, CLASSES, (N,), generator=g)
    mean, std = torch.tensor([0.45]).reshape(1, 1, 1), torch.tensor([0.27]).reshape(1, 1, 1)
    return Data("classification", x, y, x, y, x, y, CLASSES, True, mean=mean, std=std)


def _table(seed: int = 0) -> Data:
    """Standardised features (N, 5): no bound."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, 5, generator=g) * 2, torch.randint(0, CLASSES, (N,), generator=g)
    return Data("classification", x, y, x, y, x, y, CLASSES, False)


def _stack(data: Data, eps: float, mix: str, *model: str):
    """A lone run's stack with FGSM (eps, mix) and its network, the model initialised from seed 0."""
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[16]", f"reg.fgsm={eps}", f"reg.fgsm_mix={mix}", *model)
    torch.manual_seed(0)
    net = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    stack = stack_of(cfg, net)
    stack.input_range = data.input_range  # as regbench.engine.runner.new_stack gives it
    return stack, net


def _reference(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bounds) -> torch.Tensor:
    """FGSM by hand on a copy of the network in training mode: the cross-entropy's input gradient
    by torch.autograd.grad, one step of eps along its sign, clamped to `bounds` where given."""
    twin = copy.deepcopy(net).train()
    inputs = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(twin(inputs), y), inputs)
    adv = inputs.detach() + eps * grad.sign()
    return adv if bounds is None else torch.max(torch.min(adv, bounds[1]), bounds[0])


@pytest.mark.parametrize("kind", ["images", "table"])
@pytest.mark.parametrize("mix", ["replace", "join"])
def test_the_batch_is_a_direct_autograd_fgsm_step_of_the_members_network(kind, mix):
    data = _images() if kind == "images" else _table()
    eps = 0.5
    stack, net = _stack(data, eps, mix, "reg.batchnorm=true")  # batch norm in training mode, statistics untouched
    running = [b.clone() for b in stack.buffers]
    x, y = data.prepare(data.x_train.clone()), data.y_train
    bounds = None
    if kind == "images":  # pixels [0, 1] standardised, computed here by hand
        bounds = ((0.0 - torch.tensor(0.45)) / torch.tensor(0.27), (1.0 - torch.tensor(0.45)) / torch.tensor(0.27))
    expected = _reference(net, x, y, eps, bounds)
    (fgsm,) = stack.batch_hooks
    out_x, out_y = fgsm.batch(stack, x[None].clone(), y[None])
    if mix == "join":  # clean first, then the attacked batch, the labels twice: equal weight in the batch's mean
        assert out_x.shape == (1, 2 * N, *x.shape[1:]) and torch.equal(out_x[0, :N], x)
        assert torch.equal(out_y[0], torch.cat([y, y]))
        out_x = out_x[:, N:]
    else:
        assert out_x.shape == (1, *x.shape) and torch.equal(out_y[0], y)
    assert torch.equal(out_x[0], expected)
    step = (out_x[0] - x).abs()
    if kind == "images":
        lo, hi = bounds
        assert out_x.min() >= lo and out_x.max() <= hi
        assert ((out_x[0] == lo) | (out_x[0] == hi)).any()  # the clamp acted
        inside = (x - eps > lo) & (x + eps < hi)
        assert torch.allclose(step[inside], torch.tensor(eps), atol=1e-6) and inside.float().mean() > 0.3  # not a no-op
    else:  # a table is not clamped: every feature (of nonzero gradient) moves by eps
        assert torch.allclose(step, torch.tensor(eps), atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(stack.buffers, running))  # the attack left them as they were
    assert all(p.grad is None for p in stack.params)  # through the inputs only


def test_the_batch_is_torchattacks_fgsm():
    """torchattacks' FGSM on the same network (an outside implementation): it attacks pixels in
    [0, 1] through the data's normalisation, so its eps is regbench's times the std."""
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks is a test extra (pip install -e '.[test]')")
    data, eps = _images(1), 0.3
    stack, net = _stack(data, eps, "replace")
    x, y = data.prepare(data.x_train.clone()), data.y_train
    attack = torchattacks.FGSM(copy.deepcopy(net), eps=eps * 0.27)
    attack.set_normalization_used(mean=[0.45], std=[0.27])  # it takes and returns standardised inputs
    attack.set_model_training_mode(model_training=True, batchnorm_training=True, dropout_training=True)
    theirs = attack(x, y)
    (fgsm,) = stack.batch_hooks
    ours = fgsm.batch(stack, x[None].clone(), y[None])[0][0]
    # the same step; theirs goes through pixels and back, so the last bits differ
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)
    assert (ours - x).abs().max() > 0.9 * eps


def test_off_is_no_hook_and_the_mix_is_not_a_member_knob():
    from regbench.config.keys import MEMBER_KEYS

    stack, _ = _stack(_table(), 0.0, "join")
    assert stack.batch_hooks == []
    assert "reg.fgsm" in MEMBER_KEYS and "reg.fgsm_mix" not in MEMBER_KEYS


def _image_arrays(tmp_path) -> str:
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, 240)
    x = np.clip(rng.normal(60 + 60 * y[:, None, None], 50, size=(240, 6, 6)), 0, 255).astype(np.uint8)
    path = tmp_path / "images.npz"
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize("mix", ["replace", "join"])
def test_a_stack_with_different_epsilons_trains_bit_for_bit_as_its_lone_runs_on_images(tmp_path, mix):
    """Members of other epsilons (and another seed) in one stack, on uint8 images (clamped):
    each ends exactly where its lone run ends (one thread); the reported metrics are the saved
    model's on clean inputs; and FGSM changes training (a run without it ends elsewhere)."""
    common = ["dataset=arrays", f"dataset.path={_image_arrays(tmp_path)}", "dataset.train_size=null",
              "dataset.split_seed=0", "trainer.num_threads=1", "trainer.patience=null", "trainer.max_epochs=4",
              "save_model=true", f"reg.fgsm_mix={mix}"]
    variants = [["reg.fgsm=0.3"], ["reg.fgsm=0.05"], ["reg.fgsm=0.3", "seed=1"]]
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    bit_for_bit(tmp_path, alone, stacked, variants)
    assert all(s["stack_size"] == 3 and s["reg"] == "fgsm" for s in stacked)
    assert alone[0]["metrics"] != alone[1]["metrics"]  # the epsilon matters

    cfg = make_cfg(*SMALL, *common, "reg.fgsm=0.3")
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(tmp_path / "alone0" / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        out = model(data.prepare(data.x_test.clone()))
    result = json.loads((tmp_path / "alone0" / "result.json").read_text())
    assert result["metrics"]["test_acc"] == (out.argmax(1) == data.y_test).double().mean().item()
    assert result["metrics"]["test_loss"] == pytest.approx(F.cross_entropy(out, data.y_test).item(), rel=1e-6)

    from rich.console import Console

    from regbench.engine.runner import run

    plain = run(make_cfg(*SMALL, *common), tmp_path / "plain", Console(quiet=True))
    assert plain["reg"] == "none" and plain["metrics"] != alone[0]["metrics"]  # FGSM is not a no-op


def _robust_by_hand(model: torch.nn.Module, data: Data, eps: float) -> float:
    """The test split's accuracy (R^2) under FGSM, by hand: eval mode, the whole split at once,
    the plain loss's input gradient by torch.autograd.grad, clamped to pixels [0, 1] standardised
    where the data is images."""
    model.eval()
    x = data.prepare(data.x_test.clone()).requires_grad_()
    y = data.y_test
    classification = data.task == "classification"
    loss = F.cross_entropy(model(x), y, reduction="sum") if classification else F.mse_loss(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    adv = x.detach() + eps * grad.sign()
    if data.mean is not None:
        adv = torch.max(torch.min(adv, (1.0 - data.mean) / data.std), (0.0 - data.mean) / data.std)
    with torch.no_grad():
        out = model(adv)
    if classification:
        return (out.argmax(1) == y).double().mean().item()
    return 1.0 - (out - y).double().pow(2).sum().item() / (y.double() - y.double().mean()).pow(2).sum().item()


@pytest.mark.parametrize("kind", ["images", "regression"])
def test_the_robust_metric_is_the_test_score_under_fgsm_and_leaves_training_alone(tmp_path, kind):
    """reg.fgsm_eval adds test_acc_fgsm (test_r2_fgsm) of the reported weights (model.pt): FGSM by
    hand and, for images, torchattacks' FGSM (eval mode, its default); every other number of the
    run is that of the same run without it, and it measures a baseline (reg=none) too."""
    from rich.console import Console

    from regbench.engine.runner import run

    if kind == "images":
        common = ["dataset=arrays", f"dataset.path={_image_arrays(tmp_path)}", "dataset.train_size=null"]
    else:
        common = ["dataset=diabetes", "dataset.train_size=200"]
    common += ["model.hidden_sizes=[16]", "trainer.max_epochs=3", "trainer.num_threads=1", "save_model=true"]
    eps = 0.2
    measured = run(make_cfg(*common, f"reg.fgsm_eval={eps}"), tmp_path / "measured", Console(quiet=True))
    plain = run(make_cfg(*common), tmp_path / "plain", Console(quiet=True))
    m = "acc" if kind == "images" else "r2"
    robust = measured["metrics"].pop(f"test_{m}_fgsm")
    assert measured["reg"] == plain["reg"] == "none" and measured["metrics"] == plain["metrics"]
    assert (tmp_path / "measured" / "metrics.csv").read_text().count("\n") == 4

    cfg = make_cfg(*common)
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(tmp_path / "measured" / "model.pt", weights_only=True))
    assert robust == pytest.approx(_robust_by_hand(model, data, eps), abs=1e-9 if kind == "images" else 1e-6)
    assert robust < measured["metrics"][f"test_{m}"]  # the attack hurts: the metric is not the clean one
    if kind == "images":
        torchattacks = pytest.importorskip("torchattacks", reason="torchattacks is a test extra")
        std, mean = data.std.flatten().tolist(), data.mean.flatten().tolist()
        attack = torchattacks.FGSM(model, eps=eps * std[0])
        attack.set_normalization_used(mean=mean, std=std)
        adv = attack(data.prepare(data.x_test.clone()), data.y_test)
        with torch.no_grad():
            out = model(adv)
        theirs = (out.argmax(1) == data.y_test).double().mean().item()
        assert robust == pytest.approx(theirs, abs=1.5 / len(data.y_test))  # a sign may round apart: one input


def test_stacked_members_measure_their_own_robustness_in_the_finishs_one_read_back(tmp_path):
    """Members of different reg.fgsm_eval (and reg.fgsm) in one stack: each records its lone run's
    numbers, and the robust metric rides in the final metrics' one read-back per member."""
    from rich.console import Console

    from regbench.engine import sweep as stacking
    from regbench.engine.runner import run
    from tests.helpers.syncs import HostSyncs, finish_reads

    common = ["dataset.train_size=300", "model.hidden_sizes=[16]", "trainer.max_epochs=2", "trainer.num_threads=1",
              "dataset.split_seed=0", "reg=fgsm"]
    variants = [["reg.fgsm_eval=0.3"], ["reg.fgsm_eval=0.1", "reg.fgsm=0.05"]]
    cfgs = [make_cfg(*common, *v) for v in variants]
    quiet = Console(quiet=True)
    alone = [run(c, tmp_path / f"alone{i}", quiet) for i, c in enumerate(cfgs)]
    with HostSyncs() as probe:
        stacked = stacking.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], quiet)
    bit_for_bit(tmp_path, alone, stacked, variants)
    assert all("test_acc_fgsm" in s["metrics"] for s in stacked) and stacked[0]["stack_size"] == 2
    assert alone[0]["metrics"]["test_acc_fgsm"] != alone[1]["metrics"]["test_acc_fgsm"]
    loop = ("train", "_train", "fit")
    at_finish = [where for _, where in probe.calls if where != loop]
    finish_reads(at_finish, probe.calls, len(cfgs))  # sparsity, final metrics (the robust one among them), predictions
