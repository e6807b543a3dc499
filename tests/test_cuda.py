"""device=cuda end to end: data resident on the GPU, no host sync inside an epoch, stacked
runs on the GPU. Marked `cuda`: skipped (with the reason) where torch sees no CUDA device.

On the GPU the data order comes from a CUDA generator, so a GPU run is not the CPU run's
twin; these tests compare GPU with GPU.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from rich.console import Console

from regbench.data.datasets import load
from regbench.engine import sweep
from regbench.engine.runner import new_stack, run
from regbench.engine.steps import evaluate, train_epoch
from regbench.regularizers import regularizers
from tests.helpers.configs import make_cfg

pytestmark = pytest.mark.cuda

SMALL = ["device=cuda", "dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=8"]
QUIET = Console(quiet=True)


@contextmanager
def no_host_sync():
    """Any synchronising CUDA call (.item(), .tolist(), a device-to-host copy, nonzero...) raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("overrides", [
    ["reg=elasticnet"],                                          # proximal Adam
    ["reg=l1", "optim=sgd"],                                     # proximal SGD with momentum
    ["reg=weight_decay", "reg.dropout=0.3", "reg.batchnorm=true"],
    ["reg=l1", "reg.l1_proximal=false", "optim=adamw", "reg.weight_decay=1e-2"],
    ["dataset=mnist", "model=cnn", "reg=augment", "model.channels=[4]", "model.hidden_sizes=[8]"],
    ["dataset=mnist", "model=cnn", "reg=fgsm", "reg.fgsm=0.1", "model.channels=[4]", "model.hidden_sizes=[8]"],
    ["model=resmlp", "model.width=16", "reg=[drop_path,shakedrop,batchnorm]"],
    ["model=resnet", "model.depth=8", "reg=[drop_path,shakedrop,batchnorm,dropout]"],
    ["reg=[grad_clip,grad_clip_value]", "optim=sgd"],             # each member's norm and bounds on the device
    ["model=resmlp", "model.width=16", "reg=[shake_shake,batchnorm]"],
    ["model=resnet", "model.depth=8", "reg=[shake_shake,batchnorm,dropout]"],  # the grouped layout's mix
], ids=["adam-prox", "sgd-prox", "decay-dropout-bn", "adamw-l1-in-loss", "mnist-cnn-augment", "mnist-cnn-fgsm",
        "resmlp-branches", "resnet-branches", "grad-clip", "resmlp-shake-shake", "resnet-shake-shake"])
def test_an_epoch_on_cuda_makes_no_host_sync(tmp_path, overrides):
    if overrides[0] == "dataset=mnist":
        from tests.helpers.data import torchvision_root

        overrides = [*overrides, f"dataset.root={torchvision_root(tmp_path, 'MNIST')}", "dataset.train_size=512"]
    cfg = make_cfg(*SMALL, *overrides)
    device = torch.device("cuda")
    data = load(cfg.dataset, device)
    assert data.x_train.device.type == "cuda" and data.y_train.device.type == "cuda"
    stack = new_stack([(cfg, tmp_path, {})], data, device, regularizers(cfg.reg))
    train_epoch(stack, data, cfg.trainer.batch_size)  # first epoch: optimizer state is created
    with no_host_sync():
        total = train_epoch(stack, data, cfg.trainer.batch_size)
        scores = [evaluate(stack, data, s, cfg.trainer.eval_batch_size) for s in ("train", "val")]
    assert torch.isfinite(total) and all(torch.isfinite(s).all() for s in scores)


def test_a_run_on_cuda_ends_ok_on_the_gpu_and_learns(tmp_path):
    result = run(make_cfg(*SMALL, "trainer.max_epochs=40", "reg=elasticnet", "save_model=true"), tmp_path, QUIET)
    assert result["status"] == "ok", result.get("error")
    assert result["device"].startswith("cuda") and result["epochs_run"] == 40
    assert result["metrics"]["val_acc"] > 0.75  # on the CPU, seeds 0-2 give 0.87-0.93
    assert 0 < result["sparsity"] < 1
    saved = torch.load(tmp_path / "model.pt", weights_only=True, map_location="cpu")
    assert saved  # written from GPU tensors, readable anywhere


def test_a_cuda_run_is_repeatable(tmp_path):
    cfg = make_cfg(*SMALL, "reg=l2", "reg.dropout=0.2")
    a, b = (run(cfg, tmp_path / name, QUIET) for name in ("a", "b"))
    assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-5, abs=1e-6)


def test_a_stack_on_cuda_agrees_with_its_lone_runs(tmp_path):
    """Within the tolerance stated for several CPU threads (a lone run is a stack of one)."""
    variants = [["reg=none"], ["reg=l2", "reg.alpha=1e-2"], ["reg=l1", "optim.lr=3e-3"], ["reg=weight_decay"],
                ["reg=dropout"]]
    cfgs = [make_cfg(*SMALL, "trainer.patience=null", "trainer.max_epochs=5", *v) for v in variants]
    alone = [run(c, tmp_path / f"alone{i}", QUIET) for i, c in enumerate(cfgs)]
    stacked_results = sweep.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], QUIET)
    for a, s in zip(alone, stacked_results):
        assert s["status"] == "ok" and s["device"].startswith("cuda")
        for key in ("train_loss", "val_loss", "test_loss"):
            assert s["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-3, abs=1e-4)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert abs(s["metrics"][key] - a["metrics"][key]) <= 0.01
        assert s["sparsity"] == pytest.approx(a["sparsity"], abs=0.01)


def test_a_stacked_epoch_on_cuda_makes_no_host_sync(tmp_path):
    cfgs = [make_cfg(*SMALL, *v) for v in (["reg=l1"], ["reg=dropout"], ["reg=l2", "optim.lr=3e-3"])]
    device = torch.device("cuda")
    data = load(cfgs[0].dataset, device)
    stack = new_stack([(c, tmp_path / str(i), {}) for i, c in enumerate(cfgs)], data, device, regularizers(cfgs[0].reg))
    train_epoch(stack, data, cfgs[0].trainer.batch_size)
    with no_host_sync():
        sums = train_epoch(stack, data, cfgs[0].trainer.batch_size)
        scores = evaluate(stack, data, "val", cfgs[0].trainer.eval_batch_size)
    assert sums.shape == (3,) and scores.shape == (3, 2) and torch.isfinite(scores).all()
